//! `GET /metrics` over real HTTP, read by an independent parser: the
//! reference Python client's (`prometheus_client.parser`, PyPI
//! `prometheus_client`, installed by scripts/install-test-deps). A
//! lifecycle runs against the fake (a throttled RegisterTargets, a health
//! wait, a drain with `-wait-drained`, a refused deregistration) and each
//! scrape must parse, pass `promtool check metrics` and show what happened.

use crate::common::BIN;
use fake_aws::process::{base_env, free_port, secs, Sidecar, TempDir};
use fake_aws::{http_request, FakeAws, Fault};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

const IP: &str = "10.0.0.9";

/// Parses the exposition with prometheus_client and checks what every
/// family must have; prints `family NAME TYPE` per family and
/// `NAME{k="v",...} VALUE` per sample, labels sorted.
const PARSE: &str = r#"
import sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:
    print("prometheus_client is missing (pip install prometheus_client; scripts/install-test-deps): %s" % e, file=sys.stderr)
    sys.exit(3)
text = sys.stdin.read()
for f in text_string_to_metric_families(text):
    assert f.name.startswith("nlb_registrator_"), f.name
    assert f.documentation, "no HELP for " + f.name
    assert f.type in ("counter", "gauge", "histogram"), (f.name, f.type)
    print("family %s %s" % (f.name, f.type))
    for s in f.samples:
        labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
        print("%s{%s} %r" % (s.name, labels, float(s.value)))
"#;

/// The parser's view of one scrape.
struct Scrape {
    lines: Vec<String>,
}

impl Scrape {
    fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }

    fn expect(&self, line: &str) {
        assert!(self.has(line), "no {line:?} in\n{}", self.lines.join("\n"));
    }

    /// The value of the sample `name{labels}` (labels sorted, as printed).
    fn value(&self, series: &str) -> Option<f64> {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}

fn scrape(port: u16) -> Scrape {
    let r = http_request::<&str, &str>(port, "GET", "/metrics", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let mut py = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run python3");
    py.stdin.take().unwrap().write_all(&r.body).unwrap();
    let out = py.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(3) => panic!("{stderr}"),
        _ => panic!(
            "prometheus_client cannot parse /metrics: {stderr}\n{}",
            r.text()
        ),
    }
    let lint = crate::monitoring::promtool(&["check", "metrics"], &r.body);
    assert!(
        lint.status.success(),
        "promtool check metrics: {}{}\n{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr),
        r.text()
    );
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    // Every family, whatever happened.
    for family in [
        "family nlb_registrator_aws_requests counter",
        "family nlb_registrator_aws_retries counter",
        "family nlb_registrator_aws_throttled counter",
        "family nlb_registrator_aws_request_duration_seconds histogram",
        "family nlb_registrator_credential_refreshes counter",
        "family nlb_registrator_credentials_expiry_timestamp_seconds gauge",
        "family nlb_registrator_target_state gauge",
        "family nlb_registrator_step_duration_seconds gauge",
        "family nlb_registrator_deregistration_failures counter",
        "family nlb_registrator_health_wait_timeouts counter",
        "family nlb_registrator_ready gauge",
    ] {
        assert!(lines.iter().any(|l| l == family), "no {family}: {lines:#?}");
    }
    Scrape { lines }
}

fn wait_ready(port: u16) {
    let end = Instant::now() + secs(15);
    while http_request::<&str, &str>(port, "GET", "/readyz", &[], b"")
        .map(|r| r.status)
        .ok()
        != Some(200)
    {
        assert!(Instant::now() < end, "never ready");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn state(group: &str, st: &str) -> String {
    format!("nlb_registrator_target_state{{state=\"{st}\",target=\"{IP}:80\",target_group=\"{group}\"}}")
}

fn spawn(fake: &FakeAws, port: u16, extra: &[&str]) -> Sidecar {
    spawn_env(port, extra, &base_env(&fake.url()))
}

/// [`spawn`] with the whole environment given.
fn spawn_env(port: u16, extra: &[&str], env: &BTreeMap<String, String>) -> Sidecar {
    let addr = format!("127.0.0.1:{port}");
    let mut a = vec![
        "-target-group-name",
        "tg",
        "-target-id",
        IP,
        "-target-port",
        "80",
        "-health-poll-interval",
        "50ms",
        "-status-addr",
        &addr,
    ];
    a.extend_from_slice(extra);
    Sidecar::spawn(BIN, &a, env)
}

#[test]
fn a_lifecycle_shows_in_the_metrics_as_prometheus_reads_them() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.set_health_sequence(
        &arn,
        IP,
        vec![
            ("initial", Some("Elb.RegistrationInProgress")),
            ("initial", Some("Elb.RegistrationInProgress")),
            ("healthy", None),
        ],
    );
    fake.set_draining_polls(2);
    fake.script("RegisterTargets", vec![Fault::Throttle]);
    let port = free_port();
    let mut s = spawn(&fake, port, &["-wait-drained"]);
    wait_ready(port);

    let m = scrape(port);
    let req = |action: &str, outcome: &str| {
        format!("nlb_registrator_aws_requests_total{{action=\"{action}\",outcome=\"{outcome}\"}}")
    };
    m.expect(&format!("{} 1.0", req("RegisterTargets", "Throttling")));
    m.expect(&format!("{} 1.0", req("RegisterTargets", "ok")));
    m.expect(&format!("{} 1.0", req("DescribeTargetGroups", "ok")));
    m.expect("nlb_registrator_aws_retries_total{action=\"RegisterTargets\"} 1.0");
    m.expect("nlb_registrator_aws_throttled_total{action=\"RegisterTargets\"} 1.0");
    let polls = m
        .value(&req("DescribeTargetHealth", "ok"))
        .expect("DescribeTargetHealth counted");
    assert!(polls >= 3.0, "{polls}");
    m.expect("nlb_registrator_aws_request_duration_seconds_count{action=\"RegisterTargets\"} 2.0");
    m.expect("nlb_registrator_aws_request_duration_seconds_bucket{action=\"RegisterTargets\",le=\"+Inf\"} 2.0");
    m.expect(&format!("{} 1.0", state("tg", "healthy")));
    m.expect(&format!("{} 0.0", state("tg", "registered")));
    m.expect("nlb_registrator_ready{} 1.0");
    m.expect("nlb_registrator_health_wait_timeouts_total{} 0.0");
    m.expect(&format!("{} 0.0", state("tg", "out")));
    for step in ["register", "health_wait"] {
        let v = m
            .value(&format!(
                "nlb_registrator_step_duration_seconds{{step=\"{step}\"}}"
            ))
            .unwrap_or_else(|| panic!("no {step} duration"));
        assert!((0.0..15.0).contains(&v), "{step}: {v}");
    }
    // Static credentials: one fetch, no expiry.
    assert!(m.lines.iter().any(|l| {
        l.starts_with("nlb_registrator_credential_refreshes_total{outcome=\"ok\"")
            && l.ends_with(" 1.0")
    }));
    assert!(!m
        .lines
        .iter()
        .any(|l| l.starts_with("nlb_registrator_credentials_expiry_timestamp_seconds")));

    // Drain: deregistered, drained, out; the process keeps running.
    let r = http_request::<&str, &str>(port, "GET", "/drain", &[], b"").unwrap();
    assert_eq!(
        (r.status, r.text()),
        (200, "deregistered and drained\n".into())
    );
    let m = scrape(port);
    m.expect(&format!("{} 1.0", req("DeregisterTargets", "ok")));
    m.expect(&format!("{} 1.0", state("tg", "out")));
    m.expect(&format!("{} 0.0", state("tg", "healthy")));
    m.expect("nlb_registrator_ready{} 0.0");
    for step in ["deregister", "drain"] {
        assert!(
            m.value(&format!(
                "nlb_registrator_step_duration_seconds{{step=\"{step}\"}}"
            ))
            .is_some(),
            "no {step} duration"
        );
    }
    assert!(!m
        .lines
        .iter()
        .any(|l| l.starts_with("nlb_registrator_deregistration_failures_total{")));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
}

#[test]
fn a_refused_deregistration_is_counted() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    fake.script("DeregisterTargets", vec![Fault::Error(403, "AccessDenied")]);
    let port = free_port();
    let mut s = spawn(&fake, port, &["-wait-in-service=false"]);
    wait_ready(port);
    let r = http_request::<&str, &str>(port, "GET", "/drain", &[], b"").unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    let m = scrape(port);
    m.expect("nlb_registrator_deregistration_failures_total{target_group=\"tg\"} 1.0");
    m.expect(
        "nlb_registrator_aws_requests_total{action=\"DeregisterTargets\",outcome=\"AccessDenied\"} 1.0",
    );
    // Still registered as far as the sidecar knows.
    m.expect(&format!("{} 1.0", state("tg", "registered")));
    // SIGTERM tries again, and succeeds now.
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
}

/// Credentials from IRSA: the STS calls are counted under their own
/// action (a throttled one and the one that succeeded), and the ELBv2 call
/// that waited for them is counted once, as sent, never under the STS
/// answer's outcome.
#[test]
fn sts_calls_for_credentials_are_counted_under_their_own_action() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    fake.script("AssumeRoleWithWebIdentity", vec![Fault::Throttle]);
    let dir = TempDir::new("metrics-irsa");
    std::fs::write(dir.path("token"), "eyJhbGciOiJSUzI1NiJ9.metrics.sig\n").unwrap();
    let mut env = base_env(&fake.url());
    env.remove("AWS_ACCESS_KEY_ID");
    env.remove("AWS_SECRET_ACCESS_KEY");
    env.insert("AWS_WEB_IDENTITY_TOKEN_FILE".into(), dir.path("token"));
    env.insert(
        "AWS_ROLE_ARN".into(),
        "arn:aws:iam::123456789012:role/nlb-registrator".into(),
    );
    let port = free_port();
    let mut s = spawn_env(port, &[], &env);
    wait_ready(port);
    let m = scrape(port);
    let sts = "nlb_registrator_aws_requests_total{action=\"AssumeRoleWithWebIdentity\"";
    m.expect(&format!("{sts},outcome=\"Throttling\"}} 1.0"));
    m.expect(&format!("{sts},outcome=\"ok\"}} 1.0"));
    m.expect("nlb_registrator_aws_throttled_total{action=\"AssumeRoleWithWebIdentity\"} 1.0");
    m.expect(
        "nlb_registrator_aws_request_duration_seconds_count{action=\"AssumeRoleWithWebIdentity\"} 2.0",
    );
    m.expect(
        "nlb_registrator_aws_requests_total{action=\"DescribeTargetGroups\",outcome=\"ok\"} 1.0",
    );
    let elb: Vec<&String> = m
        .lines
        .iter()
        .filter(|l| {
            (l.starts_with("nlb_registrator_aws_requests_total{")
                || l.starts_with("nlb_registrator_aws_throttled_total{"))
                && !l.contains("AssumeRoleWithWebIdentity")
                && !l.contains("outcome=\"ok\"")
        })
        .collect();
    assert!(elb.is_empty(), "ELBv2 counted with STS's answer: {elb:?}");
    assert_eq!(fake.count("DescribeTargetGroups"), 1);
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
}

/// With `-drain-quiet-period` alone the drain step is the quiet wait: its
/// duration is there, and at least the period long.
#[test]
fn the_drain_step_covers_the_quiet_period() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    let port = free_port();
    let mut s = spawn(
        &fake,
        port,
        // The quiet wait counts the namespace's accepted connections, and
        // here that is the host's, with other tests' traffic: bound it.
        &[
            "-wait-in-service=false",
            "-drain-quiet-period",
            "300ms",
            "-wait-drained-timeout",
            "3s",
        ],
    );
    wait_ready(port);
    let drain = "nlb_registrator_step_duration_seconds{step=\"drain\"}";
    assert_eq!(scrape(port).value(drain), None);
    let r = http_request::<&str, &str>(port, "GET", "/drain", &[], b"").unwrap();
    let quiet = (200, "deregistered\n".to_string());
    let held = (
        503,
        "deregistered, but new connections kept arriving until -wait-drained-timeout\n".to_string(),
    );
    assert!(
        [quiet, held].contains(&(r.status, r.text())),
        "{} {}",
        r.status,
        r.text()
    );
    let took = scrape(port).value(drain).expect("a drain duration");
    assert!((0.3..15.0).contains(&took), "{took}");
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
}
