//! The fleet bench: N real sidecar processes (release build) against one
//! fake with ELBv2's token buckets (`Describe*` 40 + 10/s, registration
//! calls 20 + 5/s), targets healthy 3 s after registration (the group says
//! `HealthCheckIntervalSeconds` 3: one passing check). A scale-up (all start within a second) and a scale-down (all
//! get SIGTERM at once, 30 s grace period), for groups given by name and by
//! ARN. Prints a Markdown section (what `scripts/bench fleet` puts into
//! benches/results.md) on stdout, details on stderr.
//!
//! Env: `NLB_FLEET_PODS` (space-separated sizes, default "100"),
//! `NLB_FLEET_MODES` ("name arn", the default, or one of them).

use fake_aws::fleet::{run_fleet, FleetReport, FleetSpec};
use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_k8s-nlb-registrator-sidecar");

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let sizes: Vec<usize> = std::env::var("NLB_FLEET_PODS")
        .unwrap_or_else(|_| "100".into())
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let modes = std::env::var("NLB_FLEET_MODES").unwrap_or_else(|_| "name arn".into());
    let mut rows = Vec::new();
    let mut goals = Vec::new();
    for &pods in &sizes {
        for by_arn in [false, true] {
            if !modes.contains(if by_arn { "arn" } else { "name" }) {
                continue;
            }
            let mut spec = FleetSpec::new(pods);
            spec.by_arn = by_arn;
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            eprintln!(
                "fleet: {pods} pods by {}, load average {}",
                if by_arn { "ARN" } else { "name" },
                load.trim()
            );
            let report = run_fleet(Path::new(BIN), &spec);
            eprintln!("{}", report.details());
            eprintln!("{}", report.row());
            if pods == 100 {
                goals.push(goal_rows(&report));
            }
            rows.push((report, load));
        }
    }
    println!("#### Fleet: {} sidecars in one account (`scripts/bench fleet`, `cargo bench --bench fleet`)", sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" and "));
    println!();
    println!(
        "Real sidecar processes (release build) against one fake ELBv2 with AWS's token buckets\n\
         (`Describe*` 40 tokens + 10/s, RegisterTargets/DeregisterTargets modelled as 20 + 5/s,\n\
         HTTP 400 `Throttling` when empty); a target is healthy 3 s after its registration and\n\
         its group reports `HealthCheckIntervalSeconds` 3 (a new target passes one check). All pods\n\
         start within one second; once all are ready, all get SIGTERM at once (grace period 30 s).\n\
         Default flags (`-deregister-timeout 20s`, no `-health-poll-interval`: groups by name\n\
         are polled at their own pace, groups by ARN every 5 s). \"all ready\" counts from the\n\
         first spawn, \"all out\" from the SIGTERM to the last successful DeregisterTargets;\n\
         calls count every ELBv2 answer, throttled ones included; RSS is VmHWM while blocked,\n\
         CPU the whole life (wait4). The machine is shared (2 CPUs, other work running):\n\
         load average at the start of each run in the last column."
    );
    println!();
    println!(
        "{} load avg |",
        FleetReport::header().lines().next().unwrap_or("")
    );
    println!(
        "{}---:|",
        FleetReport::header().lines().nth(1).unwrap_or("")
    );
    for (report, load) in &rows {
        let load1 = load.split_whitespace().next().unwrap_or("-");
        println!("{} {load1} |", report.row());
    }
    println!();
    for (report, _) in &rows {
        println!("- {}", report.details());
    }
    if sizes.iter().any(|&n| n > 120) {
        println!();
        println!(
            "The registration bucket sets a hard limit on the scale-down: 20 + 5 x 20 = 120\n\
             DeregisterTargets can succeed within the default 20 s `-deregister-timeout`, so of more\n\
             than 120 pods stopping at once the rest exit 1 with their target left (and say so).\n\
             N pods stopping together need a `-deregister-timeout` of at least (N - 20) / 5 s, and a\n\
             `terminationGracePeriodSeconds` above it: 60 s and 70 s for 300 pods."
        );
    }
    if !goals.is_empty() {
        println!();
        println!("Goals for 100 pods (issue 15):");
        println!();
        println!("| goal | by name | by ARN |");
        println!("|---|---|---|");
        let cell = |i: usize, by_arn: bool| {
            goals
                .iter()
                .find(|g: &&(bool, Vec<String>)| g.0 == by_arn)
                .map_or("-".to_string(), |g| g.1[i].clone())
        };
        for (i, goal) in [
            "all ready within 30 s",
            "at most 8 calls per pod up (throttled included)",
            "at most half of all answers throttled (up)",
            "all out within 25 s",
            "0 targets left, all exit 0 within 30 s",
        ]
        .iter()
        .enumerate()
        {
            println!("| {goal} | {} | {} |", cell(i, false), cell(i, true));
        }
        let whole: Vec<String> = rows
            .iter()
            .filter(|(r, _)| r.spec.pods == 100)
            .map(|(r, _)| {
                let (total, throttled) =
                    (r.up.total + r.down.total, r.up.throttled + r.down.throttled);
                let share = if total == 0 {
                    0.0
                } else {
                    throttled as f64 / total as f64
                };
                let by = if r.spec.by_arn { "by ARN" } else { "by name" };
                format!("{:.0}% {by}", share * 100.0)
            })
            .collect();
        println!();
        println!(
            "The throttled-share goal is read for the scale-up, with the other two goals of its\n\
             sentence. Over the whole run (up and down) the share is {}: in the scale-down 100\n\
             first DeregisterTargets meet a bucket of 20 at once (a first attempt is never delayed,\n\
             so no pod waits to start its deregistration), and each throttled pod then retries\n\
             inside `-deregister-timeout`.",
            whole.join(", ")
        );
    }
}

/// The goals for 100 pods, each "PASS (figure)" or "MISS (figure)".
fn goal_rows(r: &FleetReport) -> (bool, Vec<String>) {
    let mark = |ok: bool, what: String| format!("{} ({what})", if ok { "PASS" } else { "MISS" });
    let ready = r.all_ready.map(|d| d.as_secs_f64());
    let out = r.all_out.map(|d| d.as_secs_f64());
    (
        r.spec.by_arn,
        vec![
            mark(
                ready.is_some_and(|s| s <= 30.0),
                ready.map_or("not all".into(), |s| format!("{s:.1} s")),
            ),
            mark(r.per_pod(&r.up) <= 8.0, format!("{:.1}", r.per_pod(&r.up))),
            mark(
                r.up.throttled_share() <= 0.5,
                format!("{:.0}%", r.up.throttled_share() * 100.0),
            ),
            mark(
                out.is_some_and(|s| s <= 25.0),
                out.map_or("not all".into(), |s| format!("{s:.1} s")),
            ),
            mark(
                r.left == 0 && r.exited_zero() == r.spec.pods,
                format!(
                    "{} left, {}/{} exit 0",
                    r.left,
                    r.exited_zero(),
                    r.spec.pods
                ),
            ),
        ],
    )
}
