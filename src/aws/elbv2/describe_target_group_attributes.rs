//! DescribeTargetGroupAttributes: the group settings `-check` reads.
//! API reference: <https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_DescribeTargetGroupAttributes.html>.

use crate::aws::query::{Action, Params, Service};
use crate::aws::retry::Bucket;
use crate::aws::xml::Element;

/// The attribute that says how long a deregistered target drains.
pub const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";
/// Whether an NLB resets established connections to an unhealthy target
/// (default true).
pub const UNHEALTHY_TERMINATION: &str =
    "target_health_state.unhealthy.connection_termination.enabled";
/// How long an unhealthy target keeps its connections when
/// [`UNHEALTHY_TERMINATION`] is false (default 0).
pub const UNHEALTHY_DRAINING: &str = "target_health_state.unhealthy.draining_interval_seconds";

/// DescribeTargetGroupAttributes of the group `arn`: its attributes as
/// `(Key, Value)` pairs, in the answer's order.
#[derive(Debug, Clone, Copy)]
pub struct DescribeTargetGroupAttributes<'a> {
    /// Target group ARN.
    pub arn: &'a str,
}

impl Action for DescribeTargetGroupAttributes<'_> {
    const SERVICE: Service = Service::Elbv2;
    const NAME: &'static str = "DescribeTargetGroupAttributes";
    const BUCKET: Bucket = Bucket::Describe;
    type Output = Vec<(String, String)>;

    fn params(&self) -> Params {
        vec![("TargetGroupArn".to_owned(), self.arn.to_owned())]
    }

    fn parse(result: &Element) -> Result<Vec<(String, String)>, String> {
        result
            .members(&["Attributes"])
            .iter()
            .map(|m| {
                let key = m.text_at(&["Key"]).ok_or("an attribute has no Key")?;
                Ok((key, m.text_at(&["Value"]).unwrap_or_default()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_request_and_parses_recorded_response() {
        let p = DescribeTargetGroupAttributes { arn: "arn:tg" }.form();
        assert_eq!(p[0].1, "DescribeTargetGroupAttributes");
        assert_eq!(p[2], ("TargetGroupArn".into(), "arn:tg".into()));
        let r = DescribeTargetGroupAttributes::parse_response(
            200,
            include_bytes!("../../../tests/data/describe_target_group_attributes.xml"),
        )
        .unwrap();
        assert_eq!(
            r.request_id.as_deref(),
            Some("54618294-f3a8-11e5-bb98-57195a6eb84a")
        );
        let delay = r.value.iter().find(|(k, _)| k == DEREGISTRATION_DELAY);
        assert_eq!(delay.map(|(_, v)| v.as_str()), Some("300"));
        assert_eq!(r.value.len(), 4);
    }

    #[test]
    fn rejects_a_member_without_key() {
        let body = b"<DescribeTargetGroupAttributesResponse><DescribeTargetGroupAttributesResult><Attributes><member><Value>1</Value></member></Attributes></DescribeTargetGroupAttributesResult></DescribeTargetGroupAttributesResponse>";
        assert!(DescribeTargetGroupAttributes::parse_response(200, body).is_err());
    }
}
