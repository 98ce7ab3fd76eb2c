//! The lifecycle state machine (docs/design.md): register, wait until
//! healthy, block, deregister, drain, exit; effects sit behind the
//! [`Transport`], [`Effects`] and [`EventClock`] so `tests.rs` drives it with fakes.

mod health;
mod quiet;
mod shutdown;
mod startup;

pub use shutdown::shutdown_budget;

use crate::aws::client::Client;
use crate::aws::elbv2::Target;
use crate::aws::http::Transport;
use crate::aws::retry::Bucket;
use crate::clock::Clock;
use crate::config::{Config, Hook};
use crate::hooks::Outcome;
use crate::metrics;
use crate::signals::{DrainResult, Event, EventClock};
use crate::status::Status;
use crate::tcp_table::Entry as TcpEntry;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// Exit code: the target is out (or was never put in).
pub const EXIT_OK: i32 = 0;
/// Exit code: a runtime failure (registration refused, hook failed, deregistration failed).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: bad usage or configuration.
pub const EXIT_USAGE: i32 = 2;

/// The lifecycle's other effects; `system::SystemEffects` on the real system.
pub trait Effects {
    /// Runs a hook (a command or an HTTP GET).
    fn run_hook(&mut self, hook: &Hook, clock: &mut dyn Clock) -> Outcome;
    /// Runs the app check once (`None` when neither flag is set).
    fn app_up(&mut self, cfg: &Config) -> Option<Result<(), String>>;
    /// For the drain quiet period: the network namespace's count of accepted
    /// TCP connections, then the pod's TCP sockets.
    fn tcp_sample(&mut self) -> Result<(u64, Vec<TcpEntry>), String>;
}

/// One target in one target group.
struct Registration {
    /// Group name or ARN, as the user gave it (for logs).
    label: String,
    arn: String,
    target: Target,
    group_port: Option<u16>,
    state: RegistrationState,
    /// The group's health check interval, unless given by ARN or `-health-poll-interval`.
    every: Option<Duration>,
    /// The earliest it can be healthy, once registered at the group's pace.
    earliest: Option<Instant>,
    /// The health state last logged.
    last: Option<String>,
}

impl Registration {
    fn seen(&self, state: &str) {
        metrics::global().target_state(&self.label, &self.target.to_string(), state);
    }
}

/// What is known of one RegisterTargets. `Sent`: it may land (no answer
/// yet, or an attempt of it went unanswered); `Refused`: a final error.
/// ```text
///  Out ─► Sent ─┬─(success)─────► Registered ─┐
///               ├─(final error)─► Refused ────┼─(deregistered, or not there)─► Out
///               └─(no answer, or an attempt unanswered)──┘
/// ```
/// A failed deregistration leaves the state as it was, for a later shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegistrationState {
    /// Not sent yet, or taken out.
    Out,
    Sent,
    Registered,
    Refused,
}

/// The lifecycle's state and collaborators.
pub struct Lifecycle<'a, T: Transport> {
    cfg: &'a Config,
    elb: &'a mut Client<T>,
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

impl<'a, T: Transport> Lifecycle<'a, T> {
    /// A lifecycle for `cfg` over its collaborators.
    pub fn new(
        cfg: &'a Config,
        elb: &'a mut Client<T>,
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
            if self.start().is_ok() {
                self.watch();
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

    /// A `Describe*` polling interval, widened for life after throttling.
    fn widen(&self, interval: Duration) -> Duration {
        let pace = self.elb.adaptive(Bucket::Describe);
        pace.map_or(interval, |a| a.widen(interval))
    }

    /// Runs `f`, recording its duration as `step` in the metrics.
    fn timed<R>(&mut self, step: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        let started = self.clock.now();
        let r = f(self);
        metrics::global().step_took(step, self.clock.now().saturating_duration_since(started));
        r
    }
}

#[cfg(test)]
mod tests;
