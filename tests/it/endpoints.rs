//! Process tests of the SDK endpoint settings: what the binary does with
//! `AWS_USE_FIPS_ENDPOINT`, `AWS_USE_DUALSTACK_ENDPOINT` and the region
//! `aws-global` (the host names themselves are unit tests in
//! `src/aws/endpoint.rs`). Nothing here leaves 127.0.0.1.

use crate::common::BIN;
use fake_aws::process::{base_env, secs, Sidecar};
use fake_aws::FakeAws;

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
