//! `-role-arn`: the chain's credentials (the *base* layer) only sign an
//! STS AssumeRole, and the role's credentials sign the ELBv2 calls. Both
//! layers are cached and refreshed ahead of expiry ([`RoleLayer`] holds
//! the base layer's cache, the client the role's), so a pod that lives
//! for weeks still deregisters. An error names its layer and keeps its
//! kind: STS throttling is retried, AccessDenied is final.

use super::{default_session_name, providers, Cache, Credentials, Secret, Source};
use crate::aws::endpoint::sts_signing_region;
use crate::aws::error::{is_expired_credentials, Error};
use crate::aws::http::Transport;
use crate::aws::query::Action;
use crate::aws::sign::signed_query;
use crate::aws::sts::AssumeRole;
use log::{debug, warn};
use std::time::{Duration, SystemTime};

/// Lifetime asked for: STS's default, and the most AWS allows when the
/// base credentials are a role session themselves (IRSA, Pod Identity, IMDS).
pub const ROLE_DURATION: Duration = Duration::from_secs(3600);

/// The role to assume.
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

    /// How logs and errors name this layer: `role ARN`.
    pub fn label(&self) -> String {
        format!("role {}", self.arn)
    }
}

/// Where a layer fetches from: the base source, the STS endpoint and the region.
#[derive(Debug, Clone, Copy)]
pub struct Upstream<'a> {
    /// The base layer's source (the usual chain).
    pub source: &'a Source,
    /// STS endpoint URL (web identity and AssumeRole).
    pub sts_url: &'a str,
    /// The configured region.
    pub region: &'a str,
}

/// The role layer: the base layer's cache and the role to assume with it.
#[derive(Debug)]
pub struct RoleLayer {
    role: Role,
    base: Cache,
}

impl RoleLayer {
    /// A layer with nothing cached yet.
    pub fn new(role: Role) -> Self {
        RoleLayer {
            role,
            base: Cache::default(),
        }
    }

    /// The role.
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// When the cached base credentials should be refreshed ahead of need.
    pub fn base_refresh_due(&self) -> Option<SystemTime> {
        self.base.refresh_due()
    }

    /// Assumes the role once, signed at `now` (AWS's time) with the base
    /// credentials from the cache (fetched again when due; with
    /// `background`, already at their ahead-of-need refresh time). An
    /// `ExpiredToken` answer means the base credentials died early: they
    /// are fetched again and the role asked for once more.
    ///
    /// # Errors
    /// The base layer's error, prefixed `base credentials from <source>`,
    /// or AssumeRole's, prefixed `assuming role <arn>`.
    pub fn fetch(
        &mut self,
        up: Upstream<'_>,
        transport: &dyn Transport,
        now: SystemTime,
        background: bool,
    ) -> Result<Credentials, Error> {
        let source = up.source.name();
        let base_label = format!("base credentials from {source}");
        let fetch = || providers::fetch(up.source, up.sts_url, transport);
        if background && self.base.refresh_due().is_some_and(|due| due <= now) {
            if let Err(e) = self.base.store_fetched(source, fetch()) {
                if !self.base.usable(now) {
                    return Err(in_layer(e, &base_label));
                }
                warn!("{base_label}: refresh failed, the cached ones stay in use until they expire: {e}");
            }
        }
        let base = |cache: &mut Cache| {
            (cache.get(now, source, fetch)).map_err(|e| in_layer(e, &base_label))
        };
        let first = base(&mut self.base)?;
        match self.assume(&first, up, transport, now) {
            Err(e) if is_expired_credentials(&e) && !matches!(up.source, Source::Static(_)) => {
                warn!("AssumeRole: the base credentials from {source} expired, fetching new ones");
                self.base.forget();
                let again = base(&mut self.base)?;
                self.assume(&again, up, transport, now)
            }
            other => other,
        }
        .map_err(|e| in_layer(e, &format!("assuming {}", self.role.label())))
    }

    /// One `AssumeRole` call, signed with `base` at `now`.
    fn assume(
        &self,
        base: &Credentials,
        up: Upstream<'_>,
        transport: &dyn Transport,
        now: SystemTime,
    ) -> Result<Credentials, Error> {
        let role = &self.role;
        let action = AssumeRole {
            role_arn: &role.arn,
            session_name: &role.session_name,
            external_id: role.external_id.as_ref().map(Secret::expose),
            duration_seconds: ROLE_DURATION.as_secs(),
        };
        let region = sts_signing_region(up.sts_url, up.region);
        let req = signed_query(
            up.sts_url,
            &action.form(),
            base,
            region,
            AssumeRole::SERVICE,
            now,
        )?;
        let resp = transport.send(AssumeRole::NAME, &req)?;
        debug!("{} -> HTTP {}", AssumeRole::NAME, resp.status);
        AssumeRole::parse_response(resp.status, &resp.body).map(|r| r.value)
    }
}

/// Prefixes the error's subject with `layer`, keeping its kind (and so how
/// the client classifies it for retries).
pub fn in_layer(e: Error, layer: &str) -> Error {
    let prefixed = |s: String| format!("{layer}: {s}");
    match e {
        Error::Credentials(m) => Error::Credentials(prefixed(m)),
        Error::Config(m) => Error::Config(prefixed(m)),
        other => other.map_action(prefixed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::credentials::Secret;
    use crate::aws::error::is_retryable;
    use crate::aws::testing::{ok, status, Scripted};
    use std::time::UNIX_EPOCH;

    const ROLE_ARN: &str = "arn:aws:iam::444455556666:role/nlb-registrator";

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn role() -> Role {
        Role::new(
            ROLE_ARN.into(),
            Some("ext-1".into()),
            None,
            at(1_700_000_000),
        )
    }

    fn static_source() -> Source {
        Source::Static(Credentials {
            access_key_id: "AKIDBASE".into(),
            secret_access_key: Secret::new("base-secret".into()),
            session_token: None,
            expiry: None,
        })
    }

    fn container_source() -> Source {
        Source::Container {
            url: "http://127.0.0.1:3/creds".into(),
            token_file: None,
            token: None,
        }
    }

    fn up(source: &Source) -> Upstream<'_> {
        Upstream {
            source,
            sts_url: "https://sts.eu-west-1.amazonaws.com",
            region: "eu-west-1",
        }
    }

    /// An AssumeRole answer whose credentials `id` expire at `expiry` (Unix seconds).
    fn role_answer(id: &str, expiry: u64) -> Vec<u8> {
        format!(
            "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>{id}</AccessKeyId>\
             <SecretAccessKey>S-{id}</SecretAccessKey><SessionToken>T-{id}</SessionToken>\
             <Expiration>{}</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>",
            humantime::format_rfc3339_seconds(at(expiry))
        )
        .into_bytes()
    }

    fn container_answer(id: &str, expiry: u64) -> Vec<u8> {
        format!(
            r#"{{"AccessKeyId":"{id}","SecretAccessKey":"S-{id}","Token":"T-{id}","Expiration":"{}"}}"#,
            humantime::format_rfc3339_seconds(at(expiry))
        )
        .into_bytes()
    }

    fn auth(req: &crate::aws::http::HttpRequest) -> String {
        req.headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    fn aws_error(code: &str) -> Vec<u8> {
        format!(
            "<ErrorResponse><Error><Code>{code}</Code><Message>m</Message></Error></ErrorResponse>"
        )
        .into_bytes()
    }

    #[test]
    fn default_and_given_session_names() {
        let r = role();
        assert_eq!(r.session_name, "k8s-nlb-registrator-1700000000");
        let named = Role::new(ROLE_ARN.into(), None, Some("pod-a".into()), at(0));
        assert_eq!(named.session_name, "pod-a");
        assert_eq!(r.label(), format!("role {ROLE_ARN}"));
    }

    #[test]
    fn signs_assume_role_with_the_base_keys_for_sts() {
        let source = static_source();
        let s = Scripted::new([ok(&role_answer("ASIAROLE1", 1_700_003_600))]);
        let mut layer = RoleLayer::new(role());
        let got = layer
            .fetch(up(&source), &&s, at(1_700_000_000), false)
            .unwrap();
        assert_eq!(got.access_key_id, "ASIAROLE1");
        assert_eq!(
            got.session_token.as_ref().map(Secret::expose),
            Some("T-ASIAROLE1")
        );
        let seen = s.seen.borrow();
        assert_eq!(seen[0].url, "https://sts.eu-west-1.amazonaws.com/");
        assert!(auth(&seen[0]).contains("Credential=AKIDBASE/20231114/eu-west-1/sts/aws4_request"));
        let body = String::from_utf8(seen[0].body.clone()).unwrap();
        assert!(
            body.starts_with("Action=AssumeRole&Version=2011-06-15&RoleArn="),
            "{body}"
        );
        assert!(body.contains("&RoleSessionName=k8s-nlb-registrator-1700000000"));
        assert!(body.contains("&DurationSeconds=3600&ExternalId=ext-1"));
        // Static base keys carry no session token.
        assert!(!seen[0]
            .headers
            .iter()
            .any(|(k, _)| k == "x-amz-security-token"));
    }

    #[test]
    fn the_global_endpoint_is_signed_for_us_east_1() {
        let source = static_source();
        let s = Scripted::new([ok(&role_answer("ASIAROLE1", 1_700_003_600))]);
        let mut layer = RoleLayer::new(role());
        let global = Upstream {
            sts_url: "https://sts.amazonaws.com",
            ..up(&source)
        };
        layer.fetch(global, &&s, at(1_700_000_000), false).unwrap();
        assert!(auth(&s.seen.borrow()[0]).contains("/20231114/us-east-1/sts/aws4_request"));
    }

    #[test]
    fn temporary_base_credentials_are_cached_and_fetched_again_when_due() {
        let source = container_source();
        let t0 = 1_700_000_000;
        let s = Scripted::new([
            ok(&container_answer("ASIABASE1", t0 + 3600)),
            ok(&role_answer("ASIAROLE1", t0 + 3600)),
            // Base still valid: only AssumeRole.
            ok(&role_answer("ASIAROLE2", t0 + 7200)),
            // Base within five minutes of expiry: base first, then AssumeRole.
            ok(&container_answer("ASIABASE2", t0 + 7200)),
            ok(&role_answer("ASIAROLE3", t0 + 10800)),
        ]);
        let mut layer = RoleLayer::new(role());
        let u = up(&source);
        assert_eq!(
            layer.fetch(u, &&s, at(t0), false).unwrap().access_key_id,
            "ASIAROLE1"
        );
        assert_eq!(layer.base_refresh_due(), Some(at(t0 + 3000)));
        assert_eq!(
            layer
                .fetch(u, &&s, at(t0 + 600), false)
                .unwrap()
                .access_key_id,
            "ASIAROLE2"
        );
        assert_eq!(
            layer
                .fetch(u, &&s, at(t0 + 3400), false)
                .unwrap()
                .access_key_id,
            "ASIAROLE3"
        );
        let seen = s.seen.borrow();
        assert_eq!(seen.len(), 5);
        assert!(auth(&seen[1]).contains("Credential=ASIABASE1/"));
        assert!(seen[1]
            .headers
            .contains(&("x-amz-security-token".into(), "T-ASIABASE1".into())));
        assert!(auth(&seen[2]).contains("Credential=ASIABASE1/"));
        assert_eq!(seen[3].url, "http://127.0.0.1:3/creds");
        assert!(auth(&seen[4]).contains("Credential=ASIABASE2/"));
    }

    #[test]
    fn a_background_refresh_renews_the_base_layer_at_its_due_time() {
        let source = container_source();
        let t0 = 1_700_000_000;
        let s = Scripted::new([
            ok(&container_answer("ASIABASE1", t0 + 3600)),
            ok(&role_answer("ASIAROLE1", t0 + 3600)),
            ok(&container_answer("ASIABASE2", t0 + 7200)),
            ok(&role_answer("ASIAROLE2", t0 + 7200)),
            // The base endpoint fails at the next background refresh: the
            // cached base credentials still sign AssumeRole.
            status(500, b"down"),
            ok(&role_answer("ASIAROLE3", t0 + 9000)),
        ]);
        let mut layer = RoleLayer::new(role());
        let u = up(&source);
        layer.fetch(u, &&s, at(t0), true).unwrap();
        // At the due time (ten minutes ahead), not yet within the five-minute margin.
        let got = layer.fetch(u, &&s, at(t0 + 3000), true).unwrap();
        assert_eq!(got.access_key_id, "ASIAROLE2");
        assert_eq!(layer.base_refresh_due(), Some(at(t0 + 6600)));
        let got = layer.fetch(u, &&s, at(t0 + 6600), true).unwrap();
        assert_eq!(got.access_key_id, "ASIAROLE3");
        assert!(auth(&s.seen.borrow()[5]).contains("Credential=ASIABASE2/"));
    }

    #[test]
    fn errors_name_their_layer_and_keep_their_kind() {
        let source = container_source();
        let s = Scripted::new([status(403, b"{\"code\":\"AccessDenied\"}")]);
        let mut layer = RoleLayer::new(role());
        let e = layer.fetch(up(&source), &&s, at(0), false).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("base credentials from container credentials: container credentials failed: HttpStatus403"),
            "{e}"
        );

        let source = static_source();
        let s = Scripted::new([
            status(403, &aws_error("AccessDenied")),
            status(503, &aws_error("ServiceUnavailable")),
        ]);
        let mut layer = RoleLayer::new(role());
        let e = layer.fetch(up(&source), &&s, at(0), false).unwrap_err();
        assert_eq!(e.aws_code(), Some("AccessDenied"));
        assert!(!is_retryable(&e));
        assert_eq!(
            e.to_string(),
            format!("assuming role {ROLE_ARN}: AssumeRole failed: AccessDenied (HTTP 403): m")
        );
        let e = layer.fetch(up(&source), &&s, at(0), false).unwrap_err();
        assert!(is_retryable(&e), "{e}");

        // Retried as without a role: InvalidIdentityToken from web identity.
        let invalid = crate::aws::sts::AssumeRoleWithWebIdentity::parse_response(
            400,
            &aws_error("InvalidIdentityToken"),
        )
        .unwrap_err();
        assert!(is_retryable(&invalid));
        let layered = in_layer(invalid, "base credentials from web identity (IRSA)");
        assert!(is_retryable(&layered), "{layered}");
        assert!(!is_retryable(&in_layer(
            AssumeRole::parse_response(400, &aws_error("InvalidIdentityToken")).unwrap_err(),
            "assuming role r"
        )));

        let e = in_layer(
            Error::Credentials("no token".into()),
            "base credentials from x",
        );
        assert_eq!(
            e.to_string(),
            "credentials: base credentials from x: no token"
        );
    }

    #[test]
    fn expired_base_credentials_are_fetched_again_once() {
        let source = container_source();
        let s = Scripted::new([
            ok(&container_answer("ASIABASE1", 1_700_003_600)),
            status(400, &aws_error("ExpiredToken")),
            ok(&container_answer("ASIABASE2", 1_700_003_600)),
            ok(&role_answer("ASIAROLE1", 1_700_003_600)),
        ]);
        let mut layer = RoleLayer::new(role());
        let got = layer
            .fetch(up(&source), &&s, at(1_700_000_000), false)
            .unwrap();
        assert_eq!(got.access_key_id, "ASIAROLE1");
        assert!(auth(&s.seen.borrow()[3]).contains("Credential=ASIABASE2/"));
    }

    #[test]
    fn no_secret_in_debug_output() {
        let source = static_source();
        let s = Scripted::new([ok(&role_answer("ASIAROLE1", 1_700_003_600))]);
        let mut layer = RoleLayer::new(role());
        let got = layer
            .fetch(up(&source), &&s, at(1_700_000_000), false)
            .unwrap();
        let mut with_id = role();
        with_id.external_id = Some("ext-secret-1".into());
        let dbg = format!("{got:?} {layer:?} {:?}", RoleLayer::new(with_id));
        assert!(
            !dbg.contains("S-ASIAROLE1") && !dbg.contains("T-ASIAROLE1"),
            "{dbg}"
        );
        assert!(!dbg.contains("base-secret"), "{dbg}");
        assert!(!dbg.contains("ext-secret-1"), "{dbg}");
        assert!(dbg.contains("external_id: Some(** redacted **)"), "{dbg}");
    }
}
