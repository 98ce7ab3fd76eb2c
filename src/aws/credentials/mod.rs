//! Credentials as the AWS SDKs find them: static keys from the environment,
//! web identity (IRSA), container credentials (EKS Pod Identity, ECS), then
//! IMDSv2. The first *configured* source wins; one that fails is an error,
//! not a reason to try the next (no silent fall back to the node's role).

pub mod providers;

use super::error::{redact_url, Error};
use crate::env::Env;
use crate::metrics;
use log::{info, warn};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Refresh temporary credentials this long before they expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// A secret string: its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret value, for signing or sending only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("** redacted **")
    }
}

/// A set of AWS credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Access key id (not a secret; logged to tell identities apart).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Session token of temporary credentials.
    pub session_token: Option<Secret>,
    /// When temporary credentials expire.
    pub expiry: Option<SystemTime>,
}

/// The role to assume with the source's credentials (`-role-arn`), whose
/// credentials then sign the ELBv2 calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// ARN of the role, in the account that owns the target groups.
    pub arn: String,
    /// `ExternalId` the role's trust policy requires, if any.
    pub external_id: Option<Secret>,
    /// Role session name.
    pub session_name: String,
}

impl Role {
    /// A role with the given session name, or the default one from `now`.
    pub fn new(
        arn: String,
        external_id: Option<Secret>,
        session_name: Option<String>,
        now: SystemTime,
    ) -> Self {
        let session_name = session_name.unwrap_or_else(|| default_session_name(now));
        Role {
            arn,
            external_id,
            session_name,
        }
    }
}

/// A configured credentials source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Keys from the environment.
    Static(Credentials),
    /// IRSA: the token in `token_file` (re-read on each fetch) exchanged at STS.
    WebIdentity {
        /// Role to assume.
        role_arn: String,
        /// The projected service account token's file.
        token_file: String,
        /// Role session name.
        session_name: String,
    },
    /// Container credentials endpoint (EKS Pod Identity, ECS).
    Container {
        /// URL to GET.
        url: String,
        /// File holding the `Authorization` value (re-read on each fetch).
        token_file: Option<String>,
        /// `Authorization` value given directly.
        token: Option<Secret>,
    },
    /// Instance metadata service v2.
    Imds {
        /// Base URL, e.g. `http://169.254.169.254`.
        endpoint: String,
    },
}

impl Source {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Source::Static(_) => "environment",
            Source::WebIdentity { .. } => "web identity (IRSA)",
            Source::Container { .. } => "container credentials",
            Source::Imds { .. } => "IMDSv2",
        }
    }
}

fn half_set(set: &str, unset: &str) -> Error {
    Error::Credentials(format!("{set} is set but {unset} is not"))
}

fn default_session_name(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("k8s-nlb-registrator-{secs}")
}

/// Chooses the credentials source from the environment, in the SDKs' order
/// (`now` seeds the default role session name).
///
/// # Errors
/// [`Error::Credentials`] for a half-configured source, a container URL
/// the SDKs would refuse, or no source at all (listing what was tried).
pub fn select_source(env: &dyn Env, now: SystemTime) -> Result<Source, Error> {
    match (
        env.var("AWS_ACCESS_KEY_ID"),
        env.var("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(access_key_id), Some(secret)) => {
            return Ok(Source::Static(Credentials {
                access_key_id,
                secret_access_key: Secret::new(secret),
                session_token: env.var("AWS_SESSION_TOKEN").map(Secret::new),
                expiry: None,
            }))
        }
        (Some(_), None) => return Err(half_set("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")),
        (None, Some(_)) => return Err(half_set("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")),
        (None, None) => {}
    }
    if let Some(token_file) = env.var("AWS_WEB_IDENTITY_TOKEN_FILE") {
        return Ok(Source::WebIdentity {
            role_arn: env
                .var("AWS_ROLE_ARN")
                .ok_or_else(|| half_set("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"))?,
            token_file,
            session_name: env
                .var("AWS_ROLE_SESSION_NAME")
                .unwrap_or_else(|| default_session_name(now)),
        });
    }
    if let Some(url) = container_url(env)? {
        return Ok(Source::Container {
            url,
            token_file: env.var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
            token: env
                .var("AWS_CONTAINER_AUTHORIZATION_TOKEN")
                .map(Secret::new),
        });
    }
    imds_source(env)
}

fn imds_source(env: &dyn Env) -> Result<Source, Error> {
    let is = |var, value: &str| env.var(var).is_some_and(|v| v.eq_ignore_ascii_case(value));
    if is("AWS_EC2_METADATA_DISABLED", "true") {
        return Err(Error::Credentials(
            "no credentials found; tried: environment (AWS_ACCESS_KEY_ID unset), \
             web identity (AWS_WEB_IDENTITY_TOKEN_FILE unset), container \
             (AWS_CONTAINER_CREDENTIALS_FULL_URI and _RELATIVE_URI unset), IMDS \
             (disabled by AWS_EC2_METADATA_DISABLED=true)"
                .into(),
        ));
    }
    let endpoint = match env.var("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
        Some(e) => e.trim_end_matches('/').to_owned(),
        None if is("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "ipv6") => {
            "http://[fd00:ec2::254]".to_owned()
        }
        None => "http://169.254.169.254".to_owned(),
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(Error::Credentials(format!(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT must be an http(s) URL: {:?}",
            redact_url(&endpoint)
        )));
    }
    Ok(Source::Imds { endpoint })
}

/// The container credentials URL, if configured: the relative URI (which
/// the SDKs prefer) on the ECS agent's host, else the checked full URI.
fn container_url(env: &dyn Env) -> Result<Option<String>, Error> {
    if let Some(rel) = env.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        if !rel.starts_with('/') {
            return Err(Error::Credentials(format!(
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must start with '/': {rel:?}"
            )));
        }
        return Ok(Some(format!("http://169.254.170.2{rel}")));
    }
    const FULL: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
    let Some(url) = env.var(FULL) else {
        return Ok(None);
    };
    let bad = |why: String| Err(Error::Credentials(format!("{FULL} {why}")));
    let (https, rest) = match url.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        _ => return bad(format!("must be an http(s) URL: {:?}", redact_url(&url))),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // User info would be a password in the logs; the SDKs do not use it.
    if authority.contains('@') {
        return bad("must not hold user info ('user:password@')".into());
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    // Over http the SDKs allow only loopback and the EKS / ECS agents.
    const AGENTS: &str = "localhost 169.254.170.2 169.254.170.23 fd00:ec2::23";
    let agent = AGENTS.split(' ').any(|a| a.eq_ignore_ascii_case(host));
    let loopback = host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !(https || agent || loopback) {
        return bad(format!(
            "host {host:?} is not allowed over http \
             (only loopback, 169.254.170.2, 169.254.170.23 and fd00:ec2::23; use https)"
        ));
    }
    Ok(Some(url))
}

/// Parses an RFC 3339 UTC timestamp as AWS writes expirations
/// (`2026-11-25T18:04:33Z`, with optional fraction, or `+00:00`).
pub fn parse_expiration(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let s = s
        .strip_suffix("+00:00")
        .or(s.strip_suffix('Z'))
        .unwrap_or(s);
    humantime::parse_rfc3339_weak(s).ok()
}

/// The last credentials fetched from one source: reused until five minutes
/// before their expiry, and while a refresh fails until they expire. `None`
/// is empty (also after AWS said they expired).
#[derive(Debug, Default)]
pub struct Cache(pub Option<Credentials>);

impl Cache {
    /// The cached credentials unless due at `now` (or `refresh`).
    pub fn fresh(&self, now: SystemTime, refresh: bool) -> Option<Credentials> {
        let fresh = |c: &&Credentials| c.expiry.is_none_or(|x| x >= now + REFRESH_BEFORE);
        self.0.as_ref().filter(fresh).filter(|_| !refresh).cloned()
    }

    /// Keeps credentials `fetched` from `source` (counted in the metrics); after a failed
    /// fetch, the cached ones while valid at `now`, unless it was a
    /// `refresh` (whose failure is the caller's to report).
    ///
    /// # Errors
    /// The fetch error with `refresh`, or when no unexpired credentials are
    /// cached.
    pub fn store(
        &mut self,
        source: &str,
        now: SystemTime,
        refresh: bool,
        fetched: Result<Credentials, Error>,
    ) -> Result<Credentials, Error> {
        let expiry = fetched.as_ref().ok().and_then(|c| c.expiry);
        metrics::global().credentials_fetched(source, fetched.is_ok(), expiry);
        match fetched {
            Ok(fresh) => {
                if let Some(until) = expiry.map(humantime::format_rfc3339_seconds) {
                    let id = &fresh.access_key_id;
                    info!("credentials from {source} for {id} valid until {until}");
                }
                self.0 = Some(fresh.clone());
                Ok(fresh)
            }
            Err(e) if !refresh && self.usable(now) => {
                warn!("refreshing credentials from {source} failed, using the cached ones until they expire: {e}");
                self.0.clone().ok_or(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether credentials are cached that have not expired at `now`.
    pub fn usable(&self, now: SystemTime) -> bool {
        self.0
            .as_ref()
            .is_some_and(|c| c.expiry.is_none_or(|x| x > now))
    }

    /// When a process at rest should refresh them ahead of need: ten minutes
    /// before expiry (`None` for long-term keys).
    pub fn refresh_due(&self) -> Option<SystemTime> {
        let expiry = self.0.as_ref()?.expiry?;
        Some(expiry.checked_sub(REFRESH_BEFORE * 2).unwrap_or(UNIX_EPOCH))
    }
}

#[cfg(test)]
mod tests;
