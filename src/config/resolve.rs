//! The flag table and `-h`; from the flags given and the environment to a [`Config`]: a flag
//! beats its `NLB_*` variable, which beats the table's default.

use super::value::*;
use super::{check_shell, Config, ConfigError, GroupRef, GroupSpec, Hook, HookAction};
use crate::env::Env;
use std::net::IpAddr;
use std::time::Duration;

/// The program's name and version, for `-h`, `--version` and errors.
pub const PROGRAM: &str = env!("CARGO_PKG_NAME");
/// The version `--version` prints.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every flag as `(name, default, help)`, in `-h`'s order; "" is none. A default `true` or
/// `false` makes a boolean: `-flag` alone means true, a value comes only after `=`.
#[rustfmt::skip]
pub(super) const FLAGS: &[(&str, &str, &str)] = &[
    ("target-group-name", "", "Target group to register in, by name; NAME or NAME:PORT; repeatable (env: comma-separated)"),
    ("target-group-arn", "", "Target group to register in, by ARN (no DescribeTargetGroups call); ARN or ARN:PORT; repeatable"),
    ("target-id", "", "Target IP (default: $POD_IP, then the pod's IP from /etc/hosts)"),
    ("target-port", "", "Port for target groups given without their own (default: the group's port)"),
    ("target-availability-zone", "", "AvailabilityZone of the target, e.g. 'all' for an IP outside the VPC"),
    ("region", "", "AWS region (default: $AWS_REGION, then $AWS_DEFAULT_REGION)"),
    ("role-arn", "", "Role to assume with the credentials found (env, IRSA, Pod Identity, IMDS); its credentials sign the ELBv2 calls (target groups in another account)"),
    ("role-external-id", "", "ExternalId to send when assuming -role-arn, if its trust policy requires one"),
    ("role-session-name", "", "Role session name when assuming -role-arn (default: k8s-nlb-registrator-<unix time>)"),
    ("wait-in-service", "true", "Whether to wait for the target to become healthy"),
    ("wait-in-service-timeout", "5m", "How long to wait for the target to become healthy"),
    ("health-poll-interval", "5s", "Interval between DescribeTargetHealth calls (jittered +-20%) after the first look, right after registering; when not given, groups resolved by name are polled at their own HealthCheckIntervalSeconds from when the target can first be healthy"),
    ("register-timeout", "2m", "How long DescribeTargetGroups/RegisterTargets are retried on throttling and faults"),
    ("deregister-timeout", "20s", "How long DeregisterTargets is retried after a signal"),
    ("wait-drained", "false", "After deregistering, wait until the target is no longer draining"),
    ("wait-drained-timeout", "5m", "How long to wait for draining to finish; also bounds -drain-quiet-period (both counted from the deregistration)"),
    ("drain-quiet-period", "", "After deregistering (and -wait-drained), hold /drain until no new connection to the target port has come for this long (read from /proc/net/tcp*); off when empty or 0"),
    ("drain-ignore-from", "", "CIDR whose connections never count as new in -drain-quiet-period, e.g. the node's IP for the kubelet's probes: $(HOST_IP)/32; repeatable (env: comma-separated)"),
    ("pre-register-command", "", "Command to execute before the target is registered (words split like sh; run with /bin/sh -c if it uses && || | ; > < $( or backquotes)"),
    ("pre-register-http", "", "http:// URL to GET before the target is registered (2xx is success; instead of -pre-register-command)"),
    ("pre-register-timeout", "5s", "How long to wait for the pre-register command or HTTP hook"),
    ("post-register-command", "", "Command to execute after the target is registered (and healthy)"),
    ("post-register-http", "", "http:// URL to GET after the target is registered (and healthy)"),
    ("post-register-timeout", "5s", "How long to wait for the post-register command or HTTP hook"),
    ("post-deregister-command", "", "Command to execute after the target is deregistered"),
    ("post-deregister-http", "", "http:// URL to GET after the target is deregistered"),
    ("post-deregister-timeout", "5s", "How long to wait for the post-deregister command or HTTP hook"),
    ("status-addr", "", "HOST:PORT of the status listener (/healthz, /readyz, /drain, /lb-health, /metrics); off when empty"),
    ("lb-health-addr", "", "HOST:PORT of a listener serving only GET /lb-health, for the target group's health check; off when empty"),
    ("wait-for-tcp", "", "Before registering, wait until HOST:PORT accepts TCP connections"),
    ("wait-for-http", "", "Before registering, wait until this http:// URL answers 2xx"),
    ("wait-for-timeout", "5m", "How long to wait for -wait-for-tcp / -wait-for-http"),
    ("log-level", "info", "error, warn, info, debug or trace (RUST_LOG filters also work)"),
    ("log-format", "text", "text, or json: one object per line with the step's fields as keys"),
    ("check", "false", "Preflight: report on credentials, target groups, permissions and hook programs, change nothing, exit (0 would work, 1 would not)"),
];

/// The table's row of a flag.
pub(super) fn flag(name: &str) -> Option<(&'static str, &'static str)> {
    FLAGS.iter().find(|f| f.0 == name).map(|f| (f.0, f.1))
}

/// Whether a flag with this default is a boolean.
pub(super) fn is_bool(default: &str) -> bool {
    matches!(default, "true" | "false")
}

/// The environment variable of a flag: `NLB_` + upper snake case.
pub(super) fn env_name(flag: &str) -> String {
    format!("NLB_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// The text `-h` prints, as Go's flag package does; `scripts/validate_manifests.py` and
/// `tests/it/docs.rs` read its `  -NAME[ value]` lines.
pub(super) fn usage() -> String {
    let mut out = format!(
        "Usage of {PROGRAM}:\n\
         Registers this pod's IP in AWS ELBv2 target groups, waits until healthy,\n\
         and deregisters it on SIGTERM/SIGINT. Every flag also reads NLB_<FLAG_NAME>.\n"
    );
    for (name, default, help) in FLAGS {
        let arg = if is_bool(default) { "" } else { " value" };
        let default = (!default.is_empty()).then(|| format!(" (default {default})"));
        let (default, env) = (default.unwrap_or_default(), env_name(name));
        out += &format!("  -{name}{arg}\n        {help}{default} [env {env}]\n");
    }
    out + "  -h, -help\n        Print this help\n  --version\n        Print the version\n\
           Exit codes: 0 deregistered cleanly, 1 runtime failure, 2 bad usage or configuration.\n"
}

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
    fn target_id(&self) -> Result<(String, String), ConfigError> {
        let pod_ip = || self.env.var("POD_IP").map(|v| (v, "POD_IP".to_owned()));
        let detected = |why| {
            format!("no target id: set -target-id, NLB_TARGET_ID or POD_IP (Downward API status.podIP); \
                     detecting it from /etc/hosts failed: {why}")
        };
        let (v, from) = match self.lookup("target-id").or_else(pod_ip) {
            Some(found) => found,
            None => (detect_ip(self.env).map_err(detected)?, "/etc/hosts".into()),
        };
        match v.trim().parse::<IpAddr>() {
            Ok(ip) => Ok((ip.to_string(), from)),
            Err(_) if v.trim().is_empty() => Err(format!(
                "empty value for {from}: give the pod IP, or leave the flag out to use POD_IP"
            )),
            Err(_) => Err(format!(
                "invalid target id {v:?} from {from}: must be an IP address (ip target groups)"
            )),
        }
    }
}

/// Builds the configuration; the first bad setting, in the order written, is reported.
pub(super) fn resolve(s: &Settings<'_>) -> Result<Config, ConfigError> {
    let groups = s.groups()?;
    let (target_id, target_id_source) = s.target_id()?;
    let text = |_: &str, v: &str| Ok(v.to_owned());
    let c = Config {
        groups,
        target_id,
        target_id_source,
        target_port: s.optional("target-port", parse_port)?,
        hooks: ["pre-register", "post-register", "post-deregister"]
            .into_iter()
            .filter_map(|step| s.hook(step).transpose())
            .collect::<Result<_, _>>()?,
        status_addr: s.optional("status-addr", parse_host_port)?,
        wait_for_tcp: s.optional("wait-for-tcp", parse_host_port)?,
        wait_for_http: s.optional("wait-for-http", parse_http_url)?,
        log_level: s.optional("log-level", parse_log_level)?,
        log_json: s.value("log-format", parse_log_format)?,
        check: s.value("check", parse_bool)?,
        health_poll_interval: s.value("health-poll-interval", |w, v| {
            let d = parse_duration(w, v)?;
            let short = format!("{w} {v} is too short: at least 10ms");
            (d >= Duration::from_millis(10)).then_some(d).ok_or(short)
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
        drain_quiet_period: (s.optional("drain-quiet-period", parse_duration)?)
            .filter(|d| !d.is_zero()),
        lb_health_addr: s.optional("lb-health-addr", parse_host_port)?,
        drain_ignore_from: s.list("drain-ignore-from", parse_cidr)?,
    };
    cross_checks(s, c)
}

/// The rules between settings: `-role-external-id` and `-role-session-name` need `-role-arn`;
/// `-drain-quiet-period` (0 is off) is shorter than `-wait-drained-timeout`, which bounds it,
/// and needs a port known for every group (one given by ARN has none of its own); a hook in
/// shell syntax needs `/bin/sh` in the image.
fn cross_checks(s: &Settings<'_>, c: Config) -> Result<Config, ConfigError> {
    for companion in ["role-external-id", "role-session-name"] {
        if c.role_arn.is_none() && s.lookup(companion).is_some_and(|(v, _)| !v.is_empty()) {
            return Err(format!(
                "{} is set but -role-arn (NLB_ROLE_ARN) is not: it only applies to the role to assume",
                s.source(companion)
            ));
        }
    }
    let no_port = |g: &&GroupSpec| matches!(g.group, GroupRef::Arn(_)) && g.port.is_none();
    let (from, fmt) = (s.source("drain-quiet-period"), humantime::format_duration);
    match (c.drain_quiet_period, c.groups.iter().find(no_port)) {
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
        _ => check_shell(&c, std::path::Path::new(SHELL).is_file()).map(|()| c),
    }
}
