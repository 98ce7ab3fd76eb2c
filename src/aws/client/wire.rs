//! One request (sign at AWS's time, send by the attempt's end, count,
//! parse), and the credentials fetches on a call's way.

use crate::aws::credentials::select_source;
use crate::aws::credentials::{providers, Cache, Credentials, Role, Source};
use crate::aws::endpoint;
use crate::aws::error::{is_throttling_code, Error, Layer, TransportKind};
use crate::aws::http::{HttpRequest, HttpResponse, Transport};
use crate::aws::query::{self, Action, Service, WithId};
use crate::aws::sign::sign;
use crate::aws::skew::{self, shift, Offset};
use crate::aws::sts::AssumeRoleWithWebIdentity;
use crate::clock::Clock;
use crate::env::Env;
use crate::metrics;
use log::{debug, warn};
use std::cell::Cell;
use std::time::{Instant, SystemTime};

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
            elbv2_url: endpoint::elbv2_endpoint(&region, env)?,
            sts_url: endpoint::sts_endpoint(&region, env)?,
            source: select_source(env, now)?,
            region,
            role: None,
        })
    }

    /// Where the signing credentials come from, for logs.
    pub fn credentials_label(&self) -> String {
        match &self.role {
            None => self.cache_label(),
            Some(_) => format!(
                "{}, assumed with {}",
                self.cache_label(),
                self.source.name()
            ),
        }
    }

    pub(super) fn cache_label(&self) -> String {
        match &self.role {
            None => self.source.name().to_owned(),
            Some(role) => format!("role {}", role.arn),
        }
    }
}

pub(super) struct Wire<T> {
    pub(super) transport: T,
    pub(super) settings: Settings,
    /// AWS's clock minus ours, learnt from a clock skew answer.
    pub(super) offset: Offset,
    /// The `Date` of the last answer, for skew correction.
    pub(super) last_date: Cell<Option<SystemTime>>,
}

impl<T: Transport> Wire<T> {
    pub(super) fn aws_time(&self, clock: &dyn Clock) -> SystemTime {
        shift(clock.wall(), self.offset)
    }

    /// Sends `action` once, signed with `creds` unless it is unsigned,
    /// ending by `until`; counts the request in the metrics.
    pub(super) fn send<A: Action>(
        &self,
        action: &A,
        creds: Option<&Credentials>,
        until: Instant,
        clock: &dyn Clock,
    ) -> Result<WithId<A::Output>, Error> {
        let (s, service) = (&self.settings, A::SERVICE);
        let (url, region) = match service {
            Service::Elbv2 => (&s.elbv2_url, s.region.as_str()),
            Service::Sts => (&s.sts_url, s.region.as_str()),
        };
        let mut req = query::request(url, &action.form());
        if let (Some(creds), false) = (creds, A::UNSIGNED) {
            let (name, time) = (service.signing_name(), self.aws_time(clock));
            sign(&mut req, creds, region, name, time)?;
        }
        let started = clock.now();
        let result = Bounded(self, until, clock)
            .send(A::NAME, &req)
            .and_then(|r| A::parse_response(r.status, &r.body));
        let took = clock.now().saturating_duration_since(started);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(Error::Aws { error, .. }) => error.code.as_str(),
            Err(Error::Transport { .. }) => "transport_error",
            Err(Error::Response { .. }) => "invalid_response",
            Err(_) => return result,
        };
        debug!("{} -> {outcome} in {} ms", A::NAME, took.as_millis());
        let m = metrics::global();
        if is_throttling_code(outcome) || outcome == "HttpStatus429" {
            m.aws_throttled(A::NAME);
        }
        m.aws_request(A::NAME, outcome, took);
        result
    }

    /// The source's credentials, fetched once by `until`.
    pub(super) fn fetch_source(
        &self,
        layer: Layer,
        until: Instant,
        clock: &dyn Clock,
    ) -> Result<Credentials, Error> {
        let mut codes: &[&str] = &[];
        let fetched = match &self.settings.source {
            Source::Static(c) => Ok(c.clone()),
            Source::WebIdentity {
                role_arn,
                token_file,
                session_name,
            } => {
                codes = AssumeRoleWithWebIdentity::RETRY_CODES;
                providers::read_token(token_file, "web identity token file").and_then(|token| {
                    let action = AssumeRoleWithWebIdentity {
                        role_arn,
                        session_name,
                        token: &token,
                    };
                    self.send(&action, None, until, clock).map(|r| r.value)
                })
            }
            other => providers::fetch(other, &Bounded(self, until, clock)),
        };
        fetched.map_err(|e| fetch_error(layer, e, codes))
    }

    /// The role's credentials, assumed with `base` (refreshed when due;
    /// with `background`, ahead of need).
    pub(super) fn assume_role(
        &self,
        base: &mut Cache,
        role: &Role,
        background: bool,
        until: Instant,
        clock: &dyn Clock,
    ) -> Result<Credentials, Error> {
        let now = self.aws_time(clock);
        let source = self.settings.source.name();
        let fetch = || self.fetch_source(Layer::Base(source), until, clock);
        if background && base.refresh_due().is_some_and(|due| due <= now) {
            if let Err(e) = base.store(source, fetch()) {
                if !base.usable(now) {
                    return Err(e);
                }
                warn!("{e}; the cached ones stay in use until they expire");
            }
        }
        let assume =
            |base: &Credentials| self.send(role, Some(base), until, clock).map(|r| r.value);
        // An ExpiredToken here means the base credentials died early: the
        // client forgets them and tries again, after looking for an event.
        assume(&base.get(now, source, fetch)?)
            .map_err(|e| fetch_error(Layer::Role(role.arn.clone()), e, &[]))
    }
}

/// Retried when generally retryable or one of the fetching action's `codes`.
fn fetch_error(layer: Layer, error: Error, codes: &[&str]) -> Error {
    let retry = error.is_retryable() || error.aws_code().is_some_and(|c| codes.contains(&c));
    Error::Fetch {
        layer,
        error: Box::new(error),
        retry,
    }
}

/// A transport whose requests end by an instant, keeping each answer's `Date`.
struct Bounded<'a, T>(&'a Wire<T>, Instant, &'a dyn Clock);

impl<T: Transport> Transport for Bounded<'_, T> {
    fn send(&self, action: &str, req: &HttpRequest) -> Result<HttpResponse, Error> {
        let Bounded(wire, until, clock) = self;
        let left = until.saturating_duration_since(clock.now());
        if left.is_zero() {
            return Err(Error::Transport {
                action: action.to_owned(),
                url: req.url.clone(),
                kind: TransportKind::Timeout,
                detail: "not sent: the step's deadline has passed".into(),
            });
        }
        let mut req = req.clone();
        req.timeout = req.timeout.min(left);
        let resp = wire.transport.send(action, &req)?;
        wire.last_date
            .set(resp.date.as_deref().and_then(skew::parse_http_date));
        Ok(resp)
    }
}
