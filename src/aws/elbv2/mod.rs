//! ELBv2: the target and health types, and one file per action used.
//! API reference: <https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/>.

mod deregister_targets;
mod describe_target_group_attributes;
mod describe_target_groups;
mod describe_target_health;
mod register_targets;

pub use deregister_targets::DeregisterTargets;
pub use describe_target_group_attributes::{
    DescribeTargetGroupAttributes, DEREGISTRATION_DELAY, UNHEALTHY_DRAINING, UNHEALTHY_TERMINATION,
};
pub use describe_target_groups::{DescribeTargetGroups, DescribeTargetGroupsByArn};
pub use describe_target_health::DescribeTargetHealth;
pub use register_targets::RegisterTargets;

use super::query::Params;
use crate::aws::xml::Element;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// One target: an IP, with an optional port and Availability Zone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The IP address (or instance id).
    pub id: String,
    /// Port; the target group's port when `None`.
    pub port: Option<u16>,
    /// Availability Zone, e.g. `all` for an IP outside the VPC.
    pub availability_zone: Option<String>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) if self.id.contains(':') => write!(f, "[{}]:{p}", self.id),
            Some(p) => write!(f, "{}:{p}", self.id),
            None => f.write_str(&self.id),
        }
    }
}

/// A target group as DescribeTargetGroups reports it (the fields we use).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetGroup {
    /// Its ARN.
    pub arn: String,
    /// Its name.
    pub name: String,
    /// Default port of its targets.
    pub port: Option<u16>,
    /// `Protocol`: `TCP`, `TLS`, `UDP`, `HTTP`...
    pub protocol: Option<String>,
    /// `ip`, `instance`, `lambda` or `alb`.
    pub target_type: Option<String>,
    /// Load balancers that forward to it (none: its targets stay `unused`).
    pub load_balancer_arns: Vec<String>,
    /// `ipv4` or `ipv6`: the family of the IPs it takes.
    pub ip_address_type: Option<String>,
    /// Its health check settings.
    pub health_check: HealthCheck,
}

/// A target group's health check settings, as DescribeTargetGroups reports
/// them (each `None` when the answer leaves it out).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthCheck {
    /// `HealthCheckEnabled`.
    pub enabled: Option<bool>,
    /// `HealthCheckProtocol`: `TCP`, `HTTP`, `HTTPS`...
    pub protocol: Option<String>,
    /// `HealthCheckPort`: a port or `traffic-port`.
    pub port: Option<String>,
    /// `HealthCheckPath` (HTTP and HTTPS checks).
    pub path: Option<String>,
    /// `HealthCheckIntervalSeconds`.
    pub interval_seconds: Option<u32>,
    /// `HealthCheckTimeoutSeconds`.
    pub timeout_seconds: Option<u32>,
    /// `HealthyThresholdCount`.
    pub healthy_threshold: Option<u32>,
    /// `UnhealthyThresholdCount`.
    pub unhealthy_threshold: Option<u32>,
}

impl TargetGroup {
    /// The earliest a new target can be healthy after its registration (it
    /// must pass one health check), and the interval between two checks;
    /// `None` when the group did not say.
    pub fn health_pace(&self) -> Option<(Duration, Duration)> {
        let interval = Duration::from_secs(u64::from(self.health_check.interval_seconds?));
        (!interval.is_zero()).then_some((interval, interval))
    }
}

/// A target's health state (`TargetHealth/State`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Registered, first health checks pending.
    Initial,
    /// Passing health checks: the load balancer sends it traffic.
    Healthy,
    /// Failing health checks.
    Unhealthy,
    /// Failing health checks and being deregistered (draining).
    UnhealthyDraining,
    /// Not used: not registered (`Target.NotRegistered`), or registered in
    /// a group or AZ no load balancer uses (`Target.NotInUse`).
    Unused,
    /// Being deregistered; connections are drained.
    Draining,
    /// Health checks disabled.
    Unavailable,
    /// A state this program does not know.
    Other(String),
}

impl State {
    /// Draining: `draining` (deregistered) or `unhealthy.draining` (failing
    /// its checks, NLB `draining_interval_seconds`). Either way the load
    /// balancer sends it no new connection and keeps the existing ones.
    pub fn is_draining(&self) -> bool {
        matches!(self, State::Draining | State::UnhealthyDraining)
    }

    fn parse(s: &str) -> State {
        use State::*;
        [
            Initial,
            Healthy,
            Unhealthy,
            UnhealthyDraining,
            Unused,
            Draining,
            Unavailable,
        ]
        .into_iter()
        .find(|k| k.to_string() == s)
        .unwrap_or_else(|| Other(s.to_owned()))
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Initial => "initial",
            State::Healthy => "healthy",
            State::Unhealthy => "unhealthy",
            State::UnhealthyDraining => "unhealthy.draining",
            State::Unused => "unused",
            State::Draining => "draining",
            State::Unavailable => "unavailable",
            State::Other(s) => s,
        })
    }
}

/// One entry of DescribeTargetHealth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    /// The target it describes.
    pub target: Target,
    /// Its state.
    pub state: State,
    /// Reason code, e.g. `Target.FailedHealthChecks`.
    pub reason: Option<String>,
    /// Human-readable description.
    pub description: Option<String>,
}

impl TargetHealth {
    /// Whether the target is not (or no longer) registered. Not `unused`
    /// alone: a registered target is `unused` (`Target.NotInUse`) in a group
    /// or AZ no load balancer uses.
    pub fn is_gone(&self) -> bool {
        self.reason.as_deref() == Some("Target.NotRegistered")
    }
}

impl fmt::Display for TargetHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.state)?;
        if let Some(r) = &self.reason {
            write!(f, " ({r})")?;
        }
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

/// Appends `targets` as `Targets.member.N.{Id,Port,AvailabilityZone}`.
fn push_targets(params: &mut Params, targets: &[Target]) {
    for (i, t) in targets.iter().enumerate() {
        let n = i + 1;
        params.push((format!("Targets.member.{n}.Id"), t.id.clone()));
        if let Some(port) = t.port {
            params.push((format!("Targets.member.{n}.Port"), port.to_string()));
        }
        if let Some(az) = &t.availability_zone {
            params.push((format!("Targets.member.{n}.AvailabilityZone"), az.clone()));
        }
    }
}

/// The `TargetGroupArn` parameter followed by the targets.
fn group_and_targets(arn: &str, targets: &[Target]) -> Params {
    let mut p = vec![("TargetGroupArn".to_owned(), arn.to_owned())];
    push_targets(&mut p, targets);
    p
}

/// Reads the optional number in child `name` of `el`.
fn number_at<T: FromStr>(el: &Element, name: &str) -> Result<Option<T>, String> {
    el.text_at(&[name])
        .map(|t| t.parse().map_err(|_| format!("{name} is not valid: {t:?}")))
        .transpose()
}

/// Finds the health entry of `target` (same id; same port when both have one).
pub fn find_health<'a>(entries: &'a [TargetHealth], target: &Target) -> Option<&'a TargetHealth> {
    entries.iter().find(|h| {
        h.target.id == target.id
            && match (h.target.port, target.port) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each action draws from its ELBv2 token bucket (ELB user guide,
    /// "Request throttling for the ELB API"); STS calls from none.
    #[test]
    fn buckets_of_actions() {
        use crate::aws::query::Action;
        use crate::aws::retry::Bucket;
        use crate::aws::sts::{AssumeRole, AssumeRoleWithWebIdentity, GetCallerIdentity};
        assert_eq!(DescribeTargetGroups::BUCKET, Bucket::Describe);
        assert_eq!(DescribeTargetGroupsByArn::BUCKET, Bucket::Describe);
        assert_eq!(DescribeTargetHealth::BUCKET, Bucket::Describe);
        assert_eq!(DescribeTargetGroupAttributes::BUCKET, Bucket::Describe);
        assert_eq!(RegisterTargets::BUCKET, Bucket::Mutating);
        assert_eq!(DeregisterTargets::BUCKET, Bucket::Mutating);
        assert_eq!(AssumeRoleWithWebIdentity::BUCKET, Bucket::Other);
        assert_eq!(AssumeRole::BUCKET, Bucket::Other);
        assert_eq!(GetCallerIdentity::BUCKET, Bucket::Other);
    }

    pub(super) fn t(id: &str, port: Option<u16>, az: Option<&str>) -> Target {
        Target {
            id: id.into(),
            port,
            availability_zone: az.map(Into::into),
        }
    }

    #[test]
    fn target_display() {
        assert_eq!(t("10.0.0.1", Some(80), None).to_string(), "10.0.0.1:80");
        assert_eq!(t("fd00::1", Some(80), None).to_string(), "[fd00::1]:80");
        assert_eq!(t("10.0.0.1", None, None).to_string(), "10.0.0.1");
    }

    #[test]
    fn finds_health_by_id_and_port() {
        let h = |id: &str, port| TargetHealth {
            target: t(id, port, None),
            state: State::Healthy,
            reason: None,
            description: None,
        };
        let entries = [h("10.0.1.23", Some(80)), h("192.168.7.4", Some(8080))];
        assert!(find_health(&entries, &t("192.168.7.4", Some(8080), None)).is_some());
        assert!(find_health(&entries, &t("192.168.7.4", Some(80), None)).is_none());
        assert!(find_health(&entries, &t("10.0.1.23", None, None)).is_some());
    }
}
