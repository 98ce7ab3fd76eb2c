use super::*;

/// Each action draws from its ELBv2 token bucket (ELB user guide,
/// "Request throttling for the ELB API"); STS calls from none.
#[test]
fn buckets_of_actions() {
    use crate::aws::credentials::Role;
    use crate::aws::query::Action;
    use crate::aws::retry::Bucket;
    use crate::aws::sts::{AssumeRoleWithWebIdentity, GetCallerIdentity};
    assert_eq!(DescribeTargetGroups::BUCKET, Bucket::Describe);
    assert_eq!(DescribeTargetHealth::BUCKET, Bucket::Describe);
    assert_eq!(DescribeTargetGroupAttributes::BUCKET, Bucket::Describe);
    assert_eq!(RegisterTargets::BUCKET, Bucket::Mutating);
    assert_eq!(DeregisterTargets::BUCKET, Bucket::Mutating);
    assert_eq!(AssumeRoleWithWebIdentity::BUCKET, Bucket::Other);
    assert_eq!(Role::BUCKET, Bucket::Other);
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
        state: State::from("healthy"),
        reason: None,
        description: None,
    };
    let entries = [h("10.0.1.23", Some(80)), h("192.168.7.4", Some(8080))];
    assert!(find_health(&entries, &t("192.168.7.4", Some(8080), None)).is_some());
    assert!(find_health(&entries, &t("192.168.7.4", Some(80), None)).is_none());
    assert!(find_health(&entries, &t("10.0.1.23", None, None)).is_some());
}

mod register_targets {
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

mod deregister_targets {
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

mod describe_target_health {
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
        assert_eq!(h[0].state, State::from("healthy"));
        assert_eq!(h[0].target, t("10.0.1.23", Some(80), None));
        assert_eq!(h[1].state, State::from("unhealthy"));
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
            State::from("unhealthy")
        );
        assert!(find_health(&h, &t("192.168.7.4", Some(80), None)).is_none());
        assert_eq!(
            find_health(&h, &t("10.0.1.23", None, None)).unwrap().state,
            State::from("healthy")
        );
    }

    #[test]
    fn parses_draining_and_unused() {
        let h = parse(
            200,
            include_bytes!("../../../tests/data/describe_target_health_draining.xml"),
        )
        .unwrap();
        assert_eq!(h[0].state, State::from("draining"));
        assert!(!h[0].is_gone() && h[0].is_draining());
        let text = include_str!("../../../tests/data/describe_target_health_draining.xml");
        let text = text.replace(">draining<", ">unhealthy.draining<");
        let h = parse(200, text.as_bytes()).unwrap();
        assert_eq!(h[0].state, State::from("unhealthy.draining"));
        assert!(!h[0].is_gone() && h[0].is_draining());
        let h = parse(
            200,
            text.replace(">unhealthy.draining<", ">unhealthy<")
                .as_bytes(),
        );
        assert!(!h.unwrap()[0].is_draining());
        let h = parse(
            200,
            include_bytes!("../../../tests/data/describe_target_health_unused.xml"),
        )
        .unwrap();
        assert_eq!(h[0].state, State::from("unused"));
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
        let new = String::from_utf8_lossy(weird)
            .replace("99999", "9")
            .replace(">x<", ">brand-new<");
        assert_eq!(parse(200, new.as_bytes()).unwrap()[0].state, "brand-new");
    }
}

mod describe_target_groups {
    use super::*;

    #[test]
    fn builds_request() {
        let names = ["a".to_owned(), "b".to_owned()];
        let p = DescribeTargetGroups {
            names: &names,
            by_arn: false,
        }
        .form();
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
        let interval = g.health_pace();
        assert_eq!(interval, Some(std::time::Duration::from_secs(30)));
        assert_eq!(g.ip_address_type.as_deref(), Some("ipv4"));
        let hc = &g.health_check;
        assert_eq!(hc.protocol.as_deref(), Some("TCP"));
        assert_eq!(hc.port.as_deref(), Some("traffic-port"));
        assert_eq!(hc.path.as_deref(), Some("/"));
        assert_eq!(hc.interval_seconds, Some(30));
        assert_eq!(hc.healthy_threshold, Some(3));
        assert_eq!(hc.unhealthy_threshold, Some(3));
        assert_eq!(hc.enabled, None);
    }

    #[test]
    fn by_arn_builds_request_and_reads_address_type_and_load_balancers() {
        let arns = ["arn:a".to_owned(), "arn:b".to_owned()];
        let p = DescribeTargetGroups {
            names: &arns,
            by_arn: true,
        }
        .form();
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
        let g = &DescribeTargetGroups::parse_response(200, body)
            .unwrap()
            .value[0];
        assert_eq!(g.ip_address_type.as_deref(), Some("ipv6"));
        assert!(g.load_balancer_arns.is_empty());
        assert_eq!(g.health_check.enabled, Some(true));
        assert_eq!(g.health_check.interval_seconds, Some(10));
        let bad = br#"<DescribeTargetGroupsResponse><DescribeTargetGroupsResult><TargetGroups>
          <member><TargetGroupArn>arn:a</TargetGroupArn><HealthyThresholdCount>many</HealthyThresholdCount></member>
        </TargetGroups></DescribeTargetGroupsResult></DescribeTargetGroupsResponse>"#;
        let e = DescribeTargetGroups::parse_response(200, bad).unwrap_err();
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
        let zero = "<HealthCheckIntervalSeconds>0</HealthCheckIntervalSeconds>";
        let g = DescribeTargetGroups::parse_response(200, body(zero).as_bytes()).unwrap();
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

mod describe_target_group_attributes {
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
