//! Process tests for EKS IPv6 clusters: an IPv6 pod IP registered in an
//! `ipv6` target group, found healthy and deregistered; detection from an
//! IPv6 `/etc/hosts`; the family check against the group's
//! `IpAddressType`; `-status-addr` and `-wait-for-tcp` on IPv6 loopback.
//!
//! The fake listens on 127.0.0.1 (the target id is only a string to it);
//! the IPv6 listeners are on `[::1]` only, never on another address. Where
//! this machine has no IPv6 loopback the `[::1]` parts are skipped with a
//! message on stderr.

use crate::common::BIN;
use fake_aws::process::{base_env, secs, Sidecar, TempDir};
use fake_aws::FakeAws;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A listener on `[::1]` with a free port, or `None` (after saying so
/// loudly) when this machine has no IPv6 loopback.
fn ipv6_loopback() -> Option<TcpListener> {
    match TcpListener::bind("[::1]:0") {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("SKIPPED: no IPv6 loopback on this machine ([::1]: {e}); the [::1] listeners are not tested");
            None
        }
    }
}

/// `GET path` on `[::1]:port`: the status code.
fn get_v6(port: u16, path: &str) -> u16 {
    let mut s = TcpStream::connect(("::1", port)).expect("connect [::1]");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: [::1]:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn ipv6_target_registered_healthy_deregistered() {
    let fake = FakeAws::start();
    let arn = fake.add_ipv6_target_group("tg6", 80);
    let mut env = base_env(&fake.url());
    // As the Downward API may give it; registered in canonical form.
    env.insert("POD_IP".into(), "2600:1F14:0ABC:0:0:0:0:1A2B".into());
    let mut args = vec![
        "-target-group-name".to_string(),
        "tg6".into(),
        "-health-poll-interval".into(),
        "50ms".into(),
    ];
    // The app and the status listener on IPv6 loopback, when there is one.
    let app = ipv6_loopback();
    let status_port = ipv6_loopback().map(|l| l.local_addr().unwrap().port());
    if let Some(app) = &app {
        args.push("-wait-for-tcp".into());
        args.push(format!("[::1]:{}", app.local_addr().unwrap().port()));
    }
    if let Some(port) = status_port {
        args.push("-status-addr".into());
        args.push(format!("[::1]:{port}"));
    }
    let mut s = Sidecar::spawn(BIN, &args, &env);
    s.expect_log("all targets are healthy", secs(10));
    s.expect_log("blocking until SIGTERM", secs(5));
    let id = "2600:1f14:abc::1a2b";
    assert_eq!(fake.registered(&arn), vec![(id.to_string(), None)]);
    let health = fake.requests_for("DescribeTargetHealth");
    assert_eq!(health[0].param("Targets.member.1.Id"), Some(id));
    let out = s.output();
    if app.is_some() {
        assert!(out.contains("the app is up"), "{out}");
    }
    if let Some(port) = status_port {
        assert!(out.contains(&format!("http://[::1]:{port}")), "{out}");
        assert_eq!(get_v6(port, "/readyz"), 200);
        assert_eq!(get_v6(port, "/healthz"), 200);
    }
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
    assert!(
        s.output()
            .contains(&format!("deregistered target {id} from tg6")),
        "{}",
        s.output()
    );
    assert!(fake.requests().iter().all(|r| r.signature_ok));
}

#[test]
fn ipv6_target_detected_from_the_hosts_file() {
    let fake = FakeAws::start();
    let arn = fake.add_ipv6_target_group("tg6", 80);
    let dir = TempDir::new("hosts6");
    std::fs::write(
        dir.path("hosts"),
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
         2600:1f14:abc:def0::7\tweb-7c9d-abcde\n",
    )
    .unwrap();
    let mut env = base_env(&fake.url());
    env.insert("HOSTNAME".into(), "web-7c9d-abcde".into());
    env.insert("NLB_HOSTS_FILE".into(), dir.path("hosts"));
    let mut s = Sidecar::spawn(
        BIN,
        &["-target-group-name", "tg6", "-health-poll-interval", "50ms"],
        &env,
    );
    s.expect_log("blocking until SIGTERM", secs(10));
    assert!(
        s.output()
            .contains("target 2600:1f14:abc:def0::7 (from /etc/hosts)"),
        "{}",
        s.output()
    );
    assert_eq!(
        fake.registered(&arn),
        vec![("2600:1f14:abc:def0::7".to_string(), None)]
    );
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
}

/// A group found by name whose `IpAddressType` is not the target's family:
/// exit 1 with a clear message, and no RegisterTargets at all.
#[test]
fn family_mismatch_refused_before_register_targets() {
    let fake = FakeAws::start();
    let v6 = fake.add_ipv6_target_group("tg6", 80);
    let v4 = fake.add_target_group("tg4", 80);
    for (group, ip, want) in [
        (
            "tg6",
            "10.0.0.5",
            "target group tg6 takes IPv6 targets (IpAddressType ipv6) but the target 10.0.0.5 is an IPv4 address",
        ),
        (
            "tg4",
            "fd00::5",
            "target group tg4 takes IPv4 targets (IpAddressType ipv4) but the target fd00::5 is an IPv6 address",
        ),
    ] {
        let (code, out) = Sidecar::run_to_exit(
            BIN,
            &["-target-group-name", group, "-target-id", ip],
            &base_env(&fake.url()),
        );
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(want), "{out}");
    }
    assert_eq!(fake.count("RegisterTargets"), 0);
    assert_eq!(fake.count("DescribeTargetGroups"), 2);
    assert!(fake.registered(&v6).is_empty() && fake.registered(&v4).is_empty());
}

/// A group given by ARN is not described (no extra call): AWS's
/// ValidationError from RegisterTargets stops it, exit 1, nothing left
/// registered.
#[test]
fn family_mismatch_by_arn_is_refused_by_register_targets() {
    let fake = FakeAws::start();
    let v6 = fake.add_ipv6_target_group("tg6", 80);
    let (code, out) = Sidecar::run_to_exit(
        BIN,
        &["-target-group-arn", &v6, "-target-id", "10.0.0.5"],
        &base_env(&fake.url()),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ValidationError"), "{out}");
    assert!(
        out.contains("(is 10.0.0.5 an address of the group's IpAddressType?)"),
        "{out}"
    );
    assert_eq!(fake.count("DescribeTargetGroups"), 0);
    assert_eq!(fake.count("RegisterTargets"), 1);
    assert!(fake.registered(&v6).is_empty());
}

#[test]
fn ipv6_addresses_need_brackets() {
    let fake = FakeAws::start();
    fake.add_ipv6_target_group("tg6", 80);
    for (flag, value) in [
        ("-status-addr", "::1:9090"),
        ("-wait-for-tcp", "fd00::1:80"),
    ] {
        let (code, out) = Sidecar::run_to_exit(
            BIN,
            &[
                "-target-group-name",
                "tg6",
                "-target-id",
                "fd00::5",
                flag,
                value,
            ],
            &base_env(&fake.url()),
        );
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("write an IPv6 address in brackets"), "{out}");
    }
    // `[fd00::1]:80` itself is accepted (config unit tests): not run here,
    // the wait would connect outside loopback.
}

/// `-status-addr [::]:PORT`, docs/configuration.md's example: the listener takes
/// IPv6 and (with Linux's default `net.ipv6.bindv6only=0`) IPv4 too.
/// Requests go to `[::1]` and `127.0.0.1` only.
#[test]
fn status_listener_on_all_addresses_answers_ipv6_and_ipv4_loopback() {
    let Some(probe) = ipv6_loopback() else {
        return;
    };
    drop(probe);
    // A port free on every address: bound on [::] once, then released.
    let port = match TcpListener::bind("[::]:0") {
        Ok(l) => l.local_addr().unwrap().port(),
        Err(e) => {
            eprintln!("SKIPPED: cannot bind [::] on this machine: {e}");
            return;
        }
    };
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    let addr = format!("[::]:{port}");
    let mut s = Sidecar::spawn(
        BIN,
        &[
            "-target-group-name",
            "tg",
            "-target-id",
            "10.0.0.5",
            "-health-poll-interval",
            "50ms",
            "-status-addr",
            &addr,
        ],
        &base_env(&fake.url()),
    );
    s.expect_log("blocking until SIGTERM", secs(10));
    assert_eq!(get_v6(port, "/readyz"), 200);
    let v6only = std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only")
        .map(|v| v.trim() == "1")
        .unwrap_or(false);
    if v6only {
        eprintln!("SKIPPED: net.ipv6.bindv6only=1 here: [::] takes no IPv4, not tested");
    } else {
        assert_eq!(fake_aws::process::get(port, "/readyz").0, 200);
        assert_eq!(fake_aws::process::get(port, "/healthz").0, 200);
    }
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
}
