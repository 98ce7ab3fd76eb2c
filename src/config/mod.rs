//! Command line and environment: Go's flag syntax, kept compatible with the
//! original program, and an `NLB_*` variable for every flag.
//!
//! Go's `flag` package spells long flags with one dash (`-target-id x`) and
//! also accepts two (`--target-id=x`); booleans take no separate value
//! (`-wait-in-service=false`). lexopt parses the double-dash form, so a
//! first pass rewrites `-name` to `--name` for every argument in a *flag*
//! position (a value such as `-pre-register-command -x` is left alone,
//! because the flag table knows which flags take one). Then lexopt does
//! the parsing and its errors name the flag.
//!
//! One table (`flags`) describes every flag: the reader, the `NLB_*`
//! variable names, the defaults and `-h` all come from it. `value` holds
//! the parsers of single values, `hosts` the `/etc/hosts` reader.
//!
//! Precedence: a flag beats its `NLB_*` variable, which beats the default.
//! `-target-id` falls back to `POD_IP`, then to the pod's own line in
//! `/etc/hosts` (found by the caller-supplied detector, so parsing stays pure).

mod flags;
mod hosts;
mod role;
mod value;

pub use flags::{env_name, usage};
pub use hosts::pod_ip_from_hosts;
pub use role::RoleConfig;
pub use value::{shell_operator, MAX_DURATION, SHELL};

use crate::env::Env;
#[cfg(test)]
use flags::FLAGS;
use flags::{default_of, Parsed, Raw};
use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;
use value::{
    parse_bool, parse_cidr, parse_command, parse_duration, parse_group_arn, parse_group_name,
    parse_hook_url, parse_host_port, parse_http_url, parse_log_format, parse_log_level, parse_port,
    parse_text,
};

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

/// How log lines are written (`-log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `TIMESTAMP LEVEL message`, one line per record.
    #[default]
    Text,
    /// One JSON object per line, the step's fields as their own keys.
    Json,
}

/// A hook: a command or an HTTP GET, and its timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Which step it belongs to, e.g. `pre-register`.
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
        Hook {
            name,
            action: HookAction::Command(argv),
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

    /// The shell operator that makes this hook run as `/bin/sh -c COMMAND`,
    /// or `None` for a plain command run directly (or an HTTP hook).
    pub fn shell_syntax(&self) -> Option<&'static str> {
        match self.argv() {
            [sh, c, cmd] if sh == SHELL && c == "-c" => shell_operator(cmd),
            _ => None,
        }
    }
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
    /// The role to assume for the ELBv2 calls (`-role-arn` and its companions).
    pub role: Option<RoleConfig>,
    /// Wait for healthy.
    pub wait_in_service: bool,
    /// Health wait timeout.
    pub wait_in_service_timeout: Duration,
    /// Health poll interval.
    pub health_poll_interval: Duration,
    /// `-health-poll-interval` (or its variable) was given: the user's
    /// interval overrides the pace the target group's health check settings
    /// would give.
    pub health_poll_explicit: bool,
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
    /// `-log-format`.
    pub log_format: LogFormat,
    /// `-check`: report on the setup and exit, changing nothing.
    pub check: bool,
    /// After deregistering, wait until no new connection to the target
    /// port has been accepted for this long (`-drain-quiet-period`).
    pub drain_quiet_period: Option<Duration>,
    /// Address of the listener that serves `/lb-health` alone.
    pub lb_health_addr: Option<String>,
    /// Peers whose connections never count as new in the drain quiet
    /// period (`-drain-ignore-from`; the kubelet's probes).
    pub drain_ignore_from: Vec<Cidr>,
}

/// An address range (`-drain-ignore-from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    ip: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range. An IPv4-mapped IPv6 address (how
    /// `/proc/net/tcp6` shows an IPv4 peer of a dual-stack socket) is
    /// matched as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (net, ip, bits) = match (self.ip, ip) {
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
        value::parse_cidr("a CIDR", s)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
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

    /// Whether an app check (`-wait-for-tcp` / `-wait-for-http`) is set.
    pub fn has_app_check(&self) -> bool {
        self.wait_for_tcp.is_some() || self.wait_for_http.is_some()
    }
}

/// Refuses at start a hook written in shell syntax when the image has no
/// `/bin/sh` (`has_shell`, checked by the caller): it could never run as
/// meant.
///
/// # Errors
/// A [`ConfigError`] naming the hook's flag and the operator.
pub fn check_shell(cfg: &Config, has_shell: bool) -> Result<(), ConfigError> {
    if has_shell {
        return Ok(());
    }
    match cfg.hooks().find_map(|h| h.shell_syntax().map(|op| (h.name, op))) {
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
    match flags::read_args(args)? {
        Parsed::Help => Ok(Action::Help),
        Parsed::Version => Ok(Action::Version),
        Parsed::Flags(raw) => {
            let settings = Settings { raw: &raw, env };
            resolve(&settings, detect_ip).map(|c| Action::Run(Box::new(c)))
        }
    }
}

/// Where settings are looked up: the flags given, then the environment.
struct Settings<'a> {
    raw: &'a Raw,
    env: &'a dyn Env,
}

/// A value parser: `(where it came from, value)`.
type ParseFn<T> = fn(&str, &str) -> Result<T, ConfigError>;

impl Settings<'_> {
    /// The flag's last value, else its `NLB_*` variable, with a label
    /// naming where it came from.
    fn lookup(&self, name: &str) -> Option<(String, String)> {
        if let Some(v) = self.raw.last(name) {
            return Some((v.to_owned(), format!("-{name}")));
        }
        let var = env_name(name);
        self.env.var(&var).map(|v| (v, var))
    }

    /// A setting that may be absent; an empty value counts as absent.
    fn optional<T>(&self, name: &str, parse: ParseFn<T>) -> Result<Option<T>, ConfigError> {
        match self.lookup(name).filter(|(v, _)| !v.is_empty()) {
            Some((v, from)) => parse(&from, &v).map(Some),
            None => Ok(None),
        }
    }

    /// A setting with a default in the flag table.
    fn with_default<T>(&self, name: &str, parse: ParseFn<T>) -> Result<T, ConfigError> {
        match self.lookup(name) {
            Some((v, from)) => parse(&from, &v),
            None => parse(&format!("the default of -{name}"), default_of(name)),
        }
    }

    fn duration(&self, name: &str) -> Result<Duration, ConfigError> {
        self.with_default(name, parse_duration)
    }

    fn boolean(&self, name: &str) -> Result<bool, ConfigError> {
        self.with_default(name, parse_bool)
    }

    /// The hook of step `name`: `-NAME-command` or `-NAME-http` (absent
    /// when blank; both set is an error), and `-NAME-timeout`.
    fn hook(&self, name: &'static str) -> Result<Option<Hook>, ConfigError> {
        let timeout = self.duration(&format!("{name}-timeout"))?;
        let set = |flag: String| self.lookup(&flag).filter(|(v, _)| !v.trim().is_empty());
        let action = match (set(format!("{name}-command")), set(format!("{name}-http"))) {
            (None, None) => return Ok(None),
            (Some((_, cmd_from)), Some((_, http_from))) => {
                return err(format!(
                "{cmd_from} and {http_from} are both set: a step runs one hook, give one of them"
            ))
            }
            (Some((v, from)), None) => HookAction::Command(parse_command(&from, &v)?),
            (None, Some((v, from))) => HookAction::Http(parse_hook_url(&from, v.trim())?),
        };
        Ok(Some(Hook {
            name,
            action,
            timeout,
        }))
    }

    /// The target groups: names and ARNs add up; for each, the flags
    /// (repeatable) beat its own comma-separated variable.
    fn groups(&self) -> Result<Vec<GroupSpec>, ConfigError> {
        const SOURCES: [(&str, ParseFn<GroupSpec>); 2] = [
            ("target-group-name", parse_group_name),
            ("target-group-arn", parse_group_arn),
        ];
        let mut groups = Vec::new();
        for (name, parse_one) in SOURCES {
            groups.extend(self.list(name, parse_one)?);
        }
        check_groups(&groups)?;
        Ok(groups)
    }

    /// A repeatable setting: every value of the flag, else its
    /// variable's; each value a comma-separated list.
    fn list<T>(&self, name: &str, parse_one: ParseFn<T>) -> Result<Vec<T>, ConfigError> {
        let flags = self.raw.all(name);
        let (from, lists) = if !flags.is_empty() {
            (
                format!("-{name}"),
                flags.into_iter().map(str::to_owned).collect::<Vec<_>>(),
            )
        } else {
            let var = env_name(name);
            (var.clone(), self.env.var(&var).into_iter().collect())
        };
        let items = lists.iter().flat_map(|l| l.split(','));
        items
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| parse_one(&from, item))
            .collect()
    }

    /// The target's IP and where it came from: flag or variable, `POD_IP`,
    /// then the detector.
    fn target_id(
        &self,
        detect_ip: &mut dyn FnMut() -> Result<String, String>,
    ) -> Result<(String, String), ConfigError> {
        if self.raw.last("target-id").map(str::trim) == Some("") {
            return err(
                "empty value for -target-id: give the pod IP, or leave the flag out to use POD_IP"
                    .into(),
            );
        }
        let (id, from) = match self.lookup("target-id").filter(|(v, _)| !v.is_empty()) {
            Some(found) => found,
            None => match self.env.var("POD_IP") {
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
        let Ok(ip) = id.trim().parse::<IpAddr>() else {
            return err(format!(
                "invalid target id {id:?} from {from}: must be an IP address (ip target groups)"
            ));
        };
        // The canonical text (RFC 5952 for IPv6: lowercase, zeros
        // compressed), the form AWS lists targets in.
        Ok((ip.to_string(), from))
    }

    /// `-health-poll-interval`, at least 10ms.
    fn health_poll_interval(&self) -> Result<Duration, ConfigError> {
        let name = "health-poll-interval";
        let d = self.duration(name)?;
        if d < Duration::from_millis(10) {
            let from = self
                .lookup(name)
                .map(|(_, from)| from)
                .unwrap_or_else(|| format!("-{name}"));
            return err(format!(
                "{from} {} is too short: at least 10ms",
                humantime::format_duration(d)
            ));
        }
        Ok(d)
    }
}

impl Settings<'_> {
    /// `-drain-quiet-period` (0 is off): shorter than
    /// `-wait-drained-timeout`, which bounds it, and with a port known for
    /// every group (a group given by ARN has none until one is given).
    fn drain_quiet_period(&self, mut c: Config) -> Result<Config, ConfigError> {
        let name = "drain-quiet-period";
        let Some(d) = self
            .optional(name, parse_duration)?
            .filter(|d| !d.is_zero())
        else {
            return Ok(c);
        };
        let from = self
            .lookup(name)
            .map(|(_, from)| from)
            .unwrap_or_else(|| format!("-{name}"));
        if d >= c.wait_drained_timeout {
            return err(format!(
                "{from} {} can never end within -wait-drained-timeout {}, which bounds it: \
                 raise -wait-drained-timeout",
                humantime::format_duration(d),
                humantime::format_duration(c.wait_drained_timeout)
            ));
        }
        let arn_without_port = c.groups.iter().find(|g| {
            matches!(g.group, GroupRef::Arn(_)) && g.port.is_none() && c.target_port.is_none()
        });
        if let Some(g) = arn_without_port {
            return err(format!(
                "{from} watches the target's port, unknown for {}: give -target-port or ARN:PORT",
                g.group
            ));
        }
        c.drain_quiet_period = Some(d);
        Ok(c)
    }
}

/// At least one group, none twice.
fn check_groups(groups: &[GroupSpec]) -> Result<(), ConfigError> {
    if groups.is_empty() {
        return err(
            "no target group: set -target-group-name or -target-group-arn (or NLB_TARGET_GROUP_NAME / NLB_TARGET_GROUP_ARN)"
                .into(),
        );
    }
    for (i, g) in groups.iter().enumerate() {
        if groups[..i].contains(g) {
            return err(format!("target group {} is given twice", g.group));
        }
    }
    Ok(())
}

/// Builds the configuration. Fields are checked in the order written, so
/// the first bad setting is the one reported.
fn resolve(
    s: &Settings<'_>,
    detect_ip: &mut dyn FnMut() -> Result<String, String>,
) -> Result<Config, ConfigError> {
    let groups = s.groups()?;
    let (target_id, target_id_source) = s.target_id(detect_ip)?;
    Ok(Config {
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
        // No default applied: without the flag, RUST_LOG decides.
        log_level: s.optional("log-level", parse_log_level)?,
        log_format: s.with_default("log-format", parse_log_format)?,
        check: s.boolean("check")?,
        health_poll_interval: s.health_poll_interval()?,
        health_poll_explicit: s
            .lookup("health-poll-interval")
            .is_some_and(|(v, _)| !v.is_empty()),
        availability_zone: s.optional("target-availability-zone", parse_text)?,
        region: s.optional("region", parse_text)?,
        role: s.role()?,
        wait_in_service: s.boolean("wait-in-service")?,
        wait_in_service_timeout: s.duration("wait-in-service-timeout")?,
        register_timeout: s.duration("register-timeout")?,
        deregister_timeout: s.duration("deregister-timeout")?,
        wait_drained: s.boolean("wait-drained")?,
        wait_drained_timeout: s.duration("wait-drained-timeout")?,
        wait_for_timeout: s.duration("wait-for-timeout")?,
        drain_quiet_period: None,
        lb_health_addr: s.optional("lb-health-addr", parse_host_port)?,
        drain_ignore_from: s.list("drain-ignore-from", parse_cidr)?,
    })
    .and_then(|c| s.drain_quiet_period(c))
}

#[cfg(test)]
mod tests;
