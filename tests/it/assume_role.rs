//! Cross-account target groups as a process: `-role-arn` (and its
//! `NLB_ROLE_*` variables) on top of static keys, IRSA, EKS Pod Identity
//! and IMDS. The fake verifies AssumeRole's SigV4 signature for service
//! `sts` with the base keys and every ELBv2 signature with the role's
//! keys; both layers expire within seconds and must be refreshed before
//! the deregistration; a failing layer is named in the error.

use crate::common::BIN;
use fake_aws::process::{base_env, secs, Sidecar, TempDir, BLOCKING_LINE};
use fake_aws::{FakeAws, Fault, Recorded, DEFAULT_ACCESS_KEY_ID};
use std::collections::BTreeMap;
use std::time::Duration;

const IP: &str = "10.0.0.7";
/// The role in the networking account that owns the target groups.
const ROLE: &str = "arn:aws:iam::444455556666:role/nlb-registrator-my-service";
/// The workload account's IRSA role.
const WORKLOAD_ROLE: &str = "arn:aws:iam::111122223333:role/my-service-nlb-registrator";
const EXTERNAL_ID: &str = "my-service-7f3a";

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

fn role_args(extra: &[&str]) -> Vec<String> {
    let mut a = vec!["-role-arn", ROLE, "-role-external-id", EXTERNAL_ID];
    a.extend_from_slice(extra);
    args(&a)
}

fn spawn(a: &[String], env: &BTreeMap<String, String>) -> Sidecar {
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    Sidecar::spawn(BIN, &refs, env)
}

fn run_to_exit(a: &[String], env: &BTreeMap<String, String>) -> (i32, String) {
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    Sidecar::run_to_exit(BIN, &refs, env)
}

fn irsa_env(fake: &FakeAws, token_file: &str) -> BTreeMap<String, String> {
    let mut env = base_env(&fake.url());
    env.remove("AWS_ACCESS_KEY_ID");
    env.remove("AWS_SECRET_ACCESS_KEY");
    env.insert("AWS_WEB_IDENTITY_TOKEN_FILE".into(), token_file.into());
    env.insert("AWS_ROLE_ARN".into(), WORKLOAD_ROLE.into());
    env.insert("AWS_ROLE_SESSION_NAME".into(), "pod-a".into());
    env
}

/// A fake whose target group `tg` sits in the networking account, behind [`ROLE`].
fn fake_with_role() -> (FakeAws, String) {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.add_role(ROLE, Some(EXTERNAL_ID));
    (fake, arn)
}

fn elb_requests(fake: &FakeAws) -> Vec<Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| r.service.as_deref() == Some("elasticloadbalancing"))
        .collect()
}

/// Every ELBv2 call was signed, correctly, with keys that AssumeRole
/// issued, and carried their session token; no call anywhere was refused
/// for its credentials.
fn assert_elb_signed_by_the_role(fake: &FakeAws) {
    let role_keys: Vec<String> = fake
        .assumed_roles()
        .into_iter()
        .map(|g| g.issued_access_key_id)
        .collect();
    let elb = elb_requests(fake);
    assert!(!elb.is_empty());
    for r in &elb {
        let key = r.access_key_id.clone().unwrap_or_default();
        assert!(role_keys.contains(&key), "{} signed by {key}", r.action);
        assert!(r.signature_ok, "{r:?}");
        assert!(r.header("x-amz-security-token").is_some());
    }
    assert!(
        fake.requests().iter().all(|r| r.auth_error.is_none()),
        "no call with dead or wrong credentials"
    );
}

/// Every AssumeRole was signed for `sts`, correctly, with one of `base_keys`.
fn assert_assume_role_signed_by(fake: &FakeAws, base_keys: &[String]) {
    let calls = fake.requests_for("AssumeRole");
    assert!(!calls.is_empty());
    for r in &calls {
        assert_eq!(r.service.as_deref(), Some("sts"));
        assert_eq!(r.region.as_deref(), Some("us-east-1"));
        assert!(r.signature_ok && r.auth_error.is_none(), "{r:?}");
        let key = r.access_key_id.clone().unwrap_or_default();
        assert!(base_keys.contains(&key), "AssumeRole signed by {key}");
        assert_eq!(r.param("RoleArn"), Some(ROLE));
        assert_eq!(r.param("ExternalId"), Some(EXTERNAL_ID));
        assert_eq!(r.param("DurationSeconds"), Some("3600"));
    }
}

#[test]
fn static_keys_assume_the_role_which_is_refreshed_while_blocked() {
    let (fake, arn) = fake_with_role();
    // The role's credentials live 2 s: they die while the sidecar is blocked.
    fake.set_assume_role_lifetime(secs(2));
    let mut s = spawn(&role_args(&[]), &base_env(&fake.url()));
    s.expect_log(BLOCKING_LINE, secs(10));
    std::thread::sleep(secs(3));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
    assert!(fake.registered(&arn).is_empty());
    assert!(s.output().contains(&format!(
        "credentials from role {ROLE}, assumed with environment"
    )));

    assert_assume_role_signed_by(&fake, &[DEFAULT_ACCESS_KEY_ID.to_string()]);
    let first = &fake.requests_for("AssumeRole")[0];
    assert!(first.header("x-amz-security-token").is_none());
    let session = first.param("RoleSessionName").unwrap_or_default();
    assert!(
        session.starts_with("k8s-nlb-registrator-") && session.len() > 25,
        "{session}"
    );
    assert_elb_signed_by_the_role(&fake);
    let granted = fake.assumed_roles();
    assert!(granted.len() >= 2, "the role was not assumed again");
    let elb = elb_requests(&fake);
    let last = elb.last().unwrap();
    assert_eq!(last.action, "DeregisterTargets");
    assert_eq!(
        last.access_key_id.as_deref(),
        Some(granted.last().unwrap().issued_access_key_id.as_str())
    );
    assert_ne!(last.access_key_id, elb[0].access_key_id);
}

#[test]
fn irsa_base_and_role_both_expire_and_are_refreshed_for_deregistration() {
    let (fake, arn) = fake_with_role();
    fake.set_sts_lifetime(secs(2));
    fake.set_assume_role_lifetime(secs(2));
    let dir = TempDir::new("xacct-irsa");
    std::fs::write(dir.path("token"), "token-one").unwrap();
    let mut env = irsa_env(&fake, &dir.path("token"));
    // The variables this time, not the flags.
    env.insert("NLB_ROLE_ARN".into(), ROLE.into());
    env.insert("NLB_ROLE_EXTERNAL_ID".into(), EXTERNAL_ID.into());
    env.insert("NLB_ROLE_SESSION_NAME".into(), "my-service-pod-a".into());
    let mut s = spawn(&args(&[]), &env);
    s.expect_log(BLOCKING_LINE, secs(10));
    std::fs::write(dir.path("token"), "token-two").unwrap();
    std::thread::sleep(secs(3));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
    assert!(fake.registered(&arn).is_empty());

    // The base layer: unsigned web identity calls, the rotated token re-read.
    for r in fake.requests_for("AssumeRoleWithWebIdentity") {
        assert!(r.header("authorization").is_none());
        assert_eq!(r.param("RoleArn"), Some(WORKLOAD_ROLE));
    }
    let tokens = fake.web_identity_tokens();
    assert_eq!(tokens.first().map(String::as_str), Some("token-one"));
    assert_eq!(tokens.last().map(String::as_str), Some("token-two"));
    let base_keys: Vec<String> = fake
        .issued_access_keys()
        .into_iter()
        .filter(|k| k.starts_with("ASIAFAKE"))
        .collect();
    assert!(base_keys.len() >= 2, "{base_keys:?}");

    // The role layer: signed with the base layer's temporary keys.
    assert_assume_role_signed_by(&fake, &base_keys);
    for r in fake.requests_for("AssumeRole") {
        assert!(r.header("x-amz-security-token").is_some());
        assert_eq!(r.param("RoleSessionName"), Some("my-service-pod-a"));
    }
    assert_elb_signed_by_the_role(&fake);

    // The deregistration: role credentials assumed with refreshed base ones.
    let granted = fake.assumed_roles();
    let dereg = fake.requests_for("DeregisterTargets");
    let dereg_key = dereg.last().unwrap().access_key_id.clone().unwrap();
    let grant = granted
        .iter()
        .find(|g| g.issued_access_key_id == dereg_key)
        .unwrap();
    assert_ne!(grant.caller_access_key_id, base_keys[0]);
    assert_ne!(grant.issued_access_key_id, granted[0].issued_access_key_id);
}

#[test]
fn pod_identity_base_layer() {
    let (fake, arn) = fake_with_role();
    fake.set_container_token(Some("pod-identity-token"));
    let dir = TempDir::new("xacct-pod-identity");
    std::fs::write(dir.path("token"), "pod-identity-token\n").unwrap();
    let mut env = base_env(&fake.url());
    env.remove("AWS_ACCESS_KEY_ID");
    env.remove("AWS_SECRET_ACCESS_KEY");
    env.insert(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
        format!("{}/container-credentials/v1/credentials", fake.url()),
    );
    env.insert(
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
        dir.path("token"),
    );
    let mut s = spawn(&role_args(&[]), &env);
    s.expect_log(BLOCKING_LINE, secs(10));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
    assert!(fake.registered(&arn).is_empty());
    let base_keys: Vec<String> = fake
        .issued_access_keys()
        .into_iter()
        .filter(|k| k.starts_with("ASIACONT"))
        .collect();
    assert_eq!(base_keys.len(), 1);
    assert_assume_role_signed_by(&fake, &base_keys);
    assert_eq!(fake.count("AssumeRole"), 1, "cached for its hour");
    assert_elb_signed_by_the_role(&fake);
}

/// The node's role through IMDSv2 (a local fake, never the real address)
/// as the base layer: it signs AssumeRole, the role signs ELBv2.
#[test]
fn imds_base_layer() {
    let (fake, arn) = fake_with_role();
    let mut env = base_env(&fake.url());
    env.remove("AWS_ACCESS_KEY_ID");
    env.remove("AWS_SECRET_ACCESS_KEY");
    env.remove("AWS_EC2_METADATA_DISABLED");
    env.insert("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), fake.url());
    let mut s = spawn(&role_args(&[]), &env);
    s.expect_log(BLOCKING_LINE, secs(10));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
    assert!(fake.registered(&arn).is_empty());
    assert!(
        s.output().contains(&format!(
            "credentials from role {ROLE}, assumed with IMDSv2"
        )),
        "{}",
        s.output()
    );
    let imds = fake.requests_for("imds");
    assert_eq!(imds[0].method, "PUT");
    let base_keys: Vec<String> = fake
        .issued_access_keys()
        .into_iter()
        .filter(|k| k.starts_with("ASIAIMDS"))
        .collect();
    assert_eq!(base_keys.len(), 1, "{base_keys:?}");
    assert_assume_role_signed_by(&fake, &base_keys);
    for r in fake.requests_for("AssumeRole") {
        assert!(r.header("x-amz-security-token").is_some());
    }
    assert_elb_signed_by_the_role(&fake);
}

#[test]
fn a_refused_role_is_named_and_not_retried() {
    let (fake, _arn) = fake_with_role();
    // The trust policy wants another ExternalId: AWS answers AccessDenied.
    let a = args(&["-role-arn", ROLE, "-role-external-id", "wrong-id"]);
    let (code, out) = run_to_exit(&a, &base_env(&fake.url()));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "assuming role {ROLE}: AssumeRole failed: AccessDenied (HTTP 403): User: "
        )),
        "{out}"
    );
    assert_eq!(fake.count("AssumeRole"), 1);
    assert_eq!(fake.count("RegisterTargets"), 0);

    // Scripted: the same, whatever the ExternalId.
    fake.script("AssumeRole", vec![Fault::Error(403, "AccessDenied")]);
    let (code, out) = run_to_exit(&role_args(&[]), &base_env(&fake.url()));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "assuming role {ROLE}: AssumeRole failed: AccessDenied"
        )),
        "{out}"
    );
    assert_eq!(fake.count("AssumeRole"), 2);
    assert_eq!(fake.count("RegisterTargets"), 0);
}

#[test]
fn a_failing_base_layer_is_named() {
    let (fake, _arn) = fake_with_role();
    fake.script(
        "AssumeRoleWithWebIdentity",
        vec![Fault::Error(403, "AccessDenied")],
    );
    let dir = TempDir::new("xacct-base-fails");
    std::fs::write(dir.path("token"), "tok").unwrap();
    let (code, out) = run_to_exit(&role_args(&[]), &irsa_env(&fake, &dir.path("token")));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "base credentials from web identity (IRSA): AssumeRoleWithWebIdentity failed: AccessDenied"
        ),
        "{out}"
    );
    let (code, out) = run_to_exit(&role_args(&[]), &irsa_env(&fake, &dir.path("missing")));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "base credentials from web identity (IRSA): cannot read web identity token file"
        ),
        "{out}"
    );
    assert_eq!(fake.count("AssumeRole"), 0);
    assert_eq!(fake.count("RegisterTargets"), 0);
}

#[test]
fn invalid_identity_token_is_retried_under_a_role_too() {
    let (fake, arn) = fake_with_role();
    fake.script(
        "AssumeRoleWithWebIdentity",
        vec![Fault::Error(400, "InvalidIdentityToken")],
    );
    let dir = TempDir::new("xacct-idp-rotation");
    std::fs::write(dir.path("token"), "tok").unwrap();
    let mut s = spawn(&role_args(&[]), &irsa_env(&fake, &dir.path("token")));
    s.expect_log(BLOCKING_LINE, secs(15));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
    assert_eq!(fake.count("AssumeRoleWithWebIdentity"), 2);
    assert_eq!(fake.count("AssumeRole"), 1);
    assert!(fake.registered(&arn).is_empty());
}

#[test]
fn sts_throttling_and_faults_on_assume_role_are_retried() {
    let (fake, arn) = fake_with_role();
    fake.script(
        "AssumeRole",
        vec![Fault::Throttle, Fault::Status(503), Fault::Reset],
    );
    let mut s = spawn(&role_args(&[]), &base_env(&fake.url()));
    s.expect_log(BLOCKING_LINE, secs(15));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
    assert_eq!(fake.count("AssumeRole"), 4);
    assert!(fake.registered(&arn).is_empty());
    assert_elb_signed_by_the_role(&fake);
}

#[test]
fn role_settings_are_checked_before_any_call() {
    let fake = FakeAws::start();
    for (a, needle) in [
        (
            args(&["-role-external-id", EXTERNAL_ID]),
            "-role-external-id is set but -role-arn (NLB_ROLE_ARN) is not",
        ),
        (
            args(&["-role-arn", "nlb-registrator"]),
            "-role-arn: invalid role ARN \"nlb-registrator\"",
        ),
        (
            args(&["-role-arn", ROLE, "-role-session-name", "a b"]),
            "-role-session-name: invalid role session name",
        ),
    ] {
        let (code, out) = run_to_exit(&a, &base_env(&fake.url()));
        assert_eq!(code, 2, "{out}");
        assert!(out.contains(needle), "{out}");
    }
    assert!(fake.requests().is_empty());
}

#[test]
fn no_role_secret_in_the_log_at_trace_level() {
    let (fake, arn) = fake_with_role();
    fake.set_assume_role_lifetime(secs(1));
    let mut env = base_env(&fake.url());
    env.insert(
        "RUST_LOG".into(),
        "trace,ureq=trace,ureq_proto=trace,rustls=trace".into(),
    );
    let mut s = spawn(&role_args(&["-log-level", "trace"]), &env);
    s.expect_log(BLOCKING_LINE, secs(10));
    std::thread::sleep(Duration::from_millis(1200));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
    let out = s.output();
    assert!(out.contains("TRACE") || out.contains("DEBUG"), "{out}");
    let secrets = fake.issued_secrets();
    assert!(secrets.len() >= 2);
    for secret in secrets.iter().chain([&"fake-secret".to_string()]) {
        assert!(!out.contains(secret.as_str()), "secret leaked:\n{out}");
    }
    assert!(!out.contains("Signature="), "{out}");
    assert!(
        !out.contains(EXTERNAL_ID),
        "the external id is not logged:\n{out}"
    );
}

#[test]
fn a_skewed_clock_at_assume_role_is_a_final_error() {
    let (fake, arn) = fake_with_role();
    // AWS's clock half an hour ahead: AssumeRole is refused, once.
    fake.set_clock_offset(1800);
    let mut s = spawn(&role_args(&[]), &base_env(&fake.url()));
    assert_eq!(s.wait_exit(secs(15)), 1, "{}", s.output());
    assert!(fake.registered(&arn).is_empty());
    let calls = fake.requests_for("AssumeRole");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0].auth_error.as_deref(),
        Some("SignatureDoesNotMatch")
    );
    assert!(elb_requests(&fake).is_empty());
    let out = s.output();
    assert!(
        out.contains("behind AWS's (the answer's Date header)"),
        "{out}"
    );
}
