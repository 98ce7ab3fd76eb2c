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
//! The invariant: once an event (SIGTERM, SIGINT, `/drain`) has arrived
//! and the API can be reached, the process never ends with a target
//! registered. Every target group is marked *maybe registered* before its
//! RegisterTargets is sent; an event cannot interrupt a request on the wire
//! (it only cuts backoff sleeps and polling waits short), so the
//! deregistration is always sent after any RegisterTargets that may have
//! landed. From the first event on, the driver is shielded: a second
//! signal is logged and does not skip the deregistration.
//!
//! Everything with effects is behind three traits ([`Elb`], [`Effects`],
//! [`Driver`]), so the transitions are unit-tested with fakes and a fake
//! clock, without sleeping.

use crate::aws::client::{Budget, Client, WithId};
use crate::aws::elbv2::{find_health, State, Target, TargetGroup, TargetHealth};
use crate::aws::error::Error;
use crate::aws::http::Transport;
use crate::aws::retry::{jittered, Timer};
use crate::command::Outcome;
use crate::config::{Config, GroupRef, Hook};
use crate::signals::{signal_name, DrainResult, Driver, Event};
use crate::status::Status;
use log::{error, info, warn};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant, SystemTime};

/// Exit code: the target is out (or was never put in).
pub const EXIT_OK: i32 = 0;
/// Exit code: a runtime failure (registration refused, hook failed, deregistration failed).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: bad usage or configuration.
pub const EXIT_USAGE: i32 = 2;

/// Attempts per DescribeTargetHealth poll (the next poll comes anyway).
const HEALTH_POLL_ATTEMPTS: u32 = 3;
/// How long a background credentials refresh may take.
const REFRESH_WINDOW: Duration = Duration::from_secs(30);
/// Retry a failed background refresh after this long.
const REFRESH_RETRY: Duration = Duration::from_secs(60);
/// Pause before checking whether an unanswered registration landed late.
const CONFIRM_DELAY: Duration = Duration::from_secs(1);
/// Longest pause between two draining polls (they start at the health poll
/// interval and double: draining lasts minutes, and the API's rate limit is
/// shared by every pod of the account).
const MAX_DRAIN_POLL: Duration = Duration::from_secs(15);
/// Least time between two background refreshes.
const MIN_REFRESH_GAP: Duration = Duration::from_secs(60);

/// The ELBv2 operations the lifecycle needs.
pub trait Elb {
    /// Fetches credentials now if needed.
    ///
    /// # Errors
    /// The fetch error.
    fn ensure_credentials(&mut self, budget: Budget, timer: &mut dyn Timer) -> Result<(), Error>;
    /// When cached credentials should be refreshed ahead of need.
    fn refresh_due(&self) -> Option<SystemTime>;
    /// Fetches new credentials now, keeping the old ones if that fails.
    ///
    /// # Errors
    /// The fetch error.
    fn refresh_credentials(&mut self, budget: Budget, timer: &mut dyn Timer) -> Result<(), Error>;
    /// DescribeTargetGroups by names.
    ///
    /// # Errors
    /// The AWS or transport error.
    fn describe_groups(
        &mut self,
        names: &[String],
        budget: Budget,
        timer: &mut dyn Timer,
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
        timer: &mut dyn Timer,
    ) -> Result<Option<String>, Error>;
    /// DeregisterTargets.
    ///
    /// # Errors
    /// The AWS or transport error.
    fn deregister(
        &mut self,
        arn: &str,
        targets: &[Target],
        budget: Budget,
        timer: &mut dyn Timer,
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
        timer: &mut dyn Timer,
    ) -> Result<WithId<Vec<TargetHealth>>, Error>;
}

impl<T: Transport> Elb for Client<T> {
    fn ensure_credentials(&mut self, budget: Budget, timer: &mut dyn Timer) -> Result<(), Error> {
        Client::ensure_credentials(self, budget, timer)
    }
    fn refresh_due(&self) -> Option<SystemTime> {
        Client::refresh_due(self)
    }
    fn refresh_credentials(&mut self, budget: Budget, timer: &mut dyn Timer) -> Result<(), Error> {
        Client::refresh_credentials(self, budget, timer)
    }
    fn describe_groups(
        &mut self,
        names: &[String],
        budget: Budget,
        timer: &mut dyn Timer,
    ) -> Result<WithId<Vec<TargetGroup>>, Error> {
        self.describe_target_groups_by_name(names, budget, timer)
    }
    fn register(
        &mut self,
        arn: &str,
        targets: &[Target],
        budget: Budget,
        timer: &mut dyn Timer,
    ) -> Result<Option<String>, Error> {
        self.register_targets(arn, targets, budget, timer)
    }
    fn deregister(
        &mut self,
        arn: &str,
        targets: &[Target],
        budget: Budget,
        timer: &mut dyn Timer,
    ) -> Result<Option<String>, Error> {
        self.deregister_targets(arn, targets, budget, timer)
    }
    fn health(
        &mut self,
        arn: &str,
        targets: &[Target],
        budget: Budget,
        timer: &mut dyn Timer,
    ) -> Result<WithId<Vec<TargetHealth>>, Error> {
        self.describe_target_health(arn, targets, budget, timer)
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

/// The lifecycle's other effects: hooks and waiting for the app.
pub trait Effects {
    /// Runs a hook command.
    fn run_hook(&mut self, hook: &Hook, timer: &mut dyn Timer) -> Outcome;
    /// Waits for `-wait-for-tcp` / `-wait-for-http` (returns at once when neither is set).
    ///
    /// # Errors
    /// [`AppWait`] on interruption or timeout.
    fn wait_for_app(&mut self, cfg: &Config, timer: &mut dyn Timer) -> Result<(), AppWait>;
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
    /// Whether a RegisterTargets for it may have reached AWS.
    pub maybe_registered: bool,
    /// AWS refused its RegisterTargets with a final error (AccessDenied,
    /// ValidationError...): most likely not registered, but an earlier
    /// attempt of the same call may have landed, so it is still cleaned up.
    pub refused: bool,
    /// Its RegisterTargets ended without an answer (timeout, reset,
    /// interruption): AWS may still apply it after our deregistration.
    pub uncertain: bool,
}

impl Registration {
    fn targets(&self) -> Vec<Target> {
        vec![self.target.clone()]
    }
}

/// How the startup ended.
enum Startup {
    /// Registered (healthy or not); block now.
    Running,
    /// An event arrived: go to shutdown.
    Event,
    /// A failure after which nothing more can be done but clean up.
    Failed,
}

/// The lifecycle's state and collaborators.
pub struct Lifecycle<'a> {
    cfg: &'a Config,
    elb: &'a mut dyn Elb,
    fx: &'a mut dyn Effects,
    drv: &'a mut dyn Driver,
    status: &'a Status,
    regs: Vec<Registration>,
    drain_waiters: Vec<Sender<DrainResult>>,
    signalled: bool,
    failed: bool,
}

impl<'a> Lifecycle<'a> {
    /// A lifecycle for `cfg` over its collaborators.
    pub fn new(
        cfg: &'a Config,
        elb: &'a mut dyn Elb,
        fx: &'a mut dyn Effects,
        drv: &'a mut dyn Driver,
        status: &'a Status,
    ) -> Self {
        Lifecycle {
            cfg,
            elb,
            fx,
            drv,
            status,
            regs: Vec::new(),
            drain_waiters: Vec::new(),
            signalled: false,
            failed: false,
        }
    }

    /// Runs the whole lifecycle and returns the exit code.
    pub fn run(&mut self) -> i32 {
        match self.start() {
            Startup::Running => {
                self.block();
            }
            Startup::Event | Startup::Failed => {}
        }
        self.finish()
    }

    /// Takes queued events: signals set the flag, drain requests are kept
    /// for their answer. Returns whether any event was taken.
    fn absorb_events(&mut self) -> bool {
        let mut any = false;
        while let Some(ev) = self.drv.take_event() {
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

    fn start(&mut self) -> Startup {
        let cfg = self.cfg;
        if let Err(e) = self.fx.wait_for_app(cfg, self.drv) {
            return match e {
                AppWait::Interrupted => Startup::Event,
                AppWait::TimedOut(why) => {
                    error!("the app did not come up: {why}");
                    self.failed = true;
                    Startup::Failed
                }
            };
        }
        if self.absorb_events() {
            return Startup::Event;
        }
        if let Some(hook) = &cfg.pre_register {
            match self.fx.run_hook(hook, self.drv) {
                Outcome::Success => {}
                Outcome::Interrupted => return Startup::Event,
                other => {
                    error!("not registering: pre-register command {other}");
                    self.failed = true;
                    return Startup::Failed;
                }
            }
        }
        let register_deadline = self.drv.now() + cfg.register_timeout;
        let budget = Budget::until(register_deadline);
        if let Err(e) = self.elb.ensure_credentials(budget, self.drv) {
            return self.startup_error("cannot get AWS credentials", e);
        }
        match self.resolve(budget) {
            Ok(regs) => self.regs = regs,
            Err(e) => return self.startup_error("cannot resolve target groups", e),
        }
        for i in 0..self.regs.len() {
            if self.absorb_events() {
                return Startup::Event;
            }
            self.regs[i].maybe_registered = true;
            let (arn, targets) = (self.regs[i].arn.clone(), self.regs[i].targets());
            match self.elb.register(&arn, &targets, budget, self.drv) {
                Ok(id) => info!(
                    "registered target {} in {} (request id {})",
                    self.regs[i].target,
                    self.regs[i].label,
                    id.as_deref().unwrap_or("-")
                ),
                Err(e) => {
                    let refused =
                        matches!(e, Error::Aws { .. }) && !crate::aws::error::is_retryable(&e);
                    self.regs[i].refused = refused;
                    self.regs[i].uncertain = !refused;
                    return self
                        .startup_error(&format!("cannot register in {}", self.regs[i].label), e);
                }
            }
        }
        if cfg.wait_in_service {
            match self.wait_healthy() {
                Ok(true) => {}
                Ok(false) => {
                    // Timed out: keep the target registered, stay not ready.
                    self.post_register();
                    return if self.absorb_events() {
                        Startup::Event
                    } else {
                        Startup::Running
                    };
                }
                Err(()) => return Startup::Event,
            }
        }
        if !self.post_register() {
            return Startup::Event;
        }
        if self.absorb_events() {
            return Startup::Event;
        }
        self.status.set_ready(true);
        Startup::Running
    }

    /// Runs the post-register hook; false when an event interrupted it.
    fn post_register(&mut self) -> bool {
        if let Some(hook) = &self.cfg.post_register {
            if self.fx.run_hook(hook, self.drv) == Outcome::Interrupted {
                return false;
            }
        }
        true
    }

    fn startup_error(&mut self, what: &str, e: Error) -> Startup {
        if e == Error::Interrupted {
            return Startup::Event;
        }
        error!("{what}: {e}");
        self.failed = true;
        self.absorb_events();
        Startup::Failed
    }

    fn resolve(&mut self, budget: Budget) -> Result<Vec<Registration>, Error> {
        let cfg = self.cfg;
        let names: Vec<String> = cfg
            .groups
            .iter()
            .filter_map(|g| match &g.group {
                GroupRef::Name(n) => Some(n.clone()),
                GroupRef::Arn(_) => None,
            })
            .collect();
        let mut found: Vec<TargetGroup> = Vec::new();
        if !names.is_empty() {
            let mut unique = names.clone();
            unique.sort();
            unique.dedup();
            let got = self.elb.describe_groups(&unique, budget, self.drv)?;
            info!(
                "resolved {} target group(s) by name (request id {})",
                got.value.len(),
                got.request_id.as_deref().unwrap_or("-")
            );
            found = got.value;
        }
        let mut regs = Vec::new();
        for spec in &cfg.groups {
            let (label, arn) = match &spec.group {
                GroupRef::Arn(arn) => (arn.clone(), arn.clone()),
                GroupRef::Name(name) => {
                    let g = found.iter().find(|g| &g.name == name).ok_or_else(|| {
                        Error::Config(format!(
                            "target group {name:?} was not in the DescribeTargetGroups answer"
                        ))
                    })?;
                    if let Some(tt) = g.target_type.as_deref() {
                        if tt != "ip" {
                            return Err(Error::Config(format!(
                                "target group {name} has target type {tt}; this sidecar registers pod IPs in ip target groups"
                            )));
                        }
                    }
                    (name.clone(), g.arn.clone())
                }
            };
            regs.push(Registration {
                label,
                arn,
                target: Target {
                    id: cfg.target_id.clone(),
                    port: spec.port.or(cfg.target_port),
                    availability_zone: cfg.availability_zone.clone(),
                },
                maybe_registered: false,
                refused: false,
                uncertain: false,
            });
        }
        Ok(regs)
    }

    /// Polls until every target is healthy. Ok(true) healthy, Ok(false)
    /// timed out or cannot tell, Err(()) interrupted by an event.
    fn wait_healthy(&mut self) -> Result<bool, ()> {
        let cfg = self.cfg;
        let deadline = self.drv.now() + cfg.wait_in_service_timeout;
        let mut last: Vec<Option<String>> = vec![None; self.regs.len()];
        let mut healthy = vec![false; self.regs.len()];
        loop {
            let pause = jittered(cfg.health_poll_interval, self.drv.random());
            let now = self.drv.now();
            if now >= deadline {
                break;
            }
            if self.drv.sleep(pause.min(deadline - now)).is_err() {
                return Err(());
            }
            for i in 0..self.regs.len() {
                if healthy[i] {
                    continue;
                }
                let budget = Budget {
                    deadline,
                    max_attempts: HEALTH_POLL_ATTEMPTS,
                };
                let (arn, targets) = (self.regs[i].arn.clone(), self.regs[i].targets());
                match self.elb.health(&arn, &targets, budget, self.drv) {
                    Ok(answer) => {
                        let reg = &self.regs[i];
                        let seen = match find_health(&answer.value, &reg.target) {
                            Some(h) => h.clone(),
                            None => {
                                warn!(
                                    "DescribeTargetHealth did not report {} in {}",
                                    reg.target, reg.label
                                );
                                continue;
                            }
                        };
                        let text = seen.to_string();
                        if last[i].as_deref() != Some(&text) {
                            info!("target {} in {} is {text}", reg.target, reg.label);
                            last[i] = Some(text);
                        }
                        healthy[i] = seen.state == State::Healthy;
                    }
                    Err(Error::Interrupted) => return Err(()),
                    Err(e) if !crate::aws::error::is_retryable(&e) && e.aws_code().is_some() => {
                        error!("cannot check target health: {e}; the target stays registered");
                        return Ok(false);
                    }
                    Err(e) => warn!("health check of {} failed: {e}", self.regs[i].label),
                }
            }
            if healthy.iter().all(|h| *h) {
                info!("all targets are healthy");
                return Ok(true);
            }
            if self.absorb_events() {
                return Err(());
            }
        }
        for (i, reg) in self.regs.iter().enumerate() {
            if !healthy[i] {
                warn!(
                    "target {} in {} not healthy after {}: last state {}; it stays registered",
                    reg.target,
                    reg.label,
                    humantime::format_duration(cfg.wait_in_service_timeout),
                    last[i].as_deref().unwrap_or("unknown")
                );
            }
        }
        Ok(false)
    }

    /// Blocks until an event; refreshes temporary credentials ahead of expiry.
    fn block(&mut self) {
        info!("blocking until SIGTERM or SIGINT");
        let mut retry_refresh_at: Option<Instant> = None;
        loop {
            let timeout = match (self.elb.refresh_due(), retry_refresh_at) {
                (_, Some(at)) => Some(at.saturating_duration_since(self.drv.now())),
                // At least a minute apart, whatever the expiry says: never a busy loop.
                (Some(due), None) => Some(
                    due.duration_since(self.drv.wall())
                        .unwrap_or(Duration::ZERO)
                        .max(MIN_REFRESH_GAP),
                ),
                (None, None) => None,
            };
            match self.drv.wait_event(timeout) {
                Some(ev) => {
                    self.absorb(ev);
                    return;
                }
                None => {
                    let budget = Budget {
                        deadline: self.drv.now() + REFRESH_WINDOW,
                        max_attempts: 3,
                    };
                    match self.elb.refresh_credentials(budget, self.drv) {
                        Ok(()) => retry_refresh_at = None,
                        Err(Error::Interrupted) => return,
                        Err(e) => {
                            warn!("background credentials refresh failed: {e}");
                            retry_refresh_at = Some(self.drv.now() + REFRESH_RETRY);
                        }
                    }
                    if self.absorb_events() {
                        return;
                    }
                }
            }
        }
    }

    /// Deregisters, waits for draining, runs the post-deregister hook;
    /// returns whether every target is out.
    fn shutdown(&mut self) -> bool {
        self.drv.set_shielded(true);
        self.status.set_ready(false);
        self.absorb_events();
        let deadline = self.drv.now() + self.cfg.deregister_timeout;
        let mut all_out = true;
        let mut deregistered = Vec::new();
        for i in 0..self.regs.len() {
            if !self.regs[i].maybe_registered {
                continue;
            }
            let (arn, targets) = (self.regs[i].arn.clone(), self.regs[i].targets());
            let reg = &self.regs[i];
            info!("deregistering target {} from {}", reg.target, reg.label);
            match self
                .elb
                .deregister(&arn, &targets, Budget::until(deadline), self.drv)
            {
                Ok(id) => {
                    info!(
                        "deregistered target {} from {} (request id {})",
                        reg.target,
                        reg.label,
                        id.as_deref().unwrap_or("-")
                    );
                    self.regs[i].maybe_registered = false;
                    deregistered.push(i);
                }
                // Not (or no longer) registered, or the group is gone: the target is out.
                Err(e) if matches!(e.aws_code(), Some("InvalidTarget" | "TargetGroupNotFound")) => {
                    info!(
                        "target {} is not registered in {}: {e}",
                        reg.target, reg.label
                    );
                    if reg.uncertain && !self.confirm_not_registered(i, deadline) {
                        all_out = false;
                        continue;
                    }
                    self.regs[i].maybe_registered = false;
                }
                Err(e) if reg.refused => {
                    // Its registration was refused: this was a precaution.
                    warn!(
                        "target {} was refused by {}, so it is most likely not registered; \
                         the precautionary deregistration failed too: {e}",
                        reg.target, reg.label
                    );
                    self.regs[i].maybe_registered = false;
                }
                Err(e) => {
                    error!(
                        "DEREGISTRATION FAILED: target {} may still be in {}: {e}",
                        reg.target, reg.label
                    );
                    all_out = false;
                }
            }
        }
        let mut drained_ok = true;
        if self.cfg.wait_drained && !deregistered.is_empty() {
            drained_ok = self.wait_drained(&deregistered);
        }
        self.absorb_events();
        if let Some(hook) = &self.cfg.post_deregister {
            self.fx.run_hook(hook, self.drv);
        }
        self.absorb_events();
        let result: DrainResult = match (all_out, drained_ok) {
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

    /// After "not registered" for a target whose RegisterTargets never
    /// answered: that registration may land late. Look again after a
    /// moment and deregister once more if it did. Returns whether the
    /// target is out.
    fn confirm_not_registered(&mut self, i: usize, deadline: Instant) -> bool {
        let _ = self.drv.sleep(CONFIRM_DELAY);
        let (arn, targets) = (self.regs[i].arn.clone(), self.regs[i].targets());
        let budget = Budget {
            deadline,
            max_attempts: HEALTH_POLL_ATTEMPTS,
        };
        let registered = match self.elb.health(&arn, &targets, budget, self.drv) {
            Ok(answer) => match find_health(&answer.value, &self.regs[i].target) {
                Some(h) => !h.is_drained() && h.state != State::Draining,
                None => false,
            },
            Err(e) => {
                warn!(
                    "cannot confirm that {} is out of {}: {e}",
                    self.regs[i].target, self.regs[i].label
                );
                false
            }
        };
        if !registered {
            return true;
        }
        warn!(
            "the registration of {} in {} landed late; deregistering again",
            self.regs[i].target, self.regs[i].label
        );
        match self
            .elb
            .deregister(&arn, &targets, Budget::until(deadline), self.drv)
        {
            Ok(_) => true,
            Err(e) if matches!(e.aws_code(), Some("InvalidTarget" | "TargetGroupNotFound")) => true,
            Err(e) => {
                error!(
                    "DEREGISTRATION FAILED: target {} may still be in {}: {e}",
                    self.regs[i].target, self.regs[i].label
                );
                false
            }
        }
    }

    fn wait_drained(&mut self, which: &[usize]) -> bool {
        let deadline = self.drv.now() + self.cfg.wait_drained_timeout;
        let mut pending: Vec<usize> = which.to_vec();
        let mut interval = self.cfg.health_poll_interval;
        let mut last: Vec<Option<String>> = vec![None; self.regs.len()];
        info!(
            "waiting up to {} for draining to finish",
            humantime::format_duration(self.cfg.wait_drained_timeout)
        );
        while !pending.is_empty() {
            let now = self.drv.now();
            if now >= deadline {
                for &i in &pending {
                    warn!(
                        "target {} in {} still {} at -wait-drained-timeout",
                        self.regs[i].target,
                        self.regs[i].label,
                        last[i].as_deref().unwrap_or("draining")
                    );
                }
                return false;
            }
            let pause = jittered(interval, self.drv.random());
            interval = (interval * 2).min(MAX_DRAIN_POLL.max(self.cfg.health_poll_interval));
            let _ = self.drv.sleep(pause.min(deadline - now));
            let mut still = Vec::new();
            for &i in &pending {
                let budget = Budget {
                    deadline,
                    max_attempts: HEALTH_POLL_ATTEMPTS,
                };
                let (arn, targets) = (self.regs[i].arn.clone(), self.regs[i].targets());
                match self.elb.health(&arn, &targets, budget, self.drv) {
                    Ok(answer) => match find_health(&answer.value, &self.regs[i].target) {
                        // Only "unused"/"not registered" is drained: an
                        // eventually consistent answer may still say healthy.
                        Some(h) if !h.is_drained() => {
                            let text = h.to_string();
                            if last[i].as_deref() != Some(&text) {
                                info!(
                                    "target {} in {} is {text}",
                                    self.regs[i].target, self.regs[i].label
                                );
                                last[i] = Some(text);
                            }
                            still.push(i);
                        }
                        other => info!(
                            "target {} in {} drained ({})",
                            self.regs[i].target,
                            self.regs[i].label,
                            other
                                .map(|h| h.to_string())
                                .unwrap_or_else(|| "gone".into())
                        ),
                    },
                    Err(e)
                        if matches!(
                            e.aws_code(),
                            Some("InvalidTarget" | "TargetGroupNotFound")
                        ) =>
                    {
                        info!(
                            "target {} in {} drained (gone)",
                            self.regs[i].target, self.regs[i].label
                        );
                    }
                    Err(e) => {
                        warn!("draining check of {} failed: {e}", self.regs[i].label);
                        still.push(i);
                    }
                }
            }
            pending = still;
        }
        true
    }

    /// Shutdown (when anything may be registered) and the exit code;
    /// after a drain request alone, keeps running until a signal.
    fn finish(&mut self) -> i32 {
        self.absorb_events();
        let mut out = self.shutdown();
        if !self.signalled && !self.failed {
            // Drained by request: keep running (not ready) until a signal.
            info!("drained on request; waiting for SIGTERM");
            self.drv.set_shielded(false);
            loop {
                match self.drv.wait_event(None) {
                    Some(Event::Signal(s)) => {
                        info!("{} after drain", signal_name(s));
                        self.signalled = true;
                        break;
                    }
                    Some(Event::Drain(tx)) => {
                        let _ = tx.send(if out {
                            Ok("already deregistered".into())
                        } else {
                            Err("deregistration failed earlier; retrying on SIGTERM".into())
                        });
                    }
                    None => {}
                }
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
        let last: DrainResult = if out {
            Ok("deregistered".into())
        } else {
            Err("deregistration failed; see the sidecar's log".into())
        };
        self.status.set_outcome(last.clone());
        while let Some(ev) = self.drv.take_event() {
            if let Event::Drain(tx) = ev {
                let _ = tx.send(last.clone());
            }
        }
        if code == EXIT_OK {
            info!("exiting: every target is out");
        } else if !out {
            error!("exiting with failure: a target may still be registered");
        } else {
            error!("exiting with failure");
        }
        code
    }
}

#[cfg(test)]
mod tests;
