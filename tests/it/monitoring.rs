//! The alerts of `examples/monitoring/`, run by promtool (Debian package
//! `prometheus`, installed by scripts/install-test-deps): the
//! PrometheusRule's groups pass `promtool check rules`, and
//! `alerts-test.yaml` (`promtool test rules`) tests every alert firing and
//! not firing. The rules file promtool reads is extracted from the
//! PrometheusRule, so the two cannot diverge. Each alert has a summary and
//! a runbook entry in docs/alerts.md, uses only metrics the sidecar
//! exports, and the PodMonitor scrapes the example Deployments' status
//! port. `tests/it/metrics.rs` runs `promtool check metrics` on every live
//! scrape.

use fake_aws::process::TempDir;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `promtool ARGS` with `stdin`.
pub fn promtool(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): scripts/install-test-deps installs it (Debian package prometheus)")
        });
    // promtool may exit before reading it all: its verdict is what counts.
    let _ = child.stdin.take().map(|mut i| i.write_all(stdin));
    child.wait_with_output().expect("promtool")
}

/// Writes the PrometheusRule's spec to OUT/rules.yaml beside a copy of
/// alerts-test.yaml, checks what promtool cannot (see the module docs) and
/// prints the metric names the rules use, one a line.
const EXTRACT: &str = r#"
import re, shutil, sys, yaml
out = sys.argv[1]
ex = "examples/monitoring/"
rule = yaml.safe_load(open(ex + "prometheusrule.yaml"))
assert rule["kind"] == "PrometheusRule", rule["kind"]
yaml.safe_dump(rule["spec"], open(out + "/rules.yaml", "w"))
shutil.copy(ex + "alerts-test.yaml", out)
runbook = open("docs/alerts.md").read()
alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
names = {r["alert"] for r in alerts}
tests = [t for g in yaml.safe_load(open(ex + "alerts-test.yaml"))["tests"] for t in g["alert_rule_test"]]
unknown = {t["alertname"] for t in tests} - names
assert not unknown, "tests of unknown alerts %s" % unknown
for r in alerts:
    a, ann = r["alert"], r["annotations"]
    assert ann.get("summary"), a + " has no summary"
    url = ann.get("runbook_url", "")
    assert url.endswith("/docs/alerts.md#" + a.lower()), a + " runbook_url " + url
    assert "\n## " + a + "\n" in runbook, "docs/alerts.md has no '## %s' entry" % a
    mine = [t for t in tests if t["alertname"] == a]
    assert any(t["exp_alerts"] for t in mine), a + " is never tested firing"
    assert any(not t["exp_alerts"] for t in mine), a + " is never tested not firing"
    for m in re.findall(r"nlb_registrator_\w+", r["expr"]):
        print(m)
mon = yaml.safe_load(open(ex + "podmonitor.yaml"))
want = mon["spec"]["selector"]["matchLabels"]
for f in ("deployment-sidecar.yaml", "deployment-native-sidecar.yaml"):
    spec = yaml.safe_load(open("examples/" + f))["spec"]["template"]
    labels = spec["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in want.items()), f + ": the PodMonitor selects no pod"
    ports = [p["name"] for c in spec["spec"].get("initContainers", []) + spec["spec"]["containers"]
             if "k8s-nlb-registrator-sidecar" in c["image"] for p in c.get("ports", [])]
    for e in mon["spec"]["podMetricsEndpoints"]:
        assert e["port"] in ports, "%s: no sidecar port %s" % (f, e["port"])
"#;

#[test]
fn every_alert_passes_promtool_tests_and_has_a_runbook() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = TempDir::new("monitoring");
    let out = Command::new("python3")
        .args(["-c", EXTRACT, &dir.path("")])
        .current_dir(root)
        .output()
        .expect("cannot run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families = k8s_nlb_registrator_sidecar::metrics::Metrics::new().render();
    for name in stdout.lines() {
        assert!(
            families.contains(&format!("# TYPE {name} ")),
            "the alerts use {name}, which the sidecar does not export"
        );
    }
    for args in [
        ["check", "rules", &dir.path("rules.yaml")],
        ["test", "rules", &dir.path("alerts-test.yaml")],
    ] {
        let r = promtool(&args, b"");
        assert!(
            r.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
    }
}
