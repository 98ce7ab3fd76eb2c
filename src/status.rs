//! The optional status listener: `/healthz`, `/readyz`, `/drain`,
//! `/lb-health` and `/metrics`; and the `-lb-health-addr` listener,
//! `/lb-health` alone.
//!
//! Off unless `-status-addr` (or `-lb-health-addr`) is set.
//!
//! - `GET /healthz`: 200 while the process runs its lifecycle.
//! - `GET /readyz`: 200 only while every target is registered and (with
//!   `-wait-in-service`) healthy; 503 before, and from the moment
//!   deregistration starts. As the sidecar's readinessProbe it holds a
//!   rolling update until the NLB really sends traffic to the new pod.
//! - `GET /drain`: starts deregistration like SIGTERM, but the process
//!   keeps running (and registers again if the app check shows the app
//!   restarted); answers 200 once the targets are out (and drained with
//!   `-wait-drained`), 503 with the reason otherwise. For the app
//!   container's `preStop: httpGet` hook.
//! - `GET /lb-health`: the target group's health check (see
//!   [`crate::lb_health`]): 503 from the first instant of a drain or
//!   signal, else the app check. The `-lb-health-addr` listener serves
//!   it and nothing else (404), so the VPC can reach it without `/drain`.
//! - `GET /metrics`: the [`metrics`](crate::metrics) in Prometheus text
//!   format 0.0.4, rendered when asked (nothing is computed between scrapes).
//!
//! # Bounded by construction
//!
//! The listener is reachable from the pod network, and the sidecar runs
//! under a memory limit of a few MiB: whatever clients do, it must cost a
//! constant amount of memory and threads, and never slow the deregistration.
//! So it is a few fixed threads, all started at startup (no thread is ever
//! started for a connection, so a pids limit cannot hit it later):
//!
//! - one *accept* thread hands each connection to a queue of [`QUEUE`]
//!   places; when the queue is full it answers `503 busy` without reading
//!   and closes at once (non-blocking write of a few bytes into an empty
//!   socket buffer), so excess connections cost nothing and are told why;
//! - [`WORKERS`] *worker* threads read one request head each (at most
//!   [`MAX_HEAD`] bytes, whole head within [`REQUEST_TIMEOUT`] however
//!   slowly it trickles in, so an idle or slowloris connection holds a
//!   worker for 2 s at most, plus 0.2 s after an answer for the client to
//!   close), answer through [`route`], and close: one request per
//!   connection (`Connection: close`), as probes do;
//! - one *drain* thread holds the `/drain` requests waiting for the
//!   lifecycle's answer (at most [`MAX_DRAIN_WAITERS`], 429 beyond), so a
//!   drain in progress never takes a worker away from the probes.
//!
//! The protocol part is pure and unit-tested: [`parse_head`] (bytes to
//! method and path), [`route`] (method, path and state to an answer) and
//! [`render`]. Adding a route is one arm in [`route`].
//!
//! Anyone who can reach the listener can take the pod out of the load
//! balancer: bind it to the pod IP, and see the README for limiting who
//! can reach it.

use crate::lb_health::{self, AppCheck, LbHealth};
use crate::signals::{DrainResult, Event};
use log::{debug, info, warn};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, Sender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Connections served at once (one worker thread each).
pub const WORKERS: usize = 4;
/// Accepted connections waiting for a worker; beyond this they get 503.
pub const QUEUE: usize = 8;
/// Most `/drain` requests waiting at once; more get 429.
pub const MAX_DRAIN_WAITERS: usize = 8;
/// Largest request head (request line and headers) read; larger gets 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time for a whole request head to arrive, from the worker's first read.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Time for an answer to be written.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait, after an answer, for the client to close its side.
const LINGER: Duration = Duration::from_millis(200);
/// Stack of each listener thread: they parse a few KiB and log a line.
const STACK_SIZE: usize = 256 * 1024;

/// Shared state the lifecycle updates and the listener reports.
#[derive(Debug, Default)]
pub struct Status {
    ready: AtomicBool,
    /// Connections accepted whose answer is not written yet.
    answering: AtomicUsize,
    /// The lifecycle's final word, once it has finished.
    outcome: Mutex<Option<DrainResult>>,
    /// A drain request or a signal has come: `/lb-health` fails from then on.
    draining: AtomicBool,
    /// The `/lb-health` app check (none: follow the sidecar alone).
    lb_health: OnceLock<LbHealth>,
    /// The ports this process listens on, and the connections they
    /// accepted: the drain quiet period leaves them out.
    own_ports: Mutex<Vec<u16>>,
    accepted: AtomicU64,
}

impl Status {
    /// A new state: not ready.
    pub fn new() -> Arc<Self> {
        Arc::new(Status::default())
    }

    /// Sets readiness.
    pub fn set_ready(&self, ready: bool) {
        let was = self.ready.swap(ready, Ordering::SeqCst);
        crate::metrics::global().set_ready(ready);
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

    /// Ends a drain by request when the app restarted and the target goes
    /// back in: `/lb-health` follows the app check again.
    pub fn end_drain(&self) {
        if self.draining.swap(false, Ordering::SeqCst) {
            info!("/lb-health: following the app check again");
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

    /// The answer to `GET /lb-health` at `now` (may run the app check).
    pub fn lb_health(&self, now: Instant) -> lb_health::Answer {
        let draining = self.is_draining();
        match self.lb_health.get() {
            Some(h) => h.answer(draining, now),
            None => LbHealth::new(None).answer(draining, now),
        }
    }

    /// Records the lifecycle's final result, before it stops reading
    /// events: from then on every `/drain`, including one whose request
    /// was already on its way to the lifecycle, is answered with it.
    pub fn set_outcome(&self, result: DrainResult) {
        if let Ok(mut o) = self.outcome.lock() {
            *o = Some(result);
        }
    }

    /// The ports of this process's listeners, and how many connections
    /// they have accepted.
    pub fn own_connections(&self) -> (Vec<u16>, u64) {
        let ports = self.own_ports.lock().map(|p| p.clone()).unwrap_or_default();
        (ports, self.accepted.load(Ordering::SeqCst))
    }

    /// The final result, once the lifecycle has finished.
    pub fn outcome(&self) -> Option<DrainResult> {
        self.outcome.lock().ok().and_then(|o| o.clone())
    }

    /// Waits (up to `max`) until every connection accepted has its answer
    /// written (a request still queued or being read included), so the
    /// process does not exit under a `preStop` hook waiting for its
    /// response.
    pub fn flush_drain_responses(&self, max: Duration) {
        let end = Instant::now() + max;
        while self.answering.load(Ordering::SeqCst) > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Counts a request as being answered until dropped.
struct Answering(Arc<Status>);

impl Answering {
    fn new(status: &Arc<Status>) -> Self {
        status.answering.fetch_add(1, Ordering::SeqCst);
        Answering(Arc::clone(status))
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answering.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why the listener could not start.
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

/// Starts the listener on `addr`: binds, then starts every thread it will
/// ever use.
///
/// `events` is where drain requests go; `drain_timeout` bounds how long a
/// `/drain` request waits for its answer.
///
/// # Errors
/// [`StartError::Bind`] when the address cannot be bound,
/// [`StartError::Thread`] when a thread cannot be started (pids limit).
pub fn start(
    addr: &str,
    status: Arc<Status>,
    events: Sender<Event>,
    drain_timeout: Duration,
) -> Result<(), StartError> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| StartError::Bind(format!("cannot listen on -status-addr {addr}: {e}")))?;
    serve(listener, status, events, drain_timeout)
        .map_err(|e| StartError::Thread(format!("cannot start the status listener: {e}")))?;
    info!("status listener on http://{addr} (/healthz, /readyz, /drain, /lb-health, /metrics)");
    Ok(())
}

/// Starts the `-lb-health-addr` listener on `addr`: `GET /lb-health` and
/// nothing else, on fixed threads like the status listener's (no drain
/// thread: it can never drain).
///
/// # Errors
/// [`StartError::Bind`] when the address cannot be bound,
/// [`StartError::Thread`] when a thread cannot be started (pids limit).
pub fn start_lb_health(addr: &str, status: Arc<Status>) -> Result<(), StartError> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| StartError::Bind(format!("cannot listen on -lb-health-addr {addr}: {e}")))?;
    // Never used: the routes of this listener cannot drain.
    let (events, _) = channel();
    serve_with(listener, status, events, Duration::ZERO, true)
        .map_err(|e| StartError::Thread(format!("cannot start the lb-health listener: {e}")))?;
    info!("lb-health listener on http://{addr} (/lb-health only)");
    Ok(())
}

fn thread(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(STACK_SIZE)
        .spawn(f)
        .map(|_| ())
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start thread {name}: {e}")))
}

/// Serves `listener` from fixed threads started here.
///
/// # Errors
/// When a thread cannot be started; threads already started then stay
/// blocked, harmlessly, until the process exits.
pub fn serve(
    listener: TcpListener,
    status: Arc<Status>,
    events: Sender<Event>,
    drain_timeout: Duration,
) -> std::io::Result<()> {
    serve_with(listener, status, events, drain_timeout, false)
}

/// [`serve`]; `lb_only`: `/lb-health` alone, and no drain thread.
fn serve_with(
    listener: TcpListener,
    status: Arc<Status>,
    events: Sender<Event>,
    drain_timeout: Duration,
    lb_only: bool,
) -> std::io::Result<()> {
    if let (Ok(addr), Ok(mut ports)) = (listener.local_addr(), status.own_ports.lock()) {
        ports.push(addr.port());
    }
    let (drain_tx, drain_rx) = channel::<Waiter>();
    let waiting = Arc::new(AtomicUsize::new(0));
    let st = Arc::clone(&status);
    let prefix = if lb_only { "lb-health" } else { "status" };
    if !lb_only {
        thread("status-drain", move || answer_drains(drain_rx, &st))?;
    }

    // Each connection counts as being answered from its accept on: one
    // still queued or being read at exit is waited for too.
    let (queue_tx, queue_rx) = sync_channel::<(TcpStream, Answering)>(QUEUE);
    let queue_rx = Arc::new(Mutex::new(queue_rx));
    for i in 0..WORKERS {
        let ctx = Worker {
            status: Arc::clone(&status),
            events: events.clone(),
            drains: drain_tx.clone(),
            waiting: Arc::clone(&waiting),
            drain_timeout,
            lb_only,
        };
        let queue = Arc::clone(&queue_rx);
        thread(&format!("{prefix}-{i}"), move || loop {
            let next = match queue.lock() {
                Ok(q) => q.recv(),
                Err(_) => return,
            };
            match next {
                Ok((stream, _answering)) => ctx.handle(stream),
                Err(_) => return,
            }
        })?;
    }
    thread(&format!("{prefix}-accept"), move || {
        accept(&listener, &queue_tx, &status)
    })
}

/// Takes connections in; refuses them with 503 when every worker and
/// queue place is taken.
fn accept(
    listener: &TcpListener,
    queue: &std::sync::mpsc::SyncSender<(TcpStream, Answering)>,
    status: &Arc<Status>,
) {
    let mut last_warning: Option<Instant> = None;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                status.accepted.fetch_add(1, Ordering::SeqCst);
                match queue.try_send((stream, Answering::new(status))) {
                    Ok(()) => {}
                    Err(TrySendError::Full((stream, _))) => refuse(stream),
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
            Err(e) => {
                // Out of descriptors or memory: wait rather than spin.
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    warn!("status listener: cannot accept a connection: {e}");
                    last_warning = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Answers 503 without reading and closes; never blocks.
fn refuse(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(true);
    let busy = Response::text(503, "busy");
    let _ = stream.write_all(&render(&busy, false));
    let _ = stream.shutdown(Shutdown::Both);
}

/// A `/drain` request waiting for the lifecycle's answer.
struct Waiter {
    stream: TcpStream,
    answer: Receiver<DrainResult>,
    deadline: Instant,
    _answering: Answering,
    _slot: Slot,
}

/// Holds one of the [`MAX_DRAIN_WAITERS`] places until dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>) -> Option<Slot> {
        if count.fetch_add(1, Ordering::SeqCst) >= MAX_DRAIN_WAITERS {
            count.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot(Arc::clone(count)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The drain thread: answers each waiter when its result comes. The
/// lifecycle answers every waiter at the same moment, and deadlines grow
/// in arrival order, so waiting for them one after the other is exact.
fn answer_drains(waiters: Receiver<Waiter>, status: &Status) {
    for mut w in waiters {
        let left = w.deadline.saturating_duration_since(Instant::now());
        let result = match w.answer.recv_timeout(left) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err("drain did not finish in time".into()),
            // The lifecycle let go of the request without answering it: it
            // has finished, and its outcome is the answer.
            Err(RecvTimeoutError::Disconnected) => final_answer(status),
        };
        write_answer(&mut w.stream, &drain_response(&result), false);
    }
}

/// The answer for a drain request the lifecycle can no longer take.
fn final_answer(status: &Status) -> DrainResult {
    status
        .outcome()
        .unwrap_or_else(|| Err("shutting down before the drain finished".into()))
}

fn drain_response(result: &DrainResult) -> Response {
    match result {
        Ok(msg) => Response::text(200, msg),
        Err(why) => Response::text(503, why),
    }
}

/// What a worker needs.
struct Worker {
    status: Arc<Status>,
    events: Sender<Event>,
    drains: Sender<Waiter>,
    waiting: Arc<AtomicUsize>,
    drain_timeout: Duration,
    /// The `-lb-health-addr` listener: `/lb-health` only.
    lb_only: bool,
}

impl Worker {
    fn handle(&self, mut stream: TcpStream) {
        let req = match read_head(&mut stream, REQUEST_TIMEOUT) {
            Ok(req) => req,
            Err(HeadError::Parse(e)) => {
                debug!("status listener: bad request: {e:?}");
                let _answering = Answering::new(&self.status);
                let resp = match e {
                    ParseError::TooLarge => Response::text(431, "request head too large"),
                    ParseError::Malformed(_) => Response::text(400, "bad request"),
                };
                write_answer(&mut stream, &resp, false);
                return;
            }
            Err(HeadError::Timeout | HeadError::Closed) => return,
        };
        let _answering = Answering::new(&self.status);
        debug!("status request {} {}", req.method, req.path);
        let head_only = req.method == "HEAD";
        let state = RouteState {
            ready: self.status.is_ready(),
            outcome: self.status.outcome(),
            // Only for its path: it may run the app check.
            lb_health: (req.path == "/lb-health").then(|| self.status.lb_health(Instant::now())),
            lb_only: self.lb_only,
        };
        match route(&req.method, &req.path, &state) {
            Reply::Answer(resp) => write_answer(&mut stream, &resp, head_only),
            Reply::Metrics => {
                let resp = Response::metrics(crate::metrics::global().render());
                write_answer(&mut stream, &resp, head_only);
            }
            Reply::Drain => self.drain(stream),
        }
    }

    /// Passes a drain request to the lifecycle and its connection to the
    /// drain thread.
    fn drain(&self, mut stream: TcpStream) {
        info!("received a drain request");
        self.status.begin_drain();
        let Some(slot) = Slot::take(&self.waiting) else {
            let resp = Response::text(429, "too many drain requests waiting");
            write_answer(&mut stream, &resp, false);
            return;
        };
        let (tx, rx) = channel::<DrainResult>();
        if self.events.send(Event::Drain(tx)).is_err() {
            // The lifecycle has finished: its outcome is the answer.
            let resp = drain_response(&final_answer(&self.status));
            write_answer(&mut stream, &resp, false);
            return;
        }
        let waiter = Waiter {
            stream,
            answer: rx,
            deadline: Instant::now() + self.drain_timeout,
            _answering: Answering::new(&self.status),
            _slot: slot,
        };
        if let Err(e) = self.drains.send(waiter) {
            // Only if the drain thread is gone; the drain itself goes on.
            let mut w = e.0;
            let resp = Response::text(503, "drain accepted; its result cannot be reported");
            write_answer(&mut w.stream, &resp, false);
        }
    }
}

/// Writes `resp` and closes the connection gracefully: what the client
/// may still send is read and dropped for a moment, so the close does not
/// turn into a reset that could destroy the answer in flight.
fn write_answer(stream: &mut TcpStream, resp: &Response, head_only: bool) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    if stream.write_all(&render(resp, head_only)).is_err() {
        return;
    }
    let _ = stream.shutdown(Shutdown::Write);
    let end = Instant::now() + LINGER;
    let mut sink = [0u8; 1024];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Why no request came from a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The head did not arrive in time.
    Timeout,
    /// The client closed or reset the connection first.
    Closed,
    /// The head is not a request we can read.
    Parse(ParseError),
}

/// Reads one request head from `stream`, which must arrive whole within
/// `timeout` however slowly it trickles in.
///
/// # Errors
/// [`HeadError`] on a timeout, an early close or a bad head.
pub fn read_head(stream: &mut TcpStream, timeout: Duration) -> Result<Request, HeadError> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Timeout);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| HeadError::Closed)?;
        let room = (MAX_HEAD + 1 - buf.len()).min(chunk.len());
        let n = match stream.read(&mut chunk[..room]) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(HeadError::Timeout)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Err(HeadError::Closed),
        };
        buf.extend_from_slice(&chunk[..n]);
        match parse_head(&buf) {
            Ok(Some(req)) => return Ok(req),
            Ok(None) => {}
            Err(e) => return Err(HeadError::Parse(e)),
        }
    }
}

/// A request's method and path (query string removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// As sent, e.g. `GET`.
    pub method: String,
    /// The path without query, e.g. `/healthz`.
    pub path: String,
}

/// Why a request head cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Longer than [`MAX_HEAD`] without its end.
    TooLarge,
    /// Not an HTTP/1.x request head; the reason.
    Malformed(&'static str),
}

/// Parses a request head from the bytes read so far: `Ok(None)` while it
/// is incomplete. Headers are not needed by any route and are skipped
/// (but must be within [`MAX_HEAD`]); leading empty lines are ignored, as
/// RFC 9112 allows.
///
/// # Errors
/// [`ParseError`] for a head that is too large or malformed.
pub fn parse_head(buf: &[u8]) -> Result<Option<Request>, ParseError> {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let head = &buf[start..];
    // The end of the head: an empty line (CRLF CRLF, or bare LFs).
    let end = head
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| i + 2)
        .into_iter()
        .chain(
            head.windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| i + 4),
        )
        .min();
    let Some(end) = end.filter(|&e| e <= MAX_HEAD) else {
        if buf.len() > MAX_HEAD {
            return Err(ParseError::TooLarge);
        }
        // The request line alone can be judged before the head ends.
        if let Some(eol) = head.iter().position(|&b| b == b'\n') {
            request_line(&head[..eol])?;
        }
        return Ok(None);
    };
    let eol = head[..end]
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(ParseError::Malformed("no request line"))?;
    request_line(&head[..eol]).map(Some)
}

fn request_line(line: &[u8]) -> Result<Request, ParseError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| ParseError::Malformed("not ASCII"))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::Malformed(
            "request line is not METHOD TARGET VERSION",
        ));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ParseError::Malformed("bad method"));
    }
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ParseError::Malformed("bad request target"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(ParseError::Malformed("not HTTP/1.x"));
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
    })
}

/// What [`route`] needs to know.
#[derive(Debug, Clone, Default)]
pub struct RouteState {
    /// Whether the sidecar is ready.
    pub ready: bool,
    /// The lifecycle's final result, once it has finished.
    pub outcome: Option<DrainResult>,
    /// The answer to `/lb-health` (looked up for that path only; 503
    /// when absent).
    pub lb_health: Option<lb_health::Answer>,
    /// The `-lb-health-addr` listener: every path but `/lb-health` is 404.
    pub lb_only: bool,
}

/// An answer: status code, body, its type, and `Allow` for 405.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub code: u16,
    /// Body (a newline is added when rendered, unless it ends with one).
    pub body: String,
    /// The `Content-Type` header.
    pub content_type: &'static str,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

const TEXT: &str = "text/plain; charset=utf-8";

impl Response {
    /// A plain-text answer.
    pub fn text(code: u16, body: &str) -> Self {
        Response {
            code,
            body: body.to_owned(),
            content_type: TEXT,
            allow: None,
        }
    }

    /// The metrics page: 200 with the text exposition format.
    pub fn metrics(body: String) -> Self {
        Response {
            code: 200,
            body,
            content_type: crate::metrics::CONTENT_TYPE,
            allow: None,
        }
    }

    fn not_allowed(body: &str, allow: &'static str) -> Self {
        Response {
            allow: Some(allow),
            ..Response::text(405, body)
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answer at once.
    Answer(Response),
    /// Start a drain (or join the one in progress) and answer with its
    /// result.
    Drain,
    /// Answer with the metrics, rendered now.
    Metrics,
}

/// The routes: method and path (no query) to a reply.
pub fn route(method: &str, path: &str, state: &RouteState) -> Reply {
    use Reply::Answer;
    if method != "GET" && method != "HEAD" {
        return Answer(Response::not_allowed("method not allowed", "GET, HEAD"));
    }
    if state.lb_only && path != "/lb-health" {
        return Answer(Response::text(404, "not found"));
    }
    match path {
        "/lb-health" => Answer(match &state.lb_health {
            Some(a) => Response::text(a.code, &a.body),
            None => Response::text(503, "unknown"),
        }),
        "/healthz" => Answer(Response::text(200, "ok")),
        "/readyz" if state.ready => Answer(Response::text(200, "ready")),
        "/readyz" => Answer(Response::text(503, "not ready")),
        // Only GET starts a drain: a HEAD probe or `curl -I` must not.
        "/drain" if method != "GET" => Answer(Response::not_allowed("use GET to drain", "GET")),
        "/drain" => match &state.outcome {
            Some(result) => Answer(drain_response(result)),
            None => Reply::Drain,
        },
        "/metrics" => Reply::Metrics,
        _ => Answer(Response::text(404, "not found")),
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// The bytes of an answer (headers only for HEAD). The connection is
/// always closed after it.
pub fn render(resp: &Response, head_only: bool) -> Vec<u8> {
    let body = if resp.body.ends_with('\n') {
        resp.body.clone()
    } else {
        format!("{}\n", resp.body)
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        resp.code,
        reason(resp.code),
        resp.content_type,
        body.len()
    );
    if let Some(allow) = resp.allow {
        out.push_str(&format!("Allow: {allow}\r\n"));
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&body);
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests;
