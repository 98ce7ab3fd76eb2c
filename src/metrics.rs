//! The process's metrics, for `GET /metrics` on the status listener.
//!
//! A small registry written for this program rather than a crate: the
//! families are fixed and few, and the Prometheus text exposition format
//! (version 0.0.4) is a page of code ([`Metrics::render`]). Every family is
//! named `nlb_registrator_*` and has `# HELP` and `# TYPE` lines:
//!
//! | family | type | labels |
//! |---|---|---|
//! | `nlb_registrator_aws_requests_total` | counter | `action`, `outcome` |
//! | `nlb_registrator_aws_retries_total` | counter | `action` |
//! | `nlb_registrator_aws_throttled_total` | counter | `action` |
//! | `nlb_registrator_aws_request_duration_seconds` | histogram | `action` |
//! | `nlb_registrator_credential_refreshes_total` | counter | `source`, `outcome` |
//! | `nlb_registrator_credentials_expiry_timestamp_seconds` | gauge | |
//! | `nlb_registrator_target_state` | gauge | `target_group`, `target`, `state` |
//! | `nlb_registrator_step_duration_seconds` | gauge | `step` |
//! | `nlb_registrator_deregistration_failures_total` | counter | `target_group` |
//! | `nlb_registrator_health_wait_timeouts_total` | counter | |
//! | `nlb_registrator_ready` | gauge | |
//!
//! `outcome` of a request is `ok`, the AWS error code (`Throttling`,
//! `AccessDenied`...), `transport_error` (no HTTP answer) or
//! `invalid_response` (an answer that could not be read). Each attempt is
//! one request; its duration includes signing (and a credentials fetch
//! when one was due). The STS calls that fetch credentials
//! (`AssumeRoleWithWebIdentity`, `AssumeRole`) are requests of their own
//! action; an ELBv2 attempt that failed for want of credentials is not
//! counted (no ELBv2 request was sent). A credentials refresh's `outcome`
//! is `ok` or `error`.
//!
//! `target_state` has one series per target group, target and `state`
//! (`registered`, `healthy`, `draining`, `out`): 1 for the state the
//! sidecar last saw, 0 for the others. A target is `registered` once
//! RegisterTargets succeeded (and while health checks are pending or
//! failing), `healthy` when DescribeTargetHealth says so, `draining` once
//! deregistered, and `out` when the drain wait saw it gone or AWS said it
//! was not registered. Without `-wait-drained` nothing looks again after
//! the deregistration, so it stays `draining` until the process exits.
//!
//! `step_duration_seconds` holds how long the last run of each step took
//! (`register`, `health_wait`, `deregister`, `drain`): gauges, since each
//! step runs once or twice per process, too few for a histogram.
//!
//! # Cost
//!
//! Recording takes one uncontended lock and a scan of a few entries; a
//! series allocates its labels once, when first seen. Nothing runs in the
//! background, so a sidecar at rest costs no CPU; rendering happens only
//! when a scrape asks. Label values from the network (AWS error codes) are
//! reduced to `[A-Za-z0-9._-]`, and a family holds at most [`MAX_SERIES`]
//! series: more label sets are not recorded.

use crate::aws::elbv2::State;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most series per family (label sets beyond are dropped).
pub const MAX_SERIES: usize = 64;

/// The upper bounds of the request duration histogram, in seconds.
pub const LATENCY_BUCKETS: [f64; 8] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A target's state as the sidecar last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// RegisterTargets succeeded; not (yet) healthy.
    Registered,
    /// DescribeTargetHealth said healthy.
    Healthy,
    /// Deregistered, or AWS said draining.
    Draining,
    /// Not in the target group.
    Out,
}

impl TargetState {
    const ALL: [TargetState; 4] = [
        TargetState::Registered,
        TargetState::Healthy,
        TargetState::Draining,
        TargetState::Out,
    ];

    /// The state a DescribeTargetHealth state stands for: `healthy`,
    /// `draining` (also `unhealthy.draining`), else `registered` (initial,
    /// unhealthy, unused while the group has no load balancer...).
    pub fn from_health(state: &State) -> TargetState {
        match state {
            State::Healthy => TargetState::Healthy,
            s if s.is_draining() => TargetState::Draining,
            _ => TargetState::Registered,
        }
    }

    /// The `state` label value.
    pub fn label(self) -> &'static str {
        match self {
            TargetState::Registered => "registered",
            TargetState::Healthy => "healthy",
            TargetState::Draining => "draining",
            TargetState::Out => "out",
        }
    }
}

/// A lifecycle step whose duration is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// RegisterTargets in every group.
    Register,
    /// The wait until every target is healthy.
    HealthWait,
    /// DeregisterTargets in every group.
    Deregister,
    /// The wait until draining is over (`-wait-drained`) and no new
    /// connection came for `-drain-quiet-period`, whichever are set.
    Drain,
}

impl Step {
    const ALL: [Step; 4] = [
        Step::Register,
        Step::HealthWait,
        Step::Deregister,
        Step::Drain,
    ];

    /// The `step` label value.
    pub fn label(self) -> &'static str {
        match self {
            Step::Register => "register",
            Step::HealthWait => "health_wait",
            Step::Deregister => "deregister",
            Step::Drain => "drain",
        }
    }

    fn index(self) -> usize {
        match self {
            Step::Register => 0,
            Step::HealthWait => 1,
            Step::Deregister => 2,
            Step::Drain => 3,
        }
    }
}

/// Series of one family: label values (in the family's label order) and a value.
#[derive(Debug)]
struct Series<V> {
    entries: Vec<(Vec<String>, V)>,
}

impl<V: Default> Series<V> {
    const fn new() -> Self {
        Series {
            entries: Vec::new(),
        }
    }

    /// The value for `labels`, added when new; `None` when the family is full.
    fn get(&mut self, labels: &[&str]) -> Option<&mut V> {
        let found = self.entries.iter().position(|(l, _)| {
            l.len() == labels.len() && l.iter().zip(labels).all(|(a, b)| a == b)
        });
        let i = match found {
            Some(i) => i,
            None if self.entries.len() < MAX_SERIES => {
                let owned = labels.iter().map(|s| (*s).to_owned()).collect();
                self.entries.push((owned, V::default()));
                self.entries.len() - 1
            }
            None => return None,
        };
        self.entries.get_mut(i).map(|(_, v)| v)
    }
}

/// A histogram's counts: per bucket (not cumulative), sum and count.
#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| v <= *b) {
            self.buckets[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }
}

#[derive(Debug)]
struct Inner {
    requests: Series<u64>,
    retries: Series<u64>,
    throttled: Series<u64>,
    latency: Series<Histogram>,
    refreshes: Series<u64>,
    expiry: Option<f64>,
    /// Target group and target, and the state (one per pair).
    targets: Series<Option<TargetState>>,
    steps: [Option<f64>; 4],
    dereg_failures: Series<u64>,
    health_wait_timeouts: u64,
    ready: bool,
}

/// The registry: every family, behind one lock.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

static GLOBAL: Metrics = Metrics::new();

/// The process's registry: what the AWS client and the lifecycle record,
/// and what `/metrics` shows.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

/// Reduces a label value that comes from the network to
/// `[A-Za-z0-9._-]`, at most 64 characters (`other` when nothing is left).
pub fn code_label(code: &str) -> &str {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        code
    } else {
        "other"
    }
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Metrics {
    /// An empty registry.
    pub const fn new() -> Self {
        Metrics {
            inner: Mutex::new(Inner {
                requests: Series::new(),
                retries: Series::new(),
                throttled: Series::new(),
                latency: Series::new(),
                refreshes: Series::new(),
                expiry: None,
                targets: Series::new(),
                steps: [None; 4],
                dereg_failures: Series::new(),
                health_wait_timeouts: 0,
                ready: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One AWS request (attempt) of `action` ended with `outcome` after `took`.
    pub fn aws_request(&self, action: &str, outcome: &str, took: Duration) {
        let mut m = self.lock();
        if let Some(n) = m.requests.get(&[action, code_label(outcome)]) {
            *n += 1;
        }
        if let Some(h) = m.latency.get(&[action]) {
            h.observe(seconds(took));
        }
    }

    /// `action` is tried again after a failure.
    pub fn aws_retry(&self, action: &str) {
        if let Some(n) = self.lock().retries.get(&[action]) {
            *n += 1;
        }
    }

    /// AWS answered `action` with a throttling error.
    pub fn aws_throttled(&self, action: &str) {
        if let Some(n) = self.lock().throttled.get(&[action]) {
            *n += 1;
        }
    }

    /// A credentials fetch from `source` ended; `expiry` is that of the
    /// credentials fetched (when it succeeded and they expire).
    pub fn credentials_fetched(&self, source: &str, ok: bool, expiry: Option<SystemTime>) {
        let mut m = self.lock();
        if let Some(n) = m.refreshes.get(&[source, if ok { "ok" } else { "error" }]) {
            *n += 1;
        }
        if ok {
            m.expiry = expiry.map(|e| match e.duration_since(UNIX_EPOCH) {
                Ok(d) => d.as_secs_f64(),
                Err(before) => -before.duration().as_secs_f64(),
            });
        }
    }

    /// The sidecar saw `target` in `group` in `state`.
    pub fn target_state(&self, group: &str, target: &str, state: TargetState) {
        if let Some(s) = self.lock().targets.get(&[group, target]) {
            *s = Some(state);
        }
    }

    /// `step` took `took` (the last run of it).
    pub fn step_took(&self, step: Step, took: Duration) {
        self.lock().steps[step.index()] = Some(seconds(took));
    }

    /// The deregistration of a target from `group` failed for good.
    pub fn deregistration_failed(&self, group: &str) {
        if let Some(n) = self.lock().dereg_failures.get(&[group]) {
            *n += 1;
        }
    }

    /// The health wait ended at `-wait-in-service-timeout`, not healthy.
    pub fn health_wait_timed_out(&self) {
        self.lock().health_wait_timeouts += 1;
    }

    /// What `/readyz` answers now (ready or not).
    pub fn set_ready(&self, ready: bool) {
        self.lock().ready = ready;
    }

    /// The text exposition format (version 0.0.4) of every family.
    pub fn render(&self) -> String {
        let m = self.lock();
        let mut out = String::with_capacity(4096);
        let p = "nlb_registrator_";
        counter(
            &mut out,
            &format!("{p}aws_requests_total"),
            "AWS API requests (each attempt) by action and outcome: ok, the AWS error code, transport_error or invalid_response.",
            &["action", "outcome"],
            &m.requests,
        );
        counter(
            &mut out,
            &format!("{p}aws_retries_total"),
            "AWS API calls tried again after a retryable failure, by action.",
            &["action"],
            &m.retries,
        );
        counter(
            &mut out,
            &format!("{p}aws_throttled_total"),
            "AWS answers that said to slow down (throttling), by action.",
            &["action"],
            &m.throttled,
        );
        histogram(
            &mut out,
            &format!("{p}aws_request_duration_seconds"),
            "Duration of AWS API requests (each attempt), by action.",
            &m.latency,
        );
        counter(
            &mut out,
            &format!("{p}credential_refreshes_total"),
            "Credentials fetches by source and outcome (ok or error).",
            &["source", "outcome"],
            &m.refreshes,
        );
        let name = format!("{p}credentials_expiry_timestamp_seconds");
        head(
            &mut out,
            &name,
            "When the current credentials expire, in unix seconds (absent for credentials that do not expire).",
            "gauge",
        );
        if let Some(e) = m.expiry {
            sample(&mut out, &name, &[], e);
        }
        let name = format!("{p}target_state");
        head(
            &mut out,
            &name,
            "The state each target was last seen in: 1 for that state (registered, healthy, draining, out), 0 for the others.",
            "gauge",
        );
        for (labels, state) in &m.targets.entries {
            for s in TargetState::ALL {
                let value = if *state == Some(s) { 1.0 } else { 0.0 };
                let l = [
                    ("target_group", labels[0].as_str()),
                    ("target", labels[1].as_str()),
                    ("state", s.label()),
                ];
                sample(&mut out, &name, &l, value);
            }
        }
        let name = format!("{p}step_duration_seconds");
        head(
            &mut out,
            &name,
            "How long the last run of each lifecycle step took: register, health_wait, deregister, drain.",
            "gauge",
        );
        for step in Step::ALL {
            if let Some(v) = m.steps[step.index()] {
                sample(&mut out, &name, &[("step", step.label())], v);
            }
        }
        counter(
            &mut out,
            &format!("{p}deregistration_failures_total"),
            "Deregistrations that failed for good (the target may still be registered), by target group.",
            &["target_group"],
            &m.dereg_failures,
        );
        // Unlabelled and shown from the start (0), so `increase()` sees the
        // first timeout.
        let name = format!("{p}health_wait_timeouts_total");
        head(
            &mut out,
            &name,
            "Health waits that ended at -wait-in-service-timeout with a target not healthy.",
            "counter",
        );
        sample(&mut out, &name, &[], m.health_wait_timeouts as f64);
        let name = format!("{p}ready");
        head(
            &mut out,
            &name,
            "1 while /readyz answers ready, else 0.",
            "gauge",
        );
        sample(&mut out, &name, &[], if m.ready { 1.0 } else { 0.0 });
        out
    }
}

/// Escapes a `# HELP` text: backslash and newline.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value as Prometheus (Go's ParseFloat) reads it.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn head(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_value(value));
}

/// Counters are integers; shown as floats would be the same.
#[allow(clippy::cast_precision_loss)]
fn counter(out: &mut String, name: &str, help: &str, label_names: &[&str], s: &Series<u64>) {
    head(out, name, help, "counter");
    for (values, n) in &s.entries {
        let labels: Vec<(&str, &str)> = label_names
            .iter()
            .copied()
            .zip(values.iter().map(String::as_str))
            .collect();
        sample(out, name, &labels, *n as f64);
    }
}

#[allow(clippy::cast_precision_loss)]
fn histogram(out: &mut String, name: &str, help: &str, s: &Series<Histogram>) {
    head(out, name, help, "histogram");
    let bucket = format!("{name}_bucket");
    for (values, h) in &s.entries {
        let action = values.first().map(String::as_str).unwrap_or_default();
        let mut cumulative = 0u64;
        for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
            cumulative += n;
            let le = format_value(*bound);
            let l = [("action", action), ("le", le.as_str())];
            sample(out, &bucket, &l, cumulative as f64);
        }
        let l = [("action", action), ("le", "+Inf")];
        sample(out, &bucket, &l, h.count as f64);
        sample(out, &format!("{name}_sum"), &[("action", action)], h.sum);
        sample(
            out,
            &format!("{name}_count"),
            &[("action", action)],
            h.count as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(m: &Metrics) -> Vec<String> {
        m.render().lines().map(str::to_owned).collect()
    }

    #[test]
    fn an_empty_registry_has_every_family_with_help_and_type() {
        let text = Metrics::new().render();
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        assert_eq!(types.len(), 11, "{text}");
        for t in &types {
            let name = t.split(' ').nth(2).unwrap();
            assert!(name.starts_with("nlb_registrator_"), "{t}");
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "no HELP for {name}"
            );
        }
        assert!(text.ends_with('\n'));
        // No samples but the two unlabelled families', at 0.
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "nlb_registrator_health_wait_timeouts_total 0",
                "nlb_registrator_ready 0"
            ]
        );
    }

    #[test]
    fn health_wait_timeouts_and_readiness() {
        let m = Metrics::new();
        m.health_wait_timed_out();
        m.health_wait_timed_out();
        m.set_ready(true);
        let text = m.render();
        assert!(text.contains("\nnlb_registrator_health_wait_timeouts_total 2\n"));
        assert!(text.contains("\nnlb_registrator_ready 1\n"));
        m.set_ready(false);
        assert!(m.render().contains("\nnlb_registrator_ready 0\n"));
    }

    #[test]
    fn counters_add_up_per_label_set() {
        let m = Metrics::new();
        m.aws_request("RegisterTargets", "ok", Duration::from_millis(30));
        m.aws_request("RegisterTargets", "ok", Duration::from_millis(70));
        m.aws_request("RegisterTargets", "Throttling", Duration::from_millis(5));
        m.aws_retry("RegisterTargets");
        m.aws_throttled("RegisterTargets");
        m.deregistration_failed("tg");
        let l = lines(&m);
        for want in [
            r#"nlb_registrator_aws_requests_total{action="RegisterTargets",outcome="ok"} 2"#,
            r#"nlb_registrator_aws_requests_total{action="RegisterTargets",outcome="Throttling"} 1"#,
            r#"nlb_registrator_aws_retries_total{action="RegisterTargets"} 1"#,
            r#"nlb_registrator_aws_throttled_total{action="RegisterTargets"} 1"#,
            r#"nlb_registrator_deregistration_failures_total{target_group="tg"} 1"#,
        ] {
            assert!(l.iter().any(|x| x == want), "no {want} in {l:#?}");
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        let m = Metrics::new();
        for ms in [10, 30, 30, 400, 20_000] {
            m.aws_request("DeregisterTargets", "ok", Duration::from_millis(ms));
        }
        let text = m.render();
        let b = |le: &str| {
            format!(
                "nlb_registrator_aws_request_duration_seconds_bucket{{action=\"DeregisterTargets\",le=\"{le}\"}}"
            )
        };
        for (le, n) in [
            ("0.025", 1),
            ("0.05", 3),
            ("0.1", 3),
            ("0.25", 3),
            ("0.5", 4),
            ("1", 4),
            ("2.5", 4),
            ("10", 4),
            ("+Inf", 5),
        ] {
            assert!(
                text.contains(&format!("{} {n}\n", b(le))),
                "{le} {n}: {text}"
            );
        }
        assert!(text.contains(
            "nlb_registrator_aws_request_duration_seconds_sum{action=\"DeregisterTargets\"} 20.47\n"
        ));
        assert!(text.contains(
            "nlb_registrator_aws_request_duration_seconds_count{action=\"DeregisterTargets\"} 5\n"
        ));
    }

    #[test]
    fn target_state_has_one_series_per_state() {
        let m = Metrics::new();
        m.target_state("tg", "10.0.0.5:80", TargetState::Registered);
        m.target_state("tg", "10.0.0.5:80", TargetState::Healthy);
        let text = m.render();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("nlb_registrator_target_state{"))
            .collect();
        assert_eq!(
            series,
            [
                r#"nlb_registrator_target_state{target_group="tg",target="10.0.0.5:80",state="registered"} 0"#,
                r#"nlb_registrator_target_state{target_group="tg",target="10.0.0.5:80",state="healthy"} 1"#,
                r#"nlb_registrator_target_state{target_group="tg",target="10.0.0.5:80",state="draining"} 0"#,
                r#"nlb_registrator_target_state{target_group="tg",target="10.0.0.5:80",state="out"} 0"#,
            ]
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
        let m = Metrics::new();
        m.target_state("we\"ird\\group\nname", "[::1]:80", TargetState::Out);
        let text = m.render();
        assert!(text.contains(
            "{target_group=\"we\\\"ird\\\\group\\nname\",target=\"[::1]:80\",state=\"out\"} 1\n"
        ));
    }

    #[test]
    fn codes_from_the_network_are_reduced() {
        assert_eq!(code_label("Throttling"), "Throttling");
        assert_eq!(code_label("HttpStatus503"), "HttpStatus503");
        assert_eq!(code_label("a b"), "other");
        assert_eq!(code_label(""), "other");
        assert_eq!(code_label(&"x".repeat(65)), "other");
    }

    #[test]
    fn a_family_holds_at_most_max_series() {
        let m = Metrics::new();
        for i in 0..MAX_SERIES + 10 {
            m.aws_request("A", &format!("Code{i}"), Duration::ZERO);
        }
        let n = m
            .render()
            .lines()
            .filter(|l| l.starts_with("nlb_registrator_aws_requests_total{"))
            .count();
        assert_eq!(n, MAX_SERIES);
    }

    #[test]
    fn credentials_expiry_steps_and_values() {
        let m = Metrics::new();
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        m.credentials_fetched("web identity", true, Some(at));
        m.credentials_fetched("web identity", false, None);
        m.step_took(Step::HealthWait, Duration::from_millis(1500));
        let text = m.render();
        assert!(text.contains("nlb_registrator_credentials_expiry_timestamp_seconds 1800000000\n"));
        assert!(text.contains(
            "nlb_registrator_credential_refreshes_total{source=\"web identity\",outcome=\"ok\"} 1\n"
        ));
        assert!(text.contains(
            "nlb_registrator_credential_refreshes_total{source=\"web identity\",outcome=\"error\"} 1\n"
        ));
        assert!(text.contains("nlb_registrator_step_duration_seconds{step=\"health_wait\"} 1.5\n"));
        assert!(!text.contains("step=\"register\""));
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(0.25), "0.25");
    }
}
