//! From the flags given and the environment to a [`Config`]: a flag beats
//! its `NLB_*` variable, which beats the table's default.

use super::flags::{env_name, flag};
use super::value::*;
use super::{Config, ConfigError, GroupRef, GroupSpec, Hook, HookAction};
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
        let flag = self.given.iter().rfind(|(n, _)| *n == name);
        let var = || self.env.var(&env_name(name)).map(|v| (v, env_name(name)));
        flag.map(|(_, v)| (v.clone(), format!("-{name}")))
            .or_else(var)
    }

    /// Where a setting came from, to name it in an error.
    fn source(&self, name: &str) -> String {
        self.lookup(name)
            .map_or(format!("-{name}"), |(_, from)| from)
    }

    /// A setting without a default; an empty value counts as absent.
    fn optional<T>(&self, name: &str, parse: ParseFn<T>) -> Result<Option<T>, ConfigError> {
        let found = self.lookup(name).filter(|(v, _)| !v.is_empty());
        found.map(|(v, from)| parse(&from, &v)).transpose()
    }

    /// A setting with a default in the flag table.
    fn value<T>(&self, name: &str, parse: ParseFn<T>) -> Result<T, ConfigError> {
        let default = || (flag(name).unwrap_or_default().1.into(), format!("-{name}"));
        let (v, from) = self.lookup(name).unwrap_or_else(default);
        parse(&from, &v)
    }

    /// A repeatable setting: every value of the flag, else its variable's; each a list.
    fn list<T>(&self, name: &str, parse: ParseFn<T>) -> Result<Vec<T>, ConfigError> {
        let given = self.given.iter().filter(|(n, _)| *n == name);
        let mut values: Vec<String> = given.map(|(_, v)| v.clone()).collect();
        if values.is_empty() {
            values.extend(self.env.var(&env_name(name)));
        }
        let (from, items) = (self.source(name), values.iter().flat_map(|v| v.split(',')));
        let items = items.map(str::trim).filter(|s| !s.is_empty());
        items.map(|s| parse(&from, s)).collect()
    }

    /// The target groups, by name then by ARN: at least one, none twice.
    fn groups(&self) -> Result<Vec<GroupSpec>, ConfigError> {
        let mut groups = self.list("target-group-name", |w, v| parse_group(w, v, false))?;
        groups.extend(self.list("target-group-arn", |w, v| parse_group(w, v, true))?);
        if groups.is_empty() {
            let vars = "NLB_TARGET_GROUP_NAME / NLB_TARGET_GROUP_ARN";
            return Err(format!(
                "no target group: set -target-group-name or -target-group-arn (or {vars})"
            ));
        }
        let mut seen = groups.iter().enumerate();
        if let Some((_, g)) = seen.find(|(i, g)| groups[..*i].contains(g)) {
            return Err(format!("target group {} is given twice", g.group));
        }
        Ok(groups)
    }

    /// Step `name`'s hook: `-NAME-command` or `-NAME-http` (not both), `-NAME-timeout`.
    fn hook(&self, name: &'static str) -> Result<Option<Hook>, ConfigError> {
        let timeout = self.value(&format!("{name}-timeout"), parse_duration)?;
        let set = |kind| {
            self.lookup(&format!("{name}-{kind}"))
                .filter(|(v, _)| !v.trim().is_empty())
        };
        let action = match (set("command"), set("http")) {
            (None, None) => return Ok(None),
            (Some((v, from)), None) => HookAction::Command(parse_command(&from, &v)?),
            (None, Some((v, from))) => HookAction::Http(parse_http_url(&from, &v)?),
            (Some((_, cmd)), Some((_, http))) => {
                return Err(format!(
                    "{cmd} and {http} are both set: a step runs one hook, give one of them"
                ))
            }
        };
        Ok(Some(Hook {
            name,
            action,
            timeout,
        }))
    }

    /// The target's IP (canonical text, as AWS lists targets) and where it came from.
    fn target_id(
        &self,
        detect_ip: &mut dyn FnMut() -> Result<String, String>,
    ) -> Result<(String, String), ConfigError> {
        let pod_ip = || self.env.var("POD_IP").map(|v| (v, "POD_IP".to_owned()));
        let (v, from) = match self.lookup("target-id").or_else(pod_ip) {
            Some((v, from)) if v.trim().is_empty() => {
                return Err(format!(
                    "empty value for {from}: give the pod IP, or leave the flag out to use POD_IP"
                ))
            }
            Some(found) => found,
            None => match detect_ip() {
                Ok(ip) => (ip, "/etc/hosts".to_owned()),
                Err(why) => return Err(format!(
                    "no target id: set -target-id, NLB_TARGET_ID or POD_IP (Downward API status.podIP); \
                     detecting it from /etc/hosts failed: {why}"
                )),
            },
        };
        let ip = v.trim().parse::<IpAddr>().map_err(|_| {
            format!("invalid target id {v:?} from {from}: must be an IP address (ip target groups)")
        })?;
        Ok((ip.to_string(), from))
    }
}

/// Builds the configuration; the first bad setting, in the order written, is reported.
pub(super) fn resolve(
    s: &Settings<'_>,
    detect_ip: &mut dyn FnMut() -> Result<String, String>,
) -> Result<Config, ConfigError> {
    let groups = s.groups()?;
    let (target_id, target_id_source) = s.target_id(detect_ip)?;
    let text = |_: &str, v: &str| Ok(v.to_owned());
    let c = Config {
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
        log_json: s.value("log-format", parse_log_format)?,
        check: s.value("check", parse_bool)?,
        health_poll_interval: s.value("health-poll-interval", |w, v| {
            match parse_duration(w, v)? {
                d if d < Duration::from_millis(10) => Err(format!(
                    "{w} {} is too short: at least 10ms",
                    humantime::format_duration(d)
                )),
                d => Ok(d),
            }
        })?,
        health_poll_explicit: s.lookup("health-poll-interval").is_some(),
        availability_zone: s.optional("target-availability-zone", text)?,
        region: s.optional("region", text)?,
        role_arn: s.optional("role-arn", parse_role_arn)?,
        role_external_id: s.optional("role-external-id", |w, v| {
            sts(w, v, "external id", 2..=1224, "+=,.@:/-").map(|v| v.as_str().into())
        })?,
        role_session_name: s.optional("role-session-name", |w, v| {
            sts(w, v, "role session name", 2..=64, "+=,.@-")
        })?,
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
    cross_checks(s, c)
}

/// The rules between settings: `-role-external-id` and `-role-session-name` need `-role-arn`;
/// `-drain-quiet-period` (0 is off) is shorter than `-wait-drained-timeout`, which bounds it,
/// and needs a port known for every group (one given by ARN has none of its own).
fn cross_checks(s: &Settings<'_>, c: Config) -> Result<Config, ConfigError> {
    let set = [
        ("role-external-id", c.role_external_id.is_some()),
        ("role-session-name", c.role_session_name.is_some()),
    ];
    if let (None, Some((companion, _))) = (&c.role_arn, set.iter().find(|(_, set)| *set)) {
        return Err(format!(
            "{} is set but -role-arn (NLB_ROLE_ARN) is not: it only applies to the role to assume",
            s.source(companion)
        ));
    }
    let name = "drain-quiet-period";
    let d = s.optional(name, parse_duration)?.filter(|d| !d.is_zero());
    let no_port = |g: &&GroupSpec| matches!(g.group, GroupRef::Arn(_)) && g.port.is_none();
    let (from, fmt) = (s.source(name), humantime::format_duration);
    match (d, c.groups.iter().find(no_port)) {
        (Some(d), _) if d >= c.wait_drained_timeout => Err(format!(
            "{from} {} can never end within -wait-drained-timeout {}, which bounds it: \
             raise -wait-drained-timeout",
            fmt(d),
            fmt(c.wait_drained_timeout)
        )),
        (Some(_), Some(g)) if c.target_port.is_none() => Err(format!(
            "{from} watches the target's port, unknown for {}: give -target-port or ARN:PORT",
            g.group
        )),
        _ => Ok(Config {
            drain_quiet_period: d,
            ..c
        }),
    }
}
