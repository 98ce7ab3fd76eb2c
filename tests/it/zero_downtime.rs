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
//! README and `benches/results.md`.

use crate::common::BIN;
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

/// The app: greets each connection and holds it until the client closes;
/// drops its listener when `open` turns false.
fn app(listener: TcpListener, open: Arc<AtomicBool>) {
    listener.set_nonblocking(true).unwrap();
    while open.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut s, _)) => {
                std::thread::spawn(move || {
                    let _ = s.set_nonblocking(false);
                    let _ = s.write_all(b"hi\n");
                    let _ = s.set_read_timeout(Some(secs(5)));
                    let mut sink = [0u8; 64];
                    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
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

/// One connection of the data plane: true when the app greeted it.
fn connect(addr: SocketAddr) -> bool {
    let started = Instant::now();
    let Ok(mut s) = TcpStream::connect_timeout(&addr, secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(secs(2)));
    let mut hello = [0u8; 3];
    if s.read_exact(&mut hello).is_err() || &hello != b"hi\n" {
        return false;
    }
    std::thread::sleep(HOLD.saturating_sub(started.elapsed()));
    true
}

/// Starts the sidecar and waits until it is ready; returns it with its
/// status and lb-health ports. A port picked free can be taken by another
/// process's connection before the sidecar binds it: then it tries again.
fn start_sidecar(fake: &FakeAws, app_addr: SocketAddr, quiet: Option<&str>) -> (Sidecar, u16, u16) {
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

/// One rolling update of one pod, with `quiet` as `-drain-quiet-period`;
/// `health_checks` false: the load balancer does not check `/lb-health`
/// (only the lag after DeregisterTargets stops it).
fn rollout(quiet: Option<&str>, health_checks: bool) -> (Figures, String) {
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

    let (mut sidecar, status_port, lb_port) = start_sidecar(&fake, app_addr, quiet);
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
                    if connect(app_addr) {
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

#[test]
fn quiet_period_drops_no_connection_and_without_it_some_are_refused() {
    let (on, log) = rollout(Some("1s"), true);
    report("/lb-health check + -drain-quiet-period 1s", &on);
    for line in log
        .lines()
        .filter(|l| l.contains("quiet period") || l.contains("lb-health"))
    {
        println!("  sidecar: {line}");
    }
    assert_eq!(on.drain_answer.0, 200, "{log}");
    assert!(on.sent >= 20, "{on:?}");
    assert_eq!(on.dropped, 0, "{on:?}\n{log}");
    assert_eq!(on.served, on.sent);
    // /drain held at least the quiet period after the last connection.
    assert!(on.drain_held >= secs(1), "{on:?}");
    assert!(log.contains("drain quiet period reached"), "{log}");
    assert!(log.contains("/lb-health: failing from now on"), "{log}");

    let (off, log) = rollout(None, true);
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
    let (on, log) = rollout(Some("1s"), false);
    report("no /lb-health check, -drain-quiet-period 1s", &on);
    assert_eq!(on.drain_answer.0, 200, "{log}");
    assert_eq!(on.dropped, 0, "{on:?}\n{log}");
    assert_eq!(on.stopped_by, "deregistration lag over");
    // Held past the whole lag.
    assert!(on.drain_held >= LAG, "{on:?}");

    let (off, log) = rollout(None, false);
    report("neither", &off);
    assert_eq!(off.drain_answer.0, 200, "{log}");
    assert!(off.dropped_after_drain > 0, "{off:?}");
}
