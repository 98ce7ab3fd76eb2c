//! Shutdown: deregister, wait for draining, the post-deregister hook, the
//! answers to drain requests and the exit code.

use super::health::Watch;
use super::{Elb, Lifecycle, Registration, RegistrationState, APP_POLL_AFTER_DRAIN};
use super::{EXIT_FAILURE, EXIT_OK};
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
/// Longest pause between two draining polls (doubling from the health poll interval).
const MAX_DRAIN_POLL: Duration = Duration::from_secs(15);
const FAILED: &str = "deregistration failed; see the sidecar's log";

/// The longest a shutdown takes, from the signal (or `/drain`) to its
/// outcome, summed as in docs/kubernetes.md's "Shutdown budget" table.
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

/// How one DeregisterTargets ended (`Deregistered`: the target drains now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    Deregistered,
    NotThere,
    Failed,
}

impl Lifecycle<'_> {
    /// The shutdown and the exit code; after a drain request alone, keeps
    /// running until a signal, or returns `None` to register again.
    pub(super) fn finish(&mut self) -> Option<i32> {
        self.absorb_events();
        let mut out = self.shutdown();
        if !self.signalled && !self.failed {
            if self.wait_signal_after_drain(out) {
                return None;
            }
            if !out {
                out = self.shutdown();
            }
        }
        // Drain requests that came after the last look (or are still on
        // their way: the listener answers those from `status`) get the last word.
        let last_word = out.then(|| "deregistered".into()).ok_or(FAILED.into());
        self.status.set_outcome(last_word.clone());
        while let Some(ev) = self.clock.take_event() {
            if let Event::Drain(tx) = ev {
                let _ = tx.send(last_word.clone());
            }
        }
        if !out {
            error!("exiting with failure: a target may still be registered");
        } else if self.failed {
            error!("exiting with failure");
        } else {
            info!("exiting: every target is out");
            return Some(EXIT_OK);
        }
        Some(EXIT_FAILURE)
    }

    /// After a drain request, answers further ones until a signal (false).
    /// A container restart also runs the app's preStop (a drain) with no
    /// signal to follow: with an app check, true once it failed and passed again.
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

    /// Deregisters, drains, runs the hook, answers the drain requests;
    /// returns whether every target is out.
    fn shutdown(&mut self) -> bool {
        self.clock.set_shielded(true);
        self.status.begin_drain();
        self.status.set_ready(false);
        self.absorb_events();
        let deadline = self.clock.now() + self.cfg.deregister_timeout;
        let (all_out, deregistered) = self.timed(Step::Deregister, |l| l.deregister_all(deadline));
        let deregistered_at = self.clock.now();
        let cfg = self.cfg;
        let (drained, quiet) =
            if deregistered.is_empty() || !cfg.wait_drained && cfg.drain_quiet_period.is_none() {
                (true, true)
            } else {
                self.timed(Step::Drain, |l| {
                    let drained = !cfg.wait_drained || l.wait_drained(&deregistered);
                    (drained, l.wait_quiet(deregistered_at))
                })
            };
        self.absorb_events();
        if let Some(hook) = &cfg.post_deregister {
            self.effects.run_hook(hook, self.clock);
        }
        self.absorb_events();
        let result: DrainResult = match (all_out, drained, quiet) {
            (false, _, _) => Err(FAILED.into()),
            (true, false, _) => {
                Err("deregistered, but draining did not finish within -wait-drained-timeout".into())
            }
            (true, true, false) => Err(
                "deregistered, but new connections kept arriving until -wait-drained-timeout"
                    .into(),
            ),
            _ if cfg.wait_drained => Ok("deregistered and drained".into()),
            _ => Ok("deregistered".into()),
        };
        for tx in self.drain_waiters.drain(..) {
            let _ = tx.send(result.clone());
        }
        all_out
    }

    /// Returns whether all are out now, and which were deregistered (they drain).
    fn deregister_all(&mut self, deadline: Instant) -> (bool, Vec<usize>) {
        let mut all_out = true;
        let mut deregistered = Vec::new();
        for (i, r) in self.registrations.iter_mut().enumerate() {
            if !r.state.may_be_registered() {
                continue;
            }
            match r.deregister(self.elb, self.clock, deadline) {
                Removal::Deregistered => deregistered.push(i),
                Removal::NotThere => {}
                Removal::Failed => all_out = false,
            }
        }
        (all_out, deregistered)
    }

    /// Polls the deregistered targets, the pause doubling from the health
    /// poll interval, until none is draining; false at the timeout.
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
                for w in watches.iter().filter(|w| !w.done) {
                    let (r, last) = (&self.registrations[w.index], w.last.as_deref());
                    warn!(
                        target_group = r.label.as_str(), target:% = r.target, state = last;
                        "target {} in {} still {} at -wait-drained-timeout",
                        r.target, r.label, last.unwrap_or("draining")
                    );
                }
                return false;
            }
            let pause = jittered(self.elb.widen(interval), self.clock.random());
            interval = (interval * 2).min(MAX_DRAIN_POLL.max(self.cfg.health_poll_interval));
            let _ = self.clock.sleep(pause.min(deadline - now));
            for watch in watches.iter_mut().filter(|w| !w.done) {
                self.poll_drained(watch, deadline);
            }
        }
        true
    }

    /// Only "not registered" is drained: an eventually consistent answer may
    /// still say healthy, and an `unused` target may be in.
    fn poll_drained(&mut self, watch: &mut Watch, deadline: Instant) {
        let r = &self.registrations[watch.index];
        let (target, label) = (&r.target, r.label.as_str());
        let state = match r.poll_health(self.elb, self.clock, deadline) {
            Ok(Some(health)) if !health.is_gone() => return watch.log(r, &health),
            Ok(seen) => seen.map_or_else(|| "gone".into(), |h| h.to_string()),
            Err(e) if e.is_target_absent() => "gone".into(),
            Err(e) => {
                return warn!(
                    target_group = label, target:% = target,
                    action = DescribeTargetHealth::NAME, error_code = e.aws_code(),
                    request_id = e.request_id();
                    "draining check of {label} failed: {e}"
                )
            }
        };
        info!(
            target_group = label, target:% = target, state = state.as_str();
            "target {target} in {label} drained ({state})"
        );
        r.seen(TargetState::Out);
        watch.done = true;
    }
}

impl Registration {
    /// The state becomes `Out` unless the target may still be in.
    fn deregister(
        &mut self,
        elb: &mut dyn Elb,
        clock: &mut dyn Clock,
        deadline: Instant,
    ) -> Removal {
        let action = DeregisterTargets::NAME;
        info!(
            target_group = self.label.as_str(), target:% = self.target, action;
            "deregistering target {} from {}", self.target, self.label
        );
        let removal =
            match elb.deregister(&self.arn, &self.targets(), Budget::until(deadline), clock) {
                Ok(id) => {
                    info!(
                        target_group = self.label.as_str(), target:% = self.target, action,
                        request_id = id.as_deref(), state = "deregistered";
                        "deregistered target {} from {} (request id {})",
                        self.target, self.label, id.as_deref().unwrap_or("-")
                    );
                    Removal::Deregistered
                }
                // Not (or no longer) registered, or the group is gone.
                Err(e) if e.is_target_absent() => {
                    info!(
                        target_group = self.label.as_str(), target:% = self.target, action,
                        error_code = e.aws_code(), request_id = e.request_id();
                        "target {} is not registered in {}: {e}", self.target, self.label
                    );
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
        // Neither answer tells whether an unanswered registration landed since.
        if self.may_land_late() && !self.confirm_not_registered(elb, clock, deadline) {
            return Removal::Failed;
        }
        self.state = RegistrationState::Out;
        self.seen(match removal {
            Removal::Deregistered => TargetState::Draining,
            _ => TargetState::Out,
        });
        removal
    }

    /// After a RegisterTargets that never answered: AWS answers
    /// DeregisterTargets of an absent target with success, so look again a
    /// moment later and deregister once more unless it shows `draining` or
    /// not registered (`unused` is in), or the look failed. Whether it is out.
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
            Ok(_) => return true,
            Err(e) if e.is_target_absent() => return true,
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
            request_id = e.request_id();
            "DEREGISTRATION FAILED: target {} may still be in {}: {e}",
            self.target, self.label
        );
    }
}
