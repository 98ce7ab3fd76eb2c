//! Region and endpoint resolution, as the AWS SDKs do it.
//!
//! Region: an explicit value (the `-region` flag), then `AWS_REGION`, then
//! `AWS_DEFAULT_REGION`. Endpoints: the service-specific variable
//! (`AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2`, `AWS_ENDPOINT_URL_STS`),
//! then `AWS_ENDPOINT_URL`, then the regional default with the partition's
//! DNS suffix. STS is regional unless `AWS_STS_REGIONAL_ENDPOINTS=legacy`
//! asks for the global endpoint in the regions that had it.

use super::error::Error;
use crate::env::Env;

/// Regions whose STS endpoint was the global one under the legacy setting.
const STS_LEGACY_GLOBAL_REGIONS: &[&str] = &[
    "ap-northeast-1",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "aws-global",
    "ca-central-1",
    "eu-central-1",
    "eu-north-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
];

/// Resolves the region: `explicit`, then `AWS_REGION`, then `AWS_DEFAULT_REGION`.
///
/// # Errors
/// [`Error::Config`] when none is set, or the value is not a plausible
/// region name (lowercase letters, digits and dashes).
pub fn resolve_region(explicit: Option<&str>, env: &dyn Env) -> Result<String, Error> {
    let (value, from) = match explicit.filter(|s| !s.is_empty()) {
        Some(r) => (r.to_owned(), "-region"),
        None => match env.var("AWS_REGION") {
            Some(r) => (r, "AWS_REGION"),
            None => match env.var("AWS_DEFAULT_REGION") {
                Some(r) => (r, "AWS_DEFAULT_REGION"),
                None => {
                    return Err(Error::Config(
                        "no region: set -region, NLB_REGION, AWS_REGION or AWS_DEFAULT_REGION"
                            .into(),
                    ))
                }
            },
        },
    };
    let valid = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(Error::Config(format!("{from}: invalid region {value:?}")));
    }
    Ok(value)
}

/// DNS suffix of the partition a region belongs to.
pub fn dns_suffix(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else if region.starts_with("us-isob-") {
        "sc2s.sgov.gov"
    } else if region.starts_with("us-isof-") {
        "csp.hci.ic.gov"
    } else if region.starts_with("us-iso-") {
        "c2s.ic.gov"
    } else if region.starts_with("eu-isoe-") {
        "cloud.adc-e.uk"
    } else {
        // aws and aws-us-gov
        "amazonaws.com"
    }
}

fn checked(url: String, from: &str) -> Result<String, Error> {
    let trimmed = url.trim_end_matches('/').to_owned();
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => {
            Ok(trimmed)
        }
        _ => Err(Error::Config(format!(
            "{from} must be an http:// or https:// URL with a host: {url:?}"
        ))),
    }
}

/// The ELBv2 endpoint URL (no trailing slash).
///
/// # Errors
/// [`Error::Config`] for an override that is not an http(s) URL.
pub fn elbv2_endpoint(region: &str, env: &dyn Env) -> Result<String, Error> {
    for var in [
        "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2",
        "AWS_ENDPOINT_URL",
    ] {
        if let Some(url) = env.var(var) {
            return checked(url, var);
        }
    }
    Ok(format!(
        "https://elasticloadbalancing.{region}.{}",
        dns_suffix(region)
    ))
}

/// The STS endpoint URL (no trailing slash).
///
/// # Errors
/// [`Error::Config`] for an override that is not an http(s) URL, or an
/// `AWS_STS_REGIONAL_ENDPOINTS` other than `regional` or `legacy`.
pub fn sts_endpoint(region: &str, env: &dyn Env) -> Result<String, Error> {
    for var in ["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"] {
        if let Some(url) = env.var(var) {
            return checked(url, var);
        }
    }
    let legacy = match env.var("AWS_STS_REGIONAL_ENDPOINTS").as_deref() {
        None | Some("regional") => false,
        Some("legacy") => true,
        Some(other) => {
            return Err(Error::Config(format!(
                "AWS_STS_REGIONAL_ENDPOINTS must be regional or legacy, not {other:?}"
            )))
        }
    };
    if legacy && STS_LEGACY_GLOBAL_REGIONS.contains(&region) || region == "aws-global" {
        return Ok("https://sts.amazonaws.com".to_owned());
    }
    Ok(format!("https://sts.{region}.{}", dns_suffix(region)))
}

#[cfg(test)]
mod tests {
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
        assert_eq!(
            resolve_region(None, &env(&[("AWS_DEFAULT_REGION", "us-east-1")])).unwrap(),
            "us-east-1"
        );
        assert!(resolve_region(None, &env(&[]))
            .unwrap_err()
            .to_string()
            .contains("no region"));
        let e = resolve_region(None, &env(&[("AWS_REGION", "EU West")])).unwrap_err();
        assert!(e.to_string().contains("AWS_REGION"), "{e}");
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            elbv2_endpoint("eu-west-1", &env(&[])).unwrap(),
            "https://elasticloadbalancing.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            elbv2_endpoint("cn-north-1", &env(&[])).unwrap(),
            "https://elasticloadbalancing.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            elbv2_endpoint("us-gov-west-1", &env(&[])).unwrap(),
            "https://elasticloadbalancing.us-gov-west-1.amazonaws.com"
        );
        let e = env(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1/"),
            (
                "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2",
                "http://127.0.0.1:2",
            ),
        ]);
        assert_eq!(elbv2_endpoint("x", &e).unwrap(), "http://127.0.0.1:2");
        assert_eq!(sts_endpoint("x", &e).unwrap(), "http://127.0.0.1:1");
        assert!(elbv2_endpoint("x", &env(&[("AWS_ENDPOINT_URL", "localhost:4566")])).is_err());
        assert!(elbv2_endpoint("x", &env(&[("AWS_ENDPOINT_URL", "http://")])).is_err());
    }

    #[test]
    fn sts_regional_and_legacy() {
        assert_eq!(
            sts_endpoint("us-east-1", &env(&[])).unwrap(),
            "https://sts.us-east-1.amazonaws.com"
        );
        assert_eq!(
            sts_endpoint("cn-northwest-1", &env(&[])).unwrap(),
            "https://sts.cn-northwest-1.amazonaws.com.cn"
        );
        let legacy = env(&[("AWS_STS_REGIONAL_ENDPOINTS", "legacy")]);
        assert_eq!(
            sts_endpoint("us-east-1", &legacy).unwrap(),
            "https://sts.amazonaws.com"
        );
        assert_eq!(
            sts_endpoint("af-south-1", &legacy).unwrap(),
            "https://sts.af-south-1.amazonaws.com"
        );
        assert!(sts_endpoint(
            "us-east-1",
            &env(&[("AWS_STS_REGIONAL_ENDPOINTS", "global")])
        )
        .is_err());
    }
}
