//! Zero dropped connections in a rolling update, measured against the real
//! binary (issue 12).
//!
//! The test models the load balancer. A *data plane* opens a connection to
//! the app's port (127.0.0.1) every 50 ms, each held about 300 ms, while
//! the target is in service; like a Network Load Balancer it keeps doing so
//! for a lag ([`LAG`]) after DeregisterTargets reaches the fake ELBv2, and
//! stops earlier once its *health checks* of `/lb-health` (every 0.5 s, on
//! `-lb-health-addr`) have failed twice in a row. The *app* is a
//! `TcpListener` thread that greets every connection; its preStop calls
//! `/drain` on the status listener (while the sidecar gets SIGTERM, as a
//! classic sidecar does) and it closes its listener as soon as `/drain`
//! answers. A connection refused (or reset) after that is a dropped one.
//!
//! With `-drain-quiet-period` none may be dropped; without it, the same
//! rollout must drop some, so the test can fail. The figures are printed
//! (`cargo test --test it zero_downtime:: -- --nocapture`) and recorded in the
//! `benches/results.md`.

use crate::common::{in_own_netns, rerun_in_own_netns, BIN};
use fake_aws::process::{base_env, free_port, get, secs, Sidecar};
use fake_aws::FakeAws;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const IP: &str = "10.0.0.7";
/// How long the load balancer keeps opening connections after DeregisterTargets.
const LAG: Duration = Duration::from_secs(3);
/// A new connection this often while in service.
const EVERY: Duration = Duration::from_millis(50);
/// Each connection is held this long.
const HOLD: Duration = Duration::from_millis(300);
/// Health check interval; two failures in a row take the target out.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// What one rollout measured.
#[derive(Debug, Default)]
struct Figures {
    /// Connections the data plane opened (or tried to).
    sent: usize,
    /// Greeted by the app.
    served: usize,
    /// Refused or reset: dropped.
    dropped: usize,
    /// Of those, sent after `/drain` answered.
    dropped_after_drain: usize,
    /// How long `/drain` held the app's preStop.
    drain_held: Duration,
    /// Status and body of the `/drain` answer.
    drain_answer: (u16, String),
    /// From the deregistration to the data plane's last connection.
    last_after_deregistration: Duration,
    /// Why the data plane stopped.
    stopped_by: &'static str,
}

/// The app: greets each connection and holds it until the client closes,
/// or, when the client sends a request (the kubelet's probe), answers and
/// closes first, as an HTTP server without keep-alive does; drops its
/// listener when `open` turns false.
fn app(listener: TcpListener, open: Arc<AtomicBool>) {
    listener.set_nonblocking(true).unwrap();
    while open.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut s, _)) => {
                std::thread::spawn(move || {
                    let _ = s.set_nonblocking(false);
                    let _ = s.write_all(b"hi\n");
                    let _ = s.set_read_timeout(Some(secs(5)));
                    let mut request = [0u8; 64];
                    if matches!(s.read(&mut request), Ok(n) if n > 0) {
                        let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\n");
                    }
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("app accept: {e}"),
        }
    }
    // The listener is dropped here: from now on connections are refused.
}

/// One connection of the data plane, held `hold`: true when the app greeted it.
fn connect(addr: SocketAddr, hold: Duration) -> bool {
    let started = Instant::now();
    let Ok(mut s) = TcpStream::connect_timeout(&addr, secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(secs(2)));
    let mut hello = [0u8; 3];
    if s.read_exact(&mut hello).is_err() || &hello != b"hi\n" {
        return false;
    }
    std::thread::sleep(hold.saturating_sub(started.elapsed()));
    true
}

/// The kubelet's readiness probe: an HTTP request from 127.0.0.2 (the
/// node's IP in this model), answered and closed by the app.
#[allow(unsafe_code)]
fn probe(app: SocketAddr) {
    use std::os::fd::FromRawFd;
    let sockaddr = |ip: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    };
    let (from, to) = (
        sockaddr([127, 0, 0, 2], 0),
        sockaddr([127, 0, 0, 1], app.port()),
    );
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket owned by the TcpStream at once; plain sockaddr_in values.
    let mut s = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let s = TcpStream::from_raw_fd(fd);
        let addr = |a: &libc::sockaddr_in| (a as *const libc::sockaddr_in).cast::<libc::sockaddr>();
        assert_eq!(libc::bind(fd, addr(&from), len), 0, "bind 127.0.0.2");
        if libc::connect(fd, addr(&to), len) != 0 {
            return; // The app is gone: the probe fails, as the kubelet's would.
        }
        s
    };
    let _ = s.set_read_timeout(Some(secs(2)));
    let _ = s.write_all(b"GET /ready HTTP/1.0\r\n\r\n");
    let _ = s.read_to_end(&mut Vec::new());
}

/// What the rollout models besides the data plane.
#[derive(Debug, Clone, Copy, Default)]
struct Model {
    /// The load balancer checks `/lb-health` (else only the lag after
    /// DeregisterTargets stops it).
    health_checks: bool,
    /// The kubelet probes the app every 0.5 s from 127.0.0.2.
    probes: bool,
    /// Each data-plane connection is closed by the client at once (after
    /// the greeting), not held [`HOLD`]: no sample of the TCP tables can
    /// see it.
    short: bool,
    /// More sidecar flags.
    flags: &'static [&'static str],
}

/// The rollouts run one at a time: another's connections would hold this
/// one's drain (the connection counter is the whole namespace's).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Starts the sidecar and waits until it is ready; returns it with its
/// status and lb-health ports. A port picked free can be taken by another
/// process's connection before the sidecar binds it: then it tries again.
fn start_sidecar(
    fake: &FakeAws,
    app_addr: SocketAddr,
    quiet: Option<&str>,
    flags: &[&str],
) -> (Sidecar, u16, u16) {
    for _ in 0..3 {
        let (status_port, lb_port) = (free_port(), free_port());
        let status_addr = format!("127.0.0.1:{status_port}");
        let lb_addr = format!("127.0.0.1:{lb_port}");
        let wait_for = app_addr.to_string();
        let mut args = vec![
            "-target-group-name",
            "tg",
            "-target-id",
            IP,
            "-health-poll-interval",
            "50ms",
            "-status-addr",
            &status_addr,
            "-lb-health-addr",
            &lb_addr,
            "-wait-for-tcp",
            &wait_for,
            "-wait-drained-timeout",
            "20s",
        ];
        if let Some(q) = quiet {
            args.extend_from_slice(&["-drain-quiet-period", q]);
        }
        args.extend_from_slice(flags);
        let mut sidecar = Sidecar::spawn(BIN, &args, &base_env(&fake.url()));
        let end = Instant::now() + secs(20);
        loop {
            if get(status_port, "/readyz").0 == 200 {
                return (sidecar, status_port, lb_port);
            }
            if !sidecar.running() {
                let out = sidecar.output();
                assert!(out.contains("Address already in use"), "exited:\n{out}");
                break;
            }
            assert!(Instant::now() < end, "never ready:\n{}", sidecar.output());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("no free ports for the sidecar in 3 tries");
}

/// One rolling update of one pod, with `quiet` as `-drain-quiet-period`.
fn rollout(quiet: Option<&str>, model: Model) -> (Figures, String) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let health_checks = model.health_checks;
    let hold = if model.short { Duration::ZERO } else { HOLD };
    let fake = FakeAws::start();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app_addr = listener.local_addr().unwrap();
    // The group's port is the app's: the sidecar watches it, found by name.
    let arn = fake.add_target_group("tg", app_addr.port());
    let app_open = Arc::new(AtomicBool::new(true));
    let app_thread = {
        let open = Arc::clone(&app_open);
        std::thread::spawn(move || app(listener, open))
    };

    let (mut sidecar, status_port, lb_port) = start_sidecar(&fake, app_addr, quiet, model.flags);
    assert_eq!(get(lb_port, "/lb-health"), (200, "ok\n".into()));
    // The lb-health listener serves nothing else: the VPC cannot drain.
    assert_eq!(get(lb_port, "/drain").0, 404);
    assert_eq!(get(lb_port, "/healthz").0, 404);

    let stop = AtomicBool::new(false);
    let unhealthy = AtomicBool::new(false);
    let deregistered: Mutex<Option<Instant>> = Mutex::new(None);
    let drain_answered: Mutex<Option<Instant>> = Mutex::new(None);
    let sent = AtomicUsize::new(0);
    let served = AtomicUsize::new(0);
    let dropped = AtomicUsize::new(0);
    let dropped_after_drain = AtomicUsize::new(0);
    let mut figures = Figures::default();
    std::thread::scope(|scope| {
        // The fake's side: when DeregisterTargets arrives.
        scope.spawn(|| {
            if fake.wait_for("DeregisterTargets", secs(30)) {
                *deregistered.lock().unwrap() = Some(Instant::now());
            }
        });
        // Health checks of /lb-health.
        scope.spawn(|| {
            let mut failures = 0;
            while health_checks && !stop.load(Ordering::SeqCst) && !unhealthy.load(Ordering::SeqCst)
            {
                if get(lb_port, "/lb-health").0 == 200 {
                    failures = 0;
                } else {
                    failures += 1;
                    if failures >= 2 {
                        unhealthy.store(true, Ordering::SeqCst);
                    }
                }
                std::thread::sleep(CHECK_EVERY);
            }
        });
        // The kubelet's readiness probe, until the app is gone.
        scope.spawn(|| {
            while model.probes && app_open.load(Ordering::SeqCst) {
                probe(app_addr);
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        // The data plane.
        let plane = scope.spawn(|| {
            let mut last = Instant::now();
            let why = loop {
                if stop.load(Ordering::SeqCst) {
                    break "test end";
                }
                if unhealthy.load(Ordering::SeqCst) {
                    break "health checks failed twice";
                }
                if let Some(at) = *deregistered.lock().unwrap() {
                    if at.elapsed() >= LAG {
                        break "deregistration lag over";
                    }
                }
                sent.fetch_add(1, Ordering::SeqCst);
                last = Instant::now();
                let counters = (&served, &dropped, &dropped_after_drain, &drain_answered);
                scope.spawn(move || {
                    let (served, dropped, after, answered) = counters;
                    let sent_at = Instant::now();
                    if connect(app_addr, hold) {
                        served.fetch_add(1, Ordering::SeqCst);
                    } else {
                        dropped.fetch_add(1, Ordering::SeqCst);
                        if answered.lock().unwrap().is_some_and(|t| t <= sent_at) {
                            after.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
                std::thread::sleep(EVERY);
            };
            (last, why)
        });

        // In service for a while, then the pod is deleted: the app's
        // preStop calls /drain, and the sidecar gets SIGTERM at once.
        std::thread::sleep(Duration::from_millis(1500));
        let drain_started = Instant::now();
        let drain = scope.spawn(|| get(status_port, "/drain"));
        std::thread::sleep(Duration::from_millis(20));
        sidecar.term();
        let answer = drain.join().unwrap();
        *drain_answered.lock().unwrap() = Some(Instant::now());
        figures.drain_held = drain_started.elapsed();
        figures.drain_answer = answer;
        // The app stops listening as soon as its preStop returns.
        app_open.store(false, Ordering::SeqCst);

        // Until the load balancer stops sending (bounded), then the end.
        let end = Instant::now() + LAG + secs(5);
        while !plane.is_finished() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::SeqCst);
        let (last, why) = plane.join().unwrap();
        figures.stopped_by = why;
        if let Some(at) = *deregistered.lock().unwrap() {
            figures.last_after_deregistration = last.saturating_duration_since(at);
        }
    });
    app_thread.join().unwrap();
    assert_eq!(sidecar.wait_exit(secs(20)), 0, "{}", sidecar.output());
    assert!(fake.registered(&arn).is_empty());
    figures.sent = sent.into_inner();
    figures.served = served.into_inner();
    figures.dropped = dropped.into_inner();
    figures.dropped_after_drain = dropped_after_drain.into_inner();
    (figures, sidecar.output())
}

fn report(label: &str, f: &Figures) {
    // For scripts/bench: label, sent, dropped, /drain held (s).
    println!(
        "ZERO_DOWNTIME\t{label}\t{}\t{}\t{:.2}",
        f.sent,
        f.dropped,
        f.drain_held.as_secs_f64()
    );
    println!(
        "zero-downtime {label}: sent {}, served {}, dropped {} ({} after /drain answered); \
         /drain held {:.2}s ({} {}); data plane stopped by: {} ({:.2}s after DeregisterTargets)",
        f.sent,
        f.served,
        f.dropped,
        f.dropped_after_drain,
        f.drain_held.as_secs_f64(),
        f.drain_answer.0,
        f.drain_answer.1.trim(),
        f.stopped_by,
        f.last_after_deregistration.as_secs_f64()
    );
}

/// How many new connections the sidecar counted that no sample of the TCP
/// tables showed (from its summary line).
fn unseen(log: &str) -> u64 {
    let before = log.split(" too short to see").next().unwrap_or("");
    before
        .rsplit('(')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `/drain` answered 200 once quiet. Only connections no sample showed
/// may have held it to the timeout: these models make none (each is seen,
/// or the sidecar's own), but the counter is the whole network
/// namespace's, and here that is the host's, shared with other processes.
fn assert_quiet_or_noise(f: &Figures, log: &str) {
    if f.drain_answer.0 == 200 {
        assert!(log.contains("drain quiet period reached"), "{log}");
    } else {
        assert!(unseen(log) > 0, "{f:?}\n{log}");
    }
}

#[test]
fn quiet_period_drops_no_connection_and_without_it_some_are_refused() {
    let checked = Model {
        health_checks: true,
        ..Model::default()
    };
    let (on, log) = rollout(Some("1s"), checked);
    report("/lb-health check + -drain-quiet-period 1s", &on);
    for line in log
        .lines()
        .filter(|l| l.contains("quiet period") || l.contains("lb-health"))
    {
        println!("  sidecar: {line}");
    }
    assert_quiet_or_noise(&on, &log);
    assert!(on.sent >= 20, "{on:?}");
    assert_eq!(on.dropped, 0, "{on:?}\n{log}");
    assert_eq!(on.served, on.sent);
    // /drain held at least the quiet period after the last connection.
    assert!(on.drain_held >= secs(1), "{on:?}");
    assert!(log.contains("/lb-health: failing from now on"), "{log}");

    let (off, log) = rollout(None, checked);
    report("/lb-health check, no quiet period", &off);
    assert_eq!(off.drain_answer.0, 200, "{log}");
    assert!(
        off.dropped_after_drain > 0,
        "without the quiet period connections must be refused: {off:?}"
    );
}

#[test]
fn quiet_period_alone_covers_the_load_balancers_lag() {
    // No health check on /lb-health: the load balancer sends new
    // connections for the whole lag after DeregisterTargets.
    let (on, log) = rollout(Some("1s"), Model::default());
    report("no /lb-health check, -drain-quiet-period 1s", &on);
    assert_quiet_or_noise(&on, &log);
    assert_eq!(on.dropped, 0, "{on:?}\n{log}");
    assert_eq!(on.stopped_by, "deregistration lag over");
    // Held past the whole lag.
    assert!(on.drain_held >= LAG, "{on:?}");

    let (off, log) = rollout(None, Model::default());
    report("neither", &off);
    assert_eq!(off.drain_answer.0, 200, "{log}");
    assert!(off.dropped_after_drain > 0, "{off:?}");
}

/// The kubelet's readiness probes go on while the pod terminates, each a
/// new connection to the app port that the app closes first (TIME_WAIT):
/// without `-drain-ignore-from` they hold `/drain` to the timeout.
#[test]
fn kubelet_probes_hold_the_drain_unless_their_peer_is_ignored() {
    if rerun_in_own_netns(
        "zero_downtime::kubelet_probes_hold_the_drain_unless_their_peer_is_ignored",
    ) {
        return;
    }
    let ignored = Model {
        health_checks: true,
        probes: true,
        short: false,
        flags: &[
            "-wait-drained-timeout=6s",
            "-drain-ignore-from=127.0.0.2/32",
        ],
    };
    let (on, log) = rollout(Some("1s"), ignored);
    report(
        "/lb-health check, kubelet probes, -drain-ignore-from the node",
        &on,
    );
    assert_eq!(on.dropped, 0, "{on:?}\n{log}");
    if in_own_netns() {
        // Alone in its namespace, only the probes could hold the drain.
        assert_eq!(on.drain_answer.0, 200, "{on:?}\n{log}");
        assert!(log.contains("drain quiet period reached"), "{log}");
    } else {
        assert_quiet_or_noise(&on, &log);
    }
    if on.drain_answer.0 == 200 {
        assert!(on.drain_held < secs(5), "{on:?}");
    }

    let not_ignored = Model {
        flags: &["-wait-drained-timeout=6s"],
        ..ignored
    };
    let (off, log) = rollout(Some("1s"), not_ignored);
    report("/lb-health check, kubelet probes, not ignored", &off);
    assert_eq!(off.dropped, 0, "{off:?}\n{log}");
    assert_eq!(off.drain_answer.0, 503, "{off:?}\n{log}");
    assert!(off.drain_held >= secs(5), "{off:?}");
    assert!(log.contains("drain quiet period NOT reached"), "{log}");
}

/// Connections the client closes first leave no TIME_WAIT: the app's side
/// is gone within a millisecond, so no sample of the tables shows it. The
/// namespace's accepted-connection counter does.
#[test]
fn connections_closed_by_the_client_first_are_counted() {
    if rerun_in_own_netns("zero_downtime::connections_closed_by_the_client_first_are_counted") {
        return;
    }
    let short = Model {
        short: true,
        ..Model::default()
    };
    let (on, log) = rollout(Some("1s"), short);
    report(
        "no /lb-health check, client closes first, -drain-quiet-period 1s",
        &on,
    );
    assert!(on.sent >= 60, "{on:?}");
    assert_eq!(on.dropped, 0, "{on:?}\n{log}");
    assert_eq!(on.stopped_by, "deregistration lag over");
    assert!(unseen(&log) > 0, "{log}");
    if in_own_netns() {
        assert_eq!(on.drain_answer.0, 200, "{on:?}\n{log}");
    }
}
