//! Lifecycle benchmark of the sidecar binary against the fake ELBv2 server.
//!
//! `cargo bench --bench lifecycle` (harness = false); `scripts/bench` drives it
//! and adds the static build, binary size and the AWS CLI comparison.
//!
//! It builds nothing: the binary comes from `NLB_BENCH_BIN`, else the static
//! musl release build (`target/x86_64-unknown-linux-musl/release/...`) when
//! it exists, else the binary cargo built for this bench. Each run starts a
//! fresh fake (the `fake-aws` crate in tests/fake-aws, on 127.0.0.1), spawns the binary with a
//! controlled environment, waits until it logs that it blocks, sends SIGTERM
//! and reaps it. Measured:
//!
//! - spawn -> first request on the wire (the fake's arrival time);
//! - spawn -> blocked (the "blocking until SIGTERM" log line);
//! - SIGTERM -> DeregisterTargets on the wire, and SIGTERM -> exit;
//! - idle RSS (VmRSS while blocked);
//! - peak RSS over the whole lifecycle, in separate runs (a tracer would
//!   add a signal-delivery stop to the SIGTERM latency): the larger of
//!   VmHWM while blocked and VmHWM at the exit stop of a
//!   ptrace(PTRACE_SEIZE, PTRACE_O_TRACEEXIT) tracer, where the mm is still
//!   there. Both are needed: since Linux 6.2 the RSS counters are per-CPU,
//!   and the kernel updates the high-water mark (on munmap, at exit) from
//!   the approximate sum, so VmHWM at exit can read up to about
//!   128 KiB x CPUs lower than a VmRSS seen earlier (observed: 1916 KiB at
//!   exit after 2032 KiB while blocked). On this 6.18 kernel a read of
//!   /proc/PID/status reports max(recorded mark, exact current RSS), so the
//!   reading while blocked is exact for that moment.
//!   The `ru_maxrss` of wait4() is printed too but is NOT the child's own
//!   peak: std spawns with posix_spawn (vfork), and exec() folds the
//!   high-water mark of the mm it leaves, the bench's own, into the child's
//!   maxrss;
//! - CPU ticks (utime+stime) and context switches while blocked for
//!   `NLB_BENCH_IDLE_SECS` (default 10) seconds, in one run;
//! - CPU time (user + system, wait4 rusage) of the whole lifecycle;
//! - AWS API calls per lifecycle.
//!
//! Env: `NLB_BENCH_RUNS` (timed runs, default 20), `NLB_BENCH_PEAK_RUNS`
//! (ptraced runs, default 5), `NLB_BENCH_IDLE_SECS` (default 10).
//!
//! stdout: a table, then machine-readable lines
//! `BENCH<TAB>key<TAB>median<TAB>p95<TAB>min<TAB>max<TAB>unit<TAB>n`.
//! The fake logs each request on stderr.
#![allow(clippy::cast_precision_loss)]

use fake_aws::process::{base_env, Sidecar, BLOCKING_LINE};
use fake_aws::FakeAws;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BIN_NAME: &str = "k8s-nlb-registrator-sidecar";
const TARGET_GROUP: &str = "tg";
const TARGET_ID: &str = "10.0.0.1";
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between the "blocking" line and the measurements / SIGTERM, so
/// the process is parked in the kernel as it would be in a pod.
const SETTLE: Duration = Duration::from_millis(150);

fn main() {
    let bin = binary();
    if !bin.is_file() {
        eprintln!("lifecycle bench: no binary at {}", bin.display());
        std::process::exit(2);
    }
    let runs = env_num("NLB_BENCH_RUNS", 20).max(1);
    let peak_runs = env_num("NLB_BENCH_PEAK_RUNS", 5);
    let idle_secs = env_num("NLB_BENCH_IDLE_SECS", 10);
    let clk_tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };

    println!("binary: {}", bin.display());
    println!(
        "runs: {runs} timed, {peak_runs} ptraced for peak RSS, 1 blocked for {idle_secs} s; CLK_TCK {clk_tck}"
    );

    let mut m = Metrics::default();
    let mut calls_by_action: Option<BTreeMap<String, usize>> = None;

    for i in 0..runs {
        let opts = RunOpts {
            trace_exit: false,
            idle: if i == 0 {
                Some(Duration::from_secs(idle_secs))
            } else {
                None
            },
        };
        let r = run_once(&bin, &opts).unwrap_or_else(|e| fail(&e));
        m.first_request.push(ms(r.first_request));
        m.blocked.push(ms(r.blocked));
        m.term_to_dereg.push(ms(r.term_to_dereg));
        m.term_to_exit.push(ms(r.term_to_exit));
        m.idle_rss.push(r.idle_rss_kib as f64);
        m.hwm_blocked.push(r.hwm_blocked_kib as f64);
        m.rss_anon.push(r.rss_anon_kib as f64);
        m.rss_file.push(r.rss_file_kib as f64);
        m.ru_maxrss.push(r.ru_maxrss_kib as f64);
        m.cpu_lifecycle.push(ms(r.cpu_lifecycle));
        m.api_calls.push(r.api_calls.values().sum::<usize>() as f64);
        m.threads.push(r.threads as f64);
        if let Some(c) = r.cpu_blocked {
            m.cpu_ticks.push(c.ticks as f64);
            m.ctxt_switches.push(c.ctxt_switches as f64);
        }
        match &calls_by_action {
            None => calls_by_action = Some(r.api_calls.clone()),
            Some(first) if *first != r.api_calls => {
                println!("note: run {i} made other calls: {:?}", r.api_calls);
            }
            Some(_) => {}
        }
    }
    for _ in 0..peak_runs {
        let opts = RunOpts {
            trace_exit: true,
            idle: None,
        };
        let r = run_once(&bin, &opts).unwrap_or_else(|e| fail(&e));
        match r.hwm_at_exit_kib {
            Some(k) => {
                m.hwm_exit.push(k as f64);
                m.peak_rss.push(k.max(r.hwm_blocked_kib) as f64);
            }
            None => {
                println!("note: ptrace unavailable; peak RSS falls back to VmHWM while blocked");
                break;
            }
        }
    }
    if m.peak_rss.is_empty() {
        m.peak_rss.clone_from(&m.hwm_blocked);
    }

    let rows: Vec<Row> = vec![
        Row::new(
            "startup_first_request_ms",
            "spawn -> first request on the wire",
            "ms",
            &m.first_request,
            "",
        ),
        Row::new(
            "startup_blocked_ms",
            "spawn -> registered, healthy, blocked",
            "ms",
            &m.blocked,
            "(includes one 40-60 ms health poll pause)",
        ),
        Row::new(
            "sigterm_to_deregister_ms",
            "SIGTERM -> DeregisterTargets on the wire",
            "ms",
            &m.term_to_dereg,
            "target < 5 ms",
        ),
        Row::new(
            "sigterm_to_exit_ms",
            "SIGTERM -> exit 0 (deregistered)",
            "ms",
            &m.term_to_exit,
            "",
        ),
        Row::new(
            "idle_rss_kib",
            "idle RSS while blocked (VmRSS)",
            "KiB",
            &m.idle_rss,
            "",
        ),
        Row::new(
            "idle_rss_anon_kib",
            "  of which anonymous (heap, stacks)",
            "KiB",
            &m.rss_anon,
            "",
        ),
        Row::new(
            "idle_rss_file_kib",
            "  of which file-backed (the binary's pages)",
            "KiB",
            &m.rss_file,
            "",
        ),
        Row::new(
            "peak_rss_kib",
            "peak RSS over the lifecycle (max VmHWM)",
            "KiB",
            &m.peak_rss,
            "target < 5 MB (4883 KiB)",
        ),
        Row::new(
            "hwm_exit_kib",
            "VmHWM at the exit stop",
            "KiB",
            &m.hwm_exit,
            "can read low, see the header",
        ),
        Row::new(
            "hwm_blocked_kib",
            "VmHWM while blocked",
            "KiB",
            &m.hwm_blocked,
            "",
        ),
        Row::new(
            "wait4_maxrss_kib",
            "wait4 ru_maxrss (includes the bench's RSS)",
            "KiB",
            &m.ru_maxrss,
            "not the child's own peak",
        ),
        Row::new("threads", "threads while blocked", "", &m.threads, ""),
        Row::new(
            "cpu_ticks_blocked",
            &format!("CPU ticks while blocked {idle_secs} s"),
            "ticks",
            &m.cpu_ticks,
            "target 0",
        ),
        Row::new(
            "ctxt_switches_blocked",
            &format!("context switches while blocked {idle_secs} s"),
            "",
            &m.ctxt_switches,
            "",
        ),
        Row::new(
            "cpu_lifecycle_ms",
            "CPU time (user+sys) for the whole lifecycle",
            "ms",
            &m.cpu_lifecycle,
            "",
        ),
        Row::new(
            "api_calls",
            "AWS API calls per lifecycle",
            "calls",
            &m.api_calls,
            "",
        ),
    ];

    println!();
    let h = ["metric", "unit", "median", "p95", "min", "max", "n", "note"];
    println!(
        "{:<46} {:>6} {:>9} {:>9} {:>9} {:>9} {:>4}  {}",
        h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
    );
    println!("{}", "-".repeat(118));
    for r in &rows {
        if let Some(s) = &r.stats {
            println!(
                "{:<46} {:>6} {:>9} {:>9} {:>9} {:>9} {:>4}  {}",
                r.label,
                r.unit,
                fmt(s.median),
                fmt(s.p95),
                fmt(s.min),
                fmt(s.max),
                s.n,
                r.note
            );
        }
    }
    let own = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    println!(
        "this bench process: VmHWM {} KiB (what wait4's ru_maxrss of a child spawned from it reflects)",
        status_kib(&own, "VmHWM:").unwrap_or(0)
    );
    if let Some(c) = &calls_by_action {
        let list: Vec<String> = c.iter().map(|(a, n)| format!("{a} x{n}")).collect();
        println!("API calls: {}", list.join(", "));
    }
    println!();
    for r in &rows {
        if let Some(s) = &r.stats {
            println!(
                "BENCH\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                r.key,
                fmt(s.median),
                fmt(s.p95),
                fmt(s.min),
                fmt(s.max),
                r.unit,
                s.n
            );
        }
    }
    if let Some(c) = &calls_by_action {
        for (a, n) in c {
            println!("BENCHCALL\t{a}\t{n}");
        }
    }
}

// ---------------------------------------------------------------------------
// One lifecycle

struct RunOpts {
    /// Attach a ptrace tracer that stops the child at exit to read VmHWM.
    trace_exit: bool,
    /// Stay blocked this long and measure CPU and context switches.
    idle: Option<Duration>,
}

struct CpuBlocked {
    ticks: u64,
    ctxt_switches: u64,
}

struct RunResult {
    first_request: Duration,
    blocked: Duration,
    term_to_dereg: Duration,
    term_to_exit: Duration,
    idle_rss_kib: u64,
    hwm_blocked_kib: u64,
    rss_anon_kib: u64,
    rss_file_kib: u64,
    hwm_at_exit_kib: Option<u64>,
    ru_maxrss_kib: u64,
    /// user + system CPU time of the whole process life (wait4 rusage).
    cpu_lifecycle: Duration,
    threads: u64,
    cpu_blocked: Option<CpuBlocked>,
    api_calls: BTreeMap<String, usize>,
}

/// `what`, with the sidecar's output so far.
fn describe(child: &Sidecar, what: &str) -> String {
    format!(
        "{what}; the sidecar's output:\n  {}",
        child.output().replace('\n', "\n  ")
    )
}

fn run_once(bin: &Path, opts: &RunOpts) -> Result<RunResult, String> {
    let fake = FakeAws::start();
    let arn = fake.add_target_group(TARGET_GROUP, 8080);

    let args = [
        "-target-group-name",
        TARGET_GROUP,
        "-target-id",
        TARGET_ID,
        "-health-poll-interval",
        "50ms",
    ];
    // Killed on drop unless reaped below (with wait4, for its rusage).
    let mut child = Sidecar::spawn(bin, &args, &base_env(&fake.url()));
    let spawned_at = child.started;
    let pid = libc::pid_t::try_from(child.pid()).map_err(|e| format!("pid: {e}"))?;

    let traced = opts.trace_exit && seize_for_exit(pid);

    let ready_at = child
        .wait_log_at(BLOCKING_LINE, READY_TIMEOUT)
        .ok_or_else(|| {
            describe(
                &child,
                &format!("no {BLOCKING_LINE:?} line within {READY_TIMEOUT:?} (or it ended)"),
            )
        })?;
    std::thread::sleep(SETTLE);
    let first = fake
        .requests()
        .first()
        .map(|r| r.at)
        .ok_or_else(|| describe(&child, "blocked without a request"))?;

    let status = proc_status(pid);
    let idle_rss_kib = status_kib(&status, "VmRSS:").unwrap_or(0);
    let hwm_blocked_kib = status_kib(&status, "VmHWM:").unwrap_or(0);
    let threads = status_kib(&status, "Threads:").unwrap_or(0);
    let rss_anon_kib = status_kib(&status, "RssAnon:").unwrap_or(0);
    let rss_file_kib = status_kib(&status, "RssFile:").unwrap_or(0);

    let cpu_blocked = opts.idle.map(|d| {
        let (t0, c0) = (cpu_ticks(pid), ctxt_switches(pid));
        std::thread::sleep(d);
        let (t1, c1) = (cpu_ticks(pid), ctxt_switches(pid));
        CpuBlocked {
            ticks: t1.saturating_sub(t0),
            ctxt_switches: c1.saturating_sub(c0),
        }
    });

    let before = fake.count("DeregisterTargets");
    let term_at = Instant::now();
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        return Err(describe(&child, "kill(SIGTERM) failed"));
    }
    let (wait_status, rusage, hwm_at_exit_kib) = reap(pid, traced)?;
    let exited_at = Instant::now();
    child.reaped_elsewhere();

    if !(libc::WIFEXITED(wait_status) && libc::WEXITSTATUS(wait_status) == 0) {
        return Err(describe(
            &child,
            &format!("the sidecar did not exit 0 (wait status {wait_status:#x})"),
        ));
    }
    let reqs = fake.requests();
    let dereg = reqs
        .iter()
        .filter(|r| r.action == "DeregisterTargets")
        .nth(before)
        .ok_or_else(|| describe(&child, "no DeregisterTargets after SIGTERM"))?;
    if let Some(bad) = reqs
        .iter()
        .find(|r| !r.signature_ok || r.status != Some(200))
    {
        return Err(describe(
            &child,
            &format!(
                "request {} was refused or unsigned: status {:?}, {:?}",
                bad.action, bad.status, bad.auth_error
            ),
        ));
    }
    if !fake.registered(&arn).is_empty() {
        return Err(describe(
            &child,
            "the target is still registered after exit",
        ));
    }
    let mut api_calls = BTreeMap::new();
    for r in &reqs {
        *api_calls.entry(r.action.clone()).or_insert(0) += 1;
    }

    Ok(RunResult {
        first_request: first.saturating_duration_since(spawned_at),
        blocked: ready_at.saturating_duration_since(spawned_at),
        term_to_dereg: dereg.at.saturating_duration_since(term_at),
        term_to_exit: exited_at.saturating_duration_since(term_at),
        idle_rss_kib,
        hwm_blocked_kib,
        rss_anon_kib,
        rss_file_kib,
        hwm_at_exit_kib,
        ru_maxrss_kib: u64::try_from(rusage.ru_maxrss).unwrap_or(0),
        cpu_lifecycle: timeval(rusage.ru_utime) + timeval(rusage.ru_stime),
        threads,
        cpu_blocked,
        api_calls,
    })
}

/// PTRACE_SEIZE with PTRACE_O_TRACEEXIT: the main thread stops in do_exit
/// before its mm is released, so /proc/PID/status still has VmHWM.
fn seize_for_exit(pid: libc::pid_t) -> bool {
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_SEIZE,
            pid,
            std::ptr::null_mut::<libc::c_void>(),
            libc::PTRACE_O_TRACEEXIT as usize as *mut libc::c_void,
        )
    };
    rc == 0
}

/// Waits for the child's end; when traced, reads VmHWM at the exit stop and
/// passes every other stop's signal on.
fn reap(pid: libc::pid_t, traced: bool) -> Result<(i32, libc::rusage, Option<u64>), String> {
    let mut hwm = None;
    loop {
        let mut status = 0;
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let got = unsafe { libc::wait4(pid, &mut status, libc::__WALL, &mut ru) };
        if got < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("wait4: {e}"));
        }
        if !traced || !libc::WIFSTOPPED(status) {
            return Ok((status, ru, hwm));
        }
        let event = (status >> 16) & 0xff;
        let sig = if event == libc::PTRACE_EVENT_EXIT {
            hwm = status_kib(&proc_status(pid), "VmHWM:");
            0
        } else if event == 0 {
            // Signal-delivery stop: deliver it.
            libc::WSTOPSIG(status)
        } else {
            0
        };
        unsafe {
            libc::ptrace(
                libc::PTRACE_CONT,
                pid,
                std::ptr::null_mut::<libc::c_void>(),
                sig as usize as *mut libc::c_void,
            );
        }
    }
}

// ---------------------------------------------------------------------------
// /proc

fn proc_status(pid: libc::pid_t) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
}

/// The number after `key` in /proc/PID/status (kB for Vm* lines).
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// utime + stime of the whole process (all threads, live and dead), in clock ticks.
fn cpu_ticks(pid: libc::pid_t) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    num(11) + num(12)
}

/// Voluntary + involuntary context switches summed over the live threads.
fn ctxt_switches(pid: libc::pid_t) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .map(|t| {
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            status_kib(&s, "voluntary_ctxt_switches:").unwrap_or(0)
                + status_kib(&s, "nonvoluntary_ctxt_switches:").unwrap_or(0)
        })
        .sum()
}

// ---------------------------------------------------------------------------
// Helpers

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NLB_BENCH_BIN") {
        return PathBuf::from(p);
    }
    let musl = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/x86_64-unknown-linux-musl/release")
        .join(BIN_NAME);
    if musl.is_file() {
        return musl;
    }
    PathBuf::from(env!("CARGO_BIN_EXE_k8s-nlb-registrator-sidecar"))
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn fail(msg: &str) -> ! {
    println!("lifecycle bench FAILED: {msg}");
    eprintln!("lifecycle bench FAILED: {msg}");
    std::process::exit(1);
}

fn timeval(t: libc::timeval) -> Duration {
    let us = t.tv_sec.saturating_mul(1_000_000).saturating_add(t.tv_usec);
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn fmt(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[derive(Default)]
struct Metrics {
    first_request: Vec<f64>,
    blocked: Vec<f64>,
    term_to_dereg: Vec<f64>,
    term_to_exit: Vec<f64>,
    idle_rss: Vec<f64>,
    hwm_blocked: Vec<f64>,
    rss_anon: Vec<f64>,
    rss_file: Vec<f64>,
    peak_rss: Vec<f64>,
    hwm_exit: Vec<f64>,
    ru_maxrss: Vec<f64>,
    cpu_lifecycle: Vec<f64>,
    threads: Vec<f64>,
    cpu_ticks: Vec<f64>,
    ctxt_switches: Vec<f64>,
    api_calls: Vec<f64>,
}

struct Stats {
    median: f64,
    p95: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn stats(values: &[f64]) -> Option<Stats> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    // Nearest rank.
    let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
    Some(Stats {
        median,
        p95: v[rank - 1],
        min: v[0],
        max: v[n - 1],
        n,
    })
}

struct Row {
    key: &'static str,
    label: String,
    unit: &'static str,
    stats: Option<Stats>,
    note: &'static str,
}

impl Row {
    fn new(
        key: &'static str,
        label: &str,
        unit: &'static str,
        values: &[f64],
        note: &'static str,
    ) -> Row {
        Row {
            key,
            label: label.to_string(),
            unit,
            stats: stats(values),
            note,
        }
    }
}
