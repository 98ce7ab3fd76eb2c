//! Startup: wait for the app, pre-register hook, credentials, resolve the
//! groups, register, wait until healthy, post-register hook, ready.

use super::{Lifecycle, Registration, RegistrationState, Transport};
use crate::aws::client::Budget;
use crate::aws::elbv2::{DescribeTargetGroups, RegisterTargets, Target, TargetGroup};
use crate::aws::error::Error;
use crate::aws::query::Action;
use crate::config::{Config, GroupRef, GroupSpec};
use crate::hooks::Outcome;
use log::{error, info};
use std::net::IpAddr;
use std::time::Duration;

/// Pause between two tries of the app check while waiting for the app.
const APP_POLL: Duration = Duration::from_millis(500);

/// The startup stopped short (an event, or a failure): the shutdown comes next.
pub(super) struct Stop;

impl<T: Transport> Lifecycle<'_, T> {
    /// Runs the startup up to the registration (then [`Self::watch`]).
    pub(super) fn start(&mut self) -> Result<(), Stop> {
        let up = self.wait_for_app();
        up.map_err(|why| self.fail(format_args!("the app did not come up: {why}")))?;
        self.stop_if_event()?;
        if let Some(hook) = self.cfg.hook("pre-register") {
            match self.effects.run_hook(hook, self.clock) {
                Outcome::Success => {}
                Outcome::Interrupted => return Err(Stop),
                other => {
                    let what = hook.describe();
                    return Err(self.fail(format_args!("not registering: {what} {other}")));
                }
            }
        }
        let budget = Budget::until(self.clock.now() + self.cfg.register_timeout);
        let fetched = self.elb.fetch_credentials(false, budget, self.clock);
        fetched.map_err(|e| self.stop_on("cannot get AWS credentials", e))?;
        // An event during the fetch: no call but the shutdown's from now on.
        self.stop_if_event()?;
        // Registering again after an app restart: the groups are known.
        if self.registrations.is_empty() {
            let resolved = self.resolve(budget);
            self.registrations =
                resolved.map_err(|e| self.stop_on("cannot resolve target groups", e))?;
        }
        self.timed("register", |l| l.register_all(budget))
    }

    /// Waits for `-wait-for-tcp` / `-wait-for-http` (at once when neither is
    /// set); at the timeout, what was last seen. `Ok` too when an event cut
    /// it short: the caller looks for events next.
    fn wait_for_app(&mut self) -> Result<(), String> {
        let cfg = self.cfg;
        let deadline = self.clock.now() + cfg.wait_for_timeout;
        let mut logged = false;
        while let Some(Err(why)) = self.effects.app_up(cfg) {
            if !std::mem::replace(&mut logged, true) {
                info!("waiting for the app: {why}");
            }
            let left = deadline.saturating_duration_since(self.clock.now());
            if left.is_zero() {
                return Err(why);
            }
            if self.clock.sleep(APP_POLL.min(left)).is_err() {
                return Ok(());
            }
        }
        if cfg.has_app_check() {
            info!("the app is up");
        }
        Ok(())
    }

    fn stop_if_event(&mut self) -> Result<(), Stop> {
        (!self.absorb_events()).then_some(()).ok_or(Stop)
    }

    fn fail(&mut self, why: std::fmt::Arguments) -> Stop {
        error!("{why}");
        self.failed = true;
        Stop
    }

    /// Logs a startup failure (an interruption is none: an event came).
    fn stop_on(&mut self, what: &str, e: Error) -> Stop {
        if e != Error::Interrupted {
            error!(error_code = e.aws_code(), request_id = e.request_id(); "{what}: {e}");
            self.failed = true;
        }
        Stop
    }

    fn register_all(&mut self, budget: Budget) -> Result<(), Stop> {
        for i in 0..self.registrations.len() {
            self.stop_if_event()?;
            if let Err(e) = self.register(i, budget) {
                let r = &self.registrations[i];
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
            let action = DescribeTargetGroups {
                names: &names,
                by_arn: false,
            };
            let got = self.elb.call(&action, budget, self.clock)?;
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
            .map(|spec| Registration::new(cfg, spec, &found))
            .collect()
    }
}

impl Registration {
    /// The registration of the target in `spec`'s group (`found`: the groups described).
    fn new(cfg: &Config, spec: &GroupSpec, found: &[TargetGroup]) -> Result<Self, Error> {
        let (label, arn, every) = match &spec.group {
            // Not described: a family mismatch comes back as a ValidationError.
            GroupRef::Arn(arn) => (arn.clone(), arn.clone(), None),
            GroupRef::Name(name) => {
                let what =
                    format!("target group {name:?} was not in the DescribeTargetGroups answer");
                let group = found.iter().find(|g| &g.name == name);
                let group = group.ok_or(Error::Config(what))?;
                check_group(group, &cfg.target_id)?;
                let every = group.health_pace().filter(|_| !cfg.health_poll_explicit);
                (name.clone(), group.arn.clone(), every)
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
            state: RegistrationState::Out,
            every,
            earliest: None,
            last: None,
        })
    }
}

/// Refuses a group that does not take IP targets of the target's family.
fn check_group(group: &TargetGroup, target_id: &str) -> Result<(), Error> {
    let name = &group.name;
    if let Some(tt) = group.target_type.as_deref().filter(|&t| t != "ip") {
        let why = format!("target group {name} has target type {tt}; this sidecar registers pod IPs in ip target groups");
        return Err(Error::Config(why));
    }
    let [ours, theirs] = match (target_id.parse(), group.ip_address_type.as_deref()) {
        (Ok(IpAddr::V4(_)), Some("ipv6")) => ["IPv4", "IPv6"],
        (Ok(IpAddr::V6(_)), Some("ipv4")) => ["IPv6", "IPv4"],
        _ => return Ok(()),
    };
    let [t, ours_l] = [theirs, ours].map(str::to_lowercase);
    Err(Error::Config(format!(
        "target group {name} takes {theirs} targets (IpAddressType {t}) but the target {target_id} is an {ours} \
         address: register in an {ours_l} target group, or set -target-id to the pod's {theirs} address"
    )))
}

impl<T: Transport> Lifecycle<'_, T> {
    fn register(&mut self, i: usize, budget: Budget) -> Result<(), Error> {
        let r = &mut self.registrations[i];
        r.state = RegistrationState::Sent;
        r.last = None;
        let action = RegisterTargets {
            arn: &r.arn,
            targets: std::slice::from_ref(&r.target),
        };
        let result = self.elb.call(&action, budget, self.clock);
        // Anything but a final answer to every attempt leaves it Sent: it may land.
        let lost = self.elb.unanswered > 0;
        if result.as_ref().is_err_and(Error::is_refusal) && !lost {
            r.state = RegistrationState::Refused;
        }
        let id = result?.request_id;
        info!(
            target_group = r.label.as_str(), target:% = r.target,
            action = RegisterTargets::NAME, request_id = id.as_deref(), state = "registered";
            "registered target {} in {} (request id {})",
            r.target, r.label, id.as_deref().unwrap_or("-")
        );
        if !lost {
            r.state = RegistrationState::Registered;
        }
        // Healthy after a check interval at the earliest, plus up to a fifth
        // of it to spread a fleet.
        let (now, spread) = (self.clock.now(), 1.0 + 0.2 * self.clock.random());
        r.earliest = r.every.map(|every| now + every.mul_f64(spread));
        r.seen("registered");
        Ok(())
    }
}
