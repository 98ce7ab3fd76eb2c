//! Region and endpoint resolution, as the AWS SDKs do it.
//!
//! Region: an explicit value (the `-region` flag), then `AWS_REGION`, then
//! `AWS_DEFAULT_REGION`. Endpoints: the service-specific variable
//! (`AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2`, `AWS_ENDPOINT_URL_STS`),
//! then `AWS_ENDPOINT_URL`, then the regional endpoint built as the SDKs'
//! endpoint rule sets build it: the partition's DNS suffix (`amazonaws.com`,
//! `amazonaws.com.cn`, `amazonaws.eu` for the European Sovereign Cloud,
//! ...), with `-fips` after the service name under `AWS_USE_FIPS_ENDPOINT`
//! and the partition's dual-stack suffix (`api.aws`, ...) under
//! `AWS_USE_DUALSTACK_ENDPOINT`. An explicit URL wins over both variables.
//! STS is regional unless `AWS_STS_REGIONAL_ENDPOINTS=legacy` asks for the
//! global endpoint in the regions that had it; the global endpoint (also
//! the one of the pseudo-region `aws-global`) is signed for `us-east-1`.
//! ELBv2 has no global endpoint.
//!
//! Sources of the host names (the unit tests below pin them): the
//! partitions table of the SDKs (`partitions.json` in aws-sdk-js-v3
//! `packages/util-endpoints`, aws-sdk-go-v2 `internal/endpoints/awsrulesfn`,
//! botocore `data/partitions.json`), the STS rule set as generated in
//! aws-sdk-go-v2 `service/sts/endpoints.go`, and the ELBv2 endpoint tests
//! generated from its rule set in aws-sdk-net
//! `sdk/test/Services/ElasticLoadBalancingV2/UnitTests/Generated/Endpoints`.

use super::error::{redact_url, Error};
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

/// An AWS partition's DNS names, as the SDKs' `partitions.json` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// The partition id (`aws`, `aws-cn`, `aws-us-gov`, ...).
    pub name: &'static str,
    /// `dnsSuffix`: the suffix of the ordinary regional endpoints.
    pub dns_suffix: &'static str,
    /// `dualStackDnsSuffix`: the suffix of the dual-stack (IPv4 and IPv6) endpoints.
    pub dual_stack_dns_suffix: &'static str,
}

const AWS: Partition = Partition {
    name: "aws",
    dns_suffix: "amazonaws.com",
    dual_stack_dns_suffix: "api.aws",
};

/// Region prefixes of the partitions other than `aws`, as the SDKs'
/// `regionRegex` values put them (`^cn\-\w+\-\d+$`, `^eusc\-(de)\-\w+\-\d+$`,
/// ...); their pseudo-regions (`aws-cn-global`, ...) name them too.
const PARTITIONS: &[(&str, &str, Partition)] = &[
    (
        "cn-",
        "aws-cn-global",
        Partition {
            name: "aws-cn",
            dns_suffix: "amazonaws.com.cn",
            dual_stack_dns_suffix: "api.amazonwebservices.com.cn",
        },
    ),
    (
        "us-gov-",
        "aws-us-gov-global",
        Partition {
            name: "aws-us-gov",
            dns_suffix: "amazonaws.com",
            dual_stack_dns_suffix: "api.aws",
        },
    ),
    (
        "eusc-",
        "aws-eusc-global",
        Partition {
            name: "aws-eusc",
            dns_suffix: "amazonaws.eu",
            dual_stack_dns_suffix: "api.amazonwebservices.eu",
        },
    ),
    (
        "us-iso-",
        "aws-iso-global",
        Partition {
            name: "aws-iso",
            dns_suffix: "c2s.ic.gov",
            dual_stack_dns_suffix: "api.aws.ic.gov",
        },
    ),
    (
        "us-isob-",
        "aws-iso-b-global",
        Partition {
            name: "aws-iso-b",
            dns_suffix: "sc2s.sgov.gov",
            dual_stack_dns_suffix: "api.aws.scloud",
        },
    ),
    (
        "eu-isoe-",
        "aws-iso-e-global",
        Partition {
            name: "aws-iso-e",
            dns_suffix: "cloud.adc-e.uk",
            dual_stack_dns_suffix: "api.cloud-aws.adc-e.uk",
        },
    ),
    (
        "us-isof-",
        "aws-iso-f-global",
        Partition {
            name: "aws-iso-f",
            dns_suffix: "csp.hci.ic.gov",
            dual_stack_dns_suffix: "api.aws.hci.ic.gov",
        },
    ),
];

/// The partition a region belongs to; `aws` for any region no other
/// partition claims (the SDKs' fallback too).
pub fn partition(region: &str) -> Partition {
    PARTITIONS
        .iter()
        .find(|(prefix, global, _)| region.starts_with(prefix) || region == *global)
        .map(|(_, _, p)| *p)
        .unwrap_or(AWS)
}

/// DNS suffix of the partition a region belongs to.
pub fn dns_suffix(region: &str) -> &'static str {
    partition(region).dns_suffix
}

/// True for the partitions' pseudo-regions (`aws-global`,
/// `aws-cn-global`, ...), which name no place where ELBv2 runs.
fn is_pseudo_region(region: &str) -> bool {
    region == "aws-global" || PARTITIONS.iter().any(|(_, global, _)| region == *global)
}

/// Which endpoint variant the SDK settings ask for:
/// `AWS_USE_FIPS_ENDPOINT` and `AWS_USE_DUALSTACK_ENDPOINT`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Variant {
    /// FIPS 140 endpoints (`AWS_USE_FIPS_ENDPOINT=true`).
    pub fips: bool,
    /// Dual-stack (IPv4 and IPv6) endpoints (`AWS_USE_DUALSTACK_ENDPOINT=true`).
    pub dual_stack: bool,
}

impl Variant {
    /// Reads both variables: `true` or `false` in any case, unset or empty
    /// meaning false.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable for any other value.
    pub fn from_env(env: &dyn Env) -> Result<Self, Error> {
        Ok(Variant {
            fips: env_bool(env, "AWS_USE_FIPS_ENDPOINT")?,
            dual_stack: env_bool(env, "AWS_USE_DUALSTACK_ENDPOINT")?,
        })
    }

    fn describe(self) -> &'static str {
        match (self.fips, self.dual_stack) {
            (true, true) => "FIPS and dual-stack",
            (true, false) => "FIPS",
            (false, true) => "dual-stack",
            (false, false) => "standard",
        }
    }
}

fn env_bool(env: &dyn Env, name: &str) -> Result<bool, Error> {
    match env.var(name) {
        None => Ok(false),
        Some(v) if v.trim().eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.trim().eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(Error::Config(format!(
            "{name} must be true or false, not {v:?}"
        ))),
    }
}

/// The host of a regional endpoint of `service` (`elasticloadbalancing`,
/// `sts`) in `region`, in the SDKs' endpoint rule sets' shape:
/// `{service}-fips.{region}.{dualStackDnsSuffix}`,
/// `{service}-fips.{region}.{dnsSuffix}`, `{service}.{region}.{dualStackDnsSuffix}`
/// or `{service}.{region}.{dnsSuffix}`. In GovCloud the ordinary regional
/// endpoints of ELBv2 and STS are the FIPS ones: FIPS alone keeps the
/// ordinary host there.
fn regional_host(service: &str, region: &str, variant: Variant) -> String {
    let p = partition(region);
    let suffix = if variant.dual_stack {
        p.dual_stack_dns_suffix
    } else {
        p.dns_suffix
    };
    let govcloud_plain = p.name == "aws-us-gov" && !variant.dual_stack;
    let fips = variant.fips && !govcloud_plain;
    let service = if fips {
        format!("{service}-fips")
    } else {
        service.to_owned()
    };
    format!("{service}.{region}.{suffix}")
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
            "{from} must be an http:// or https:// URL with a host: {:?}",
            redact_url(&url)
        ))),
    }
}

/// An explicit endpoint from the first of `vars` that is set. It wins over
/// the FIPS and dual-stack settings, as in the SDKs ("Service-specific
/// endpoints ... override this setting", SDKs and Tools reference guide,
/// Dual-stack and FIPS endpoints). `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`
/// turns every one of them off, as in the SDKs (same guide,
/// "Service-specific endpoints"): the endpoint is then built from the
/// region, and the variables are not even checked.
fn explicit(env: &dyn Env, vars: &[&str]) -> Result<Option<String>, Error> {
    if env_bool(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")? {
        return Ok(None);
    }
    for var in vars {
        if let Some(url) = env.var(var) {
            return checked(url, var).map(Some);
        }
    }
    Ok(None)
}

/// The ELBv2 endpoint URL (no trailing slash).
///
/// # Errors
/// [`Error::Config`] for an override that is not an http(s) URL, an
/// invalid `AWS_USE_FIPS_ENDPOINT` / `AWS_USE_DUALSTACK_ENDPOINT`, or a
/// pseudo-region such as `aws-global` (ELBv2 has no global endpoint).
pub fn elbv2_endpoint(region: &str, env: &dyn Env) -> Result<String, Error> {
    let variant = Variant::from_env(env)?;
    if let Some(url) = explicit(
        env,
        &[
            "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2",
            "AWS_ENDPOINT_URL",
        ],
    )? {
        return Ok(url);
    }
    if is_pseudo_region(region) {
        return Err(Error::Config(format!(
            "region {region} has no ELBv2 endpoint (ELBv2 is regional): set the region of the target groups"
        )));
    }
    Ok(format!(
        "https://{}",
        regional_host("elasticloadbalancing", region, variant)
    ))
}

/// The global STS endpoint (the SDKs sign its requests for `us-east-1`).
pub const STS_GLOBAL: &str = "https://sts.amazonaws.com";

/// The STS endpoint URL (no trailing slash).
///
/// # Errors
/// [`Error::Config`] for an override that is not an http(s) URL, an
/// `AWS_STS_REGIONAL_ENDPOINTS` other than `regional` or `legacy`, an
/// invalid `AWS_USE_FIPS_ENDPOINT` / `AWS_USE_DUALSTACK_ENDPOINT`, or FIPS
/// or dual-stack asked for with the region `aws-global`.
pub fn sts_endpoint(region: &str, env: &dyn Env) -> Result<String, Error> {
    let variant = Variant::from_env(env)?;
    if let Some(url) = explicit(env, &["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"])? {
        return Ok(url);
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
    let standard = variant == Variant::default();
    if standard && (region == "aws-global" || legacy && STS_LEGACY_GLOBAL_REGIONS.contains(&region))
    {
        return Ok(STS_GLOBAL.to_owned());
    }
    if is_pseudo_region(region) {
        // The rule sets would build sts-fips.aws-global.amazonaws.com,
        // a host that does not exist.
        return Err(Error::Config(format!(
            "region {region} has no {} STS endpoint: set a real region",
            variant.describe()
        )));
    }
    Ok(format!("https://{}", regional_host("sts", region, variant)))
}

/// The SigV4 region of a request to the STS endpoint `sts_url`: `us-east-1`
/// for the global endpoint (as the SDKs' STS rule set signs it), the
/// configured region otherwise.
pub fn sts_signing_region<'a>(sts_url: &str, region: &'a str) -> &'a str {
    if sts_url == STS_GLOBAL {
        "us-east-1"
    } else {
        region
    }
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

    fn with(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        env(pairs)
    }

    /// Region, variables, expected host or URL.
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
    );

    const FIPS: (&str, &str) = ("AWS_USE_FIPS_ENDPOINT", "true");
    const DUAL: (&str, &str) = ("AWS_USE_DUALSTACK_ENDPOINT", "true");

    /// ELBv2 host names as the SDKs resolve them: aws-sdk-net
    /// `ElasticLoadBalancingV2EndpointProviderTests.cs` (generated from the
    /// ELBv2 rule set's tests: us-east-1, us-gov-east-1, cn-north-1,
    /// us-iso-east-1), the partitions table for the other suffixes.
    #[test]
    fn elbv2_fips_and_dual_stack() {
        let cases: &[Case] = &[
            (
                "us-east-1",
                &[],
                "elasticloadbalancing.us-east-1.amazonaws.com",
            ),
            (
                "us-east-1",
                &[FIPS],
                "elasticloadbalancing-fips.us-east-1.amazonaws.com",
            ),
            (
                "us-east-1",
                &[DUAL],
                "elasticloadbalancing.us-east-1.api.aws",
            ),
            (
                "us-east-1",
                &[FIPS, DUAL],
                "elasticloadbalancing-fips.us-east-1.api.aws",
            ),
            (
                "us-gov-east-1",
                &[],
                "elasticloadbalancing.us-gov-east-1.amazonaws.com",
            ),
            // GovCloud's ordinary ELBv2 endpoint is the FIPS one.
            (
                "us-gov-east-1",
                &[FIPS],
                "elasticloadbalancing.us-gov-east-1.amazonaws.com",
            ),
            (
                "us-gov-east-1",
                &[DUAL],
                "elasticloadbalancing.us-gov-east-1.api.aws",
            ),
            (
                "us-gov-east-1",
                &[FIPS, DUAL],
                "elasticloadbalancing-fips.us-gov-east-1.api.aws",
            ),
            (
                "cn-north-1",
                &[],
                "elasticloadbalancing.cn-north-1.amazonaws.com.cn",
            ),
            (
                "cn-north-1",
                &[FIPS],
                "elasticloadbalancing-fips.cn-north-1.amazonaws.com.cn",
            ),
            (
                "cn-north-1",
                &[DUAL],
                "elasticloadbalancing.cn-north-1.api.amazonwebservices.com.cn",
            ),
            (
                "cn-north-1",
                &[FIPS, DUAL],
                "elasticloadbalancing-fips.cn-north-1.api.amazonwebservices.com.cn",
            ),
            (
                "eusc-de-east-1",
                &[],
                "elasticloadbalancing.eusc-de-east-1.amazonaws.eu",
            ),
            (
                "eusc-de-east-1",
                &[FIPS],
                "elasticloadbalancing-fips.eusc-de-east-1.amazonaws.eu",
            ),
            (
                "eusc-de-east-1",
                &[DUAL],
                "elasticloadbalancing.eusc-de-east-1.api.amazonwebservices.eu",
            ),
            (
                "us-iso-east-1",
                &[],
                "elasticloadbalancing.us-iso-east-1.c2s.ic.gov",
            ),
            (
                "us-iso-east-1",
                &[FIPS],
                "elasticloadbalancing-fips.us-iso-east-1.c2s.ic.gov",
            ),
            (
                "us-isob-east-1",
                &[],
                "elasticloadbalancing.us-isob-east-1.sc2s.sgov.gov",
            ),
            (
                "eu-isoe-west-1",
                &[],
                "elasticloadbalancing.eu-isoe-west-1.cloud.adc-e.uk",
            ),
            (
                "us-isof-south-1",
                &[],
                "elasticloadbalancing.us-isof-south-1.csp.hci.ic.gov",
            ),
            (
                "mx-central-1",
                &[DUAL],
                "elasticloadbalancing.mx-central-1.api.aws",
            ),
        ];
        for (region, vars, host) in cases {
            assert_eq!(
                elbv2_endpoint(region, &with(vars)).unwrap(),
                format!("https://{host}"),
                "{region} {vars:?}"
            );
        }
    }

    /// STS host names and signing regions as aws-sdk-go-v2
    /// `service/sts/endpoints.go` (generated from the STS rule set) builds
    /// them.
    #[test]
    fn sts_fips_dual_stack_and_global() {
        let cases: &[Case] = &[
            (
                "us-east-1",
                &[FIPS],
                "https://sts-fips.us-east-1.amazonaws.com",
            ),
            ("us-east-1", &[DUAL], "https://sts.us-east-1.api.aws"),
            (
                "us-east-1",
                &[FIPS, DUAL],
                "https://sts-fips.us-east-1.api.aws",
            ),
            (
                "us-gov-west-1",
                &[FIPS],
                "https://sts.us-gov-west-1.amazonaws.com",
            ),
            (
                "us-gov-west-1",
                &[FIPS, DUAL],
                "https://sts-fips.us-gov-west-1.api.aws",
            ),
            (
                "cn-north-1",
                &[DUAL],
                "https://sts.cn-north-1.api.amazonwebservices.com.cn",
            ),
            (
                "eusc-de-east-1",
                &[],
                "https://sts.eusc-de-east-1.amazonaws.eu",
            ),
            (
                "eusc-de-east-1",
                &[FIPS],
                "https://sts-fips.eusc-de-east-1.amazonaws.eu",
            ),
            ("aws-global", &[], "https://sts.amazonaws.com"),
            // FIPS and dual-stack have no global endpoint: regional, as in the rule set.
            (
                "us-east-1",
                &[("AWS_STS_REGIONAL_ENDPOINTS", "legacy"), FIPS],
                "https://sts-fips.us-east-1.amazonaws.com",
            ),
            (
                "eu-west-1",
                &[("AWS_STS_REGIONAL_ENDPOINTS", "legacy")],
                "https://sts.amazonaws.com",
            ),
        ];
        for (region, vars, url) in cases {
            assert_eq!(
                sts_endpoint(region, &with(vars)).unwrap(),
                *url,
                "{region} {vars:?}"
            );
        }
        assert_eq!(sts_signing_region(STS_GLOBAL, "aws-global"), "us-east-1");
        assert_eq!(sts_signing_region(STS_GLOBAL, "eu-west-1"), "us-east-1");
        assert_eq!(
            sts_signing_region("https://sts.eu-west-1.amazonaws.com", "eu-west-1"),
            "eu-west-1"
        );
        let e = sts_endpoint("aws-global", &with(&[FIPS]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no FIPS STS endpoint"), "{e}");
    }

    #[test]
    fn elbv2_has_no_global_endpoint() {
        for region in ["aws-global", "aws-cn-global", "aws-us-gov-global"] {
            let e = elbv2_endpoint(region, &with(&[])).unwrap_err().to_string();
            assert!(e.contains("no ELBv2 endpoint"), "{e}");
        }
        // An explicit endpoint is the user's call.
        let e = with(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:1")]);
        assert_eq!(
            elbv2_endpoint("aws-global", &e).unwrap(),
            "http://127.0.0.1:1"
        );
    }

    #[test]
    fn ignore_configured_endpoint_urls() {
        let urls = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:2"),
            ("AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2", "not a url"),
        ];
        for on in ["true", "TRUE", " True "] {
            let mut e = with(&urls);
            e.insert("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS".into(), on.into());
            assert_eq!(
                elbv2_endpoint("eu-west-1", &e).unwrap(),
                "https://elasticloadbalancing.eu-west-1.amazonaws.com"
            );
            assert_eq!(
                sts_endpoint("eu-west-1", &e).unwrap(),
                "https://sts.eu-west-1.amazonaws.com"
            );
        }
        for off in ["false", ""] {
            let mut e = with(&urls[..2]);
            e.insert("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS".into(), off.into());
            assert_eq!(
                elbv2_endpoint("eu-west-1", &e).unwrap(),
                "http://127.0.0.1:1"
            );
            assert_eq!(sts_endpoint("eu-west-1", &e).unwrap(), "http://127.0.0.1:2");
        }
        let mut e = with(&urls);
        e.insert("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS".into(), "yes".into());
        let err = elbv2_endpoint("eu-west-1", &e).unwrap_err().to_string();
        assert!(
            err.contains("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS must be true or false"),
            "{err}"
        );
    }

    #[test]
    fn explicit_endpoints_win_over_fips_and_dual_stack() {
        let e = with(&[
            FIPS,
            DUAL,
            (
                "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2",
                "http://127.0.0.1:2",
            ),
            ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:3"),
        ]);
        assert_eq!(
            elbv2_endpoint("us-east-1", &e).unwrap(),
            "http://127.0.0.1:2"
        );
        assert_eq!(sts_endpoint("us-east-1", &e).unwrap(), "http://127.0.0.1:3");
        // Only the service with an explicit URL keeps it.
        let e = with(&[FIPS, ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:3")]);
        assert_eq!(
            elbv2_endpoint("us-east-1", &e).unwrap(),
            "https://elasticloadbalancing-fips.us-east-1.amazonaws.com"
        );
    }

    #[test]
    fn boolean_variables() {
        for (v, want) in [
            ("true", true),
            ("TRUE", true),
            ("False", false),
            ("", false),
        ] {
            let e = with(&[
                ("AWS_USE_FIPS_ENDPOINT", v),
                ("AWS_USE_DUALSTACK_ENDPOINT", v),
            ]);
            assert_eq!(
                Variant::from_env(&e).unwrap(),
                Variant {
                    fips: want,
                    dual_stack: want
                }
            );
        }
        for (name, v) in [
            ("AWS_USE_FIPS_ENDPOINT", "1"),
            ("AWS_USE_DUALSTACK_ENDPOINT", "yes"),
        ] {
            let err = elbv2_endpoint("us-east-1", &with(&[(name, v)])).unwrap_err();
            assert!(matches!(err, Error::Config(_)));
            let msg = err.to_string();
            assert!(msg.contains(name) && msg.contains("true or false"), "{msg}");
            assert!(sts_endpoint("us-east-1", &with(&[(name, v)])).is_err());
        }
    }

    #[test]
    fn partitions() {
        assert_eq!(partition("eusc-de-east-1").name, "aws-eusc");
        assert_eq!(partition("us-isob-east-1").name, "aws-iso-b");
        assert_eq!(partition("us-iso-west-1").name, "aws-iso");
        assert_eq!(partition("aws-us-gov-global").name, "aws-us-gov");
        assert_eq!(partition("il-central-1").name, "aws");
        assert_eq!(dns_suffix("eusc-de-east-1"), "amazonaws.eu");
    }
}
