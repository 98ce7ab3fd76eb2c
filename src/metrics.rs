//! The metrics of `GET /metrics`, in the Prometheus text format 0.0.4 (the
//! families: docs/operations.md). A family holds at most [`MAX_SERIES`]
//! label sets and network label values are reduced, so no peer can grow it.

use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most label sets per family (more are not recorded).
pub const MAX_SERIES: usize = 64;

/// The request duration histogram's upper bounds, in seconds.
const BUCKETS: [f64; 8] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The `state` labels of `target_state`: what the sidecar last saw.
pub const STATES: [&str; 4] = ["registered", "healthy", "draining", "out"];

/// Each family: name (after `nlb_registrator_`), type, label names, help.
#[rustfmt::skip]
const FAMILIES: [(&str, &str, &[&str], &str); 11] = [
    ("aws_requests_total", "counter", &["action", "outcome"],
        "AWS API requests (each attempt) by action and outcome: ok, the AWS error code, transport_error or invalid_response."),
    ("aws_retries_total", "counter", &["action"],
        "AWS API calls tried again after a retryable failure, by action."),
    ("aws_throttled_total", "counter", &["action"],
        "AWS answers that said to slow down (throttling), by action."),
    ("aws_request_duration_seconds", "histogram", &["action"],
        "Duration of AWS API requests (each attempt), by action."),
    ("credential_refreshes_total", "counter", &["source", "outcome"],
        "Credentials fetches by source and outcome (ok or error)."),
    ("credentials_expiry_timestamp_seconds", "gauge", &[],
        "When the current credentials expire, in unix seconds (absent for credentials that do not expire)."),
    ("target_state", "gauge", &["target_group", "target"],
        "The state each target was last seen in: 1 for that state (registered, healthy, draining, out), 0 for the others."),
    ("step_duration_seconds", "gauge", &["step"],
        "How long the last run of each lifecycle step took: register, health_wait, deregister, drain."),
    ("deregistration_failures_total", "counter", &["target_group"],
        "Deregistrations that failed for good (the target may still be registered), by target group."),
    ("health_wait_timeouts_total", "counter", &[],
        "Health waits that ended at -wait-in-service-timeout with a target not healthy."),
    ("ready", "gauge", &[], "1 while /readyz answers ready, else 0."),
];

/// One label set of a family. A histogram's `value` is its count;
/// `target_state`'s, the index of the state.
#[derive(Default)]
struct Series {
    family: &'static str,
    labels: Vec<String>,
    value: f64,
    buckets: [u64; BUCKETS.len()],
    sum: f64,
}

/// The registry: every series, in the order first seen.
pub struct Metrics(Mutex<Vec<Series>>);

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's registry.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

/// A label value from the network: `[A-Za-z0-9._-]{1,64}`, else `other`.
fn code_label(code: &str) -> &str {
    let fits = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    Some(code)
        .filter(|c| (1..=64).contains(&c.len()) && c.bytes().all(fits))
        .unwrap_or("other")
}

impl Metrics {
    /// An empty registry. The unlabelled families show 0 from the start, so
    /// `increase()` sees the first timeout.
    #[allow(clippy::new_without_default)] // one registry: global()
    pub fn new() -> Self {
        let m = Metrics(Mutex::default());
        m.set("health_wait_timeouts_total", &[], 0.0);
        m.set("ready", &[], 0.0);
        m
    }

    fn with(&self, family: &'static str, labels: &[&str], f: impl FnOnce(&mut Series)) {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = all
            .iter_mut()
            .find(|s| s.family == family && s.labels == labels)
        {
            return f(s);
        }
        if all.iter().filter(|s| s.family == family).count() < MAX_SERIES {
            let mut s = Series {
                family,
                labels: labels.iter().map(|l| (*l).to_owned()).collect(),
                ..Series::default()
            };
            f(&mut s);
            all.push(s);
        }
    }

    fn add(&self, family: &'static str, labels: &[&str]) {
        self.with(family, labels, |s| s.value += 1.0);
    }

    fn set(&self, family: &'static str, labels: &[&str], v: f64) {
        self.with(family, labels, |s| s.value = v);
    }

    /// One AWS request (attempt) of `action` ended with `outcome` after `took`.
    pub fn aws_request(&self, action: &str, outcome: &str, took: Duration) {
        self.add("aws_requests_total", &[action, code_label(outcome)]);
        let secs = took.as_secs_f64();
        self.with("aws_request_duration_seconds", &[action], |s| {
            for (n, bound) in s.buckets.iter_mut().zip(BUCKETS) {
                *n += u64::from(secs <= bound);
            }
            s.value += 1.0;
            s.sum += secs;
        });
    }

    /// `action` is tried again after a failure.
    pub fn aws_retry(&self, action: &str) {
        self.add("aws_retries_total", &[action]);
    }

    /// AWS answered `action` with a throttling error.
    pub fn aws_throttled(&self, action: &str) {
        self.add("aws_throttled_total", &[action]);
    }

    /// A credentials fetch from `source` ended, with the expiry of those fetched.
    pub fn credentials_fetched(&self, source: &str, ok: bool, expiry: Option<SystemTime>) {
        let outcome = if ok { "ok" } else { "error" };
        self.add("credential_refreshes_total", &[source, outcome]);
        if ok {
            let family = "credentials_expiry_timestamp_seconds";
            let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            all.retain(|s| s.family != family);
            drop(all); // before set() locks again
            if let Some(at) = expiry.and_then(|e| e.duration_since(UNIX_EPOCH).ok()) {
                self.set(family, &[], at.as_secs_f64());
            }
        }
    }

    /// The sidecar saw `target` in `group` in `state` (one of [`STATES`]).
    pub fn target_state(&self, group: &str, target: &str, state: &str) {
        let i = STATES.iter().position(|s| *s == state);
        self.set(
            "target_state",
            &[group, target],
            i.map_or(-1.0, |i| i as f64),
        );
    }

    /// `step` (`register`, `health_wait`, `deregister`, `drain`) took `took` (its last run).
    pub fn step_took(&self, step: &str, took: Duration) {
        self.set("step_duration_seconds", &[step], took.as_secs_f64());
    }

    /// The deregistration of a target from `group` failed for good.
    pub fn deregistration_failed(&self, group: &str) {
        self.add("deregistration_failures_total", &[group]);
    }

    /// The health wait ended at `-wait-in-service-timeout`, not healthy.
    pub fn health_wait_timed_out(&self) {
        self.add("health_wait_timeouts_total", &[]);
    }

    /// What `/readyz` answers now (ready or not).
    pub fn set_ready(&self, ready: bool) {
        self.set("ready", &[], f64::from(u8::from(ready)));
    }

    /// Every family in the text exposition format.
    pub fn render(&self) -> String {
        let all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::with_capacity(4096);
        for (family, kind, label_names, help) in FAMILIES {
            let name = format!("nlb_registrator_{family}");
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for s in all.iter().filter(|s| s.family == family) {
                let labels = label_names.iter().zip(&s.labels);
                let labels: String = labels.map(|(k, v)| label(k, v)).collect();
                let mut sample = |suffix: &str, extra: &str, value: f64| {
                    let set = format!("{labels}{extra}");
                    let set = set.strip_prefix(',').map(|l| format!("{{{l}}}"));
                    let _ = writeln!(out, "{name}{suffix}{} {value}", set.unwrap_or_default());
                };
                if kind == "histogram" {
                    for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                        sample("_bucket", &label("le", &bound.to_string()), n as f64);
                    }
                    sample("_bucket", &label("le", "+Inf"), s.value);
                    sample("_sum", "", s.sum);
                    sample("_count", "", s.value);
                } else if family == "target_state" {
                    for (i, state) in STATES.iter().enumerate() {
                        let seen = f64::from(u8::from(i as f64 == s.value));
                        sample("", &label("state", state), seen);
                    }
                } else {
                    sample("", "", s.value);
                }
            }
        }
        out
    }
}

/// `,name="value"`, the value escaped (the first comma goes in [`Metrics::render`]).
fn label(name: &str, value: &str) -> String {
    let value = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!(",{name}=\"{}\"", value.replace('\n', "\\n"))
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
        m.target_state("tg", "10.0.0.5:80", "registered");
        m.target_state("tg", "10.0.0.5:80", "healthy");
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
        assert_eq!(label("l", "a\\b\"c\nd"), ",l=\"a\\\\b\\\"c\\nd\"");
        let m = Metrics::new();
        m.target_state("we\"ird\\group\nname", "[::1]:80", "out");
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
        m.step_took("health_wait", Duration::from_millis(1500));
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
    }
}
