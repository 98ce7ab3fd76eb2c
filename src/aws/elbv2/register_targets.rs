//! RegisterTargets: puts the pod's IP into a target group.
//! API reference: <https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_RegisterTargets.html>.

use super::{group_and_targets, Target};
use crate::aws::query::{Action, Params, Service};
use crate::aws::retry::Bucket;
use crate::aws::xml::Element;

/// RegisterTargets of `targets` in the group `arn`. The answer holds
/// nothing but its request id.
#[derive(Debug, Clone, Copy)]
pub struct RegisterTargets<'a> {
    /// Target group ARN.
    pub arn: &'a str,
    /// Targets to register.
    pub targets: &'a [Target],
}

impl Action for RegisterTargets<'_> {
    const SERVICE: Service = Service::Elbv2;
    const NAME: &'static str = "RegisterTargets";
    const BUCKET: Bucket = Bucket::Mutating;
    type Output = ();

    fn params(&self) -> Params {
        group_and_targets(self.arn, self.targets)
    }

    fn parse(_result: &Element) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::elbv2::tests::t;

    #[test]
    fn builds_request() {
        let p = RegisterTargets {
            arn: "arn:tg",
            targets: &[
                t("10.0.0.1", Some(8080), Some("all")),
                t("10.0.0.2", None, None),
            ],
        }
        .form();
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
    }

    #[test]
    fn acks_and_errors() {
        let r = RegisterTargets::parse_response(
            200,
            include_bytes!("../../../tests/data/register_targets.xml"),
        )
        .unwrap();
        assert_eq!(
            r.request_id.as_deref(),
            Some("f9a1e3a7-f3a9-11e5-ae48-cff02092876b")
        );
        let wrong = include_bytes!("../../../tests/data/deregister_targets.xml");
        assert!(RegisterTargets::parse_response(200, wrong).is_err());
        let e = RegisterTargets::parse_response(
            400,
            include_bytes!("../../../tests/data/throttling.xml"),
        )
        .unwrap_err();
        assert_eq!(e.aws_code(), Some("Throttling"));
    }
}
