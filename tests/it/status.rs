//! The status listener over real HTTP: /healthz, /readyz, /drain, and
//! draining (`-wait-drained`) against the fake's draining sequence.

use crate::common::BIN;
use fake_aws::process::{base_env, free_port, get, secs, wait_status, Sidecar};
use fake_aws::{http_request, FakeAws, Fault};
use std::time::{Duration, Instant};

const IP: &str = "10.0.0.6";

/// The status line's start of a HEAD request (read raw: no body follows).
fn head_status(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        c,
        "HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 12];
    c.read_exact(&mut buf).unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

fn spawn(fake: &FakeAws, port: u16, extra: &[&str]) -> Sidecar {
    let addr = format!("127.0.0.1:{port}");
    let mut a = vec![
        "-target-group-name",
        "tg",
        "-target-id",
        IP,
        "-health-poll-interval",
        "50ms",
        "-status-addr",
        &addr,
    ];
    a.extend_from_slice(extra);
    Sidecar::spawn(BIN, &a, &base_env(&fake.url()))
}

#[test]
fn readyz_follows_registration_and_health() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let mut seq = vec![("initial", Some("Elb.RegistrationInProgress")); 10];
    seq.push(("healthy", None));
    fake.set_health_sequence(&arn, IP, seq);
    let port = free_port();
    let mut s = spawn(&fake, port, &[]);
    wait_status(port, "/healthz", 200, secs(10));
    // Not ready while the target is initial.
    assert!(s.wait_log("is initial", secs(10)));
    assert_eq!(get(port, "/readyz").0, 503);
    wait_status(port, "/readyz", 200, secs(10));
    assert_eq!(get(port, "/nope").0, 404);
    // Only GET drains: a HEAD probe must not take the pod out.
    assert_eq!(head_status(port, "/drain"), "HTTP/1.1 405");
    assert_eq!(get(port, "/readyz").0, 200);
    assert_eq!(
        http_request::<&str, &str>(port, "POST", "/drain", &[], b"")
            .unwrap()
            .status,
        405
    );
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
}

#[test]
fn drain_deregisters_answers_after_and_keeps_running_until_sigterm() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.script(
        "DeregisterTargets",
        vec![Fault::Delay(Duration::from_millis(300))],
    );
    let port = free_port();
    let mut s = spawn(&fake, port, &[]);
    wait_status(port, "/readyz", 200, secs(10));
    let started = Instant::now();
    let (code, body) = get(port, "/drain");
    assert_eq!((code, body.trim()), (200, "deregistered"));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "answered before deregistering"
    );
    assert!(fake.registered(&arn).is_empty());
    // Still running, not ready; a second drain answers at once.
    assert!(s.running());
    assert_eq!(get(port, "/readyz").0, 503);
    assert_eq!(get(port, "/healthz").0, 200);
    assert_eq!(
        get(port, "/drain"),
        (200, "already deregistered\n".to_string())
    );
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert_eq!(fake.count("DeregisterTargets"), 1);
}

/// The kubelet restarts the app container (its preStop drains; no
/// SIGTERM follows): while the app check passes the drain holds; once it
/// has failed and passed again, the target goes back in.
#[test]
fn app_restart_after_a_drain_registers_again() {
    use std::net::TcpListener;
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let app_addr = app.local_addr().unwrap();
    let port = free_port();
    let mut s = spawn(&fake, port, &["-wait-for-tcp", &app_addr.to_string()]);
    wait_status(port, "/readyz", 200, secs(10));
    assert_eq!(get(port, "/drain"), (200, "deregistered\n".to_string()));
    std::thread::sleep(secs(2));
    assert_eq!(fake.count("RegisterTargets"), 1, "a drain by hand holds");
    drop(app);
    std::thread::sleep(secs(2));
    let _app = TcpListener::bind(app_addr).unwrap();
    wait_status(port, "/readyz", 200, secs(15));
    assert_eq!(fake.count("RegisterTargets"), 2);
    assert_eq!(fake.registered(&arn).len(), 1);
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
    assert_eq!(fake.count("DeregisterTargets"), 2);
}

#[test]
fn drain_waits_for_draining_with_wait_drained() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.set_draining_polls(4);
    let port = free_port();
    let mut s = spawn(
        &fake,
        port,
        &[
            "-wait-drained",
            "-post-deregister-command",
            "echo post-deregister-ran",
        ],
    );
    wait_status(port, "/readyz", 200, secs(10));
    let polls_before = fake.count("DescribeTargetHealth");
    let (code, body) = get(port, "/drain");
    assert_eq!((code, body.trim()), (200, "deregistered and drained"));
    assert_eq!(
        fake.count("DescribeTargetHealth") - polls_before,
        5,
        "4 draining + 1 gone"
    );
    let out = s.output();
    assert!(
        out.contains("is draining (Target.DeregistrationInProgress)"),
        "{out}"
    );
    assert!(
        out.find("drained (").unwrap() < out.find("post-deregister-ran").unwrap(),
        "{out}"
    );
    assert!(fake.registered(&arn).is_empty());
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
}

#[test]
fn sigterm_during_drain_shares_one_deregistration_and_answers_the_drain() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.set_draining_polls(6);
    let port = free_port();
    let mut s = spawn(&fake, port, &["-wait-drained"]);
    wait_status(port, "/readyz", 200, secs(10));
    let drain = std::thread::spawn(move || get(port, "/drain"));
    assert!(fake.wait_for("DeregisterTargets", secs(5)));
    s.term();
    let (code, body) = drain.join().unwrap();
    assert_eq!((code, body.trim()), (200, "deregistered and drained"));
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert_eq!(fake.count("DeregisterTargets"), 1);
    assert!(fake.registered(&arn).is_empty());
}

#[test]
fn drain_reports_draining_timeout_with_503() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    fake.set_draining_polls(10_000);
    let port = free_port();
    let mut s = spawn(
        &fake,
        port,
        &["-wait-drained", "-wait-drained-timeout", "400ms"],
    );
    wait_status(port, "/readyz", 200, secs(10));
    let (code, body) = get(port, "/drain");
    assert_eq!(code, 503);
    assert!(body.contains("draining did not finish"), "{body}");
    s.term();
    // Deregistration itself succeeded: exit 0.
    assert_eq!(s.wait_exit(secs(10)), 0);
}

#[test]
fn sigterm_with_wait_drained_polls_until_drained() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.set_draining_polls(3);
    let port = free_port();
    let mut s = spawn(&fake, port, &["-wait-drained"]);
    wait_status(port, "/readyz", 200, secs(10));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    let after: Vec<_> = fake
        .requests()
        .into_iter()
        .skip_while(|r| r.action != "DeregisterTargets")
        .map(|r| r.action)
        .collect();
    assert_eq!(
        after,
        [
            "DeregisterTargets",
            "DescribeTargetHealth",
            "DescribeTargetHealth",
            "DescribeTargetHealth",
            "DescribeTargetHealth"
        ]
    );
    assert!(fake.registered(&arn).is_empty());
}

#[test]
fn drain_before_registration_registers_nothing() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    let port = free_port();
    let mut s = spawn(
        &fake,
        port,
        &[
            "-pre-register-command",
            "sleep 30",
            "-pre-register-timeout",
            "60s",
        ],
    );
    wait_status(port, "/healthz", 200, secs(10));
    assert!(s.wait_log("running pre-register command", secs(5)));
    let (code, _) = get(port, "/drain");
    assert_eq!(code, 200);
    assert!(s.running());
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert_eq!(fake.count("RegisterTargets"), 0);
}

#[test]
fn status_addr_in_use_is_a_usage_error() {
    let fake = FakeAws::start();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let mut s = spawn(&fake, port, &[]);
    assert_eq!(s.wait_exit(secs(10)), 2);
    assert!(
        s.output().contains("cannot listen on -status-addr"),
        "{}",
        s.output()
    );
    assert!(fake.requests().is_empty());
}

/// `/drain` requests hammering the listener while the process exits: none
/// is told the deregistration failed or did not finish, since it succeeded
/// (the lifecycle's outcome answers those it can no longer take). 429 and
/// `503 busy` are refusals, not results, and allowed.
#[test]
fn drains_during_exit_get_the_true_result() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let port = free_port();
    let mut s = spawn(&fake, port, &[]);
    wait_status(port, "/readyz", 200, secs(10));
    assert_eq!(get(port, "/drain").0, 200);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                let end = Instant::now() + secs(20);
                while Instant::now() < end {
                    let (code, body) = get(port, "/drain");
                    if code == 0 && body.contains("refused") {
                        break;
                    }
                    answers.push((code, body.trim().to_owned()));
                }
                answers
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    let mut n = 0;
    for c in clients {
        for (code, body) in c.join().unwrap() {
            n += 1;
            assert!(
                matches!(
                    (code, body.as_str()),
                    (200, "deregistered" | "already deregistered")
                        | (429, _)
                        | (503, "busy")
                        // The connection closed or reset as the process ended.
                        | (0, _)
                ),
                "{code} {body}"
            );
        }
    }
    assert!(n > 4, "{n} answers");
    assert!(fake.registered(&arn).is_empty());
}

/// RegisterTargets refused after an attempt of it went unanswered: that
/// attempt may have landed, so a failed deregistration fails `/drain`
/// and the exit, and the log says the target may be in.
#[test]
fn refused_registration_with_a_lost_attempt_fails_its_failed_deregistration() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    fake.script(
        "RegisterTargets",
        vec![Fault::Reset, Fault::Error(403, "AccessDenied")],
    );
    fake.script("DeregisterTargets", vec![Fault::Status(503); 200]);
    let port = free_port();
    let mut s = spawn(&fake, port, &["-deregister-timeout", "2s"]);
    assert!(fake.wait_for("DeregisterTargets", secs(10)));
    let (code, body) = get(port, "/drain");
    assert_ne!(code, 200, "{body}");
    assert!(body.contains("deregistration failed"), "{body}");
    assert_eq!(s.wait_exit(secs(10)), 1);
    let out = s.output();
    assert!(out.contains("may still be in tg"), "{out}");
    assert!(!out.contains("most likely not registered"), "{out}");
}
