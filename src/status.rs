//! The status listener (`-status-addr`: `/healthz`, `/readyz`, `/drain`,
//! `/lb-health`, `/metrics`) and the `-lb-health-addr` listener (`/lb-health`
//! alone, so the VPC can reach it without reaching `/drain`). Fixed threads
//! and a bounded queue: constant memory whatever clients do.

pub mod http;

use crate::lb_health::{AppCheck, LbHealth};
use crate::signals::{DrainResult, Event};
use http::{read_head, write_and_close, ParseError, Request, Response};
use log::{debug, info, warn};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{channel, sync_channel, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Workers that serve the probes whatever the drains do.
const WORKERS: usize = 4;
/// Accepted connections waiting for a worker; beyond this they get 503.
const QUEUE: usize = 8;
/// `/drain` requests waiting at once, each on a worker of its own; more get 429.
const MAX_DRAIN_WAITERS: usize = 4;
/// Time for a whole request head to arrive, however slowly it trickles in.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Shared state the lifecycle updates and the listeners report.
#[derive(Default)]
pub struct Status {
    ready: AtomicBool,
    draining: AtomicBool,
    outcome: Mutex<Option<DrainResult>>,
    lb_health: OnceLock<LbHealth>,
    answering: AtomicUsize, // connections accepted and not answered yet
    drain_waiters: AtomicUsize,
    // For the drain quiet period, which leaves our own connections out.
    own_ports: Mutex<Vec<u16>>,
    accepted: AtomicU64,
}

impl Status {
    /// A new state: not ready.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Sets readiness.
    pub fn set_ready(&self, ready: bool) {
        crate::metrics::global().set_ready(ready);
        if self.ready.swap(ready, SeqCst) != ready {
            info!("readiness: {}", if ready { "ready" } else { "not ready" });
        }
    }

    /// Current readiness.
    pub fn is_ready(&self) -> bool {
        self.ready.load(SeqCst)
    }

    /// Marks the start of a drain: `/lb-health` answers 503 from now on.
    pub fn begin_drain(&self) {
        if !self.draining.swap(true, SeqCst) {
            info!("/lb-health: failing from now on (drain begun)");
        }
    }

    /// Ends a drain (the app restarted): `/lb-health` follows the app check again.
    pub fn end_drain(&self) {
        if self.draining.swap(false, SeqCst) {
            info!("/lb-health: following the app check again");
        }
    }

    /// Whether a drain has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(SeqCst)
    }

    /// Sets the app check of `/lb-health`; only the first call counts.
    pub fn set_app_check(&self, check: Option<AppCheck>) {
        let _ = self.lb_health.set(LbHealth::new(check));
    }

    /// Records the lifecycle's final result, which answers every later
    /// `/drain` (also one already on its way to the lifecycle).
    pub fn set_outcome(&self, result: DrainResult) {
        if let Ok(mut o) = self.outcome.lock() {
            *o = Some(result);
        }
    }

    /// The final result, once the lifecycle has finished.
    pub fn outcome(&self) -> Option<DrainResult> {
        self.outcome.lock().ok().and_then(|o| o.clone())
    }

    /// The listeners' ports, and how many connections they accepted.
    pub fn own_connections(&self) -> (Vec<u16>, u64) {
        let ports = self.own_ports.lock().map(|p| p.clone()).unwrap_or_default();
        (ports, self.accepted.load(SeqCst))
    }

    /// Waits (up to `max`) until every accepted connection is answered, so
    /// the process does not exit under a `preStop` hook waiting for `/drain`.
    pub fn flush_drain_responses(&self, max: Duration) {
        let end = Instant::now() + max;
        while self.answering.load(SeqCst) > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A request's answer, or `None` to drain and answer with the result.
/// `lb_only`: the `-lb-health-addr` listener, where other paths are 404.
pub fn route(req: &Request, status: &Status, lb_only: bool) -> Option<Response> {
    let text = |code, body: &str| Some(Response::text(code, body));
    if req.method != "GET" && req.method != "HEAD" {
        return Some(Response::not_allowed("method not allowed", "GET, HEAD"));
    }
    match req.path.as_str() {
        path if lb_only && path != "/lb-health" => text(404, "not found"),
        "/lb-health" => {
            let h = status.lb_health.get_or_init(|| LbHealth::new(None));
            let (code, body) = h.answer(status.is_draining(), Instant::now());
            text(code, body)
        }
        "/healthz" => text(200, "ok"),
        "/readyz" if status.is_ready() => text(200, "ready"),
        "/readyz" => text(503, "not ready"),
        // Only GET drains: a HEAD probe or `curl -I` must not.
        "/drain" if req.method != "GET" => Some(Response::not_allowed("use GET to drain", "GET")),
        "/drain" => status.outcome().map(|result| drain_response(&result)),
        "/metrics" => Some(Response {
            body: crate::metrics::global().render(),
            content_type: crate::metrics::CONTENT_TYPE,
            ..Response::text(200, "")
        }),
        _ => text(404, "not found"),
    }
}

fn drain_response(result: &DrainResult) -> Response {
    match result {
        Ok(msg) => Response::text(200, msg),
        Err(why) => Response::text(503, why),
    }
}

/// Why a listener could not start.
#[derive(Debug)]
pub enum StartError {
    /// The address could not be bound (a configuration error).
    Bind(String),
    /// A listener thread could not be started (a resource limit).
    Thread(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Bind(m) | StartError::Thread(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StartError {}

/// Starts the status listener on `addr`; `/drain` requests go to `events`
/// and their answers wait at most `drain_timeout`.
pub fn start(
    addr: &str,
    status: Arc<Status>,
    events: Sender<Event>,
    drain_timeout: Duration,
) -> Result<(), StartError> {
    serve(bind(addr, "status")?, status, Some((events, drain_timeout)))?;
    info!("status listener on http://{addr} (/healthz, /readyz, /drain, /lb-health, /metrics)");
    Ok(())
}

/// Starts the `-lb-health-addr` listener on `addr`: `GET /lb-health` only.
pub fn start_lb_health(addr: &str, status: Arc<Status>) -> Result<(), StartError> {
    serve(bind(addr, "lb-health")?, status, None)?;
    info!("lb-health listener on http://{addr} (/lb-health only)");
    Ok(())
}

type Drains = Option<(Sender<Event>, Duration)>;

fn bind(addr: &str, name: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .map_err(|e| StartError::Bind(format!("cannot listen on -{name}-addr {addr}: {e}")))
}

/// Serves `listener` from the accept loop and the workers (more with
/// `drains`). Threads started before one fails stay blocked, harmlessly.
fn serve(listener: TcpListener, status: Arc<Status>, drains: Drains) -> Result<(), StartError> {
    if let (Ok(addr), Ok(mut ports)) = (listener.local_addr(), status.own_ports.lock()) {
        ports.push(addr.port());
    }
    let (name, workers) = match drains {
        Some(_) => ("status", WORKERS + MAX_DRAIN_WAITERS),
        None => ("lb-health", WORKERS),
    };
    let (queue, conns) = sync_channel::<Conn>(QUEUE);
    let conns = Arc::new(Mutex::new(conns));
    for i in 0..workers {
        let (conns, drains) = (Arc::clone(&conns), drains.clone());
        // The queue's lock is held while waiting only, not while answering.
        let next = move || conns.lock().ok()?.recv().ok();
        thread(format!("{name}-{i}"), move || {
            while let Some(conn) = next() {
                handle(conn, drains.as_ref());
            }
        })?;
    }
    thread(format!("{name}-accept"), move || {
        accept(&listener, &queue, &status)
    })
}

fn thread(name: String, f: impl FnOnce() + Send + 'static) -> Result<(), StartError> {
    // They parse a few KiB and log a line.
    let spawned = std::thread::Builder::new()
        .name(name.clone())
        .stack_size(256 * 1024)
        .spawn(f);
    spawned
        .map(drop)
        .map_err(|e| StartError::Thread(format!("cannot start thread {name}: {e}")))
}

/// Counted in `Status::answering` until dropped, so the exit waits for its answer.
struct Conn {
    stream: TcpStream,
    status: Arc<Status>,
}

impl Conn {
    fn answer(mut self, resp: &Response, head_only: bool) {
        write_and_close(&mut self.stream, resp, head_only);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.status.answering.fetch_sub(1, SeqCst);
    }
}

/// Takes connections in; answers `503 busy` at once (unread, without
/// blocking) when the queue is full.
fn accept(listener: &TcpListener, queue: &SyncSender<Conn>, status: &Arc<Status>) {
    let mut warned: Option<Instant> = None;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                status.accepted.fetch_add(1, SeqCst);
                status.answering.fetch_add(1, SeqCst);
                let status = Arc::clone(status);
                if let Err(TrySendError::Full(c) | TrySendError::Disconnected(c)) =
                    queue.try_send(Conn { stream, status })
                {
                    let _ = c.stream.set_nonblocking(true);
                    let _ =
                        (&c.stream).write_all(&http::render(&Response::text(503, "busy"), false));
                }
            }
            Err(e) => {
                // Out of descriptors or memory: wait rather than spin.
                if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    warn!("status listener: cannot accept a connection: {e}");
                    warned = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn handle(mut conn: Conn, drains: Option<&(Sender<Event>, Duration)>) {
    let req = match read_head(&mut conn.stream, REQUEST_TIMEOUT) {
        Ok(Some(req)) => req,
        Ok(None) => return,
        Err(e) => {
            debug!("status listener: bad request: {e:?}");
            let resp = match e {
                ParseError::TooLarge => Response::text(431, "request head too large"),
                ParseError::Malformed(_) => Response::text(400, "bad request"),
            };
            return conn.answer(&resp, false);
        }
    };
    debug!("status request {} {}", req.method, req.path);
    match (route(&req, &conn.status, drains.is_none()), drains) {
        (Some(resp), _) => conn.answer(&resp, req.method == "HEAD"),
        (None, Some((events, timeout))) => drain(conn, events, *timeout),
        (None, None) => {} // never: the lb-health listener has no /drain
    }
}

/// Passes a `/drain` to the lifecycle and answers with its result.
fn drain(conn: Conn, events: &Sender<Event>, timeout: Duration) {
    info!("received a drain request");
    let status = Arc::clone(&conn.status);
    status.begin_drain();
    if status.drain_waiters.fetch_add(1, SeqCst) >= MAX_DRAIN_WAITERS {
        status.drain_waiters.fetch_sub(1, SeqCst);
        return conn.answer(
            &Response::text(429, "too many drain requests waiting"),
            false,
        );
    }
    let (tx, answer) = channel();
    let _ = events.send(Event::Drain(tx));
    let result = match answer.recv_timeout(timeout) {
        Ok(r) => r,
        Err(RecvTimeoutError::Timeout) => Err("drain did not finish in time".into()),
        // Dropped unanswered (or never taken): the lifecycle has finished,
        // and its outcome is the answer.
        Err(RecvTimeoutError::Disconnected) => status
            .outcome()
            .unwrap_or_else(|| Err("shutting down before the drain finished".into())),
    };
    status.drain_waiters.fetch_sub(1, SeqCst);
    conn.answer(&drain_response(&result), false);
}

#[cfg(test)]
mod tests;
