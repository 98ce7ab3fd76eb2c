//! Shutdown: deregister, wait for draining, the post-deregister hook, the
//! answers to drain requests and the exit code.

use super::{Lifecycle, Registration, RegistrationState, Transport};
use super::{EXIT_FAILURE, EXIT_OK};
use crate::aws::client::{Budget, MIN_CALL_TIMEOUT};
use crate::aws::elbv2::{DeregisterTargets, DescribeTargetHealth};
use crate::aws::error::Error;
use crate::aws::query::{Action, CALL_TIMEOUT};
use crate::aws::retry::jittered;
use crate::config::Config;
use crate::hooks::command::KILL_GRACE;
use crate::metrics;
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
    let drains = cfg.wait_drained || cfg.drain_quiet_period.is_some();
    let drain = per_group(MIN_CALL_TIMEOUT).saturating_add(cfg.wait_drained_timeout);
    let drain = if drains { drain } else { Duration::ZERO };
    let hook = cfg.hook("post-deregister");
    let hook = hook.map_or(Duration::ZERO, |h| h.timeout.saturating_add(KILL_GRACE));
    [cfg.deregister_timeout, past_deadline, drain, hook]
        .into_iter()
        .fold(in_flight, Duration::saturating_add)
}

impl<T: Transport> Lifecycle<'_, T> {
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
        let poll = self.cfg.has_app_check().then_some(Duration::from_secs(1));
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
                    let failed = "deregistration failed earlier; retrying on SIGTERM";
                    let answer = out.then(|| "already deregistered".into());
                    let _ = tx.send(answer.ok_or_else(|| failed.into()));
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
        let (all_out, deregistered) = self.timed("deregister", |l| l.deregister_all(deadline));
        let deregistered_at = self.clock.now();
        let cfg = self.cfg;
        let (drained, quiet) =
            if deregistered.is_empty() || !cfg.wait_drained && cfg.drain_quiet_period.is_none() {
                (true, true)
            } else {
                self.timed("drain", |l| {
                    let drained = !cfg.wait_drained || l.wait_drained(deregistered);
                    (drained, l.wait_quiet(deregistered_at))
                })
            };
        self.absorb_events();
        if let Some(hook) = cfg.hook("post-deregister") {
            self.effects.run_hook(hook, self.clock);
        }
        self.absorb_events();
        let late = |what| format!("deregistered, but {what} -wait-drained-timeout");
        let result: DrainResult = match (all_out, drained, quiet) {
            (false, ..) => Err(FAILED.into()),
            (_, false, _) => Err(late("draining did not finish within")),
            (_, _, false) => Err(late("new connections kept arriving until")),
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
        for i in 0..self.registrations.len() {
            if self.registrations[i].state == RegistrationState::Out {
                continue;
            }
            match self.deregister(i, deadline) {
                Some(true) => deregistered.push(i),
                Some(false) => {}
                None => all_out = false,
            }
        }
        (all_out, deregistered)
    }

    /// Polls the deregistered targets, the pause doubling from the health
    /// poll interval, until none is draining; false at the timeout.
    fn wait_drained(&mut self, mut pending: Vec<usize>) -> bool {
        let deadline = self.clock.now() + self.cfg.wait_drained_timeout;
        let mut interval = self.cfg.health_poll_interval;
        info!(
            "waiting up to {} for draining to finish",
            humantime::format_duration(self.cfg.wait_drained_timeout)
        );
        while !pending.is_empty() {
            let now = self.clock.now();
            if now >= deadline {
                for &i in &pending {
                    let r = &self.registrations[i];
                    let last = r.last.as_deref();
                    warn!(
                        target_group = r.label.as_str(), target:% = r.target, state = last;
                        "target {} in {} still {} at -wait-drained-timeout",
                        r.target, r.label, last.unwrap_or("draining")
                    );
                }
                return false;
            }
            let pause = jittered(self.widen(interval), self.clock.random());
            interval = (interval * 2).min(MAX_DRAIN_POLL.max(self.cfg.health_poll_interval));
            let _ = self.clock.sleep(pause.min(deadline - now));
            pending.retain(|&i| !self.poll_drained(i, deadline));
        }
        true
    }

    /// Whether registration `i` is drained. Only "not registered" is: an
    /// eventually consistent answer may still say healthy, and an `unused` target may be in.
    fn poll_drained(&mut self, i: usize, deadline: Instant) -> bool {
        let answer = self.poll_health(i, deadline);
        let r = &mut self.registrations[i];
        let state = match answer {
            Ok(Some(health)) if !health.is_gone() => {
                r.log_health(&health);
                return false;
            }
            Ok(seen) => seen.map_or_else(|| "gone".into(), |h| h.to_string()),
            Err(e) if e.is_target_absent() => "gone".into(),
            Err(e) => {
                warn!(
                    target_group = r.label.as_str(), target:% = r.target,
                    action = DescribeTargetHealth::NAME, error_code = e.aws_code(),
                    request_id = e.request_id();
                    "draining check of {} failed: {e}", r.label
                );
                return false;
            }
        };
        info!(
            target_group = r.label.as_str(), target:% = r.target, state = state.as_str();
            "target {} in {} drained ({state})", r.target, r.label
        );
        r.seen("out");
        true
    }

    /// Whether registration `i` drains now (`None`: it may still be in); its
    /// state becomes `Out` unless the target may still be in.
    fn deregister(&mut self, i: usize, deadline: Instant) -> Option<bool> {
        let answer = self.send_deregister(i, deadline);
        let r = &mut self.registrations[i];
        let action = DeregisterTargets::NAME;
        let drains = match answer {
            Ok(id) => {
                r.last = None;
                info!(
                    target_group = r.label.as_str(), target:% = r.target, action,
                    request_id = id.as_deref(), state = "deregistered";
                    "deregistered target {} from {} (request id {})",
                    r.target, r.label, id.as_deref().unwrap_or("-")
                );
                true
            }
            // Not (or no longer) registered, or the group is gone.
            Err(e) if e.is_target_absent() => {
                info!(
                    target_group = r.label.as_str(), target:% = r.target, action,
                    error_code = e.aws_code(), request_id = e.request_id();
                    "target {} is not registered in {}: {e}", r.target, r.label
                );
                false
            }
            // Refused, and no attempt of it lost: this was a precaution.
            Err(e) if r.state == RegistrationState::Refused => {
                warn!(
                    "target {} was refused by {}, so it is most likely not registered; \
                     the precautionary deregistration failed too: {e}",
                    r.target, r.label
                );
                false
            }
            Err(e) => return r.maybe_still_in(&e),
        };
        // Neither answer tells whether an unanswered registration landed since.
        let may_land = self.registrations[i].state == RegistrationState::Sent;
        if may_land && self.landed_late(i, deadline) {
            match self.send_deregister(i, deadline) {
                Err(e) if !e.is_target_absent() => return self.registrations[i].maybe_still_in(&e),
                _ => {}
            }
        }
        let r = &mut self.registrations[i];
        r.state = RegistrationState::Out;
        r.seen(match drains {
            true => "draining",
            false => "out",
        });
        Some(drains)
    }

    /// One DeregisterTargets of registration `i`; the request id.
    fn send_deregister(&mut self, i: usize, deadline: Instant) -> Result<Option<String>, Error> {
        let r = &self.registrations[i];
        let action = DeregisterTargets {
            arn: &r.arn,
            targets: std::slice::from_ref(&r.target),
        };
        let budget = Budget::until(deadline);
        Ok(self.elb.call(&action, budget, self.clock)?.request_id)
    }

    /// After a RegisterTargets that never answered: AWS answers
    /// DeregisterTargets of an absent target with success, so look again a
    /// moment later: whether to deregister once more (unless it shows
    /// `draining` or not registered; `unused` is in, and so is a failed look).
    fn landed_late(&mut self, i: usize, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(self.clock.now());
        let _ = self.clock.sleep(CONFIRM_DELAY.min(left));
        let answer = self.poll_health(i, deadline);
        let r = &self.registrations[i];
        match answer {
            Ok(Some(health)) if !health.is_gone() && !health.is_draining() => warn!(
                "the registration of {} in {} landed late; deregistering again",
                r.target, r.label
            ),
            Ok(_) => return false,
            Err(e) if e.is_target_absent() => return false,
            Err(e) => warn!(
                "cannot confirm that {} is out of {}: {e}; deregistering again in case it landed",
                r.target, r.label
            ),
        }
        true
    }
}

impl Registration {
    fn maybe_still_in(&self, e: &Error) -> Option<bool> {
        metrics::global().deregistration_failed(&self.label);
        error!(
            target_group = self.label.as_str(), target:% = self.target,
            action = DeregisterTargets::NAME, error_code = e.aws_code(),
            request_id = e.request_id();
            "DEREGISTRATION FAILED: target {} may still be in {}: {e}",
            self.target, self.label
        );
        None
    }
}
