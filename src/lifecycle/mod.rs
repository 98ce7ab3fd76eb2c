//! The lifecycle: register, wait for healthy, block, deregister.
//!
//! ```text
//!  wait for app ─► pre-register ─► credentials ─► resolve groups ─► register each
//!        │               │               │               │               │
//!        └── event: nothing registered yet: exit 0 ──────┘               │
//!                                                                        ▼
//!  exit ◄── post-deregister ◄── wait drained ◄── deregister ◄── event ◄── wait healthy ─► post-register ─► blocked
//! ```
//!
//! After a health-wait timeout the blocked state polls the health on, at
//! growing intervals, and the pod turns ready when the targets do.
//!
//! After a `/drain` that no signal followed, the app check (if set) runs
//! every second: once it has failed and passed again (the app container
//! restarted, and its preStop hook drained), the whole registration runs
//! again, from the pre-register hook to ready.
//!
//! The invariant: once an event (SIGTERM, SIGINT, `/drain`) has arrived
//! and the API can be reached, the process never ends with a target
//! registered. Every registration is marked
//! [`Sent`](RegistrationState::Sent) (it may be registered) before its
//! RegisterTargets is sent; an event cannot interrupt a request on the wire
//! (it only cuts backoff sleeps and polling waits short), so the
//! deregistration is always sent after any RegisterTargets that may have
//! landed. A RegisterTargets that never answered may still land after the
//! deregistration, and neither answer to DeregisterTargets rules that out
//! (AWS answers success for a target that is not registered, moto
//! `InvalidTarget`): for such a registration the shutdown looks again a
//! moment later and deregisters once more if it landed. From the first
//! event on, the event clock is shielded: a second signal is logged and
//! does not skip the deregistration.
//!
//! The shutdown's budget: an event is seen at the latest when the request
//! on the wire ends (one request timeout, a background credentials refresh
//! included); from then on only the shutdown calls AWS, and each of its
//! calls, credentials fetches included, ends by the deregistration deadline
//! (the client cuts every request's timeout to the time left).
//!
//! Everything with effects is behind three traits ([`Elb`], [`Effects`],
//! [`EventClock`]), so the transitions are unit-tested with fakes and a fake
//! clock, without sleeping. Their real implementations: the AWS
//! [`Client`], [`SystemEffects`](crate::system::SystemEffects) and
//! [`SignalClock`](crate::signals::SignalClock).
//!
//! This file holds the types, the run loop and the blocked state;
//! `startup.rs` goes from waiting for the app to ready, `health.rs` polls
//! DescribeTargetHealth (the health wait, and the one poll the drain wait
//! and the late-landing check share), `shutdown.rs` deregisters, waits for
//! draining and decides the exit code, `quiet.rs` holds the drain until no
//! new connection has reached the target port for `-drain-quiet-period`.

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

/// How long a background credentials refresh may take.
const REFRESH_WINDOW: Duration = Duration::from_secs(30);
/// Retry a failed background refresh after this long.
const REFRESH_RETRY: Duration = Duration::from_secs(60);
/// Least time between two background refreshes.
const MIN_REFRESH_GAP: Duration = Duration::from_secs(60);
/// How often the app check runs while drained by request (each run has
/// its own short timeout).
const APP_POLL_AFTER_DRAIN: Duration = Duration::from_secs(1);

/// The ELBv2 operations the lifecycle needs.
pub trait Elb {
    /// Fetches credentials now if needed.
    ///
    /// # Errors
    /// The fetch error.
    fn ensure_credentials(&mut self, budget: Budget, clock: &mut dyn Clock) -> Result<(), Error>;
    /// When cached credentials should be refreshed ahead of need.
    fn refresh_due(&self) -> Option<SystemTime>;
    /// Fetches new credentials now, keeping the old ones if that fails.
    ///
    /// # Errors
    /// The fetch error.
    fn refresh_credentials(&mut self, budget: Budget, clock: &mut dyn Clock) -> Result<(), Error>;
    /// DescribeTargetGroups by names.
    ///
    /// # Errors
    /// The AWS or transport error.
    fn describe_groups(
        &mut self,
        names: &[String],
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<WithId<Vec<TargetGroup>>, Error>;
    /// RegisterTargets.
    ///
    /// # Errors
    /// The AWS or transport error.
    fn register(
        &mut self,
        arn: &str,
        targets: &[Target],
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<Option<String>, Error>;
    /// How many attempts of the last call may have reached AWS without
    /// their answer reaching us (timeouts, broken connections).
    fn unanswered_attempts(&self) -> u32;
    /// DeregisterTargets.
    ///
    /// # Errors
    /// The AWS or transport error.
    fn deregister(
        &mut self,
        arn: &str,
        targets: &[Target],
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<Option<String>, Error>;
    /// DescribeTargetHealth.
    ///
    /// # Errors
    /// The AWS or transport error.
    fn health(
        &mut self,
        arn: &str,
        targets: &[Target],
        budget: Budget,
        clock: &mut dyn Clock,
    ) -> Result<WithId<Vec<TargetHealth>>, Error>;
    /// A `Describe*` polling interval, widened for the rest of the process's
    /// life after throttling answers (unchanged by default).
    fn widen(&self, interval: Duration) -> Duration {
        interval
    }
}

impl<T: Transport> Elb for Client<T> {
    fn ensure_credentials(&mut self, budget: Budget, clock: &mut dyn Clock) -> Result<(), Error> {
        Client::ensure_credentials(self, budget, clock)
    }
    fn refresh_due(&self) -> Option<SystemTime> {
        Client::refresh_due(self)
    }
    fn refresh_credentials(&mut self, budget: Budget, clock: &mut dyn Clock) -> Result<(), Error> {
        Client::refresh_credentials(self, budget, clock)
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
        let action = RegisterTargets { arn, targets };
        self.call(&action, budget, clock).map(|r| r.request_id)
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
        let action = DeregisterTargets { arn, targets };
        self.call(&action, budget, clock).map(|r| r.request_id)
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

/// The lifecycle's other effects: hooks, waiting for the app and the TCP
/// table; [`SystemEffects`](crate::system::SystemEffects) on the real system.
pub trait Effects {
    /// Runs a hook (a command or an HTTP GET).
    fn run_hook(&mut self, hook: &Hook, clock: &mut dyn Clock) -> Outcome;
    /// Waits for `-wait-for-tcp` / `-wait-for-http` (returns at once when neither is set).
    ///
    /// # Errors
    /// [`AppWait`] on interruption or timeout.
    fn wait_for_app(&mut self, cfg: &Config, clock: &mut dyn Clock) -> Result<(), AppWait>;
    /// Runs the app check once (`None` when neither flag is set).
    fn app_up(&mut self, cfg: &Config) -> Option<Result<(), String>>;
    /// The pod's TCP sockets, for the drain quiet period.
    ///
    /// # Errors
    /// Why the table cannot be read (by default: none is available).
    fn tcp_table(&mut self) -> Result<Vec<TcpEntry>, String> {
        Err("no TCP table available".into())
    }
    /// The network namespace's count of accepted TCP connections.
    ///
    /// # Errors
    /// Why it cannot be read (by default: none is available).
    fn passive_opens(&mut self) -> Result<u64, String> {
        Err("no connection counter available".into())
    }
}

/// One registration: a target in a target group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Group name or ARN, as the user gave it (for logs).
    pub label: String,
    /// Target group ARN.
    pub arn: String,
    /// The target.
    pub target: Target,
    /// The group's own port (from DescribeTargetGroups), the target's
    /// port when it has none: what the drain quiet period watches.
    pub group_port: Option<u16>,
    /// What is known of its RegisterTargets, and so what the shutdown must do.
    pub state: RegistrationState,
    /// The group's health pace, from DescribeTargetGroups: the earliest a
    /// new target can be healthy after its registration, and the group's
    /// health check interval. `None` for a group given by ARN (no
    /// DescribeTargetGroups call for it) or one that did not say.
    pub pace: Option<(Duration, Duration)>,
    /// When AWS answered its RegisterTargets with success.
    pub registered_at: Option<Instant>,
    /// An attempt of its RegisterTargets went unanswered (timeout, broken
    /// connection) before the call ended, answered or not: that attempt
    /// may still land after a deregistration.
    pub lost_attempt: bool,
}

impl Registration {
    /// Whether a RegisterTargets of this target may still land (after a
    /// deregistration): its call got no answer, or one of its attempts
    /// did not.
    pub fn may_land_late(&self) -> bool {
        self.state == RegistrationState::Sent || self.lost_attempt && self.state.may_be_registered()
    }
}

impl Registration {
    /// The target as the ELBv2 calls take it: a list of one.
    fn targets(&self) -> Vec<Target> {
        vec![self.target.clone()]
    }

    /// Records the state this target was last seen in, in the metrics.
    fn seen(&self, state: TargetState) {
        metrics::global().target_state(&self.label, &self.target.to_string(), state);
    }
}

/// What is known of one registration's RegisterTargets.
///
/// ```text
///  NotSent ─► Sent ─┬─(success)─────► Registered ─┐
///                   ├─(final error)─► Refused ────┼─(deregistered, or AWS says
///                   └─(no answer)─────────────────┘  not registered)─► Out
/// ```
///
/// A registration leaves [`Sent`](Self::Sent) only on an answer from AWS.
/// Only [`Sent`](Self::Sent) needs the late-landing check after its
/// deregistration (one DescribeTargetHealth); a [`Refused`](Self::Refused) one is out even when its
/// precautionary deregistration fails, unless an attempt of it went unanswered. A failed deregistration leaves the
/// state as it was, for the next shutdown to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationState {
    /// RegisterTargets not sent: nothing to take out.
    NotSent,
    /// RegisterTargets sent without an answer from AWS: on the wire, or
    /// ended in a timeout, a broken connection or an interruption. AWS may
    /// have applied it, or may still apply it after a deregistration.
    Sent,
    /// AWS answered RegisterTargets with success.
    Registered,
    /// AWS refused RegisterTargets with a final error (AccessDenied,
    /// ValidationError...): most likely not registered, but an earlier
    /// attempt of the same call may have landed, so it is still cleaned up.
    Refused,
    /// Taken out: deregistered, or AWS said it is not registered.
    Out,
}

impl RegistrationState {
    /// Whether the target may be in the group, so the shutdown must send
    /// DeregisterTargets for it.
    pub fn may_be_registered(self) -> bool {
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
    /// One per configured target group, once resolved.
    registrations: Vec<Registration>,
    /// Drain requests waiting for the shutdown's result.
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

    /// Runs the whole lifecycle and returns the exit code. After a drain
    /// by request, an app restart (see `wait_signal_after_drain`) runs the
    /// registration again.
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

    /// Takes queued events: signals set the flag, drain requests are kept
    /// for their answer. Returns whether any event was taken.
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

    /// Blocks until an event; refreshes temporary credentials ahead of
    /// expiry and, after a health-wait timeout, polls the health on
    /// (`recovery`) until the targets are healthy. Between those it sleeps
    /// in a timed wait on the event channel: zero CPU, and an event ends
    /// the wait at once.
    fn block(&mut self, mut recovery: Option<Recovery>) {
        info!("blocking until SIGTERM or SIGINT");
        let mut last_refresh = self.clock.now();
        let mut retry_refresh_at: Option<Instant> = None;
        loop {
            let refresh_at = self.next_refresh(last_refresh, retry_refresh_at);
            let poll_at = recovery.as_ref().map(|r| r.next);
            let wake = match (refresh_at, poll_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timeout = wake.map(|at| at.saturating_duration_since(self.clock.now()));
            if let Some(ev) = self.clock.wait_event(timeout) {
                self.absorb(ev);
                return;
            }
            let now = self.clock.now();
            if refresh_at.is_some_and(|at| at <= now) {
                last_refresh = now;
                match self.refresh_credentials() {
                    Ok(()) => retry_refresh_at = None,
                    Err(Error::Interrupted) => return,
                    Err(e) => {
                        warn!("background credentials refresh failed: {e}");
                        retry_refresh_at = Some(self.clock.now() + REFRESH_RETRY);
                    }
                }
            }
            if let Some(r) = recovery.as_mut().filter(|r| r.next <= now) {
                match self.poll_recovery(r) {
                    Recovered::NotYet => {}
                    Recovered::Ready | Recovered::GaveUp => recovery = None,
                    Recovered::Interrupted => return,
                }
            }
            if self.absorb_events() {
                return;
            }
        }
    }

    /// Runs `step`, recording how long it took in the metrics.
    fn timed<R>(&mut self, step: Step, f: impl FnOnce(&mut Self) -> R) -> R {
        let started = self.clock.now();
        let r = f(self);
        let took = self.clock.now().saturating_duration_since(started);
        metrics::global().step_took(step, took);
        r
    }

    /// One background credentials refresh.
    fn refresh_credentials(&mut self) -> Result<(), Error> {
        let budget = Budget {
            deadline: self.clock.now() + REFRESH_WINDOW,
            max_attempts: 3,
        };
        self.elb.refresh_credentials(budget, self.clock)
    }

    /// When the next background credentials refresh is due (`None`: none
    /// is): at the credentials' refresh time, or `retry_at` after a failed
    /// refresh, and never sooner than a minute after the `last` one (or
    /// the start of the blocked state), whatever the expiry says: never a
    /// busy loop.
    fn next_refresh(&self, last: Instant, retry_at: Option<Instant>) -> Option<Instant> {
        if retry_at.is_some() {
            return retry_at;
        }
        let due = self.elb.refresh_due()?;
        let now = self.clock.now();
        let until_due = due
            .duration_since(self.clock.wall())
            .unwrap_or(Duration::ZERO);
        Some((now + until_due).max(last + MIN_REFRESH_GAP))
    }
}

#[cfg(test)]
mod tests;
