//! Where credentials come from, and when to fetch them again.
//!
//! The chain follows the AWS SDKs: the first *configured* source wins, and
//! a configured source that fails is an error rather than a reason to try
//! the next one (a pod with IRSA whose token file is missing must say so,
//! not silently fall back to the node's role):
//!
//! 1. static keys from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`;
//! 2. web identity (IRSA): `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`;
//! 3. container credentials (EKS Pod Identity, ECS): `AWS_CONTAINER_CREDENTIALS_FULL_URI`
//!    or `_RELATIVE_URI`;
//! 4. IMDSv2, unless `AWS_EC2_METADATA_DISABLED=true`.
//!
//! This module holds the pure parts: choosing a [`Source`] from an [`Env`],
//! parsing the JSON documents of the container and IMDS endpoints, and the
//! refresh rule. [`providers`] fetches from the sources that need IO
//! (through a [`Transport`](super::http::Transport)), and [`cache`] keeps
//! what was fetched until it is due for a refresh. [`assume_role`] layers
//! `-role-arn` on top: the chain's credentials sign an STS AssumeRole, and
//! the role's credentials sign the ELBv2 calls.

pub mod assume_role;
pub mod cache;
pub mod providers;

pub use cache::Cache;

use super::error::{redact_url, Error};
use crate::env::Env;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Refresh temporary credentials this long before they expire.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// Default IMDS endpoint (IPv4).
pub const IMDS_DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
/// IMDS endpoint in IPv6 mode.
pub const IMDS_IPV6_ENDPOINT: &str = "http://[fd00:ec2::254]";
/// Host of the ECS / container credentials relative URI.
pub const CONTAINER_RELATIVE_HOST: &str = "http://169.254.170.2";

/// A secret string: its `Debug` and `Display` never show the value.
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

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("** redacted **")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("** redacted **")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: overwrite the bytes before the allocation is freed.
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&bytes);
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

impl Credentials {
    /// Whether these credentials should be fetched again at `now`
    /// (they expire within [`REFRESH_BEFORE`]).
    pub fn needs_refresh(&self, now: SystemTime) -> bool {
        match self.expiry {
            None => false,
            Some(exp) => exp
                .duration_since(now)
                .map(|left| left < REFRESH_BEFORE)
                .unwrap_or(true),
        }
    }

    /// When a process at rest should wake up to refresh these credentials
    /// ahead of need: twice [`REFRESH_BEFORE`] before expiry, or `None` for
    /// long-term credentials.
    pub fn refresh_due(&self) -> Option<SystemTime> {
        self.expiry
            .map(|e| e.checked_sub(REFRESH_BEFORE * 2).unwrap_or(UNIX_EPOCH))
    }
}

/// A configured credentials source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Keys from the environment.
    Static(Credentials),
    /// IRSA: exchange the token in `token_file` for role credentials at STS.
    WebIdentity {
        /// Role to assume.
        role_arn: String,
        /// File holding the projected service account token (re-read on each fetch).
        token_file: String,
        /// Role session name.
        session_name: String,
    },
    /// Container credentials endpoint (EKS Pod Identity, ECS).
    Container {
        /// Full URL to GET.
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
    /// A short name for logs: `environment`, `web identity`, `container`, `IMDS`.
    pub fn name(&self) -> &'static str {
        match self {
            Source::Static(_) => "environment",
            Source::WebIdentity { .. } => "web identity (IRSA)",
            Source::Container { .. } => "container credentials",
            Source::Imds { .. } => "IMDSv2",
        }
    }
}

fn cfg_err(msg: String) -> Error {
    Error::Credentials(msg)
}

/// Chooses the credentials source from the environment, in the SDKs' order.
///
/// `now` only seeds the default role session name.
///
/// # Errors
/// [`Error::Credentials`] when a source is half-configured (a key id
/// without its secret, a token file without a role), a container URL
/// points at a host the SDKs do not allow, or no source is configured
/// (the message lists what was tried).
pub fn select_source(env: &dyn Env, now: SystemTime) -> Result<Source, Error> {
    let key = env.var("AWS_ACCESS_KEY_ID");
    let secret = env.var("AWS_SECRET_ACCESS_KEY");
    match (key, secret) {
        (Some(access_key_id), Some(secret)) => {
            return Ok(Source::Static(Credentials {
                access_key_id,
                secret_access_key: Secret::new(secret),
                session_token: env.var("AWS_SESSION_TOKEN").map(Secret::new),
                expiry: None,
            }))
        }
        (Some(_), None) => {
            return Err(cfg_err(
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(cfg_err(
                "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".into(),
            ))
        }
        (None, None) => {}
    }

    if let Some(token_file) = env.var("AWS_WEB_IDENTITY_TOKEN_FILE") {
        let role_arn = env.var("AWS_ROLE_ARN").ok_or_else(|| {
            cfg_err("AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not".into())
        })?;
        let session_name = env.var("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| {
            let secs = now
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            format!("k8s-nlb-registrator-{secs}")
        });
        return Ok(Source::WebIdentity {
            role_arn,
            token_file,
            session_name,
        });
    }

    let full = env.var("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    let relative = env.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    if full.is_some() || relative.is_some() {
        let url = match relative {
            // The SDKs prefer the relative URI when both are set.
            Some(rel) => {
                if !rel.starts_with('/') {
                    return Err(cfg_err(format!(
                        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must start with '/': {rel:?}"
                    )));
                }
                format!("{CONTAINER_RELATIVE_HOST}{rel}")
            }
            None => {
                let url = full.unwrap_or_default();
                check_container_url(&url)?;
                url
            }
        };
        return Ok(Source::Container {
            url,
            token_file: env.var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
            token: env
                .var("AWS_CONTAINER_AUTHORIZATION_TOKEN")
                .map(Secret::new),
        });
    }

    let disabled = env
        .var("AWS_EC2_METADATA_DISABLED")
        .map(|v| v.eq_ignore_ascii_case("true"))
        .unwrap_or(false);
    if disabled {
        return Err(cfg_err(
            "no credentials found; tried: environment (AWS_ACCESS_KEY_ID unset), \
             web identity (AWS_WEB_IDENTITY_TOKEN_FILE unset), container \
             (AWS_CONTAINER_CREDENTIALS_FULL_URI and _RELATIVE_URI unset), IMDS \
             (disabled by AWS_EC2_METADATA_DISABLED=true)"
                .into(),
        ));
    }
    let endpoint = match env.var("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
        Some(e) => e.trim_end_matches('/').to_owned(),
        None => match env.var("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE") {
            Some(m) if m.eq_ignore_ascii_case("ipv6") => IMDS_IPV6_ENDPOINT.to_owned(),
            _ => IMDS_DEFAULT_ENDPOINT.to_owned(),
        },
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(cfg_err(format!(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT must be an http(s) URL: {:?}",
            redact_url(&endpoint)
        )));
    }
    Ok(Source::Imds { endpoint })
}

/// Checks a container credentials full URI: https anywhere, http only to
/// loopback and the EKS / ECS link-local agents (as the SDKs require). No
/// user info with either scheme (the SDKs do not use it; it would be a
/// password in the logs), and the message does not echo it.
fn check_container_url(url: &str) -> Result<(), Error> {
    let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => {
            return Err(cfg_err(format!(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI must be an http(s) URL: {:?}",
                redact_url(url)
            )))
        }
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(cfg_err(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI must not hold user info ('user:password@')".into(),
        ));
    }
    if https {
        return Ok(());
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(authority)
    };
    let allowed = host == "localhost"
        || host == "169.254.170.2"
        || host == "169.254.170.23"
        || host.eq_ignore_ascii_case("fd00:ec2::23")
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false);
    if allowed {
        Ok(())
    } else {
        Err(cfg_err(format!(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI host {host:?} is not allowed over http \
             (only loopback, 169.254.170.2, 169.254.170.23 and fd00:ec2::23; use https)"
        )))
    }
}

/// Reads the Authorization value for the container endpoint from the file
/// contents: trailing newline removed; CR/LF inside is refused.
///
/// # Errors
/// [`Error::Credentials`] for an empty token or one with line breaks (it
/// would break the HTTP header).
pub fn container_token_from(contents: &[u8], path: &str) -> Result<Secret, Error> {
    let text = std::str::from_utf8(contents).map_err(|_| {
        cfg_err(format!(
            "container authorization token file {path} is not UTF-8"
        ))
    })?;
    let token = text.trim_end_matches(['\r', '\n']);
    if token.is_empty() {
        return Err(cfg_err(format!(
            "container authorization token file {path} is empty"
        )));
    }
    if token.contains(['\r', '\n']) {
        return Err(cfg_err(format!(
            "container authorization token file {path} holds a line break"
        )));
    }
    Ok(Secret::new(token.to_owned()))
}

/// Reads a web identity token from the file contents (surrounding white space removed).
///
/// # Errors
/// [`Error::Credentials`] for an empty or non-UTF-8 file.
pub fn web_identity_token_from(contents: &[u8], path: &str) -> Result<Secret, Error> {
    let text = std::str::from_utf8(contents)
        .map_err(|_| cfg_err(format!("web identity token file {path} is not UTF-8")))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(cfg_err(format!("web identity token file {path} is empty")));
    }
    Ok(Secret::new(token.to_owned()))
}

/// Parses the JSON of a container credentials endpoint or of IMDS
/// (`AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration`; IMDS adds
/// `Code`, which must be `Success`).
///
/// # Errors
/// [`Error::Response`] naming `what` for invalid JSON, a missing field, a
/// non-`Success` code or an unreadable expiration.
pub fn parse_credentials_json(what: &str, status: u16, body: &[u8]) -> Result<Credentials, Error> {
    let bad = |detail: String| Error::Response {
        action: what.to_owned(),
        status,
        detail,
    };
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("JSON is not an object".into()))?;
    let field = |name: &str| -> Option<String> {
        obj.get(name)
            .and_then(|x| x.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    if let Some(code) = field("Code") {
        if code != "Success" {
            let msg = field("Message").unwrap_or_default();
            return Err(bad(format!("Code is {code:?}: {msg}")));
        }
    }
    let need = |name: &str| field(name).ok_or_else(|| bad(format!("no {name} in the response")));
    let access_key_id = need("AccessKeyId")?;
    let secret = need("SecretAccessKey")?;
    let expiry = match field("Expiration") {
        None => None,
        Some(e) => {
            Some(parse_expiration(&e).ok_or_else(|| bad(format!("unreadable Expiration {e:?}")))?)
        }
    };
    Ok(Credentials {
        access_key_id,
        secret_access_key: Secret::new(secret),
        session_token: field("Token").map(Secret::new),
        expiry,
    })
}

/// Parses an RFC 3339 UTC timestamp as AWS writes expirations
/// (`2026-11-25T18:04:33Z`, with optional fraction, or `+00:00`).
pub fn parse_expiration(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let normalized = match s.strip_suffix("+00:00") {
        Some(base) => format!("{base}Z"),
        None => s.to_owned(),
    };
    humantime::parse_rfc3339_weak(normalized.trim_end_matches('Z')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::env::test_env as env;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn static_keys_win() {
        let e = env(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "SECRET"),
            ("AWS_SESSION_TOKEN", "TOKEN"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/f"),
            ("AWS_ROLE_ARN", "arn"),
        ]);
        match select_source(&e, now()).unwrap() {
            Source::Static(c) => {
                assert_eq!(c.access_key_id, "AKID");
                assert_eq!(c.session_token.unwrap().expose(), "TOKEN");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn half_configured_sources_are_errors() {
        let e = select_source(&env(&[("AWS_ACCESS_KEY_ID", "AKID")]), now()).unwrap_err();
        assert!(
            e.to_string().contains("AWS_SECRET_ACCESS_KEY is not"),
            "{e}"
        );
        let e = select_source(&env(&[("AWS_SECRET_ACCESS_KEY", "S")]), now()).unwrap_err();
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID is not"), "{e}");
        assert!(!e.to_string().contains("S\""));
        let e = select_source(&env(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/t")]), now()).unwrap_err();
        assert!(e.to_string().contains("AWS_ROLE_ARN"), "{e}");
    }

    #[test]
    fn web_identity_with_default_session_name() {
        let e = env(&[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_ARN", "arn:r"),
        ]);
        assert_eq!(
            select_source(&e, now()).unwrap(),
            Source::WebIdentity {
                role_arn: "arn:r".into(),
                token_file: "/t".into(),
                session_name: "k8s-nlb-registrator-1700000000".into()
            }
        );
    }

    #[test]
    fn container_urls() {
        let ok = |url: &str| {
            select_source(&env(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)]), now()).is_ok()
        };
        assert!(ok("http://169.254.170.23/v1/credentials"));
        assert!(ok("http://169.254.170.2/x"));
        assert!(ok("http://[fd00:ec2::23]/v1/credentials"));
        assert!(ok("http://127.0.0.1:8080/creds"));
        assert!(ok("http://localhost/creds"));
        assert!(ok("https://creds.example.com/x"));
        assert!(!ok("http://10.0.0.1/creds"));
        assert!(!ok("http://169.254.169.254/creds"));
        assert!(!ok("ftp://127.0.0.1/"));
        assert!(!ok("http://127.0.0.1:80@evil.example/creds"));
        assert!(!ok("http://[::1]@evil.example/creds"));
        for url in [
            "https://user:hunter2@creds.example.com/x",
            "http://user:hunter2@127.0.0.1/creds",
            "ftp://user:hunter2@127.0.0.1/",
        ] {
            let e = select_source(&env(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)]), now())
                .unwrap_err()
                .to_string();
            assert!(!e.contains("hunter2"), "{e}");
        }
        let s = select_source(
            &env(&[
                (
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                    "/v2/credentials/abc",
                ),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "tok"),
            ]),
            now(),
        )
        .unwrap();
        match s {
            Source::Container { url, token, .. } => {
                assert_eq!(url, "http://169.254.170.2/v2/credentials/abc");
                assert_eq!(token.unwrap().expose(), "tok");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn imds_and_nothing() {
        assert_eq!(
            select_source(&env(&[]), now()).unwrap(),
            Source::Imds {
                endpoint: IMDS_DEFAULT_ENDPOINT.into()
            }
        );
        assert_eq!(
            select_source(
                &env(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/")]),
                now()
            )
            .unwrap(),
            Source::Imds {
                endpoint: "http://127.0.0.1:9".into()
            }
        );
        let e = select_source(&env(&[("AWS_EC2_METADATA_DISABLED", "TRUE")]), now()).unwrap_err();
        let msg = e.to_string();
        for part in ["environment", "web identity", "container", "IMDS"] {
            assert!(msg.contains(part), "{msg}");
        }
    }

    #[test]
    fn parses_recorded_credentials_json() {
        let c = parse_credentials_json(
            "container",
            200,
            include_bytes!("../../../tests/data/container_credentials.json"),
        )
        .unwrap();
        assert_eq!(c.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        assert_eq!(
            c.session_token.as_ref().unwrap().expose(),
            "IQoJb3JpZ2luX2VjEXAMPLETOKEN"
        );
        assert_eq!(c.expiry, parse_expiration("2026-11-25T18:04:33Z"));
        let c = parse_credentials_json(
            "IMDS",
            200,
            include_bytes!("../../../tests/data/imds_credentials.json"),
        )
        .unwrap();
        assert_eq!(c.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        assert!(!format!("{c:?}").contains("wJalr"));
    }

    #[test]
    fn rejects_bad_credentials_json() {
        for body in [
            &b""[..],
            b"[]",
            b"{",
            br#"{"AccessKeyId":"A"}"#,
            br#"{"AccessKeyId":1,"SecretAccessKey":"S"}"#,
            br#"{"Code":"AssumeRoleUnauthorizedAccess","Message":"no"}"#,
            br#"{"AccessKeyId":"A","SecretAccessKey":"S","Expiration":"tomorrow"}"#,
        ] {
            assert!(parse_credentials_json("c", 200, body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn expiration_formats() {
        let base = parse_expiration("2026-11-25T18:04:33Z").unwrap();
        assert_eq!(parse_expiration("2026-11-25T18:04:33+00:00"), Some(base));
        assert_eq!(
            parse_expiration("2026-11-25T18:04:33.500Z"),
            Some(base + Duration::from_millis(500))
        );
        assert_eq!(parse_expiration("garbage"), None);
    }

    #[test]
    fn refresh_rule() {
        let c = |exp: Option<SystemTime>| Credentials {
            access_key_id: "A".into(),
            secret_access_key: Secret::new("S".into()),
            session_token: None,
            expiry: exp,
        };
        let t = now();
        assert!(!c(None).needs_refresh(t));
        assert!(!c(Some(t + Duration::from_secs(3600))).needs_refresh(t));
        assert!(c(Some(t + Duration::from_secs(60))).needs_refresh(t));
        assert!(c(Some(t - Duration::from_secs(60))).needs_refresh(t));
        assert_eq!(
            c(Some(t + Duration::from_secs(3600))).refresh_due(),
            Some(t + Duration::from_secs(3000))
        );
    }

    #[test]
    fn token_files() {
        assert_eq!(
            container_token_from(b"abc\n", "/f").unwrap().expose(),
            "abc"
        );
        assert!(container_token_from(b"a\nb", "/f").is_err());
        assert!(container_token_from(b"\n", "/f").is_err());
        assert_eq!(
            web_identity_token_from(b" eyJ \n", "/f").unwrap().expose(),
            "eyJ"
        );
        assert!(web_identity_token_from(b"  ", "/f").is_err());
        assert!(web_identity_token_from(b"\xff", "/f").is_err());
        assert_eq!(format!("{:?}", Secret::new("x".into())), "** redacted **");
    }
}
