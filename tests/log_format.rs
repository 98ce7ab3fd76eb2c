//! `-log-format json` as a process against the fake ELBv2: every line is
//! one JSON object, and the steps carry their fields as their own keys.

mod common;

use common::BIN;
use fake_aws::process::{base_env, secs, Sidecar};
use fake_aws::{FakeAws, Fault};
use serde_json::Value;

const IP: &str = "10.0.0.5";

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "-target-group-name",
        "tg",
        "-target-id",
        IP,
        "-target-port",
        "8080",
        "-health-poll-interval",
        "50ms",
        "-log-format",
        "json",
    ];
    a.extend_from_slice(extra);
    a
}

/// Every output line parsed; fails on a line that is not a JSON object.
fn parse(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert!(v.is_object(), "{l}");
            for key in ["timestamp", "level", "message"] {
                assert!(v[key].is_string(), "no {key} in {l}");
            }
            // RFC 3339 in UTC.
            let ts = v["timestamp"].as_str().unwrap_or_default();
            assert!(
                ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                "{ts}"
            );
            v
        })
        .collect()
}

/// The first record whose message starts with `prefix`.
fn record<'a>(records: &'a [Value], prefix: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
        .unwrap_or_else(|| panic!("no record starting {prefix:?} in {records:#?}"))
}

#[test]
fn json_lines_carry_the_steps_fields() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.set_health_sequence(
        &arn,
        IP,
        vec![
            ("initial", Some("Elb.RegistrationInProgress")),
            ("healthy", None),
        ],
    );
    fake.set_draining_polls(2);
    let mut s = Sidecar::spawn(BIN, &args(&["-wait-drained"]), &base_env(&fake.url()));
    s.expect_log("all targets are healthy", secs(10));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    let records = parse(&s.output());

    let r = record(&records, "registered target 10.0.0.5:8080 in tg");
    assert_eq!(r["level"], "INFO");
    assert_eq!(r["target_group"], "tg");
    assert_eq!(r["target"], "10.0.0.5:8080");
    assert_eq!(r["action"], "RegisterTargets");
    assert_eq!(r["state"], "registered");
    let rid = fake.requests_for("RegisterTargets")[0].request_id.clone();
    assert_eq!(r["request_id"], rid.as_str());

    let r = record(&records, "target 10.0.0.5:8080 in tg is initial");
    assert_eq!(r["state"], "initial");
    assert_eq!(r["reason"], "Elb.RegistrationInProgress");
    let r = record(&records, "target 10.0.0.5:8080 in tg is healthy");
    assert_eq!(r["state"], "healthy");
    assert!(r.get("reason").is_none(), "{r}");

    let r = record(&records, "deregistered target 10.0.0.5:8080 from tg");
    assert_eq!(r["action"], "DeregisterTargets");
    assert_eq!(r["target_group"], "tg");
    let rid = fake.requests_for("DeregisterTargets")[0].request_id.clone();
    assert_eq!(r["request_id"], rid.as_str());
    let r = record(&records, "target 10.0.0.5:8080 in tg is draining");
    assert_eq!(r["state"], "draining");
    assert_eq!(r["reason"], "Target.DeregistrationInProgress");
    let r = record(&records, "target 10.0.0.5:8080 in tg drained");
    assert_eq!(r["target"], "10.0.0.5:8080");
}

#[test]
fn errors_carry_the_aws_code_and_request_id() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.script("DeregisterTargets", vec![Fault::Error(403, "AccessDenied")]);
    let mut s = Sidecar::spawn(BIN, &args(&[]), &base_env(&fake.url()));
    s.expect_log("blocking until SIGTERM", secs(10));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 1);
    assert_eq!(fake.registered(&arn).len(), 1);
    let records = parse(&s.output());
    let r = record(&records, "DEREGISTRATION FAILED");
    assert_eq!(r["level"], "ERROR");
    assert_eq!(r["error_code"], "AccessDenied");
    assert_eq!(r["action"], "DeregisterTargets");
    assert_eq!(r["target_group"], "tg");
    let rid = fake.requests_for("DeregisterTargets")[0].request_id.clone();
    assert_eq!(r["request_id"], rid.as_str());
}

#[test]
fn text_stays_the_default() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    let a: Vec<&str> = args(&[])
        .into_iter()
        .filter(|a| *a != "-log-format" && *a != "json")
        .collect();
    let mut s = Sidecar::spawn(BIN, &a, &base_env(&fake.url()));
    s.expect_log("blocking until SIGTERM", secs(10));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    let out = s.output();
    assert!(
        out.contains(" INFO  registered target 10.0.0.5:8080 in tg (request id "),
        "{out}"
    );
    assert!(!out.contains('{'), "{out}");
}
