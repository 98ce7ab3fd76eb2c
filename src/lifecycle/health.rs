//! Polling DescribeTargetHealth: the wait until every target is healthy,
//! and the one poll ([`Registration::poll_health`]) and state-change log
//! ([`Watch`]) that the drain wait and the late-landing check share.

use super::{Elb, Lifecycle, Registration};
use crate::aws::client::Budget;
use crate::aws::elbv2::{find_health, State, TargetHealth};
use crate::aws::error::{is_retryable, Error};
use crate::aws::retry::jittered;
use crate::clock::Clock;
use log::{error, info, warn};
use std::time::Instant;

/// Attempts per DescribeTargetHealth poll (the next poll comes anyway).
const HEALTH_POLL_ATTEMPTS: u32 = 3;

/// How the health wait ended.
pub(super) enum HealthWait {
    /// Every target is healthy.
    Healthy,
    /// The timeout passed, or AWS refused to tell: the targets stay
    /// registered, not ready.
    NotHealthy,
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
    }

    /// The state last logged.
    pub(super) fn last(&self) -> Option<&str> {
        self.last.as_deref()
    }
}

impl Lifecycle<'_> {
    /// Polls at the health poll interval until every target is healthy,
    /// `-wait-in-service-timeout` passes, or an event arrives.
    pub(super) fn wait_healthy(&mut self) -> HealthWait {
        let deadline = self.clock.now() + self.cfg.wait_in_service_timeout;
        let mut watches: Vec<Watch> = (0..self.registrations.len()).map(Watch::new).collect();
        loop {
            let pause = jittered(self.cfg.health_poll_interval, self.clock.random());
            let now = self.clock.now();
            if now >= deadline {
                break;
            }
            if self.clock.sleep(pause.min(deadline - now)).is_err() {
                return HealthWait::Interrupted;
            }
            if let Some(end) = self.poll_until_healthy(&mut watches, deadline) {
                return end;
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
        HealthWait::NotHealthy
    }

    /// Polls each target not yet healthy once; `Some` when the wait must
    /// end now.
    fn poll_until_healthy(
        &mut self,
        watches: &mut [Watch],
        deadline: Instant,
    ) -> Option<HealthWait> {
        for watch in watches.iter_mut().filter(|w| !w.done) {
            let registration = &self.registrations[watch.index];
            match registration.poll_health(self.elb, self.clock, deadline) {
                Ok(Some(health)) => {
                    watch.log(registration, &health);
                    watch.done = health.state == State::Healthy;
                }
                Ok(None) => warn!(
                    target_group = registration.label.as_str(), target:% = registration.target,
                    action = "DescribeTargetHealth";
                    "DescribeTargetHealth did not report {} in {}",
                    registration.target, registration.label
                ),
                Err(Error::Interrupted) => return Some(HealthWait::Interrupted),
                Err(e) if !is_retryable(&e) && e.aws_code().is_some() => {
                    error!(
                        target_group = registration.label.as_str(), target:% = registration.target,
                        action = "DescribeTargetHealth", error_code = e.aws_code(),
                        request_id = crate::logging::request_id_of(&e);
                        "cannot check target health: {e}; the target stays registered"
                    );
                    return Some(HealthWait::NotHealthy);
                }
                Err(e) => warn!(
                    target_group = registration.label.as_str(), target:% = registration.target,
                    action = "DescribeTargetHealth", error_code = e.aws_code(),
                    request_id = crate::logging::request_id_of(&e);
                    "health check of {} failed: {e}", registration.label
                ),
            }
        }
        None
    }

    fn log_not_healthy(&self, watches: &[Watch]) {
        for watch in watches.iter().filter(|w| !w.done) {
            let registration = &self.registrations[watch.index];
            warn!(
                target_group = registration.label.as_str(), target:% = registration.target,
                state = watch.last();
                "target {} in {} not healthy after {}: last state {}; it stays registered",
                registration.target,
                registration.label,
                humantime::format_duration(self.cfg.wait_in_service_timeout),
                watch.last().unwrap_or("unknown")
            );
        }
    }
}
