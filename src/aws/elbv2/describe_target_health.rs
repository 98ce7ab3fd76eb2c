//! DescribeTargetHealth: how the load balancer sees the pod's targets.
//! API reference: <https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_DescribeTargetHealth.html>.

use super::{group_and_targets, number_at, State, Target, TargetHealth};
use crate::aws::query::{Action, Params, Service};
use crate::aws::retry::Bucket;
use crate::aws::xml::Element;

/// DescribeTargetHealth of `targets` in the group `arn` (all of the
/// group's targets when empty).
#[derive(Debug, Clone, Copy)]
pub struct DescribeTargetHealth<'a> {
    /// Target group ARN.
    pub arn: &'a str,
    /// Targets to describe.
    pub targets: &'a [Target],
}

impl Action for DescribeTargetHealth<'_> {
    const SERVICE: Service = Service::Elbv2;
    const NAME: &'static str = "DescribeTargetHealth";
    const BUCKET: Bucket = Bucket::Describe;
    type Output = Vec<TargetHealth>;

    fn params(&self) -> Params {
        group_and_targets(self.arn, self.targets)
    }

    fn parse(result: &Element) -> Result<Vec<TargetHealth>, String> {
        let mut out = Vec::new();
        for m in result.members(&["TargetHealthDescriptions"]) {
            let target = m.child("Target").ok_or("an entry has no Target")?;
            let id = target.text_at(&["Id"]).ok_or("a target has no Id")?;
            let state = m
                .text_at(&["TargetHealth", "State"])
                .ok_or_else(|| format!("target {id} has no TargetHealth/State"))?;
            out.push(TargetHealth {
                target: Target {
                    port: number_at(target, "Port")?,
                    availability_zone: target.text_at(&["AvailabilityZone"]),
                    id,
                },
                state: State::parse(&state),
                reason: m.text_at(&["TargetHealth", "Reason"]),
                description: m.text_at(&["TargetHealth", "Description"]),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::elbv2::find_health;
    use crate::aws::elbv2::tests::t;
    use crate::aws::error::Error;

    fn parse(status: u16, body: &[u8]) -> Result<Vec<TargetHealth>, Error> {
        DescribeTargetHealth::parse_response(status, body).map(|r| r.value)
    }

    #[test]
    fn builds_request() {
        let p = DescribeTargetHealth {
            arn: "arn:tg",
            targets: &[t("10.0.0.1", Some(80), None)],
        }
        .form();
        assert_eq!(p[0].1, "DescribeTargetHealth");
        assert_eq!(p[3], ("Targets.member.1.Id".into(), "10.0.0.1".into()));
    }

    #[test]
    fn parses_recorded_response() {
        let r = DescribeTargetHealth::parse_response(
            200,
            include_bytes!("../../../tests/data/describe_target_health.xml"),
        )
        .unwrap();
        assert_eq!(
            r.request_id.as_deref(),
            Some("c534f810-f389-11e5-9192-3fff33344cfa")
        );
        let h = r.value;
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
        let h = parse(
            200,
            include_bytes!("../../../tests/data/describe_target_health_draining.xml"),
        )
        .unwrap();
        assert_eq!(h[0].state, State::Draining);
        assert!(!h[0].is_gone() && h[0].state.is_draining());
        let text = include_str!("../../../tests/data/describe_target_health_draining.xml");
        let text = text.replace(">draining<", ">unhealthy.draining<");
        let h = parse(200, text.as_bytes()).unwrap();
        assert_eq!(h[0].state, State::UnhealthyDraining);
        assert!(!h[0].is_gone() && h[0].state.is_draining());
        assert!(!State::Unhealthy.is_draining());
        let h = parse(
            200,
            include_bytes!("../../../tests/data/describe_target_health_unused.xml"),
        )
        .unwrap();
        assert_eq!(h[0].state, State::Unused);
        assert!(h[0].is_gone());
    }

    #[test]
    fn handles_empty_and_unknown_content() {
        let body = br#"<DescribeTargetHealthResponse xmlns="x"><DescribeTargetHealthResult><TargetHealthDescriptions/><Extra><member/></Extra></DescribeTargetHealthResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata><Unknown/></DescribeTargetHealthResponse>"#;
        assert!(parse(200, body).unwrap().is_empty());
        let weird = br#"<DescribeTargetHealthResponse><DescribeTargetHealthResult><TargetHealthDescriptions><member><Target><Id>1.2.3.4</Id><Port>99999</Port></Target><TargetHealth><State>x</State></TargetHealth></member></TargetHealthDescriptions></DescribeTargetHealthResult></DescribeTargetHealthResponse>"#;
        assert!(matches!(parse(200, weird), Err(Error::Response { .. })));
        let no_state = br#"<DescribeTargetHealthResponse><DescribeTargetHealthResult><TargetHealthDescriptions><member><Target><Id>1.2.3.4</Id></Target></member></TargetHealthDescriptions></DescribeTargetHealthResult></DescribeTargetHealthResponse>"#;
        assert!(parse(200, no_state).is_err());
        assert_eq!(State::parse("brand-new"), State::Other("brand-new".into()));
    }
}
