//! The flag table, `-h`, and Go's flag syntax on top of lexopt.

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
        out += &format!("  -{name}{arg}\n        {help}");
        if !default.is_empty() {
            out += &format!(" (default {default})");
        }
        out += &format!(" [env {}]\n", env_name(name));
    }
    out + "  -h, -help\n        Print this help\n  --version\n        Print the version\n\
           Exit codes: 0 deregistered cleanly, 1 runtime failure, 2 bad usage or configuration.\n"
}
