//! Hooks written in shell syntax run with `/bin/sh -c`, as the Go original
//! ran them; plain commands run directly.

use crate::common::BIN;
use fake_aws::process::{base_env, Sidecar, TempDir};
use fake_aws::FakeAws;
use std::time::Duration;

#[test]
fn a_hook_with_and_and_redirections_runs_in_sh() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let dir = TempDir::new("shell-hooks");
    let trail = dir.path("trail");
    let pre = format!("echo one > {trail} && echo 'two && three' >> {trail}");
    let post_dereg = format!("false || echo gone >> {trail}");
    let mut s = Sidecar::spawn(
        BIN,
        &[
            "-target-group-name",
            "tg",
            "-target-id",
            "10.0.0.5",
            "-health-poll-interval",
            "50ms",
            "-pre-register-command",
            &pre,
            "-post-deregister-command",
            &post_dereg,
        ],
        &base_env(&fake.url()),
    );
    s.expect_log("blocking until SIGTERM", Duration::from_secs(10));
    assert_eq!(
        std::fs::read_to_string(&trail).unwrap(),
        "one\ntwo && three\n"
    );
    s.term();
    assert_eq!(s.wait_exit(Duration::from_secs(10)), 0, "{}", s.output());
    assert_eq!(
        std::fs::read_to_string(&trail).unwrap(),
        "one\ntwo && three\ngone\n"
    );
    assert!(fake.registered(&arn).is_empty());
    assert!(s
        .output()
        .contains("running pre-register command: /bin/sh -c"));
}
