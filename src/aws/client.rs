//! The AWS client: every call and credentials fetch is signed, sent with
//! a timeout cut to the attempt, and retried with jittered backoff until
//! the caller's deadline (docs/aws.md, "Retries"). The generic layers
//! (`call`, `query`) are thin wrappers over one non-generic send path.

mod wire;

use super::credentials::{select_source, Cache, Credentials, Role, Source};
use super::endpoint;
use super::error::{Error, Layer, TransportKind as Kind};
use super::http::Transport;
pub use super::query::WithId;
use super::query::{Action, CALL_TIMEOUT};
use super::retry::{backoff, unit, Adaptive, Bucket};
use crate::clock::Clock;
use crate::env::Env;
use crate::metrics;
use log::warn;
use std::time::{Duration, Instant, SystemTime};

/// Least time an attempt gets, even past the deadline.
pub(crate) const MIN_CALL_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// The role to assume with them (`-role-arn`).
    pub role: Option<Role>,
}

impl Settings {
    /// Resolves everything from the environment (and the `-region` flag).
    ///
    /// # Errors
    /// [`Error::Config`] or [`Error::Credentials`] naming the bad variable.
    pub fn from_env(region: Option<&str>, env: &dyn Env, now: SystemTime) -> Result<Self, Error> {
        let region = endpoint::resolve_region(region, env)?;
        Ok(Settings {
            elbv2_url: endpoint::endpoint("elasticloadbalancing", &region, env)?,
            sts_url: endpoint::endpoint("sts", &region, env)?,
            source: select_source(env, now)?,
            region,
            role: None,
        })
    }

    /// Where the signing credentials come from, for logs.
    pub fn credentials_label(&self) -> String {
        let source = self.source.name();
        match &self.role {
            None => source.to_owned(),
            Some(role) => format!("role {}, assumed with {source}", role.arn),
        }
    }
}

/// What one attempt of [`Client::retrying`] runs.
type Attempt<'a, T> =
    &'a mut dyn FnMut(&mut Client<T>, &mut dyn Clock, Instant) -> Result<(), Error>;

/// The AWS client: sends signed Query API calls over a [`Transport`].
pub struct Client<T: Transport> {
    transport: T,
    /// Region, endpoints and credentials source.
    pub(crate) settings: Settings,
    /// The signing credentials: the source's, or the role's.
    cache: Cache,
    /// With a role: the source's credentials, which sign AssumeRole.
    base: Cache,
    /// Indexed by [`Bucket`] (`Other` has none).
    pacing: [Adaptive; 2],
    /// Attempts of the last call that timed out or broke after they may
    /// have reached AWS: AWS may still apply one, even late.
    pub(crate) unanswered: u32,
}

impl<T: Transport> Client<T> {
    /// A client over `transport` with resolved `settings`.
    pub fn new(transport: T, settings: Settings) -> Self {
        Client {
            cache: Cache::default(),
            base: Cache::default(),
            transport,
            settings,
            pacing: Default::default(),
            unanswered: 0,
        }
    }

    pub(crate) fn adaptive(&self, bucket: Bucket) -> Option<&Adaptive> {
        self.pacing.get(bucket as usize)
    }

    /// When cached temporary credentials (either layer) should be
    /// refreshed.
    pub(crate) fn refresh_due(&self) -> Option<SystemTime> {
        let (a, b) = (self.cache.refresh_due(), self.base.refresh_due());
        a.into_iter().chain(b).min()
    }

    /// Makes sure valid credentials are cached; with `refresh`, fetches new
    /// temporary ones now (the cached ones stay in use if that fails).
    pub(crate) fn fetch_credentials(
        &mut self,
        refresh: bool,
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<(), Error> {
        let s = &self.settings;
        if refresh && matches!(s.source, Source::Static(_)) && s.role.is_none() {
            return Ok(());
        }
        let what = ["credentials", "credentials refresh"][usize::from(refresh)];
        self.retrying(
            (what, Bucket::Other),
            budget,
            clock,
            &mut |c, clock, until| c.signing_credentials(refresh, clock, until).map(drop),
        )
    }

    /// Sends `action`, signed, retrying within `budget`.
    pub(crate) fn call<A: Action>(
        &mut self,
        action: &A,
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<WithId<A::Output>, Error> {
        let mut answer = None;
        let what = (A::NAME, A::BUCKET);
        self.retrying(what, budget, clock, &mut |c, clock, until| {
            let creds = c.signing_credentials(false, clock, until)?;
            answer = Some(c.query(action, Some(&creds), until, clock)?);
            Ok(())
        })?;
        // Always set when `retrying` succeeds.
        answer.ok_or(Error::Interrupted)
    }

    /// Valid signing credentials, fetched by `until` when missing or due
    /// (or `refresh`). A fetch while the cached ones still outlive the
    /// attempt gets half the time left: the call keeps the other half.
    fn signing_credentials(
        &mut self,
        refresh: bool,
        clock: &dyn Clock,
        until: Instant,
    ) -> Result<Credentials, Error> {
        let (wall, now) = (clock.wall(), clock.now());
        if let Some(fresh) = self.cache.fresh(wall, refresh) {
            return Ok(fresh);
        }
        let left = until.saturating_duration_since(now);
        let until = match !refresh && self.cache.usable(wall + left) {
            true => now + left / 2,
            false => until,
        };
        self.fetch(refresh, until, clock)
    }

    /// Runs `op` until it succeeds, fails for good, runs out of `budget`,
    /// or an event cuts a backoff sleep short.
    fn retrying(
        &mut self,
        (action, bucket): (&str, Bucket),
        budget: Budget,
        clock: &mut dyn Clock,
        op: Attempt<T>,
    ) -> Result<(), Error> {
        let (mut attempts, mut once) = (0u32, false);
        self.unanswered = 0;
        loop {
            // Even past the deadline: each group gets one DeregisterTargets.
            attempts += 1;
            let started = clock.now();
            let until = budget
                .deadline
                .min(started + CALL_TIMEOUT)
                .max(started + MIN_CALL_TIMEOUT);
            let Err(err) = op(self, clock, until) else {
                if let Some(a) = self.pacing.get_mut(bucket as usize) {
                    a.on_success(clock.now());
                }
                return Ok(());
            };
            // Fetch errors are wrapped: an unwrapped error is the call's own.
            if let Error::Transport { kind, .. } = &err {
                self.unanswered += u32::from(matches!(kind, Kind::Timeout | Kind::Io));
            }
            // Once per call, in time: expired credentials are fetched again.
            if !once && clock.now() < budget.deadline && self.forget_expired(action, &err) {
                once = true;
                // No new request after a signal.
                clock
                    .sleep(Duration::ZERO)
                    .map_err(|_| Error::Interrupted)?;
                continue;
            }
            if !err.is_retryable() || attempts >= budget.max_attempts {
                return Err(err);
            }
            let delay = self.retry_delay(&err, bucket, attempts, budget.deadline, clock);
            if clock.now() + delay >= budget.deadline {
                let (action, last) = (action.to_owned(), Box::new(err));
                return Err(Error::Deadline {
                    action,
                    attempts,
                    last,
                });
            }
            let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            let (code, id) = (err.aws_code(), err.request_id());
            warn!(action = action, error_code = code, request_id = id,
                attempt = attempts, retry_in_ms = retry_in_ms, throttled = err.is_throttling();
                "{err}; retrying in {retry_in_ms} ms (attempt {attempts})");
            metrics::global().aws_retry(action);
            clock.sleep(delay).map_err(|_| Error::Interrupted)?;
        }
    }

    /// Forgets the credentials `err` says expired (the call's own answer,
    /// or AssumeRole's, whose base credentials died early): whether it did.
    fn forget_expired(&mut self, action: &str, err: &Error) -> bool {
        let (code, id) = (err.aws_code(), err.request_id());
        let role = matches!(err, Error::Fetch { layer, .. } if matches!(layer, Layer::Role(_)));
        let base = role && !matches!(self.settings.source, Source::Static(_));
        let own = matches!(err, Error::Aws { .. });
        // Not `RequestExpired`: that is a skewed clock.
        let expired = matches!(code, Some("ExpiredToken" | "ExpiredTokenException"));
        if !(own || base) || !expired {
            return false;
        }
        let which = if base { "base " } else { "" };
        warn!(action = action, error_code = code, request_id = id;
            "{action}: {which}credentials expired, fetching new ones");
        self.cache.0 = None;
        if base {
            self.base.0 = None;
        }
        true
    }

    /// After the call's own throttling answer, a slot of its bucket, at
    /// most half the time left (a longer one is redrawn in [0.2, 0.7) of
    /// it, so a deregistration keeps trying until its deadline); else the
    /// backoff (STS throttling a fetch says nothing of ELBv2).
    fn retry_delay(
        &mut self,
        err: &Error,
        bucket: Bucket,
        attempts: u32,
        deadline: Instant,
        clock: &mut dyn Clock,
    ) -> Duration {
        let (now, random) = (clock.now(), clock.random());
        let paced = match self.pacing.get_mut(bucket as usize) {
            Some(a) if err.is_throttling() => {
                a.on_throttle(now);
                a.retry_delay(random)
            }
            _ => return backoff(attempts - 1, random),
        };
        let left = deadline.saturating_duration_since(now);
        if paced > left / 2 && left >= Duration::from_secs(1) {
            return left.mul_f64(0.2 + 0.5 * unit(random));
        }
        paced
    }
}

#[cfg(test)]
mod tests;
