//! The AWS client: credentials cache, signing, sending and retrying.
//!
//! [`Client`] ties the pure pieces together: it picks the credentials
//! [`Source`] once, fetches and caches temporary credentials (refreshing
//! them [`REFRESH_BEFORE`](super::credentials::REFRESH_BEFORE) expiry, and
//! once more if AWS says they expired), signs each ELBv2 request with
//! SigV4 at the [`Clock`]'s wall-clock time, and retries what is worth
//! retrying with jittered backoff until the caller's deadline. A backoff
//! sleep is cut short when the clock reports an event; a request already on
//! the wire is not (it ends at its timeout), which is what lets the caller
//! order a DeregisterTargets after a RegisterTargets that may have landed.

use super::credentials::{
    container_token_from, parse_credentials_json, select_source, web_identity_token_from,
    Credentials, Source,
};
use super::elbv2::{self, Target, TargetGroup, TargetHealth};
use super::error::{is_expired_credentials, is_retryable, AwsError, Error};
use super::http::{HttpRequest, HttpResponse, Transport};
use super::query::{encode_form, Params};
use super::retry::Backoff;
use super::sign::{sign, ToSign};
use super::{endpoint, sts};
use crate::clock::Clock;
use crate::env::Env;
use log::{debug, info, warn};
use std::time::{Duration, Instant};

/// Overall timeout of one ELBv2 or STS request.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Least overall timeout of an ELBv2 request, even when the deadline is
/// closer (or past, for the one attempt always made).
pub const MIN_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Overall timeout of one IMDS or container-credentials request: short, so
/// a pod that cannot reach them fails fast.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// A response parser: status and body in, value or error out.
type Parser<'p, R> = &'p dyn Fn(u16, &[u8]) -> Result<R, Error>;

const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// How long and how often a call may be tried.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// No attempt starts after this instant.
    pub deadline: Instant,
    /// At most this many attempts.
    pub max_attempts: u32,
}

impl Budget {
    /// Retry until `deadline`, without an attempt limit.
    pub fn until(deadline: Instant) -> Self {
        Budget {
            deadline,
            max_attempts: u32::MAX,
        }
    }
}

/// A result with the AWS request id of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithId<T> {
    /// The parsed value.
    pub value: T,
    /// `ResponseMetadata/RequestId`.
    pub request_id: Option<String>,
}

/// Resolved region, endpoints and credentials source.
#[derive(Debug, Clone)]
pub struct Settings {
    /// AWS region.
    pub region: String,
    /// ELBv2 endpoint URL.
    pub elbv2_url: String,
    /// STS endpoint URL.
    pub sts_url: String,
    /// Where credentials come from.
    pub source: Source,
}

impl Settings {
    /// Resolves everything from the environment (and the `-region` flag).
    ///
    /// # Errors
    /// [`Error::Config`] or [`Error::Credentials`] naming the bad variable.
    pub fn from_env(
        region: Option<&str>,
        env: &dyn Env,
        now: std::time::SystemTime,
    ) -> Result<Self, Error> {
        let region = endpoint::resolve_region(region, env)?;
        Ok(Settings {
            elbv2_url: endpoint::elbv2_endpoint(&region, env)?,
            sts_url: endpoint::sts_endpoint(&region, env)?,
            source: select_source(env, now)?,
            region,
        })
    }
}

/// The ELBv2 client.
pub struct Client<T: Transport> {
    transport: T,
    settings: Settings,
    cached: Option<Credentials>,
    backoff: Backoff,
}

impl<T: Transport> Client<T> {
    /// A client over `transport` with resolved `settings`.
    pub fn new(transport: T, settings: Settings) -> Self {
        Client {
            transport,
            settings,
            cached: None,
            backoff: Backoff::default(),
        }
    }

    /// Replaces the backoff parameters (tests, soak runs).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The resolved settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// When cached temporary credentials should be refreshed ahead of need.
    pub fn refresh_due(&self) -> Option<std::time::SystemTime> {
        self.cached.as_ref().and_then(Credentials::refresh_due)
    }

    /// Makes sure valid credentials are cached, fetching them (with
    /// retries within `budget`) when missing or about to expire.
    ///
    /// # Errors
    /// The last fetch error, or [`Error::Interrupted`].
    pub fn ensure_credentials(
        &mut self,
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<(), Error> {
        self.retrying("credentials", budget, clock, |c, clock| {
            c.credentials(clock).map(|_| ())
        })
    }

    /// Fetches new temporary credentials now (a process at rest calls this
    /// at [`Client::refresh_due`]); the cached ones stay in use if it fails.
    ///
    /// # Errors
    /// The last fetch error, or [`Error::Interrupted`].
    pub fn refresh_credentials(
        &mut self,
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<(), Error> {
        if matches!(self.settings.source, Source::Static(_)) {
            return Ok(());
        }
        let result = self.retrying("credentials refresh", budget, clock, |c, _timer| {
            c.fetch_credentials().map(|fresh| c.cached = Some(fresh))
        });
        if let (Err(e), Some(old)) = (&result, &self.cached) {
            if old.expiry.map(|x| x > clock.wall()).unwrap_or(true) {
                warn!("refreshing credentials failed, the cached ones stay in use until they expire: {e}");
            }
        }
        result
    }

    fn credentials(&mut self, clock: &mut dyn Clock) -> Result<Credentials, Error> {
        let now = clock.wall();
        if let Some(c) = &self.cached {
            if !c.needs_refresh(now) {
                return Ok(c.clone());
            }
        }
        match self.fetch_credentials() {
            Ok(fresh) => {
                if fresh.expiry.is_some() {
                    info!(
                        "credentials from {} for {} valid until {}",
                        self.settings.source.name(),
                        fresh.access_key_id,
                        fresh
                            .expiry
                            .map(|e| humantime::format_rfc3339_seconds(e).to_string())
                            .unwrap_or_default()
                    );
                }
                self.cached = Some(fresh.clone());
                Ok(fresh)
            }
            Err(e) => match &self.cached {
                // Refresh failed but the old credentials still work: use them.
                Some(old) if old.expiry.map(|x| x > now).unwrap_or(true) => {
                    warn!("refreshing credentials failed, using the cached ones until they expire: {e}");
                    Ok(old.clone())
                }
                _ => Err(e),
            },
        }
    }

    fn fetch_credentials(&self) -> Result<Credentials, Error> {
        match &self.settings.source {
            Source::Static(c) => Ok(c.clone()),
            Source::WebIdentity {
                role_arn,
                token_file,
                session_name,
            } => {
                let contents = std::fs::read(token_file).map_err(|e| {
                    Error::Credentials(format!(
                        "cannot read web identity token file {token_file}: {e}"
                    ))
                })?;
                let token = web_identity_token_from(&contents, token_file)?;
                let params = sts::assume_role_with_web_identity(role_arn, session_name, &token);
                let req = HttpRequest {
                    method: "POST",
                    url: format!("{}/", self.settings.sts_url),
                    headers: vec![("content-type".into(), FORM.into())],
                    body: encode_form(&params).into_bytes(),
                    timeout: CALL_TIMEOUT,
                };
                let resp = self.transport.send("AssumeRoleWithWebIdentity", &req)?;
                debug!("AssumeRoleWithWebIdentity -> HTTP {}", resp.status);
                sts::parse_assume_role_with_web_identity(resp.status, &resp.body)
            }
            Source::Container {
                url,
                token_file,
                token,
            } => {
                let mut headers = Vec::new();
                let auth = match (token_file, token) {
                    (Some(path), _) => {
                        let contents = std::fs::read(path).map_err(|e| {
                            Error::Credentials(format!(
                                "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {path}: {e}"
                            ))
                        })?;
                        Some(container_token_from(&contents, path)?)
                    }
                    (None, Some(t)) => Some(t.clone()),
                    (None, None) => None,
                };
                if let Some(a) = auth {
                    headers.push(("authorization".to_owned(), a.expose().to_owned()));
                }
                let req = HttpRequest {
                    method: "GET",
                    url: url.clone(),
                    headers,
                    body: Vec::new(),
                    timeout: METADATA_TIMEOUT,
                };
                let resp = self.transport.send("container credentials", &req)?;
                check_status("container credentials", &resp)?;
                parse_credentials_json("container credentials", resp.status, &resp.body)
            }
            Source::Imds { endpoint } => self.fetch_imds(endpoint),
        }
    }

    fn fetch_imds(&self, endpoint: &str) -> Result<Credentials, Error> {
        const WHAT: &str = "IMDSv2";
        let token_req = HttpRequest {
            method: "PUT",
            url: format!("{endpoint}/latest/api/token"),
            headers: vec![(
                "x-aws-ec2-metadata-token-ttl-seconds".into(),
                "21600".into(),
            )],
            body: Vec::new(),
            timeout: METADATA_TIMEOUT,
        };
        // Unreachable IMDS (a pod behind a hop limit of 1, or no EC2 at all)
        // is final: fail fast with the hint instead of retrying for minutes.
        let resp = self
            .transport
            .send(WHAT, &token_req)
            .map_err(|e| Error::Credentials(imds_hint(e).to_string()))?;
        check_status(WHAT, &resp)?;
        let token = String::from_utf8(resp.body).map_err(|_| Error::Response {
            action: WHAT.into(),
            status: resp.status,
            detail: "token is not UTF-8".into(),
        })?;
        let get = |path: &str| HttpRequest {
            method: "GET",
            url: format!("{endpoint}/latest/meta-data/iam/security-credentials/{path}"),
            headers: vec![("x-aws-ec2-metadata-token".into(), token.trim().to_owned())],
            body: Vec::new(),
            timeout: METADATA_TIMEOUT,
        };
        let resp = self.transport.send(WHAT, &get("")).map_err(imds_hint)?;
        if resp.status == 404 {
            return Err(Error::Credentials(
                "IMDSv2: no IAM role is attached to this instance".into(),
            ));
        }
        check_status(WHAT, &resp)?;
        let listing = String::from_utf8_lossy(&resp.body).into_owned();
        let role = listing
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .ok_or_else(|| {
                Error::Credentials("IMDSv2: no IAM role is attached to this instance".into())
            })?
            .to_owned();
        if role.contains(['/', '?', '#', ' ']) {
            return Err(Error::Response {
                action: WHAT.into(),
                status: resp.status,
                detail: format!("unexpected role name {role:?}"),
            });
        }
        let resp = self.transport.send(WHAT, &get(&role)).map_err(imds_hint)?;
        check_status(WHAT, &resp)?;
        parse_credentials_json(WHAT, resp.status, &resp.body)
    }

    /// Runs `op` until it succeeds, fails for good, runs out of `budget`,
    /// or an event interrupts a backoff sleep.
    fn retrying<R>(
        &mut self,
        action: &str,
        budget: Budget,
        clock: &mut dyn Clock,
        mut op: impl FnMut(&mut Self, &mut dyn Clock) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut attempts = 0u32;
        let mut retried_expired = false;
        loop {
            // The first attempt is always made, even past the deadline: a
            // shutdown that spent its budget on one target group still sends
            // one DeregisterTargets for each of the others.
            attempts += 1;
            let err = match op(self, clock) {
                Ok(r) => return Ok(r),
                Err(e) => e,
            };
            // ExpiredToken from ELBv2 means our cached credentials died
            // early: fetch new ones once. From STS it is about the web
            // identity token, and the cached credentials must survive it.
            let elbv2_answer = matches!(&err, Error::Aws { action, .. } if elbv2::ACTIONS.contains(&action.as_str()));
            if elbv2_answer
                && is_expired_credentials(&err)
                && !retried_expired
                && clock.now() < budget.deadline
            {
                warn!("{action}: credentials expired, fetching new ones");
                self.cached = None;
                retried_expired = true;
                continue;
            }
            if !is_retryable(&err) || attempts >= budget.max_attempts {
                return Err(err);
            }
            let delay = self.backoff.delay(attempts - 1, clock.random());
            if clock.now() + delay >= budget.deadline {
                return Err(Error::Deadline {
                    action: action.to_owned(),
                    attempts,
                    last: Some(Box::new(err)),
                });
            }
            warn!(
                "{err}; retrying in {} ms (attempt {attempts})",
                delay.as_millis()
            );
            clock.sleep(delay).map_err(|_| Error::Interrupted)?;
        }
    }

    /// Sends one signed ELBv2 request and parses its answer with `parse`.
    fn elbv2_once<R>(
        &mut self,
        action: &str,
        params: &Params,
        deadline: Instant,
        clock: &mut dyn Clock,
        parse: Parser<'_, R>,
    ) -> Result<R, Error> {
        let creds = self.credentials(clock)?;
        let body = encode_form(params).into_bytes();
        let url = format!("{}/", self.settings.elbv2_url);
        let mut headers = vec![("content-type".to_owned(), FORM.to_owned())];
        let signed = sign(
            ToSign {
                method: "POST",
                url: &url,
                headers: &headers,
                body: &body,
            },
            &creds,
            &self.settings.region,
            elbv2::SIGNING_NAME,
            clock.wall(),
        )?;
        headers.extend(signed);
        let left = deadline.saturating_duration_since(clock.now());
        let req = HttpRequest {
            method: "POST",
            url,
            headers,
            body,
            timeout: CALL_TIMEOUT.min(left.max(MIN_CALL_TIMEOUT)),
        };
        let started = clock.now();
        let resp = self.transport.send(action, &req)?;
        debug!(
            "{action} -> HTTP {} in {} ms",
            resp.status,
            clock.now().saturating_duration_since(started).as_millis()
        );
        parse(resp.status, &resp.body)
    }

    fn elbv2<R>(
        &mut self,
        action: &str,
        params: Params,
        budget: Budget,
        clock: &mut dyn Clock,
        parse: Parser<'_, R>,
    ) -> Result<R, Error> {
        self.retrying(action, budget, clock, |c, clock| {
            c.elbv2_once(action, &params, budget.deadline, clock, parse)
        })
    }

    /// DescribeTargetGroups by names.
    ///
    /// # Errors
    /// The AWS error (e.g. `TargetGroupNotFound`), a transport error, or
    /// [`Error::Deadline`] / [`Error::Interrupted`].
    pub fn describe_target_groups_by_name(
        &mut self,
        names: &[String],
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<WithId<Vec<TargetGroup>>, Error> {
        let params = elbv2::describe_target_groups_by_name(names);
        self.elbv2("DescribeTargetGroups", params, budget, clock, &|s, b| {
            elbv2::parse_describe_target_groups(s, b)
                .map(|(value, request_id)| WithId { value, request_id })
        })
    }

    /// DescribeTargetGroups by ARNs.
    ///
    /// # Errors
    /// As [`Client::describe_target_groups_by_name`].
    pub fn describe_target_groups_by_arn(
        &mut self,
        arns: &[String],
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<WithId<Vec<TargetGroup>>, Error> {
        let params = elbv2::describe_target_groups_by_arn(arns);
        self.elbv2("DescribeTargetGroups", params, budget, clock, &|s, b| {
            elbv2::parse_describe_target_groups(s, b)
                .map(|(value, request_id)| WithId { value, request_id })
        })
    }

    /// RegisterTargets; returns the request id.
    ///
    /// # Errors
    /// As [`Client::describe_target_groups_by_name`].
    pub fn register_targets(
        &mut self,
        arn: &str,
        targets: &[Target],
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<Option<String>, Error> {
        let params = elbv2::register_targets(arn, targets);
        self.elbv2("RegisterTargets", params, budget, clock, &|s, b| {
            elbv2::parse_ack("RegisterTargets", s, b)
        })
    }

    /// DeregisterTargets; returns the request id.
    ///
    /// # Errors
    /// As [`Client::describe_target_groups_by_name`].
    pub fn deregister_targets(
        &mut self,
        arn: &str,
        targets: &[Target],
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<Option<String>, Error> {
        let params = elbv2::deregister_targets(arn, targets);
        self.elbv2("DeregisterTargets", params, budget, clock, &|s, b| {
            elbv2::parse_ack("DeregisterTargets", s, b)
        })
    }

    /// DescribeTargetHealth of `targets` in `arn`.
    ///
    /// # Errors
    /// As [`Client::describe_target_groups_by_name`].
    pub fn describe_target_health(
        &mut self,
        arn: &str,
        targets: &[Target],
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<WithId<Vec<TargetHealth>>, Error> {
        let params = elbv2::describe_target_health(arn, targets);
        self.elbv2("DescribeTargetHealth", params, budget, clock, &|s, b| {
            elbv2::parse_describe_target_health(s, b)
                .map(|(value, request_id)| WithId { value, request_id })
        })
    }
}

fn check_status(what: &str, resp: &HttpResponse) -> Result<(), Error> {
    if (200..300).contains(&resp.status) {
        return Ok(());
    }
    Err(Error::Aws {
        action: what.to_owned(),
        error: AwsError {
            status: resp.status,
            code: format!("HttpStatus{}", resp.status),
            message: super::error::snippet(&resp.body),
            request_id: None,
        },
    })
}

fn imds_hint(e: Error) -> Error {
    match e {
        Error::Transport {
            action,
            url,
            kind,
            detail,
        } => Error::Transport {
            action,
            url,
            kind,
            detail: format!(
                "{detail} (pods reach IMDS only with a hop limit of 2; prefer IRSA or EKS Pod Identity, \
                 or set AWS_EC2_METADATA_DISABLED=true)"
            ),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::credentials::Secret;
    use crate::aws::error::TransportKind;
    use crate::clock::Interrupted;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// A clock that only moves when slept on.
    struct FakeTimer {
        start: Instant,
        elapsed: Duration,
        slept: Vec<Duration>,
        interrupt_after: Option<usize>,
    }

    impl FakeTimer {
        fn new() -> Self {
            FakeTimer {
                start: Instant::now(),
                elapsed: Duration::ZERO,
                slept: Vec::new(),
                interrupt_after: None,
            }
        }
    }

    impl Clock for FakeTimer {
        fn now(&self) -> Instant {
            self.start + self.elapsed
        }
        fn wall(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_secs(1_700_000_000) + self.elapsed
        }
        fn random(&mut self) -> f64 {
            0.5
        }
        fn sleep(&mut self, d: Duration) -> Result<(), Interrupted> {
            if self.interrupt_after == Some(self.slept.len()) {
                return Err(Interrupted);
            }
            self.slept.push(d);
            self.elapsed += d;
            Ok(())
        }
    }

    /// A transport answering from a script and recording what it was sent.
    struct Scripted {
        answers: RefCell<VecDeque<Result<HttpResponse, Error>>>,
        seen: RefCell<Vec<HttpRequest>>,
    }

    impl Transport for &Scripted {
        fn send(&self, _action: &str, req: &HttpRequest) -> Result<HttpResponse, Error> {
            self.seen.borrow_mut().push(req.clone());
            self.answers.borrow_mut().pop_front().unwrap_or_else(|| {
                Err(Error::Transport {
                    action: "x".into(),
                    url: req.url.clone(),
                    kind: TransportKind::Connect,
                    detail: "script exhausted".into(),
                })
            })
        }
    }

    fn ok(body: &[u8]) -> Result<HttpResponse, Error> {
        Ok(HttpResponse {
            status: 200,
            body: body.to_vec(),
        })
    }

    fn status(code: u16, body: &[u8]) -> Result<HttpResponse, Error> {
        Ok(HttpResponse {
            status: code,
            body: body.to_vec(),
        })
    }

    fn settings(source: Source) -> Settings {
        Settings {
            region: "us-east-1".into(),
            elbv2_url: "http://127.0.0.1:1".into(),
            sts_url: "http://127.0.0.1:2".into(),
            source,
        }
    }

    fn static_source() -> Source {
        Source::Static(Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: Secret::new("SECRET".into()),
            session_token: None,
            expiry: None,
        })
    }

    const REGISTERED: &[u8] = include_bytes!("../../tests/data/register_targets.xml");
    const THROTTLED: &[u8] = include_bytes!("../../tests/data/throttling.xml");

    fn target() -> Vec<Target> {
        vec![Target {
            id: "10.0.0.1".into(),
            port: Some(80),
            availability_zone: None,
        }]
    }

    #[test]
    fn retries_throttling_then_succeeds_with_jittered_backoff() {
        let s = Scripted {
            answers: RefCell::new(VecDeque::from([
                status(400, THROTTLED),
                status(503, b""),
                ok(REGISTERED),
            ])),
            seen: RefCell::new(Vec::new()),
        };
        let mut c = Client::new(&s, settings(static_source()));
        let mut t = FakeTimer::new();
        let deadline = t.now() + Duration::from_secs(60);
        let id = c
            .register_targets("arn:tg", &target(), Budget::until(deadline), &mut t)
            .unwrap();
        assert_eq!(id.as_deref(), Some("f9a1e3a7-f3a9-11e5-ae48-cff02092876b"));
        assert_eq!(
            t.slept,
            vec![Duration::from_millis(100), Duration::from_millis(200)]
        );
        let seen = s.seen.borrow();
        assert_eq!(seen.len(), 3);
        let auth = seen[0]
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap();
        assert!(auth
            .1
            .contains("Credential=AKID/20231114/us-east-1/elasticloadbalancing/aws4_request"));
        let body = String::from_utf8(seen[0].body.clone()).unwrap();
        assert!(
            body.starts_with("Action=RegisterTargets&Version=2015-12-01&TargetGroupArn=arn%3Atg")
        );
    }

    #[test]
    fn never_retries_client_errors() {
        let denied = br#"<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error></ErrorResponse>"#;
        let s = Scripted {
            answers: RefCell::new(VecDeque::from([status(403, denied), ok(REGISTERED)])),
            seen: RefCell::new(Vec::new()),
        };
        let mut c = Client::new(&s, settings(static_source()));
        let mut t = FakeTimer::new();
        let deadline = t.now() + Duration::from_secs(60);
        let e = c
            .register_targets("arn:tg", &target(), Budget::until(deadline), &mut t)
            .unwrap_err();
        assert_eq!(e.aws_code(), Some("AccessDenied"));
        assert_eq!(s.seen.borrow().len(), 1);
    }

    #[test]
    fn stops_at_the_deadline_with_the_last_error() {
        let s = Scripted {
            answers: RefCell::new((0..100).map(|_| status(500, b"oops")).collect()),
            seen: RefCell::new(Vec::new()),
        };
        let mut c = Client::new(&s, settings(static_source()));
        let mut t = FakeTimer::new();
        let deadline = t.now() + Duration::from_secs(10);
        let e = c
            .deregister_targets("arn:tg", &target(), Budget::until(deadline), &mut t)
            .unwrap_err();
        match &e {
            Error::Deadline { attempts, last, .. } => {
                assert!(*attempts > 3);
                assert!(last.as_ref().unwrap().to_string().contains("HttpStatus500"));
            }
            other => panic!("{other:?}"),
        }
        assert!(t.elapsed <= Duration::from_secs(10));
    }

    #[test]
    fn max_attempts_and_interrupts() {
        let s = Scripted {
            answers: RefCell::new((0..10).map(|_| status(400, THROTTLED)).collect()),
            seen: RefCell::new(Vec::new()),
        };
        let mut c = Client::new(&s, settings(static_source()));
        let mut t = FakeTimer::new();
        let budget = Budget {
            deadline: t.now() + Duration::from_secs(60),
            max_attempts: 2,
        };
        let e = c
            .describe_target_health("arn:tg", &target(), budget, &mut t)
            .unwrap_err();
        assert_eq!(e.aws_code(), Some("Throttling"));
        assert_eq!(s.seen.borrow().len(), 2);
        t.interrupt_after = Some(t.slept.len());
        let e = c
            .describe_target_health(
                "arn:tg",
                &target(),
                Budget::until(t.now() + Duration::from_secs(60)),
                &mut t,
            )
            .unwrap_err();
        assert_eq!(e, Error::Interrupted);
    }

    #[test]
    fn web_identity_fetch_caches_and_refreshes() {
        let dir = std::env::temp_dir().join(format!("nlb-wi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token_file = dir.join("token");
        std::fs::write(&token_file, "first-token\n").unwrap();
        // Expiry 2014: already expired relative to the fake clock, so every call refreshes.
        let sts_body = include_bytes!("../../tests/data/assume_role_with_web_identity.xml");
        let s = Scripted {
            answers: RefCell::new(VecDeque::from([
                ok(sts_body),
                ok(REGISTERED),
                ok(sts_body),
                ok(REGISTERED),
            ])),
            seen: RefCell::new(Vec::new()),
        };
        let source = Source::WebIdentity {
            role_arn: "arn:aws:iam::1:role/r".into(),
            token_file: token_file.to_string_lossy().into_owned(),
            session_name: "s".into(),
        };
        let mut c = Client::new(&s, settings(source));
        let mut t = FakeTimer::new();
        let budget = Budget::until(t.now() + Duration::from_secs(60));
        c.register_targets("arn:tg", &target(), budget, &mut t)
            .unwrap();
        std::fs::write(&token_file, "second-token").unwrap();
        c.register_targets("arn:tg", &target(), budget, &mut t)
            .unwrap();
        let seen = s.seen.borrow();
        let sts1 = String::from_utf8(seen[0].body.clone()).unwrap();
        let sts2 = String::from_utf8(seen[2].body.clone()).unwrap();
        assert!(sts1.contains("WebIdentityToken=first-token"), "{sts1}");
        assert!(sts2.contains("WebIdentityToken=second-token"), "{sts2}");
        assert!(!seen[0].headers.iter().any(|(k, _)| k == "authorization"));
        let elb = &seen[1];
        assert!(elb.headers.iter().any(|(k, v)| k == "x-amz-security-token"
            && v == "AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn expired_token_answer_forces_one_refresh() {
        let expired = br#"<ErrorResponse><Error><Code>ExpiredToken</Code><Message>The security token included in the request is expired</Message></Error></ErrorResponse>"#;
        let creds_json = br#"{"AccessKeyId":"ASIA1","SecretAccessKey":"S1","Token":"T1","Expiration":"2099-01-01T00:00:00Z"}"#;
        let creds_json2 = br#"{"AccessKeyId":"ASIA2","SecretAccessKey":"S2","Token":"T2","Expiration":"2099-01-01T00:00:00Z"}"#;
        let s = Scripted {
            answers: RefCell::new(VecDeque::from([
                ok(creds_json),
                status(400, expired),
                ok(creds_json2),
                ok(REGISTERED),
            ])),
            seen: RefCell::new(Vec::new()),
        };
        let source = Source::Container {
            url: "http://127.0.0.1:3/creds".into(),
            token_file: None,
            token: Some(Secret::new("container-token".into())),
        };
        let mut c = Client::new(&s, settings(source));
        let mut t = FakeTimer::new();
        c.register_targets(
            "arn:tg",
            &target(),
            Budget::until(t.now() + Duration::from_secs(60)),
            &mut t,
        )
        .unwrap();
        let seen = s.seen.borrow();
        assert_eq!(seen.len(), 4);
        assert!(seen[0]
            .headers
            .contains(&("authorization".into(), "container-token".into())));
        assert!(seen[3]
            .headers
            .iter()
            .any(|(k, v)| k == "authorization" && v.contains("Credential=ASIA2/")));
        assert!(t.slept.is_empty());
    }

    #[test]
    fn imds_flow_and_errors() {
        let creds = include_bytes!("../../tests/data/imds_credentials.json");
        let s = Scripted {
            answers: RefCell::new(VecDeque::from([
                ok(b"IMDSTOKEN"),
                ok(b"my-role\n"),
                ok(creds),
            ])),
            seen: RefCell::new(Vec::new()),
        };
        let c = Client::new(
            &s,
            settings(Source::Imds {
                endpoint: "http://127.0.0.1:4".into(),
            }),
        );
        let got = c.fetch_imds("http://127.0.0.1:4").unwrap();
        assert_eq!(got.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        let seen = s.seen.borrow();
        assert_eq!(seen[0].method, "PUT");
        assert_eq!(
            seen[2].url,
            "http://127.0.0.1:4/latest/meta-data/iam/security-credentials/my-role"
        );
        assert!(seen[2]
            .headers
            .contains(&("x-aws-ec2-metadata-token".into(), "IMDSTOKEN".into())));
        drop(seen);

        let s = Scripted {
            answers: RefCell::new(VecDeque::new()),
            seen: RefCell::new(Vec::new()),
        };
        let c = Client::new(
            &s,
            settings(Source::Imds {
                endpoint: "http://127.0.0.1:4".into(),
            }),
        );
        let e = c.fetch_imds("http://127.0.0.1:4").unwrap_err();
        assert!(e.to_string().contains("hop limit"), "{e}");

        let s = Scripted {
            answers: RefCell::new(VecDeque::from([ok(b"T"), status(404, b"")])),
            seen: RefCell::new(Vec::new()),
        };
        let c = Client::new(
            &s,
            settings(Source::Imds {
                endpoint: "http://127.0.0.1:4".into(),
            }),
        );
        let e = c.fetch_imds("http://127.0.0.1:4").unwrap_err();
        assert!(e.to_string().contains("no IAM role"), "{e}");
    }
}
