//! The lifecycle state machine (docs/design.md): register, wait until
//! healthy, block, deregister, drain, exit; effects sit behind [`Elb`],
//! [`Effects`] and [`EventClock`] so `tests.rs` drives it with fakes.

mod health;
mod quiet;
mod shutdown;
mod startup;

pub use shutdown::shutdown_budget;

use crate::aws::client::{Budget, Client, WithId};
use crate::aws::elbv2::{
    DeregisterTargets, DescribeTargetGroups, DescribeTargetHealth, RegisterTargets,
};
use crate::aws::elbv2::{Target, TargetGroup, TargetHealth};
use crate::aws::error::Error;
use crate::aws::http::Transport;
use crate::aws::retry::Bucket;
use crate::clock::Clock;
use crate::config::{Config, Hook};
use crate::hooks::Outcome;
use crate::metrics::{self, Step, TargetState};
use crate::signals::{DrainResult, Event, EventClock};
use crate::status::Status;
use crate::tcp_table::Entry as TcpEntry;
use health::{Recovered, Recovery};
use log::{info, warn};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant, SystemTime};

/// Exit code: the target is out (or was never put in).
pub const EXIT_OK: i32 = 0;
/// Exit code: a runtime failure (registration refused, hook failed, deregistration failed).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: bad usage or configuration.
pub const EXIT_USAGE: i32 = 2;

const REFRESH_WINDOW: Duration = Duration::from_secs(30);
/// Also the least time between two refreshes (never a busy loop).
const REFRESH_GAP: Duration = Duration::from_secs(60);
const APP_POLL_AFTER_DRAIN: Duration = Duration::from_secs(1);

/// The ELBv2 operations the lifecycle needs (errors: AWS's or the transport's).
pub trait Elb {
    /// Fetches credentials now if needed.
    fn ensure_credentials(&mut self, budget: Budget, clock: &mut dyn Clock) -> Result<(), Error>;
    /// When cached credentials should be refreshed ahead of need.
    fn refresh_due(&self) -> Option<SystemTime>;
    /// Fetches new credentials now, keeping the old ones if that fails.
    fn refresh_credentials(&mut self, budget: Budget, clock: &mut dyn Clock) -> Result<(), Error>;
    /// DescribeTargetGroups by names.
    fn describe_groups(
        &mut self,
        names: &[String],
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<WithId<Vec<TargetGroup>>, Error>;
    /// RegisterTargets; the request id.
    fn register(
        &mut self,
        arn: &str,
        targets: &[Target],
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<Option<String>, Error>;
    /// Attempts of the last call that may have reached AWS unanswered.
    fn unanswered_attempts(&self) -> u32;
    /// DeregisterTargets; the request id.
    fn deregister(
        &mut self,
        arn: &str,
        targets: &[Target],
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<Option<String>, Error>;
    /// DescribeTargetHealth.
    fn health(
        &mut self,
        arn: &str,
        targets: &[Target],
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<WithId<Vec<TargetHealth>>, Error>;
    /// A `Describe*` polling interval, widened for life after throttling.
    fn widen(&self, interval: Duration) -> Duration {
        interval
    }
}

impl<T: Transport> Elb for Client<T> {
    fn ensure_credentials(&mut self, budget: Budget, clock: &mut dyn Clock) -> Result<(), Error> {
        self.fetch_credentials(false, budget, clock)
    }
    fn refresh_due(&self) -> Option<SystemTime> {
        Client::refresh_due(self)
    }
    fn refresh_credentials(&mut self, budget: Budget, clock: &mut dyn Clock) -> Result<(), Error> {
        self.fetch_credentials(true, budget, clock)
    }
    fn describe_groups(
        &mut self,
        names: &[String],
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<WithId<Vec<TargetGroup>>, Error> {
        self.call(&DescribeTargetGroups { names }, budget, clock)
    }
    fn register(
        &mut self,
        arn: &str,
        targets: &[Target],
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<Option<String>, Error> {
        (self.call(&RegisterTargets { arn, targets }, budget, clock)).map(|r| r.request_id)
    }
    fn unanswered_attempts(&self) -> u32 {
        Client::unanswered_attempts(self)
    }
    fn deregister(
        &mut self,
        arn: &str,
        targets: &[Target],
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<Option<String>, Error> {
        (self.call(&DeregisterTargets { arn, targets }, budget, clock)).map(|r| r.request_id)
    }
    fn health(
        &mut self,
        arn: &str,
        targets: &[Target],
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<WithId<Vec<TargetHealth>>, Error> {
        self.call(&DescribeTargetHealth { arn, targets }, budget, clock)
    }
    fn widen(&self, interval: Duration) -> Duration {
        self.adaptive(Bucket::Describe)
            .map_or(interval, |a| a.widen(interval))
    }
}

/// Why waiting for the app failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppWait {
    /// An event arrived.
    Interrupted,
    /// The timeout passed; the text says what was last seen.
    TimedOut(String),
}

/// The lifecycle's other effects; `system::SystemEffects` on the real system.
pub trait Effects {
    /// Runs a hook (a command or an HTTP GET).
    fn run_hook(&mut self, hook: &Hook, clock: &mut dyn Clock) -> Outcome;
    /// Waits for `-wait-for-tcp` / `-wait-for-http` (at once when neither is set).
    fn wait_for_app(&mut self, cfg: &Config, clock: &mut dyn Clock) -> Result<(), AppWait>;
    /// Runs the app check once (`None` when neither flag is set).
    fn app_up(&mut self, cfg: &Config) -> Option<Result<(), String>>;
    /// The pod's TCP sockets, for the drain quiet period.
    fn tcp_table(&mut self) -> Result<Vec<TcpEntry>, String>;
    /// The network namespace's count of accepted TCP connections.
    fn passive_opens(&mut self) -> Result<u64, String>;
}

/// One target in one target group.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Registration {
    /// Group name or ARN, as the user gave it (for logs).
    label: String,
    arn: String,
    target: Target,
    group_port: Option<u16>,
    state: RegistrationState,
    /// (earliest healthy after registering, check interval); `None` for a group given by ARN.
    pace: Option<(Duration, Duration)>,
    registered_at: Option<Instant>,
    /// An attempt of its RegisterTargets went unanswered: it may still land.
    lost_attempt: bool,
}

impl Registration {
    /// Whether a RegisterTargets may land after a deregistration.
    fn may_land_late(&self) -> bool {
        self.state == RegistrationState::Sent || self.lost_attempt && self.state.may_be_registered()
    }

    fn targets(&self) -> Vec<Target> {
        vec![self.target.clone()]
    }

    fn seen(&self, state: TargetState) {
        metrics::global().target_state(&self.label, &self.target.to_string(), state);
    }
}

/// What is known of one RegisterTargets. `Sent`: no answer yet (it may
/// land); `Refused`: a final error, but an earlier attempt may have landed.
/// ```text
///  NotSent ─► Sent ─┬─(success)─────► Registered ─┐
///                   ├─(final error)─► Refused ────┼─(deregistered, or not there)─► Out
///                   └─(no answer)─────────────────┘
/// ```
/// A failed deregistration leaves the state as it was, for a later shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegistrationState {
    NotSent,
    Sent,
    Registered,
    Refused,
    Out,
}

impl RegistrationState {
    /// Whether the shutdown must deregister it.
    fn may_be_registered(self) -> bool {
        matches!(self, Self::Sent | Self::Registered | Self::Refused)
    }
}

/// The lifecycle's state and collaborators.
pub struct Lifecycle<'a> {
    cfg: &'a Config,
    elb: &'a mut dyn Elb,
    effects: &'a mut dyn Effects,
    clock: &'a mut dyn EventClock,
    status: &'a Status,
    registrations: Vec<Registration>,
    drain_waiters: Vec<Sender<DrainResult>>,
    /// A signal (not just a drain request) has arrived: exit after shutdown.
    signalled: bool,
    /// The startup failed: exit 1 whatever the shutdown does.
    failed: bool,
}

impl<'a> Lifecycle<'a> {
    /// A lifecycle for `cfg` over its collaborators.
    pub fn new(
        cfg: &'a Config,
        elb: &'a mut dyn Elb,
        effects: &'a mut dyn Effects,
        clock: &'a mut dyn EventClock,
        status: &'a Status,
    ) -> Self {
        Lifecycle {
            cfg,
            elb,
            effects,
            clock,
            status,
            registrations: Vec::new(),
            drain_waiters: Vec::new(),
            signalled: false,
            failed: false,
        }
    }

    /// Runs the whole lifecycle and returns the exit code.
    pub fn run(&mut self) -> i32 {
        loop {
            if let Ok(recovery) = self.start() {
                self.block(recovery);
            }
            if let Some(code) = self.finish() {
                return code;
            }
        }
    }

    /// Takes queued events; returns whether there was any.
    fn absorb_events(&mut self) -> bool {
        let mut any = false;
        while let Some(ev) = self.clock.take_event() {
            any = true;
            self.absorb(ev);
        }
        any
    }

    fn absorb(&mut self, ev: Event) {
        match ev {
            Event::Signal(_) => self.signalled = true,
            Event::Drain(tx) => self.drain_waiters.push(tx),
        }
    }

    /// Sleeps on the event channel until an event (zero CPU), waking only
    /// to refresh credentials ahead of expiry and, after a health-wait
    /// timeout, to poll the health on (`recovery`).
    fn block(&mut self, mut recovery: Option<Recovery>) {
        info!("blocking until SIGTERM or SIGINT");
        let mut last_refresh = self.clock.now();
        let mut retry_at = None;
        loop {
            let refresh_at = self.next_refresh(last_refresh, retry_at);
            let wake = [refresh_at, recovery.as_ref().map(|r| r.next)]
                .into_iter()
                .flatten()
                .min();
            let timeout = wake.map(|at| at.saturating_duration_since(self.clock.now()));
            if let Some(ev) = self.clock.wait_event(timeout) {
                return self.absorb(ev);
            }
            let now = self.clock.now();
            if refresh_at.is_some_and(|at| at <= now) {
                last_refresh = now;
                let budget = Budget {
                    deadline: now + REFRESH_WINDOW,
                    max_attempts: 3,
                };
                retry_at = match self.elb.refresh_credentials(budget, self.clock) {
                    Ok(()) => None,
                    Err(Error::Interrupted) => return,
                    Err(e) => {
                        warn!("background credentials refresh failed: {e}");
                        Some(self.clock.now() + REFRESH_GAP)
                    }
                };
            }
            if let Some(r) = recovery.as_mut().filter(|r| r.next <= now) {
                match self.poll_recovery(r) {
                    Recovered::NotYet => {}
                    Recovered::Done => recovery = None,
                    Recovered::Interrupted => return,
                }
            }
            if self.absorb_events() {
                return;
            }
        }
    }

    /// `retry_at` after a failed refresh, else the credentials' refresh time,
    /// but never sooner than [`REFRESH_GAP`] after the `last` one.
    fn next_refresh(&self, last: Instant, retry_at: Option<Instant>) -> Option<Instant> {
        if retry_at.is_some() {
            return retry_at;
        }
        let due = self.elb.refresh_due()?;
        let until_due = due.duration_since(self.clock.wall()).unwrap_or_default();
        Some((self.clock.now() + until_due).max(last + REFRESH_GAP))
    }

    /// Runs `f`, recording its duration as `step` in the metrics.
    fn timed<R>(&mut self, step: Step, f: impl FnOnce(&mut Self) -> R) -> R {
        let started = self.clock.now();
        let r = f(self);
        metrics::global().step_took(step, self.clock.now().saturating_duration_since(started));
        r
    }
}

#[cfg(test)]
mod tests;
