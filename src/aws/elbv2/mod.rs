//! ELBv2: the target and health types, and the actions the sidecar uses.
//! API reference: <https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/>.

use super::query::{params, Action, Params};
use super::retry::Bucket;
use super::xml::Element;
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
    /// `HealthyThresholdCount`.
    pub healthy_threshold: Option<u32>,
    /// `UnhealthyThresholdCount`.
    pub unhealthy_threshold: Option<u32>,
}

impl TargetGroup {
    /// The interval between two health checks (a new target is healthy one
    /// interval after its registration at the earliest); `None` when unsaid.
    pub fn health_pace(&self) -> Option<Duration> {
        let secs = self.health_check.interval_seconds.filter(|&s| s > 0)?;
        Some(Duration::from_secs(secs.into()))
    }
}

/// A target's health state (`TargetHealth/State`) as AWS names it:
/// `initial` (first checks pending), `healthy` (gets traffic), `unhealthy`,
/// `unhealthy.draining`, `unused` (not registered, or in a group or AZ no
/// load balancer uses), `draining` (being deregistered), `unavailable`.
pub type State = String;

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
    /// Draining: `draining` (deregistered) or `unhealthy.draining` (failing
    /// its checks, NLB `draining_interval_seconds`). Either way the load
    /// balancer sends it no new connection and keeps the existing ones.
    pub fn is_draining(&self) -> bool {
        matches!(self.state.as_str(), "draining" | "unhealthy.draining")
    }

    /// Whether the target is not (or no longer) registered. Not `unused`
    /// alone: a registered target is `unused` (`Target.NotInUse`) in a group
    /// or AZ no load balancer uses.
    pub fn is_gone(&self) -> bool {
        self.reason.as_deref() == Some("Target.NotRegistered")
    }
}

impl fmt::Display for TargetHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = self.reason.as_ref().map(|r| format!(" ({r})"));
        let description = self.description.as_ref().map(|d| format!(": {d}"));
        let (r, d) = (reason.unwrap_or_default(), description.unwrap_or_default());
        write!(f, "{}{r}{d}", self.state)
    }
}

/// [RegisterTargets](https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_RegisterTargets.html)
/// (`REGISTER`) or [DeregisterTargets](https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_DeregisterTargets.html):
/// `targets` into or out of the group `arn` (AWS answers a deregistration of
/// a target not registered with success; moto does not).
#[derive(Debug, Clone, Copy)]
pub struct ChangeTargets<'a, const REGISTER: bool> {
    /// Target group ARN.
    pub arn: &'a str,
    /// Targets to register or deregister.
    pub targets: &'a [Target],
}

/// RegisterTargets.
pub type RegisterTargets<'a> = ChangeTargets<'a, true>;
/// DeregisterTargets.
pub type DeregisterTargets<'a> = ChangeTargets<'a, false>;

impl<const REGISTER: bool> Action for ChangeTargets<'_, REGISTER> {
    const NAME: &'static str = if REGISTER {
        "RegisterTargets"
    } else {
        "DeregisterTargets"
    };
    const BUCKET: Bucket = Bucket::Mutating;
    type Output = ();

    fn params(&self) -> Params {
        group_and_targets(self.arn, self.targets)
    }

    fn parse(_result: &Element) -> Result<(), String> {
        Ok(())
    }
}

/// [DescribeTargetHealth](https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_DescribeTargetHealth.html):
/// `targets` in the group `arn` (all of the group's targets when empty).
#[derive(Debug, Clone, Copy)]
pub struct DescribeTargetHealth<'a> {
    /// Target group ARN.
    pub arn: &'a str,
    /// Targets to describe.
    pub targets: &'a [Target],
}

impl Action for DescribeTargetHealth<'_> {
    const NAME: &'static str = "DescribeTargetHealth";
    const BUCKET: Bucket = Bucket::Describe;
    type Output = Vec<TargetHealth>;

    fn params(&self) -> Params {
        group_and_targets(self.arn, self.targets)
    }

    fn parse(result: &Element) -> Result<Vec<TargetHealth>, String> {
        let entry = |m: &Element| {
            let target = m.child("Target").ok_or("an entry has no Target")?;
            let id = target.text_at(&["Id"]).ok_or("a target has no Id")?;
            let state = m
                .text_at(&["TargetHealth", "State"])
                .ok_or_else(|| format!("target {id} has no TargetHealth/State"))?;
            Ok(TargetHealth {
                target: Target {
                    port: number_at(target, "Port")?,
                    availability_zone: target.text_at(&["AvailabilityZone"]),
                    id,
                },
                state,
                reason: m.text_at(&["TargetHealth", "Reason"]),
                description: m.text_at(&["TargetHealth", "Description"]),
            })
        };
        list(result, "TargetHealthDescriptions", entry)
    }
}

/// [DescribeTargetGroups](https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_DescribeTargetGroups.html)
/// by names (`-tg-name`), or by ARNs (`-check`; at most 20 per call, as AWS
/// documents: the caller splits longer lists).
#[derive(Debug, Clone, Copy)]
pub struct DescribeTargetGroups<'a> {
    /// Target group names, or ARNs with `by_arn`.
    pub names: &'a [String],
    /// Whether `names` are ARNs.
    pub by_arn: bool,
}

impl Action for DescribeTargetGroups<'_> {
    const NAME: &'static str = "DescribeTargetGroups";
    const BUCKET: Bucket = Bucket::Describe;
    type Output = Vec<TargetGroup>;

    fn params(&self) -> Params {
        let list = ["Names", "TargetGroupArns"][usize::from(self.by_arn)];
        let member = |(n, v): (usize, &String)| (format!("{list}.member.{n}"), v.clone());
        (1..).zip(self.names).map(member).collect()
    }

    fn parse(result: &Element) -> Result<Vec<TargetGroup>, String> {
        let group = |m: &Element| {
            Ok(TargetGroup {
                arn: m
                    .text_at(&["TargetGroupArn"])
                    .ok_or("a target group has no TargetGroupArn")?,
                name: m.text_at(&["TargetGroupName"]).unwrap_or_default(),
                port: number_at(m, "Port")?,
                protocol: m.text_at(&["Protocol"]),
                target_type: m.text_at(&["TargetType"]),
                load_balancer_arns: m
                    .members(&["LoadBalancerArns"])
                    .iter()
                    .map(|e| e.text.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
                ip_address_type: m.text_at(&["IpAddressType"]),
                health_check: HealthCheck {
                    enabled: m.text_at(&["HealthCheckEnabled"]).map(|t| t == "true"),
                    protocol: m.text_at(&["HealthCheckProtocol"]),
                    port: m.text_at(&["HealthCheckPort"]),
                    path: m.text_at(&["HealthCheckPath"]),
                    interval_seconds: number_at(m, "HealthCheckIntervalSeconds")?,
                    healthy_threshold: number_at(m, "HealthyThresholdCount")?,
                    unhealthy_threshold: number_at(m, "UnhealthyThresholdCount")?,
                },
            })
        };
        list(result, "TargetGroups", group)
    }
}

/// The attribute that says how long a deregistered target drains.
pub const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";
/// Whether an NLB resets established connections to an unhealthy target
/// (default true).
pub const UNHEALTHY_TERMINATION: &str =
    "target_health_state.unhealthy.connection_termination.enabled";
/// How long an unhealthy target keeps its connections when
/// [`UNHEALTHY_TERMINATION`] is false (default 0).
pub const UNHEALTHY_DRAINING: &str = "target_health_state.unhealthy.draining_interval_seconds";

/// [DescribeTargetGroupAttributes](https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_DescribeTargetGroupAttributes.html)
/// of the group `arn` (for `-check`): `(Key, Value)` pairs.
#[derive(Debug, Clone, Copy)]
pub struct DescribeTargetGroupAttributes<'a> {
    /// Target group ARN.
    pub arn: &'a str,
}

impl Action for DescribeTargetGroupAttributes<'_> {
    const NAME: &'static str = "DescribeTargetGroupAttributes";
    const BUCKET: Bucket = Bucket::Describe;
    type Output = Vec<(String, String)>;

    fn params(&self) -> Params {
        params(&[("TargetGroupArn", self.arn)])
    }

    fn parse(result: &Element) -> Result<Vec<(String, String)>, String> {
        list(result, "Attributes", |m| {
            let key = m.text_at(&["Key"]).ok_or("an attribute has no Key")?;
            Ok((key, m.text_at(&["Value"]).unwrap_or_default()))
        })
    }
}

/// `TargetGroupArn`, then `Targets.member.N.{Id,Port,AvailabilityZone}`.
fn group_and_targets(arn: &str, targets: &[Target]) -> Params {
    let mut p = params(&[("TargetGroupArn", arn)]);
    for (n, t) in (1..).zip(targets) {
        let key = |field| format!("Targets.member.{n}.{field}");
        p.push((key("Id"), t.id.clone()));
        p.extend(t.port.map(|port| (key("Port"), port.to_string())));
        let az = t.availability_zone.clone();
        p.extend(az.map(|az| (key("AvailabilityZone"), az)));
    }
    p
}

/// Each member of the list `name` in `el`, parsed (a plain loop: smaller
/// than a collected iterator of results).
fn list<T>(
    el: &Element,
    name: &str,
    parse: impl Fn(&Element) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    for member in el.members(&[name]) {
        out.push(parse(member)?);
    }
    Ok(out)
}

/// Reads the optional number in child `name` of `el`.
fn number_at<T: FromStr>(el: &Element, name: &str) -> Result<Option<T>, String> {
    el.text_at(&[name])
        .map(|t| t.parse().map_err(|_| format!("{name} is not valid: {t:?}")))
        .transpose()
}

/// Finds the health entry of `target` (same id; same port when both have one).
pub fn find_health<'a>(entries: &'a [TargetHealth], target: &Target) -> Option<&'a TargetHealth> {
    let same_port = |h: &TargetHealth| h.target.port.zip(target.port).is_none_or(|(a, b)| a == b);
    entries
        .iter()
        .find(|h| h.target.id == target.id && same_port(h))
}

#[cfg(test)]
mod tests;
