//! Clock skew as a process: AWS's clock (the fake's, moved by
//! `set_clock_offset`) is half an hour or an hour away from the pod's. AWS
//! refuses the signature ("Signature expired" / "Signature not yet
//! current"); the sidecar exits 1 naming the offset measured from the
//! answer's `Date` header, without a second attempt.

use crate::common::BIN;
use fake_aws::process::{base_env, secs, Sidecar};
use fake_aws::{FakeAws, Recorded};

const IP: &str = "10.0.0.7";

fn spawn(fake: &FakeAws) -> Sidecar {
    let args = [
        "-target-group-name",
        "tg",
        "-target-id",
        IP,
        "-health-poll-interval",
        "50ms",
    ];
    Sidecar::spawn(BIN, &args, &base_env(&fake.url()))
}

fn elb_requests(fake: &FakeAws) -> Vec<Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| r.service.as_deref() == Some("elasticloadbalancing"))
        .collect()
}

/// Whether `out` names the offset as one of `by` (the Date header is
/// truncated to the second: give or take one).
fn says_the_offset(out: &str, dir: &str, by: [&str; 3]) -> bool {
    by.iter().any(|by| {
        out.contains(&format!(
            "this node's clock is {by} {dir} AWS's (the answer's Date header): \
             fix the node's time sync (chrony, Amazon Time Sync)"
        ))
    })
}

#[test]
fn aws_clock_ahead_or_behind_is_a_final_error_naming_the_offset() {
    for (offset, says) in [(1800, "behind"), (-1800, "ahead of")] {
        let fake = FakeAws::start();
        let arn = fake.add_target_group("tg", 80);
        fake.set_clock_offset(offset);
        let mut s = spawn(&fake);
        assert_eq!(s.wait_exit(secs(15)), 1, "{}", s.output());
        let out = s.output();
        assert!(
            says_the_offset(&out, says, ["29m59s", "30m0s", "30m1s"]),
            "{out}"
        );
        assert!(fake.registered(&arn).is_empty());
        // One refusal, no second attempt.
        let elb = elb_requests(&fake);
        assert_eq!(elb.len(), 1, "{elb:?}");
        assert_eq!(elb[0].auth_error.as_deref(), Some("SignatureDoesNotMatch"));
    }
}

/// The clock jumps while the sidecar is blocked (a VM restored from a
/// snapshot, a broken NTP): the deregistration is refused once, and the
/// sidecar exits 1 naming the offset.
#[test]
fn skew_that_appears_while_blocked_fails_the_deregistration_clearly() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    let mut s = spawn(&fake);
    s.expect_log("blocking until SIGTERM", secs(15));
    assert!(elb_requests(&fake).iter().all(|r| r.auth_error.is_none()));
    fake.set_clock_offset(3600);
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 1, "{}", s.output());
    let out = s.output();
    assert!(
        says_the_offset(&out, "behind", ["59m59s", "1h0m0s", "1h0m1s"]),
        "{out}"
    );
    assert!(out.contains("DEREGISTRATION FAILED"), "{out}");
    let deregs = fake.requests_for("DeregisterTargets");
    assert_eq!(deregs.len(), 1, "{deregs:?}");
    assert_eq!(
        deregs[0].auth_error.as_deref(),
        Some("SignatureDoesNotMatch")
    );
}
