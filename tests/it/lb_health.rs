//! `GET /lb-health` over real HTTP against the real binary: it fails from
//! the first instant of a signal, before DeregisterTargets is sent, and it
//! follows the app check (`-wait-for-tcp`) while no drain has begun.

use crate::common::BIN;
use fake_aws::process::{base_env, free_port, get, secs, wait_status, Sidecar};
use fake_aws::{FakeAws, Fault};
use std::net::TcpListener;

const IP: &str = "10.0.0.8";

fn spawn(fake: &FakeAws, lb_port: u16, extra: &[&str]) -> Sidecar {
    let addr = format!("127.0.0.1:{lb_port}");
    let mut a = vec![
        "-target-group-name",
        "tg",
        "-target-id",
        IP,
        "-health-poll-interval",
        "50ms",
        "-lb-health-addr",
        &addr,
    ];
    a.extend_from_slice(extra);
    Sidecar::spawn(BIN, &a, &base_env(&fake.url()))
}

#[test]
fn fails_at_the_signal_before_deregister_targets_is_sent() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    // RegisterTargets lands but its answer is held: the main thread is
    // inside that request when SIGTERM comes.
    fake.script("RegisterTargets", vec![Fault::Hold]);
    let lb_port = free_port();
    let mut s = spawn(&fake, lb_port, &[]);
    assert!(fake.wait_held(1, secs(10)), "{}", s.output());
    // No app check: it follows the sidecar alone.
    assert_eq!(get(lb_port, "/lb-health"), (200, "ok\n".into()));
    s.term();
    s.expect_log("/lb-health: failing from now on", secs(5));
    assert_eq!(get(lb_port, "/lb-health"), (503, "draining\n".into()));
    assert_eq!(
        fake.count("DeregisterTargets"),
        0,
        "sent before /lb-health failed"
    );
    fake.release();
    assert_eq!(s.wait_exit(secs(20)), 0, "{}", s.output());
    assert_eq!(fake.count("DeregisterTargets"), 1);
    assert!(fake.registered(&arn).is_empty());
}

#[test]
fn follows_the_app_check_until_the_drain() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let app_addr = app.local_addr().unwrap();
    let (lb_port, status_port) = (free_port(), free_port());
    let status_addr = format!("127.0.0.1:{status_port}");
    let wait_for = app_addr.to_string();
    let mut s = spawn(
        &fake,
        lb_port,
        &["-status-addr", &status_addr, "-wait-for-tcp", &wait_for],
    );
    wait_status(status_port, "/readyz", 200, secs(20));
    assert_eq!(get(lb_port, "/lb-health"), (200, "ok\n".into()));
    assert_eq!(get(status_port, "/lb-health"), (200, "ok\n".into()));
    // The app stops listening: within a second (the cache) the check fails,
    // and the reason stays in the log.
    drop(app);
    wait_status(lb_port, "/lb-health", 503, secs(5));
    assert_eq!(get(lb_port, "/lb-health").1, "app not up\n");
    s.expect_log("/lb-health: the app is not up", secs(5));
    // It comes back.
    let app = TcpListener::bind(app_addr).unwrap();
    wait_status(lb_port, "/lb-health", 200, secs(5));
    // A drain fails it for good, the app up or not.
    assert_eq!(get(status_port, "/drain").0, 200);
    assert_eq!(get(lb_port, "/lb-health"), (503, "draining\n".into()));
    s.term();
    assert_eq!(s.wait_exit(secs(20)), 0, "{}", s.output());
    drop(app);
}
