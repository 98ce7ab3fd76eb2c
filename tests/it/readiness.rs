//! Readiness that recovers: after a health-wait timeout the sidecar keeps
//! checking while it blocks and turns `/readyz` ready once the target is
//! healthy, against the fake's health sequence.

use crate::common::BIN;
use fake_aws::process::{base_env, free_port, secs, Sidecar};
use fake_aws::{http_request, FakeAws};
use std::time::{Duration, Instant};

const IP: &str = "10.0.0.7";

fn readyz(port: u16) -> u16 {
    http_request::<&str, &str>(port, "GET", "/readyz", &[], b"").map_or(0, |r| r.status)
}

#[test]
fn ready_once_healthy_after_a_health_wait_timeout() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    // Unhealthy for the whole wait (300 ms at 50 ms) and a few polls more.
    let mut seq = vec![("unhealthy", Some("Target.FailedHealthChecks")); 12];
    seq.push(("healthy", None));
    fake.set_health_sequence(&arn, IP, seq);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let args = [
        "-target-group-name",
        "tg",
        "-target-id",
        IP,
        "-health-poll-interval",
        "50ms",
        "-wait-in-service-timeout",
        "300ms",
        "-status-addr",
        &addr,
    ];
    let mut s = Sidecar::spawn(BIN, &args, &base_env(&fake.url()));
    s.expect_log("not healthy after 300ms", secs(10));
    s.expect_log("blocking until SIGTERM", secs(5));
    assert_eq!(readyz(port), 503, "not ready after the timeout");
    s.expect_log("all targets are healthy now", secs(20));
    assert_eq!(readyz(port), 200, "ready once healthy");
    // No more polls once healthy: blocked in the kernel again.
    let polls = fake.count("DescribeTargetHealth");
    assert!(polls >= 13, "{polls}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fake.count("DescribeTargetHealth"), polls);
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
}

#[test]
fn polls_after_the_timeout_slow_down() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.set_health_sequence(
        &arn,
        IP,
        vec![("unhealthy", Some("Target.FailedHealthChecks"))],
    );
    let args = [
        "-target-group-name",
        "tg",
        "-target-id",
        IP,
        "-health-poll-interval",
        "100ms",
        "-wait-in-service-timeout",
        "200ms",
    ];
    let mut s = Sidecar::spawn(BIN, &args, &base_env(&fake.url()));
    s.expect_log("blocking until SIGTERM", secs(10));
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    // After the timeout: pauses of about 0.1, 0.2, 0.4, 0.8, 1.6 s (±20 %):
    // about five polls in 3 s, where a fixed 100 ms interval would make 30.
    let later = fake
        .requests_for("DescribeTargetHealth")
        .iter()
        .filter(|r| r.at >= start)
        .count();
    assert!((2..=7).contains(&later), "{later} polls in 3 s");
    assert!(fake.registered(&arn).is_empty());
}
