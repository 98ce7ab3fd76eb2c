//! The four ELBv2 actions the sidecar uses, as plain request builders and
//! response parsers.
//!
//! API reference: <https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/>.
//! Builders return form [`Params`]; parsers take the HTTP status and body
//! and return typed values or an [`Error`]. Nothing here does IO.

use super::error::Error;
use super::query::{read_answer, Answer, Params};
use crate::aws::xml::Element;
use std::fmt;

/// API version sent with every ELBv2 request.
pub const VERSION: &str = "2015-12-01";
/// The ELBv2 actions this program calls.
pub const ACTIONS: [&str; 4] = [
    "DescribeTargetGroups",
    "RegisterTargets",
    "DeregisterTargets",
    "DescribeTargetHealth",
];
/// SigV4 signing name of ELBv2.
pub const SIGNING_NAME: &str = "elasticloadbalancing";

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
    /// `ip`, `instance`, `lambda` or `alb`.
    pub target_type: Option<String>,
    /// Load balancers that forward to it.
    pub load_balancer_arns: Vec<String>,
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
    /// Not used: not registered, or its group is not attached to a load balancer.
    Unused,
    /// Being deregistered; connections are drained.
    Draining,
    /// Health checks disabled.
    Unavailable,
    /// A state this program does not know.
    Other(String),
}

impl State {
    fn parse(s: &str) -> State {
        match s {
            "initial" => State::Initial,
            "healthy" => State::Healthy,
            "unhealthy" => State::Unhealthy,
            "unhealthy.draining" => State::UnhealthyDraining,
            "unused" => State::Unused,
            "draining" => State::Draining,
            "unavailable" => State::Unavailable,
            other => State::Other(other.to_owned()),
        }
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
    /// Whether the target is not (or no longer) registered at all.
    pub fn is_gone(&self) -> bool {
        self.reason.as_deref() == Some("Target.NotRegistered")
    }

    /// Whether draining is over: the target is gone or unused.
    pub fn is_drained(&self) -> bool {
        self.is_gone() || self.state == State::Unused
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

fn base(action: &str) -> Params {
    vec![
        ("Action".to_owned(), action.to_owned()),
        ("Version".to_owned(), VERSION.to_owned()),
    ]
}

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

/// DescribeTargetGroups by names (up to 20 per call is AWS's limit for ARNs;
/// names have none documented).
pub fn describe_target_groups_by_name(names: &[String]) -> Params {
    let mut p = base("DescribeTargetGroups");
    for (i, n) in names.iter().enumerate() {
        p.push((format!("Names.member.{}", i + 1), n.clone()));
    }
    p
}

/// DescribeTargetGroups by ARNs.
pub fn describe_target_groups_by_arn(arns: &[String]) -> Params {
    let mut p = base("DescribeTargetGroups");
    for (i, a) in arns.iter().enumerate() {
        p.push((format!("TargetGroupArns.member.{}", i + 1), a.clone()));
    }
    p
}

/// RegisterTargets of `targets` in the group `arn`.
pub fn register_targets(arn: &str, targets: &[Target]) -> Params {
    let mut p = base("RegisterTargets");
    p.push(("TargetGroupArn".to_owned(), arn.to_owned()));
    push_targets(&mut p, targets);
    p
}

/// DeregisterTargets of `targets` from the group `arn`.
pub fn deregister_targets(arn: &str, targets: &[Target]) -> Params {
    let mut p = base("DeregisterTargets");
    p.push(("TargetGroupArn".to_owned(), arn.to_owned()));
    push_targets(&mut p, targets);
    p
}

/// DescribeTargetHealth of `targets` (all of the group's when empty).
pub fn describe_target_health(arn: &str, targets: &[Target]) -> Params {
    let mut p = base("DescribeTargetHealth");
    p.push(("TargetGroupArn".to_owned(), arn.to_owned()));
    push_targets(&mut p, targets);
    p
}

fn port_at(el: &Element, name: &str) -> Result<Option<u16>, String> {
    match el.text_at(&[name]) {
        None => Ok(None),
        Some(t) => t
            .parse::<u16>()
            .map(Some)
            .map_err(|_| format!("{name} is not a port: {t:?}")),
    }
}

fn bad(action: &str, status: u16, detail: String) -> Error {
    Error::Response {
        action: action.to_owned(),
        status,
        detail,
    }
}

/// Parses a DescribeTargetGroups response.
///
/// # Errors
/// The AWS error for a non-2xx status; [`Error::Response`] for a body that
/// is not a DescribeTargetGroups response or a group without ARN or name.
pub fn parse_describe_target_groups(
    status: u16,
    body: &[u8],
) -> Result<(Vec<TargetGroup>, Option<String>), Error> {
    const ACTION: &str = "DescribeTargetGroups";
    let Answer { result, request_id } = read_answer(ACTION, status, body)?;
    let mut groups = Vec::new();
    for m in result.members(&["TargetGroups"]) {
        let arn = m.text_at(&["TargetGroupArn"]).ok_or_else(|| {
            bad(
                ACTION,
                status,
                "a target group has no TargetGroupArn".into(),
            )
        })?;
        groups.push(TargetGroup {
            name: m.text_at(&["TargetGroupName"]).unwrap_or_default(),
            port: port_at(m, "Port").map_err(|d| bad(ACTION, status, d))?,
            target_type: m.text_at(&["TargetType"]),
            load_balancer_arns: m
                .members(&["LoadBalancerArns"])
                .iter()
                .map(|e| e.text.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            arn,
        });
    }
    Ok((groups, request_id))
}

/// Parses a RegisterTargets or DeregisterTargets response (`action` names
/// which); returns the request id.
///
/// # Errors
/// The AWS error for a non-2xx status; [`Error::Response`] for a body that
/// is not that action's response.
pub fn parse_ack(action: &str, status: u16, body: &[u8]) -> Result<Option<String>, Error> {
    read_answer(action, status, body).map(|a| a.request_id)
}

/// Parses a DescribeTargetHealth response.
///
/// # Errors
/// The AWS error for a non-2xx status; [`Error::Response`] for a body that
/// is not a DescribeTargetHealth response, or an entry without target id or state.
pub fn parse_describe_target_health(
    status: u16,
    body: &[u8],
) -> Result<(Vec<TargetHealth>, Option<String>), Error> {
    const ACTION: &str = "DescribeTargetHealth";
    let Answer { result, request_id } = read_answer(ACTION, status, body)?;
    let mut out = Vec::new();
    for m in result.members(&["TargetHealthDescriptions"]) {
        let target = m
            .child("Target")
            .ok_or_else(|| bad(ACTION, status, "an entry has no Target".into()))?;
        let id = target
            .text_at(&["Id"])
            .ok_or_else(|| bad(ACTION, status, "a target has no Id".into()))?;
        let state = m.text_at(&["TargetHealth", "State"]).ok_or_else(|| {
            bad(
                ACTION,
                status,
                format!("target {id} has no TargetHealth/State"),
            )
        })?;
        out.push(TargetHealth {
            target: Target {
                port: port_at(target, "Port").map_err(|d| bad(ACTION, status, d))?,
                availability_zone: target.text_at(&["AvailabilityZone"]),
                id,
            },
            state: State::parse(&state),
            reason: m.text_at(&["TargetHealth", "Reason"]),
            description: m.text_at(&["TargetHealth", "Description"]),
        });
    }
    Ok((out, request_id))
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

    fn t(id: &str, port: Option<u16>, az: Option<&str>) -> Target {
        Target {
            id: id.into(),
            port,
            availability_zone: az.map(Into::into),
        }
    }

    #[test]
    fn builds_register_request() {
        let p = register_targets(
            "arn:tg",
            &[
                t("10.0.0.1", Some(8080), Some("all")),
                t("10.0.0.2", None, None),
            ],
        );
        let want: Vec<(String, String)> = [
            ("Action", "RegisterTargets"),
            ("Version", "2015-12-01"),
            ("TargetGroupArn", "arn:tg"),
            ("Targets.member.1.Id", "10.0.0.1"),
            ("Targets.member.1.Port", "8080"),
            ("Targets.member.1.AvailabilityZone", "all"),
            ("Targets.member.2.Id", "10.0.0.2"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(p, want);
        assert_eq!(deregister_targets("arn:tg", &[])[0].1, "DeregisterTargets");
        assert_eq!(
            describe_target_health("arn:tg", &[])[0].1,
            "DescribeTargetHealth"
        );
        let d = describe_target_groups_by_name(&["a".into(), "b".into()]);
        assert_eq!(d[3], ("Names.member.2".to_string(), "b".to_string()));
        let d = describe_target_groups_by_arn(&["x".into()]);
        assert_eq!(
            d[2],
            ("TargetGroupArns.member.1".to_string(), "x".to_string())
        );
    }

    #[test]
    fn parses_recorded_describe_target_groups() {
        let (groups, rid) = parse_describe_target_groups(
            200,
            include_bytes!("../../tests/data/describe_target_groups.xml"),
        )
        .unwrap();
        assert_eq!(rid.as_deref(), Some("70092c0e-f3a9-11e5-ae48-cff02092876b"));
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(g.name, "my-targets");
        assert_eq!(g.port, Some(80));
        assert_eq!(g.target_type.as_deref(), Some("ip"));
        assert!(g.arn.ends_with("targetgroup/my-targets/73e2d6bc24d8a067"));
        assert_eq!(g.load_balancer_arns.len(), 1);
    }

    #[test]
    fn parses_recorded_describe_target_health() {
        let (h, rid) = parse_describe_target_health(
            200,
            include_bytes!("../../tests/data/describe_target_health.xml"),
        )
        .unwrap();
        assert_eq!(rid.as_deref(), Some("c534f810-f389-11e5-9192-3fff33344cfa"));
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].state, State::Healthy);
        assert_eq!(h[0].target, t("10.0.1.23", Some(80), None));
        assert_eq!(h[1].state, State::Unhealthy);
        assert_eq!(h[1].reason.as_deref(), Some("Target.ResponseCodeMismatch"));
        assert_eq!(h[1].target.availability_zone.as_deref(), Some("all"));
        assert_eq!(
            h[1].to_string(),
            "unhealthy (Target.ResponseCodeMismatch): Health checks failed with these codes: [404]"
        );
        assert_eq!(
            find_health(&h, &t("192.168.7.4", Some(8080), None))
                .unwrap()
                .state,
            State::Unhealthy
        );
        assert!(find_health(&h, &t("192.168.7.4", Some(80), None)).is_none());
        assert_eq!(
            find_health(&h, &t("10.0.1.23", None, None)).unwrap().state,
            State::Healthy
        );
    }

    #[test]
    fn parses_draining_and_unused() {
        let (h, _) = parse_describe_target_health(
            200,
            include_bytes!("../../tests/data/describe_target_health_draining.xml"),
        )
        .unwrap();
        assert_eq!(h[0].state, State::Draining);
        assert!(!h[0].is_drained());
        let (h, _) = parse_describe_target_health(
            200,
            include_bytes!("../../tests/data/describe_target_health_unused.xml"),
        )
        .unwrap();
        assert_eq!(h[0].state, State::Unused);
        assert!(h[0].is_gone() && h[0].is_drained());
    }

    #[test]
    fn handles_empty_and_unknown_content() {
        let body = br#"<DescribeTargetHealthResponse xmlns="x"><DescribeTargetHealthResult><TargetHealthDescriptions/><Extra><member/></Extra></DescribeTargetHealthResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata><Unknown/></DescribeTargetHealthResponse>"#;
        let (h, _) = parse_describe_target_health(200, body).unwrap();
        assert!(h.is_empty());
        let body = b"<DescribeTargetGroupsResponse><DescribeTargetGroupsResult/></DescribeTargetGroupsResponse>";
        assert!(parse_describe_target_groups(200, body)
            .unwrap()
            .0
            .is_empty());
        let weird = br#"<DescribeTargetHealthResponse><DescribeTargetHealthResult><TargetHealthDescriptions><member><Target><Id>1.2.3.4</Id><Port>99999</Port></Target><TargetHealth><State>x</State></TargetHealth></member></TargetHealthDescriptions></DescribeTargetHealthResult></DescribeTargetHealthResponse>"#;
        assert!(matches!(
            parse_describe_target_health(200, weird),
            Err(Error::Response { .. })
        ));
        let no_state = br#"<DescribeTargetHealthResponse><DescribeTargetHealthResult><TargetHealthDescriptions><member><Target><Id>1.2.3.4</Id></Target></member></TargetHealthDescriptions></DescribeTargetHealthResult></DescribeTargetHealthResponse>"#;
        assert!(parse_describe_target_health(200, no_state).is_err());
        assert_eq!(State::parse("brand-new"), State::Other("brand-new".into()));
    }

    #[test]
    fn acks_and_errors() {
        assert_eq!(
            parse_ack(
                "DeregisterTargets",
                200,
                include_bytes!("../../tests/data/deregister_targets.xml")
            )
            .unwrap()
            .as_deref(),
            Some("b7ba7b6e-f3a9-11e5-ae48-cff02092876b")
        );
        let e = parse_ack(
            "RegisterTargets",
            200,
            include_bytes!("../../tests/data/deregister_targets.xml"),
        );
        assert!(e.is_err());
        let e = parse_ack(
            "RegisterTargets",
            400,
            include_bytes!("../../tests/data/throttling.xml"),
        )
        .unwrap_err();
        assert_eq!(e.aws_code(), Some("Throttling"));
    }

    #[test]
    fn target_display() {
        assert_eq!(t("10.0.0.1", Some(80), None).to_string(), "10.0.0.1:80");
        assert_eq!(t("fd00::1", Some(80), None).to_string(), "[fd00::1]:80");
        assert_eq!(t("10.0.0.1", None, None).to_string(), "10.0.0.1");
    }
}
