//! From the flags given and the environment to a [`Config`]: a flag beats
//! its `NLB_*` variable, which beats the table's default.

use super::flags::{env_name, flag};
use super::value::*;
use super::{err, Config, ConfigError, GroupRef, GroupSpec, Hook, HookAction, RoleConfig};
use crate::env::Env;
use std::net::IpAddr;
use std::time::Duration;

/// The flags given, then the environment.
pub(super) struct Settings<'a> {
    pub(super) given: Vec<(&'static str, String)>,
    pub(super) env: &'a dyn Env,
}

/// A value parser: `(where the value came from, value)`.
type ParseFn<T> = fn(&str, &str) -> Result<T, ConfigError>;

impl Settings<'_> {
    /// The flag's last value, else its variable's, and where it came from.
    fn lookup(&self, name: &str) -> Option<(String, String)> {
        if let Some((_, v)) = self.given.iter().rfind(|(n, _)| *n == name) {
            return Some((v.clone(), format!("-{name}")));
        }
        let var = env_name(name);
        self.env.var(&var).map(|v| (v, var))
    }

    /// Where a setting came from, to name it in an error.
    fn source(&self, name: &str) -> String {
        self.lookup(name)
            .map_or(format!("-{name}"), |(_, from)| from)
    }

    /// A setting without a default; an empty value counts as absent.
    fn optional<T>(&self, name: &str, parse: ParseFn<T>) -> Result<Option<T>, ConfigError> {
        match self.lookup(name).filter(|(v, _)| !v.is_empty()) {
            Some((v, from)) => parse(&from, &v).map(Some),
            None => Ok(None),
        }
    }

    /// A setting with a default in the flag table.
    fn value<T>(&self, name: &str, parse: ParseFn<T>) -> Result<T, ConfigError> {
        let (v, from) = match self.lookup(name) {
            Some(found) => found,
            None => (
                flag(name).unwrap_or_default().1.into(),
                format!("the default of -{name}"),
            ),
        };
        parse(&from, &v)
    }

    /// A repeatable setting: every value of the flag, else its variable's;
    /// each a comma-separated list.
    fn list<T>(&self, name: &str, parse: ParseFn<T>) -> Result<Vec<T>, ConfigError> {
        let given = self.given.iter().filter(|(n, _)| *n == name);
        let mut values: Vec<String> = given.map(|(_, v)| v.clone()).collect();
        let mut from = format!("-{name}");
        if values.is_empty() {
            from = env_name(name);
            values.extend(self.env.var(&from));
        }
        let items = values.iter().flat_map(|v| v.split(',')).map(str::trim);
        let items = items.filter(|s| !s.is_empty());
        items.map(|s| parse(&from, s)).collect()
    }

    /// Step `name`'s hook: `-NAME-command` or `-NAME-http` (blank is
    /// absent; both is an error), with `-NAME-timeout`.
    fn hook(&self, name: &'static str) -> Result<Option<Hook>, ConfigError> {
        let timeout = self.value(&format!("{name}-timeout"), parse_duration)?;
        let set = |flag: String| self.lookup(&flag).filter(|(v, _)| !v.trim().is_empty());
        let action = match (set(format!("{name}-command")), set(format!("{name}-http"))) {
            (None, None) => return Ok(None),
            (Some((_, cmd)), Some((_, http))) => {
                return err(format!(
                    "{cmd} and {http} are both set: a step runs one hook, give one of them"
                ))
            }
            (Some((v, from)), None) => HookAction::Command(parse_command(&from, &v)?),
            (None, Some((v, from))) => HookAction::Http(parse_http_url(&from, &v)?),
        };
        Ok(Some(Hook {
            name,
            action,
            timeout,
        }))
    }

    /// The target groups: names and ARNs add up; at least one, none twice.
    fn groups(&self) -> Result<Vec<GroupSpec>, ConfigError> {
        let mut groups = self.list("target-group-name", parse_group_name)?;
        groups.extend(self.list("target-group-arn", parse_group_arn)?);
        if groups.is_empty() {
            return err(
                "no target group: set -target-group-name or -target-group-arn \
                 (or NLB_TARGET_GROUP_NAME / NLB_TARGET_GROUP_ARN)"
                    .into(),
            );
        }
        let mut seen = groups.iter().enumerate();
        match seen.find(|(i, g)| groups[..*i].contains(g)) {
            Some((_, g)) => err(format!("target group {} is given twice", g.group)),
            None => Ok(groups),
        }
    }

    /// The target's IP (canonical text, as AWS lists targets) and where it
    /// came from: flag or variable, `POD_IP`, then the detector.
    fn target_id(
        &self,
        detect_ip: &mut dyn FnMut() -> Result<String, String>,
    ) -> Result<(String, String), ConfigError> {
        let no_target_id = |why| {
            ConfigError(format!(
                "no target id: set -target-id, NLB_TARGET_ID or POD_IP (Downward API status.podIP); \
                 detecting it from /etc/hosts failed: {why}"
            ))
        };
        let (v, from) = match self.lookup("target-id") {
            Some((v, from)) if v.trim().is_empty() => {
                return err(format!(
                    "empty value for {from}: give the pod IP, or leave the flag out to use POD_IP"
                ))
            }
            Some(found) => found,
            None => match self.env.var("POD_IP") {
                Some(v) => (v, "POD_IP".to_owned()),
                None => (detect_ip().map_err(no_target_id)?, "/etc/hosts".to_owned()),
            },
        };
        match v.trim().parse::<IpAddr>() {
            Ok(ip) => Ok((ip.to_string(), from)),
            Err(_) => err(format!(
                "invalid target id {v:?} from {from}: must be an IP address (ip target groups)"
            )),
        }
    }

    /// The role to assume; its companions need `-role-arn`.
    fn role(&self) -> Result<Option<RoleConfig>, ConfigError> {
        let arn = self.optional("role-arn", parse_role_arn)?;
        let external_id = self.optional("role-external-id", parse_external_id)?;
        let session_name = self.optional("role-session-name", parse_session_name)?;
        let Some(arn) = arn else {
            let companion = match (&external_id, &session_name) {
                (Some(_), _) => "role-external-id",
                (None, Some(_)) => "role-session-name",
                (None, None) => return Ok(None),
            };
            return err(format!(
                "{} is set but -role-arn (NLB_ROLE_ARN) is not: it only applies to the role to assume",
                self.source(companion)
            ));
        };
        Ok(Some(RoleConfig {
            arn,
            external_id,
            session_name,
        }))
    }

    /// `-health-poll-interval`, at least 10ms.
    fn health_poll_interval(&self) -> Result<Duration, ConfigError> {
        let d = self.value("health-poll-interval", parse_duration)?;
        if d < Duration::from_millis(10) {
            let from = self.source("health-poll-interval");
            let d = humantime::format_duration(d);
            return err(format!("{from} {d} is too short: at least 10ms"));
        }
        Ok(d)
    }

    /// `-drain-quiet-period` (0 is off): shorter than
    /// `-wait-drained-timeout`, which bounds it, and with a port known for
    /// every group (one given by ARN has none of its own).
    fn drain_quiet_period(&self, c: &Config) -> Result<Option<Duration>, ConfigError> {
        let name = "drain-quiet-period";
        let d = self.optional(name, parse_duration)?.unwrap_or_default();
        if d.is_zero() {
            return Ok(None);
        }
        let (from, fmt) = (self.source(name), humantime::format_duration);
        if d >= c.wait_drained_timeout {
            return err(format!(
                "{from} {} can never end within -wait-drained-timeout {}, which bounds it: \
                 raise -wait-drained-timeout",
                fmt(d),
                fmt(c.wait_drained_timeout)
            ));
        }
        let no_port = |g: &&GroupSpec| matches!(g.group, GroupRef::Arn(_)) && g.port.is_none();
        match c.groups.iter().find(no_port) {
            Some(g) if c.target_port.is_none() => err(format!(
                "{from} watches the target's port, unknown for {}: give -target-port or ARN:PORT",
                g.group
            )),
            _ => Ok(Some(d)),
        }
    }
}

/// Builds the configuration. Fields are checked in the order written, so
/// the first bad setting is the one reported.
pub(super) fn resolve(
    s: &Settings<'_>,
    detect_ip: &mut dyn FnMut() -> Result<String, String>,
) -> Result<Config, ConfigError> {
    let groups = s.groups()?;
    let (target_id, target_id_source) = s.target_id(detect_ip)?;
    let mut c = Config {
        groups,
        target_id,
        target_id_source,
        target_port: s.optional("target-port", parse_port)?,
        pre_register: s.hook("pre-register")?,
        post_register: s.hook("post-register")?,
        post_deregister: s.hook("post-deregister")?,
        status_addr: s.optional("status-addr", parse_host_port)?,
        wait_for_tcp: s.optional("wait-for-tcp", parse_host_port)?,
        wait_for_http: s.optional("wait-for-http", parse_http_url)?,
        log_level: s.optional("log-level", parse_log_level)?,
        log_format: s.value("log-format", parse_log_format)?,
        check: s.value("check", parse_bool)?,
        health_poll_interval: s.health_poll_interval()?,
        health_poll_explicit: s.optional("health-poll-interval", parse_text)?.is_some(),
        availability_zone: s.optional("target-availability-zone", parse_text)?,
        region: s.optional("region", parse_text)?,
        role: s.role()?,
        wait_in_service: s.value("wait-in-service", parse_bool)?,
        wait_in_service_timeout: s.value("wait-in-service-timeout", parse_duration)?,
        register_timeout: s.value("register-timeout", parse_duration)?,
        deregister_timeout: s.value("deregister-timeout", parse_duration)?,
        wait_drained: s.value("wait-drained", parse_bool)?,
        wait_drained_timeout: s.value("wait-drained-timeout", parse_duration)?,
        wait_for_timeout: s.value("wait-for-timeout", parse_duration)?,
        drain_quiet_period: None,
        lb_health_addr: s.optional("lb-health-addr", parse_host_port)?,
        drain_ignore_from: s.list("drain-ignore-from", parse_cidr)?,
    };
    c.drain_quiet_period = s.drain_quiet_period(&c)?;
    Ok(c)
}
