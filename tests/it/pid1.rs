//! The sidecar as PID 1 of its PID namespace, as in a scratch image: hooks'
//! orphans are reparented to it and must be reaped, and a whole lifecycle
//! with a real SIGTERM works.
//!
//! Needs root (`unshare --pid --fork --mount-proc`). Without root the test
//! fails loudly; set NLB_SKIP_ROOT_TESTS=1 to turn the failure into a loud
//! warning.

use crate::common::{is_root, BIN};
use fake_aws::process::{base_env, Sidecar};
use fake_aws::FakeAws;
use std::time::{Duration, Instant};

/// The children of `pid`, as seen from this (the parent) namespace.
fn children(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The state letter of a process (`Z` for a zombie), from /proc/PID/stat.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Polls `f` until it holds or `timeout` passes.
fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

#[test]
fn as_pid_1_orphans_of_hooks_are_reaped_and_sigterm_deregisters() {
    if !is_root() {
        let msg = "tests/pid1.rs needs root for unshare --pid: running as PID 1 was NOT tested";
        if std::env::var("NLB_SKIP_ROOT_TESTS").as_deref() == Ok("1") {
            eprintln!("\n!!!!!!!! WARNING: {msg} (NLB_SKIP_ROOT_TESTS=1) !!!!!!!!\n");
            return;
        }
        panic!("{msg}; run as root or set NLB_SKIP_ROOT_TESTS=1 to skip it knowingly");
    }
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    // The hook's shell starts a subshell in the background and exits: the
    // subshell is orphaned, reparented to PID 1, and exits 1 s later.
    let hook = "sh -c '(sleep 1; exit 3) >/dev/null 2>&1 &'";
    let mut s = Sidecar::spawn(
        "unshare",
        &[
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            BIN,
            "-target-group-name",
            "tg",
            "-target-id",
            "10.0.0.5",
            "-health-poll-interval",
            "50ms",
            "-pre-register-command",
            hook,
        ],
        &base_env(&fake.url()),
    );
    let mut sidecar = 0;
    assert!(
        eventually(Duration::from_secs(10), || {
            sidecar = children(s.pid()).first().copied().unwrap_or(0);
            sidecar != 0
                && std::fs::read_to_string(format!("/proc/{sidecar}/status")).is_ok_and(|st| {
                    st.lines()
                        .any(|l| l.starts_with("NSpid:") && l.ends_with("\t1"))
                })
        }),
        "the sidecar is not PID 1 of a new namespace:\n{}",
        s.output()
    );
    s.expect_log("pre-register command succeeded", Duration::from_secs(10));
    // The orphan is ours now...
    assert!(
        !children(sidecar).is_empty(),
        "the hook's orphan was not reparented to the sidecar"
    );
    s.expect_log("blocking until SIGTERM", Duration::from_secs(10));
    // ...and once it exits, it is reaped rather than left a zombie.
    let reaped = eventually(Duration::from_secs(5), || children(sidecar).is_empty());
    let left: Vec<(u32, Option<char>)> = children(sidecar)
        .into_iter()
        .map(|p| (p, state(p)))
        .collect();
    assert!(
        reaped,
        "children of PID 1 left (pid, state): {left:?}\n{}",
        s.output()
    );
    // The log line follows the waitpid(2) that removed the orphan from
    // /proc, so it may still be on its way: wait for it.
    s.expect_log("reaped 1 orphaned process", Duration::from_secs(5));
    assert_eq!(fake.registered(&arn).len(), 1);

    // A real SIGTERM, sent from the parent namespace to PID 1.
    // SAFETY: kill(2) on the sidecar's pid, a descendant of this test.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(libc::pid_t::try_from(sidecar).unwrap(), libc::SIGTERM);
    }
    assert_eq!(s.wait_exit(Duration::from_secs(10)), 0, "{}", s.output());
    assert!(fake.registered(&arn).is_empty());
    assert!(s.output().contains("received SIGTERM"), "{}", s.output());
}
