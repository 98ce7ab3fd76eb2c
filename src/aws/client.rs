//! The AWS client: signing, sending and retrying.
//!
//! [`Client::call`] sends any [`Action`]: it takes credentials from the
//! [`Cache`] (fetching them through [`providers`] when missing or due, and
//! once more if AWS says they expired), signs the request with SigV4 at the
//! [`Clock`]'s wall-clock time, and retries what is worth retrying with
//! jittered backoff until the caller's deadline. A backoff sleep is cut
//! short when the clock reports an event; a request already on the wire is
//! not (it ends at its timeout), which is what lets the caller order a
//! DeregisterTargets after a RegisterTargets that may have landed.
//!
//! Every request of an attempt, the credentials fetch included, ends by the
//! call's deadline: its timeout is cut to the time left (`Bounded`),
//! so a held STS or metadata endpoint cannot stretch a shutdown past
//! `-deregister-timeout`. The one attempt always made, even past the
//! deadline, gets [`MIN_CALL_TIMEOUT`]. And one attempt, credentials fetch
//! (metadata, STS, AssumeRole) and call together, takes at most one
//! [`CALL_TIMEOUT`]: a request on the wire when a signal comes delays the
//! deregistration by that much at most, whatever it had to fetch first.

use super::credentials::assume_role::{Role, RoleLayer, Upstream};
use super::credentials::{providers, select_source, Cache, Credentials, Source};
use super::endpoint;
use super::error::{
    is_expired_credentials, is_retryable, is_throttling, parse_error, Error, TransportKind,
    THROTTLING_CODES,
};
use super::http::{HttpRequest, HttpResponse, Transport};
use super::query::{Action, Service, CALL_TIMEOUT};
use super::retry::{Adaptive, Backoff, Bucket};
use super::sign::signed_query;
use super::skew::{self, shift, Offset};
use super::sts::{AssumeRole, AssumeRoleWithWebIdentity};
use crate::clock::Clock;
use crate::env::Env;
use crate::metrics;
use log::{debug, warn};
use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime};

pub use super::query::WithId;

/// Least time an attempt gets for all its requests (credentials fetch and
/// signed request), even when the deadline is closer (or past, for the one
/// attempt always made).
pub const MIN_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// A throttled call retries within the time left to its deadline when its
/// paced slot is longer than half of it, as long as this much is left.
const MIN_PACED_LEFT: Duration = Duration::from_secs(1);
/// The instant one attempt that starts at `started` must end by: one
/// [`CALL_TIMEOUT`] for everything it sends (credentials included), cut to
/// the `deadline`, but never less than [`MIN_CALL_TIMEOUT`].
pub fn attempt_until(deadline: Instant, started: Instant) -> Instant {
    deadline
        .min(started + CALL_TIMEOUT)
        .max(started + MIN_CALL_TIMEOUT)
}

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
    /// The role to assume with them (`-role-arn`), whose credentials then
    /// sign the ELBv2 calls.
    pub role: Option<Role>,
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
            role: None,
        })
    }

    /// Where the credentials of the signed calls come from, for logs:
    /// the source, or the role and the source that assumes it.
    pub fn credentials_label(&self) -> String {
        match &self.role {
            None => self.source.name().to_owned(),
            Some(role) => format!("{}, assumed with {}", role.label(), self.source.name()),
        }
    }

    /// The SigV4 region of requests to `service` (`us-east-1` for the
    /// global STS endpoint).
    fn signing_region(&self, service: Service) -> &str {
        match service {
            Service::Elbv2 => &self.region,
            Service::Sts => endpoint::sts_signing_region(&self.sts_url, &self.region),
        }
    }

    fn url(&self, service: Service) -> &str {
        match service {
            Service::Elbv2 => &self.elbv2_url,
            Service::Sts => &self.sts_url,
        }
    }
}

/// Where the role layer fetches from.
fn upstream(settings: &Settings) -> Upstream<'_> {
    Upstream {
        source: &settings.source,
        sts_url: &settings.sts_url,
        region: &settings.region,
    }
}

/// The AWS client: sends signed Query API calls over a [`Transport`].
pub struct Client<T: Transport> {
    transport: T,
    settings: Settings,
    /// The credentials that sign the calls: the source's, or the role's.
    cache: Cache,
    /// With a role: the base layer and how to assume the role with it.
    role: Option<RoleLayer>,
    backoff: Backoff,
    /// AWS's clock minus ours, learnt from a clock skew answer; added to
    /// the wall clock for every signature.
    clock_offset: Offset,
    /// The `Date` header (AWS's time) of the last answer of this attempt.
    last_date: Cell<Option<SystemTime>>,
    /// Pacing of the `Describe*` calls after throttling answers.
    describe: Adaptive,
    /// Pacing of RegisterTargets / DeregisterTargets after throttling answers.
    mutating: Adaptive,
    /// Attempts of the last call that may have reached AWS without their
    /// answer reaching us ([`Client::unanswered_attempts`]).
    unanswered: u32,
}

impl<T: Transport> Client<T> {
    /// A client over `transport` with resolved `settings`.
    pub fn new(transport: T, settings: Settings) -> Self {
        Client {
            role: settings.role.clone().map(RoleLayer::new),
            transport,
            settings,
            cache: Cache::default(),
            backoff: Backoff::default(),
            clock_offset: 0,
            last_date: Cell::new(None),
            describe: Adaptive::default(),
            mutating: Adaptive::default(),
            unanswered: 0,
        }
    }

    /// How many attempts of the last call ([`Client::call`]) ended without
    /// an answer after they may have reached AWS: a timeout or a broken
    /// connection. AWS may have applied such an attempt even when a later
    /// one was answered, and may apply it late, after a call that undoes it.
    pub fn unanswered_attempts(&self) -> u32 {
        self.unanswered
    }

    /// The pacing state of the ELBv2 bucket `bucket` (`None` for
    /// [`Bucket::Other`]).
    pub fn adaptive(&self, bucket: Bucket) -> Option<&Adaptive> {
        match bucket {
            Bucket::Describe => Some(&self.describe),
            Bucket::Mutating => Some(&self.mutating),
            Bucket::Other => None,
        }
    }

    fn adaptive_mut(&mut self, bucket: Bucket) -> Option<&mut Adaptive> {
        match bucket {
            Bucket::Describe => Some(&mut self.describe),
            Bucket::Mutating => Some(&mut self.mutating),
            Bucket::Other => None,
        }
    }

    /// The resolved settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// When cached temporary credentials should be refreshed ahead of need
    /// (with a role, the earlier of its layers). On the local clock: AWS's
    /// expiry less the learnt clock offset.
    pub fn refresh_due(&self) -> Option<SystemTime> {
        let base = self.role.as_ref().and_then(RoleLayer::base_refresh_due);
        let due = match (self.cache.refresh_due(), base) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        due.map(|due| shift(due, self.clock_offset.saturating_neg()))
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
        self.retrying(
            "credentials",
            Bucket::Other,
            false,
            budget,
            clock,
            |c, clock, until| c.credentials(clock, until).map(|_| ()),
        )
    }

    /// Fetches new temporary credentials now (a process at rest calls this
    /// at [`Client::refresh_due`]); the cached ones stay in use if it fails.
    ///
    /// Each attempt, all its requests included (with a role: the base
    /// fetch, AssumeRole, and both again after an `ExpiredToken`), ends
    /// within one [`CALL_TIMEOUT`]: a signal that comes during a refresh
    /// waits for one request timeout at most, since the backoff sleep
    /// after the attempt is cut short by it.
    ///
    /// # Errors
    /// The last fetch error, or [`Error::Interrupted`].
    pub fn refresh_credentials(
        &mut self,
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<(), Error> {
        if matches!(self.settings.source, Source::Static(_)) && self.role.is_none() {
            return Ok(());
        }
        let result = self.retrying(
            "credentials refresh",
            Bucket::Other,
            false,
            budget,
            clock,
            |c, clock, until| {
                let until = until.min(clock.now() + CALL_TIMEOUT);
                let fetched = c.fetch_credentials(clock, until);
                c.cache.store_fetched(c.settings.source.name(), fetched)
            },
        );
        if let Err(e) = &result {
            if self.cache.usable(shift(clock.wall(), self.clock_offset)) {
                warn!("refreshing credentials failed, the cached ones stay in use until they expire: {e}");
            }
        }
        result
    }

    /// Sends `action`, signed, retrying within `budget`. The first attempt
    /// always goes at once; after a throttling answer the retry waits a
    /// slot of its bucket's cut rate ([`Adaptive::retry_delay`]).
    ///
    /// # Errors
    /// The AWS error (e.g. `TargetGroupNotFound`), a transport or
    /// credentials error, or [`Error::Deadline`] / [`Error::Interrupted`].
    pub fn call<A: Action>(
        &mut self,
        action: &A,
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<WithId<A::Output>, Error> {
        let form = action.form();
        self.retrying(
            A::NAME,
            A::BUCKET,
            true,
            budget,
            clock,
            |c, clock, until| {
                let resp = c.send_signed(A::NAME, A::SERVICE, &form, until, clock)?;
                A::parse_response(resp.status, &resp.body)
            },
        )
    }

    /// Valid credentials, fetched by `until` when none are cached or the
    /// cached ones are due for a refresh. A refresh ahead of expiry, while
    /// the cached credentials outlive the attempt, gets half the time left:
    /// the other half is the call's, with the cached credentials if the
    /// refresh fails.
    fn credentials(&mut self, clock: &mut dyn Clock, until: Instant) -> Result<Credentials, Error> {
        // Expiry times are AWS's: compare them with AWS's time.
        let wall = shift(clock.wall(), self.clock_offset);
        let Client {
            transport,
            settings,
            cache,
            role,
            last_date,
            ..
        } = self;
        let now = clock.now();
        let left = until.saturating_duration_since(now);
        let fetch_until = if cache.usable(wall + left) {
            now + left / 2
        } else {
            until
        };
        let clock: &dyn Clock = clock;
        let bounded = Bounded {
            inner: &*transport,
            until: fetch_until,
            clock,
            last_date,
        };
        match role {
            None => cache.get(wall, settings.source.name(), || {
                providers::fetch(&settings.source, &settings.sts_url, &bounded)
            }),
            // -role-arn: the role's credentials, assumed with the base layer's.
            Some(layer) => {
                let up = upstream(settings);
                cache.get(wall, &layer.role().label(), || {
                    layer.fetch(up, &bounded, wall, false)
                })
            }
        }
    }

    /// Fetches the signing credentials anew (with a role: the base layer
    /// too when its refresh is due), every request ending by `until`.
    fn fetch_credentials(
        &mut self,
        clock: &dyn Clock,
        until: Instant,
    ) -> Result<Credentials, Error> {
        let bounded = Bounded {
            inner: &self.transport,
            until,
            clock,
            last_date: &self.last_date,
        };
        match &mut self.role {
            None => providers::fetch(&self.settings.source, &self.settings.sts_url, &bounded),
            Some(layer) => {
                let wall = shift(clock.wall(), self.clock_offset);
                layer.fetch(upstream(&self.settings), &bounded, wall, true)
            }
        }
    }

    /// Runs `op` until it succeeds, fails for good, runs out of `budget`,
    /// or an event interrupts a backoff sleep. Each attempt's requests must
    /// end by the instant `op` is given ([`attempt_until`]).
    /// Throttling answers pace the calls of `bucket`.
    /// An answer that says our clock is off (see [`skew`]), to the call or
    /// to AssumeRole on its way, sets the clock offset and is signed again
    /// once at once; with `signed`, an expired-credentials answer to
    /// `action` itself drops the cached credentials and is retried once at once.
    fn retrying<R>(
        &mut self,
        action: &str,
        bucket: Bucket,
        signed: bool,
        budget: Budget,
        clock: &mut dyn Clock,
        mut op: impl FnMut(&mut Self, &mut dyn Clock, Instant) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut attempts = 0u32;
        let mut retried_expired = false;
        let mut retried_skew = false;
        self.unanswered = 0;
        loop {
            // The first attempt is always made, even past the deadline: a
            // shutdown that spent its budget on one target group still sends
            // one DeregisterTargets for each of the others.
            attempts += 1;
            let started = clock.now();
            let until = attempt_until(budget.deadline, started);
            self.last_date.set(None);
            let result = op(self, clock, until);
            if may_have_landed(action, &result) {
                self.unanswered += 1;
            }
            if signed {
                record_request(
                    action,
                    &result,
                    clock.now().saturating_duration_since(started),
                );
            }
            let err = match result {
                Ok(r) => {
                    let now = clock.now();
                    if let Some(a) = self.adaptive_mut(bucket) {
                        a.on_success(now);
                    }
                    return Ok(r);
                }
                Err(e) => e,
            };
            // ExpiredToken in the answer to a signed call means our cached
            // credentials died early: fetch new ones once. From STS (while
            // fetching credentials) it is about the web identity token, and
            // the cached credentials must survive it.
            let own_answer = matches!(&err, Error::Aws { action: a, .. } if signed && a == action);
            // A clock skew answer: sign with AWS's time from now on, and
            // sign again once, at once (no backoff: the cause is fixed).
            let wall = clock.wall();
            if let Some(offset) =
                skew::correction(&err, self.last_date.get(), wall, self.clock_offset)
            {
                self.clock_offset = offset;
                let skew = skew::describe(offset);
                if !retried_skew && clock.now() < budget.deadline {
                    warn!(
                        action = action, error_code = err.aws_code(),
                        request_id = crate::logging::request_id_of(&err);
                        "{err}; {skew}: signing again with AWS's time, and from now on"
                    );
                    retried_skew = true;
                    look_for_event(clock)?;
                    continue;
                }
                warn!(action = action; "{skew}: later calls sign with AWS's time");
            }
            if own_answer
                && is_expired_credentials(&err)
                && !retried_expired
                && clock.now() < budget.deadline
            {
                warn!(
                    action = action, error_code = err.aws_code(),
                    request_id = crate::logging::request_id_of(&err);
                    "{action}: credentials expired, fetching new ones"
                );
                self.cache.forget();
                retried_expired = true;
                look_for_event(clock)?;
                continue;
            }
            // A throttling answer to this call cuts its bucket's rate: the
            // retry waits for a slot of the cut rate instead of the short
            // backoff. STS throttling a credentials fetch on the way says
            // nothing of the ELBv2 bucket: the short backoff then.
            let throttled =
                is_throttling(&err) && matches!(&err, Error::Aws { action: a, .. } if a == action);
            let now = clock.now();
            let paced = match self.adaptive_mut(bucket) {
                Some(a) if throttled => {
                    a.on_throttle(now);
                    Some(a.clone())
                }
                _ => None,
            };
            if !is_retryable(&err) || attempts >= budget.max_attempts {
                return Err(match err {
                    // Refused even with AWS's time: say what was measured.
                    Error::Aws { action, mut error } if retried_skew => {
                        let skew = skew::describe(self.clock_offset);
                        error.message = format!("{} (signed again: {skew})", error.message);
                        Error::Aws { action, error }
                    }
                    other => other,
                });
            }
            let random = clock.random();
            let mut delay = match &paced {
                Some(a) => a.retry_delay(random),
                None => self.backoff.delay(attempts - 1, random),
            };
            // A throttled call never waits more than half the time left: a
            // longer slot is redrawn in [0.2, 0.7) of it, so a deregistration
            // keeps trying, spread, until its deadline instead of giving up
            // early or sleeping through the last tokens.
            let left = budget.deadline.saturating_duration_since(now);
            if paced.is_some() && delay > left / 2 && left >= MIN_PACED_LEFT {
                delay = left.mul_f64(0.2 + 0.5 * random.clamp(0.0, 1.0));
            }
            if clock.now() + delay >= budget.deadline {
                return Err(Error::Deadline {
                    action: action.to_owned(),
                    attempts,
                    last: Some(Box::new(err)),
                });
            }
            let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            warn!(
                action = action, error_code = err.aws_code(),
                request_id = crate::logging::request_id_of(&err),
                attempt = attempts, retry_in_ms = retry_in_ms, throttled = throttled;
                "{err}; retrying in {retry_in_ms} ms (attempt {attempts})"
            );
            metrics::global().aws_retry(action);
            clock.sleep(delay).map_err(|_| Error::Interrupted)?;
        }
    }
}

/// Ends the call when a signal or drain request has come (a zero sleep
/// looks for one): a retry at once must not send a new request after it.
fn look_for_event(clock: &mut dyn Clock) -> Result<(), Error> {
    clock.sleep(Duration::ZERO).map_err(|_| Error::Interrupted)
}

/// Whether an attempt of `action` ended without an answer after its
/// request may have been sent: a timeout or a broken connection of its
/// own (not of a credentials fetch before it, not a refused connection).
fn may_have_landed<R>(action: &str, result: &Result<R, Error>) -> bool {
    matches!(result, Err(Error::Transport { action: a, kind: TransportKind::Timeout | TransportKind::Io, .. }) if a == action)
}

/// Counts one attempt of the signed call `action` in the metrics: its
/// outcome and duration, and whether it was throttled. An attempt that
/// sent no request (no credentials, interrupted) is not counted, nor one
/// whose failure came from fetching credentials: the error then names
/// another action (an STS call, counted by [`record_sts`] where it is
/// sent, or IMDS, counted among the credential refreshes).
fn record_request<R>(action: &str, result: &Result<R, Error>, took: Duration) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(Error::Aws { action: a, .. } | Error::Transport { action: a, .. }) if a != action => {
            return
        }
        Err(Error::Aws { error, .. }) => error.code.as_str(),
        Err(Error::Transport { .. }) => "transport_error",
        Err(Error::Response { .. }) => "invalid_response",
        Err(_) => return,
    };
    count_request(action, outcome, took);
}

/// Counts one STS request sent to fetch credentials
/// (`AssumeRoleWithWebIdentity`, `AssumeRole`) from its HTTP answer: `ok`
/// for a 2xx, else the error code of the body; other requests for
/// credentials (IMDS, the container endpoint) are not AWS API calls and
/// are not counted here.
fn record_sts(action: &str, result: &Result<HttpResponse, Error>, took: Duration) {
    if action != AssumeRoleWithWebIdentity::NAME && action != AssumeRole::NAME {
        return;
    }
    let code;
    let outcome = match result {
        Ok(r) if (200..300).contains(&r.status) => "ok",
        Ok(r) => {
            code = parse_error(r.status, &r.body).code;
            code.as_str()
        }
        Err(Error::Transport { .. }) => "transport_error",
        Err(_) => return,
    };
    count_request(action, outcome, took);
}

/// One request of `action` with `outcome` in the metrics, and a throttled
/// one when the outcome is a throttling code.
fn count_request(action: &str, outcome: &str, took: Duration) {
    let m = metrics::global();
    if THROTTLING_CODES.contains(&outcome) || outcome == "HttpStatus429" {
        m.aws_throttled(action);
    }
    m.aws_request(action, outcome, took);
}

impl<T: Transport> Client<T> {
    /// Sends the action `name` of `service` with parameters `form` once,
    /// signed, the credentials fetch (if any) and the request ending by `until`.
    fn send_signed(
        &mut self,
        name: &str,
        service: Service,
        form: &[(String, String)],
        until: Instant,
        clock: &mut dyn Clock,
    ) -> Result<HttpResponse, Error> {
        let creds = self.credentials(clock, until)?;
        let req = signed_query(
            self.settings.url(service),
            form,
            &creds,
            self.settings.signing_region(service),
            service,
            shift(clock.wall(), self.clock_offset),
        )?;
        let started = clock.now();
        let resp = Bounded {
            inner: &self.transport,
            until,
            clock,
            last_date: &self.last_date,
        }
        .send(name, &req)?;
        debug!(
            "{name} -> HTTP {} in {} ms",
            resp.status,
            clock.now().saturating_duration_since(started).as_millis()
        );
        Ok(resp)
    }
}

/// A transport whose requests end by `until`: each request's timeout is
/// cut to the time left, and none is sent once `until` has passed. It
/// keeps each answer's `Date` header in `last_date`.
struct Bounded<'a, T> {
    inner: &'a T,
    until: Instant,
    clock: &'a dyn Clock,
    last_date: &'a Cell<Option<SystemTime>>,
}

impl<T: Transport> Transport for Bounded<'_, T> {
    fn send(&self, action: &str, req: &HttpRequest) -> Result<HttpResponse, Error> {
        let started = self.clock.now();
        let left = self.until.saturating_duration_since(started);
        let result = if left >= req.timeout {
            self.inner.send(action, req)
        } else if left.is_zero() {
            return Err(Error::Transport {
                action: action.to_owned(),
                url: req.url.clone(),
                kind: TransportKind::Timeout,
                detail: "not sent: the step's deadline has passed".into(),
            });
        } else {
            let mut req = req.clone();
            req.timeout = left;
            self.inner.send(action, &req)
        };
        let took = self.clock.now().saturating_duration_since(started);
        record_sts(action, &result, took);
        if let Ok(resp) = &result {
            let date = resp.date.as_deref().and_then(skew::parse_http_date);
            self.last_date.set(date);
        }
        result
    }
}

#[cfg(test)]
mod tests;
