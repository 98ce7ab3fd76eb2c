//! `-check` as a process against the fake ELBv2/STS: the report on stdout,
//! the exit code, and that nothing was ever registered.
//!
//! The happy path against moto lives in tests/it/moto.rs; here are the
//! failures moto cannot be made to answer (AccessDenied, an IPv6 group, a
//! group without load balancer, a registered target).

use crate::common::BIN;
use fake_aws::process::{base_env, Sidecar, TempDir};
use fake_aws::{FakeAws, Fault, GroupSettings};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

const IP: &str = "10.0.0.5";

/// Runs `-check` with `extra` arguments; returns (exit code, stdout, stderr).
fn check(fake: &FakeAws, extra: &[&str]) -> (i32, String, String) {
    check_env(extra, &base_env(&fake.url()))
}

/// [`check`] with the whole environment given.
fn check_env(extra: &[&str], env: &BTreeMap<String, String>) -> (i32, String, String) {
    let mut args = vec!["-check", "-target-id", IP, "-target-port", "8080"];
    args.extend_from_slice(extra);
    let out = Command::new(BIN)
        .args(&args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .expect("run the binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// No call but reads, the identity (and the role's AssumeRole) and the
/// DeregisterTargets probe.
fn assert_changed_nothing(fake: &FakeAws) {
    assert_eq!(fake.count("RegisterTargets"), 0);
    for r in fake.requests() {
        assert!(
            matches!(
                r.action.as_str(),
                "AssumeRole"
                    | "GetCallerIdentity"
                    | "DescribeTargetGroups"
                    | "DescribeTargetGroupAttributes"
                    | "DescribeTargetHealth"
                    | "DeregisterTargets"
            ),
            "unexpected call {}",
            r.action
        );
        assert!(r.signature_ok, "{} was not signed right", r.action);
    }
}

#[test]
fn a_working_setup_reports_ok_and_exits_0() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let (code, out, err) = check(
        &fake,
        &[
            "-target-group-name",
            "tg",
            "-wait-drained",
            "-wait-drained-timeout",
            "10m",
        ],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for line in [
        "ok   config: target 10.0.0.5 (from -target-id), 1 target group(s), region us-east-1",
        "ok   credentials: source environment; identity arn:aws:iam::123456789012:user/fake-user (account 123456789012)",
        &format!("ok   target group tg: exists ({arn})"),
        "ok   target group tg: target type ip",
        "ok   target group tg: IP address type ipv4 matches target 10.0.0.5",
        "ok   target group tg: attached to 1 load balancer(s)",
        "ok   target group tg: health check TCP on traffic-port every 30s; a new target healthy after one passing check (at least 30s), healthy again after 5 passing, unhealthy after 2 failing; security groups must let the load balancer reach the target and health-check ports",
        "ok   target group tg: deregistration delay 5m within -wait-drained-timeout 10m",
        "ok   target group tg: target 10.0.0.5:8080 is not registered yet",
        "ok   target group tg: may deregister (DeregisterTargets of the unregistered target answered success)",
        "check passed: the sidecar would work here",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert_changed_nothing(&fake);
    // GetCallerIdentity went to STS, signed for it.
    let id = fake.requests_for("GetCallerIdentity");
    assert_eq!(id.len(), 1);
    assert_eq!(id[0].service.as_deref(), Some("sts"));
    assert_eq!(id[0].param("Version"), Some("2011-06-15"));
    assert!(fake.registered(&arn).is_empty());
}

/// `/lb-health` on a group left at AWS's default resets connections at
/// the drain; `/drain` without an app check cannot see an app restart.
/// Both warn; the check still passes.
#[test]
fn lb_health_and_drain_settings_that_lose_connections_or_pods_warn() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    let args = ["-target-group-name", "tg", "-status-addr", "127.0.0.1:8081"];
    let (code, out, _) = check(
        &fake,
        &[&args[..], &["-lb-health-addr", "127.0.0.1:8082"]].concat(),
    );
    assert_eq!(code, 0, "{out}");
    for line in [
        "warn config: /drain is served (-status-addr) but no app check",
        "warn target group tg: target_health_state.unhealthy.connection_termination.enabled is unset (default true)",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    let (_, out, _) = check(
        &fake,
        &[&args[..], &["-wait-for-tcp", "127.0.0.1:8080"]].concat(),
    );
    assert!(!out.contains("warn"), "{out}");
}

#[test]
fn denied_deregistration_fails_with_exit_1_naming_it() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.script("DeregisterTargets", vec![Fault::Error(403, "AccessDenied")]);
    fake.script(
        "DescribeTargetGroupAttributes",
        vec![Fault::Error(403, "AccessDenied")],
    );
    let (code, out, err) = check(&fake, &["-target-group-arn", &arn]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains(&format!("FAIL target group {arn}: may not deregister")),
        "{out}"
    );
    assert!(out.contains("AccessDenied"), "{out}");
    // AccessDenied on the attributes is only a note.
    assert!(
        out.contains(&format!(
            "warn target group {arn}: deregistration delay unknown: the identity may not call DescribeTargetGroupAttributes"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("check FAILED: 1 problem(s) in target group {arn}")),
        "{out}"
    );
    assert_changed_nothing(&fake);
}

#[test]
fn wrong_family_no_load_balancer_wrong_type_and_missing_groups_fail() {
    let fake = FakeAws::start();
    fake.add_ipv6_target_group("v6", 80);
    let lonely = fake.add_target_group("lonely", 80);
    fake.configure_target_group(
        &lonely,
        GroupSettings {
            attached: false,
            ..GroupSettings::default()
        },
    );
    let inst = fake.add_target_group("inst", 80);
    fake.configure_target_group(
        &inst,
        GroupSettings {
            target_type: "instance".into(),
            ..GroupSettings::default()
        },
    );
    let (code, out, _) = check(
        &fake,
        &[
            "-target-group-name",
            "v6",
            "-target-group-name",
            "lonely",
            "-target-group-name",
            "inst",
            "-target-group-name",
            "gone",
        ],
    );
    assert_eq!(code, 1, "{out}");
    for line in [
        "FAIL target group v6: IP address type ipv6, but target 10.0.0.5 is ipv4",
        "FAIL target group lonely: not attached to a load balancer",
        "FAIL target group inst: target type instance",
        "FAIL target group gone: not found (TargetGroupNotFound)",
        "check FAILED: 4 problem(s) in target group v6, target group lonely, target group inst, target group gone",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert_changed_nothing(&fake);
}

#[test]
fn a_registered_target_is_left_alone() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.register_target(&arn, IP, Some(8080));
    let (code, out, _) = check(&fake, &["-target-group-name", "tg"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warn target group tg: target 10.0.0.5:8080 is registered already (healthy)"),
        "{out}"
    );
    assert_eq!(fake.count("DeregisterTargets"), 0);
    assert_eq!(fake.registered(&arn), vec![(IP.to_string(), Some(8080))]);
    assert_changed_nothing(&fake);
}

#[test]
fn bad_credentials_fail_and_usage_errors_exit_2() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    let mut env = base_env(&fake.url());
    env.insert("AWS_SECRET_ACCESS_KEY".into(), "wrong-secret".into());
    let (code, out) = Sidecar::run_to_exit(
        BIN,
        &["-check", "-target-id", IP, "-target-group-name", "tg"],
        &env,
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL credentials: source environment: AWS refuses them: GetCallerIdentity failed: SignatureDoesNotMatch"),
        "{out}"
    );
    assert!(!out.contains("wrong-secret"), "{out}");
    let (code, out) = Sidecar::run_to_exit(
        BIN,
        &[
            "-check",
            "-target-id",
            IP,
            "-target-group-name",
            "tg",
            "-log-format",
            "xml",
        ],
        &base_env(&fake.url()),
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("-log-format"), "{out}");
    assert_eq!(fake.count("RegisterTargets"), 0);
}

#[test]
fn with_a_role_the_identity_is_the_assumed_role() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    let role = "arn:aws:iam::210987654321:role/nlb-registrator";
    fake.add_role(role, None);
    let (code, out, err) = check(&fake, &["-target-group-name", "tg", "-role-arn", role]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains(&format!(
            "ok   credentials: source role {role}, assumed with environment; identity arn:aws:sts::210987654321:assumed-role/nlb-registrator/"
        )),
        "{out}"
    );
    // Every ELBv2 call and GetCallerIdentity signed with the role's keys.
    let issued = fake.assumed_roles()[0].issued_access_key_id.clone();
    for r in fake.requests().iter().filter(|r| r.action != "AssumeRole") {
        assert_eq!(
            r.access_key_id.as_deref(),
            Some(issued.as_str()),
            "{}",
            r.action
        );
    }
    assert_changed_nothing(&fake);
}

/// Each command hook's program is looked for in PATH as execvp(3) would:
/// a missing pre-register program fails the check (nothing would ever be
/// registered), a post-* one that cannot run only warns; HTTP hooks are
/// listed, never called.
#[test]
fn hook_programs_are_looked_for_in_path() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    let dir = TempDir::new("check-hooks");
    let notify = dir.0.join("notify");
    let plain = dir.0.join("plain");
    // Leaves a mark if it ever runs: -check must not run it.
    std::fs::write(&notify, "#!/bin/sh\ntouch \"$0.ran\"\n").unwrap();
    std::fs::write(&plain, "not a program\n").unwrap();
    std::fs::set_permissions(&notify, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut env = base_env(&fake.url());
    env.insert("PATH".into(), dir.0.display().to_string());
    let base = [
        "-target-group-name",
        "tg",
        "-post-register-http",
        "http://127.0.0.1:1/lb/in",
        "-post-deregister-command",
        "plain out",
    ];
    let (code, out, err) = check_env(
        &[&base[..], &["-pre-register-command", "notify in"]].concat(),
        &env,
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let d = dir.0.display();
    for line in [
        format!("ok   pre-register command: runs {d}/notify\n"),
        "ok   post-register HTTP hook: GET http://127.0.0.1:1/lb/in (not called by -check: it may change the app's state)\n".into(),
        format!("warn post-deregister command: cannot run: {d}/plain is not executable: the hook would fail (the sidecar logs it and goes on)\n"),
    ] {
        assert!(out.contains(&line), "missing {line:?} in\n{out}");
    }
    assert!(!dir.0.join("notify.ran").exists(), "-check ran the hook");

    let (code, out, err) = check_env(
        &[&base[..], &["-pre-register-command", "no-such-tool --flag"]].concat(),
        &env,
    );
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains(&format!(
            "FAIL pre-register command: cannot run: no-such-tool is in no directory of the search path {d}: the hook would fail and nothing would be registered\n"
        )),
        "{out}"
    );
    assert!(
        out.ends_with("check FAILED: 1 problem(s) in pre-register command\n"),
        "{out}"
    );
    assert_changed_nothing(&fake);
}
