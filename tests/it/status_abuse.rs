//! The status listener under abuse: thousands of idle connections must not
//! grow the process past the 16 Mi memory limit of our examples, nor start a
//! thread each, nor delay the deregistration.
//!
//! What the listener guarantees (docs/operations.md, "Status listener"): memory and
//! threads stay constant whatever the number of connections; a connection
//! that has not sent its whole request within 2 s is closed; connections
//! beyond the few it serves at once are answered 503 and closed at once;
//! `/healthz` answers again at the latest a few seconds after the abusive
//! connections stop coming, even while their sockets stay open; a signal
//! deregisters as promptly as without them.

use crate::common::BIN;
use fake_aws::process::{base_env, free_port, secs, Sidecar};
use fake_aws::{http_request, FakeAws};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const IP: &str = "10.0.0.7";
const CONNECTIONS: usize = 2_000;
/// The descriptor limit the test asks for: the connections and a margin.
const NOFILE_WANTED: u64 = 4_096;
/// The smallest memory limit in examples/*.yaml.
const LIMIT_KIB: u64 = 16 * 1024;

/// A field of /proc/PID/status, as its first number (VmRSS is in kB).
fn proc_status(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Raises this process's open-file limit to its hard limit, so it can hold
/// the connections (each is one descriptor here).
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read a valid, owned struct.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            // Root may raise the hard limit too; anyone the soft one.
            let want = lim.rlim_max.max(NOFILE_WANTED);
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: want,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

fn healthz(port: u16) -> u16 {
    http_request::<&str, &str>(port, "GET", "/healthz", &[], b"")
        .map(|r| r.status)
        .unwrap_or(0)
}

#[test]
fn two_thousand_idle_connections_cost_no_memory_and_do_not_delay_deregistration() {
    let nofile = raise_nofile();
    // A few hundred descriptors for the test harness itself.
    let n = CONNECTIONS.min(usize::try_from(nofile).unwrap_or(0).saturating_sub(300));
    assert_eq!(
        n, CONNECTIONS,
        "RLIMIT_NOFILE {nofile} is too low for {CONNECTIONS} connections: \
         run as root or raise it first (ulimit -n {NOFILE_WANTED})"
    );

    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let port = free_port();
    let status_addr = format!("127.0.0.1:{port}");
    let mut s = Sidecar::spawn(
        BIN,
        &[
            "-target-group-name",
            "tg",
            "-target-id",
            IP,
            "-health-poll-interval",
            "50ms",
            "-status-addr",
            &status_addr,
        ],
        &base_env(&fake.url()),
    );
    let pid = s.pid();
    let end = Instant::now() + secs(10);
    while http_request::<&str, &str>(port, "GET", "/readyz", &[], b"")
        .map(|r| r.status)
        .unwrap_or(0)
        != 200
    {
        assert!(Instant::now() < end, "never ready:\n{}", s.output());
        std::thread::sleep(Duration::from_millis(20));
    }
    let rss_before = proc_status(pid, "VmRSS");

    // Idle connections: connected, nothing sent, kept open by this process.
    let addr: SocketAddr = status_addr.parse().unwrap();
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect_timeout(&addr, secs(3)) {
            Ok(c) => idle.push(c),
            Err(e) => panic!("connection {} failed: {e}", idle.len()),
        }
    }
    // Let the listener take them all in, then look at the process.
    std::thread::sleep(Duration::from_millis(500));
    let mut rss_max = 0;
    let mut threads_max = 0;
    for _ in 0..5 {
        rss_max = rss_max.max(proc_status(pid, "VmRSS"));
        threads_max = threads_max.max(proc_status(pid, "Threads"));
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "{} idle connections: VmRSS {rss_before} kB before, at most {rss_max} kB with them; \
         at most {threads_max} threads",
        idle.len()
    );
    assert!(
        rss_max < LIMIT_KIB,
        "VmRSS {rss_max} kB is not under 16 MiB"
    );
    assert!(threads_max <= 12, "{threads_max} threads");

    // The idle sockets stay open on this side; the listener has closed or
    // timed them out, and answers again.
    let end = Instant::now() + secs(15);
    while healthz(port) != 200 {
        assert!(
            Instant::now() < end,
            "/healthz did not answer again:\n{}",
            s.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A fresh wave of idle connections right before the signal: the
    // deregistration does not wait for them.
    for _ in 0..n / 4 {
        if let Ok(c) = TcpStream::connect_timeout(&addr, secs(3)) {
            idle.push(c);
        }
    }
    let signalled = Instant::now();
    s.term();
    assert!(fake.wait_for("DeregisterTargets", secs(5)));
    let to_wire = signalled.elapsed();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
    let to_exit = signalled.elapsed();
    eprintln!("SIGTERM to DeregisterTargets {to_wire:?}, to exit {to_exit:?}");
    assert!(to_wire < secs(1), "{to_wire:?}");
    assert!(to_exit < secs(5), "{to_exit:?}");
    assert!(fake.registered(&arn).is_empty());
    drop(idle);
}
