//! Shutdown: deregister every target that may be in, check a late landing
//! of an unanswered registration, wait for draining, the post-deregister
//! hook, the answer to drain requests and the exit code.

use super::health::Watch;
use super::{
    Elb, Lifecycle, Registration, RegistrationState, APP_POLL_AFTER_DRAIN, EXIT_FAILURE, EXIT_OK,
};
use crate::aws::client::{Budget, MIN_CALL_TIMEOUT};
use crate::aws::elbv2::{DeregisterTargets, DescribeTargetHealth};
use crate::aws::error::Error;
use crate::aws::query::{Action, CALL_TIMEOUT};
use crate::aws::retry::jittered;
use crate::clock::Clock;
use crate::config::Config;
use crate::hooks::command::KILL_GRACE;
use crate::metrics::{self, Step, TargetState};
use crate::signals::{signal_name, DrainResult, Event};
use log::{error, info, warn};
use std::time::{Duration, Instant};

/// Pause before checking whether an unanswered registration landed late.
const CONFIRM_DELAY: Duration = Duration::from_secs(1);
/// Longest pause between two draining polls (they start at the health poll
/// interval and double: draining lasts minutes, and the API's rate limit is
/// shared by every pod of the account).
const MAX_DRAIN_POLL: Duration = Duration::from_secs(15);

/// The longest a shutdown takes, from the signal (or `/drain`) to its
/// outcome, part by part as README.md's "Shutdown budget" table adds it
/// up (its flush of late `/drain` answers at exit left out): the request
/// or hook on its way when the signal came, the deregistration deadline,
/// the attempt each group still gets past it and the late-landing check
/// (a look and a second DeregisterTargets), the drain wait and its last
/// poll of each group, and the post-deregister command with its kill grace.
pub fn shutdown_budget(cfg: &Config) -> Duration {
    let groups = u32::try_from(cfg.groups.len()).unwrap_or(u32::MAX);
    let per_group = |d: Duration| d.checked_mul(groups).unwrap_or(Duration::MAX);
    let in_flight = CALL_TIMEOUT.max(KILL_GRACE);
    let past_deadline = per_group(MIN_CALL_TIMEOUT * 3);
    let drain = if cfg.wait_drained || cfg.drain_quiet_period.is_some() {
        cfg.wait_drained_timeout
            .saturating_add(per_group(MIN_CALL_TIMEOUT))
    } else {
        Duration::ZERO
    };
    let hook = cfg
        .post_deregister
        .as_ref()
        .map_or(Duration::ZERO, |h| h.timeout.saturating_add(KILL_GRACE));
    [cfg.deregister_timeout, past_deadline, drain, hook]
        .into_iter()
        .fold(in_flight, Duration::saturating_add)
}

/// How one DeregisterTargets ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// Deregistered: the target drains now.
    Deregistered,
    /// Not registered there (or its registration was refused): nothing drains.
    NotThere,
    /// The target may still be in the group.
    Failed,
}

impl Lifecycle<'_> {
    /// Shutdown (when anything may be registered) and the exit code;
    /// after a drain request alone, keeps running until a signal, or
    /// returns `None` when the app restarted: register again.
    pub(super) fn finish(&mut self) -> Option<i32> {
        self.absorb_events();
        let mut out = self.shutdown();
        if !self.signalled && !self.failed {
            // Drained by request: keep running (not ready) until a signal.
            if self.wait_signal_after_drain(out) {
                return None;
            }
            if !out {
                out = self.shutdown();
            }
        }
        let code = if !out || self.failed {
            EXIT_FAILURE
        } else {
            EXIT_OK
        };
        // Drain requests that came in after the last look get the final
        // word; so do those still on their way (the status listener answers
        // them from `status` once their request is dropped unanswered).
        let last_word: DrainResult = if out {
            Ok("deregistered".into())
        } else {
            Err("deregistration failed; see the sidecar's log".into())
        };
        self.status.set_outcome(last_word.clone());
        while let Some(ev) = self.clock.take_event() {
            if let Event::Drain(tx) = ev {
                let _ = tx.send(last_word.clone());
            }
        }
        if code == EXIT_OK {
            info!("exiting: every target is out");
        } else if !out {
            error!("exiting with failure: a target may still be registered");
        } else {
            error!("exiting with failure");
        }
        Some(code)
    }

    /// After a drain request, unshielded, answers further drain requests
    /// until a signal comes (false). The kubelet runs the app's preStop
    /// hook (which drains) on a container restart too, with no signal to
    /// follow: with an app check, returns true once the check has failed
    /// and passed again, so the target goes back in. A drain asked for by
    /// hand, the app up throughout, holds.
    fn wait_signal_after_drain(&mut self, out: bool) -> bool {
        let poll = self.cfg.has_app_check().then_some(APP_POLL_AFTER_DRAIN);
        info!("drained on request; waiting for SIGTERM");
        self.clock.set_shielded(false);
        let mut app_went_down = false;
        loop {
            match self.clock.wait_event(poll) {
                Some(Event::Signal(s)) => {
                    info!("{} after drain", signal_name(s));
                    self.signalled = true;
                    return false;
                }
                Some(Event::Drain(tx)) => {
                    let _ = tx.send(if out {
                        Ok("already deregistered".into())
                    } else {
                        Err("deregistration failed earlier; retrying on SIGTERM".into())
                    });
                }
                None => match self.effects.app_up(self.cfg) {
                    Some(Err(why)) if !app_went_down => {
                        info!("the app is down ({why}); registering again when it is back");
                        app_went_down = true;
                    }
                    Some(Ok(())) if app_went_down => {
                        info!("the app is back after a restart: registering again");
                        self.status.end_drain();
                        return true;
                    }
                    _ => {}
                },
            }
        }
    }

    /// Deregisters, waits for draining, runs the post-deregister hook,
    /// answers the drain requests; returns whether every target is out.
    fn shutdown(&mut self) -> bool {
        self.clock.set_shielded(true);
        self.status.begin_drain();
        self.status.set_ready(false);
        self.absorb_events();
        let deadline = self.clock.now() + self.cfg.deregister_timeout;
        let (all_out, deregistered) = self.timed(Step::Deregister, |l| l.deregister_all(deadline));
        let deregistered_at = self.clock.now();
        // The drain step: the wait for draining to end (-wait-drained),
        // then for the connections to stop (-drain-quiet-period).
        let draining = !deregistered.is_empty()
            && (self.cfg.wait_drained || self.cfg.drain_quiet_period.is_some());
        let (drained, quiet) = if draining {
            self.timed(Step::Drain, |l| {
                let drained = !l.cfg.wait_drained || l.wait_drained(&deregistered);
                (drained, l.quiet_step(deregistered_at))
            })
        } else {
            (true, true)
        };
        self.absorb_events();
        if let Some(hook) = &self.cfg.post_deregister {
            self.effects.run_hook(hook, self.clock);
        }
        self.absorb_events();
        let result: DrainResult = match (all_out, drained) {
            (true, true) if !quiet => Err(
                "deregistered, but new connections kept arriving until -wait-drained-timeout"
                    .into(),
            ),
            (true, true) if self.cfg.wait_drained => Ok("deregistered and drained".into()),
            (true, true) => Ok("deregistered".into()),
            (true, false) => {
                Err("deregistered, but draining did not finish within -wait-drained-timeout".into())
            }
            (false, _) => Err("deregistration failed; see the sidecar's log".into()),
        };
        for tx in self.drain_waiters.drain(..) {
            let _ = tx.send(result.clone());
        }
        all_out
    }

    /// DeregisterTargets for each registration that may be in. Returns
    /// whether all are out now, and which were deregistered (they drain).
    fn deregister_all(&mut self, deadline: Instant) -> (bool, Vec<usize>) {
        let mut all_out = true;
        let mut deregistered = Vec::new();
        let maybe_in = self.registrations.iter_mut().enumerate();
        for (i, registration) in maybe_in.filter(|(_, r)| r.state.may_be_registered()) {
            match registration.deregister(self.elb, self.clock, deadline) {
                Removal::Deregistered => deregistered.push(i),
                Removal::NotThere => {}
                Removal::Failed => all_out = false,
            }
        }
        (all_out, deregistered)
    }

    /// Polls the deregistered targets, the pause doubling from the health
    /// poll interval, until none is draining; false at
    /// `-wait-drained-timeout`.
    fn wait_drained(&mut self, deregistered: &[usize]) -> bool {
        let deadline = self.clock.now() + self.cfg.wait_drained_timeout;
        let mut watches: Vec<Watch> = deregistered.iter().map(|&i| Watch::new(i)).collect();
        let mut interval = self.cfg.health_poll_interval;
        info!(
            "waiting up to {} for draining to finish",
            humantime::format_duration(self.cfg.wait_drained_timeout)
        );
        while watches.iter().any(|w| !w.done) {
            let now = self.clock.now();
            if now >= deadline {
                self.log_still_draining(&watches);
                return false;
            }
            // Widened for life after throttling, like the health wait's.
            let pause = jittered(self.elb.widen(interval), self.clock.random());
            interval = (interval * 2).min(MAX_DRAIN_POLL.max(self.cfg.health_poll_interval));
            let _ = self.clock.sleep(pause.min(deadline - now));
            self.poll_until_drained(&mut watches, deadline);
        }
        true
    }

    /// Polls each target still draining once.
    fn poll_until_drained(&mut self, watches: &mut [Watch], deadline: Instant) {
        for watch in watches.iter_mut().filter(|w| !w.done) {
            let registration = &self.registrations[watch.index];
            let (target, label) = (&registration.target, &registration.label);
            match registration.poll_health(self.elb, self.clock, deadline) {
                // Only "not registered" is drained: an eventually consistent
                // answer may still say healthy, and `unused` may be in.
                Ok(Some(health)) if !health.is_gone() => watch.log(registration, &health),
                Ok(seen) => {
                    let state = seen.map_or_else(|| "gone".into(), |h| h.to_string());
                    info!(
                        target_group = label.as_str(), target:% = target, state = state.as_str();
                        "target {target} in {label} drained ({state})"
                    );
                    registration.seen(TargetState::Out);
                    watch.done = true;
                }
                Err(e) if e.is_target_absent() => {
                    info!(
                        target_group = label.as_str(), target:% = target, state = "gone",
                        error_code = e.aws_code();
                        "target {target} in {label} drained (gone)"
                    );
                    registration.seen(TargetState::Out);
                    watch.done = true;
                }
                Err(e) => warn!(
                    target_group = label.as_str(), target:% = target,
                    action = DescribeTargetHealth::NAME, error_code = e.aws_code(),
                    request_id = crate::logging::request_id_of(&e);
                    "draining check of {label} failed: {e}"
                ),
            }
        }
    }

    fn log_still_draining(&self, watches: &[Watch]) {
        for watch in watches.iter().filter(|w| !w.done) {
            let registration = &self.registrations[watch.index];
            warn!(
                target_group = registration.label.as_str(), target:% = registration.target,
                state = watch.last();
                "target {} in {} still {} at -wait-drained-timeout",
                registration.target,
                registration.label,
                watch.last().unwrap_or("draining")
            );
        }
    }
}

impl Registration {
    /// Sends DeregisterTargets; the state becomes
    /// [`Out`](RegistrationState::Out) when AWS's answer shows the target
    /// out, and stays as it was when it may still be in.
    fn deregister(
        &mut self,
        elb: &mut dyn Elb,
        clock: &mut dyn Clock,
        deadline: Instant,
    ) -> Removal {
        info!(
            target_group = self.label.as_str(), target:% = self.target, action = DeregisterTargets::NAME;
            "deregistering target {} from {}", self.target, self.label
        );
        let answer = elb.deregister(&self.arn, &self.targets(), Budget::until(deadline), clock);
        let removal = match answer {
            Ok(id) => {
                info!(
                    target_group = self.label.as_str(), target:% = self.target,
                    action = DeregisterTargets::NAME, request_id = id.as_deref(), state = "deregistered";
                    "deregistered target {} from {} (request id {})",
                    self.target,
                    self.label,
                    id.as_deref().unwrap_or("-")
                );
                // AWS answers success for a target that is not registered,
                // so success says nothing about a registration still in flight.
                if self.may_land_late() && !self.confirm_not_registered(elb, clock, deadline) {
                    return Removal::Failed;
                }
                Removal::Deregistered
            }
            // Not (or no longer) registered, or the group is gone: the target is out.
            Err(e) if e.is_target_absent() => {
                info!(
                    target_group = self.label.as_str(), target:% = self.target,
                    action = DeregisterTargets::NAME, error_code = e.aws_code(),
                    request_id = crate::logging::request_id_of(&e);
                    "target {} is not registered in {}: {e}",
                    self.target, self.label
                );
                if self.may_land_late() && !self.confirm_not_registered(elb, clock, deadline) {
                    return Removal::Failed;
                }
                Removal::NotThere
            }
            // Refused, and no attempt of it lost: this was a precaution.
            Err(e) if self.state == RegistrationState::Refused && !self.lost_attempt => {
                warn!(
                    "target {} was refused by {}, so it is most likely not registered; \
                     the precautionary deregistration failed too: {e}",
                    self.target, self.label
                );
                Removal::NotThere
            }
            Err(e) => {
                self.log_maybe_still_in(&e);
                return Removal::Failed;
            }
        };
        self.state = RegistrationState::Out;
        self.seen(match removal {
            Removal::Deregistered => TargetState::Draining,
            _ => TargetState::Out,
        });
        removal
    }

    /// After a deregistration (answered with success, or with "not
    /// registered") of a target whose RegisterTargets never answered: that
    /// registration may land after it. AWS answers DeregisterTargets with
    /// success whether or not the target was registered ("If the specified
    /// target does not exist, the action returns successfully"), and moto
    /// with `InvalidTarget`, so neither answer rules a late landing out.
    /// Look again after a moment (within `deadline`) and deregister once
    /// more unless it shows out: `draining` or not registered (a late
    /// registration shows anything else, `unused` included in a group no
    /// load balancer uses). A look that
    /// gets no answer deregisters once more too. Returns whether the
    /// target is out.
    fn confirm_not_registered(
        &self,
        elb: &mut dyn Elb,
        clock: &mut dyn Clock,
        deadline: Instant,
    ) -> bool {
        let left = deadline.saturating_duration_since(clock.now());
        let _ = clock.sleep(CONFIRM_DELAY.min(left));
        match self.poll_health(elb, clock, deadline) {
            Ok(Some(health)) if !health.is_gone() && !health.state.is_draining() => warn!(
                "the registration of {} in {} landed late; deregistering again",
                self.target, self.label
            ),
            // An answer that shows it out, or says it (or its group) is gone.
            Ok(_) => return true,
            Err(e) if e.is_target_absent() => return true,
            // No answer: it may have landed. One more DeregisterTargets
            // costs one call (AWS answers success for an absent target).
            Err(e) => warn!(
                "cannot confirm that {} is out of {}: {e}; deregistering again in case it landed",
                self.target, self.label
            ),
        }
        match elb.deregister(&self.arn, &self.targets(), Budget::until(deadline), clock) {
            Ok(_) => true,
            Err(e) if e.is_target_absent() => true,
            Err(e) => {
                self.log_maybe_still_in(&e);
                false
            }
        }
    }

    fn log_maybe_still_in(&self, e: &Error) {
        metrics::global().deregistration_failed(&self.label);
        error!(
            target_group = self.label.as_str(), target:% = self.target,
            action = DeregisterTargets::NAME, error_code = e.aws_code(),
            request_id = crate::logging::request_id_of(e);
            "DEREGISTRATION FAILED: target {} may still be in {}: {e}",
            self.target, self.label
        );
    }
}
