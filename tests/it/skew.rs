//! Clock skew as a process: AWS's clock (the fake's, moved by
//! `set_clock_offset`) is half an hour or an hour away from the pod's. AWS
//! refuses the signature ("Signature expired" / "Signature not yet
//! current"); the sidecar takes AWS's time from the answer's `Date` header,
//! signs again, and keeps signing with it.

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

#[test]
fn aws_clock_ahead_or_behind_is_corrected_from_the_date_header() {
    for (offset, says) in [(1800, "ahead of"), (-1800, "behind")] {
        let fake = FakeAws::start();
        let arn = fake.add_target_group("tg", 80);
        fake.set_clock_offset(offset);
        let mut s = spawn(&fake);
        s.expect_log("blocking until SIGTERM", secs(15));
        assert_eq!(fake.registered(&arn).len(), 1);
        s.term();
        assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
        assert!(fake.registered(&arn).is_empty());
        let out = s.output();
        // To the second, give or take one (the Date header is truncated).
        assert!(
            (1799..=1801)
                .any(|n| out.contains(&format!("AWS's clock is {n} s {says} the local one"))),
            "{out}"
        );
        // One refusal, on the first call; every later call, the
        // deregistration included, is signed with AWS's time.
        let elb = elb_requests(&fake);
        assert_eq!(
            elb[0].auth_error.as_deref(),
            Some("SignatureDoesNotMatch"),
            "{out}"
        );
        assert_eq!(elb[1].action, elb[0].action);
        assert!(elb[1..].iter().all(|r| r.auth_error.is_none()), "{elb:?}");
        assert_eq!(
            elb.last().map(|r| r.action.as_str()),
            Some("DeregisterTargets")
        );
    }
}

/// The clock jumps while the sidecar is blocked (a VM restored from a
/// snapshot, a broken NTP): the deregistration is refused once, then
/// signed again with AWS's time.
#[test]
fn skew_that_appears_while_blocked_is_corrected_for_the_deregistration() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let mut s = spawn(&fake);
    s.expect_log("blocking until SIGTERM", secs(15));
    assert!(elb_requests(&fake).iter().all(|r| r.auth_error.is_none()));
    fake.set_clock_offset(3600);
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
    assert!(fake.registered(&arn).is_empty());
    let deregs = fake.requests_for("DeregisterTargets");
    assert_eq!(deregs.len(), 2);
    assert_eq!(
        deregs[0].auth_error.as_deref(),
        Some("SignatureDoesNotMatch")
    );
    assert_eq!(deregs[1].auth_error, None);
    assert_eq!(deregs[1].status, Some(200));
}
