//! Startup: wait for the app, pre-register hook, credentials, resolve the
//! groups, register, wait until healthy, post-register hook, ready.

use super::health::{HealthWait, Recovery};
use super::{AppWait, Elb, Lifecycle, Registration, RegistrationState};
use crate::aws::client::Budget;
use crate::aws::elbv2::{DescribeTargetGroups, RegisterTargets, Target, TargetGroup};
use crate::aws::error::Error;
use crate::aws::query::Action;
use crate::clock::Clock;
use crate::config::{Config, GroupRef, GroupSpec};
use crate::hooks::Outcome;
use crate::metrics::{Step, TargetState};
use log::{error, info};

/// The startup stopped short (an event, or a failure): the shutdown comes next.
pub(super) struct Stop;

impl Lifecycle<'_> {
    /// Runs the startup. `Ok` when registered (healthy or not): block now,
    /// polling the health on with the [`Recovery`] if the health wait timed out.
    pub(super) fn start(&mut self) -> Result<Option<Recovery>, Stop> {
        match self.effects.wait_for_app(self.cfg, self.clock) {
            Ok(()) => {}
            Err(AppWait::Interrupted) => return Err(Stop),
            Err(AppWait::TimedOut(why)) => {
                return Err(self.fail(format_args!("the app did not come up: {why}")))
            }
        }
        self.stop_if_event()?;
        if let Some(hook) = &self.cfg.pre_register {
            match self.effects.run_hook(hook, self.clock) {
                Outcome::Success => {}
                Outcome::Interrupted => return Err(Stop),
                other => {
                    return Err(
                        self.fail(format_args!("not registering: {} {other}", hook.describe()))
                    )
                }
            }
        }
        let budget = Budget::until(self.clock.now() + self.cfg.register_timeout);
        if let Err(e) = self.elb.ensure_credentials(budget, self.clock) {
            return Err(self.stop_on("cannot get AWS credentials", e));
        }
        // An event during the fetch: no call but the shutdown's from now on.
        self.stop_if_event()?;
        // Registering again after an app restart: the groups are known.
        if self.registrations.is_empty() {
            self.registrations = match self.resolve(budget) {
                Ok(registrations) => registrations,
                Err(e) => return Err(self.stop_on("cannot resolve target groups", e)),
            };
        }
        self.timed(Step::Register, |l| l.register_all(budget))?;
        self.until_in_service()
    }

    fn stop_if_event(&mut self) -> Result<(), Stop> {
        if self.absorb_events() {
            return Err(Stop);
        }
        Ok(())
    }

    fn fail(&mut self, why: std::fmt::Arguments) -> Stop {
        error!("{why}");
        self.failed = true;
        Stop
    }

    fn register_all(&mut self, budget: Budget) -> Result<(), Stop> {
        for i in 0..self.registrations.len() {
            self.stop_if_event()?;
            let r = &mut self.registrations[i];
            if let Err(e) = r.register(self.elb, self.clock, budget) {
                let mut what = format!("cannot register in {}", r.label);
                if e.code() == Some("ValidationError") {
                    // A group given by ARN was not described: say what AWS may refuse.
                    let id = &r.target.id;
                    what += &format!(" (is {id} an address of the group's IpAddressType?)");
                }
                return Err(self.stop_on(&what, e));
            }
        }
        Ok(())
    }

    /// With `-wait-in-service`, waits until healthy; then the post-register
    /// hook (also after a timeout or refusal, which leave it not ready).
    fn until_in_service(&mut self) -> Result<Option<Recovery>, Stop> {
        let wait = match self.cfg.wait_in_service {
            true => self.timed(Step::HealthWait, Self::wait_healthy),
            false => HealthWait::Healthy,
        };
        if let HealthWait::Interrupted = wait {
            return Err(Stop);
        }
        let hook_done = match &self.cfg.post_register {
            Some(hook) => self.effects.run_hook(hook, self.clock) != Outcome::Interrupted,
            None => true,
        };
        self.stop_if_event()?;
        match wait {
            HealthWait::TimedOut(recovery) => Ok(Some(recovery)),
            HealthWait::Refused => Ok(None),
            HealthWait::Healthy if hook_done => {
                self.status.set_ready(true);
                Ok(None)
            }
            _ => Err(Stop),
        }
    }

    /// Logs a startup failure (an interruption is no failure: an event came).
    fn stop_on(&mut self, what: &str, e: Error) -> Stop {
        if e == Error::Interrupted {
            return Stop;
        }
        let request_id = crate::logging::request_id_of(&e);
        error!(error_code = e.aws_code(), request_id; "{what}: {e}");
        self.failed = true;
        self.absorb_events();
        Stop
    }

    /// The groups given by name are looked up with one DescribeTargetGroups.
    fn resolve(&mut self, budget: Budget) -> Result<Vec<Registration>, Error> {
        let mut names: Vec<String> = (self.cfg.groups.iter())
            .filter_map(|g| match &g.group {
                GroupRef::Name(n) => Some(n.clone()),
                GroupRef::Arn(_) => None,
            })
            .collect();
        names.sort();
        names.dedup();
        let mut found = Vec::new();
        if !names.is_empty() {
            let got = self.elb.describe_groups(&names, budget, self.clock)?;
            let request_id = got.request_id.as_deref();
            info!(
                action = DescribeTargetGroups::NAME, request_id;
                "resolved {} target group(s) by name (request id {})",
                got.value.len(),
                request_id.unwrap_or("-")
            );
            found = got.value;
        }
        let cfg = self.cfg;
        (cfg.groups.iter())
            .map(|spec| registration(cfg, spec, &found))
            .collect()
    }
}

fn registration(
    cfg: &Config,
    spec: &GroupSpec,
    found: &[TargetGroup],
) -> Result<Registration, Error> {
    let (label, arn, pace) = match &spec.group {
        // Not described: a family mismatch comes back as a ValidationError.
        GroupRef::Arn(arn) => (arn.clone(), arn.clone(), None),
        GroupRef::Name(name) => {
            let group = found.iter().find(|g| &g.name == name).ok_or_else(|| {
                Error::Config(format!(
                    "target group {name:?} was not in the DescribeTargetGroups answer"
                ))
            })?;
            check_group(group, &cfg.target_id)?;
            (name.clone(), group.arn.clone(), group.health_pace())
        }
    };
    let group_port = found.iter().find(|g| g.arn == arn).and_then(|g| g.port);
    let target = Target {
        id: cfg.target_id.clone(),
        port: spec.port.or(cfg.target_port),
        availability_zone: cfg.availability_zone.clone(),
    };
    Ok(Registration {
        label,
        arn,
        target,
        group_port,
        state: RegistrationState::NotSent,
        pace,
        registered_at: None,
        lost_attempt: false,
    })
}

/// Refuses a group that does not take IP targets of the target's family.
fn check_group(group: &TargetGroup, target_id: &str) -> Result<(), Error> {
    let name = &group.name;
    if let Some(tt) = group.target_type.as_deref().filter(|&t| t != "ip") {
        return Err(Error::Config(format!(
            "target group {name} has target type {tt}; this sidecar registers pod IPs in ip target groups"
        )));
    }
    let Ok(ip) = target_id.parse::<std::net::IpAddr>() else {
        return Ok(());
    };
    let (ours, theirs) = if ip.is_ipv6() {
        ("IPv6", "IPv4")
    } else {
        ("IPv4", "IPv6")
    };
    match group.ip_address_type.as_deref() {
        Some(t) if t == theirs.to_lowercase() => Err(Error::Config(format!(
            "target group {name} takes {theirs} targets (IpAddressType {t}) but the target {target_id} is an {ours} \
             address: register in an {} target group, or set -target-id to the pod's {theirs} address",
            ours.to_lowercase()
        ))),
        _ => Ok(()),
    }
}

impl Registration {
    fn register(
        &mut self,
        elb: &mut dyn Elb,
        clock: &mut dyn Clock,
        budget: Budget,
    ) -> Result<(), Error> {
        self.state = RegistrationState::Sent;
        let result = elb.register(&self.arn, &self.targets(), budget, clock);
        self.lost_attempt = elb.unanswered_attempts() > 0;
        match result {
            Ok(id) => {
                let request_id = id.as_deref();
                info!(
                    target_group = self.label.as_str(), target:% = self.target,
                    action = RegisterTargets::NAME, request_id, state = "registered";
                    "registered target {} in {} (request id {})",
                    self.target, self.label, request_id.unwrap_or("-")
                );
                self.state = RegistrationState::Registered;
                self.registered_at = Some(clock.now());
                self.seen(TargetState::Registered);
                Ok(())
            }
            Err(e) => {
                // Anything but a final answer leaves it Sent: it may land.
                if e.is_refusal() {
                    self.state = RegistrationState::Refused;
                }
                Err(e)
            }
        }
    }
}
