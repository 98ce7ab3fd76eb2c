//! Polling DescribeTargetHealth: the wait until healthy, and the polls while
//! blocked after it timed out (pace: docs/design.md's pacing model).

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
/// Longest pause between two polls after the health wait timed out.
const MAX_RECOVERY_POLL: Duration = Duration::from_secs(60);
const RECOVERY_POLL_WINDOW: Duration = Duration::from_secs(30);

/// How the health wait ended (`Refused`: a final error from AWS).
pub(super) enum HealthWait {
    Healthy,
    TimedOut(Recovery),
    Refused,
    Interrupted,
}

/// The polls while blocked after a health-wait timeout, the pause doubling
/// up to a minute: a target that stays unhealthy costs a call a minute.
pub(super) struct Recovery {
    watches: Vec<Watch>,
    interval: Duration,
    pub(super) next: Instant,
}

/// How one recovery poll ended (`Done`: ready, or AWS refused to tell).
pub(super) enum Recovered {
    NotYet,
    Done,
    Interrupted,
}

impl Registration {
    /// One DescribeTargetHealth of this target, none past `deadline`; `None`
    /// when the answer does not list it.
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

/// A registration (its index) polled until done (healthy, or drained); logs each state once.
#[derive(Default)]
pub(super) struct Watch {
    pub(super) index: usize,
    pub(super) done: bool,
    /// The state last logged.
    pub(super) last: Option<String>,
}

impl Watch {
    pub(super) fn new(index: usize) -> Self {
        Watch {
            index,
            ..Watch::default()
        }
    }

    pub(super) fn log(&mut self, r: &Registration, health: &TargetHealth) {
        let text = health.to_string();
        if self.last.as_deref() != Some(&text) {
            info!(
                target_group = r.label.as_str(), target:% = r.target,
                state:% = health.state, reason = health.reason.as_deref();
                "target {} in {} is {text}", r.target, r.label
            );
            self.last = Some(text);
        }
        r.seen(match &health.state {
            State::Healthy => TargetState::Healthy,
            s if s.is_draining() => TargetState::Draining,
            _ => TargetState::Registered,
        });
    }
}

impl Lifecycle<'_> {
    /// Polls each target at its pace until all are healthy,
    /// `-wait-in-service-timeout` passes, or an event arrives.
    pub(super) fn wait_healthy(&mut self) -> HealthWait {
        let deadline = self.clock.now() + self.cfg.wait_in_service_timeout;
        let mut watches: Vec<Watch> = (0..self.registrations.len()).map(Watch::new).collect();
        let mut due: Vec<Instant> = (0..watches.len())
            .map(|i| self.poll_at(i, true).min(deadline))
            .collect();
        self.log_pace();
        while self.clock.now() < deadline {
            let now = self.clock.now();
            let next = watches
                .iter()
                .filter(|w| !w.done)
                .map(|w| due[w.index])
                .min();
            let next = next.unwrap_or(now).min(deadline);
            if next > now && self.clock.sleep(next - now).is_err() {
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
                due[watch.index] = self.poll_at(watch.index, false).min(deadline);
            }
            if watches.iter().all(|w| w.done) {
                info!("all targets are healthy");
                return HealthWait::Healthy;
            }
            if self.absorb_events() {
                return HealthWait::Interrupted;
            }
        }
        self.timed_out(watches)
    }

    fn timed_out(&mut self, watches: Vec<Watch>) -> HealthWait {
        for w in watches.iter().filter(|w| !w.done) {
            let (r, last) = (&self.registrations[w.index], w.last.as_deref());
            warn!(
                target_group = r.label.as_str(), target:% = r.target, state = last;
                "target {} in {} not healthy after {}: last state {}; it stays registered, \
                 not ready, and its health is checked again at growing intervals (up to a minute){}",
                r.target, r.label,
                humantime::format_duration(self.cfg.wait_in_service_timeout),
                last.unwrap_or("unknown"),
                if last.is_some_and(unreachable) { UNREACHABLE_HINT } else { "" }
            );
        }
        crate::metrics::global().health_wait_timed_out();
        let interval = self.elb.widen(self.cfg.health_poll_interval);
        let next = self.clock.now() + jittered(interval, self.clock.random());
        HealthWait::TimedOut(Recovery {
            watches,
            interval,
            next,
        })
    }

    /// One poll of each target not yet healthy; ready once all are.
    pub(super) fn poll_recovery(&mut self, recovery: &mut Recovery) -> Recovered {
        let deadline = self.clock.now() + RECOVERY_POLL_WINDOW;
        for watch in recovery.watches.iter_mut().filter(|w| !w.done) {
            match self.poll_watch(watch, deadline) {
                Some(HealthWait::Interrupted) => return Recovered::Interrupted,
                Some(_) => return Recovered::Done,
                None => {}
            }
        }
        if recovery.watches.iter().all(|w| w.done) {
            info!(
                "all targets are healthy now, after the health-wait timeout: ready \
                 (the post-register command ran at the timeout and does not run again)"
            );
            self.status.set_ready(true);
            return Recovered::Done;
        }
        let cap = MAX_RECOVERY_POLL.max(self.cfg.health_poll_interval);
        recovery.interval = self.elb.widen(recovery.interval * 2).min(cap);
        recovery.next = self.clock.now() + jittered(recovery.interval, self.clock.random());
        Recovered::NotYet
    }

    /// Polls one target unless an event came (then only the shutdown calls
    /// AWS); `Some` when the wait must end now.
    fn poll_watch(&mut self, watch: &mut Watch, deadline: Instant) -> Option<HealthWait> {
        if self.absorb_events() {
            return Some(HealthWait::Interrupted);
        }
        let r = &self.registrations[watch.index];
        let action = DescribeTargetHealth::NAME;
        match r.poll_health(self.elb, self.clock, deadline) {
            Ok(Some(health)) => {
                watch.log(r, &health);
                watch.done = health.state == State::Healthy;
            }
            Ok(None) => warn!(
                target_group = r.label.as_str(), target:% = r.target, action;
                "DescribeTargetHealth did not report {} in {}", r.target, r.label
            ),
            Err(Error::Interrupted) => return Some(HealthWait::Interrupted),
            Err(e) if e.is_refusal() => {
                error!(
                    target_group = r.label.as_str(), target:% = r.target, action,
                    error_code = e.aws_code(), request_id = e.request_id();
                    "cannot check target health: {e}; the target stays registered, \
                     not ready, and its health is not checked again"
                );
                return Some(HealthWait::Refused);
            }
            Err(e) => warn!(
                target_group = r.label.as_str(), target:% = r.target, action,
                error_code = e.aws_code(), request_id = e.request_id();
                "health check of {} failed: {e}", r.label
            ),
        }
        None
    }

    fn throttled(&self) -> bool {
        let unit = Duration::from_secs(1);
        self.elb.widen(unit) > unit
    }

    /// When registration `index` is polled next (the `first` look at once
    /// unless throttled). At the group's pace unless `-health-poll-interval`
    /// was given, never before it can be healthy (plus up to a fifth of the
    /// interval, to spread a fleet); widened after throttling, jittered.
    fn poll_at(&mut self, index: usize, first: bool) -> Instant {
        let now = self.clock.now();
        if first && !self.throttled() {
            return now;
        }
        let random = self.clock.random();
        let r = &self.registrations[index];
        let pace = r.pace.filter(|_| !self.cfg.health_poll_explicit);
        let earliest = (pace.zip(r.registered_at))
            .map(|((earliest, interval), at)| at + earliest + interval.mul_f64(0.2 * random));
        let flag = self.cfg.health_poll_interval;
        if first {
            return earliest.map_or_else(
                || now + jittered(self.elb.widen(flag), random),
                |e| e.max(now),
            );
        }
        let next = now + jittered(self.elb.widen(pace.map_or(flag, |p| p.1)), random);
        earliest.map_or(next, |e| next.max(e))
    }

    fn log_pace(&self) {
        let first = if self.throttled() {
            "after a pause (this account has throttled our calls)"
        } else {
            "now"
        };
        let human = |d: Duration| humantime::format_duration(d).to_string();
        for r in &self.registrations {
            let then = match r.pace.filter(|_| !self.cfg.health_poll_explicit) {
                Some((earliest, interval)) => format!(
                    "from {} after registering every {} (the group's HealthCheckIntervalSeconds)",
                    human(earliest),
                    human(interval)
                ),
                None => format!(
                    "every {} (-health-poll-interval)",
                    human(self.cfg.health_poll_interval)
                ),
            };
            info!(
                "checking the health of {} in {} {first}, then {then}",
                r.target, r.label
            );
        }
    }
}

/// Whether a last health state is what checks that never reach the target
/// leave (still `initial`, or failing by timeout or connection).
pub(super) fn unreachable(last: &str) -> bool {
    last.starts_with("initial")
        || last.contains("Target.Timeout")
        || last.contains("Target.FailedHealthChecks")
}

const UNREACHABLE_HINT: &str = "; if the load balancer cannot reach the target, the nodes' \
    security group (or the pod's, with security groups for pods) must let it reach the target \
    port and the health-check port";
