//! Randomized soak: many lifecycles of the real binary with random faults
//! and random signal timing; no target may be left registered.
//!
//! Seeded and reproducible in what it injects (the timing of a real
//! process against a real clock still varies). Bounded: it stops starting
//! lifecycles after NLB_SOAK_SECONDS. The default (200 lifecycles, 4 at a
//! time) runs in CI; `scripts/soak` runs a long version by hand:
//!
//!   NLB_SOAK_LIFECYCLES=5000 NLB_SOAK_SECONDS=1800 NLB_SOAK_SEED=7 \
//!     cargo test --release --test soak -- --nocapture
//!
//! Every fault is finite (at most three per action, all retryable), and the
//! fake stays reachable, so every lifecycle must end with exit 0 and its
//! target out of the load balancer.

use crate::common::BIN;
use fake_aws::process::{base_env, Sidecar};
use fake_aws::{FakeAws, Fault};
use k8s_nlb_registrator_sidecar::clock::SplitMix;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const ACTIONS: [&str; 4] = [
    "DescribeTargetGroups",
    "RegisterTargets",
    "DescribeTargetHealth",
    "DeregisterTargets",
];

fn random_fault(rng: &mut SplitMix) -> Fault {
    let pick = (rng.next_f64() * 10.0) as u32;
    match pick {
        0 => Fault::Throttle,
        1 => Fault::Status(500),
        2 => Fault::Status(503),
        3 => Fault::Reset,
        4 => Fault::Garbage(b"<html><body>proxy error</body></html>"),
        5 => Fault::Truncated,
        6 => Fault::Delay(Duration::from_millis((rng.next_f64() * 300.0) as u64)),
        7 => Fault::ApplyThenFail(500),
        8 => Fault::ApplyThenReset,
        _ => Fault::Status(502),
    }
}

struct Outcome {
    /// Killed by the signal before the handlers were installed.
    early: bool,
    faults: usize,
    left: usize,
    code: i32,
    report: String,
}

fn one_lifecycle(seed: u64) -> Outcome {
    let mut rng = SplitMix::new(seed);
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let mut faults = 0;
    for action in ACTIONS {
        let n = (rng.next_f64() * 4.0) as usize;
        let list: Vec<Fault> = (0..n).map(|_| random_fault(&mut rng)).collect();
        faults += list.len();
        fake.script(action, list);
    }
    if rng.next_f64() < 0.5 {
        let polls = (rng.next_f64() * 4.0) as usize;
        let mut seq = vec![("initial", Some("Elb.RegistrationInProgress")); polls];
        seq.push(("healthy", None));
        fake.set_health_sequence(&arn, "10.9.9.9", seq);
    }
    let mut s = Sidecar::spawn(
        BIN,
        &[
            "-target-group-name",
            "tg",
            "-target-id",
            "10.9.9.9",
            "-health-poll-interval",
            "30ms",
            "-wait-in-service-timeout",
            "2s",
            "-register-timeout",
            "8s",
            "-deregister-timeout",
            "10s",
        ],
        &base_env(&fake.url()),
    );
    let when = rng.next_f64();
    let timing = if when < 0.2 {
        s.wait_log("blocking until SIGTERM", Duration::from_secs(15));
        "blocked".to_string()
    } else {
        let ms = (rng.next_f64() * 800.0) as u64;
        std::thread::sleep(Duration::from_millis(ms));
        format!("{ms}ms")
    };
    s.term();
    if rng.next_f64() < 0.15 {
        std::thread::sleep(Duration::from_millis((rng.next_f64() * 50.0) as u64));
        s.signal(libc::SIGINT);
    }
    let status = s.wait_status(Duration::from_secs(40));
    let left = fake.registered(&arn).len();
    // A SIGTERM in the first moments after exec, before main has installed
    // its handlers, kills the process with the default action. Nothing can
    // have been registered by then: that is checked, and counted apart.
    // Only the signals this test sends count; any other (SIGSEGV, SIGABRT
    // from a panic, SIGKILL) is a crash and fails the run.
    let early_signal = status
        .signal()
        .is_some_and(|sig| sig == libc::SIGTERM || sig == libc::SIGINT);
    let code = match status.code() {
        Some(c) => c,
        None if early_signal && fake.requests().is_empty() => {
            return Outcome {
                faults,
                left,
                code: 0,
                early: true,
                report: format!("seed {seed}: signal before the handlers were installed"),
            };
        }
        None => -1,
    };
    Outcome {
        early: false,
        faults,
        left,
        code,
        report: format!(
            "seed {seed}: signal at {timing}, {faults} faults, exit {code} ({status}), left {left}, calls {:?}",
            fake.requests().iter().map(|r| r.action.as_str()).collect::<Vec<_>>()
        ),
    }
}

#[test]
fn soak_random_faults_and_signals_leave_no_target_registered() {
    let lifecycles = env_num("NLB_SOAK_LIFECYCLES", 200);
    let seconds = env_num("NLB_SOAK_SECONDS", 240);
    let seed = env_num("NLB_SOAK_SEED", 20261125);
    let workers = env_num("NLB_SOAK_WORKERS", 4);
    let end = Instant::now() + Duration::from_secs(seconds);
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let next = Arc::clone(&next);
            let results = Arc::clone(&results);
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst) as u64;
                if i >= lifecycles || Instant::now() >= end {
                    break;
                }
                let out = one_lifecycle(seed.wrapping_mul(1_000_003).wrapping_add(i));
                results.lock().unwrap().push(out);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("soak worker panicked");
    }
    let results = results.lock().unwrap();
    let ran = results.len();
    let faults: usize = results.iter().map(|o| o.faults).sum();
    let left: usize = results.iter().map(|o| o.left).sum();
    let failed: Vec<&str> = results
        .iter()
        .filter(|o| o.left > 0 || o.code != 0)
        .map(|o| o.report.as_str())
        .collect();
    let early = results.iter().filter(|o| o.early).count();
    eprintln!(
        "soak: seed {seed}, lifecycles run {ran} of {lifecycles}, faults injected {faults}, \
         signals before the handlers were installed {early}, \
         targets left registered {left}, failed lifecycles {}",
        failed.len()
    );

    assert!(
        failed.is_empty(),
        "failed lifecycles:\n{}",
        failed.join("\n")
    );
    assert!(ran >= 1, "no lifecycle ran");
    if ran < lifecycles as usize {
        eprintln!("soak: stopped at the {seconds} s bound after {ran} lifecycles");
    }
}
