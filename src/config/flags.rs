//! The flag table and the command line reader.
//!
//! [`FLAGS`] is the one place a flag is described: its name (from which its
//! `NLB_*` variable is derived), whether it takes a value, its help text and
//! its default. The reader, the resolver's defaults and `-h` all read it.

use super::ConfigError;
use std::ffi::OsString;

/// What kind of value a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `-flag` alone means true; a value only after `=`.
    Bool,
    /// `-flag value` or `-flag=value`.
    Value,
}

/// One flag: name (without dashes), kind, help text, default ("" for none).
pub(super) struct Flag {
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    pub(super) help: &'static str,
    pub(super) default: &'static str,
}

const fn value(name: &'static str, help: &'static str, default: &'static str) -> Flag {
    Flag {
        name,
        kind: Kind::Value,
        help,
        default,
    }
}

const fn boolean(name: &'static str, help: &'static str, default: &'static str) -> Flag {
    Flag {
        name,
        kind: Kind::Bool,
        help,
        default,
    }
}

/// Every flag, in the order `-h` lists them.
#[rustfmt::skip]
pub(super) const FLAGS: &[Flag] = &[
    value("target-group-name", "Target group to register in, by name; NAME or NAME:PORT; repeatable (env: comma-separated)", ""),
    value("target-group-arn", "Target group to register in, by ARN (no DescribeTargetGroups call); ARN or ARN:PORT; repeatable", ""),
    value("target-id", "Target IP (default: $POD_IP, then the pod's IP from /etc/hosts)", ""),
    value("target-port", "Port for target groups given without their own (default: the group's port)", ""),
    value("target-availability-zone", "AvailabilityZone of the target, e.g. 'all' for an IP outside the VPC", ""),
    value("region", "AWS region (default: $AWS_REGION, then $AWS_DEFAULT_REGION)", ""),
    value("role-arn", "Role to assume with the credentials found (env, IRSA, Pod Identity, IMDS); its credentials sign the ELBv2 calls (target groups in another account)", ""),
    value("role-external-id", "ExternalId to send when assuming -role-arn, if its trust policy requires one", ""),
    value("role-session-name", "Role session name when assuming -role-arn (default: k8s-nlb-registrator-<unix time>)", ""),
    boolean("wait-in-service", "Whether to wait for the target to become healthy", "true"),
    value("wait-in-service-timeout", "How long to wait for the target to become healthy", "5m"),
    value("health-poll-interval", "Interval between DescribeTargetHealth calls (jittered +-20%) after the first look, right after registering; when not given, groups resolved by name are polled at their own HealthCheckIntervalSeconds from when the target can first be healthy", "5s"),
    value("register-timeout", "How long DescribeTargetGroups/RegisterTargets are retried on throttling and faults", "2m"),
    value("deregister-timeout", "How long DeregisterTargets is retried after a signal", "20s"),
    boolean("wait-drained", "After deregistering, wait until the target is no longer draining", "false"),
    value("wait-drained-timeout", "How long to wait for draining to finish; also bounds -drain-quiet-period (both counted from the deregistration)", "5m"),
    value("drain-quiet-period", "After deregistering (and -wait-drained), hold /drain until no new connection to the target port has come for this long (read from /proc/net/tcp*); off when empty or 0", ""),
    value("drain-ignore-from", "CIDR whose connections never count as new in -drain-quiet-period, e.g. the node's IP for the kubelet's probes: $(HOST_IP)/32; repeatable (env: comma-separated)", ""),
    value("pre-register-command", "Command to execute before the target is registered (words split like sh; run with /bin/sh -c if it uses && || | ; > < $( or backquotes)", ""),
    value("pre-register-http", "http:// URL to GET before the target is registered (2xx is success; instead of -pre-register-command)", ""),
    value("pre-register-timeout", "How long to wait for the pre-register command or HTTP hook", "5s"),
    value("post-register-command", "Command to execute after the target is registered (and healthy)", ""),
    value("post-register-http", "http:// URL to GET after the target is registered (and healthy)", ""),
    value("post-register-timeout", "How long to wait for the post-register command or HTTP hook", "5s"),
    value("post-deregister-command", "Command to execute after the target is deregistered", ""),
    value("post-deregister-http", "http:// URL to GET after the target is deregistered", ""),
    value("post-deregister-timeout", "How long to wait for the post-deregister command or HTTP hook", "5s"),
    value("status-addr", "HOST:PORT of the status listener (/healthz, /readyz, /drain, /lb-health, /metrics); off when empty", ""),
    value("lb-health-addr", "HOST:PORT of a listener serving only GET /lb-health, for the target group's health check; off when empty", ""),
    value("wait-for-tcp", "Before registering, wait until HOST:PORT accepts TCP connections", ""),
    value("wait-for-http", "Before registering, wait until this http:// URL answers 2xx", ""),
    value("wait-for-timeout", "How long to wait for -wait-for-tcp / -wait-for-http", "5m"),
    value("log-level", "error, warn, info, debug or trace (RUST_LOG filters also work)", "info"),
    value("log-format", "text, or json: one object per line with the step's fields as keys", "text"),
    boolean("check", "Preflight: report on credentials, target groups, permissions and hook programs, change nothing, exit (0 would work, 1 would not)", "false"),
];

pub(super) fn flag(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.name == name)
}

/// The default of a flag from the table ("" when it has none).
pub(super) fn default_of(name: &str) -> &'static str {
    flag(name).map(|f| f.default).unwrap_or_default()
}

/// The environment variable of a flag: `NLB_` + upper snake case.
pub fn env_name(flag: &str) -> String {
    format!("NLB_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// Raw values gathered from flags, in command line order, before env fallback.
#[derive(Default)]
pub(super) struct Raw {
    values: Vec<(&'static str, String)>,
}

impl Raw {
    /// The last value given for a flag.
    pub(super) fn last(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value given for a (repeatable) flag.
    pub(super) fn all(&self, name: &str) -> Vec<&str> {
        self.values
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What the command line says, before the environment is consulted.
pub(super) enum Parsed {
    /// Flags to resolve.
    Flags(Raw),
    /// `-h`.
    Help,
    /// `--version`.
    Version,
}

/// Reads the arguments (without the program name) into raw flag values.
pub(super) fn read_args(args: Vec<OsString>) -> Result<Parsed, ConfigError> {
    let mut parser = lexopt::Parser::from_args(normalize(args));
    let mut raw = Raw::default();
    while let Some(arg) = parser.next().map_err(lexopt_error)? {
        match arg {
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help" | "h") => return Ok(Parsed::Help),
            lexopt::Arg::Long("version") => return Ok(Parsed::Version),
            lexopt::Arg::Long(name) => {
                let f = flag(name).ok_or_else(|| undefined(name))?;
                raw.values.push((f.name, read_value(&mut parser, f)?));
            }
            lexopt::Arg::Short(c) => return Err(undefined(&c.to_string())),
            lexopt::Arg::Value(v) => return Err(unexpected(&v.to_string_lossy())),
        }
    }
    Ok(Parsed::Flags(raw))
}

/// The value of flag `f`, just read: a separate argument for a value flag,
/// only `=value` (else `true`) for a boolean one.
fn read_value(parser: &mut lexopt::Parser, f: &Flag) -> Result<String, ConfigError> {
    let value = match f.kind {
        Kind::Value => parser.value().map_err(lexopt_error)?,
        Kind::Bool => parser
            .optional_value()
            .unwrap_or_else(|| OsString::from("true")),
    };
    value
        .into_string()
        .map_err(|v| ConfigError(format!("value of -{} is not UTF-8: {v:?}", f.name)))
}

fn undefined(name: &str) -> ConfigError {
    ConfigError(format!("flag provided but not defined: -{name} (see -h)"))
}

fn unexpected(v: &str) -> ConfigError {
    let hint = if super::value::parse_bool("", v).is_ok() {
        " (boolean flags take their value after '=', e.g. -wait-in-service=false)"
    } else {
        " (this program takes flags only; see -h)"
    };
    ConfigError(format!("unexpected argument {v:?}{hint}"))
}

fn lexopt_error(e: lexopt::Error) -> ConfigError {
    ConfigError(match e {
        lexopt::Error::MissingValue { option: Some(o) } => {
            format!("flag needs an argument: -{}", o.trim_start_matches('-'))
        }
        lexopt::Error::UnexpectedValue { option, value } => format!(
            "flag -{} does not take a value (got {:?})",
            option.trim_start_matches('-'),
            value.to_string_lossy()
        ),
        other => other.to_string(),
    })
}

/// Rewrites Go-style `-name` into `--name` in flag positions, so lexopt
/// parses it as a long option. A value flag's next argument is a value
/// (`-pre-register-command -x` keeps `-x`), and so is all after `--`.
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
        match s.strip_prefix("--").or_else(|| s.strip_prefix('-')) {
            Some(body) if !body.is_empty() => {
                let name = body.split('=').next().unwrap_or_default();
                takes_value =
                    !body.contains('=') && flag(name).is_some_and(|f| f.kind == Kind::Value);
                if s.starts_with("--") || name.len() == 1 {
                    out.push(arg);
                } else {
                    out.push(OsString::from(format!("-{s}")));
                }
            }
            _ => out.push(arg),
        }
    }
    out
}

/// The usage text printed by `-h`, in the style of Go's flag package.
///
/// `scripts/validate_manifests.py` reads the flag list from it: each flag
/// starts a line `  -NAME` (` value` when it takes one).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_a_valid_value() {
        for f in FLAGS.iter().filter(|f| !f.default.is_empty()) {
            let ok = match (f.kind, f.name) {
                (Kind::Bool, _) => crate::config::value::parse_bool(f.name, f.default).is_ok(),
                (_, "log-level") => {
                    crate::config::value::parse_log_level(f.name, f.default).is_ok()
                }
                (_, "log-format") => {
                    crate::config::value::parse_log_format(f.name, f.default).is_ok()
                }
                _ => crate::config::value::parse_duration(f.name, f.default).is_ok(),
            };
            assert!(ok, "default of -{} is {:?}", f.name, f.default);
        }
    }
}
