//! Region and endpoints, as the AWS SDKs resolve them: the service's
//! `AWS_ENDPOINT_URL_*`, then `AWS_ENDPOINT_URL`, then
//! `{service}[-fips].{region}.{suffix}` by partition (dual-stack too).

use super::error::{redact_url, Error};
use crate::env::Env;

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

fn env_bool(env: &dyn Env, name: &str) -> Result<bool, Error> {
    let Some(v) = env.var(name) else {
        return Ok(false);
    };
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::Config(format!(
            "{name} must be true or false, not {v:?}"
        ))),
    }
}

/// The endpoint URL (no trailing slash) of `service`, `sts` or
/// `elasticloadbalancing`: the first of its own variable and
/// `AWS_ENDPOINT_URL` that is set (it wins over FIPS and dual-stack, as in
/// the SDKs), else the regional one (for STS too, as in every current SDK:
/// `AWS_STS_REGIONAL_ENDPOINTS` is not read). In GovCloud the ordinary
/// endpoints of ELBv2 and STS are the FIPS ones: FIPS alone keeps the
/// ordinary host.
///
/// # Errors
/// [`Error::Config`] for an override that is not an http(s) URL, a
/// boolean variable that is not `true`/`false`, or a pseudo-region.
pub fn endpoint(service: &str, region: &str, env: &dyn Env) -> Result<String, Error> {
    let (var, shown) = match service {
        "sts" => ("AWS_ENDPOINT_URL_STS", "STS"),
        _ => ("AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2", "ELBv2"),
    };
    let fips = env_bool(env, "AWS_USE_FIPS_ENDPOINT")?;
    let dual = env_bool(env, "AWS_USE_DUALSTACK_ENDPOINT")?;
    if !env_bool(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")? {
        if let Some((var, url)) = [var, "AWS_ENDPOINT_URL"]
            .into_iter()
            .find_map(|v| Some((v, env.var(v)?)))
        {
            let trimmed = url.trim_end_matches('/');
            let rest = trimmed
                .strip_prefix("https://")
                .or(trimmed.strip_prefix("http://"));
            let rest = rest.unwrap_or_default();
            if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
                return Err(Error::Config(format!(
                    "{var} must be an http:// or https:// URL with a host: {:?}",
                    redact_url(&url)
                )));
            }
            return Ok(trimmed.to_owned());
        }
    }
    // `aws-global`, `aws-cn-global`: pseudo-regions, where neither runs.
    if region.starts_with("aws-") && region.ends_with("-global") {
        return Err(Error::Config(format!(
            "region {region} has no {shown} endpoint (it is regional): set the region of the target groups"
        )));
    }
    let partition = PARTITIONS.iter().find(|(p, ..)| region.starts_with(p));
    let (_, plain, dual_suffix) = partition.unwrap_or(&("", "amazonaws.com", "api.aws"));
    let suffix = if dual { dual_suffix } else { plain };
    let fips = ["", "-fips"][usize::from(fips && (dual || !region.starts_with("us-gov-")))];
    Ok(format!("https://{service}{fips}.{region}.{suffix}"))
}

#[cfg(test)]
mod tests;
