//! `-check`: a preflight that changes nothing.
//!
//! It answers "would the sidecar work here?" before a rollout does: which
//! credentials it would use and whose they are (STS GetCallerIdentity),
//! then for each target group whether it exists, takes IP targets of the
//! target's family, is attached to a load balancer (a group without one
//! never reports a target healthy), how long its health checks take to
//! pass against `-wait-in-service-timeout`, how long it drains against
//! `-wait-drained-timeout`, whether a failing `/lb-health` would reset
//! established connections (`-lb-health-addr` on a TCP/TLS group), and
//! whether the identity may read target health and deregister. It also looks for each command hook's program as
//! execvp(3) would (HTTP hooks are listed, not called: a GET may change the
//! app's state).
//!
//! Nothing is registered. The deregistration probe is a DeregisterTargets
//! of the sidecar's own target, sent only when DescribeTargetHealth has
//! just said that target is not registered: AWS answers such a call with
//! success ("If the specified target does not exist, the action returns
//! successfully"), moto with `InvalidTarget`; both prove the permission,
//! `AccessDenied` disproves it. When the target is registered (another pod
//! with the same IP, a leftover) or its state is unknown, the probe is
//! skipped: it would take a live target out.
//!
//! [`gather`] does the calls and records what came back ([`Findings`]);
//! [`report`] turns that into lines, a pure function tested on its own.

use crate::aws::elbv2::{
    find_health, DeregisterTargets, DescribeTargetGroupAttributes, DescribeTargetGroups,
    DescribeTargetGroupsByArn, DescribeTargetHealth, Target, TargetGroup, DEREGISTRATION_DELAY,
    UNHEALTHY_DRAINING, UNHEALTHY_TERMINATION,
};
use crate::aws::error::redact_url;
use crate::aws::http::Transport;
use crate::aws::sts::{CallerIdentity, GetCallerIdentity};
use crate::aws::{Budget, Client, Error};
use crate::clock::Clock;
use crate::config::{Config, GroupRef, Hook, HookAction};
use crate::hooks::program::{locate, PathKind};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long each preflight call may be retried.
const CALL_BUDGET: Duration = Duration::from_secs(30);

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Fine.
    Ok,
    /// Worth knowing; the sidecar would still work.
    Warn,
    /// The sidecar would not work.
    Fail,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        })
    }
}

/// One line of the report: a verdict on a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The verdict.
    pub level: Level,
    /// What it is about: `config`, `credentials`, `target group NAME`.
    pub subject: String,
    /// What was found, and why it matters when it is not ok.
    pub text: String,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// The lines, in the order checked.
    pub lines: Vec<Line>,
}

impl Report {
    /// Adds a line; AWS messages spread over lines (SignatureDoesNotMatch
    /// quotes the canonical request) are folded into one.
    fn push(&mut self, level: Level, subject: &str, text: String) {
        let text = if text.contains(['\n', '\r']) {
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        } else {
            text
        };
        self.lines.push(Line {
            level,
            subject: subject.to_owned(),
            text,
        });
    }

    /// Whether the sidecar would work: no line failed.
    pub fn passed(&self) -> bool {
        self.lines.iter().all(|l| l.level != Level::Fail)
    }

    /// The exit code of `-check`: 0 when it would work, 1 when not.
    pub fn exit_code(&self) -> i32 {
        if self.passed() {
            0
        } else {
            1
        }
    }

    /// The text printed on stdout: one line per check, then a verdict.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            out.push_str(&format!("{:<4} {}: {}\n", l.level, l.subject, l.text));
        }
        let failed: Vec<&str> = self
            .lines
            .iter()
            .filter(|l| l.level == Level::Fail)
            .map(|l| l.subject.as_str())
            .collect();
        if failed.is_empty() {
            out.push_str(
                "check passed: the sidecar would work here \
                 (RegisterTargets is not tried: it would change the group)\n",
            );
        } else {
            let mut subjects = failed.clone();
            subjects.dedup();
            out.push_str(&format!(
                "check FAILED: {} problem(s) in {}\n",
                failed.len(),
                subjects.join(", ")
            ));
        }
        out
    }
}

/// What the calls found about one configured target group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupFindings {
    /// The group as configured.
    pub group: GroupRef,
    /// The target the sidecar would register there.
    pub target: Target,
    /// DescribeTargetGroups: the group, `None` when not in the answer.
    pub described: Result<Option<TargetGroup>, Error>,
    /// DescribeTargetGroupAttributes (not called when the group is unknown).
    pub attributes: Option<Result<Vec<(String, String)>, Error>>,
    /// DescribeTargetHealth of the target: `Some(state)` when registered,
    /// `None` when not (not called when the group is unknown).
    pub registered: Option<Result<Option<String>, Error>>,
    /// The DeregisterTargets probe (only sent for a target known not to
    /// be registered).
    pub deregister: Option<Result<(), Error>>,
}

/// Everything [`gather`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Findings {
    /// Region in use.
    pub region: String,
    /// Where the credentials come from: the source, or the role
    /// (`-role-arn`) and the source that assumes it.
    pub source: String,
    /// Whether credentials could be had (fetched, for temporary ones).
    pub credentials: Result<(), Error>,
    /// GetCallerIdentity (not called without credentials).
    pub identity: Option<Result<CallerIdentity, Error>>,
    /// One per configured group, in order.
    pub groups: Vec<GroupFindings>,
    /// One per configured hook, in the order they run ([`gather_hooks`]).
    pub hooks: Vec<HookFindings>,
}

/// What `-check` found about one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFindings {
    /// The hook as configured.
    pub hook: Hook,
    /// Where its program is, for a command hook (`None` for an HTTP hook).
    pub program: Option<Result<PathBuf, String>>,
}

/// Looks for each command hook's program in `path` (the `PATH` the hooks
/// would run with) on the filesystem `kind` describes.
pub fn gather_hooks(
    cfg: &Config,
    path: Option<&str>,
    kind: &dyn Fn(&Path) -> PathKind,
) -> Vec<HookFindings> {
    cfg.hooks()
        .map(|hook| HookFindings {
            hook: hook.clone(),
            program: match &hook.action {
                HookAction::Command(argv) => {
                    Some(locate(argv.first().map_or("", String::as_str), path, kind))
                }
                HookAction::Http(_) => None,
            },
        })
        .collect()
}

/// How long and how often each preflight call may be tried, from now.
fn budget(clock: &mut dyn Clock) -> Budget {
    Budget {
        deadline: clock.now() + CALL_BUDGET,
        max_attempts: 4,
    }
}

/// The calls `-check` makes, in order; stops early only when there are no
/// credentials (every other call would fail the same way).
pub fn gather<T: Transport>(
    cfg: &Config,
    client: &mut Client<T>,
    clock: &mut dyn Clock,
) -> Findings {
    let mut findings = Findings {
        region: client.settings().region.clone(),
        source: client.settings().credentials_label(),
        credentials: client.ensure_credentials(budget(clock), clock),
        identity: None,
        groups: Vec::new(),
        hooks: Vec::new(),
    };
    if findings.credentials.is_err() {
        return findings;
    }
    let identity = client.call(&GetCallerIdentity, budget(clock), clock);
    findings.identity = Some(identity.map(|r| r.value));
    for spec in &cfg.groups {
        let target = Target {
            id: cfg.target_id.clone(),
            port: spec.port.or(cfg.target_port),
            availability_zone: cfg.availability_zone.clone(),
        };
        findings
            .groups
            .push(gather_group(&spec.group, target, client, clock));
    }
    findings
}

/// The calls about one group: DescribeTargetGroups, then (when its ARN is
/// known) the attributes, the target's health and the deregistration probe.
fn gather_group<T: Transport>(
    group: &GroupRef,
    target: Target,
    client: &mut Client<T>,
    clock: &mut dyn Clock,
) -> GroupFindings {
    let one = [group.to_string()];
    let described = match group {
        GroupRef::Name(_) => {
            client.call(&DescribeTargetGroups { names: &one }, budget(clock), clock)
        }
        GroupRef::Arn(_) => client.call(
            &DescribeTargetGroupsByArn { arns: &one },
            budget(clock),
            clock,
        ),
    }
    .map(|r| r.value.into_iter().next())
    .or_else(|e| {
        if e.is_group_not_found() {
            Ok(None)
        } else {
            Err(e)
        }
    });
    // Groups given by ARN need no DescribeTargetGroups to be used.
    let arn = match (&described, group) {
        (Ok(Some(g)), _) => Some(g.arn.clone()),
        (Err(_), GroupRef::Arn(a)) => Some(a.clone()),
        _ => None,
    };
    let mut g = GroupFindings {
        group: group.clone(),
        target,
        described,
        attributes: None,
        registered: None,
        deregister: None,
    };
    let Some(arn) = arn else {
        return g;
    };
    let attrs = client.call(
        &DescribeTargetGroupAttributes { arn: &arn },
        budget(clock),
        clock,
    );
    g.attributes = Some(attrs.map(|r| r.value));
    let targets = [g.target.clone()];
    let health = DescribeTargetHealth {
        arn: &arn,
        targets: &targets,
    };
    let registered = match client.call(&health, budget(clock), clock) {
        Ok(r) => Ok(find_health(&r.value, &g.target)
            .filter(|h| !h.is_gone())
            .map(|h| h.to_string())),
        Err(e) if e.is_invalid_target() => Ok(None),
        Err(e) => Err(e),
    };
    // Only a target known to be out is probed: the probe would take a
    // registered one out.
    if matches!(registered, Ok(None)) {
        let probe = DeregisterTargets {
            arn: &arn,
            targets: &targets,
        };
        g.deregister = Some(client.call(&probe, budget(clock), clock).map(|_| ()));
    }
    g.registered = Some(registered);
    g
}

/// Seconds as `humantime` writes them (`5m`, `1m 30s`).
fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The report on `findings` for `cfg`. Pure.
pub fn report(cfg: &Config, f: &Findings) -> Report {
    let mut r = Report::default();
    r.push(
        Level::Ok,
        "config",
        format!(
            "target {} (from {}), {} target group(s), region {}",
            cfg.target_id,
            cfg.target_id_source,
            cfg.groups.len(),
            f.region
        ),
    );
    if cfg.status_addr.is_some() && !cfg.has_app_check() {
        r.push(
            Level::Warn,
            "config",
            "/drain is served (-status-addr) but no app check (-wait-for-tcp / -wait-for-http) is set: \
             the sidecar cannot tell an app container restart (its preStop hook drains too) from a pod deletion, \
             so after a restart the target stays out until the pod is deleted"
                .into(),
        );
    }
    credentials(&mut r, f);
    for g in &f.groups {
        group(&mut r, cfg, g);
    }
    for h in &f.hooks {
        hook(&mut r, h);
    }
    r
}

/// A command hook's program found or not; an HTTP hook listed. A missing
/// pre-register program fails (nothing would ever be registered), a
/// missing post-* program warns (the sidecar logs the failure and goes on).
fn hook(r: &mut Report, h: &HookFindings) {
    let subject = h.hook.describe();
    match (&h.hook.action, &h.program) {
        (HookAction::Http(url), _) => r.push(
            Level::Ok,
            &subject,
            format!(
                "GET {} (not called by -check: it may change the app's state)",
                redact_url(url)
            ),
        ),
        (HookAction::Command(_), Some(Ok(path))) => {
            let shell = h
                .hook
                .shell_syntax()
                .map(|op| format!(", shell syntax ({op})"))
                .unwrap_or_default();
            r.push(
                Level::Ok,
                &subject,
                format!("runs {}{shell}", path.display()),
            );
        }
        (HookAction::Command(_), found) => {
            let why = match found {
                Some(Err(why)) => why.as_str(),
                _ => "not looked for",
            };
            let (level, effect) = if h.hook.name == "pre-register" {
                (
                    Level::Fail,
                    "the hook would fail and nothing would be registered",
                )
            } else {
                (
                    Level::Warn,
                    "the hook would fail (the sidecar logs it and goes on)",
                )
            };
            r.push(level, &subject, format!("cannot run: {why}: {effect}"));
        }
    }
}

fn credentials(r: &mut Report, f: &Findings) {
    let subject = "credentials";
    if let Err(e) = &f.credentials {
        r.push(
            Level::Fail,
            subject,
            format!("source {}: none could be had: {e}", f.source),
        );
        return;
    }
    match &f.identity {
        Some(Ok(id)) => r.push(
            Level::Ok,
            subject,
            format!(
                "source {}; identity {} (account {})",
                f.source, id.arn, id.account
            ),
        ),
        Some(Err(e))
            if matches!(
                e.aws_code(),
                Some("InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken")
            ) =>
        {
            r.push(
                Level::Fail,
                subject,
                format!("source {}: AWS refuses them: {e}", f.source),
            );
        }
        Some(Err(e)) => r.push(
            Level::Warn,
            subject,
            format!(
                "source {}: identity unknown, GetCallerIdentity failed (the sidecar itself never calls it): {e}",
                f.source
            ),
        ),
        None => r.push(Level::Ok, subject, format!("source {}", f.source)),
    }
}

fn group(r: &mut Report, cfg: &Config, g: &GroupFindings) {
    let subject = format!("target group {}", g.group);
    let subject = subject.as_str();
    let described = match &g.described {
        Ok(Some(tg)) => {
            r.push(Level::Ok, subject, format!("exists ({})", tg.arn));
            Some(tg)
        }
        Ok(None) => {
            r.push(Level::Fail, subject, "not found (TargetGroupNotFound): check the name or ARN, the region and the account".into());
            return;
        }
        Err(e) => {
            // The sidecar resolves names with DescribeTargetGroups; ARNs it
            // uses as given.
            let level = match g.group {
                GroupRef::Name(_) => Level::Fail,
                GroupRef::Arn(_) => Level::Warn,
            };
            let why = if e.is_access_denied() {
                "the identity may not call DescribeTargetGroups"
            } else {
                "DescribeTargetGroups failed"
            };
            r.push(level, subject, format!("cannot describe it: {why}: {e}"));
            None
        }
    };
    if let Some(tg) = described {
        group_settings(r, cfg, subject, g, tg);
    }
    attributes(r, cfg, subject, g);
    if let (Some(tg), Some(_)) = (described, &cfg.lb_health_addr) {
        unhealthy_termination(r, subject, g, tg);
    }
    permissions(r, cfg, subject, g);
}

/// With `-lb-health-addr`, a TCP/TLS group resets every established
/// connection once `/lb-health` fails (at the drain), unless
/// [`UNHEALTHY_TERMINATION`] is false.
fn unhealthy_termination(r: &mut Report, subject: &str, g: &GroupFindings, tg: &TargetGroup) {
    let (Some("TCP" | "TLS"), Some(Ok(attrs))) = (tg.protocol.as_deref(), &g.attributes) else {
        return;
    };
    let value = |key: &str| attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim());
    match value(UNHEALTHY_TERMINATION) {
        Some("false") => r.push(
            Level::Ok,
            subject,
            format!(
                "{UNHEALTHY_TERMINATION} false: a failing /lb-health keeps established connections \
                 ({UNHEALTHY_DRAINING} {})",
                value(UNHEALTHY_DRAINING).unwrap_or("unset")
            ),
        ),
        v => r.push(
            Level::Warn,
            subject,
            format!(
                "{UNHEALTHY_TERMINATION} is {}: once /lb-health fails at the drain, the load balancer \
                 resets every established connection; set it to false and {UNHEALTHY_DRAINING} to at \
                 least the app's longest connection (aws elbv2 modify-target-group-attributes)",
                v.unwrap_or("unset (default true)")
            ),
        ),
    }
}

/// Target type, IP family, load balancers and health checks.
fn group_settings(
    r: &mut Report,
    cfg: &Config,
    subject: &str,
    g: &GroupFindings,
    tg: &TargetGroup,
) {
    match tg.target_type.as_deref() {
        Some("ip") | None => r.push(Level::Ok, subject, "target type ip".into()),
        Some(other) => r.push(
            Level::Fail,
            subject,
            format!(
                "target type {other}: this sidecar registers pod IPs, which needs target type ip"
            ),
        ),
    }
    let family = tg.ip_address_type.as_deref().unwrap_or("ipv4");
    let is_v6 = g.target.id.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6());
    let wanted = if is_v6 { "ipv6" } else { "ipv4" };
    if family == wanted {
        r.push(
            Level::Ok,
            subject,
            format!("IP address type {family} matches target {}", g.target.id),
        );
    } else {
        r.push(
            Level::Fail,
            subject,
            format!(
                "IP address type {family}, but target {} is {wanted}: AWS refuses it (set -target-id, or use an {wanted} group)",
                g.target.id
            ),
        );
    }
    let lbs = tg.load_balancer_arns.len();
    if lbs > 0 {
        r.push(
            Level::Ok,
            subject,
            format!("attached to {lbs} load balancer(s)"),
        );
    } else {
        let (level, then) = if cfg.wait_in_service {
            (Level::Fail, "-wait-in-service would time out")
        } else {
            (Level::Warn, "it would get no traffic")
        };
        r.push(
            level,
            subject,
            format!("not attached to a load balancer (no listener forwards to it): its targets stay unused and never turn healthy, so {then}"),
        );
    }
    health_check(r, cfg, subject, tg);
}

fn health_check(r: &mut Report, cfg: &Config, subject: &str, tg: &TargetGroup) {
    let hc = &tg.health_check;
    if hc.enabled == Some(false) {
        r.push(
            Level::Warn,
            subject,
            "health checks disabled: targets report unavailable, never healthy".into(),
        );
        return;
    }
    let mut what = format!(
        "health check {} on {}",
        hc.protocol.as_deref().unwrap_or("?"),
        hc.port.as_deref().unwrap_or("traffic-port")
    );
    if let Some(path) = hc
        .path
        .as_deref()
        .filter(|_| matches!(hc.protocol.as_deref(), Some("HTTP" | "HTTPS")))
    {
        what.push_str(&format!(" {path}"));
    }
    let Some(interval) = hc.interval_seconds else {
        r.push(Level::Ok, subject, what);
        return;
    };
    // A newly registered target is healthy after one passing check (NLB and
    // ALB user guides: "After your target is registered, it must pass one
    // health check to be considered healthy"); HealthyThresholdCount counts
    // the checks that bring an unhealthy target back.
    let least = Duration::from_secs(u64::from(interval));
    what.push_str(&format!(
        " every {interval}s; a new target healthy after one passing check (at least {})",
        human(least)
    ));
    if let Some(h) = hc.healthy_threshold {
        what.push_str(&format!(", healthy again after {h} passing"));
    }
    if let Some(u) = hc.unhealthy_threshold {
        what.push_str(&format!(", unhealthy after {u} failing"));
    }
    if cfg.wait_in_service && least >= cfg.wait_in_service_timeout {
        r.push(
            Level::Fail,
            subject,
            format!(
                "{what}: longer than -wait-in-service-timeout {}, so the wait would time out",
                human(cfg.wait_in_service_timeout)
            ),
        );
    } else {
        r.push(Level::Ok, subject, what);
    }
}

/// `deregistration_delay.timeout_seconds` against `-wait-drained-timeout`.
fn attributes(r: &mut Report, cfg: &Config, subject: &str, g: &GroupFindings) {
    let attrs = match &g.attributes {
        None => return,
        Some(Err(e)) => {
            let why = if e.is_access_denied() {
                "the identity may not call DescribeTargetGroupAttributes (the sidecar does not need it)"
            } else {
                "DescribeTargetGroupAttributes failed"
            };
            r.push(
                Level::Warn,
                subject,
                format!("deregistration delay unknown: {why}: {e}"),
            );
            return;
        }
        Some(Ok(a)) => a,
    };
    let delay = attrs
        .iter()
        .find(|(k, _)| k == DEREGISTRATION_DELAY)
        .and_then(|(_, v)| v.trim().parse::<u64>().ok());
    let Some(delay) = delay else {
        r.push(
            Level::Warn,
            subject,
            format!("deregistration delay unknown: no readable {DEREGISTRATION_DELAY}"),
        );
        return;
    };
    let delay = Duration::from_secs(delay);
    if !cfg.wait_drained {
        r.push(
            Level::Ok,
            subject,
            format!(
                "deregistration delay {} (not waited for: -wait-drained is off)",
                human(delay)
            ),
        );
    } else if delay > cfg.wait_drained_timeout {
        r.push(
            Level::Warn,
            subject,
            format!(
                "deregistration delay {} is longer than -wait-drained-timeout {}: the wait for draining would give up while connections still drain",
                human(delay),
                human(cfg.wait_drained_timeout)
            ),
        );
    } else {
        r.push(
            Level::Ok,
            subject,
            format!(
                "deregistration delay {} within -wait-drained-timeout {}",
                human(delay),
                human(cfg.wait_drained_timeout)
            ),
        );
    }
}

/// DescribeTargetHealth and DeregisterTargets.
fn permissions(r: &mut Report, cfg: &Config, subject: &str, g: &GroupFindings) {
    let needs_health = cfg.wait_in_service || cfg.wait_drained;
    match &g.registered {
        None => {}
        Some(Ok(None)) => r.push(
            Level::Ok,
            subject,
            format!("target {} is not registered yet", g.target),
        ),
        Some(Ok(Some(state))) => r.push(
            Level::Warn,
            subject,
            format!(
                "target {} is registered already ({state}): another pod with this IP, or a leftover; \
                 DeregisterTargets is not tried, it would take it out",
                g.target
            ),
        ),
        Some(Err(e)) => {
            let level = if needs_health { Level::Fail } else { Level::Warn };
            let why = if e.is_access_denied() {
                "the identity may not call DescribeTargetHealth"
            } else {
                "DescribeTargetHealth failed"
            };
            r.push(
                level,
                subject,
                format!("{why}: {e}; DeregisterTargets is not tried without knowing the target is out"),
            );
        }
    }
    match &g.deregister {
        None => {}
        Some(Ok(())) => r.push(
            Level::Ok,
            subject,
            "may deregister (DeregisterTargets of the unregistered target answered success)".into(),
        ),
        Some(Err(e)) if e.is_invalid_target() => r.push(
            Level::Ok,
            subject,
            "may deregister (DeregisterTargets of the unregistered target answered InvalidTarget, not AccessDenied)".into(),
        ),
        Some(Err(e)) if e.is_access_denied() => r.push(
            Level::Fail,
            subject,
            format!("may not deregister: the target would stay in the load balancer after the pod is gone: {e}"),
        ),
        Some(Err(e)) => r.push(
            Level::Fail,
            subject,
            format!("DeregisterTargets failed: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests;
