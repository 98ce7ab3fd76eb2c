//! DescribeTargetGroups, by names (`-tg-name`) or by ARNs (`-check`).
//! API reference: <https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_DescribeTargetGroups.html>.

use super::{number_at, HealthCheck, TargetGroup};
use crate::aws::query::{Action, Params, Service};
use crate::aws::retry::Bucket;
use crate::aws::xml::Element;

/// DescribeTargetGroups of the groups named `names`.
#[derive(Debug, Clone, Copy)]
pub struct DescribeTargetGroups<'a> {
    /// Target group names.
    pub names: &'a [String],
}

impl Action for DescribeTargetGroups<'_> {
    const SERVICE: Service = Service::Elbv2;
    const NAME: &'static str = "DescribeTargetGroups";
    const BUCKET: Bucket = Bucket::Describe;
    type Output = Vec<TargetGroup>;

    fn params(&self) -> Params {
        let member = |(i, n): (usize, &String)| (format!("Names.member.{}", i + 1), n.clone());
        self.names.iter().enumerate().map(member).collect()
    }

    fn parse(result: &Element) -> Result<Vec<TargetGroup>, String> {
        parse_groups(result)
    }
}

/// DescribeTargetGroups of the groups with ARNs `arns` (at most 20 per
/// call, as AWS documents; the caller splits longer lists).
#[derive(Debug, Clone, Copy)]
pub struct DescribeTargetGroupsByArn<'a> {
    /// Target group ARNs.
    pub arns: &'a [String],
}

impl Action for DescribeTargetGroupsByArn<'_> {
    const SERVICE: Service = Service::Elbv2;
    const NAME: &'static str = "DescribeTargetGroups";
    const BUCKET: Bucket = Bucket::Describe;
    type Output = Vec<TargetGroup>;

    fn params(&self) -> Params {
        let member =
            |(i, a): (usize, &String)| (format!("TargetGroupArns.member.{}", i + 1), a.clone());
        self.arns.iter().enumerate().map(member).collect()
    }

    fn parse(result: &Element) -> Result<Vec<TargetGroup>, String> {
        parse_groups(result)
    }
}

/// The `TargetGroups` members of a DescribeTargetGroups result.
fn parse_groups(result: &Element) -> Result<Vec<TargetGroup>, String> {
    let mut groups = Vec::new();
    for m in result.members(&["TargetGroups"]) {
        let arn = m
            .text_at(&["TargetGroupArn"])
            .ok_or("a target group has no TargetGroupArn")?;
        groups.push(TargetGroup {
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
                timeout_seconds: number_at(m, "HealthCheckTimeoutSeconds")?,
                healthy_threshold: number_at(m, "HealthyThresholdCount")?,
                unhealthy_threshold: number_at(m, "UnhealthyThresholdCount")?,
            },
            arn,
        });
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_request() {
        let names = ["a".to_owned(), "b".to_owned()];
        let p = DescribeTargetGroups { names: &names }.form();
        assert_eq!(p[0], ("Action".into(), "DescribeTargetGroups".into()));
        assert_eq!(p[1], ("Version".into(), "2015-12-01".into()));
        assert_eq!(p[3], ("Names.member.2".to_string(), "b".to_string()));
    }

    #[test]
    fn parses_recorded_response() {
        let r = DescribeTargetGroups::parse_response(
            200,
            include_bytes!("../../../tests/data/describe_target_groups.xml"),
        )
        .unwrap();
        assert_eq!(
            r.request_id.as_deref(),
            Some("70092c0e-f3a9-11e5-ae48-cff02092876b")
        );
        let groups = r.value;
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(g.name, "my-targets");
        assert_eq!(g.port, Some(80));
        assert_eq!(g.protocol.as_deref(), Some("TCP"));
        assert_eq!(g.target_type.as_deref(), Some("ip"));
        assert!(g.arn.ends_with("targetgroup/my-targets/73e2d6bc24d8a067"));
        assert_eq!(g.load_balancer_arns.len(), 1);
        assert_eq!(g.health_check.interval_seconds, Some(30));
        assert_eq!(g.health_check.healthy_threshold, Some(3));
        let (earliest, interval) = g.health_pace().unwrap();
        assert_eq!(earliest, std::time::Duration::from_secs(30));
        assert_eq!(interval, std::time::Duration::from_secs(30));
        assert_eq!(g.ip_address_type.as_deref(), Some("ipv4"));
        let hc = &g.health_check;
        assert_eq!(hc.protocol.as_deref(), Some("TCP"));
        assert_eq!(hc.port.as_deref(), Some("traffic-port"));
        assert_eq!(hc.path.as_deref(), Some("/"));
        assert_eq!(hc.interval_seconds, Some(30));
        assert_eq!(hc.timeout_seconds, Some(10));
        assert_eq!(hc.healthy_threshold, Some(3));
        assert_eq!(hc.unhealthy_threshold, Some(3));
        assert_eq!(hc.enabled, None);
    }

    #[test]
    fn by_arn_builds_request_and_reads_address_type_and_load_balancers() {
        let arns = ["arn:a".to_owned(), "arn:b".to_owned()];
        let p = DescribeTargetGroupsByArn { arns: &arns }.form();
        assert_eq!(p[0], ("Action".into(), "DescribeTargetGroups".into()));
        assert_eq!(
            p[3],
            ("TargetGroupArns.member.2".to_string(), "arn:b".to_string())
        );
        let body = br#"<DescribeTargetGroupsResponse><DescribeTargetGroupsResult><TargetGroups>
          <member><TargetGroupArn>arn:a</TargetGroupArn><TargetGroupName>a</TargetGroupName>
            <HealthCheckEnabled>true</HealthCheckEnabled><HealthCheckIntervalSeconds>10</HealthCheckIntervalSeconds>
            <LoadBalancerArns/><TargetType>ip</TargetType><IpAddressType>ipv6</IpAddressType></member>
        </TargetGroups></DescribeTargetGroupsResult></DescribeTargetGroupsResponse>"#;
        let g = &DescribeTargetGroupsByArn::parse_response(200, body)
            .unwrap()
            .value[0];
        assert_eq!(g.ip_address_type.as_deref(), Some("ipv6"));
        assert!(g.load_balancer_arns.is_empty());
        assert_eq!(g.health_check.enabled, Some(true));
        assert_eq!(g.health_check.interval_seconds, Some(10));
        let bad = br#"<DescribeTargetGroupsResponse><DescribeTargetGroupsResult><TargetGroups>
          <member><TargetGroupArn>arn:a</TargetGroupArn><HealthyThresholdCount>many</HealthyThresholdCount></member>
        </TargetGroups></DescribeTargetGroupsResult></DescribeTargetGroupsResponse>"#;
        let e = DescribeTargetGroupsByArn::parse_response(200, bad).unwrap_err();
        assert!(e.to_string().contains("HealthyThresholdCount"), "{e}");
    }

    #[test]
    fn health_check_settings_are_optional_but_checked() {
        let body = |interval: &str| {
            format!(
                "<DescribeTargetGroupsResponse><DescribeTargetGroupsResult><TargetGroups><member>\
                 <TargetGroupArn>arn:tg</TargetGroupArn>{interval}\
                 </member></TargetGroups></DescribeTargetGroupsResult></DescribeTargetGroupsResponse>"
            )
        };
        let g = DescribeTargetGroups::parse_response(200, body("").as_bytes()).unwrap();
        assert_eq!(g.value[0].health_check.interval_seconds, None);
        assert_eq!(g.value[0].health_pace(), None);
        let bad = "<HealthCheckIntervalSeconds>-5</HealthCheckIntervalSeconds>";
        assert!(DescribeTargetGroups::parse_response(200, body(bad).as_bytes()).is_err());
    }

    #[test]
    fn parses_ip_address_type() {
        let body = br#"<DescribeTargetGroupsResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">
  <DescribeTargetGroupsResult>
    <TargetGroups>
      <member>
        <TargetGroupArn>arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/v6/0123456789abcdef</TargetGroupArn>
        <TargetGroupName>v6</TargetGroupName>
        <Port>80</Port>
        <TargetType>ip</TargetType>
        <IpAddressType>ipv6</IpAddressType>
      </member>
    </TargetGroups>
  </DescribeTargetGroupsResult>
  <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>
</DescribeTargetGroupsResponse>"#;
        let groups = DescribeTargetGroups::parse_response(200, body)
            .unwrap()
            .value;
        assert_eq!(groups[0].ip_address_type.as_deref(), Some("ipv6"));
    }

    #[test]
    fn empty_result_is_no_groups() {
        let body = b"<DescribeTargetGroupsResponse><DescribeTargetGroupsResult/></DescribeTargetGroupsResponse>";
        assert!(DescribeTargetGroups::parse_response(200, body)
            .unwrap()
            .value
            .is_empty());
    }
}
