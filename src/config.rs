//! Command line and environment: Go's flag syntax, kept compatible with the
//! original program, and an `NLB_*` variable for every flag.
//!
//! Go's `flag` package spells long flags with one dash (`-target-id x`) and
//! also accepts two (`--target-id=x`); booleans take no separate value
//! (`-wait-in-service=false`). lexopt parses the double-dash form, so a
//! first pass rewrites `-name` to `--name` for every argument in a *flag*
//! position (a value such as `-pre-register-command -x` is left alone,
//! because the table below knows which flags take one). Then lexopt does
//! the parsing and its errors name the flag.
//!
//! Precedence: a flag beats its `NLB_*` variable, which beats the default.
//! `-target-id` falls back to `POD_IP`, then to the pod's own line in
//! `/etc/hosts` (found by the caller-supplied detector, so parsing stays pure).

use crate::env::Env;
use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// What kind of value a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Value,
}

/// One flag: name (without dashes), kind, help text, default shown in help.
struct Flag {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    default: &'static str,
}

const FLAGS: &[Flag] = &[
    Flag { name: "target-group-name", kind: Kind::Value, help: "Target group to register in, by name; NAME or NAME:PORT; repeatable (env: comma-separated)", default: "" },
    Flag { name: "target-group-arn", kind: Kind::Value, help: "Target group to register in, by ARN (no DescribeTargetGroups call); ARN or ARN:PORT; repeatable", default: "" },
    Flag { name: "target-id", kind: Kind::Value, help: "Target IP (default: $POD_IP, then the pod's IP from /etc/hosts)", default: "" },
    Flag { name: "target-port", kind: Kind::Value, help: "Port for target groups given without their own (default: the group's port)", default: "" },
    Flag { name: "target-availability-zone", kind: Kind::Value, help: "AvailabilityZone of the target, e.g. 'all' for an IP outside the VPC", default: "" },
    Flag { name: "region", kind: Kind::Value, help: "AWS region (default: $AWS_REGION, then $AWS_DEFAULT_REGION)", default: "" },
    Flag { name: "wait-in-service", kind: Kind::Bool, help: "Whether to wait for the target to become healthy", default: "true" },
    Flag { name: "wait-in-service-timeout", kind: Kind::Value, help: "How long to wait for the target to become healthy", default: "5m" },
    Flag { name: "health-poll-interval", kind: Kind::Value, help: "Interval between DescribeTargetHealth calls (jittered +-20%)", default: "5s" },
    Flag { name: "register-timeout", kind: Kind::Value, help: "How long DescribeTargetGroups/RegisterTargets are retried on throttling and faults", default: "2m" },
    Flag { name: "deregister-timeout", kind: Kind::Value, help: "How long DeregisterTargets is retried after a signal", default: "20s" },
    Flag { name: "wait-drained", kind: Kind::Bool, help: "After deregistering, wait until the target is no longer draining", default: "false" },
    Flag { name: "wait-drained-timeout", kind: Kind::Value, help: "How long to wait for draining to finish", default: "5m" },
    Flag { name: "pre-register-command", kind: Kind::Value, help: "Command to execute before the target is registered (no shell; words split like sh)", default: "" },
    Flag { name: "pre-register-timeout", kind: Kind::Value, help: "How long to wait for the pre-register command", default: "5s" },
    Flag { name: "post-register-command", kind: Kind::Value, help: "Command to execute after the target is registered (and healthy)", default: "" },
    Flag { name: "post-register-timeout", kind: Kind::Value, help: "How long to wait for the post-register command", default: "5s" },
    Flag { name: "post-deregister-command", kind: Kind::Value, help: "Command to execute after the target is deregistered", default: "" },
    Flag { name: "post-deregister-timeout", kind: Kind::Value, help: "How long to wait for the post-deregister command", default: "5s" },
    Flag { name: "status-addr", kind: Kind::Value, help: "HOST:PORT of the status listener (/healthz, /readyz, /drain); off when empty", default: "" },
    Flag { name: "wait-for-tcp", kind: Kind::Value, help: "Before registering, wait until HOST:PORT accepts TCP connections", default: "" },
    Flag { name: "wait-for-http", kind: Kind::Value, help: "Before registering, wait until this http:// URL answers 2xx", default: "" },
    Flag { name: "wait-for-timeout", kind: Kind::Value, help: "How long to wait for -wait-for-tcp / -wait-for-http", default: "5m" },
    Flag { name: "log-level", kind: Kind::Value, help: "error, warn, info, debug or trace (RUST_LOG filters also work)", default: "info" },
];

fn flag(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.name == name)
}

/// The environment variable of a flag: `NLB_` + upper snake case.
pub fn env_name(flag: &str) -> String {
    format!("NLB_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// How a target group is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRef {
    /// By name (resolved with DescribeTargetGroups).
    Name(String),
    /// By ARN.
    Arn(String),
}

impl fmt::Display for GroupRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupRef::Name(n) | GroupRef::Arn(n) => f.write_str(n),
        }
    }
}

/// One target group to register in, with its own port if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// The group.
    pub group: GroupRef,
    /// Port of the target in this group (`NAME:PORT`), else `-target-port`.
    pub port: Option<u16>,
}

/// A hook command: argv (already split) and timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Which flag it came from, e.g. `pre-register`.
    pub name: &'static str,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// How long it may run.
    pub timeout: Duration,
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Target groups (at least one).
    pub groups: Vec<GroupSpec>,
    /// The target's IP.
    pub target_id: String,
    /// Where `target_id` came from (flag, variable, /etc/hosts), for the log.
    pub target_id_source: String,
    /// Default port.
    pub target_port: Option<u16>,
    /// AvailabilityZone of the target.
    pub availability_zone: Option<String>,
    /// Region given by flag or `NLB_REGION`.
    pub region: Option<String>,
    /// Wait for healthy.
    pub wait_in_service: bool,
    /// Health wait timeout.
    pub wait_in_service_timeout: Duration,
    /// Health poll interval.
    pub health_poll_interval: Duration,
    /// Registration retry window.
    pub register_timeout: Duration,
    /// Deregistration retry window.
    pub deregister_timeout: Duration,
    /// Wait for draining to end.
    pub wait_drained: bool,
    /// Draining wait timeout.
    pub wait_drained_timeout: Duration,
    /// Pre-register hook.
    pub pre_register: Option<Hook>,
    /// Post-register hook.
    pub post_register: Option<Hook>,
    /// Post-deregister hook.
    pub post_deregister: Option<Hook>,
    /// Status listener address.
    pub status_addr: Option<String>,
    /// Wait for this TCP address before registering.
    pub wait_for_tcp: Option<String>,
    /// Wait for this URL before registering.
    pub wait_for_http: Option<String>,
    /// Timeout of the wait-for checks.
    pub wait_for_timeout: Duration,
    /// Log level given by flag or variable.
    pub log_level: Option<String>,
    /// After deregistering, wait until no new connection to the target
    /// port has been accepted for this long (`-drain-quiet-period`).
    pub drain_quiet_period: Option<Duration>,
    /// Address of the listener that serves `/lb-health` alone.
    pub lb_health_addr: Option<String>,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run the sidecar.
    Run(Box<Config>),
    /// Print usage and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
}

/// A usage error: one line naming the flag or variable and the bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: String) -> Result<T, ConfigError> {
    Err(ConfigError(msg))
}

/// Rewrites Go-style `-name` into `--name` in flag positions.
fn normalize(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut takes_value = false;
    let mut rest_positional = false;
    for arg in args {
        if takes_value || rest_positional {
            takes_value = false;
            out.push(arg);
            continue;
        }
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            rest_positional = true;
            out.push(arg);
            continue;
        }
        let body = s.strip_prefix("--").or_else(|| s.strip_prefix('-'));
        match body {
            Some(b) if !b.is_empty() => {
                let name = b.split('=').next().unwrap_or_default();
                let rewritten = if s.starts_with("--") || name.len() == 1 {
                    arg.clone()
                } else {
                    OsString::from(format!("-{s}"))
                };
                takes_value =
                    !b.contains('=') && flag(name).map(|f| f.kind == Kind::Value).unwrap_or(false);
                out.push(rewritten);
            }
            _ => out.push(arg),
        }
    }
    out
}

/// Parses a Go boolean (`1 0 t f T F true false TRUE FALSE True False`).
fn parse_bool(what: &str, v: &str) -> Result<bool, ConfigError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => err(format!(
            "invalid boolean value {v:?} for {what}: use true or false"
        )),
    }
}

/// Parses a duration in Go's or humantime's form (`5s`, `1m30s`, `300ms`, `1.5s`, `2m 10s`).
fn parse_duration(what: &str, v: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(v.trim()).map_err(|e| {
        ConfigError(format!(
            "invalid duration {v:?} for {what}: {e} (examples: 5s, 1m30s, 300ms)"
        ))
    })?;
    // Deadlines are computed as `now + d`: keep them far from overflow.
    if d > MAX_DURATION {
        return err(format!(
            "duration {v:?} for {what} is too long: at most 365 days"
        ));
    }
    Ok(d)
}

/// Longest duration accepted for any flag.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

fn parse_port(what: &str, v: &str) -> Result<u16, ConfigError> {
    match v.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => err(format!("invalid port {v:?} for {what}: must be 1-65535")),
    }
}

/// Target group names: 1-32 alphanumerics and hyphens, not starting or ending with a hyphen.
fn valid_group_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !n.starts_with('-')
        && !n.ends_with('-')
}

fn parse_group_name(what: &str, v: &str) -> Result<GroupSpec, ConfigError> {
    let v = v.trim();
    let (name, port) = match v.split_once(':') {
        Some((n, p)) => (n, Some(parse_port(what, p)?)),
        None => (v, None),
    };
    if !valid_group_name(name) {
        return err(format!(
            "invalid target group name {name:?} for {what}: 1-32 letters, digits and hyphens (NAME or NAME:PORT)"
        ));
    }
    Ok(GroupSpec {
        group: GroupRef::Name(name.to_owned()),
        port,
    })
}

fn parse_group_arn(what: &str, v: &str) -> Result<GroupSpec, ConfigError> {
    let v = v.trim();
    let parts: Vec<&str> = v.split(':').collect();
    // arn:PARTITION:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID[:PORT]
    let (arn, port) = match parts.len() {
        6 => (v.to_owned(), None),
        7 => (parts[..6].join(":"), Some(parse_port(what, parts[6])?)),
        _ => return err(format!("invalid target group ARN {v:?} for {what}: expected arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID (optionally :PORT)")),
    };
    let ok = parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "elasticloadbalancing"
        && parts[5].starts_with("targetgroup/")
        && parts[5].split('/').count() == 3;
    if !ok {
        return err(format!(
            "invalid target group ARN {v:?} for {what}: expected arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID"
        ));
    }
    Ok(GroupSpec {
        group: GroupRef::Arn(arn),
        port,
    })
}

fn parse_host_port(what: &str, v: &str) -> Result<String, ConfigError> {
    let Some((host, port)) = v.rsplit_once(':') else {
        return err(format!(
            "invalid address {v:?} for {what}: expected HOST:PORT"
        ));
    };
    parse_port(what, port)?;
    if host.is_empty() {
        return err(format!(
            "invalid address {v:?} for {what}: empty host (use 0.0.0.0:PORT to listen everywhere)"
        ));
    }
    Ok(v.to_owned())
}

fn split_command(what: &str, v: &str) -> Result<Vec<String>, ConfigError> {
    match shlex::split(v) {
        Some(words) if words.first().is_some_and(|w| w.is_empty()) => err(format!(
            "empty program name in the command for {what}: {v:?}"
        )),
        Some(words) if !words.is_empty() => Ok(words),
        Some(_) => err(format!("empty command for {what}")),
        None => err(format!(
            "cannot split command for {what} into words (unbalanced quotes?): {v:?}"
        )),
    }
}

/// Raw values gathered from flags, before env fallback.
#[derive(Default)]
struct Raw {
    values: Vec<(&'static str, String)>,
}

impl Raw {
    fn last(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.values
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Parses the arguments (without the program name) and the environment.
///
/// `detect_ip` is called only when no target id is given by flag,
/// `NLB_TARGET_ID` or `POD_IP`; it returns the pod's IP or a reason.
///
/// # Errors
/// A [`ConfigError`] naming the flag or variable and the bad value.
pub fn parse(
    args: Vec<OsString>,
    env: &dyn Env,
    detect_ip: &mut dyn FnMut() -> Result<String, String>,
) -> Result<Action, ConfigError> {
    let mut parser = lexopt::Parser::from_args(normalize(args));
    let mut raw = Raw::default();
    loop {
        let arg = match parser.next() {
            Ok(Some(a)) => a,
            Ok(None) => break,
            Err(e) => return err(lexopt_message(e)),
        };
        match arg {
            lexopt::Arg::Short('h') => return Ok(Action::Help),
            lexopt::Arg::Long("help" | "h") => return Ok(Action::Help),
            lexopt::Arg::Long("version") => return Ok(Action::Version),
            lexopt::Arg::Long(name) => {
                let Some(f) = flag(name) else {
                    return err(format!("flag provided but not defined: -{name} (see -h)"));
                };
                let value = match f.kind {
                    Kind::Value => parser.value().map_err(|e| ConfigError(lexopt_message(e)))?,
                    Kind::Bool => parser
                        .optional_value()
                        .unwrap_or_else(|| OsString::from("true")),
                };
                let value = value.into_string().map_err(|v| {
                    ConfigError(format!("value of -{} is not UTF-8: {v:?}", f.name))
                })?;
                raw.values.push((f.name, value));
            }
            lexopt::Arg::Short(c) => {
                return err(format!("flag provided but not defined: -{c} (see -h)"))
            }
            lexopt::Arg::Value(v) => {
                let v = v.to_string_lossy();
                let hint = if parse_bool("", &v).is_ok() {
                    " (boolean flags take their value after '=', e.g. -wait-in-service=false)"
                } else {
                    " (this program takes flags only; see -h)"
                };
                return err(format!("unexpected argument {v:?}{hint}"));
            }
        }
    }
    resolve(&raw, env, detect_ip).map(|c| Action::Run(Box::new(c)))
}

fn lexopt_message(e: lexopt::Error) -> String {
    match e {
        lexopt::Error::MissingValue { option: Some(o) } => {
            format!("flag needs an argument: -{}", o.trim_start_matches('-'))
        }
        lexopt::Error::UnexpectedValue { option, value } => format!(
            "flag -{} does not take a value (got {:?})",
            option.trim_start_matches('-'),
            value.to_string_lossy()
        ),
        other => other.to_string(),
    }
}

/// Looks a setting up: the flag's last value, else its `NLB_*` variable.
/// Returns the value and a label naming where it came from.
fn lookup(raw: &Raw, env: &dyn Env, name: &'static str) -> Option<(String, String)> {
    if let Some(v) = raw.last(name) {
        return Some((v.to_owned(), format!("-{name}")));
    }
    let var = env_name(name);
    env.var(&var).map(|v| (v, var))
}

fn resolve(
    raw: &Raw,
    env: &dyn Env,
    detect_ip: &mut dyn FnMut() -> Result<String, String>,
) -> Result<Config, ConfigError> {
    let duration = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
        match lookup(raw, env, name) {
            Some((v, from)) => parse_duration(&from, &v),
            None => Ok(default),
        }
    };
    let boolean = |name: &'static str, default: bool| -> Result<bool, ConfigError> {
        match lookup(raw, env, name) {
            Some((v, from)) => parse_bool(&from, &v),
            None => Ok(default),
        }
    };
    let string = |name: &'static str| {
        lookup(raw, env, name)
            .map(|(v, _)| v)
            .filter(|v| !v.is_empty())
    };

    // Target groups: flags (repeatable) beat the comma-separated variables.
    let mut groups = Vec::new();
    let names = raw.all("target-group-name");
    let arns = raw.all("target-group-arn");
    if names.is_empty() && arns.is_empty() {
        for (name, parse_one) in [
            (
                "target-group-name",
                parse_group_name as fn(&str, &str) -> Result<GroupSpec, ConfigError>,
            ),
            ("target-group-arn", parse_group_arn),
        ] {
            let var = env_name(name);
            if let Some(list) = env.var(&var) {
                for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    groups.push(parse_one(&var, item)?);
                }
            }
        }
    } else {
        for v in names {
            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                groups.push(parse_group_name("-target-group-name", item)?);
            }
        }
        for v in arns {
            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                groups.push(parse_group_arn("-target-group-arn", item)?);
            }
        }
    }
    if groups.is_empty() {
        return err(
            "no target group: set -target-group-name or -target-group-arn (or NLB_TARGET_GROUP_NAME / NLB_TARGET_GROUP_ARN)"
                .into(),
        );
    }
    for (i, g) in groups.iter().enumerate() {
        if groups[..i].iter().any(|h| h == g) {
            return err(format!("target group {} is given twice", g.group));
        }
    }

    if raw.last("target-id").map(str::trim) == Some("") {
        return err(
            "empty value for -target-id: give the pod IP, or leave the flag out to use POD_IP"
                .into(),
        );
    }
    let (target_id, target_id_source) = match lookup(raw, env, "target-id").filter(|(v, _)| !v.is_empty()) {
        Some((v, from)) => (v, from),
        None => match env.var("POD_IP") {
            Some(v) => (v, "POD_IP".to_owned()),
            None => match detect_ip() {
                Ok(ip) => (ip, "/etc/hosts".to_owned()),
                Err(why) => {
                    return err(format!(
                        "no target id: set -target-id, NLB_TARGET_ID or POD_IP (Downward API status.podIP); \
                         detecting it from /etc/hosts failed: {why}"
                    ))
                }
            },
        },
    };
    if target_id.trim().parse::<IpAddr>().is_err() {
        return err(format!(
            "invalid target id {target_id:?} from {target_id_source}: must be an IP address (ip target groups)"
        ));
    }
    let target_id = target_id.trim().to_owned();

    let target_port = match lookup(raw, env, "target-port").filter(|(v, _)| !v.is_empty()) {
        Some((v, from)) => Some(parse_port(&from, &v)?),
        None => None,
    };

    let hook = |name: &'static str,
                cmd_flag: &'static str,
                timeout_flag: &'static str|
     -> Result<Option<Hook>, ConfigError> {
        let timeout = duration(timeout_flag, Duration::from_secs(5))?;
        match lookup(raw, env, cmd_flag).filter(|(v, _)| !v.trim().is_empty()) {
            None => Ok(None),
            Some((v, from)) => Ok(Some(Hook {
                name,
                argv: split_command(&from, &v)?,
                timeout,
            })),
        }
    };

    let status_addr = match lookup(raw, env, "status-addr").filter(|(v, _)| !v.is_empty()) {
        Some((v, from)) => Some(parse_host_port(&from, &v)?),
        None => None,
    };
    let wait_for_tcp = match lookup(raw, env, "wait-for-tcp").filter(|(v, _)| !v.is_empty()) {
        Some((v, from)) => Some(parse_host_port(&from, &v)?),
        None => None,
    };
    let wait_for_http = match lookup(raw, env, "wait-for-http").filter(|(v, _)| !v.is_empty()) {
        Some((v, from)) => {
            if !v.starts_with("http://") || v.len() <= "http://".len() {
                return err(format!(
                    "invalid URL {v:?} for {from}: must start with http://"
                ));
            }
            Some(v)
        }
        None => None,
    };
    let log_level = match lookup(raw, env, "log-level").filter(|(v, _)| !v.is_empty()) {
        Some((v, from)) => {
            let l = v.to_ascii_lowercase();
            if !["off", "error", "warn", "info", "debug", "trace"].contains(&l.as_str()) {
                return err(format!(
                    "invalid log level {v:?} for {from}: use error, warn, info, debug or trace"
                ));
            }
            Some(l)
        }
        None => None,
    };
    let health_poll_interval = duration("health-poll-interval", Duration::from_secs(5))?;
    if health_poll_interval < Duration::from_millis(10) {
        let from = lookup(raw, env, "health-poll-interval")
            .map(|(_, from)| from)
            .unwrap_or_else(|| "-health-poll-interval".into());
        return err(format!(
            "{from} {} is too short: at least 10ms",
            humantime::format_duration(health_poll_interval)
        ));
    }

    Ok(Config {
        groups,
        target_id,
        target_id_source,
        target_port,
        availability_zone: string("target-availability-zone"),
        region: string("region"),
        wait_in_service: boolean("wait-in-service", true)?,
        wait_in_service_timeout: duration("wait-in-service-timeout", Duration::from_secs(300))?,
        health_poll_interval,
        register_timeout: duration("register-timeout", Duration::from_secs(120))?,
        deregister_timeout: duration("deregister-timeout", Duration::from_secs(20))?,
        wait_drained: boolean("wait-drained", false)?,
        wait_drained_timeout: duration("wait-drained-timeout", Duration::from_secs(300))?,
        pre_register: hook(
            "pre-register",
            "pre-register-command",
            "pre-register-timeout",
        )?,
        post_register: hook(
            "post-register",
            "post-register-command",
            "post-register-timeout",
        )?,
        post_deregister: hook(
            "post-deregister",
            "post-deregister-command",
            "post-deregister-timeout",
        )?,
        status_addr,
        wait_for_tcp,
        wait_for_http,
        wait_for_timeout: duration("wait-for-timeout", Duration::from_secs(300))?,
        log_level,
        drain_quiet_period: None,
        lb_health_addr: None,
    })
}

/// The usage text printed by `-h`, in the style of Go's flag package.
pub fn usage(program: &str) -> String {
    let mut out = format!(
        "Usage of {program}:\n\
         Registers this pod's IP in AWS ELBv2 target groups, waits until healthy,\n\
         and deregisters it on SIGTERM/SIGINT. Every flag also reads NLB_<FLAG_NAME>.\n"
    );
    for f in FLAGS {
        let arg = if f.kind == Kind::Value { " value" } else { "" };
        out.push_str(&format!("  -{}{arg}\n        {}", f.name, f.help));
        if !f.default.is_empty() {
            out.push_str(&format!(" (default {})", f.default));
        }
        out.push_str(&format!(" [env {}]\n", env_name(f.name)));
    }
    out.push_str("  -h, -help\n        Print this help\n  --version\n        Print the version\n");
    out.push_str(
        "Exit codes: 0 deregistered cleanly, 1 runtime failure, 2 bad usage or configuration.\n",
    );
    out
}

/// Finds the pod's own IP in a hosts file: the address on the line that
/// names `hostname` (Kubernetes writes `IP<TAB>HOSTNAME` there), skipping
/// loopback addresses.
pub fn pod_ip_from_hosts(contents: &str, hostname: &str) -> Option<String> {
    let hostname = hostname.trim();
    if hostname.is_empty() {
        return None;
    }
    for line in contents.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let Some(addr) = fields.next() else { continue };
        let Ok(ip) = addr.parse::<IpAddr>() else {
            continue;
        };
        if ip.is_loopback() || ip.is_unspecified() {
            continue;
        }
        let matches = fields.any(|name| {
            name == hostname
                || name
                    .strip_prefix(hostname)
                    .map(|rest| rest.starts_with('.'))
                    .unwrap_or(false)
        });
        if matches {
            return Some(ip.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::test_env as env;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    fn no_detect() -> impl FnMut() -> Result<String, String> {
        || Err("no hosts file here".to_string())
    }

    fn run(a: &[&str], e: &[(&str, &str)]) -> Result<Config, ConfigError> {
        match parse(args(a), &env(e), &mut no_detect())? {
            Action::Run(c) => Ok(*c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn go_syntax_forms() {
        for form in [
            &["-target-group-name", "tg", "-target-id", "10.0.0.1"][..],
            &["-target-group-name=tg", "-target-id=10.0.0.1"],
            &["--target-group-name", "tg", "--target-id", "10.0.0.1"],
            &["--target-group-name=tg", "--target-id=10.0.0.1"],
        ] {
            let c = run(form, &[]).unwrap();
            assert_eq!(
                c.groups,
                vec![GroupSpec {
                    group: GroupRef::Name("tg".into()),
                    port: None
                }]
            );
            assert_eq!(c.target_id, "10.0.0.1");
            assert!(c.wait_in_service);
            assert_eq!(c.wait_in_service_timeout, Duration::from_secs(300));
            assert_eq!(c.pre_register, None);
        }
    }

    #[test]
    fn booleans_and_durations() {
        let base = ["-target-group-name", "tg", "-target-id", "10.0.0.1"];
        let with = |extra: &[&str]| {
            let mut a = base.to_vec();
            a.extend_from_slice(extra);
            run(&a, &[])
        };
        assert!(!with(&["-wait-in-service=false"]).unwrap().wait_in_service);
        assert!(with(&["-wait-in-service"]).unwrap().wait_in_service);
        assert!(with(&["--wait-drained"]).unwrap().wait_drained);
        assert!(!with(&["-wait-drained=0"]).unwrap().wait_drained);
        let e = with(&["-wait-in-service=maybe"]).unwrap_err();
        assert!(
            e.0.contains("maybe") && e.0.contains("-wait-in-service"),
            "{e}"
        );
        let c = with(&[
            "-wait-in-service-timeout",
            "1m30s",
            "-pre-register-timeout=300ms",
        ])
        .unwrap();
        assert_eq!(c.wait_in_service_timeout, Duration::from_secs(90));
        let c = with(&[
            "-wait-in-service-timeout=5m0s",
            "-deregister-timeout",
            "1.5s",
        ])
        .unwrap();
        assert_eq!(c.wait_in_service_timeout, Duration::from_secs(300));
        assert_eq!(c.deregister_timeout, Duration::from_millis(1500));
        let e = with(&["-deregister-timeout", "1000000000years"]).unwrap_err();
        assert!(e.0.contains("too long"), "{e}");
        let e = with(&["-wait-in-service-timeout", "forever"]).unwrap_err();
        assert!(
            e.0.contains("forever") && e.0.contains("-wait-in-service-timeout"),
            "{e}"
        );
    }

    #[test]
    fn values_starting_with_a_dash_are_values() {
        let c = run(
            &[
                "-target-group-name",
                "tg",
                "-target-id",
                "10.0.0.1",
                "-pre-register-command",
                "-x --y",
            ],
            &[],
        );
        // "-x --y" is one argument: the command, split into words.
        assert_eq!(c.unwrap().pre_register.unwrap().argv, vec!["-x", "--y"]);
    }

    #[test]
    fn bad_usage_is_named() {
        let cases: &[(&[&str], &str)] = &[
            (&["-nope"], "-nope"),
            (&["-target-group-name"], "-target-group-name"),
            (
                &[
                    "-target-group-name",
                    "tg",
                    "-target-id",
                    "10.0.0.1",
                    "extra",
                ],
                "extra",
            ),
            (&["-target-group-name", "tg"], "no target id"),
            (&["-target-id", "10.0.0.1"], "no target group"),
            (
                &["-target-group-name", "tg", "-target-id", "pod"],
                "\"pod\"",
            ),
            (
                &["-target-group-name", "tg:99999", "-target-id", "10.0.0.1"],
                "99999",
            ),
            (
                &["-target-group-name", "bad_name", "-target-id", "10.0.0.1"],
                "bad_name",
            ),
            (
                &["-target-group-arn", "arn:nope", "-target-id", "10.0.0.1"],
                "arn:nope",
            ),
            (
                &[
                    "-target-group-name",
                    "tg",
                    "-target-id",
                    "10.0.0.1",
                    "-target-port",
                    "0",
                ],
                "-target-port",
            ),
            (
                &[
                    "-target-group-name",
                    "tg",
                    "-target-id",
                    "10.0.0.1",
                    "-status-addr",
                    "9090",
                ],
                "-status-addr",
            ),
            (
                &[
                    "-target-group-name",
                    "tg",
                    "-target-id",
                    "10.0.0.1",
                    "-pre-register-command",
                    "'open",
                ],
                "quotes",
            ),
            (
                &[
                    "-target-group-name",
                    "tg",
                    "-target-id",
                    "10.0.0.1",
                    "-log-level",
                    "loud",
                ],
                "loud",
            ),
            (
                &[
                    "-target-group-name",
                    "tg",
                    "-target-id",
                    "10.0.0.1",
                    "-wait-for-http",
                    "https://x",
                ],
                "http://",
            ),
            (
                &[
                    "-target-group-name",
                    "tg",
                    "-target-group-name",
                    "tg",
                    "-target-id",
                    "10.0.0.1",
                ],
                "twice",
            ),
            (&["-x"], "-x"),
            (
                &[
                    "-target-group-name",
                    "tg",
                    "-target-id",
                    "10.0.0.1",
                    "-wait-in-service",
                    "false",
                ],
                "-wait-in-service=false",
            ),
            (
                &["-target-group-name", "tg", "-target-id="],
                "empty value for -target-id",
            ),
            (
                &[
                    "-target-group-name",
                    "tg",
                    "-target-id",
                    "10.0.0.1",
                    "-health-poll-interval",
                    "1ms",
                ],
                "-health-poll-interval 1ms",
            ),
        ];
        for (a, needle) in cases {
            let e = run(a, &[]).unwrap_err();
            assert!(e.0.contains(needle), "{a:?}: {e}");
            assert!(!e.0.contains('\n'), "{e}");
        }
    }

    #[test]
    fn env_fallbacks_and_precedence() {
        let e = [
            ("NLB_TARGET_GROUP_NAME", "a:8080, b"),
            ("NLB_TARGET_ID", "10.0.0.9"),
            ("POD_IP", "10.0.0.8"),
            ("NLB_WAIT_IN_SERVICE", "false"),
            ("NLB_TARGET_PORT", "9000"),
            ("NLB_PRE_REGISTER_COMMAND", "echo 'hello world'"),
            ("NLB_PRE_REGISTER_TIMEOUT", "2s"),
        ];
        let c = run(&[], &e).unwrap();
        assert_eq!(
            c.groups,
            vec![
                GroupSpec {
                    group: GroupRef::Name("a".into()),
                    port: Some(8080)
                },
                GroupSpec {
                    group: GroupRef::Name("b".into()),
                    port: None
                }
            ]
        );
        assert_eq!(c.target_id, "10.0.0.9");
        assert_eq!(c.target_id_source, "NLB_TARGET_ID");
        assert!(!c.wait_in_service);
        assert_eq!(c.target_port, Some(9000));
        let hook = c.pre_register.unwrap();
        assert_eq!(hook.argv, vec!["echo", "hello world"]);
        assert_eq!(hook.timeout, Duration::from_secs(2));

        let c = run(
            &[
                "-target-group-name",
                "z",
                "-target-id",
                "10.0.0.1",
                "-wait-in-service",
            ],
            &e,
        )
        .unwrap();
        assert_eq!(c.groups.len(), 1);
        assert_eq!(c.target_id, "10.0.0.1");
        assert!(c.wait_in_service);

        let c = run(
            &[],
            &[("NLB_TARGET_GROUP_NAME", "a"), ("POD_IP", "10.0.0.8")],
        )
        .unwrap();
        assert_eq!(
            (c.target_id.as_str(), c.target_id_source.as_str()),
            ("10.0.0.8", "POD_IP")
        );
        let e = run(
            &[],
            &[
                ("NLB_TARGET_GROUP_NAME", "a"),
                ("POD_IP", "10.0.0.8"),
                ("NLB_DEREGISTER_TIMEOUT", "x"),
            ],
        )
        .unwrap_err();
        assert!(e.0.contains("NLB_DEREGISTER_TIMEOUT"), "{e}");
    }

    #[test]
    fn arns_with_and_without_port() {
        let arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/my-tg/73e2d6bc24d8a067";
        let c = run(
            &[
                "-target-group-arn",
                arn,
                "-target-group-arn",
                &format!("{arn}:8443"),
                "-target-id",
                "10.0.0.1",
            ],
            &[],
        );
        // The same ARN twice with different ports is two registrations.
        let c = c.unwrap();
        assert_eq!(
            c.groups[0],
            GroupSpec {
                group: GroupRef::Arn(arn.into()),
                port: None
            }
        );
        assert_eq!(
            c.groups[1],
            GroupSpec {
                group: GroupRef::Arn(arn.into()),
                port: Some(8443)
            }
        );
        let c = run(
            &[],
            &[
                ("NLB_TARGET_GROUP_ARN", &format!("{arn},{arn}:81")),
                ("POD_IP", "fd00::5"),
            ],
        )
        .unwrap();
        assert_eq!(c.groups.len(), 2);
        assert_eq!(c.target_id, "fd00::5");
    }

    #[test]
    fn detection_is_the_last_resort() {
        let mut calls = 0;
        let mut detect = || {
            calls += 1;
            Ok("10.1.2.3".to_string())
        };
        match parse(args(&["-target-group-name", "tg"]), &env(&[]), &mut detect).unwrap() {
            Action::Run(c) => {
                assert_eq!(c.target_id, "10.1.2.3");
                assert_eq!(c.target_id_source, "/etc/hosts");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(calls, 1);
    }

    #[test]
    fn help_and_version() {
        for h in ["-h", "-help", "--help", "--h"] {
            assert_eq!(
                parse(args(&[h]), &env(&[]), &mut no_detect()).unwrap(),
                Action::Help
            );
        }
        assert_eq!(
            parse(args(&["--version"]), &env(&[]), &mut no_detect()).unwrap(),
            Action::Version
        );
        let u = usage("prog");
        for f in FLAGS {
            assert!(u.contains(&format!("-{}", f.name)));
        }
        assert!(u.contains("(default 5m)"));
        assert!(u.contains("NLB_WAIT_IN_SERVICE_TIMEOUT"));
    }

    #[test]
    fn hosts_file_detection() {
        let hosts = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
                     fe00::0\tip6-localnet\n10.244.1.17\tweb-6d4cf56db6-x2x9z\n";
        assert_eq!(
            pod_ip_from_hosts(hosts, "web-6d4cf56db6-x2x9z").as_deref(),
            Some("10.244.1.17")
        );
        assert_eq!(pod_ip_from_hosts(hosts, "other"), None);
        let sub = "10.0.0.7\tweb-0.web.default.svc.cluster.local\tweb-0\n";
        assert_eq!(pod_ip_from_hosts(sub, "web-0").as_deref(), Some("10.0.0.7"));
        assert_eq!(pod_ip_from_hosts("127.0.1.1 box\n", "box"), None);
        assert_eq!(pod_ip_from_hosts("garbage line\n\n", "garbage"), None);
        assert_eq!(pod_ip_from_hosts(hosts, ""), None);
    }
}
