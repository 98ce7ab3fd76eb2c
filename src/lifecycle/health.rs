//! After registering: DescribeTargetHealth polls until healthy (pace:
//! docs/design.md's pacing model), the post-register hook, then the blocked
//! wait with its credentials refreshes and the polls after a health-wait timeout.

use super::{Lifecycle, Registration, Transport};
use crate::aws::client::Budget;
use crate::aws::elbv2::{find_health, DescribeTargetHealth, TargetHealth};
use crate::aws::error::Error;
use crate::aws::query::Action;
use crate::aws::retry::jittered;
use crate::hooks::Outcome;
use crate::metrics;
use log::{error, info, warn};
use std::time::{Duration, Instant};

/// Attempts per DescribeTargetHealth poll (the next poll comes anyway).
const HEALTH_POLL_ATTEMPTS: u32 = 3;
/// Longest pause between two polls after the health wait timed out.
const MAX_RECOVERY_POLL: Duration = Duration::from_secs(60);
/// How long a call while blocked (a poll after the timeout, a refresh) may take.
const BLOCKED_CALL_WINDOW: Duration = Duration::from_secs(30);
/// Also the least time between two refreshes (never a busy loop).
const REFRESH_GAP: Duration = Duration::from_secs(60);

impl Registration {
    /// Logs each new health state once, and counts it in the metrics.
    pub(super) fn log_health(&mut self, health: &TargetHealth) {
        let text = health.to_string();
        if self.last.as_deref() != Some(&text) {
            info!(
                target_group = self.label.as_str(), target:% = self.target,
                state:% = health.state, reason = health.reason.as_deref();
                "target {} in {} is {text}", self.target, self.label
            );
            self.last = Some(text);
        }
        self.seen(match health.state.as_str() {
            "healthy" => "healthy",
            _ if health.is_draining() => "draining",
            _ => "registered",
        });
    }
}

impl<T: Transport> Lifecycle<'_, T> {
    /// Until an event: polls each target at its pace until all are healthy
    /// or `-wait-in-service-timeout` passes, runs the post-register hook and
    /// turns ready if all are healthy; then blocks (zero CPU), waking to
    /// refresh credentials ahead of expiry and to poll the unhealthy on, the
    /// pause doubling up to a minute: one that stays so costs a call a minute.
    pub(super) fn watch(&mut self) {
        let cfg = self.cfg;
        let started = self.clock.now();
        let deadline = started + cfg.wait_in_service_timeout;
        // When each target is polled next; `None` once healthy (or not waited for).
        let mut due: Vec<_> = (0..self.registrations.len())
            .map(|i| (cfg.wait_in_service).then(|| self.poll_at(i, true).min(deadline)))
            .collect();
        // Once blocked: the earliest the next credentials refresh may come.
        let mut blocked: Option<Instant> = None;
        let (mut interval, mut refused) = (Duration::ZERO, false);
        loop {
            let now = self.clock.now();
            if blocked.is_none() && (now >= deadline || due.iter().all(Option::is_none)) {
                let stop;
                (interval, stop) = self.end_health_wait(&mut due, refused, started);
                if self.absorb_events() || stop {
                    return;
                }
                info!("blocking until SIGTERM or SIGINT");
                blocked = Some(self.clock.now() + REFRESH_GAP);
            }
            let refresh_at = blocked.zip(self.elb.refresh_due()).map(|(floor, due)| {
                let until_due = due.duration_since(self.clock.wall()).unwrap_or_default();
                (self.clock.now() + until_due).max(floor)
            });
            let wake = due.iter().flatten().chain(&refresh_at).min();
            let timeout = wake.map(|at| at.saturating_duration_since(self.clock.now()));
            if let Some(ev) = self.clock.wait_event(timeout) {
                return self.absorb(ev);
            }
            let now = self.clock.now();
            if refresh_at.is_some_and(|at| at <= now) {
                if !self.refresh(now) {
                    return;
                }
                blocked = Some(self.clock.now() + REFRESH_GAP);
            }
            let round = due.iter().flatten().any(|&at| at <= now);
            let window = blocked.map_or(deadline, |_| now + BLOCKED_CALL_WINDOW);
            let Some(answered) = self.poll_due(&mut due, now, window) else {
                return;
            };
            refused |= !answered;
            if blocked.is_none() {
                // One last look at the deadline when the next is later.
                due.iter_mut()
                    .flatten()
                    .for_each(|at| *at = (*at).min(deadline));
            } else if round && due.iter().all(Option::is_none) && !refused {
                self.recovered();
            } else if round {
                let cap = MAX_RECOVERY_POLL.max(cfg.health_poll_interval);
                interval = self.widen(interval * 2).min(cap);
                let next = self.clock.now() + jittered(interval, self.clock.random());
                due.iter_mut().flatten().for_each(|at| *at = next);
            }
        }
    }

    fn recovered(&mut self) {
        // Ready first: a reader of the line below may ask /readyz at once.
        self.status.set_ready(true);
        info!(
            "all targets are healthy now, after the health-wait timeout: ready \
             (the post-register command ran at the timeout and does not run again)"
        );
    }

    /// A credentials refresh in the background; false at an event.
    fn refresh(&mut self, now: Instant) -> bool {
        let budget = Budget {
            deadline: now + BLOCKED_CALL_WINDOW,
            max_attempts: 3,
        };
        match self.elb.fetch_credentials(true, budget, self.clock) {
            Err(Error::Interrupted) => return false,
            Err(e) => warn!("background credentials refresh failed: {e}"),
            Ok(()) => {}
        }
        true
    }

    /// Polls the targets due at `now`, none past `window`: `None` at an
    /// event, else false when AWS refused a check (then all are `None`).
    fn poll_due(
        &mut self,
        due: &mut [Option<Instant>],
        now: Instant,
        window: Instant,
    ) -> Option<bool> {
        let mut answered = true;
        for i in 0..due.len() {
            if due[i].is_none_or(|at| at > now) {
                continue;
            }
            // After an event only the shutdown calls AWS.
            if self.absorb_events() {
                return None;
            }
            // While blocked, the round's pause replaces `poll_at`.
            match self.poll_one(i, window) {
                Some(healthy) => due[i] = (!healthy).then(|| self.poll_at(i, false)),
                None => {
                    due.fill(None);
                    answered = false;
                }
            }
        }
        (!self.absorb_events()).then_some(answered)
    }

    /// The health wait's end: logs it; the post-register hook (also after a
    /// timeout or refusal, which leave it not ready). After a timeout the
    /// pending are polled on: returns the first pause, and whether an event
    /// came.
    fn end_health_wait(
        &mut self,
        due: &mut [Option<Instant>],
        refused: bool,
        started: Instant,
    ) -> (Duration, bool) {
        let cfg = self.cfg;
        let interval = self.widen(cfg.health_poll_interval);
        let healthy = !refused && due.iter().all(Option::is_none);
        if cfg.wait_in_service {
            let took = self.clock.now().saturating_duration_since(started);
            metrics::global().step_took("health_wait", took);
            if healthy {
                info!("all targets are healthy");
            }
        }
        if !healthy && !refused {
            let pending = self.registrations.iter().zip(&*due);
            for (r, _) in pending.filter(|p| p.1.is_some()) {
                let last = r.last.as_deref();
                warn!(
                    target_group = r.label.as_str(), target:% = r.target, state = last;
                    "target {} in {} not healthy after {}: last state {}; it stays registered, \
                     not ready, and its health is checked again at growing intervals (up to a minute){}",
                    r.target, r.label,
                    humantime::format_duration(cfg.wait_in_service_timeout),
                    last.unwrap_or("unknown"),
                    if last.is_some_and(unreachable) { UNREACHABLE_HINT } else { "" }
                );
            }
            metrics::global().health_wait_timed_out();
            let next = self.clock.now() + jittered(interval, self.clock.random());
            due.iter_mut().flatten().for_each(|at| *at = next);
        }
        let hook = cfg.hook("post-register");
        let interrupted =
            hook.is_some_and(|h| self.effects.run_hook(h, self.clock) == Outcome::Interrupted);
        // A signal as the hook ends: no moment of ready while terminating.
        let stop = self.absorb_events() || interrupted;
        self.status.set_ready(healthy && !stop);
        (interval, stop)
    }

    /// One DescribeTargetHealth of registration `i`, none past `deadline`;
    /// `None` when the answer does not list it.
    pub(super) fn poll_health(
        &mut self,
        i: usize,
        deadline: Instant,
    ) -> Result<Option<TargetHealth>, Error> {
        let r = &self.registrations[i];
        let budget = Budget {
            deadline,
            max_attempts: HEALTH_POLL_ATTEMPTS,
        };
        let action = DescribeTargetHealth {
            arn: &r.arn,
            targets: std::slice::from_ref(&r.target),
        };
        let answer = self.elb.call(&action, budget, self.clock)?;
        Ok(find_health(&answer.value, &r.target).cloned())
    }

    /// Whether registration `i` is healthy; `None` when AWS refused the check.
    fn poll_one(&mut self, i: usize, deadline: Instant) -> Option<bool> {
        let answer = self.poll_health(i, deadline);
        let r = &mut self.registrations[i];
        let action = DescribeTargetHealth::NAME;
        match answer {
            Ok(Some(health)) => {
                r.log_health(&health);
                return Some(health.state == "healthy");
            }
            Ok(None) => warn!(
                target_group = r.label.as_str(), target:% = r.target, action;
                "DescribeTargetHealth did not report {} in {}", r.target, r.label
            ),
            // The caller sees the event.
            Err(Error::Interrupted) => {}
            Err(e) if e.is_refusal() => {
                error!(
                    target_group = r.label.as_str(), target:% = r.target, action,
                    error_code = e.aws_code(), request_id = e.request_id();
                    "cannot check target health: {e}; the target stays registered, \
                     not ready, and its health is not checked again"
                );
                return None;
            }
            Err(e) => warn!(
                target_group = r.label.as_str(), target:% = r.target, action,
                error_code = e.aws_code(), request_id = e.request_id();
                "health check of {} failed: {e}", r.label
            ),
        }
        Some(false)
    }

    /// When registration `i` is polled next (the `first` look at once unless
    /// throttled): never before it can be healthy, then at the group's
    /// interval (or `-health-poll-interval`), widened after throttling, jittered.
    fn poll_at(&mut self, i: usize, first: bool) -> Instant {
        let (now, one) = (self.clock.now(), Duration::from_secs(1));
        let r = &self.registrations[i];
        match r.earliest {
            _ if first && self.widen(one) == one => now,
            Some(earliest) if first => earliest.max(now),
            earliest => {
                let every = r.every.unwrap_or(self.cfg.health_poll_interval);
                let next = now + jittered(self.widen(every), self.clock.random());
                earliest.map_or(next, |e| next.max(e))
            }
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
