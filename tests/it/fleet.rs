//! A fleet of real sidecars in one account: 25 pods start within a second
//! against the fake with ELBv2's token buckets (`Describe*` 40 + 10/s,
//! registration calls 20 + 5/s) and targets healthy 3 s after registration,
//! then all get SIGTERM at once. Every pod must get ready, every target
//! must be out, and every pod must exit 0 within a 30 s grace period. The
//! bounds on time and calls are generous (a shared machine); the figures
//! that count are the bench's (`benches/fleet.rs`, `scripts/bench fleet`).

use fake_aws::fleet::{run_fleet, FleetSpec};
use std::path::Path;
use std::time::Duration;

use crate::common::BIN;

fn check(by_arn: bool) {
    let mut spec = FleetSpec::new(25);
    spec.by_arn = by_arn;
    spec.ready_timeout = Duration::from_secs(90);
    let report = run_fleet(Path::new(BIN), &spec);
    eprintln!(
        "{}\n{}\n{}",
        fake_aws::fleet::FleetReport::header(),
        report.row(),
        report.details()
    );
    assert!(
        report.all_ready.is_some(),
        "not all ready: {}",
        report.details()
    );
    assert_eq!(report.left, 0, "targets left: {}", report.details());
    assert_eq!(report.exited_zero(), 25, "exits {:?}", report.exits);
    // Generous: the bench's goal is 8 calls a pod for 100 pods.
    assert!(report.per_pod(&report.up) <= 12.0, "{}", report.details());
}

#[test]
fn fleet_by_name_scales_up_and_down_cleanly() {
    check(false);
}

#[test]
fn fleet_by_arn_scales_up_and_down_cleanly() {
    check(true);
}
