//! Parsers for one value each. `what` names the flag or variable the value
//! came from (`-target-port`, `NLB_TARGET_PORT`), so every error says where
//! to look.

use super::{err, Cidr, ConfigError, GroupRef, GroupSpec, LogFormat};
use std::time::Duration;

/// Longest duration accepted for any flag.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses `ADDRESS/PREFIX` (IPv4 or IPv6); a bare address is the one host.
pub(super) fn parse_cidr(what: &str, v: &str) -> Result<Cidr, ConfigError> {
    let (ip, prefix) = v.split_once('/').unwrap_or((v, ""));
    let ip: std::net::IpAddr = ip.parse().map_err(|_| bad_cidr(what, v))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        "" if !v.contains('/') => max,
        p => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| bad_cidr(what, v))?,
    };
    Ok(Cidr { ip, prefix })
}

fn bad_cidr(what: &str, v: &str) -> ConfigError {
    ConfigError(format!(
        "invalid CIDR {v:?} for {what}: expected ADDRESS/PREFIX, e.g. 10.0.0.5/32 or fd00::/64"
    ))
}

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

/// Parses a duration in Go's syntax (`time.ParseDuration`: `0`, `+5s`,
/// `.5s`, `1h2m3.5s`, units ns us µs ms s m h). Negative durations are
/// refused.
pub(super) fn parse_duration(what: &str, v: &str) -> Result<Duration, ConfigError> {
    let t = v.trim();
    let (negative, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let d = go_duration(body).ok_or_else(|| {
        ConfigError(format!(
            "invalid duration {v:?} for {what} (examples: 5s, 1m30s, 300ms, .5s, 1.5h, 0)"
        ))
    })?;
    if negative && !d.is_zero() {
        return err(format!(
            "negative duration {v:?} for {what}: must be 0 or more"
        ));
    }
    // Deadlines are computed as `now + d`: keep them far from overflow.
    if d > MAX_DURATION {
        return err(format!(
            "duration {v:?} for {what} is too long: at most 365 days"
        ));
    }
    Ok(d)
}

/// Nanoseconds per unit of Go's `time.ParseDuration`.
const GO_UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// An unsigned duration in Go's syntax: `0`, or one or more `NUMBER UNIT`
/// where NUMBER is `12`, `1.5`, `.5` or `5.`; `None` when it is not Go's.
/// Values beyond `u64` nanoseconds saturate (the caller refuses them).
fn go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let (amount, after) = go_element(rest)?;
        nanos = nanos.saturating_add(amount);
        rest = after;
    }
    Some(Duration::from_nanos(
        u64::try_from(nanos).unwrap_or(u64::MAX),
    ))
}

/// One `NUMBER UNIT` at the start of `s`: its nanoseconds and the rest.
fn go_element(s: &str) -> Option<(u128, &str)> {
    let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
    let (int, rest) = s.split_at(int_len);
    let (frac, rest) = match rest.strip_prefix('.') {
        Some(r) => r.split_at(r.bytes().take_while(u8::is_ascii_digit).count()),
        None => ("", rest),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let unit_len = rest
        .char_indices()
        .find(|(_, c)| *c == '.' || c.is_ascii_digit())
        .map_or(rest.len(), |(i, _)| i);
    let (unit, rest) = rest.split_at(unit_len);
    let per_unit = GO_UNITS.iter().find(|(u, _)| *u == unit)?.1;
    let whole = int.bytes().fold(0u128, |n, d| {
        n.saturating_mul(10).saturating_add(u128::from(d - b'0'))
    });
    // Up to 20 fraction digits count, as finer ones are below a nanosecond.
    let (num, scale) = frac.bytes().take(20).fold((0u128, 1u128), |(n, sc), d| {
        (n * 10 + u128::from(d - b'0'), sc * 10)
    });
    Some((
        whole
            .saturating_mul(per_unit)
            .saturating_add(num * per_unit / scale),
        rest,
    ))
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
    // An IPv6 address goes in brackets (`[::]:9090`, `[fd00::1]:80`), as in
    // a URL: without them `fd00::1:80` could be `fd00::1` port 80 or
    // `fd00::1:80` with no port.
    match host.strip_prefix('[') {
        Some(inner) => match inner.strip_suffix(']') {
            Some(ip) if ip.parse::<std::net::Ipv6Addr>().is_ok() => {}
            _ => {
                return err(format!(
                    "invalid address {v:?} for {what}: brackets must hold an IPv6 address, as in [::]:9090"
                ))
            }
        },
        None if host.contains([':', '[', ']']) => {
            return err(format!(
                "invalid address {v:?} for {what}: write an IPv6 address in brackets, as in [::]:9090 or [fd00::1]:80"
            ))
        }
        None => {}
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

/// Parses the URL of an HTTP hook: `http://HOST[:PORT][/PATH]`. HTTPS and
/// other schemes are refused: the hook talks to the app in the pod, and
/// this program has no client certificates or CA for it.
pub(super) fn parse_hook_url(what: &str, v: &str) -> Result<String, ConfigError> {
    let scheme = v.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if scheme.as_deref() == Some("https") {
        return err(format!(
            "{what} {v:?}: https:// is not supported, only http:// (a hook calls the app in the pod, or a service next to it)"
        ));
    }
    let Some(rest) = v.strip_prefix("http://") else {
        return err(format!(
            "invalid URL {v:?} for {what}: must start with http://"
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.ends_with('@') || authority.ends_with(':') {
        return err(format!("invalid URL {v:?} for {what}: no host"));
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return err(format!(
            "invalid URL {v:?} for {what}: spaces and control characters must be percent-encoded"
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

/// `-log-format`: `text` or `json` (any case).
pub(super) fn parse_log_format(what: &str, v: &str) -> Result<LogFormat, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => err(format!(
            "invalid log format {v:?} for {what}: use text or json"
        )),
    }
}

/// Any text, as given.
pub(super) fn parse_text(_what: &str, v: &str) -> Result<String, ConfigError> {
    Ok(v.to_owned())
}

/// The shell hooks in shell syntax run with (`sh -c`, as the Go original did).
pub const SHELL: &str = "/bin/sh";

/// Parses a hook command. A plain one is split into words by POSIX shell
/// rules and run directly; one that uses a shell operator outside quotes
/// becomes `/bin/sh -c COMMAND`. Either way its quoting must balance.
pub(super) fn parse_command(what: &str, v: &str) -> Result<Vec<String>, ConfigError> {
    let words = split_command(what, v)?;
    if shell_operator(v).is_some() {
        return Ok(vec![SHELL.to_owned(), "-c".to_owned(), v.to_owned()]);
    }
    Ok(words)
}

/// Splits a hook command into words by POSIX shell rules.
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

/// The first shell operator in `cmd` that only a shell understands:
/// `&&`, `||`, `|`, `;`, `>`, `<` outside quotes, `$(` or a backquote
/// outside single quotes. Quoted and backslash-escaped text is plain
/// (`echo 'a && b'`, `echo a\;b`).
pub fn shell_operator(cmd: &str) -> Option<&'static str> {
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut quote = Quote::None;
    let mut word_start = true;
    let mut chars = cmd.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        let at_word_start = std::mem::replace(&mut word_start, c.is_whitespace());
        match (&quote, c) {
            // A comment, as shlex and sh read it, runs to the end of the line.
            (Quote::None, '#') if at_word_start => {
                chars.by_ref().find(|&c| c == '\n');
                word_start = true;
            }
            (Quote::Single, '\'') => quote = Quote::None,
            (Quote::Single, _) => {}
            (_, '\\') => {
                chars.next();
            }
            (Quote::None, '\'') => quote = Quote::Single,
            (Quote::None, '"') => quote = Quote::Double,
            (Quote::Double, '"') => quote = Quote::None,
            (_, '`') => return Some("`"),
            (_, '$') if next == Some('(') => return Some("$("),
            (Quote::Double, _) => {}
            (Quote::None, '&') if next == Some('&') => return Some("&&"),
            (Quote::None, '|') if next == Some('|') => return Some("||"),
            (Quote::None, '|') => return Some("|"),
            (Quote::None, ';') => return Some(";"),
            (Quote::None, '>') => return Some(">"),
            (Quote::None, '<') => return Some("<"),
            (Quote::None, _) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_ipv6_in_brackets() {
        for ok in [
            "0.0.0.0:9090",
            "[::]:9090",
            "[::1]:8080",
            "[fd00::1]:80",
            "localhost:80",
            "app.default.svc:8080",
        ] {
            assert_eq!(parse_host_port("-status-addr", ok).unwrap(), ok);
        }
        for (bad, why) in [
            ("::1:80", "in brackets"),
            ("fd00::1:80", "in brackets"),
            ("[fd00::1]", "invalid port"),
            ("[fd00::zz]:80", "must hold an IPv6 address"),
            ("[10.0.0.1]:80", "must hold an IPv6 address"),
            ("[::1:80", "must hold an IPv6 address"),
            ("::1]:80", "in brackets"),
            ("[]:80", "must hold an IPv6 address"),
            (":80", "empty host"),
        ] {
            let e = parse_host_port("-wait-for-tcp", bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why) && e.contains("-wait-for-tcp"), "{bad}: {e}");
        }
    }

    #[test]
    fn shell_operators_outside_quotes() {
        for (cmd, op) in [
            ("curl -sf x && touch /ready", "&&"),
            ("a || b", "||"),
            ("a | b", "|"),
            ("a;b", ";"),
            ("echo x > f", ">"),
            ("wc -l < f", "<"),
            ("echo $(date)", "$("),
            ("echo \"$(date)\"", "$("),
            ("echo `date`", "`"),
            ("echo 'a' && b", "&&"),
            ("echo \\\\ && b", "&&"),
            ("echo a # c\nb && c", "&&"),
            ("echo a#b && c", "&&"),
        ] {
            assert_eq!(shell_operator(cmd), Some(op), "{cmd}");
        }
        for cmd in [
            "echo 'a && b'",
            "echo \"a && b | c; d > e < f\"",
            "echo a\\;b a\\&\\&b a\\|b",
            "echo '$(date)' '`x`'",
            "echo \"\\$(x)\"",
            "curl -sf http://127.0.0.1:8080/ready",
            "echo $HOME a&b",
            "echo a # && b",
            "echo a#b",
        ] {
            assert_eq!(shell_operator(cmd), None, "{cmd}");
        }
    }

    #[test]
    fn commands_in_shell_syntax_run_with_sh() {
        let c = "curl -sf x && touch /ready";
        assert_eq!(parse_command("-x", c).unwrap(), vec![SHELL, "-c", c]);
        assert_eq!(
            parse_command("-x", "echo 'a && b'").unwrap(),
            vec!["echo", "a && b"]
        );
        // Quoting must balance in both kinds.
        assert!(parse_command("-x", "a && echo 'x").is_err());
    }

    fn ms(v: &str) -> Result<u128, String> {
        parse_duration("-x", v)
            .map(|d| d.as_millis())
            .map_err(|e| e.0)
    }

    #[test]
    fn go_durations() {
        assert_eq!(ms("0"), Ok(0));
        assert_eq!(ms("+5s"), Ok(5000));
        assert_eq!(ms(".5s"), Ok(500));
        assert_eq!(ms("5.s"), Ok(5000));
        assert_eq!(ms("1h2m3.5s"), Ok(3_723_500));
        assert_eq!(ms("1.5h"), Ok(5_400_000));
        assert_eq!(ms("-0"), Ok(0));
        assert_eq!(ms("0s"), Ok(0));
        assert_eq!(
            parse_duration("-x", "1500us").unwrap(),
            Duration::from_micros(1500)
        );
        assert_eq!(
            parse_duration("-x", "2\u{b5}s").unwrap(),
            Duration::from_micros(2)
        );
        assert_eq!(
            parse_duration("-x", "2\u{3bc}s").unwrap(),
            Duration::from_micros(2)
        );
        assert_eq!(
            parse_duration("-x", "1.000000001s").unwrap(),
            Duration::new(1, 1)
        );
        assert_eq!(
            parse_duration("-x", "3ns").unwrap(),
            Duration::from_nanos(3)
        );
    }

    #[test]
    fn one_grammar_go_s() {
        assert_eq!(ms("1m30s"), Ok(90_000));
        assert_eq!(ms("300ms"), Ok(300));
        assert_eq!(ms(" 5s "), Ok(5000));
        // humantime's forms are not Go's.
        for v in ["2m 10s", "1min", "5sec", "1 h"] {
            let e = ms(v).unwrap_err();
            assert!(
                e.contains("invalid duration") && e.contains("1m30s"),
                "{v}: {e}"
            );
        }
    }

    #[test]
    fn negative_and_malformed_durations_are_refused() {
        for v in ["-5s", "-1h2m", "-.5s"] {
            let e = ms(v).unwrap_err();
            assert!(e.contains("negative") && e.contains("-x"), "{v}: {e}");
        }
        for v in [
            "", ".", ".s", "5", "1x", "s", "+", "-", "--5s", "+-5s", "1..5s",
        ] {
            let e = ms(v).unwrap_err();
            assert!(e.contains("invalid duration"), "{v:?}: {e}");
        }
        let e = ms("9999999999999999999999h").unwrap_err();
        assert!(e.contains("too long"), "{e}");
    }
}
