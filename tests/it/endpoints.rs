//! Process tests of the SDK endpoint settings: what the binary does with
//! `AWS_USE_FIPS_ENDPOINT`, `AWS_USE_DUALSTACK_ENDPOINT` and the region
//! `aws-global` (the host names themselves are unit tests in
//! `src/aws/endpoint.rs`). Nothing here leaves 127.0.0.1.

use crate::common::BIN;
use fake_aws::process::{base_env, free_port, secs, Sidecar, TempDir};
use fake_aws::FakeAws;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ARGS: &[&str] = &["-target-group-name", "tg", "-target-id", "10.0.0.5"];

#[test]
fn invalid_booleans_exit_2() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    for (var, value) in [
        ("AWS_USE_FIPS_ENDPOINT", "yes"),
        ("AWS_USE_DUALSTACK_ENDPOINT", "1"),
        ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "on"),
    ] {
        let mut env = base_env(&fake.url());
        env.insert(var.into(), value.into());
        let (code, out) = Sidecar::run_to_exit(BIN, ARGS, &env);
        assert_eq!(code, 2, "{out}");
        assert!(
            out.contains(&format!("{var} must be true or false, not \"{value}\"")),
            "{out}"
        );
    }
    assert_eq!(fake.count("DescribeTargetGroups"), 0);
}

/// ELBv2 has no global endpoint: `aws-global` without an explicit endpoint
/// is a usage error.
#[test]
fn aws_global_has_no_elbv2_endpoint() {
    let fake = FakeAws::start();
    let mut env = base_env(&fake.url());
    env.remove("AWS_ENDPOINT_URL");
    env.insert("AWS_REGION".into(), "aws-global".into());
    let (code, out) = Sidecar::run_to_exit(BIN, ARGS, &env);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("region aws-global has no ELBv2 endpoint"),
        "{out}"
    );
}

/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` drops `AWS_ENDPOINT_URL`:
/// the endpoint is built from the region, which for `aws-global` is the
/// usage error above (seen without sending anything anywhere), and the
/// fake gets no call.
#[test]
fn ignore_configured_endpoint_urls_drops_the_explicit_endpoint() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    let mut env = base_env(&fake.url());
    env.insert("AWS_REGION".into(), "aws-global".into());
    // With the explicit endpoint, aws-global is fine.
    let mut s = Sidecar::spawn(
        BIN,
        &[ARGS, &["-health-poll-interval", "50ms"]].concat(),
        &env,
    );
    s.expect_log("blocking until SIGTERM", secs(10));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
    env.insert("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS".into(), "true".into());
    let calls = fake.count("DescribeTargetGroups");
    let (code, out) = Sidecar::run_to_exit(BIN, ARGS, &env);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("region aws-global has no ELBv2 endpoint"),
        "{out}"
    );
    assert_eq!(fake.count("DescribeTargetGroups"), calls);
}

/// An explicit endpoint wins over FIPS and dual-stack, as in the SDKs: the
/// whole lifecycle runs against it.
#[test]
fn explicit_endpoint_wins_over_fips_and_dual_stack() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let mut env = base_env(&fake.url());
    env.insert("AWS_USE_FIPS_ENDPOINT".into(), "true".into());
    env.insert("AWS_USE_DUALSTACK_ENDPOINT".into(), "TRUE".into());
    let mut s = Sidecar::spawn(
        BIN,
        &[ARGS, &["-health-poll-interval", "50ms"]].concat(),
        &env,
    );
    s.expect_log("blocking until SIGTERM", secs(10));
    assert_eq!(fake.registered(&arn).len(), 1);
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
}

/// An `openssl s_server` on 127.0.0.1 with a self-signed certificate;
/// killed on drop.
struct TlsServer(std::process::Child);

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn untrusted_tls_server(port: u16) -> TlsServer {
    let dir = TempDir::new("tls");
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-keyout", &key, "-out", &cert])
        .stderr(Stdio::null())
        .status()
        .expect("the openssl CLI");
    assert!(made.success());
    let server = Command::new("openssl")
        .args(["s_server", "-accept", &format!("127.0.0.1:{port}")])
        .args(["-cert", &cert, "-key", &key, "-www", "-quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < secs(10), "s_server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Listening: it has read its certificate, the files can go.
    TlsServer(server)
}

/// A certificate no root trusts (a wrong `AWS_CA_BUNDLE`, a
/// TLS-intercepting proxy) is final: exit 1 at once, naming it, not
/// retries until `-register-timeout`.
#[test]
fn an_untrusted_certificate_fails_at_once() {
    let port = free_port();
    let _server = untrusted_tls_server(port);
    let env = base_env(&format!("https://127.0.0.1:{port}"));
    let started = Instant::now();
    let (code, out) = Sidecar::run_to_exit(BIN, ARGS, &env);
    assert_eq!(code, 1, "{out}");
    assert!(started.elapsed() < secs(5), "{out}");
    assert!(out.contains("certificate"), "{out}");
    assert!(!out.contains("retrying"), "{out}");
    // A failed handshake (here: a plain HTTP server) is final too.
    let fake = FakeAws::start();
    let env = base_env(&format!("https://127.0.0.1:{}", fake.port()));
    let (code, out) = Sidecar::run_to_exit(BIN, ARGS, &env);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("TLS failure"), "{out}");
    assert!(!out.contains("retrying"), "{out}");
}
