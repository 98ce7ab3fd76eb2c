//! Startup: wait for the app, the pre-register hook, credentials, resolve
//! the target groups, register in each, wait until healthy, the
//! post-register hook, ready.

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

/// Why the startup stopped short of running; either way the shutdown
/// comes next.
pub(super) enum Stop {
    /// An event arrived.
    Event,
    /// A failure after which nothing more can be done but clean up.
    Failed,
}

impl Lifecycle<'_> {
    /// Runs the startup. `Ok` when registered (healthy or not): block now,
    /// polling the health on with the [`Recovery`] if the health wait timed out.
    pub(super) fn start(&mut self) -> Result<Option<Recovery>, Stop> {
        self.wait_for_app()?;
        self.pre_register()?;
        let budget = Budget::until(self.clock.now() + self.cfg.register_timeout);
        if let Err(e) = self.elb.ensure_credentials(budget, self.clock) {
            return Err(self.stop_on("cannot get AWS credentials", e));
        }
        // An event during the fetch: no call but the shutdown's from now on.
        if self.absorb_events() {
            return Err(Stop::Event);
        }
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

    fn wait_for_app(&mut self) -> Result<(), Stop> {
        match self.effects.wait_for_app(self.cfg, self.clock) {
            Ok(()) => {}
            Err(AppWait::Interrupted) => return Err(Stop::Event),
            Err(AppWait::TimedOut(why)) => {
                error!("the app did not come up: {why}");
                self.failed = true;
                return Err(Stop::Failed);
            }
        }
        if self.absorb_events() {
            return Err(Stop::Event);
        }
        Ok(())
    }

    fn pre_register(&mut self) -> Result<(), Stop> {
        let Some(hook) = &self.cfg.pre_register else {
            return Ok(());
        };
        match self.effects.run_hook(hook, self.clock) {
            Outcome::Success => Ok(()),
            Outcome::Interrupted => Err(Stop::Event),
            other => {
                error!("not registering: {} {other}", hook.describe());
                self.failed = true;
                Err(Stop::Failed)
            }
        }
    }

    /// Sends RegisterTargets to each group in turn, unless an event came.
    fn register_all(&mut self, budget: Budget) -> Result<(), Stop> {
        for i in 0..self.registrations.len() {
            if self.absorb_events() {
                return Err(Stop::Event);
            }
            let registration = &mut self.registrations[i];
            if let Err(e) = registration.register(self.elb, self.clock, budget) {
                let mut what = format!("cannot register in {}", registration.label);
                if e.is_validation() {
                    // A group given by ARN was not described: say what
                    // AWS may refuse.
                    what.push_str(&format!(
                        " (is {} an address of the group's IpAddressType?)",
                        registration.target.id
                    ));
                }
                return Err(self.stop_on(&what, e));
            }
        }
        Ok(())
    }

    /// With `-wait-in-service`, waits until healthy; then the
    /// post-register hook, and ready unless an event came. After a
    /// health-wait timeout the hook runs too (as it always has), once: the
    /// pod turns ready later, from the blocked state, without running it
    /// again.
    fn until_in_service(&mut self) -> Result<Option<Recovery>, Stop> {
        if self.cfg.wait_in_service {
            let not_healthy = match self.timed(Step::HealthWait, Self::wait_healthy) {
                HealthWait::Healthy => None,
                HealthWait::TimedOut(recovery) => Some(Some(recovery)),
                HealthWait::Refused => Some(None),
                HealthWait::Interrupted => return Err(Stop::Event),
            };
            if let Some(recovery) = not_healthy {
                // Keep the target registered, stay not ready for now.
                self.post_register();
                return if self.absorb_events() {
                    Err(Stop::Event)
                } else {
                    Ok(recovery)
                };
            }
        }
        if !self.post_register() || self.absorb_events() {
            return Err(Stop::Event);
        }
        self.status.set_ready(true);
        Ok(None)
    }

    /// Runs the post-register hook; false when an event interrupted it.
    fn post_register(&mut self) -> bool {
        match &self.cfg.post_register {
            Some(hook) => self.effects.run_hook(hook, self.clock) != Outcome::Interrupted,
            None => true,
        }
    }

    /// Logs a startup failure (an interruption is no failure: an event came).
    fn stop_on(&mut self, what: &str, e: Error) -> Stop {
        if e == Error::Interrupted {
            return Stop::Event;
        }
        error!(
            error_code = e.aws_code(), request_id = crate::logging::request_id_of(&e);
            "{what}: {e}"
        );
        self.failed = true;
        self.absorb_events();
        Stop::Failed
    }

    /// One registration per configured group, groups given by name looked
    /// up with one DescribeTargetGroups.
    fn resolve(&mut self, budget: Budget) -> Result<Vec<Registration>, Error> {
        let found = self.describe_named_groups(budget)?;
        let cfg = self.cfg;
        cfg.groups
            .iter()
            .map(|spec| registration(cfg, spec, &found))
            .collect()
    }

    /// DescribeTargetGroups for the groups given by name (no call when none is).
    fn describe_named_groups(&mut self, budget: Budget) -> Result<Vec<TargetGroup>, Error> {
        let mut names: Vec<String> = self
            .cfg
            .groups
            .iter()
            .filter_map(|g| match &g.group {
                GroupRef::Name(n) => Some(n.clone()),
                GroupRef::Arn(_) => None,
            })
            .collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        names.sort();
        names.dedup();
        let got = self.elb.describe_groups(&names, budget, self.clock)?;
        info!(
            action = DescribeTargetGroups::NAME, request_id = got.request_id.as_deref();
            "resolved {} target group(s) by name (request id {})",
            got.value.len(),
            got.request_id.as_deref().unwrap_or("-")
        );
        Ok(got.value)
    }
}

/// The registration for one configured group; `found` holds the groups
/// DescribeTargetGroups returned.
fn registration(
    cfg: &Config,
    spec: &GroupSpec,
    found: &[TargetGroup],
) -> Result<Registration, Error> {
    let (label, arn, pace) = match &spec.group {
        // No DescribeTargetGroups for a group given by ARN: a family
        // mismatch comes back from RegisterTargets as AWS's ValidationError,
        // and the health wait polls at -health-poll-interval.
        GroupRef::Arn(arn) => (arn.clone(), arn.clone(), None),
        GroupRef::Name(name) => {
            let group = ip_group(name, found)?;
            check_family(group, &cfg.target_id)?;
            (name.clone(), group.arn.clone(), group.health_pace())
        }
    };
    let group_port = found.iter().find(|g| g.arn == arn).and_then(|g| g.port);
    Ok(Registration {
        label,
        arn,
        target: Target {
            id: cfg.target_id.clone(),
            port: spec.port.or(cfg.target_port),
            availability_zone: cfg.availability_zone.clone(),
        },
        group_port,
        state: RegistrationState::NotSent,
        pace,
        registered_at: None,
        lost_attempt: false,
    })
}

/// The group named `name` in `found`, which must take IP targets.
fn ip_group<'a>(name: &str, found: &'a [TargetGroup]) -> Result<&'a TargetGroup, Error> {
    let group = found.iter().find(|g| g.name == name).ok_or_else(|| {
        Error::Config(format!(
            "target group {name:?} was not in the DescribeTargetGroups answer"
        ))
    })?;
    match group.target_type.as_deref() {
        Some(tt) if tt != "ip" => Err(Error::Config(format!(
            "target group {name} has target type {tt}; this sidecar registers pod IPs in ip target groups"
        ))),
        _ => Ok(group),
    }
}

/// Refuses a target whose address family is not the group's
/// `IpAddressType` (an ipv4 group takes IPv4 targets only, an ipv6 group
/// IPv6 ones), before any RegisterTargets.
fn check_family(group: &TargetGroup, target_id: &str) -> Result<(), Error> {
    let Ok(ip) = target_id.parse::<std::net::IpAddr>() else {
        return Ok(());
    };
    let (family, other) = if ip.is_ipv6() {
        ("IPv6", "ipv6")
    } else {
        ("IPv4", "ipv4")
    };
    match group.ip_address_type.as_deref() {
        Some(t @ ("ipv4" | "ipv6")) if t != other => Err(Error::Config(format!(
            "target group {} takes {} targets (IpAddressType {t}) but the target {target_id} is an {family} address: \
             register in an {other} target group, or set -target-id to the pod's {} address",
            group.name,
            if t == "ipv6" { "IPv6" } else { "IPv4" },
            if t == "ipv6" { "IPv6" } else { "IPv4" },
        ))),
        _ => Ok(()),
    }
}

impl Registration {
    /// Sends RegisterTargets, marked [`RegistrationState::Sent`] first, and
    /// records AWS's answer in the state.
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
                info!(
                    target_group = self.label.as_str(), target:% = self.target,
                    action = RegisterTargets::NAME, request_id = id.as_deref(), state = "registered";
                    "registered target {} in {} (request id {})",
                    self.target,
                    self.label,
                    id.as_deref().unwrap_or("-")
                );
                self.state = RegistrationState::Registered;
                self.registered_at = Some(clock.now());
                self.seen(TargetState::Registered);
                Ok(())
            }
            Err(e) => {
                // A final answer from AWS; anything else (timeout, broken
                // connection, interruption) leaves it Sent: it may land.
                if e.is_refusal() {
                    self.state = RegistrationState::Refused;
                }
                Err(e)
            }
        }
    }
}
