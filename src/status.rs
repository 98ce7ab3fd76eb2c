//! The status listener (`-status-addr`: `/healthz`, `/readyz`, `/drain`,
//! `/lb-health`, `/metrics`) and the `-lb-health-addr` listener (`/lb-health`
//! alone, so the VPC can reach it without reaching `/drain`). Fixed threads
//! and a bounded queue: constant memory whatever clients do. HTTP/1.x: one
//! request head (headers skipped), one answer, `Connection: close`.

use crate::signals::{DrainResult, Event};
use log::{debug, info, warn};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{channel, sync_channel, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Workers that serve the probes whatever the drains do.
const WORKERS: usize = 4;
/// Accepted connections waiting for a worker; beyond this they get 503.
const QUEUE: usize = 8;
/// `/drain` requests waiting at once, each on a worker of its own; more get 429.
const MAX_DRAIN_WAITERS: usize = 4;
/// Time for a whole request head to arrive (however slowly it trickles in),
/// and for an answer to be written.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head (request line and headers); larger gets 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// How long, after an answer, what the client still sends is read (each read at most as long).
const LINGER: Duration = Duration::from_millis(200);
/// The text exposition format of `/metrics`.
const METRICS: &str = "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n";
const TEXT: &str = "Content-Type: text/plain; charset=utf-8\r\n";
/// How long `/lb-health` reuses an app check's result.
const CHECK_CACHE: Duration = Duration::from_secs(1);

/// An app check: `Ok` when the app is up, else why not; it bounds its own time.
pub type AppCheck = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Shared state the lifecycle updates and the listeners report.
#[derive(Default)]
pub struct Status {
    ready: AtomicBool,
    draining: AtomicBool,
    outcome: OnceLock<DrainResult>,
    app_check: OnceLock<AppCheck>,
    last_check: Mutex<Option<(Instant, bool)>>, // when it last ran, and whether the app was up
    answering: AtomicUsize,                     // connections accepted and not answered yet
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

    /// Sets the app check of `/lb-health` (without one it follows the
    /// sidecar alone); only the first call counts.
    pub fn set_app_check(&self, check: AppCheck) {
        let _ = self.app_check.set(check);
    }

    /// `/lb-health`'s code and body at `now`: 503 from the first instant of a
    /// drain (an NLB stops new connections to a failing target sooner than to
    /// a deregistered one), else the app check's result. One request at a
    /// time runs the check; the others wait for it.
    pub fn lb_health(&self, now: Instant) -> (u16, &'static str) {
        let check = match self.app_check.get() {
            _ if self.draining.load(SeqCst) => return (503, "draining"),
            None => return (200, "ok"),
            Some(check) => check,
        };
        let mut last = self
            .last_check
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let up = match *last {
            Some((at, up)) if now.saturating_duration_since(at) < CHECK_CACHE => up,
            was => {
                let r = check();
                // Logged on a change only: checks come every few seconds.
                match (&r, was.map(|(_, up)| up)) {
                    (Err(why), None | Some(true)) => warn!("/lb-health: the app is not up: {why}"),
                    (Ok(()), Some(false)) => info!("/lb-health: the app is up again"),
                    _ => {}
                }
                *last = Some((now, r.is_ok()));
                r.is_ok()
            }
        };
        // The reason stays in the log: this answer may reach the whole VPC.
        match up {
            true => (200, "ok"),
            false => (503, "app not up"),
        }
    }

    /// Records the lifecycle's final result (only the first call counts),
    /// which answers every later `/drain` (also one on its way to the lifecycle).
    pub fn set_outcome(&self, result: DrainResult) {
        let _ = self.outcome.set(result);
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

/// The answer (its bytes) to `method` on `path`, or `None` to drain and answer with
/// the result. `lb_only`: the `-lb-health-addr` listener, where other paths are 404.
pub fn route(method: &str, path: &str, status: &Status, lb_only: bool) -> Option<Vec<u8>> {
    let head_only = method == "HEAD";
    let answer = |code, headers: &str, body: &str| Some(render(code, headers, body, head_only));
    let text = |code, body| answer(code, TEXT, body);
    let not_allowed = |allow, body| answer(405, &format!("{TEXT}Allow: {allow}\r\n"), body);
    if method != "GET" && !head_only {
        return not_allowed("GET, HEAD", "method not allowed");
    }
    match path {
        path if lb_only && path != "/lb-health" => text(404, "not found"),
        "/lb-health" => {
            let (code, body) = status.lb_health(Instant::now());
            text(code, body)
        }
        "/healthz" => text(200, "ok"),
        "/readyz" if status.ready.load(SeqCst) => text(200, "ready"),
        "/readyz" => text(503, "not ready"),
        // Only GET drains: a HEAD probe or `curl -I` must not.
        "/drain" if head_only => not_allowed("GET", "use GET to drain"),
        "/drain" => status.outcome.get().map(drain_answer),
        "/metrics" => answer(200, METRICS, &crate::metrics::global().render()),
        _ => text(404, "not found"),
    }
}

fn drain_answer(result: &DrainResult) -> Vec<u8> {
    let (Ok(text) | Err(text)) = result;
    render(if result.is_ok() { 200 } else { 503 }, TEXT, text, false)
}

/// Serves `listener` from fixed threads: one accepts, the workers answer.
/// With `drains` (where `/drain` requests go, how long their answers may
/// wait) it is the status listener, else the `-lb-health-addr` one.
/// Threads started before one fails stay blocked, harmlessly.
///
/// # Errors
/// The name of a thread that cannot start, and why.
pub fn start(
    listener: TcpListener,
    status: Arc<Status>,
    drains: Option<(Sender<Event>, Duration)>,
) -> Result<(), String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if let Ok(mut ports) = status.own_ports.lock() {
        ports.push(addr.port());
    }
    let (name, workers) = match drains {
        Some(_) => ("status", WORKERS + MAX_DRAIN_WAITERS),
        None => ("lb-health", WORKERS),
    };
    let (queue, conns) = sync_channel::<TcpStream>(QUEUE);
    let conns = Arc::new(Mutex::new(conns));
    for i in 0..workers {
        let (conns, status, drains) = (conns.clone(), status.clone(), drains.clone());
        // The queue's lock is held while waiting only, not while answering.
        let next = move || conns.lock().ok()?.recv().ok();
        spawn(format!("{name}-{i}"), move || {
            while let Some(stream) = next() {
                handle(stream, &status, drains.as_ref());
                status.answering.fetch_sub(1, SeqCst);
            }
        })?;
    }
    let run = move || accept(&listener, &queue, &status);
    spawn(format!("{name}-accept"), run)?;
    info!("{name} listener on http://{addr}");
    Ok(())
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    // They parse a few KiB and log a line.
    let thread = std::thread::Builder::new().name(name.clone());
    let spawned = thread.stack_size(256 * 1024).spawn(f).map(drop);
    spawned.map_err(|e| format!("cannot start thread {name}: {e}"))
}

/// Takes connections in; answers `503 busy` at once (unread, without
/// blocking) when the queue is full. A connection counts in
/// `Status::answering` from here until answered, so the exit waits for it.
fn accept(listener: &TcpListener, queue: &SyncSender<TcpStream>, status: &Status) {
    let mut warned: Option<Instant> = None;
    for stream in listener.incoming() {
        // Out of descriptors or memory: wait rather than spin, and warn at
        // most every 10 s rather than fill the log.
        let Ok(stream) = stream.inspect_err(|e| {
            if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                warn!("status listener: cannot accept a connection: {e}");
                warned = Some(Instant::now());
            }
        }) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        status.accepted.fetch_add(1, SeqCst);
        status.answering.fetch_add(1, SeqCst);
        if let Err(TrySendError::Full(s) | TrySendError::Disconnected(s)) = queue.try_send(stream) {
            status.answering.fetch_sub(1, SeqCst);
            let _ = s.set_nonblocking(true);
            let _ = (&s).write_all(&render(503, TEXT, "busy", false));
        }
    }
}

fn handle(mut stream: TcpStream, status: &Status, drains: Option<&(Sender<Event>, Duration)>) {
    let answer = match read_head(&mut stream, TIMEOUT) {
        Ok(None) => None,
        Err(refusal) => Some(refusal),
        Ok(Some((method, path))) => {
            debug!("status request {method} {path}");
            // Only the status listener's route leaves a request (`/drain`) unanswered.
            let drained = || drains.map(|(events, timeout)| drain(status, events, *timeout));
            route(&method, &path, status, drains.is_none()).or_else(drained)
        }
    };
    if let Some(answer) = answer {
        write_and_close(&mut stream, &answer);
    }
}

/// Passes a `/drain` to the lifecycle; its result is the answer.
fn drain(status: &Status, events: &Sender<Event>, timeout: Duration) -> Vec<u8> {
    info!("received a drain request");
    status.begin_drain();
    let waiters = &status.drain_waiters;
    let wait = |n| (n < MAX_DRAIN_WAITERS).then_some(n + 1);
    if waiters.fetch_update(SeqCst, SeqCst, wait).is_err() {
        return render(429, TEXT, "too many drain requests waiting", false);
    }
    let (tx, answer) = channel();
    let _ = events.send(Event::Drain(tx));
    let exiting: DrainResult = Err("shutting down before the drain finished".into());
    let result = match answer.recv_timeout(timeout) {
        Ok(r) => r,
        Err(RecvTimeoutError::Timeout) => Err("drain did not finish in time".into()),
        // Dropped unanswered (or never taken): the lifecycle has finished,
        // and its outcome is the answer.
        Err(RecvTimeoutError::Disconnected) => status.outcome.get().unwrap_or(&exiting).clone(),
    };
    waiters.fetch_sub(1, SeqCst);
    drain_answer(&result)
}

/// Reads one request head, which must arrive whole within `timeout`;
/// `Ok(None)` when it does not, or when the client closes first.
fn read_head(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<(String, String)>, Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; MAX_HEAD + 1];
    let mut len = 0;
    // parse_head decides before the buffer is full: it holds one byte too many.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Ok(None);
        }
        match stream.read(&mut buf[len..]) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => len += n,
        }
        if let Some(req) = parse_head(&buf[..len])? {
            return Ok(Some(req));
        }
    }
}

/// Parses a request head from the bytes read so far into its method and path
/// (without query or fragment): `Ok(None)` while it is incomplete. Leading
/// empty lines are ignored (RFC 9112).
///
/// # Errors
/// The answer that refuses a head too large (431) or malformed (400).
pub fn parse_head(buf: &[u8]) -> Result<Option<(String, String)>, Vec<u8>> {
    let head = &buf[..buf.len().min(MAX_HEAD)];
    let start = head.iter().position(|&b| b != b'\r' && b != b'\n');
    let head = &head[start.unwrap_or(head.len())..];
    // The request line is judged as soon as it ends; the head at an empty line.
    if let Some(eol) = head.iter().position(|&b| b == b'\n') {
        let bad = || render(400, TEXT, "bad request", false);
        let req = request_line(&head[..eol]).ok_or_else(bad)?;
        let rest = &head[eol..];
        if rest.windows(2).any(|w| w == b"\n\n") || rest.windows(3).any(|w| w == b"\n\r\n") {
            return Ok(Some(req));
        }
    }
    if buf.len() > MAX_HEAD {
        return Err(render(431, TEXT, "request head too large", false));
    }
    Ok(None)
}

fn request_line(line: &[u8]) -> Option<(String, String)> {
    let line = std::str::from_utf8(line.strip_suffix(b"\r").unwrap_or(line)).ok()?;
    let [method, target, version] = line.split(' ').collect::<Vec<_>>()[..] else {
        return None;
    };
    let ok = !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && target.starts_with('/')
        && target.bytes().all(|b| b.is_ascii_graphic())
        && (version == "HTTP/1.1" || version == "HTTP/1.0");
    let path = target.split(['?', '#']).next()?;
    ok.then(|| (method.to_owned(), path.to_owned()))
}

/// The bytes of an answer: `headers` are whole lines; the body is sent
/// ending with a newline, and not at all for HEAD.
fn render(code: u16, headers: &str, body: &str, head_only: bool) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let body = format!("{}\n", body.strip_suffix('\n').unwrap_or(body));
    let len = body.len();
    let body = if head_only { "" } else { &body };
    let head = format!("HTTP/1.1 {code} {reason}\r\n{headers}Content-Length: {len}\r\n");
    format!("{head}Connection: close\r\n\r\n{body}").into_bytes()
}

/// Writes `answer` and closes gracefully: what the client still sends is read
/// and dropped for a moment, so no reset destroys the answer in flight.
fn write_and_close(s: &mut TcpStream, answer: &[u8]) {
    let _ = s.set_write_timeout(Some(TIMEOUT));
    if s.write_all(answer).is_err() || s.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let end = Instant::now() + LINGER;
    let mut sink = [0u8; 1024];
    let _ = s.set_read_timeout(Some(LINGER));
    while Instant::now() < end && s.read(&mut sink).is_ok_and(|n| n > 0) {}
}

#[cfg(test)]
mod tests;
