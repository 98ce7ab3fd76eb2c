//! The optional status listener: `/healthz`, `/readyz`, `/drain` and
//! `/lb-health` (see [`crate::lb_health`]; also alone on `-lb-health-addr`).
//!
//! Off unless `-status-addr` is set. Served by `tiny_http` on one thread
//! (plus one short-lived thread per pending `/drain`, at most
//! [`MAX_DRAIN_WAITERS`]), so probes are answered even while a drain is
//! in progress.
//!
//! - `GET /healthz`: 200 while the process runs its lifecycle.
//! - `GET /readyz`: 200 only while every target is registered and (with
//!   `-wait-in-service`) healthy; 503 before, and from the moment
//!   deregistration starts. As the sidecar's readinessProbe it holds a
//!   rolling update until the NLB really sends traffic to the new pod.
//! - `GET /drain`: starts deregistration like SIGTERM, but the process
//!   keeps running; answers 200 once the targets are out (and drained with
//!   `-wait-drained`), 503 with the reason otherwise. For the app
//!   container's `preStop: httpGet` hook.
//!
//! The listener is reachable from the pod network: anyone who can reach it
//! can take the pod out of the load balancer. Bind it to the pod IP, and
//! see the README for limiting who can reach it.

use crate::lb_health::{self, AppCheck, LbHealth};
use crate::signals::{DrainResult, Event};
use log::{debug, info, warn};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tiny_http::{Method, Response, Server};

/// Most `/drain` requests waiting at once; more get 429.
pub const MAX_DRAIN_WAITERS: usize = 8;

/// Shared state the lifecycle updates and the listener reports.
#[derive(Debug, Default)]
pub struct Status {
    ready: AtomicBool,
    drain_responses: AtomicUsize,
    /// A drain request or a signal has come: `/lb-health` fails from then on.
    draining: AtomicBool,
    /// The `/lb-health` app check (none: follow the sidecar alone).
    lb_health: OnceLock<LbHealth>,
}

impl Status {
    /// A new state: not ready.
    pub fn new() -> Arc<Self> {
        Arc::new(Status::default())
    }

    /// Sets readiness.
    pub fn set_ready(&self, ready: bool) {
        let was = self.ready.swap(ready, Ordering::SeqCst);
        if was != ready {
            info!("readiness: {}", if ready { "ready" } else { "not ready" });
        }
    }

    /// Current readiness.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Marks the first instant of a drain (a signal, a `/drain` request, or
    /// the shutdown itself): `/lb-health` answers 503 from now on.
    pub fn begin_drain(&self) {
        if !self.draining.swap(true, Ordering::SeqCst) {
            info!("/lb-health: failing from now on (drain begun)");
        }
    }

    /// Whether a drain has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Sets the app check of `/lb-health`; only the first call counts.
    pub fn set_app_check(&self, check: Option<AppCheck>) {
        let _ = self.lb_health.set(LbHealth::new(check));
    }

    /// The answer to `GET /lb-health` at `now`.
    pub fn lb_health(&self, now: Instant) -> lb_health::Answer {
        let draining = self.is_draining();
        match self.lb_health.get() {
            Some(h) => h.answer(draining, now),
            None => LbHealth::new(None).answer(draining, now),
        }
    }

    /// Waits (up to `max`) until every `/drain` answer has been written,
    /// so the process does not exit under a hook waiting for its response.
    pub fn flush_drain_responses(&self, max: Duration) {
        let end = Instant::now() + max;
        while self.drain_responses.load(Ordering::SeqCst) > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Starts the listener on `addr`.
///
/// `events` is where drain requests go; `drain_timeout` bounds how long a
/// `/drain` request waits for its answer.
///
/// # Errors
/// A one-line message when the address cannot be bound.
pub fn start(
    addr: &str,
    status: Arc<Status>,
    events: Sender<Event>,
    drain_timeout: Duration,
) -> Result<(), String> {
    let server =
        Server::http(addr).map_err(|e| format!("cannot listen on -status-addr {addr}: {e}"))?;
    info!("status listener on http://{addr} (/healthz, /readyz, /drain)");
    std::thread::Builder::new()
        .name("status".into())
        .spawn(move || serve(server, status, events, drain_timeout))
        .map_err(|e| format!("cannot start the status listener: {e}"))?;
    Ok(())
}

/// Starts the listener of `-lb-health-addr`: `GET /lb-health` and
/// nothing else, so the VPC can reach the health check without reaching
/// `/drain`.
///
/// # Errors
/// A one-line message when the address cannot be bound.
pub fn start_lb_health(addr: &str, status: Arc<Status>) -> Result<(), String> {
    let server =
        Server::http(addr).map_err(|e| format!("cannot listen on -lb-health-addr {addr}: {e}"))?;
    info!("lb-health listener on http://{addr} (/lb-health only)");
    std::thread::Builder::new()
        .name("lb-health".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let path = request.url().split('?').next().unwrap_or_default();
                let answer = match (request.method(), path) {
                    (Method::Get | Method::Head, "/lb-health") => lb_health_response(&status),
                    (Method::Get | Method::Head, _) => text(404, "not found"),
                    _ => text(405, "method not allowed"),
                };
                let _ = request.respond(answer);
            }
        })
        .map_err(|e| format!("cannot start the lb-health listener: {e}"))?;
    Ok(())
}

fn lb_health_response(status: &Status) -> Response<std::io::Cursor<Vec<u8>>> {
    let a = status.lb_health(Instant::now());
    text(a.code, &a.body)
}

fn text(code: u16, body: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(format!("{body}\n")).with_status_code(code)
}

fn serve(server: Server, status: Arc<Status>, events: Sender<Event>, drain_timeout: Duration) {
    let waiters = Arc::new(AtomicUsize::new(0));
    for request in server.incoming_requests() {
        let path = request
            .url()
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        let method = request.method().clone();
        debug!("status request {method} {path}");
        if !matches!(method, Method::Get | Method::Head) {
            let _ = request.respond(text(405, "method not allowed"));
            continue;
        }
        match path.as_str() {
            "/healthz" => {
                let _ = request.respond(text(200, "ok"));
            }
            "/lb-health" => {
                let _ = request.respond(lb_health_response(&status));
            }
            "/readyz" => {
                let _ = request.respond(if status.is_ready() {
                    text(200, "ready")
                } else {
                    text(503, "not ready")
                });
            }
            // Only GET starts a drain: a HEAD probe or `curl -I` must not.
            "/drain" if method != Method::Get => {
                let _ = request.respond(text(405, "use GET to drain"));
            }
            "/drain" => {
                info!("received a drain request");
                status.begin_drain();
                if waiters.fetch_add(1, Ordering::SeqCst) >= MAX_DRAIN_WAITERS {
                    waiters.fetch_sub(1, Ordering::SeqCst);
                    let _ = request.respond(text(429, "too many drain requests waiting"));
                    continue;
                }
                let (tx, rx) = channel::<DrainResult>();
                if events.send(Event::Drain(tx)).is_err() {
                    waiters.fetch_sub(1, Ordering::SeqCst);
                    let _ = request.respond(text(503, "shutting down"));
                    continue;
                }
                status.drain_responses.fetch_add(1, Ordering::SeqCst);
                let waiters_for_thread = Arc::clone(&waiters);
                let status_for_thread = Arc::clone(&status);
                let spawned = std::thread::Builder::new()
                    .name("drain".into())
                    .spawn(move || {
                        let answer = match rx.recv_timeout(drain_timeout) {
                            Ok(Ok(msg)) => text(200, &msg),
                            Ok(Err(why)) => text(503, &why),
                            Err(_) => text(503, "drain did not finish in time"),
                        };
                        let _ = request.respond(answer);
                        waiters_for_thread.fetch_sub(1, Ordering::SeqCst);
                        status_for_thread
                            .drain_responses
                            .fetch_sub(1, Ordering::SeqCst);
                    });
                if let Err(e) = spawned {
                    // The request went with the closure: the client sees the
                    // connection close. The drain itself still happens.
                    warn!("cannot start a drain waiter: {e}");
                    waiters.fetch_sub(1, Ordering::SeqCst);
                    status.drain_responses.fetch_sub(1, Ordering::SeqCst);
                }
            }
            _ => {
                let _ = request.respond(text(404, "not found"));
            }
        }
    }
}
