//! `-log-format json` as a process against the fake ELBv2: every line is
//! one JSON object, and the steps carry their fields as their own keys.

use crate::common::BIN;
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

/// A retried call says which action, what AWS answered (code and request
/// id), which attempt and how long until the next, as fields.
#[test]
fn retries_carry_the_action_code_attempt_and_delay() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.script("RegisterTargets", vec![Fault::Throttle]);
    fake.script(
        "DeregisterTargets",
        vec![Fault::Error(503, "ServiceUnavailable")],
    );
    let mut s = Sidecar::spawn(BIN, &args(&[]), &base_env(&fake.url()));
    s.expect_log("blocking until SIGTERM", secs(15));
    s.term();
    assert_eq!(s.wait_exit(secs(15)), 0, "{}", s.output());
    assert!(fake.registered(&arn).is_empty());
    let records = parse(&s.output());
    let retries: Vec<&Value> = records
        .iter()
        .filter(|r| r["retry_in_ms"].is_u64())
        .collect();
    assert_eq!(retries.len(), 2, "{records:#?}");
    let ids = |action: &str| -> Vec<String> {
        fake.requests_for(action)
            .iter()
            .map(|r| r.request_id.clone())
            .collect()
    };
    for (r, action, code, throttled) in [
        (retries[0], "RegisterTargets", "Throttling", true),
        (retries[1], "DeregisterTargets", "ServiceUnavailable", false),
    ] {
        assert_eq!(r["level"], "WARN", "{r}");
        assert_eq!(r["action"], action, "{r}");
        assert_eq!(r["error_code"], code, "{r}");
        assert_eq!(r["attempt"], 1, "{r}");
        assert_eq!(r["throttled"], throttled, "{r}");
        assert_eq!(r["request_id"], ids(action)[0].as_str(), "{r}");
        let ms = r["retry_in_ms"].as_u64().unwrap_or_default();
        let message = r["message"].as_str().unwrap_or_default();
        assert!(
            message.ends_with(&format!("retrying in {ms} ms (attempt 1)")),
            "{r}"
        );
    }
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
