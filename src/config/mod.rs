//! Command line and environment, as the Go original read them (Go's flag
//! syntax) plus an `NLB_*` variable for every flag: a flag beats its
//! variable, which beats the default. One table in `flags` gives the names,
//! the variables, the defaults and `-h`; `value` parses single values.

mod flags;
mod hosts;
mod value;

pub use flags::{env_name, usage};
pub use hosts::pod_ip_from_hosts;
pub use value::{shell_operator, MAX_DURATION, SHELL};

use crate::aws::credentials::Secret;
use crate::env::Env;
use flags::{flag, is_bool};
use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;
use value::*;

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

/// One target group to register in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// The group.
    pub group: GroupRef,
    /// The target's port in it (`NAME:PORT`), else `-target-port`.
    pub port: Option<u16>,
}

/// How log lines are written (`-log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `TIMESTAMP LEVEL message`.
    #[default]
    Text,
    /// One JSON object per line, the step's fields as their own keys.
    Json,
}

/// The role to assume (`-role-arn` and its companions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleConfig {
    /// `arn:PARTITION:iam::ACCOUNT_ID:role/[PATH/]NAME`.
    pub arn: String,
    /// `-role-external-id`.
    pub external_id: Option<Secret>,
    /// `-role-session-name`; `None`: the default (prefix and time).
    pub session_name: Option<String>,
}

/// A hook of one step: a command or an HTTP GET, and its timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// The step, e.g. `pre-register`.
    pub name: &'static str,
    /// What it does.
    pub action: HookAction,
    /// How long it may run.
    pub timeout: Duration,
}

/// What a hook does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookAction {
    /// Runs this program with these arguments (`-*-command`).
    Command(Vec<String>),
    /// GETs this `http://` URL; 2xx is success (`-*-http`).
    Http(String),
}

impl Hook {
    /// A command hook.
    pub fn command(name: &'static str, argv: Vec<String>, timeout: Duration) -> Self {
        let action = HookAction::Command(argv);
        Hook {
            name,
            action,
            timeout,
        }
    }

    /// The program and arguments of a command hook (empty for an HTTP hook).
    pub fn argv(&self) -> &[String] {
        match &self.action {
            HookAction::Command(argv) => argv,
            HookAction::Http(_) => &[],
        }
    }

    /// What it is, for logs: `pre-register command`, `pre-register HTTP hook`.
    pub fn describe(&self) -> String {
        match self.action {
            HookAction::Command(_) => format!("{} command", self.name),
            HookAction::Http(_) => format!("{} HTTP hook", self.name),
        }
    }

    /// The shell operator that made this hook `/bin/sh -c COMMAND`, if any.
    pub fn shell_syntax(&self) -> Option<&'static str> {
        match self.argv() {
            [sh, c, cmd] if sh == SHELL && c == "-c" => shell_operator(cmd),
            _ => None,
        }
    }
}

/// An address range (`-drain-ignore-from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    ip: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range; an IPv4-mapped IPv6 address (an IPv4
    /// peer of a dual-stack socket in `/proc/net/tcp6`) counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, ip, bits) = match (self.ip, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => (u32::from(n).into(), u32::from(a).into(), 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
            _ => return false,
        };
        (net ^ ip)
            .checked_shr(bits - u32::from(self.prefix))
            .unwrap_or(0)
            == 0
    }
}

impl std::str::FromStr for Cidr {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        parse_cidr("a CIDR", s)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// At least one, none twice.
    pub groups: Vec<GroupSpec>,
    /// The target's IP, in canonical text.
    pub target_id: String,
    /// Where `target_id` came from (flag, variable, /etc/hosts), for the log.
    pub target_id_source: String,
    /// `-target-port`: for groups without their own.
    pub target_port: Option<u16>,
    /// `-target-availability-zone`.
    pub availability_zone: Option<String>,
    /// `-region` or `NLB_REGION`; the AWS variables are read elsewhere.
    pub region: Option<String>,
    /// `-role-arn` and its companions.
    pub role: Option<RoleConfig>,
    /// `-wait-in-service`.
    pub wait_in_service: bool,
    /// `-wait-in-service-timeout`.
    pub wait_in_service_timeout: Duration,
    /// `-health-poll-interval`.
    pub health_poll_interval: Duration,
    /// The interval was given: it overrides the pace of the group's own
    /// health check settings.
    pub health_poll_explicit: bool,
    /// `-register-timeout`.
    pub register_timeout: Duration,
    /// `-deregister-timeout`.
    pub deregister_timeout: Duration,
    /// `-wait-drained`.
    pub wait_drained: bool,
    /// `-wait-drained-timeout`.
    pub wait_drained_timeout: Duration,
    /// `-pre-register-command` or `-pre-register-http`.
    pub pre_register: Option<Hook>,
    /// `-post-register-command` or `-post-register-http`.
    pub post_register: Option<Hook>,
    /// `-post-deregister-command` or `-post-deregister-http`.
    pub post_deregister: Option<Hook>,
    /// `-status-addr`.
    pub status_addr: Option<String>,
    /// `-wait-for-tcp`.
    pub wait_for_tcp: Option<String>,
    /// `-wait-for-http`.
    pub wait_for_http: Option<String>,
    /// `-wait-for-timeout`.
    pub wait_for_timeout: Duration,
    /// `-log-level`, only when given: without it, `RUST_LOG` decides.
    pub log_level: Option<String>,
    /// `-log-format`.
    pub log_format: LogFormat,
    /// `-check`: report on the setup and exit, changing nothing.
    pub check: bool,
    /// `-drain-quiet-period`; `None` when off (empty or 0).
    pub drain_quiet_period: Option<Duration>,
    /// `-lb-health-addr`.
    pub lb_health_addr: Option<String>,
    /// `-drain-ignore-from`.
    pub drain_ignore_from: Vec<Cidr>,
}

impl Config {
    /// The hooks that are set, in the order they run.
    pub fn hooks(&self) -> impl Iterator<Item = &Hook> {
        [
            &self.pre_register,
            &self.post_register,
            &self.post_deregister,
        ]
        .into_iter()
        .flatten()
    }

    /// Whether `-wait-for-tcp` or `-wait-for-http` is set.
    pub fn has_app_check(&self) -> bool {
        self.wait_for_tcp.is_some() || self.wait_for_http.is_some()
    }
}

/// Refuses a hook in shell syntax when the image has no `/bin/sh`
/// (`has_shell`): it could never run as meant.
///
/// # Errors
/// A [`ConfigError`] naming the hook's flag and the operator.
pub fn check_shell(cfg: &Config, has_shell: bool) -> Result<(), ConfigError> {
    let shell_hook = cfg.hooks().find_map(|h| Some((h.name, h.shell_syntax()?)));
    match shell_hook.filter(|_| !has_shell) {
        Some((name, op)) => err(format!(
            "-{name}-command uses shell syntax ({op}) and needs {SHELL}, which this image does not have: \
             use an image with a shell, or a command without shell operators"
        )),
        None => Ok(()),
    }
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

/// Parses the arguments (without the program name), then the environment.
/// `detect_ip` is called only when no flag, `NLB_TARGET_ID` or `POD_IP`
/// gives the target id; it returns the pod's IP or why not.
///
/// # Errors
/// A [`ConfigError`] naming the flag or variable and the bad value.
pub fn parse(
    args: Vec<OsString>,
    env: &dyn Env,
    detect_ip: &mut dyn FnMut() -> Result<String, String>,
) -> Result<Action, ConfigError> {
    use lexopt::Arg::{Long, Short, Value};
    let mut given = Vec::new();
    let mut parser = lexopt::Parser::from_args(flags::go_style(args));
    while let Some(arg) = parser.next().map_err(|e| ConfigError(e.to_string()))? {
        let (name, default) = match arg {
            Short('h') | Long("h" | "help") => return Ok(Action::Help),
            Long("version") => return Ok(Action::Version),
            Long(n) => flag(n).ok_or_else(|| undefined(n))?,
            Short(c) => return Err(undefined(&c.to_string())),
            Value(v) => return Err(unexpected(&v.to_string_lossy())),
        };
        let value = if is_bool(default) {
            parser.optional_value().unwrap_or_else(|| "true".into())
        } else {
            parser
                .value()
                .map_err(|_| ConfigError(format!("flag needs an argument: -{name}")))?
        };
        let value = value
            .into_string()
            .map_err(|v| ConfigError(format!("value of -{name} is not UTF-8: {v:?}")))?;
        given.push((name, value));
    }
    resolve(&Settings { given, env }, detect_ip).map(|c| Action::Run(Box::new(c)))
}

fn undefined(name: &str) -> ConfigError {
    ConfigError(format!("flag provided but not defined: -{name} (see -h)"))
}

fn unexpected(v: &str) -> ConfigError {
    let hint = match parse_bool("", v) {
        Ok(_) => "boolean flags take their value after '=', e.g. -wait-in-service=false",
        Err(_) => "this program takes flags only; see -h",
    };
    ConfigError(format!("unexpected argument {v:?} ({hint})"))
}

/// Where settings are looked up: the flags given, then the environment.
struct Settings<'a> {
    given: Vec<(&'static str, String)>,
    env: &'a dyn Env,
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
            .map_or_else(|| format!("-{name}"), |(_, from)| from)
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
        match self.lookup(name) {
            Some((v, from)) => parse(&from, &v),
            None => parse(
                &format!("the default of -{name}"),
                flag(name).unwrap_or_default().1,
            ),
        }
    }

    /// A repeatable setting: every value of the flag, else its variable's;
    /// each a comma-separated list.
    fn list<T>(&self, name: &str, parse: ParseFn<T>) -> Result<Vec<T>, ConfigError> {
        let given: Vec<&str> = self
            .given
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        let var = env_name(name);
        let env = self.env.var(&var);
        let (from, values) = match given.is_empty() {
            true => (var, env.as_deref().into_iter().collect()),
            false => (format!("-{name}"), given),
        };
        let items = values.into_iter().flat_map(|v| v.split(',')).map(str::trim);
        items
            .filter(|s| !s.is_empty())
            .map(|s| parse(&from, s))
            .collect()
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
        match groups
            .iter()
            .enumerate()
            .find(|(i, g)| groups[..*i].contains(g))
        {
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
        let found = match self.lookup("target-id") {
            Some((v, from)) if v.trim().is_empty() => {
                return err(format!("empty value for {from}: give the pod IP, or leave the flag out to use POD_IP"))
            }
            Some(found) => found,
            None => match self.env.var("POD_IP") {
                Some(v) => (v, "POD_IP".to_owned()),
                None => match detect_ip() {
                    Ok(ip) => (ip, "/etc/hosts".to_owned()),
                    Err(why) => return err(format!(
                        "no target id: set -target-id, NLB_TARGET_ID or POD_IP (Downward API status.podIP); \
                         detecting it from /etc/hosts failed: {why}"
                    )),
                },
            },
        };
        match found.0.trim().parse::<IpAddr>() {
            Ok(ip) => Ok((ip.to_string(), found.1)),
            Err(_) => err(format!(
                "invalid target id {:?} from {}: must be an IP address (ip target groups)",
                found.0, found.1
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
        let Some(d) = self
            .optional(name, parse_duration)?
            .filter(|d| !d.is_zero())
        else {
            return Ok(None);
        };
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
        match c
            .groups
            .iter()
            .find(no_port)
            .filter(|_| c.target_port.is_none())
        {
            Some(g) => err(format!(
                "{from} watches the target's port, unknown for {}: give -target-port or ARN:PORT",
                g.group
            )),
            None => Ok(Some(d)),
        }
    }
}

/// Builds the configuration. Fields are checked in the order written, so
/// the first bad setting is the one reported.
fn resolve(
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

#[cfg(test)]
mod tests;
