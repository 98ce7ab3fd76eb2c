//! Process tests: the real binary, real signals, against the fake ELBv2.
//!
//! Each test asserts the final registration state on the fake and the exit
//! code; `Sidecar::wait_exit` also fails the test if the output holds a panic.

use crate::common::BIN;
use fake_aws::process::{base_env, free_port, secs, Sidecar, TempDir};
use fake_aws::{FakeAws, Fault};
use std::time::Duration;

const IP: &str = "10.0.0.5";

/// Common arguments: one group by name, fast polling.
fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "-target-group-name",
        "tg",
        "-target-id",
        IP,
        "-health-poll-interval",
        "50ms",
    ];
    a.extend_from_slice(extra);
    a
}

fn setup() -> (FakeAws, String) {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    (fake, arn)
}

#[test]
fn full_lifecycle_register_healthy_sigterm_deregister() {
    let (fake, arn) = setup();
    let mut s = Sidecar::spawn(
        BIN,
        &args(&["-target-port", "8080"]),
        &base_env(&fake.url()),
    );
    s.expect_log("all targets are healthy", secs(10));
    s.expect_log("blocking until SIGTERM", secs(5));
    assert_eq!(fake.registered(&arn), vec![(IP.to_string(), Some(8080))]);
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
    let out = s.output();
    for step in [
        "registered target 10.0.0.5:8080 in tg",
        "received SIGTERM",
        "deregistered target 10.0.0.5:8080 from tg",
    ] {
        assert!(out.contains(step), "missing {step:?} in\n{out}");
    }
    // Every request was correctly signed, and the calls were just these.
    let reqs = fake.requests();
    assert!(reqs.iter().all(|r| r.signature_ok), "{reqs:?}");
    let actions: Vec<&str> = reqs.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions.first(), Some(&"DescribeTargetGroups"));
    assert_eq!(actions.last(), Some(&"DeregisterTargets"));
    assert_eq!(fake.count("RegisterTargets"), 1);
    assert_eq!(fake.count("DeregisterTargets"), 1);
}

#[test]
fn sigint_also_deregisters() {
    let (fake, arn) = setup();
    let mut s = Sidecar::spawn(BIN, &args(&[]), &base_env(&fake.url()));
    s.expect_log("blocking until SIGTERM", secs(10));
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
    assert!(s.output().contains("received SIGINT"));
}

#[test]
fn signal_before_registration_exits_0_without_aws_calls() {
    let (fake, _arn) = setup();
    let mut s = Sidecar::spawn(
        BIN,
        &args(&[
            "-pre-register-command",
            "sleep 30",
            "-pre-register-timeout",
            "60s",
        ]),
        &base_env(&fake.url()),
    );
    s.expect_log("running pre-register command", secs(10));
    std::thread::sleep(Duration::from_millis(200));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

#[test]
fn signal_during_describe_retries_sends_no_registration() {
    let (fake, _arn) = setup();
    fake.script("DescribeTargetGroups", vec![Fault::Throttle; 50]);
    let mut s = Sidecar::spawn(BIN, &args(&[]), &base_env(&fake.url()));
    assert!(fake.wait_for_count("DescribeTargetGroups", 2, secs(10)));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert_eq!(fake.count("RegisterTargets"), 0);
    assert_eq!(fake.count("DeregisterTargets"), 0);
}

#[test]
fn sigterm_while_register_in_flight_deregisters_after_it() {
    for fault in [Fault::Hold, Fault::HoldThenApply] {
        let (fake, arn) = setup();
        fake.script("RegisterTargets", vec![fault.clone()]);
        let mut s = Sidecar::spawn(BIN, &args(&[]), &base_env(&fake.url()));
        assert!(fake.wait_held(1, secs(10)), "{fault:?}");
        s.term();
        s.expect_log("received SIGTERM", secs(5));
        // The answer is still held back: nothing may be deregistered yet.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(fake.count("DeregisterTargets"), 0, "{fault:?}");
        fake.release();
        assert_eq!(s.wait_exit(secs(10)), 0, "{fault:?}");
        assert!(
            fake.registered(&arn).is_empty(),
            "{fault:?}: left registered"
        );
        let reg = &fake.requests_for("RegisterTargets")[0];
        let dereg = &fake.requests_for("DeregisterTargets")[0];
        assert!(dereg.at > reg.at);
        assert_eq!(
            fake.count("DescribeTargetHealth"),
            0,
            "no health wait after a signal"
        );
    }
}

#[test]
fn register_that_landed_but_failed_is_still_deregistered() {
    let (fake, arn) = setup();
    // AWS registered the target, then the client saw only a broken connection.
    fake.script("RegisterTargets", vec![Fault::ApplyThenReset, Fault::Hang]);
    let mut s = Sidecar::spawn(
        BIN,
        &args(&["-register-timeout", "30s"]),
        &base_env(&fake.url()),
    );
    assert!(fake.wait_for_count("RegisterTargets", 2, secs(10)));
    s.term();
    // The second RegisterTargets hangs until the request timeout (10 s).
    assert_eq!(s.wait_exit(secs(30)), 0);
    assert!(fake.registered(&arn).is_empty());
}

#[test]
fn sigterm_while_waiting_for_health() {
    let (fake, arn) = setup();
    fake.set_health_sequence(
        &arn,
        IP,
        vec![("initial", Some("Elb.RegistrationInProgress"))],
    );
    let mut s = Sidecar::spawn(BIN, &args(&[]), &base_env(&fake.url()));
    s.expect_log("is initial (Elb.RegistrationInProgress)", secs(10));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
    assert!(!s.output().contains("all targets are healthy"));
}

#[test]
fn health_sequence_is_followed_and_logged() {
    let (fake, arn) = setup();
    fake.set_health_sequence(
        &arn,
        IP,
        vec![
            ("initial", Some("Elb.RegistrationInProgress")),
            ("unused", Some("Target.NotInUse")),
            ("unhealthy", Some("Target.FailedHealthChecks")),
            ("unhealthy", Some("Target.FailedHealthChecks")),
            ("healthy", None),
        ],
    );
    let mut s = Sidecar::spawn(BIN, &args(&[]), &base_env(&fake.url()));
    s.expect_log("all targets are healthy", secs(10));
    let out = s.output();
    let i = out.find("is initial").expect("initial logged");
    assert!(out.contains("is unused (Target.NotInUse)"), "{out}");
    let u = out
        .find("is unhealthy (Target.FailedHealthChecks)")
        .expect("unhealthy logged");
    let h = out.find("is healthy").expect("healthy logged");
    assert!(i < u && u < h, "{out}");
    // State changes are logged once, not on every poll.
    assert_eq!(out.matches("is unhealthy").count(), 1, "{out}");
    assert_eq!(fake.count("DescribeTargetHealth"), 5);
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
}

#[test]
fn health_wait_timeout_keeps_target_registered() {
    let (fake, arn) = setup();
    fake.set_health_sequence(&arn, IP, vec![("unhealthy", Some("Target.Timeout"))]);
    let mut s = Sidecar::spawn(
        BIN,
        &args(&["-wait-in-service-timeout", "400ms"]),
        &base_env(&fake.url()),
    );
    s.expect_log("not healthy after", secs(10));
    s.expect_log("blocking until SIGTERM", secs(5));
    assert!(
        s.output().contains("last state unhealthy (Target.Timeout)"),
        "{}",
        s.output()
    );
    assert!(s.output().contains("security group"), "{}", s.output());
    assert!(s.running());
    assert_eq!(fake.registered(&arn).len(), 1);
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
}

#[test]
fn no_wait_in_service_skips_health_polls() {
    let (fake, arn) = setup();
    let mut s = Sidecar::spawn(
        BIN,
        &args(&["-wait-in-service=false"]),
        &base_env(&fake.url()),
    );
    s.expect_log("blocking until SIGTERM", secs(10));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert_eq!(fake.count("DescribeTargetHealth"), 0);
    assert!(fake.registered(&arn).is_empty());
}

#[test]
fn registration_refused_exits_1_at_once() {
    for (code, status) in [
        ("AccessDenied", 403),
        ("ValidationError", 400),
        ("InvalidTarget", 400),
    ] {
        let (fake, arn) = setup();
        fake.script("RegisterTargets", vec![Fault::Error(status, code)]);
        let mut s = Sidecar::spawn(BIN, &args(&[]), &base_env(&fake.url()));
        assert_eq!(s.wait_exit(secs(10)), 1, "{code}");
        assert!(s.output().contains(code), "{}", s.output());
        assert_eq!(
            fake.count("RegisterTargets"),
            1,
            "{code} must not be retried"
        );
        assert!(fake.registered(&arn).is_empty());
    }
}

#[test]
fn unknown_target_group_exits_1() {
    let fake = FakeAws::start();
    let (code, out) = Sidecar::run_to_exit(BIN, &args(&[]), &base_env(&fake.url()));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("TargetGroupNotFound"), "{out}");
    assert_eq!(fake.count("DescribeTargetGroups"), 1);
    assert_eq!(fake.count("RegisterTargets"), 0);
}

#[test]
fn deregistration_is_retried_through_faults() {
    let (fake, arn) = setup();
    fake.script(
        "DeregisterTargets",
        vec![
            Fault::Status(503),
            Fault::Throttle,
            Fault::Reset,
            Fault::Status(500),
            Fault::Garbage(b"<html>"),
            Fault::Truncated,
            Fault::Garbage(b"<DeregisterTargetsResponse><DeregisterTargetsResult>"),
        ],
    );
    let mut s = Sidecar::spawn(BIN, &args(&[]), &base_env(&fake.url()));
    s.expect_log("blocking until SIGTERM", secs(10));
    s.term();
    assert_eq!(s.wait_exit(secs(20)), 0);
    assert_eq!(fake.count("DeregisterTargets"), 8);
    assert!(fake.registered(&arn).is_empty());
}

#[test]
fn deregistration_failure_exits_1() {
    let (fake, arn) = setup();
    fake.script("DeregisterTargets", vec![Fault::Status(500); 200]);
    let mut s = Sidecar::spawn(
        BIN,
        &args(&["-deregister-timeout", "1500ms"]),
        &base_env(&fake.url()),
    );
    s.expect_log("blocking until SIGTERM", secs(10));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 1);
    assert!(
        s.output().contains("DEREGISTRATION FAILED"),
        "{}",
        s.output()
    );
    assert_eq!(fake.registered(&arn).len(), 1);
}

#[test]
fn second_signal_does_not_skip_deregistration() {
    let (fake, arn) = setup();
    fake.script(
        "DeregisterTargets",
        vec![Fault::Delay(Duration::from_millis(800))],
    );
    let mut s = Sidecar::spawn(BIN, &args(&[]), &base_env(&fake.url()));
    s.expect_log("blocking until SIGTERM", secs(10));
    s.term();
    assert!(fake.wait_for("DeregisterTargets", secs(5)));
    s.term();
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
}

#[test]
fn hooks_run_in_order_without_a_shell_parser_of_ours() {
    let (fake, arn) = setup();
    let dir = TempDir::new("hooks");
    let pre = format!("sh -c 'echo pre >> {}'", dir.path("trail"));
    let post_reg = format!("sh -c 'echo post-register >> {}'", dir.path("trail"));
    let post_dereg = format!(
        "sh -c 'echo post-deregister >> {}; echo hello from the hook'",
        dir.path("trail")
    );
    let mut s = Sidecar::spawn(
        BIN,
        &args(&[
            "-pre-register-command",
            &pre,
            "-post-register-command",
            &post_reg,
            "-post-deregister-command",
            &post_dereg,
        ]),
        &base_env(&fake.url()),
    );
    s.expect_log("blocking until SIGTERM", secs(10));
    assert_eq!(
        std::fs::read_to_string(dir.path("trail")).unwrap(),
        "pre\npost-register\n"
    );
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert_eq!(
        std::fs::read_to_string(dir.path("trail")).unwrap(),
        "pre\npost-register\npost-deregister\n"
    );
    let out = s.output();
    assert!(
        out.contains("[post-deregister stdout] hello from the hook"),
        "{out}"
    );
    assert!(
        out.find("deregistered target").unwrap() < out.find("running post-deregister").unwrap()
    );
    assert!(fake.registered(&arn).is_empty());
}

#[test]
fn failing_pre_register_command_stops_registration() {
    let (fake, _arn) = setup();
    for cmd in ["false", "/no/such/program", "sleep 10"] {
        let (code, out) = Sidecar::run_to_exit(
            BIN,
            &args(&[
                "-pre-register-command",
                cmd,
                "-pre-register-timeout",
                "300ms",
            ]),
            &base_env(&fake.url()),
        );
        assert_eq!(code, 1, "{cmd}: {out}");
        assert!(
            out.contains("not registering: pre-register command"),
            "{out}"
        );
    }
    assert_eq!(fake.count("RegisterTargets"), 0);
}

#[test]
fn post_deregister_hook_that_ignores_sigterm_is_killed_at_its_timeout() {
    let (fake, arn) = setup();
    let mut s = Sidecar::spawn(
        BIN,
        &args(&[
            "-post-deregister-command",
            "sh -c 'trap \"\" TERM; sleep 60'",
            "-post-deregister-timeout",
            "300ms",
        ]),
        &base_env(&fake.url()),
    );
    s.expect_log("blocking until SIGTERM", secs(10));
    s.term();
    // 300 ms timeout + 2 s SIGTERM grace, then SIGKILL.
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(
        s.output().contains("post-deregister command timed out"),
        "{}",
        s.output()
    );
    assert!(fake.registered(&arn).is_empty());
}

#[test]
fn bad_usage_exits_2_with_one_line() {
    let fake = FakeAws::start();
    let env = base_env(&fake.url());
    let mut no_region = env.clone();
    no_region.remove("AWS_REGION");
    let cases: Vec<(Vec<&str>, &std::collections::BTreeMap<String, String>, &str)> = vec![
        (vec!["-no-such-flag"], &env, "-no-such-flag"),
        (args(&["-wait-in-service-timeout", "soon"]), &env, "soon"),
        (args(&["-target-port", "70000"]), &env, "70000"),
        (vec!["-target-id", IP], &env, "no target group"),
        (args(&[]), &no_region, "no region"),
        (vec!["-target-group-name"], &env, "-target-group-name"),
    ];
    for (a, e, needle) in cases {
        let (code, out) = Sidecar::run_to_exit(BIN, &a, e);
        assert_eq!(code, 2, "{a:?}: {out}");
        assert!(out.contains(needle), "{a:?}: {out}");
        assert_eq!(out.trim().lines().count(), 1, "{a:?}: {out}");
    }
    assert!(fake.requests().is_empty());
}

#[test]
fn help_and_version_exit_0() {
    let env = base_env("http://127.0.0.1:9");
    let (code, out) = Sidecar::run_to_exit(BIN, &["-h"], &env);
    assert_eq!(code, 0);
    assert!(
        out.contains("-wait-in-service-timeout") && out.contains("(default 5m)"),
        "{out}"
    );
    let (code, out) = Sidecar::run_to_exit(BIN, &["--version"], &env);
    assert_eq!(code, 0);
    assert!(out.starts_with("k8s-nlb-registrator-sidecar "), "{out}");
}

#[test]
fn several_target_groups_and_a_failure_in_one_still_deregisters_the_others() {
    let fake = FakeAws::start();
    let a = fake.add_target_group("a", 80);
    let b = fake.add_target_group("b", 80);
    let c = fake.add_target_group("c", 80);
    fake.script(
        "RegisterTargets",
        vec![
            Fault::Delay(Duration::ZERO),
            Fault::Delay(Duration::ZERO),
            Fault::Error(403, "AccessDenied"),
        ],
    );
    let c_arg = format!("{c}:7070");
    let (code, out) = Sidecar::run_to_exit(
        BIN,
        &[
            "-target-group-name",
            "a:8080",
            "-target-group-name",
            "b",
            "-target-group-arn",
            &c_arg,
            "-target-port",
            "9090",
            "-target-id",
            IP,
        ],
        &base_env(&fake.url()),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("AccessDenied"), "{out}");
    for arn in [&a, &b, &c] {
        assert!(
            fake.registered(arn).is_empty(),
            "{arn} left registered:\n{out}"
        );
    }
    let regs = fake.requests_for("RegisterTargets");
    assert_eq!(regs[0].param("Targets.member.1.Port"), Some("8080"));
    assert_eq!(regs[1].param("Targets.member.1.Port"), Some("9090"));
    assert_eq!(regs[2].param("Targets.member.1.Port"), Some("7070"));
    // The ARN-only group needed no DescribeTargetGroups entry.
    let describe = &fake.requests_for("DescribeTargetGroups")[0];
    assert_eq!(describe.param("Names.member.1"), Some("a"));
    assert_eq!(describe.param("Names.member.2"), Some("b"));
    assert_eq!(describe.param("Names.member.3"), None);
}

#[test]
fn several_target_groups_all_registered_and_all_deregistered() {
    let fake = FakeAws::start();
    let a = fake.add_target_group("a", 80);
    let b = fake.add_target_group("b", 443);
    let mut env = base_env(&fake.url());
    env.insert("NLB_TARGET_GROUP_NAME".into(), "a:8080,b".into());
    env.insert("POD_IP".into(), IP.into());
    env.insert("NLB_HEALTH_POLL_INTERVAL".into(), "50ms".into());
    env.insert("NLB_TARGET_AVAILABILITY_ZONE".into(), "all".into());
    let mut s = Sidecar::spawn::<&str>(BIN, &[], &env);
    s.expect_log("all targets are healthy", secs(10));
    assert_eq!(fake.registered(&a), vec![(IP.to_string(), Some(8080))]);
    assert_eq!(fake.registered(&b), vec![(IP.to_string(), None)]);
    assert_eq!(
        fake.requests_for("RegisterTargets")[0].param("Targets.member.1.AvailabilityZone"),
        Some("all")
    );
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&a).is_empty() && fake.registered(&b).is_empty());
}

#[test]
fn target_id_detected_from_the_hosts_file() {
    let (fake, arn) = setup();
    let dir = TempDir::new("hosts");
    std::fs::write(
        dir.path("hosts"),
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost\n10.244.3.7\tweb-7c9d-abcde\n",
    )
    .unwrap();
    let mut env = base_env(&fake.url());
    env.insert("HOSTNAME".into(), "web-7c9d-abcde".into());
    env.insert("NLB_HOSTS_FILE".into(), dir.path("hosts"));
    let mut s = Sidecar::spawn(
        BIN,
        &["-target-group-name", "tg", "-health-poll-interval", "50ms"],
        &env,
    );
    s.expect_log("blocking until SIGTERM", secs(10));
    assert!(
        s.output().contains("target 10.244.3.7 (from /etc/hosts)"),
        "{}",
        s.output()
    );
    assert_eq!(
        fake.registered(&arn),
        vec![("10.244.3.7".to_string(), None)]
    );
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);

    env.insert("HOSTNAME".into(), "another-pod".into());
    let (code, out) = Sidecar::run_to_exit(BIN, &["-target-group-name", "tg"], &env);
    assert_eq!(code, 2);
    assert!(
        out.contains("no line for hostname \"another-pod\""),
        "{out}"
    );
}

#[test]
fn signal_while_pre_register_hook_ignores_sigterm() {
    let (fake, _arn) = setup();
    let mut s = Sidecar::spawn(
        BIN,
        &args(&[
            "-pre-register-command",
            "sh -c 'trap \"\" TERM; sleep 60'",
            "-pre-register-timeout",
            "120s",
        ]),
        &base_env(&fake.url()),
    );
    s.expect_log("running pre-register command", secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let sent = std::time::Instant::now();
    s.term();
    // SIGTERM to the hook's group is ignored; SIGKILL follows after 2 s.
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(sent.elapsed() < secs(8));
    assert!(
        s.output()
            .contains("pre-register command interrupted and killed"),
        "{}",
        s.output()
    );
    assert!(fake.requests().is_empty());
}

/// A one-connection-at-a-time HTTP server answering `statuses` in turn
/// (the last repeats); returns its port.
fn app_server(statuses: Vec<u16>) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { break };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            let status = statuses[i.min(statuses.len() - 1)];
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    port
}

#[test]
fn wait_for_tcp_holds_registration_until_the_app_listens() {
    let (fake, arn) = setup();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut s = Sidecar::spawn(
        BIN,
        &args(&["-wait-for-tcp", &addr]),
        &base_env(&fake.url()),
    );
    s.expect_log("waiting for the app", secs(10));
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        fake.count("RegisterTargets"),
        0,
        "registered before the app listened"
    );
    let _listener = std::net::TcpListener::bind(&addr).unwrap();
    s.expect_log("blocking until SIGTERM", secs(10));
    assert_eq!(fake.registered(&arn).len(), 1);
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
}

#[test]
fn wait_for_http_needs_a_2xx() {
    let (fake, arn) = setup();
    let port = app_server(vec![503, 503, 200]);
    let url = format!("http://127.0.0.1:{port}/ready");
    let mut s = Sidecar::spawn(
        BIN,
        &args(&["-wait-for-http", &url]),
        &base_env(&fake.url()),
    );
    s.expect_log("answered HTTP 503", secs(10));
    s.expect_log("the app is up", secs(10));
    s.expect_log("blocking until SIGTERM", secs(10));
    assert_eq!(fake.registered(&arn).len(), 1);
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
}

#[test]
fn wait_for_timeout_exits_1_without_registering() {
    let (fake, _arn) = setup();
    let port = app_server(vec![500]);
    let url = format!("http://127.0.0.1:{port}/");
    let (code, out) = Sidecar::run_to_exit(
        BIN,
        &args(&["-wait-for-http", &url, "-wait-for-timeout", "1200ms"]),
        &base_env(&fake.url()),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the app did not come up"), "{out}");
    assert!(fake.requests().is_empty());
}

#[test]
fn signal_while_waiting_for_the_app_exits_0() {
    let (fake, _arn) = setup();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut s = Sidecar::spawn(
        BIN,
        &args(&["-wait-for-tcp", &addr]),
        &base_env(&fake.url()),
    );
    s.expect_log("waiting for the app", secs(10));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.requests().is_empty());
}
