//! Region and endpoints, as the AWS SDKs resolve them: the service's
//! `AWS_ENDPOINT_URL_*`, then `AWS_ENDPOINT_URL`, then
//! `{service}[-fips].{region}.{suffix}` by partition (dual-stack too).

use super::error::{redact_url, Error};
use crate::env::Env;

/// Regions whose STS endpoint was the global one under the legacy setting.
const STS_LEGACY_GLOBAL_REGIONS: &str = "ap-northeast-1 ap-south-1 ap-southeast-1 \
    ap-southeast-2 aws-global ca-central-1 eu-central-1 eu-north-1 eu-west-1 eu-west-2 \
    eu-west-3 sa-east-1 us-east-1 us-east-2 us-west-1 us-west-2";

/// Resolves the region: `explicit`, then `AWS_REGION`, then `AWS_DEFAULT_REGION`.
///
/// # Errors
/// [`Error::Config`] when none is set, or the value is not a plausible
/// region name (lowercase letters, digits and dashes).
pub fn resolve_region(explicit: Option<&str>, env: &dyn Env) -> Result<String, Error> {
    let explicit = explicit.filter(|s| !s.is_empty()).map(str::to_owned);
    let (value, from) = [
        (explicit, "-region"),
        (env.var("AWS_REGION"), "AWS_REGION"),
        (env.var("AWS_DEFAULT_REGION"), "AWS_DEFAULT_REGION"),
    ]
    .into_iter()
    .find_map(|(value, from)| Some((value?, from)))
    .ok_or_else(|| {
        let set = "set -region, NLB_REGION, AWS_REGION or AWS_DEFAULT_REGION";
        Error::Config(format!("no region: {set}"))
    })?;
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    if value.is_empty() || value.len() > 64 || !value.bytes().all(ok) {
        return Err(Error::Config(format!("{from}: invalid region {value:?}")));
    }
    Ok(value)
}

/// Region prefix, DNS suffix and dual-stack suffix of the partitions other
/// than `aws` (`amazonaws.com`, `api.aws`).
const PARTITIONS: [(&str, &str, &str); 6] = [
    ("cn-", "amazonaws.com.cn", "api.amazonwebservices.com.cn"),
    ("eusc-", "amazonaws.eu", "api.amazonwebservices.eu"),
    ("us-iso-", "c2s.ic.gov", "api.aws.ic.gov"),
    ("us-isob-", "sc2s.sgov.gov", "api.aws.scloud"),
    ("eu-isoe-", "cloud.adc-e.uk", "api.cloud-aws.adc-e.uk"),
    ("us-isof-", "csp.hci.ic.gov", "api.aws.hci.ic.gov"),
];

/// The regional endpoint of `service`. In GovCloud the ordinary endpoints
/// of ELBv2 and STS are the FIPS ones: FIPS alone keeps the ordinary host.
fn regional(service: &str, region: &str, (fips, dual): (bool, bool)) -> Result<String, Error> {
    let shown = if service == "sts" { "STS" } else { "ELBv2" };
    // `aws-global`, `aws-cn-global`: pseudo-regions, where ELBv2 does not run.
    if region.starts_with("aws-") && region.ends_with("-global") {
        return Err(Error::Config(format!(
            "region {region} has no {shown} endpoint (it is regional): set the region of the target groups"
        )));
    }
    let partition = PARTITIONS
        .iter()
        .find(|(prefix, ..)| region.starts_with(prefix));
    let (_, plain, dual_suffix) = partition.unwrap_or(&("", "amazonaws.com", "api.aws"));
    let suffix = if dual { dual_suffix } else { plain };
    let fips = fips && (dual || !region.starts_with("us-gov-"));
    let fips = if fips { "-fips" } else { "" };
    Ok(format!("https://{service}{fips}.{region}.{suffix}"))
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

/// `AWS_USE_FIPS_ENDPOINT` and `AWS_USE_DUALSTACK_ENDPOINT` (checked even
/// when an explicit URL wins).
fn variant(env: &dyn Env) -> Result<(bool, bool), Error> {
    Ok((
        env_bool(env, "AWS_USE_FIPS_ENDPOINT")?,
        env_bool(env, "AWS_USE_DUALSTACK_ENDPOINT")?,
    ))
}

/// An explicit endpoint from the first of `vars` that is set; it wins over
/// FIPS and dual-stack, as in the SDKs.
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
/// [`Error::Config`] for an override that is not an http(s) URL, a
/// boolean variable that is not `true`/`false`, or a pseudo-region.
pub fn elbv2_endpoint(region: &str, env: &dyn Env) -> Result<String, Error> {
    let variant = variant(env)?;
    let vars = [
        "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2",
        "AWS_ENDPOINT_URL",
    ];
    match explicit(env, &vars)? {
        Some(url) => Ok(url),
        None => regional("elasticloadbalancing", region, variant),
    }
}

/// The global STS endpoint (the SDKs sign its requests for `us-east-1`).
pub const STS_GLOBAL: &str = "https://sts.amazonaws.com";

/// The STS endpoint URL (no trailing slash).
///
/// # Errors
/// As [`elbv2_endpoint`], and for an `AWS_STS_REGIONAL_ENDPOINTS` other
/// than `regional` or `legacy`.
pub fn sts_endpoint(region: &str, env: &dyn Env) -> Result<String, Error> {
    let variant = variant(env)?;
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
    if variant == (false, false)
        && (region == "aws-global"
            || legacy
                && STS_LEGACY_GLOBAL_REGIONS
                    .split_whitespace()
                    .any(|r| r == region))
    {
        return Ok(STS_GLOBAL.to_owned());
    }
    regional("sts", region, variant)
}

/// The SigV4 region of a request to `sts_url`: `us-east-1` for the global
/// endpoint (as the SDKs sign it), else `region`.
pub fn sts_signing_region<'a>(sts_url: &str, region: &'a str) -> &'a str {
    if sts_url == STS_GLOBAL {
        "us-east-1"
    } else {
        region
    }
}

#[cfg(test)]
mod tests;
