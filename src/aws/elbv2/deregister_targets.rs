//! DeregisterTargets: takes the pod's IP out of a target group (success
//! for a target not registered, says AWS, unlike moto).
//! API reference: <https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_DeregisterTargets.html>.

use super::{group_and_targets, Target};
use crate::aws::query::{Action, Params, Service};
use crate::aws::retry::Bucket;
use crate::aws::xml::Element;

/// DeregisterTargets of `targets` from the group `arn`. The answer holds
/// nothing but its request id.
#[derive(Debug, Clone, Copy)]
pub struct DeregisterTargets<'a> {
    /// Target group ARN.
    pub arn: &'a str,
    /// Targets to deregister.
    pub targets: &'a [Target],
}

impl Action for DeregisterTargets<'_> {
    const SERVICE: Service = Service::Elbv2;
    const NAME: &'static str = "DeregisterTargets";
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

    #[test]
    fn builds_request_and_parses_recorded_response() {
        let p = DeregisterTargets {
            arn: "arn:tg",
            targets: &[],
        }
        .form();
        assert_eq!(p[0].1, "DeregisterTargets");
        assert_eq!(p[2], ("TargetGroupArn".into(), "arn:tg".into()));
        let r = DeregisterTargets::parse_response(
            200,
            include_bytes!("../../../tests/data/deregister_targets.xml"),
        )
        .unwrap();
        assert_eq!(
            r.request_id.as_deref(),
            Some("b7ba7b6e-f3a9-11e5-ae48-cff02092876b")
        );
    }
}
