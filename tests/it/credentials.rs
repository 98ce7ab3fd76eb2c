//! Credential sources as a process: IRSA (STS web identity), EKS Pod
//! Identity (container endpoint), IMDSv2, expiry and rotation, failures,
//! and that no secret ever reaches the log, even at trace level.

use crate::common::BIN;
use fake_aws::process::{base_env, free_port, secs, Sidecar, TempDir};
use fake_aws::{FakeAws, Fault};
use std::collections::BTreeMap;
use std::time::Duration;

const IP: &str = "10.0.0.7";
const ROLE: &str = "arn:aws:iam::123456789012:role/nlb-registrator";

fn args(extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "-target-group-name",
        "tg",
        "-target-id",
        IP,
        "-health-poll-interval",
        "50ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn spawn(a: &[String], env: &BTreeMap<String, String>) -> Sidecar {
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    Sidecar::spawn(BIN, &refs, env)
}

/// The base environment without static keys.
fn keyless_env(fake: &FakeAws) -> BTreeMap<String, String> {
    let mut env = base_env(&fake.url());
    env.remove("AWS_ACCESS_KEY_ID");
    env.remove("AWS_SECRET_ACCESS_KEY");
    env
}

fn irsa_env(fake: &FakeAws, token_file: &str) -> BTreeMap<String, String> {
    let mut env = keyless_env(fake);
    env.insert("AWS_WEB_IDENTITY_TOKEN_FILE".into(), token_file.into());
    env.insert("AWS_ROLE_ARN".into(), ROLE.into());
    env.insert("AWS_ROLE_SESSION_NAME".into(), "pod-a".into());
    env
}

fn elb_keys(fake: &FakeAws) -> Vec<(String, String)> {
    fake.requests()
        .into_iter()
        .filter(|r| r.service.as_deref() == Some("elasticloadbalancing"))
        .map(|r| {
            (
                r.action.clone(),
                r.access_key_id.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn irsa_lifecycle_uses_sts_credentials_with_session_token() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let dir = TempDir::new("irsa");
    std::fs::write(dir.path("token"), "eyJhbGciOiJSUzI1NiJ9.first-token.sig\n").unwrap();
    let mut s = spawn(&args(&[]), &irsa_env(&fake, &dir.path("token")));
    s.expect_log("blocking until SIGTERM", secs(10));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
    assert_eq!(
        fake.web_identity_tokens(),
        vec!["eyJhbGciOiJSUzI1NiJ9.first-token.sig"]
    );
    let sts = &fake.requests_for("AssumeRoleWithWebIdentity")[0];
    assert_eq!(sts.param("RoleArn"), Some(ROLE));
    assert_eq!(sts.param("RoleSessionName"), Some("pod-a"));
    assert!(
        sts.header("authorization").is_none(),
        "STS web identity calls are unsigned"
    );
    let issued = fake.issued_access_keys();
    assert_eq!(issued.len(), 1);
    for r in fake
        .requests()
        .iter()
        .filter(|r| r.action != "AssumeRoleWithWebIdentity")
    {
        assert_eq!(r.access_key_id.as_deref(), Some(issued[0].as_str()));
        assert!(r.signature_ok && r.auth_error.is_none(), "{r:?}");
        assert!(r.header("x-amz-security-token").is_some());
    }
}

#[test]
fn expired_credentials_and_rotated_token_are_refreshed_for_deregistration() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    // Credentials that live 2 s: they die while the sidecar is blocked.
    fake.set_sts_lifetime(secs(2));
    let dir = TempDir::new("irsa-rotate");
    std::fs::write(dir.path("token"), "token-one").unwrap();
    let mut s = spawn(&args(&[]), &irsa_env(&fake, &dir.path("token")));
    s.expect_log("blocking until SIGTERM", secs(10));
    // Kubelet rotates the projected token on disk.
    std::fs::write(dir.path("token"), "token-two").unwrap();
    std::thread::sleep(secs(3));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
    let tokens = fake.web_identity_tokens();
    assert_eq!(tokens.first().map(String::as_str), Some("token-one"));
    assert_eq!(tokens.last().map(String::as_str), Some("token-two"));
    let keys = elb_keys(&fake);
    let (last_action, last_key) = keys.last().unwrap();
    assert_eq!(last_action, "DeregisterTargets");
    assert_eq!(last_key, fake.issued_access_keys().last().unwrap());
    assert_ne!(
        last_key, &keys[0].1,
        "deregistration must use refreshed credentials"
    );
    assert!(
        fake.requests().iter().all(|r| r.auth_error.is_none()),
        "no call with dead credentials"
    );
}

#[test]
fn credentials_expired_on_the_aws_side_are_refetched_once() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let dir = TempDir::new("irsa-expire");
    std::fs::write(dir.path("token"), "tok").unwrap();
    let mut s = spawn(&args(&[]), &irsa_env(&fake, &dir.path("token")));
    s.expect_log("blocking until SIGTERM", secs(10));
    // AWS says the (still cached, 1 h) credentials have expired.
    fake.expire_temporary_credentials();
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
    let deregs = fake.requests_for("DeregisterTargets");
    assert_eq!(deregs.len(), 2);
    assert_eq!(deregs[0].error_code.as_deref(), Some("ExpiredToken"));
    assert_eq!(fake.count("AssumeRoleWithWebIdentity"), 2);
}

#[test]
fn sts_failing_then_recovering() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.script(
        "AssumeRoleWithWebIdentity",
        vec![Fault::Status(503), Fault::Throttle, Fault::Reset],
    );
    let dir = TempDir::new("sts-flaky");
    std::fs::write(dir.path("token"), "tok").unwrap();
    let mut s = spawn(&args(&[]), &irsa_env(&fake, &dir.path("token")));
    s.expect_log("blocking until SIGTERM", secs(15));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert_eq!(fake.count("AssumeRoleWithWebIdentity"), 4);
    assert!(fake.registered(&arn).is_empty());
}

#[test]
fn sts_refusal_and_missing_token_file_fail_fast() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    fake.script(
        "AssumeRoleWithWebIdentity",
        vec![Fault::Error(403, "AccessDenied")],
    );
    let dir = TempDir::new("sts-refuse");
    std::fs::write(dir.path("token"), "tok").unwrap();
    let (code, out) = Sidecar::run_to_exit(
        BIN,
        &args(&[]).iter().map(String::as_str).collect::<Vec<_>>(),
        &irsa_env(&fake, &dir.path("token")),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("AccessDenied"), "{out}");
    assert_eq!(fake.count("AssumeRoleWithWebIdentity"), 1);

    let (code, out) = Sidecar::run_to_exit(
        BIN,
        &args(&[]).iter().map(String::as_str).collect::<Vec<_>>(),
        &irsa_env(&fake, &dir.path("missing")),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cannot read web identity token file"), "{out}");
    assert_eq!(fake.count("RegisterTargets"), 0);
}

/// STS answers `InvalidIdentityToken` while it has not fetched the identity
/// provider's rotated keys; the SDKs retry it, so does the sidecar: at
/// start, and for a deregistration that needs fresh credentials.
#[test]
fn sts_invalid_identity_token_is_retried_at_start_and_at_deregistration() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.script(
        "AssumeRoleWithWebIdentity",
        vec![
            Fault::Error(400, "InvalidIdentityToken"),
            Fault::Error(400, "InvalidIdentityToken"),
        ],
    );
    let dir = TempDir::new("sts-iit");
    std::fs::write(dir.path("token"), "tok").unwrap();
    let mut s = spawn(&args(&[]), &irsa_env(&fake, &dir.path("token")));
    s.expect_log("blocking until SIGTERM", secs(15));
    assert_eq!(fake.count("AssumeRoleWithWebIdentity"), 3);
    assert_eq!(fake.registered(&arn).len(), 1);
    // The credentials die on the AWS side while blocked; STS refuses the
    // token twice more when the deregistration needs new ones.
    fake.script(
        "AssumeRoleWithWebIdentity",
        vec![
            Fault::Error(400, "InvalidIdentityToken"),
            Fault::Error(400, "IDPCommunicationError"),
        ],
    );
    fake.expire_temporary_credentials();
    s.term();
    assert_eq!(s.wait_exit(secs(15)), 0, "{}", s.output());
    assert!(fake.registered(&arn).is_empty());
    assert_eq!(fake.count("AssumeRoleWithWebIdentity"), 6);
    assert!(s.output().contains("InvalidIdentityToken"));
}

/// IMDS and the EKS Pod Identity agent throttle with a bare HTTP 429: retried
/// with backoff, the IMDS token PUT included.
#[test]
fn throttled_metadata_endpoints_are_retried() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.script("container", vec![Fault::Throttle, Fault::Throttle]);
    let mut env = keyless_env(&fake);
    env.insert(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
        format!("{}/container-credentials/v1/credentials", fake.url()),
    );
    let mut s = spawn(&args(&[]), &env);
    s.expect_log("blocking until SIGTERM", secs(15));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
    assert!(fake.registered(&arn).is_empty());
    let fetches = fake.requests_for("container");
    assert_eq!(fetches.len(), 3);
    assert_eq!(fetches[0].status, Some(429));
    assert_eq!(fetches[2].status, Some(200));

    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    // The token PUT, then (after a new PUT) the role listing.
    fake.script(
        "imds",
        vec![
            Fault::Throttle,
            Fault::Delay(Duration::ZERO),
            Fault::Throttle,
        ],
    );
    let mut env = keyless_env(&fake);
    env.remove("AWS_EC2_METADATA_DISABLED");
    env.insert("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), fake.url());
    let mut s = spawn(&args(&[]), &env);
    s.expect_log("blocking until SIGTERM", secs(15));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
    assert!(fake.registered(&arn).is_empty());
    let imds: Vec<(String, Option<u16>)> = fake
        .requests_for("imds")
        .iter()
        .map(|r| (r.method.clone(), r.status))
        .collect();
    assert_eq!(
        imds[..5],
        [
            ("PUT".to_string(), Some(429)),
            ("PUT".to_string(), Some(200)),
            ("GET".to_string(), Some(429)),
            ("PUT".to_string(), Some(200)),
            ("GET".to_string(), Some(200)),
        ]
    );
}

#[test]
fn pod_identity_container_credentials_with_rotating_token_file() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.set_container_token(Some("pod-identity-token-1"));
    fake.set_container_lifetime(secs(2));
    let dir = TempDir::new("pod-identity");
    std::fs::write(dir.path("eks-pod-identity-token"), "pod-identity-token-1\n").unwrap();
    let mut env = keyless_env(&fake);
    env.insert(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
        format!("{}/container-credentials/v1/credentials", fake.url()),
    );
    env.insert(
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
        dir.path("eks-pod-identity-token"),
    );
    let mut s = spawn(&args(&[]), &env);
    s.expect_log("blocking until SIGTERM", secs(10));
    std::fs::write(dir.path("eks-pod-identity-token"), "pod-identity-token-2\n").unwrap();
    fake.set_container_token(Some("pod-identity-token-2"));
    std::thread::sleep(secs(3));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
    let fetches = fake.requests_for("container");
    assert_eq!(
        fetches[0].header("authorization"),
        Some("pod-identity-token-1")
    );
    assert_eq!(
        fetches.last().unwrap().header("authorization"),
        Some("pod-identity-token-2")
    );
    assert!(fetches.iter().all(|r| r.status == Some(200)));
}

#[test]
fn container_endpoint_down_fails_with_a_clear_message() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    let mut env = keyless_env(&fake);
    env.insert(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
        format!("http://127.0.0.1:{}/v1/credentials", free_port()),
    );
    let (code, out) = Sidecar::run_to_exit(
        BIN,
        &args(&["-register-timeout", "2s"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &env,
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("container credentials: cannot connect"),
        "{out}"
    );
    assert!(fake.requests().is_empty());
}

#[test]
fn container_url_not_allowed_is_a_usage_error() {
    let fake = FakeAws::start();
    let mut env = keyless_env(&fake);
    env.insert(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
        "http://192.0.2.10/creds".into(),
    );
    let (code, out) = Sidecar::run_to_exit(
        BIN,
        &args(&[]).iter().map(String::as_str).collect::<Vec<_>>(),
        &env,
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is not allowed over http"), "{out}");
}

#[test]
fn imds_v2_credentials_from_a_local_endpoint() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let mut env = keyless_env(&fake);
    env.remove("AWS_EC2_METADATA_DISABLED");
    env.insert("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), fake.url());
    let mut s = spawn(&args(&[]), &env);
    s.expect_log("blocking until SIGTERM", secs(10));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
    let imds = fake.requests_for("imds");
    assert_eq!(imds[0].method, "PUT");
    assert!(imds[1].header("x-aws-ec2-metadata-token").is_some());
    assert!(elb_keys(&fake)
        .iter()
        .all(|(_, k)| k.starts_with("ASIAIMDS")));
}

#[test]
fn unsupported_sdk_settings_are_warned_about_at_start_and_ignored() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let mut env = base_env(&fake.url());
    env.insert("AWS_PROFILE".into(), "prod-profile-name".into());
    env.insert("AWS_RETRY_MODE".into(), "adaptive".into());
    env.insert("AWS_STS_REGIONAL_ENDPOINTS".into(), "legacy".into());
    env.insert(
        "AWS_SHARED_CREDENTIALS_FILE".into(),
        "/nonexistent/creds-path".into(),
    );
    let mut s = spawn(&args(&[]), &env);
    s.expect_log("blocking until SIGTERM", secs(10));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
    let out = s.output();
    for name in [
        "AWS_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_RETRY_MODE",
    ] {
        let warnings: Vec<&str> = out
            .lines()
            .filter(|l| l.contains(&format!("{name} is set but ignored")))
            .collect();
        assert_eq!(warnings.len(), 1, "{out}");
        assert!(warnings[0].contains("WARN"), "{out}");
    }
    let legacy = "AWS_STS_REGIONAL_ENDPOINTS=legacy is ignored: STS is called at its regional";
    assert_eq!(out.matches(legacy).count(), 1, "{out}");
    for line in ["AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_MAX_ATTEMPTS"] {
        assert!(!out.contains(line), "{out}");
    }
    assert!(!out.contains("prod-profile-name") && !out.contains("creds-path"));
}

#[test]
fn no_credentials_lists_what_was_tried() {
    let fake = FakeAws::start();
    let (code, out) = Sidecar::run_to_exit(
        BIN,
        &args(&[]).iter().map(String::as_str).collect::<Vec<_>>(),
        &keyless_env(&fake),
    );
    assert_eq!(code, 2, "{out}");
    for part in ["environment", "web identity", "container", "IMDS"] {
        assert!(out.contains(part), "{out}");
    }
    assert!(fake.requests().is_empty());
}

#[test]
fn no_secret_in_the_log_at_trace_level() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.set_sts_lifetime(secs(1));
    fake.set_container_lifetime(secs(1));
    let container_token = "container-secret-token-4b1d";
    fake.set_container_token(Some(container_token));
    let dir = TempDir::new("leaks");
    let web_token = "eyJraWQiOiJ3ZWItaWRlbnRpdHktc2VjcmV0In0.payload-secret.signature-secret";
    std::fs::write(dir.path("token"), web_token).unwrap();
    std::fs::write(dir.path("ctoken"), container_token).unwrap();

    let mut irsa = irsa_env(&fake, &dir.path("token"));
    let mut container = keyless_env(&fake);
    container.insert(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
        format!("{}/container-credentials/x", fake.url()),
    );
    container.insert(
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
        dir.path("ctoken"),
    );
    let mut statik = base_env(&fake.url());
    statik.insert(
        "AWS_SESSION_TOKEN".into(),
        "static-session-token-secret".into(),
    );
    fake.add_session_credentials(
        "AKIDFAKE",
        "fake-secret",
        "static-session-token-secret",
        None,
    );

    // The same secrets, in the JSON format (-log-format json), with IRSA.
    let mut irsa_json = irsa.clone();
    let mut outputs = Vec::new();
    for (i, env) in [&mut irsa, &mut container, &mut statik, &mut irsa_json]
        .into_iter()
        .enumerate()
    {
        // The most specific directives for the HTTP client's wire logging
        // must not lift its cap either.
        env.insert(
            "RUST_LOG".into(),
            "trace,ureq=trace,ureq_proto::util=trace,rustls=trace".into(),
        );
        let level: &[&str] = if i != 2 {
            &["-log-level", "trace"]
        } else {
            &[]
        };
        let mut a = vec!["-post-register-command", "true"];
        a.extend_from_slice(level);
        if i == 3 {
            a.extend_from_slice(&["-log-format", "json"]);
        }
        let mut s = spawn(&args(&a), env);
        s.expect_log("blocking until SIGTERM", secs(10));
        std::thread::sleep(Duration::from_millis(1200));
        s.term();
        assert_eq!(s.wait_exit(secs(10)), 0);
        assert!(fake.registered(&arn).is_empty());
        outputs.push(s.output());
    }
    // Every line of the JSON run is one JSON object.
    let json = &outputs[3];
    for line in json.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            v.get("timestamp").is_some() && v.get("message").is_some(),
            "{line}"
        );
    }
    assert!(json.contains("\"level\":\"DEBUG\""), "{json}");
    let mut secrets: Vec<String> = fake.issued_secrets();
    secrets.extend([
        web_token.to_string(),
        "payload-secret".into(),
        container_token.to_string(),
        "fake-secret".into(),
        "static-session-token-secret".into(),
    ]);
    assert!(secrets.len() > 6);
    for out in &outputs {
        assert!(
            out.contains("TRACE") || out.contains("DEBUG"),
            "trace logging was not on:\n{out}"
        );
        for secret in &secrets {
            assert!(
                !out.contains(secret.as_str()),
                "secret {secret:?} leaked into the log:\n{out}"
            );
        }
        // Signatures are no secret, but the Authorization header must not be logged either.
        assert!(!out.contains("Signature="), "{out}");
    }
}
