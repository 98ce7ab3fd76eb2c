//! Parsers for one value each. `what` names the flag or variable the value
//! came from (`-target-port`, `NLB_TARGET_PORT`), so every error says where
//! to look.

use super::{err, ConfigError, GroupRef, GroupSpec};
use std::time::Duration;

/// Longest duration accepted for any flag.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a Go boolean (`1 0 t f T F true false TRUE FALSE True False`).
pub(super) fn parse_bool(what: &str, v: &str) -> Result<bool, ConfigError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => err(format!(
            "invalid boolean value {v:?} for {what}: use true or false"
        )),
    }
}

/// Parses a duration in Go's or humantime's form (`5s`, `1m30s`, `300ms`, `1.5s`, `2m 10s`).
pub(super) fn parse_duration(what: &str, v: &str) -> Result<Duration, ConfigError> {
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

/// Parses a TCP port, 1-65535.
pub(super) fn parse_port(what: &str, v: &str) -> Result<u16, ConfigError> {
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

/// Parses `NAME` or `NAME:PORT`.
pub(super) fn parse_group_name(what: &str, v: &str) -> Result<GroupSpec, ConfigError> {
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

/// Parses `ARN` or `ARN:PORT`.
pub(super) fn parse_group_arn(what: &str, v: &str) -> Result<GroupSpec, ConfigError> {
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

/// Parses `HOST:PORT` (host non-empty).
pub(super) fn parse_host_port(what: &str, v: &str) -> Result<String, ConfigError> {
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

/// Accepts an `http://` URL with something after the scheme.
pub(super) fn parse_http_url(what: &str, v: &str) -> Result<String, ConfigError> {
    if !v.starts_with("http://") || v.len() <= "http://".len() {
        return err(format!(
            "invalid URL {v:?} for {what}: must start with http://"
        ));
    }
    Ok(v.to_owned())
}

/// Parses a log level, any case; returns it in lower case.
pub(super) fn parse_log_level(what: &str, v: &str) -> Result<String, ConfigError> {
    let l = v.to_ascii_lowercase();
    if !["off", "error", "warn", "info", "debug", "trace"].contains(&l.as_str()) {
        return err(format!(
            "invalid log level {v:?} for {what}: use error, warn, info, debug or trace"
        ));
    }
    Ok(l)
}

/// Any text, as given.
pub(super) fn parse_text(_what: &str, v: &str) -> Result<String, ConfigError> {
    Ok(v.to_owned())
}

/// Splits a hook command into words by POSIX shell rules.
pub(super) fn split_command(what: &str, v: &str) -> Result<Vec<String>, ConfigError> {
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
