use super::*;
use crate::env::test_env as env;

#[test]
fn region_order() {
    let e = env(&[
        ("AWS_REGION", "eu-west-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ]);
    assert_eq!(
        resolve_region(Some("ap-south-1"), &e).unwrap(),
        "ap-south-1"
    );
    assert_eq!(resolve_region(None, &e).unwrap(), "eu-west-1");
    let e = env(&[("AWS_DEFAULT_REGION", "us-east-1")]);
    assert_eq!(resolve_region(None, &e).unwrap(), "us-east-1");
    let e = resolve_region(None, &env(&[])).unwrap_err();
    assert!(e.to_string().contains("no region"), "{e}");
    let e = resolve_region(None, &env(&[("AWS_REGION", "EU West")])).unwrap_err();
    assert!(e.to_string().contains("AWS_REGION"), "{e}");
}

const FIPS: (&str, &str) = ("AWS_USE_FIPS_ENDPOINT", "true");
const DUAL: (&str, &str) = ("AWS_USE_DUALSTACK_ENDPOINT", "TRUE");
const LEGACY: (&str, &str) = ("AWS_STS_REGIONAL_ENDPOINTS", "legacy");
const ELB: (&str, &str) = (
    "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2",
    "http://127.0.0.1:2/",
);
const STS: (&str, &str) = ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:3");
const ANY: (&str, &str) = ("AWS_ENDPOINT_URL", "http://127.0.0.1:1");
const IGNORE: (&str, &str) = ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true");

/// Hosts as the SDKs resolve them: the ELBv2 and STS rule sets' generated
/// tests (aws-sdk-net, aws-sdk-go-v2) and the partitions table.
#[test]
fn hosts() {
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
    );
    let elbv2: &[Case] = &[
        (
            "us-east-1",
            &[],
            "https://elasticloadbalancing.us-east-1.amazonaws.com",
        ),
        (
            "us-east-1",
            &[FIPS],
            "https://elasticloadbalancing-fips.us-east-1.amazonaws.com",
        ),
        (
            "us-east-1",
            &[DUAL],
            "https://elasticloadbalancing.us-east-1.api.aws",
        ),
        (
            "us-east-1",
            &[FIPS, DUAL],
            "https://elasticloadbalancing-fips.us-east-1.api.aws",
        ),
        // GovCloud's ordinary endpoint is the FIPS one.
        (
            "us-gov-east-1",
            &[FIPS],
            "https://elasticloadbalancing.us-gov-east-1.amazonaws.com",
        ),
        (
            "us-gov-east-1",
            &[FIPS, DUAL],
            "https://elasticloadbalancing-fips.us-gov-east-1.api.aws",
        ),
        (
            "cn-north-1",
            &[],
            "https://elasticloadbalancing.cn-north-1.amazonaws.com.cn",
        ),
        (
            "cn-north-1",
            &[DUAL],
            "https://elasticloadbalancing.cn-north-1.api.amazonwebservices.com.cn",
        ),
        (
            "eusc-de-east-1",
            &[FIPS],
            "https://elasticloadbalancing-fips.eusc-de-east-1.amazonaws.eu",
        ),
        (
            "us-iso-east-1",
            &[],
            "https://elasticloadbalancing.us-iso-east-1.c2s.ic.gov",
        ),
        (
            "us-isob-east-1",
            &[],
            "https://elasticloadbalancing.us-isob-east-1.sc2s.sgov.gov",
        ),
        (
            "eu-isoe-west-1",
            &[],
            "https://elasticloadbalancing.eu-isoe-west-1.cloud.adc-e.uk",
        ),
        (
            "us-isof-south-1",
            &[],
            "https://elasticloadbalancing.us-isof-south-1.csp.hci.ic.gov",
        ),
        // Explicit URLs win over FIPS and dual-stack, unless ignored.
        ("us-east-1", &[FIPS, DUAL, ELB, ANY], "http://127.0.0.1:2"),
        ("x", &[ANY, STS], "http://127.0.0.1:1"),
        (
            "eu-west-1",
            &[ANY, IGNORE],
            "https://elasticloadbalancing.eu-west-1.amazonaws.com",
        ),
        ("aws-global", &[ANY], "http://127.0.0.1:1"),
    ];
    let sts: &[Case] = &[
        ("us-east-1", &[], "https://sts.us-east-1.amazonaws.com"),
        // The legacy global endpoint is gone: every current SDK is regional.
        (
            "us-east-1",
            &[LEGACY],
            "https://sts.us-east-1.amazonaws.com",
        ),
        (
            "us-gov-west-1",
            &[FIPS],
            "https://sts.us-gov-west-1.amazonaws.com",
        ),
        (
            "cn-northwest-1",
            &[],
            "https://sts.cn-northwest-1.amazonaws.com.cn",
        ),
        ("us-east-1", &[FIPS, DUAL, ELB, STS], "http://127.0.0.1:3"),
        ("x", &[ANY, ELB], "http://127.0.0.1:1"),
        (
            "eu-west-1",
            &[STS, IGNORE],
            "https://sts.eu-west-1.amazonaws.com",
        ),
    ];
    for (region, vars, url) in elbv2 {
        assert_eq!(
            endpoint("elasticloadbalancing", region, &env(vars)).unwrap(),
            *url,
            "{region} {vars:?}"
        );
    }
    for (region, vars, url) in sts {
        assert_eq!(
            endpoint("sts", region, &env(vars)).unwrap(),
            *url,
            "{region} {vars:?}"
        );
    }
}

#[test]
fn errors() {
    let elbv2 = |vars: &[(&str, &str)]| {
        endpoint("elasticloadbalancing", "us-east-1", &env(vars))
            .unwrap_err()
            .to_string()
    };
    assert!(elbv2(&[("AWS_ENDPOINT_URL", "localhost:4566")]).contains("http:// or https:// URL"));
    assert!(elbv2(&[("AWS_ENDPOINT_URL", "http://")]).contains("AWS_ENDPOINT_URL"));
    for name in [
        "AWS_USE_FIPS_ENDPOINT",
        "AWS_USE_DUALSTACK_ENDPOINT",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    ] {
        assert!(elbv2(&[(name, "1")]).contains(&format!("{name} must be true or false")));
    }
    let e = endpoint("elasticloadbalancing", "aws-cn-global", &env(&[])).unwrap_err();
    assert!(e.to_string().contains("no ELBv2 endpoint"), "{e}");
    let e = endpoint("sts", "aws-global", &env(&[])).unwrap_err();
    assert!(e.to_string().contains("no STS endpoint"), "{e}");
}
