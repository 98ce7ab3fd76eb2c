//! Command line (Go's flag syntax, as the Go original) and an `NLB_*` variable for every flag:
//! a flag beats its variable, which beats the default. The table in `resolve` gives the names,
//! defaults and `-h`; `value` parses single values.

mod resolve;
mod value;

pub use resolve::{PROGRAM, VERSION};
pub use value::{pod_ip_from_hosts, shell_operator, SHELL};

use crate::aws::credentials::Secret;
use crate::env::Env;
use resolve::{flag, is_bool, resolve, Settings};
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
        let (GroupRef::Name(n) | GroupRef::Arn(n)) = self;
        f.write_str(n)
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
    /// The program and arguments of a command hook (empty for an HTTP hook).
    pub fn argv(&self) -> &[String] {
        match &self.action {
            HookAction::Command(argv) => argv,
            HookAction::Http(_) => &[],
        }
    }

    /// What it is, for logs: `pre-register command`, `pre-register HTTP hook`.
    pub fn describe(&self) -> String {
        let http = matches!(self.action, HookAction::Http(_));
        let kind = if http { "HTTP hook" } else { "command" };
        format!("{} {kind}", self.name)
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
    /// Whether `ip` is in the range; an IPv4-mapped peer (`/proc/net/tcp6`) counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip| match ip {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        };
        let ((net, n), (ip, m)) = (bits(self.ip), bits(ip.to_canonical()));
        let host_bits = n - u32::from(self.prefix);
        n == m && (net ^ ip).checked_shr(host_bits).unwrap_or(0) == 0
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
    /// `-role-arn`: the role to assume, `arn:PARTITION:iam::ACCOUNT_ID:role/[PATH/]NAME`.
    pub role_arn: Option<String>,
    /// `-role-external-id`.
    pub role_external_id: Option<Secret>,
    /// `-role-session-name`; `None`: the default (prefix and time).
    pub role_session_name: Option<String>,
    /// `-wait-in-service`.
    pub wait_in_service: bool,
    /// `-wait-in-service-timeout`.
    pub wait_in_service_timeout: Duration,
    /// `-health-poll-interval`.
    pub health_poll_interval: Duration,
    /// The interval was given: it overrides the pace of the groups' health checks.
    pub health_poll_explicit: bool,
    /// `-register-timeout`.
    pub register_timeout: Duration,
    /// `-deregister-timeout`.
    pub deregister_timeout: Duration,
    /// `-wait-drained`.
    pub wait_drained: bool,
    /// `-wait-drained-timeout`.
    pub wait_drained_timeout: Duration,
    /// The hooks set (`-STEP-command` or `-STEP-http`), in the order their steps run.
    pub hooks: Vec<Hook>,
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
    /// `-log-format json`: one JSON object a line, the step's fields as keys.
    pub log_json: bool,
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
    /// The hook of a step (`pre-register`, `post-register`, `post-deregister`), if set.
    pub fn hook(&self, step: &str) -> Option<&Hook> {
        self.hooks.iter().find(|h| h.name == step)
    }

    /// Whether `-wait-for-tcp` or `-wait-for-http` is set.
    pub fn has_app_check(&self) -> bool {
        self.wait_for_tcp.is_some() || self.wait_for_http.is_some()
    }
}

/// Refuses a hook in shell syntax when the image has no `/bin/sh` (`has_shell`).
fn check_shell(cfg: &Config, has_shell: bool) -> Result<(), ConfigError> {
    match cfg.hooks.iter().find_map(|h| Some((h.name, h.shell_syntax()?))) {
        Some((name, op)) if !has_shell => Err(format!(
            "-{name}-command uses shell syntax ({op}) and needs {SHELL}, which this image does not have: \
             use an image with a shell, or a command without shell operators"
        )),
        _ => Ok(()),
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run the sidecar.
    Run(Box<Config>),
    /// Print this (`-h`, `--version`) and exit 0.
    Print(String),
}

/// A usage error: one line naming the flag or variable and the bad value.
pub type ConfigError = String;

/// Parses the arguments (without the program name), then the environment.
///
/// # Errors
/// A [`ConfigError`] naming the flag or variable and the bad value.
pub fn parse(args: Vec<OsString>, env: &dyn Env) -> Result<Action, ConfigError> {
    use lexopt::Arg::{Long, Short, Value};
    let mut given = Vec::new();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        // Go spells long flags with one dash: lexopt reads `-name=v` as the
        // short flag `n` with `ame=v` attached.
        let (head, attached, sep) = match arg {
            Long(n) => (n.to_owned(), parser.optional_value(), "="),
            Short(c) => (c.to_string(), parser.optional_value(), ""),
            Value(v) if parse_bool("", &v.to_string_lossy()).is_ok() => {
                let hint = "boolean flags take their value after '=', e.g. -wait-in-service=false";
                return Err(format!("unexpected argument {v:?} ({hint})"));
            }
            Value(v) => return Err(format!("unexpected argument {v:?} (flags only; see -h)")),
        };
        let arg = match attached.map(OsString::into_string).transpose() {
            Ok(None) => head,
            Ok(Some(rest)) => head + sep + &rest,
            Err(v) => return Err(format!("argument -{head}{sep}{v:?} is not UTF-8")),
        };
        let (name, value) = arg
            .split_once('=')
            .map_or((&arg[..], None), |(n, v)| (n, Some(v)));
        let (name, default) = match name {
            "h" | "help" => return Ok(Action::Print(resolve::usage())),
            "version" => return Ok(Action::Print(format!("{PROGRAM} {VERSION}\n"))),
            n => flag(n).ok_or_else(|| format!("flag provided but not defined: -{n} (see -h)"))?,
        };
        let value = match value {
            Some(v) => v.to_owned(),
            None if is_bool(default) => "true".to_owned(),
            None => parser
                .value()
                .map_err(|_| format!("flag needs an argument: -{name}"))?
                .into_string()
                .map_err(|v| format!("value of -{name} is not UTF-8: {v:?}"))?,
        };
        given.push((name, value));
    }
    resolve(&Settings { given, env }).map(|c| Action::Run(Box::new(c)))
}

#[cfg(test)]
mod tests;
