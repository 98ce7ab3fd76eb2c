//! The invariant under AWS's semantics, not moto's: a RegisterTargets whose
//! answer never came, applied by AWS after the deregistration, is taken out
//! again, whether DeregisterTargets answers success for a target that is
//! not registered (AWS, the fake's default) or `InvalidTarget` (moto).

use crate::common::BIN;
use fake_aws::process::{base_env, secs, Sidecar};
use fake_aws::{FakeAws, Fault, GroupSettings};
use std::time::{Duration, Instant};

const IP: &str = "10.0.0.5";

/// The sidecar on group `tg`, polling health every 50 ms.
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

/// After the exit: once the lost registration has had its time to land,
/// the target is out, taken out by a second DeregisterTargets.
fn assert_taken_out_again(fake: &FakeAws, arn: &str, s: &Sidecar, strict: bool) {
    let deregs = fake.requests_for("DeregisterTargets");
    let first = deregs.first().expect("a DeregisterTargets").at;
    let settle = first + Duration::from_millis(600);
    std::thread::sleep(settle.saturating_duration_since(Instant::now()));
    assert!(
        fake.registered(arn).is_empty(),
        "strict {strict}: the late registration stayed\n{}",
        s.output()
    );
    assert_eq!(deregs.len(), 2, "strict {strict}");
    assert!(s.output().contains("landed late; deregistering again"));
}

#[test]
fn lost_registration_landing_after_the_deregistration_is_taken_out() {
    for strict in [false, true] {
        let fake = FakeAws::start();
        let arn = fake.add_target_group("tg", 80);
        fake.set_strict_deregister(strict);
        // The first RegisterTargets goes unanswered and lands 300 ms after the
        // deregistration; its retries meet 503s until SIGTERM cuts them short.
        let mut faults = vec![Fault::LandAfterDeregister(Duration::from_millis(300))];
        faults.extend(std::iter::repeat_n(Fault::Status(503), 100));
        fake.script("RegisterTargets", faults);
        let mut s = spawn(&fake);
        assert!(fake.wait_for_count("RegisterTargets", 2, secs(10)));
        s.term();
        assert_eq!(s.wait_exit(secs(15)), 0, "strict {strict}:\n{}", s.output());
        assert_taken_out_again(&fake, &arn, &s, strict);
        assert_eq!(
            fake.count("DescribeTargetHealth"),
            1,
            "one look, strict {strict}"
        );
    }
}

/// A group no load balancer uses (a blue/green idle group): AWS shows the
/// late registration as `unused` (`Target.NotInUse`), which is not out.
#[test]
fn late_landing_in_a_group_no_load_balancer_uses_is_taken_out() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let idle = GroupSettings {
        attached: false,
        ..GroupSettings::default()
    };
    fake.configure_target_group(&arn, idle);
    let mut faults = vec![Fault::LandAfterDeregister(Duration::from_millis(300))];
    faults.extend(std::iter::repeat_n(Fault::Status(503), 100));
    fake.script("RegisterTargets", faults);
    let mut s = spawn(&fake);
    assert!(fake.wait_for_count("RegisterTargets", 2, secs(10)));
    s.term();
    assert_eq!(s.wait_exit(secs(15)), 0, "{}", s.output());
    assert_taken_out_again(&fake, &arn, &s, false);
}

/// The first RegisterTargets attempt goes unanswered, its retry is
/// answered with success; the lost attempt lands after the deregistration
/// all the same, and is taken out again.
#[test]
fn lost_attempt_before_an_answered_retry_is_taken_out() {
    for strict in [false, true] {
        let fake = FakeAws::start();
        let arn = fake.add_target_group("tg", 80);
        fake.set_strict_deregister(strict);
        fake.script(
            "RegisterTargets",
            vec![Fault::LandAfterDeregister(Duration::from_millis(300))],
        );
        let mut s = spawn(&fake);
        s.expect_log("blocking until SIGTERM", secs(10));
        assert_eq!(fake.count("RegisterTargets"), 2);
        s.term();
        assert_eq!(s.wait_exit(secs(15)), 0, "strict {strict}:\n{}", s.output());
        assert_taken_out_again(&fake, &arn, &s, strict);
    }
}

#[test]
fn answered_registration_costs_no_extra_call() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let args = [
        "-target-group-name",
        "tg",
        "-target-id",
        IP,
        "-wait-in-service=false",
    ];
    let mut s = Sidecar::spawn(BIN, &args, &base_env(&fake.url()));
    s.expect_log("blocking until SIGTERM", secs(10));
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
    assert_eq!(fake.count("DeregisterTargets"), 1);
    assert_eq!(fake.count("DescribeTargetHealth"), 0);
}
