//! Parsers of single values (and of the hosts file). `what` names the flag
//! or variable the value came from (`-target-port`, `NLB_TARGET_PORT`).

use super::{Cidr, ConfigError, GroupRef, GroupSpec};
use crate::env::Env;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The shell that hooks in shell syntax run with (`sh -c`, as in the Go original).
pub const SHELL: &str = "/bin/sh";

/// The error for a bad value: `invalid KIND "V" for WHAT: HINT`.
fn invalid(kind: &str, v: &str, what: &str, hint: &str) -> ConfigError {
    format!("invalid {kind} {v:?} for {what}: {hint}")
}

/// A duration in Go's syntax (`0`, `+5s`, `.5s`, `5.s`, `1h2m3.5s`); not negative.
pub(super) fn parse_duration(what: &str, v: &str) -> Result<Duration, ConfigError> {
    let t = v.trim();
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    let hint = match go_nanos(body).or((body == "0").then_some(0)) {
        None => "e.g. 5s, 1m30s, 300ms, .5s, 1.5h, 0",
        Some(n) if t.starts_with('-') && n > 0 => "negative, must be 0 or more",
        // Deadlines are `now + d`: a year keeps them far from overflow.
        Some(n) if n <= 365 * 86_400 * 1_000_000_000 => return Ok(Duration::from_nanos(n as u64)),
        Some(_) => "too long, at most 365 days",
    };
    Err(invalid("duration", v, what, hint))
}

/// The nanoseconds of `NUMBER UNIT...` (`12`, `1.5`, `.5`, `5.`), saturating; `None` when
/// not Go's syntax. Integers only: a float parser would cost the binary 16 KB.
fn go_nanos(mut s: &str) -> Option<u128> {
    let mut total = (!s.is_empty()).then_some(0u128)?;
    while !s.is_empty() {
        let (number, rest) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.')?);
        let (unit, rest) = rest.split_at(
            rest.find(|c: char| c == '.' || c.is_ascii_digit())
                .unwrap_or(rest.len()),
        );
        let per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if int.len() + frac.len() == 0 || frac.contains('.') {
            return None;
        }
        // Digits past the 20th are below a nanosecond; a saturated n is over the limit.
        let frac = &frac[..frac.len().min(20)];
        let n = (int.bytes().chain(frac.bytes())).fold(0u128, |n, b| {
            n.saturating_mul(10).saturating_add(u128::from(b - b'0'))
        });
        total = total.saturating_add(n.saturating_mul(per_unit) / 10u128.pow(frac.len() as u32));
        s = rest;
    }
    Some(total)
}

/// A Go boolean (`1 0 t f T F true false TRUE FALSE True False`).
pub(super) fn parse_bool(what: &str, v: &str) -> Result<bool, ConfigError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(invalid("boolean value", v, what, "use true or false")),
    }
}

/// A TCP port, 1-65535.
pub(super) fn parse_port(what: &str, v: &str) -> Result<u16, ConfigError> {
    match v.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(invalid("port", v, what, "must be 1-65535")),
    }
}

/// `NAME[:PORT]`, a name being 1-32 letters, digits and inner hyphens; with
/// `by_arn`, `arn:PARTITION:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID[:PORT]`.
pub(super) fn parse_group(what: &str, v: &str, by_arn: bool) -> Result<GroupSpec, ConfigError> {
    let v = v.trim();
    let (base, port) = match v.rsplit_once(':') {
        Some((base, port)) if v.matches(':').count() > if by_arn { 5 } else { 0 } => {
            (base, Some(parse_port(what, port)?))
        }
        _ => (v, None),
    };
    let (kind, group, ok, hint) = if by_arn {
        let ok = matches!(base.split(':').collect::<Vec<_>>()[..],
            ["arn", part, "elasticloadbalancing", _, _, tg]
                if !part.is_empty() && tg.starts_with("targetgroup/") && tg.split('/').count() == 3);
        let hint = "expected arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID (optionally :PORT)";
        ("target group ARN", GroupRef::Arn(base.into()), ok, hint)
    } else {
        let ok = (1..=32).contains(&base.len())
            && base.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && base.trim_matches('-') == base;
        let hint = "1-32 letters, digits and hyphens (NAME or NAME:PORT)";
        ("target group name", GroupRef::Name(base.into()), ok, hint)
    };
    match ok {
        true => Ok(GroupSpec { group, port }),
        false => Err(invalid(kind, v, what, hint)),
    }
}

/// `HOST:PORT`; an IPv6 host in brackets (`[::]:9090`): `fd00::1:80` could be either.
pub(super) fn parse_host_port(what: &str, v: &str) -> Result<String, ConfigError> {
    let hint = "expected HOST:PORT; write an IPv6 address in brackets, as in [::]:9090";
    let bad = || invalid("address", v, what, hint);
    let (host, port) = v.rsplit_once(':').ok_or_else(bad)?;
    parse_port(what, port)?;
    let name = !host.is_empty() && !host.contains([':', '[', ']']);
    match name || v.parse::<SocketAddr>().is_ok() {
        true => Ok(v.to_owned()),
        false => Err(bad()),
    }
}

/// An `http://HOST[:PORT][/PATH]` URL (hooks and `-wait-for-http`). No
/// HTTPS: these call the app in the pod, for which there is no CA.
pub(super) fn parse_http_url(what: &str, v: &str) -> Result<String, ConfigError> {
    let v = v.trim();
    if v.to_ascii_lowercase().starts_with("https://") {
        return Err(format!(
            "{what} {v:?}: https:// is not supported, only http:// (a hook calls the app in the pod, or a service next to it)"
        ));
    }
    let why = if !v.starts_with("http://") {
        "must start with http://"
    } else if v[7..]
        .split(['/', '?', '#'])
        .next()
        .is_none_or(|a| a.is_empty() || a.ends_with(['@', ':']))
    {
        "no host"
    } else if v.contains(|c: char| c.is_whitespace() || c.is_control()) {
        "spaces and control characters must be percent-encoded"
    } else {
        return Ok(v.to_owned());
    };
    Err(invalid("URL", v, what, why))
}

/// `ADDRESS/PREFIX` (IPv4 or IPv6); a bare address is the one host.
pub(super) fn parse_cidr(what: &str, v: &str) -> Result<Cidr, ConfigError> {
    let (ip, prefix) = v.split_once('/').map_or((v, None), |(a, p)| (a, Some(p)));
    let cidr = ip.parse::<IpAddr>().ok().and_then(|ip| {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.map_or(Some(max), |p| p.parse().ok())?;
        (prefix <= max).then_some(Cidr { ip, prefix })
    });
    let hint = "expected ADDRESS/PREFIX, e.g. 10.0.0.5/32 or fd00::/64";
    cidr.ok_or_else(|| invalid("CIDR", v, what, hint))
}

/// A log level, any case; returned in lower case.
pub(super) fn parse_log_level(what: &str, v: &str) -> Result<String, ConfigError> {
    let l = v.to_ascii_lowercase();
    let hint = "use error, warn, info, debug or trace";
    match ["off", "error", "warn", "info", "debug", "trace"].contains(&l.as_str()) {
        true => Ok(l),
        false => Err(invalid("log level", v, what, hint)),
    }
}

/// `text` or `json` (true), any case.
pub(super) fn parse_log_format(what: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "text" => Ok(false),
        "json" => Ok(true),
        _ => Err(invalid("log format", v, what, "use text or json")),
    }
}

/// A hook command: words by POSIX shell rules, or `/bin/sh -c COMMAND` with a shell operator.
pub(super) fn parse_command(what: &str, v: &str) -> Result<Vec<String>, ConfigError> {
    let hint = match shlex::split(v) {
        None => "cannot split it into words (unbalanced quotes?)",
        Some(w) if w.first().is_none_or(String::is_empty) => "empty program name",
        Some(_) if shell_operator(v).is_some() => {
            return Ok(vec![SHELL.into(), "-c".into(), v.into()])
        }
        Some(words) => return Ok(words),
    };
    Err(invalid("command", v, what, hint))
}

/// The first operator in `cmd` only a shell understands: `&&`, `||`, `|`, `;`, `>`, `<`
/// outside quotes, `$(` or a backquote outside single quotes; escaped text is plain.
pub fn shell_operator(cmd: &str) -> Option<&'static str> {
    // `quote` is `'`, `"`, or `#` in a comment (to the line's end, as shlex and sh read it).
    let (mut quote, mut escaped, mut word_start) = (None, false, true);
    for (i, c) in cmd.char_indices() {
        let at_word_start = std::mem::replace(&mut word_start, c.is_whitespace());
        let ops: &[&'static str] = match quote {
            _ if std::mem::take(&mut escaped) => continue,
            Some(q) if c == if q == '#' { '\n' } else { q } => {
                quote = None;
                continue;
            }
            Some('\'' | '#') => continue,
            Some(_) => &["`", "$("],
            None if c == '\'' || c == '"' || (c == '#' && at_word_start) => {
                quote = Some(c);
                continue;
            }
            None => &["`", "$(", "&&", "||", "|", ";", ">", "<"],
        };
        escaped = c == '\\';
        if let Some(op) = ops.iter().find(|op| cmd[i..].starts_with(**op)) {
            return Some(op);
        }
    }
    None
}

/// The pod's IP (canonical text), the last fallback for `-target-id`: the hosts file's line
/// naming `hostname` (or `hostname.DOMAIN`), as the kubelet writes `IP<TAB>HOSTNAME` there;
/// loopback, unspecified and link-local addresses are skipped.
pub fn pod_ip_from_hosts(contents: &str, hostname: &str) -> Option<String> {
    let hostname = hostname.trim();
    let names_us = |name: &str| {
        name.strip_prefix(hostname)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    };
    let ip = contents.lines().find_map(|line| {
        let mut fields = line.split('#').next()?.split_whitespace();
        let ip: IpAddr = fields.next()?.parse().ok()?;
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => v6.is_unicast_link_local(),
        };
        let usable = !ip.is_loopback() && !ip.is_unspecified() && !link_local;
        (usable && fields.any(names_us)).then_some(ip)
    });
    ip.filter(|_| !hostname.is_empty()).map(|ip| ip.to_string())
}

/// The pod's IP from the hosts file (`NLB_HOSTS_FILE`, else /etc/hosts) by its hostname
/// (`HOSTNAME`, else /etc/hostname): the target id's last resort.
pub(super) fn detect_ip(env: &dyn Env) -> Result<String, String> {
    let read = |path| std::fs::read_to_string(path).ok();
    let hostname = (env.var("HOSTNAME"))
        .or_else(|| read("/etc/hostname"))
        .or_else(|| read("/proc/sys/kernel/hostname"))
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .ok_or("cannot tell this pod's hostname (HOSTNAME, /etc/hostname)")?;
    let path = env.var("NLB_HOSTS_FILE").unwrap_or("/etc/hosts".into());
    let hosts = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    pod_ip_from_hosts(&hosts, &hostname)
        .ok_or_else(|| format!("no line for hostname {hostname:?} in {path}"))
}

/// `arn:PARTITION:iam::ACCOUNT_ID:role/[PATH/]NAME` (STS's AssumeRole
/// constraints, so a typo fails at start and not as a ValidationError).
pub(super) fn parse_role_arn(what: &str, v: &str) -> Result<String, ConfigError> {
    let v = v.trim();
    let ok = match v.splitn(6, ':').collect::<Vec<_>>()[..] {
        ["arn", partition, "iam", "", account, resource] => {
            partition.starts_with("aws")
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && resource.strip_prefix("role/").is_some_and(|name| {
                    !name.ends_with('/') && sts(what, name, "", 1..=2048, "+=,.@-/").is_ok()
                })
                && v.len() <= 2048
        }
        _ => false,
    };
    let why = format!("{what}: invalid role ARN {v:?}: expected arn:aws:iam::ACCOUNT_ID:role/NAME");
    ok.then(|| v.to_owned()).ok_or(why)
}

/// An STS value: `len` characters, each a word character or in `extra` (`[\w+=,.@-]*`).
/// Never echoed: an external id is not a secret by AWS's account, but close to one.
pub(super) fn sts(
    what: &str,
    v: &str,
    kind: &str,
    len: std::ops::RangeInclusive<usize>,
    extra: &str,
) -> Result<String, ConfigError> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || extra.contains(c);
    let (min, max) = (len.start(), len.end());
    match len.contains(&v.chars().count()) && v.chars().all(ok) {
        true => Ok(v.into()),
        false => Err(format!(
            "{what}: invalid {kind}: {min} to {max} characters of letters, digits and _{extra}"
        )),
    }
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
        for bad in [
            "::1:80",
            "fd00::1:80",
            "[fd00::1]",
            "[fd00::zz]:80",
            "[10.0.0.1]:80",
            "[::1:80",
            "::1]:80",
            "[]:80",
            ":80",
            "9090",
            "[::]:0",
        ] {
            let e = parse_host_port("-wait-for-tcp", bad).unwrap_err();
            assert!(
                e.starts_with("invalid ") && e.contains("-wait-for-tcp"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn role_arns() {
        for ok in [
            "arn:aws:iam::444455556666:role/nlb-registrator",
            "arn:aws:iam::444455556666:role/service-role/team.a/nlb_registrator+x=y,z@w",
            "arn:aws-cn:iam::444455556666:role/r",
            "arn:aws-us-gov:iam::444455556666:role/r",
        ] {
            assert_eq!(parse_role_arn("-role-arn", ok).unwrap(), ok);
        }
        for bad in [
            "nlb-registrator",
            "arn:aws:iam::4444555566:role/r",
            "arn:aws:iam::444455556666:user/r",
            "arn:aws:iam::444455556666:role/",
            "arn:aws:iam:us-east-1:444455556666:role/r",
            "arn:aws:sts::444455556666:assumed-role/r/s",
            "arn:aws:iam::444455556666:role/a b",
        ] {
            let e = parse_role_arn("-role-arn", bad).unwrap_err();
            assert!(e.starts_with("-role-arn: invalid role ARN"), "{bad}: {e}");
        }
    }

    #[test]
    fn external_ids_and_session_names() {
        let id = |v| sts("x", v, "external id", 2..=1224, "+=,.@:/-");
        assert!(id("a1:b/c=d@e,f.g+h_i-j").is_ok());
        assert!(id("a").is_err());
        assert!(id("has space").is_err());
        let e = id("sec ret").unwrap_err();
        assert!(!e.contains("sec ret"), "{e}");
        let name = |v: &str| sts("x", v, "role session name", 2..=64, "+=,.@-");
        assert!(name("pod-a.b@c").is_ok());
        assert!(name(&"a".repeat(64)).is_ok());
        assert!(name(&"a".repeat(65)).is_err());
        assert!(name("a/b").is_err());
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
            "echo a # c #d | e",
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
        parse_duration("-x", v).map(|d| d.as_millis())
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
        // Exact to the nanosecond up to the limit (an f64 sum is not).
        let last = parse_duration("-x", "8759h59m59.999999999s");
        assert_eq!(last, Ok(Duration::new(365 * 86_400 - 1, 999_999_999)));
        assert!(ms("8760h").is_ok() && ms("8760h1ns").is_err());
        assert!(ms("99999999999999999999999999999999999999999999h").is_err());
    }
}
