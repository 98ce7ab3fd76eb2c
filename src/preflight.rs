//! `-check`: would the sidecar work here? [`check`] makes the read-only
//! calls (and one harmless DeregisterTargets probe), judges each answer as
//! it comes, and looks for the hooks' programs.

use crate::aws::elbv2::{
    find_health, DeregisterTargets, DescribeTargetGroupAttributes, DescribeTargetGroups,
    DescribeTargetHealth, Target, TargetGroup, DEREGISTRATION_DELAY, UNHEALTHY_DRAINING,
    UNHEALTHY_TERMINATION,
};
use crate::aws::error::redact_url;
use crate::aws::http::Transport;
use crate::aws::sts::{CallerIdentity, GetCallerIdentity};
use crate::aws::{Action, Budget, Client, Error};
use crate::clock::Clock;
use crate::config::{Config, GroupRef, GroupSpec, Hook, HookAction};
use humantime::format_duration as human;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const NOT_EXECUTABLE: &str = "is not executable";

/// Why execve(2) could not run `p`, if it could not (symbolic links followed).
fn unrunnable(p: &Path) -> Option<&'static str> {
    match std::fs::metadata(p) {
        Err(_) => Some("does not exist"),
        Ok(m) if m.is_dir() => Some("is a directory"),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Some(NOT_EXECUTABLE),
        Ok(_) => None,
    }
}

/// A name with a `/` as it is; any other in each directory of `path`
/// (musl's default when unset; an empty entry is the working directory).
fn locate(program: &str, path: Option<&str>) -> Result<PathBuf, String> {
    if program.contains('/') {
        let why = unrunnable(Path::new(program));
        return why.map_or(Ok(program.into()), |why| Err(format!("{program} {why}")));
    }
    let search = path.filter(|p| !p.is_empty());
    let search = search.unwrap_or("/usr/local/bin:/bin:/usr/bin");
    let mut not_executable = None;
    for dir in search.split(':') {
        let p = Path::new(if dir.is_empty() { "." } else { dir }).join(program);
        match unrunnable(&p) {
            None => return Ok(p),
            Some(NOT_EXECUTABLE) if not_executable.is_none() => not_executable = Some(p),
            Some(_) => {}
        }
    }
    Err(match not_executable {
        Some(p) => format!("{} {NOT_EXECUTABLE}", p.display()),
        None => format!("{program} is in no directory of the search path {search}"),
    })
}

fn budget(clock: &mut dyn Clock) -> Budget {
    Budget {
        deadline: clock.now() + Duration::from_secs(30),
        max_attempts: 4,
    }
}

fn call<T: Transport, A: Action>(
    c: &mut Client<T>,
    a: &A,
    clock: &mut dyn Clock,
) -> Result<A::Output, Error> {
    c.call(a, budget(clock), clock).map(|r| r.value)
}

/// The setup in a line: the start's log line and `-check`'s first.
pub fn summary(cfg: &Config, region: &str) -> String {
    let (id, from, n) = (&cfg.target_id, &cfg.target_id_source, cfg.groups.len());
    format!("target {id} (from {from}), {n} target group(s), region {region}")
}

/// A check's level (the tag its line starts with) and text; `None`: nothing to say.
type Verdict = Option<(&'static str, String)>;
const FAIL: &str = "FAIL";

fn ok(text: impl Into<String>) -> Verdict {
    Some(("ok  ", text.into()))
}

fn warn(text: impl Into<String>) -> Verdict {
    Some(("warn", text.into()))
}

fn fail(text: impl Into<String>) -> Verdict {
    Some((FAIL, text.into()))
}

/// Runs `-check` (the hooks' programs looked for with `path` as `PATH`):
/// the report, a line per check then the verdict, and the exit code, 0 when
/// the sidecar would work, 1 when not. Without credentials, no call after.
pub fn check<T: Transport>(
    cfg: &Config,
    client: &mut Client<T>,
    clock: &mut dyn Clock,
    path: Option<&str>,
) -> (String, i32) {
    let (mut out, mut failed) = (String::new(), Vec::new());
    let mut add = |subject: &str, verdict: Verdict| {
        let Some((level, text)) = verdict else { return };
        // Folded onto one line: AWS's SignatureDoesNotMatch quotes the canonical request.
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        out += &format!("{level} {subject}: {text}\n");
        if level == FAIL {
            failed.push(subject.to_owned());
        }
    };
    let source = client.settings.credentials_label();
    add("config", ok(summary(cfg, &client.settings.region)));
    add("config", drain_without_app_check(cfg));
    let fetched = client.fetch_credentials(false, budget(clock), clock);
    let identity = fetched.map(|()| call(client, &GetCallerIdentity, clock));
    add("credentials", credentials(&source, &identity));
    for spec in cfg.groups.iter().filter(|_| identity.is_ok()) {
        let subject = format!("target group {}", spec.group);
        for verdict in group(cfg, spec, client, clock) {
            add(&subject, verdict);
        }
    }
    for h in &cfg.hooks {
        add(&h.describe(), hook(h, path));
    }
    let n = failed.len();
    failed.dedup();
    match n {
        0 => (out + "check passed: the sidecar would work here (RegisterTargets is not tried: it would change the group)\n", 0),
        n => (out + &format!("check FAILED: {n} problem(s) in {}\n", failed.join(", ")), 1),
    }
}

/// A group's calls and checks, in order; of a group not found, only that.
fn group<T: Transport>(
    cfg: &Config,
    spec: &GroupSpec,
    client: &mut Client<T>,
    clock: &mut dyn Clock,
) -> Vec<Verdict> {
    let one = [spec.group.to_string()];
    let (names, by_arn) = (&one[..], matches!(spec.group, GroupRef::Arn(_)));
    let described = match call(client, &DescribeTargetGroups { names, by_arn }, clock) {
        Err(e) if e.code() == Some("TargetGroupNotFound") => Ok(None),
        d => d.map(|groups| groups.into_iter().next()),
    };
    let mut out = vec![exists(&described, &spec.group)];
    let tg = described.as_ref().ok().and_then(Option::as_ref);
    if let Some(tg) = tg {
        out.extend([ip_type, family, attached, health].map(|check| check(cfg, tg)));
    }
    // The sidecar uses an ARN as given, even one it may not describe.
    let arn = match (tg, &spec.group) {
        (Some(tg), _) => &tg.arn,
        (None, GroupRef::Arn(arn)) if described.is_err() => arn,
        _ => return out,
    };
    let target = Target {
        id: cfg.target_id.clone(),
        port: spec.port.or(cfg.target_port),
        availability_zone: cfg.availability_zone.clone(),
    };
    let (arn, targets) = (arn.as_str(), &[target][..]);
    let attributes = call(client, &DescribeTargetGroupAttributes { arn }, clock);
    out.push(delay(cfg, &attributes));
    out.push(tg.and_then(|tg| resets(cfg, tg, &attributes)));
    let state = match call(client, &DescribeTargetHealth { arn, targets }, clock) {
        Ok(all) => Ok(find_health(&all, &targets[0])
            .filter(|h| !h.is_gone())
            .map(ToString::to_string)),
        Err(e) if e.code() == Some("InvalidTarget") => Ok(None),
        Err(e) => Err(e),
    };
    out.push(registered(cfg, &targets[0], &state));
    // Deregistering an absent target proves the permission and changes nothing.
    if matches!(state, Ok(None)) {
        let answer = call(client, &DeregisterTargets { arn, targets }, clock);
        out.push(probe(&answer));
    }
    out
}

/// An app restart runs its preStop hook, which drains; only an app check tells it from a deletion.
fn drain_without_app_check(cfg: &Config) -> Verdict {
    cfg.status_addr.as_ref().filter(|_| !cfg.has_app_check())?;
    warn("/drain is served (-status-addr) but no app check (-wait-for-tcp / -wait-for-http) is set: the sidecar cannot tell an app container restart from a pod deletion, so after a restart the target stays out until the pod is deleted")
}

/// `identity`: `Err` when no credentials could be had, else GetCallerIdentity's answer.
fn credentials(source: &str, identity: &Result<Result<CallerIdentity, Error>, Error>) -> Verdict {
    match identity {
        Err(e) => fail(format!("source {source}: none could be had: {e}")),
        Ok(Ok(id)) => ok(format!("source {source}; identity {} (account {})", id.arn, id.account)),
        Ok(Err(e)) if matches!(e.aws_code(), Some("InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken")) => fail(format!("source {source}: AWS refuses them: {e}")),
        Ok(Err(e)) => warn(format!("source {source}: identity unknown, GetCallerIdentity failed (the sidecar itself never calls it): {e}")),
    }
}

fn why(e: &Error, action: &str) -> String {
    match e.code() == Some("AccessDenied") {
        true => format!("the identity may not call {action}: {e}"),
        false => format!("{action} failed: {e}"),
    }
}

fn attribute<'a>(attrs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim())
}

/// `described`: `Ok(None)` when not found.
fn exists(described: &Result<Option<TargetGroup>, Error>, group: &GroupRef) -> Verdict {
    let cannot = |e| format!("cannot describe it: {}", why(e, "DescribeTargetGroups"));
    match (described, group) {
        (Ok(Some(tg)), _) => ok(format!("exists ({})", tg.arn)),
        (Ok(None), _) => {
            fail("not found (TargetGroupNotFound): check the name, region and account")
        }
        // An ARN is used as given; a name must be described.
        (Err(e), GroupRef::Name(_)) => fail(cannot(e)),
        (Err(e), GroupRef::Arn(_)) => warn(cannot(e)),
    }
}

fn ip_type(_: &Config, tg: &TargetGroup) -> Verdict {
    match tg.target_type.as_deref() {
        Some("ip") | None => ok("target type ip"),
        Some(t) => fail(format!("target type {t}: pod IPs need target type ip")),
    }
}

fn family(cfg: &Config, tg: &TargetGroup) -> Verdict {
    // No IpAddressType (older API versions): ipv4.
    let family = tg.ip_address_type.as_deref().unwrap_or("ipv4");
    let id = &cfg.target_id;
    let wanted = match id.parse() {
        Ok(IpAddr::V6(_)) => "ipv6",
        _ => "ipv4",
    };
    match family == wanted {
        true => ok(format!("IP address type {family} matches target {id}")),
        false => fail(format!("IP address type {family}, but target {id} is {wanted}: AWS refuses it (set -target-id, or use an {wanted} group)")),
    }
}

fn attached(cfg: &Config, tg: &TargetGroup) -> Verdict {
    let text = "not attached to a load balancer (no listener forwards to it): its targets stay unused and never turn healthy, so";
    match tg.load_balancer_arns.len() {
        0 if cfg.wait_in_service => fail(format!("{text} -wait-in-service would time out")),
        0 => warn(format!("{text} it would get no traffic")),
        n => ok(format!("attached to {n} load balancer(s)")),
    }
}

fn health(cfg: &Config, tg: &TargetGroup) -> Verdict {
    let hc = &tg.health_check;
    if hc.enabled == Some(false) {
        return warn("health checks disabled: targets report unavailable, never healthy");
    }
    let protocol = hc.protocol.as_deref().unwrap_or("?");
    let port = hc.port.as_deref().unwrap_or("traffic-port");
    let mut what = format!("health check {protocol} on {port}");
    if let (Some(path), "HTTP" | "HTTPS") = (&hc.path, protocol) {
        what += &format!(" {path}");
    }
    let Some(interval) = hc.interval_seconds else {
        return ok(what);
    };
    // "After your target is registered, it must pass one health check to be
    // considered healthy" (NLB guide); HealthyThresholdCount is for a return.
    let least = Duration::from_secs(interval.into());
    let at_least = human(least);
    what += &format!(
        " every {interval}s; a new target healthy after one passing check (at least {at_least})"
    );
    if let Some(n) = hc.healthy_threshold {
        what += &format!(", healthy again after {n} passing");
    }
    if let Some(n) = hc.unhealthy_threshold {
        what += &format!(", unhealthy after {n} failing");
    }
    let limit = human(cfg.wait_in_service_timeout);
    match cfg.wait_in_service && least >= cfg.wait_in_service_timeout {
        true => fail(format!(
            "{what}: longer than -wait-in-service-timeout {limit}, so the wait would time out"
        )),
        // What no API call can check, and the usual reason a target never turns healthy.
        false => ok(format!("{what}; security groups must let the load balancer reach the target and health-check ports")),
    }
}

fn delay(cfg: &Config, attributes: &Result<Vec<(String, String)>, Error>) -> Verdict {
    let unknown = "deregistration delay unknown";
    let delay = match attributes {
        Ok(attrs) => attribute(attrs, DEREGISTRATION_DELAY).and_then(|v| v.parse().ok()),
        Err(e) => {
            return warn(format!(
                "{unknown}: {} (the sidecar itself does not need it)",
                why(e, "DescribeTargetGroupAttributes")
            ))
        }
    };
    let Some(delay) = delay.map(Duration::from_secs) else {
        return warn(format!("{unknown}: no readable {DEREGISTRATION_DELAY}"));
    };
    let (d, limit) = (human(delay), human(cfg.wait_drained_timeout));
    match (cfg.wait_drained, delay > cfg.wait_drained_timeout) {
        (false, _) => ok(format!("deregistration delay {d} (not waited for: -wait-drained is off)")),
        (true, true) => warn(format!("deregistration delay {d} is longer than -wait-drained-timeout {limit}: the wait for draining would give up while connections still drain")),
        (true, false) => ok(format!("deregistration delay {d} within -wait-drained-timeout {limit}")),
    }
}

/// With `-lb-health-addr`, a TCP/TLS group resets connections once `/lb-health` fails, unless told not to.
fn resets(
    cfg: &Config,
    tg: &TargetGroup,
    attributes: &Result<Vec<(String, String)>, Error>,
) -> Verdict {
    cfg.lb_health_addr.as_ref()?;
    let Some("TCP" | "TLS") = tg.protocol.as_deref() else {
        return None;
    };
    let (on, draining) = (UNHEALTHY_TERMINATION, UNHEALTHY_DRAINING);
    let Ok(attrs) = attributes else {
        return warn(format!("{on} unknown (the attributes cannot be read): if true, the default, a failing /lb-health resets every established connection"));
    };
    let interval = attribute(attrs, draining).unwrap_or("unset");
    match attribute(attrs, on).unwrap_or("unset (default true)") {
        "false" => ok(format!("{on} false: a failing /lb-health keeps established connections ({draining} {interval})")),
        v => warn(format!("{on} is {v}: once /lb-health fails at the drain, the load balancer resets every established connection; set it to false and {draining} to at least the app's longest connection (aws elbv2 modify-target-group-attributes)")),
    }
}

/// `state`: the target's, `None` when not registered.
fn registered(cfg: &Config, t: &Target, state: &Result<Option<String>, Error>) -> Verdict {
    let untried = "DeregisterTargets is not tried";
    let unknown = |e| {
        why(e, "DescribeTargetHealth") + &format!("; {untried} without knowing the target is out")
    };
    match state {
        Ok(None) => ok(format!("target {t} is not registered yet")),
        Ok(Some(state)) => warn(format!("target {t} is registered already ({state}): another pod with this IP, or a leftover; {untried}, it would take it out")),
        Err(e) if cfg.wait_in_service || cfg.wait_drained => fail(unknown(e)),
        Err(e) => warn(unknown(e)),
    }
}

fn probe(answer: &Result<(), Error>) -> Verdict {
    let answered = "may deregister (DeregisterTargets of the unregistered target answered";
    match answer {
        Ok(()) => ok(format!("{answered} success)")),
        Err(e) if e.code() == Some("InvalidTarget") => ok(format!("{answered} InvalidTarget, not AccessDenied)")),
        Err(e) if e.code() == Some("AccessDenied") => fail(format!("may not deregister: the target would stay in the load balancer after the pod is gone: {e}")),
        Err(e) => fail(format!("DeregisterTargets failed: {e}")),
    }
}

/// A command hook's program is looked for as execvp(3) would.
fn hook(h: &Hook, path: Option<&str>) -> Verdict {
    let program = match &h.action {
        HookAction::Http(url) => {
            let url = redact_url(url);
            return ok(format!(
                "GET {url} (not called by -check: it may change the app's state)"
            ));
        }
        HookAction::Command(argv) => locate(argv.first()?, path),
    };
    match program {
        Ok(p) => {
            let shell = h.shell_syntax().map(|op| format!(", shell syntax ({op})"));
            ok(format!("runs {}{}", p.display(), shell.unwrap_or_default()))
        }
        // A pre-register hook that fails stops the sidecar; a post-* one is logged.
        Err(why) if h.name == "pre-register" => fail(format!(
            "cannot run: {why}: the hook would fail and nothing would be registered"
        )),
        Err(why) => warn(format!(
            "cannot run: {why}: the hook would fail (the sidecar logs it and goes on)"
        )),
    }
}

#[cfg(test)]
mod tests;
