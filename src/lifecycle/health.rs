//! Polling DescribeTargetHealth: the wait until every target is healthy,
//! the polls that go on while blocked after that wait timed out, and the
//! one poll ([`Registration::poll_health`]) and state-change log
//! ([`Watch`]) that the drain wait and the late-landing check share.
//!
//! The pace of the health wait, for economy under ELBv2's rate limits
//! (one `Describe*` bucket of 40 tokens refilled at 10 a second, shared by
//! every pod of the account):
//! - one look right after RegisterTargets: a sidecar restarted inside a
//!   running pod finds its target healthy already and is ready at once;
//! - then, for a group resolved by name, the group's own pace: a new target
//!   must pass one health check, so it cannot be healthy before one
//!   `HealthCheckIntervalSeconds` after its registration
//!   ([`TargetGroup::health_pace`](crate::aws::elbv2::TargetGroup::health_pace));
//!   no poll comes before that, and later polls come at the group's health
//!   check interval (±20%), when its state can change;
//! - a group given by ARN (no DescribeTargetGroups call, which is the point
//!   of giving ARNs) and any group when `-health-poll-interval` is given
//!   explicitly are polled at `-health-poll-interval` (±20%);
//! - after a throttling answer to a `Describe*` call, every interval is
//!   widened for the rest of the process's life ([`Elb::widen`]), and the
//!   look right after RegisterTargets is skipped: the first poll comes
//!   when the target can be healthy. A throttled account means many pods
//!   are starting together, most of them new, and each look costs a token
//!   of the bucket all of them wait for; a sidecar restarted in a running
//!   pod then waits one interval for its ready.

use super::{Elb, Lifecycle, Registration};
use crate::aws::client::Budget;
use crate::aws::elbv2::{find_health, DescribeTargetHealth, State, TargetHealth};
use crate::aws::error::Error;
use crate::aws::query::Action;
use crate::aws::retry::jittered;
use crate::clock::Clock;
use crate::metrics::TargetState;
use log::{error, info, warn};
use std::time::{Duration, Instant};

/// Attempts per DescribeTargetHealth poll (the next poll comes anyway).
const HEALTH_POLL_ATTEMPTS: u32 = 3;

/// Longest pause between two health polls after the health wait timed out.
const MAX_RECOVERY_POLL: Duration = Duration::from_secs(60);
/// How long one of those polls may take (its retries included).
const RECOVERY_POLL_WINDOW: Duration = Duration::from_secs(30);

/// How the health wait ended.
pub(super) enum HealthWait {
    /// Every target is healthy.
    Healthy,
    /// The timeout passed: the targets stay registered, not ready, and
    /// the polls go on while blocked.
    TimedOut(Recovery),
    /// AWS refused to tell (a final error): the targets stay registered,
    /// not ready.
    Refused,
    /// An event arrived.
    Interrupted,
}

/// The health polls that go on while blocked after the health wait timed
/// out, so a target that turns healthy late still makes the pod ready. The
/// pause grows from the health poll interval to a minute (doubling,
/// jittered): a target that stays unhealthy costs one call a minute, and
/// the API's rate limit is shared by every pod of the account.
pub(super) struct Recovery {
    watches: Vec<Watch>,
    interval: Duration,
    /// When the next poll is due.
    pub(super) next: Instant,
}

/// How one recovery poll ended.
pub(super) enum Recovered {
    /// Every target is healthy now: the pod is ready.
    Ready,
    /// Not yet: the next poll is scheduled.
    NotYet,
    /// AWS refused to tell (a final error): no more polls.
    GaveUp,
    /// An event arrived.
    Interrupted,
}

impl Registration {
    /// One DescribeTargetHealth for this target (a few attempts at most,
    /// none past `deadline`): its health, or `None` when the answer does
    /// not list it.
    pub(super) fn poll_health(
        &self,
        elb: &mut dyn Elb,
        clock: &mut dyn Clock,
        deadline: Instant,
    ) -> Result<Option<TargetHealth>, Error> {
        let budget = Budget {
            deadline,
            max_attempts: HEALTH_POLL_ATTEMPTS,
        };
        let answer = elb.health(&self.arn, &self.targets(), budget, clock)?;
        Ok(find_health(&answer.value, &self.target).cloned())
    }
}

/// A registration being polled until it reaches a state: logs each state
/// it is seen in once.
pub(super) struct Watch {
    /// Which registration (an index into the lifecycle's registrations).
    pub(super) index: usize,
    /// It reached the state waited for (healthy, or drained).
    pub(super) done: bool,
    /// The state last logged.
    last: Option<String>,
}

impl Watch {
    /// A watch on registration `index`.
    pub(super) fn new(index: usize) -> Self {
        Watch {
            index,
            done: false,
            last: None,
        }
    }

    /// Logs "target T in G is STATE" unless that state was the last logged.
    pub(super) fn log(&mut self, registration: &Registration, health: &TargetHealth) {
        let text = health.to_string();
        if self.last.as_deref() != Some(&text) {
            info!(
                target_group = registration.label.as_str(), target:% = registration.target,
                state:% = health.state, reason = health.reason.as_deref();
                "target {} in {} is {text}",
                registration.target, registration.label
            );
            self.last = Some(text);
        }
        registration.seen(TargetState::from_health(&health.state));
    }

    /// The state last logged.
    pub(super) fn last(&self) -> Option<&str> {
        self.last.as_deref()
    }
}

impl Lifecycle<'_> {
    /// Looks at once, then polls each target at its pace (see the module
    /// docs) until every target is healthy, `-wait-in-service-timeout`
    /// passes, or an event arrives.
    pub(super) fn wait_healthy(&mut self) -> HealthWait {
        let start = self.clock.now();
        let deadline = start + self.cfg.wait_in_service_timeout;
        let mut watches: Vec<Watch> = (0..self.registrations.len()).map(Watch::new).collect();
        // The first look is due at once (unless throttled already).
        let mut due: Vec<Instant> = (0..watches.len())
            .map(|i| self.first_poll(i).min(deadline))
            .collect();
        self.log_pace();
        loop {
            let now = self.clock.now();
            if now >= deadline {
                break;
            }
            let next = watches
                .iter()
                .filter(|w| !w.done)
                .map(|w| due[w.index])
                .min()
                .unwrap_or(now);
            if next > now && self.clock.sleep((next - now).min(deadline - now)).is_err() {
                return HealthWait::Interrupted;
            }
            let now = self.clock.now();
            for watch in watches.iter_mut() {
                if watch.done || due[watch.index] > now {
                    continue;
                }
                if let Some(end) = self.poll_watch(watch, deadline) {
                    return end;
                }
                // One last look at the deadline when the next is later.
                due[watch.index] = self.next_poll(watch.index).min(deadline);
            }
            if watches.iter().all(|w| w.done) {
                info!("all targets are healthy");
                return HealthWait::Healthy;
            }
            if self.absorb_events() {
                return HealthWait::Interrupted;
            }
        }
        self.log_not_healthy(&watches);
        crate::metrics::global().health_wait_timed_out();
        let interval = self.elb.widen(self.cfg.health_poll_interval);
        let next = self.clock.now() + jittered(interval, self.clock.random());
        HealthWait::TimedOut(Recovery {
            watches,
            interval,
            next,
        })
    }

    /// One poll of each target not yet healthy, while blocked after the
    /// health wait timed out; ready when every target is healthy.
    pub(super) fn poll_recovery(&mut self, recovery: &mut Recovery) -> Recovered {
        let deadline = self.clock.now() + RECOVERY_POLL_WINDOW;
        match self.poll_until_healthy(&mut recovery.watches, deadline) {
            Some(HealthWait::Interrupted) => return Recovered::Interrupted,
            Some(_) => return Recovered::GaveUp,
            None => {}
        }
        if recovery.watches.iter().all(|w| w.done) {
            info!(
                "all targets are healthy now, after the health-wait timeout: ready \
                 (the post-register command ran at the timeout and does not run again)"
            );
            self.status.set_ready(true);
            return Recovered::Ready;
        }
        let cap = MAX_RECOVERY_POLL.max(self.cfg.health_poll_interval);
        recovery.interval = self.elb.widen(recovery.interval * 2).min(cap);
        recovery.next = self.clock.now() + jittered(recovery.interval, self.clock.random());
        Recovered::NotYet
    }

    /// Polls each target not yet healthy once; `Some` when the wait must
    /// end now. An event that arrived during a poll ends it before the
    /// next target's: after an event only the shutdown calls AWS.
    fn poll_until_healthy(
        &mut self,
        watches: &mut [Watch],
        deadline: Instant,
    ) -> Option<HealthWait> {
        for watch in watches.iter_mut().filter(|w| !w.done) {
            if let Some(end) = self.poll_watch(watch, deadline) {
                return Some(end);
            }
        }
        None
    }

    /// Polls one target once (unless an event came first); `Some` when the
    /// wait must end now.
    fn poll_watch(&mut self, watch: &mut Watch, deadline: Instant) -> Option<HealthWait> {
        if self.absorb_events() {
            return Some(HealthWait::Interrupted);
        }
        let registration = &self.registrations[watch.index];
        match registration.poll_health(self.elb, self.clock, deadline) {
            Ok(Some(health)) => {
                watch.log(registration, &health);
                watch.done = health.state == State::Healthy;
            }
            Ok(None) => warn!(
                target_group = registration.label.as_str(), target:% = registration.target,
                action = DescribeTargetHealth::NAME;
                "DescribeTargetHealth did not report {} in {}",
                registration.target, registration.label
            ),
            Err(Error::Interrupted) => return Some(HealthWait::Interrupted),
            Err(e) if e.is_refusal() => {
                error!(
                    target_group = registration.label.as_str(), target:% = registration.target,
                    action = DescribeTargetHealth::NAME, error_code = e.aws_code(),
                    request_id = crate::logging::request_id_of(&e);
                    "cannot check target health: {e}; the target stays registered, \
                     not ready, and its health is not checked again"
                );
                return Some(HealthWait::Refused);
            }
            Err(e) => warn!(
                target_group = registration.label.as_str(), target:% = registration.target,
                action = DescribeTargetHealth::NAME, error_code = e.aws_code(),
                request_id = crate::logging::request_id_of(&e);
                "health check of {} failed: {e}", registration.label
            ),
        }
        None
    }

    /// When registration `index` is polled next, after a poll just now: at
    /// the group's pace when known and `-health-poll-interval` was not
    /// given (never before the earliest moment its target can be healthy,
    /// that plus up to a fifth of the interval to spread a fleet), else at
    /// `-health-poll-interval`; either widened after throttling, jittered.
    fn next_poll(&mut self, index: usize) -> Instant {
        let now = self.clock.now();
        let random = self.clock.random();
        let registration = &self.registrations[index];
        let pace = registration.pace.filter(|_| !self.cfg.health_poll_explicit);
        match pace {
            Some((earliest, interval)) => {
                let next = now + jittered(self.elb.widen(interval), random);
                match registration.registered_at {
                    Some(at) => next.max(at + earliest + interval.mul_f64(0.2 * random)),
                    None => next,
                }
            }
            None => now + jittered(self.elb.widen(self.cfg.health_poll_interval), random),
        }
    }

    /// When registration `index` is first polled: at once, or, after
    /// throttling answers to `Describe*` calls, when its target can be
    /// healthy (the group's earliest moment, jittered by up to a fifth of
    /// its interval), else after a widened `-health-poll-interval`.
    fn first_poll(&mut self, index: usize) -> Instant {
        let now = self.clock.now();
        let unit = Duration::from_secs(1);
        if self.elb.widen(unit) <= unit {
            return now;
        }
        let random = self.clock.random();
        let registration = &self.registrations[index];
        let pace = registration.pace.filter(|_| !self.cfg.health_poll_explicit);
        match (pace, registration.registered_at) {
            (Some((earliest, interval)), Some(at)) => {
                (at + earliest + interval.mul_f64(0.2 * random)).max(now)
            }
            _ => now + jittered(self.elb.widen(self.cfg.health_poll_interval), random),
        }
    }

    /// Logs how the health wait will poll each group.
    fn log_pace(&self) {
        // The same test as first_poll's: no look at once after throttling.
        let unit = Duration::from_secs(1);
        let first = if self.elb.widen(unit) <= unit {
            "now"
        } else {
            "after a pause (this account has throttled our calls)"
        };
        for r in &self.registrations {
            let every = |d: Duration| humantime::format_duration(d).to_string();
            match r.pace {
                Some((earliest, interval)) if !self.cfg.health_poll_explicit => info!(
                    "checking the health of {} in {} {first}, then from {} after registering \
                     every {} (the group's HealthCheckIntervalSeconds)",
                    r.target,
                    r.label,
                    every(earliest),
                    every(interval)
                ),
                _ => info!(
                    "checking the health of {} in {} {first}, then every {} (-health-poll-interval)",
                    r.target,
                    r.label,
                    every(self.cfg.health_poll_interval)
                ),
            }
        }
    }

    fn log_not_healthy(&self, watches: &[Watch]) {
        for watch in watches.iter().filter(|w| !w.done) {
            let registration = &self.registrations[watch.index];
            warn!(
                target_group = registration.label.as_str(), target:% = registration.target,
                state = watch.last();
                "target {} in {} not healthy after {}: last state {}; it stays registered, \
                 not ready, and its health is checked again at growing intervals (up to a minute)",
                registration.target,
                registration.label,
                humantime::format_duration(self.cfg.wait_in_service_timeout),
                watch.last().unwrap_or("unknown")
            );
        }
    }
}
