//! A fleet of real sidecar processes against one fake with ELBv2's token
//! buckets: the scale-up (all start within a second) and the scale-down
//! (all get SIGTERM at once) of a Deployment whose pods all register in one
//! target group of one account. Used by `tests/it/fleet.rs` (small N) and the
//! fleet bench (`benches/fleet.rs`, N = 100 and 300).
//!
//! Each sidecar gets its own target id (`10.0.x.y`; the fake only stores
//! it) and the fake's static credentials; all share the fake on 127.0.0.1.
//! A pod is ready when it logs [`BLOCKING_LINE`] (it logs it once
//! registered and healthy); it is out when its exit is reaped. The figures
//! come from the fake's record of every request (throttled answers
//! included), `/proc` (peak RSS while blocked) and `wait4` (CPU of the
//! whole life).

use crate::process::{base_env, Sidecar, BLOCKING_LINE};
use crate::{FakeAws, GroupSettings, RateLimits};
use std::path::Path;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct FleetSpec {
    /// Number of sidecars.
    pub pods: usize,
    /// Give the group by ARN (no DescribeTargetGroups) instead of by name.
    pub by_arn: bool,
    /// A target turns healthy this long after its registration.
    pub healthy_after: Duration,
    /// `HealthCheckIntervalSeconds` and `HealthyThresholdCount` the group reports.
    pub health_check: (u32, u32),
    /// The fake's token buckets.
    pub limits: RateLimits,
    /// All start within this window (evenly spread).
    pub start_window: Duration,
    /// Longest wait for all to be ready (the fleet run fails after it).
    pub ready_timeout: Duration,
    /// Grace period after SIGTERM: a pod still running then is killed and
    /// counted as such.
    pub grace: Duration,
    /// Extra arguments for every sidecar.
    pub extra_args: Vec<String>,
}

impl FleetSpec {
    /// `pods` sidecars with the setting: AWS's buckets, healthy
    /// 3 s after registration, a group that says so (one passing check of
    /// a 3 s `HealthCheckIntervalSeconds`), all started within a second, a
    /// 30 s grace period.
    pub fn new(pods: usize) -> FleetSpec {
        FleetSpec {
            pods,
            by_arn: false,
            healthy_after: Duration::from_secs(3),
            health_check: (3, 3),
            limits: RateLimits::ELB,
            start_window: Duration::from_secs(1),
            ready_timeout: Duration::from_secs(120),
            grace: Duration::from_secs(30),
            extra_args: Vec::new(),
        }
    }
}

/// Calls seen by the fake in one phase.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Calls {
    /// All ELBv2 calls, throttled ones included.
    pub total: usize,
    /// Those answered `Throttling`.
    pub throttled: usize,
    /// DescribeTargetGroups, RegisterTargets, DescribeTargetHealth,
    /// DeregisterTargets (throttled included).
    pub by_action: [usize; 4],
}

impl Calls {
    /// Throttled share of all answers (0 when there were none).
    pub fn throttled_share(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.throttled as f64 / self.total as f64
        }
    }
}

/// The figures of one fleet run.
#[derive(Clone, Debug)]
pub struct FleetReport {
    /// What ran.
    pub spec: FleetSpec,
    /// From the first spawn until every pod was ready (`None`: not all were,
    /// within the timeout).
    pub all_ready: Option<Duration>,
    /// Ready times from the first spawn, sorted.
    pub ready_times: Vec<Duration>,
    /// Calls from the first spawn until all were ready (or the timeout).
    pub up: Calls,
    /// From the SIGTERM to all until no target is left in the group.
    pub all_out: Option<Duration>,
    /// From the SIGTERM until the last exit.
    pub last_exit: Option<Duration>,
    /// Calls from the SIGTERM on.
    pub down: Calls,
    /// Targets left in the group at the end.
    pub left: usize,
    /// Exit code of each pod (`None`: killed at the end of the grace period,
    /// or died by a signal).
    pub exits: Vec<Option<i32>>,
    /// Peak RSS of each pod while blocked (VmHWM, KiB).
    pub rss_kib: Vec<u64>,
    /// CPU time (user + system) of each pod's whole life.
    pub cpu: Vec<Duration>,
}

impl FleetReport {
    /// Pods that exited 0 within the grace period.
    pub fn exited_zero(&self) -> usize {
        self.exits.iter().filter(|c| **c == Some(0)).count()
    }

    /// Calls per pod in a phase.
    pub fn per_pod(&self, calls: &Calls) -> f64 {
        calls.total as f64 / self.spec.pods.max(1) as f64
    }

    /// One Markdown table row: pods, mode, all ready, up calls/pod, up
    /// throttled share, all out, down calls/pod, down throttled share,
    /// median/max RSS, mean CPU, left, exit 0.
    pub fn row(&self) -> String {
        let secs = |d: Option<Duration>| {
            d.map_or("not all".to_string(), |d| {
                format!("{:.1} s", d.as_secs_f64())
            })
        };
        let mut rss = self.rss_kib.clone();
        rss.sort_unstable();
        let median = rss.get(rss.len() / 2).copied().unwrap_or(0);
        let max = rss.last().copied().unwrap_or(0);
        let cpu_ms = if self.cpu.is_empty() {
            0.0
        } else {
            self.cpu.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / self.cpu.len() as f64
        };
        format!(
            "| {} | {} | {} | {:.1} | {:.0}% | {} | {:.1} | {:.0}% | {:.1} / {:.1} MiB | {:.0} ms | {} | {}/{} |",
            self.spec.pods,
            if self.spec.by_arn { "ARN" } else { "name" },
            secs(self.all_ready),
            self.per_pod(&self.up),
            self.up.throttled_share() * 100.0,
            secs(self.all_out),
            self.per_pod(&self.down),
            self.down.throttled_share() * 100.0,
            median as f64 / 1024.0,
            max as f64 / 1024.0,
            cpu_ms,
            self.left,
            self.exited_zero(),
            self.spec.pods,
        )
    }

    /// The header of [`FleetReport::row`].
    pub fn header() -> &'static str {
        "| pods | groups by | all ready | calls/pod up | throttled up | all out | calls/pod down | throttled down | RSS median / max | CPU/pod | left | exit 0 |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    }

    /// A few lines with the details (action counts, ready spread).
    pub fn details(&self) -> String {
        let q = |p: f64| {
            let i = ((self.ready_times.len() as f64 - 1.0) * p).round() as usize;
            self.ready_times
                .get(i)
                .map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64()))
        };
        format!(
            "{} pods by {}: ready p10/p50/p90/max {}/{}/{}/{} s; up calls {} (DTG {}, Register {}, DTH {}, Dereg {}), {} throttled; \
             down calls {} (Dereg {}, DTH {}), {} throttled; last exit {:?} after SIGTERM",
            self.spec.pods,
            if self.spec.by_arn { "ARN" } else { "name" },
            q(0.1),
            q(0.5),
            q(0.9),
            q(1.0),
            self.up.total,
            self.up.by_action[0],
            self.up.by_action[1],
            self.up.by_action[2],
            self.up.by_action[3],
            self.up.throttled,
            self.down.total,
            self.down.by_action[3],
            self.down.by_action[2],
            self.down.throttled,
            self.last_exit,
        )
    }
}

/// Runs the fleet of `binary` (the sidecar) as `spec` says.
///
/// # Panics
/// When a sidecar cannot be started.
pub fn run_fleet(binary: &Path, spec: &FleetSpec) -> FleetReport {
    let fake = FakeAws::start();
    fake.set_quiet(true);
    let arn = fake.add_target_group("fleet-tg", 8080);
    fake.set_healthy_after(Some(spec.healthy_after));
    fake.configure_target_group(
        &arn,
        GroupSettings {
            health_check_interval_seconds: spec.health_check.0,
            healthy_threshold: spec.health_check.1,
            ..GroupSettings::default()
        },
    );
    fake.set_rate_limits(Some(spec.limits));
    let env = base_env(&fake.url());
    let group = if spec.by_arn {
        ["-target-group-arn".to_string(), arn.clone()]
    } else {
        ["-target-group-name".to_string(), "fleet-tg".to_string()]
    };

    // Scale-up.
    let t0 = Instant::now();
    let mut pods: Vec<Sidecar> = Vec::with_capacity(spec.pods);
    let gap = spec.start_window / u32::try_from(spec.pods.max(1)).unwrap_or(u32::MAX);
    for i in 0..spec.pods {
        let at = t0 + gap * u32::try_from(i).unwrap_or(u32::MAX);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let id = format!("10.0.{}.{}", i / 250, i % 250 + 1);
        let mut args: Vec<String> = group.to_vec();
        args.extend(["-target-id".to_string(), id]);
        args.extend(spec.extra_args.iter().cloned());
        pods.push(Sidecar::spawn(binary, &args, &env));
    }
    let ready_deadline = t0 + spec.ready_timeout;
    let mut ready_times = Vec::new();
    for pod in &pods {
        let left = ready_deadline.saturating_duration_since(Instant::now());
        if let Some(at) = pod.wait_log_at(BLOCKING_LINE, left) {
            ready_times.push(at.saturating_duration_since(t0));
        }
    }
    ready_times.sort_unstable();
    let all_ready = (ready_times.len() == spec.pods)
        .then(|| ready_times.last().copied())
        .flatten();
    let up_end = Instant::now().min(t0 + all_ready.unwrap_or(spec.ready_timeout));

    // Peak RSS while blocked, then the scale-down.
    let rss_kib: Vec<u64> = pods.iter().filter_map(|p| vm_hwm_kib(p.pid())).collect();
    let down_start = Instant::now();
    for pod in &pods {
        pod.term();
    }
    let (exits, cpu, last_exit) = reap_all(&mut pods, down_start + spec.grace);
    let all_out = wait_empty(&fake, &arn, down_start, Duration::from_secs(2));
    let left = fake.registered(&arn).len();

    let requests = fake.requests();
    let count = |from: Instant, to: Option<Instant>| {
        let mut c = Calls::default();
        for r in requests
            .iter()
            .filter(|r| r.at >= from && to.is_none_or(|to| r.at < to))
        {
            let Some(i) = [
                "DescribeTargetGroups",
                "RegisterTargets",
                "DescribeTargetHealth",
                "DeregisterTargets",
            ]
            .iter()
            .position(|a| *a == r.action) else {
                continue;
            };
            c.total += 1;
            c.by_action[i] += 1;
            if r.error_code.as_deref() == Some("Throttling") {
                c.throttled += 1;
            }
        }
        c
    };
    FleetReport {
        spec: spec.clone(),
        all_ready,
        ready_times,
        up: count(t0, Some(up_end.max(t0))),
        all_out,
        last_exit,
        down: count(down_start, None),
        left,
        exits,
        rss_kib,
        cpu,
    }
}

/// Reaps every pod by `deadline` (killing the rest then): exit codes, CPU
/// times and the time of the last exit after the SIGTERM.
fn reap_all(
    pods: &mut [Sidecar],
    deadline: Instant,
) -> (Vec<Option<i32>>, Vec<Duration>, Option<Duration>) {
    let mut exits: Vec<Option<Option<i32>>> = vec![None; pods.len()];
    let mut cpu = vec![Duration::ZERO; pods.len()];
    let mut last: Option<Instant> = None;
    let term_at = Instant::now();
    while exits.iter().any(Option::is_none) {
        let mut progress = false;
        for (i, pod) in pods.iter_mut().enumerate() {
            if exits[i].is_some() {
                continue;
            }
            if let Some((code, used)) = try_reap(pod.pid()) {
                pod.reaped_elsewhere();
                exits[i] = Some(code);
                cpu[i] = used;
                last = Some(Instant::now());
                progress = true;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        if !progress {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Past the grace period: killed (as the kubelet would), counted as no exit code.
    for (i, pod) in pods.iter_mut().enumerate() {
        if exits[i].is_none() {
            pod.signal(libc::SIGKILL);
            let mut status = 0;
            let _ = wait_blocking(pod.pid(), &mut status);
            pod.reaped_elsewhere();
            exits[i] = Some(None);
        }
    }
    let exits = exits.into_iter().map(Option::flatten).collect();
    (
        exits,
        cpu,
        last.map(|l| l.saturating_duration_since(term_at)),
    )
}

/// Waits until the group is empty (polling the fake's state) or `extra`
/// after the call; the time since `from`.
fn wait_empty(fake: &FakeAws, arn: &str, from: Instant, extra: Duration) -> Option<Duration> {
    let until = Instant::now() + extra;
    loop {
        if fake.registered(arn).is_empty() {
            // The last successful DeregisterTargets is when the group emptied.
            let last = fake
                .requests_for("DeregisterTargets")
                .iter()
                .filter(|r| r.status == Some(200) && r.at >= from)
                .map(|r| r.at)
                .max();
            return Some(last.unwrap_or(from).saturating_duration_since(from));
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// VmHWM of a process, KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Reaps `pid` if it has exited: its exit code (`None` for death by a
/// signal) and CPU time.
fn try_reap(pid: u32) -> Option<(Option<i32>, Duration)> {
    let mut status = 0;
    let mut usage = empty_rusage();
    let pid = libc::pid_t::try_from(pid).ok()?;
    #[allow(unsafe_code)]
    // SAFETY: wait4 on our own child with valid pointers to locals.
    let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
    if r != pid {
        return None;
    }
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Some((code, tv(usage.ru_utime) + tv(usage.ru_stime)))
}

fn wait_blocking(pid: u32, status: &mut i32) -> i32 {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return -1;
    };
    #[allow(unsafe_code)]
    // SAFETY: waitpid on our own child with a valid pointer to a local.
    unsafe {
        libc::waitpid(pid, status, 0)
    }
}

fn empty_rusage() -> libc::rusage {
    #[allow(unsafe_code)]
    // SAFETY: rusage is plain old data; all zeroes is a valid value.
    unsafe {
        std::mem::zeroed()
    }
}
