use super::*;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;

/// Readiness and drain state, for the lifecycle's tests.
impl Status {
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(SeqCst)
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(SeqCst)
    }

    pub(crate) fn outcome(&self) -> Option<DrainResult> {
        self.outcome.get().cloned()
    }
}

fn req(method: &str, path: &str) -> (String, String) {
    (method.into(), path.into())
}

#[test]
fn parses_request_lines() {
    let ok = |b: &[u8]| parse_head(b).unwrap().unwrap();
    assert_eq!(
        ok(b"GET /healthz HTTP/1.1\r\nHost: 10.0.0.1:9090\r\nUser-Agent: kube-probe/1.29\r\n\r\n"),
        req("GET", "/healthz")
    );
    assert_eq!(
        ok(b"HEAD /readyz?x=1 HTTP/1.0\r\n\r\n"),
        req("HEAD", "/readyz")
    );
    assert_eq!(ok(b"GET /drain#frag HTTP/1.1\n\n"), req("GET", "/drain"));
    // Leading empty lines are skipped (RFC 9112 section 2.2).
    assert_eq!(ok(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"), req("GET", "/"));
    assert_eq!(
        ok(b"POST /drain HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
        req("POST", "/drain")
    );
}

#[test]
fn incomplete_heads_wait_for_more() {
    let full = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    for i in 0..full.len() {
        assert_eq!(parse_head(&full[..i]), Ok(None), "prefix {i}");
    }
    assert!(parse_head(full).unwrap().is_some());
    assert_eq!(parse_head(b""), Ok(None));
    assert_eq!(parse_head(b"\r\n\r\n"), Ok(None));
}

#[test]
fn garbage_is_malformed_as_soon_as_its_first_line_ends() {
    for bad in [
        &b"hello\r\n"[..],
        b"GET /healthz\r\n\r\n",
        b"GET  /healthz HTTP/1.1\r\n\r\n",
        b"get /healthz HTTP/1.1\r\n\r\n",
        b"GET healthz HTTP/1.1\r\n\r\n",
        b"GET http://x/healthz HTTP/1.1\r\n\r\n",
        b"GET * HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/2.0\r\n\r\n",
        b"GET /healthz HTTP/1.1 extra\r\n\r\n",
        b"GET /he\x00lthz HTTP/1.1\r\n",
        b"GET /h\xc3\xa9 HTTP/1.1\r\n\r\n",
        b"\xff\xfe\xfd\n",
        b"GET /healthz HTTP/1.1\x7f\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
    ] {
        assert!(
            matches!(parse_head(bad), Err(r) if r.starts_with(b"HTTP/1.1 400 ")),
            "{:?} -> {:?}",
            String::from_utf8_lossy(bad),
            parse_head(bad)
        );
    }
}

#[test]
fn oversize_heads_are_refused() {
    let mut big = b"GET /healthz HTTP/1.1\r\n".to_vec();
    while big.len() <= MAX_HEAD {
        big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    assert_eq!(
        parse_head(&big),
        Err(render(431, TEXT, "request head too large", false))
    );
    // A first line that never ends is too large too.
    assert_eq!(
        parse_head(&vec![b'A'; MAX_HEAD + 1]),
        Err(render(431, TEXT, "request head too large", false))
    );
    // Just under the limit is fine.
    let mut fits = b"GET /healthz HTTP/1.1\r\nX-Pad: ".to_vec();
    fits.resize(MAX_HEAD - 4, b'a');
    fits.extend_from_slice(b"\r\n\r\n");
    assert_eq!(parse_head(&fits), Ok(Some(req("GET", "/healthz"))));
}

#[test]
fn random_bytes_never_panic() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // The invariants of fuzz/fuzz_targets/status_request.rs.
    let alphabet = b"GET /HTP1.\r\n: \x00\xff";
    for _ in 0..20_000 {
        let len = usize::try_from(next() % 64).unwrap();
        let mut bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[usize::try_from(next() % 16).unwrap()])
            .collect();
        if next() % 4 == 0 {
            bytes.splice(0..0, b"GET /a HTTP/1.1".iter().copied());
        }
        match parse_head(&bytes) {
            Ok(Some(r)) => {
                assert!(r.1.starts_with('/') && !r.0.is_empty(), "{r:?}");
                let mut more = bytes.clone();
                more.extend_from_slice(b"GET /drain HTTP/1.1\r\n\r\n");
                assert_eq!(parse_head(&more), Ok(Some(r)));
            }
            Ok(None) => assert!(bytes.len() <= MAX_HEAD),
            Err(_) => {}
        }
    }
}

/// The answer to `method path`: (status, body without its newline),
/// `(0, "drain")` for a drain.
fn answer(method: &str, path: &str, status: &Status, lb_only: bool) -> (u16, String) {
    match route(method, path, status, lb_only) {
        Some(r) => parse_answer(&r, true),
        None => (0, "drain".into()),
    }
}

/// The status and body of an answer's bytes (with `trim`, without the body's newline).
fn parse_answer(bytes: &[u8], trim: bool) -> (u16, String) {
    let text = String::from_utf8_lossy(bytes);
    let code = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let body = if trim {
        body.trim_end_matches('\n')
    } else {
        body
    };
    (code, body.to_owned())
}

#[test]
fn lb_health_routes() {
    for lb_only in [false, true] {
        let status = Status::new();
        let get = |method| answer(method, "/lb-health", &status, lb_only);
        assert_eq!(get("GET"), (200, "ok".into()));
        assert_eq!(get("HEAD"), (200, String::new()), "HEAD: no body");
        assert_eq!(get("POST").0, 405);
        status.begin_drain();
        assert_eq!(get("GET"), (503, "draining".into()));
    }
    // The lb-health listener serves nothing else: above all, no drain.
    let status = Status::new();
    status.set_ready(true);
    for path in ["/drain", "/healthz", "/readyz", "/metrics", "/"] {
        let got = answer("GET", path, &status, true);
        assert_eq!(got, (404, "not found".into()), "{path}");
    }
}

#[test]
fn routes() {
    let status = Status::new();
    let get = |method, path| answer(method, path, &status, false);
    assert_eq!(get("GET", "/healthz"), (200, "ok".into()));
    assert_eq!(get("HEAD", "/healthz"), (200, String::new()));
    assert_eq!(get("GET", "/readyz"), (503, "not ready".into()));
    status.set_ready(true);
    assert_eq!(get("GET", "/readyz"), (200, "ready".into()));
    assert_eq!(get("GET", "/drain"), (0, "drain".into()));
    assert_eq!(get("HEAD", "/drain").0, 405);
    assert_eq!(get("POST", "/drain").0, 405);
    assert_eq!(get("DELETE", "/healthz").0, 405);
    assert_eq!(get("GET", "/").0, 404);
    assert_eq!(get("GET", "/healthz/").0, 404);
    let text = |method, path| {
        let answer = route(method, path, &status, false).unwrap();
        String::from_utf8(answer).unwrap()
    };
    let metrics = text("GET", "/metrics");
    assert!(metrics.contains(METRICS));
    assert!(metrics.contains("# TYPE nlb_registrator_target_state gauge\n"));
    let head = text("HEAD", "/metrics");
    assert!(head.contains(METRICS) && head.ends_with("\r\n\r\n"));
    assert_eq!(get("POST", "/metrics").0, 405);
    assert!(text("PUT", "/drain").contains("\r\nAllow: GET, HEAD\r\n"));
    let head = text("HEAD", "/drain");
    assert!(
        head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nAllow: GET\r\n") && head.ends_with("\r\n\r\n"));
    // Once the lifecycle has finished, /drain gets its outcome at once.
    status.set_outcome(Ok("deregistered".into()));
    assert_eq!(get("GET", "/drain"), (200, "deregistered".into()));
    status.set_outcome(Err("failed".into()));
    assert_eq!(
        get("GET", "/drain"),
        (200, "deregistered".into()),
        "the first counts"
    );
    let failed = Status::new();
    failed.set_outcome(Err("failed".into()));
    assert_eq!(
        answer("GET", "/drain", &failed, false),
        (503, "failed".into())
    );
}

#[test]
fn renders_the_metrics_in_the_text_format() {
    let metrics = route("GET", "/metrics", &Status::new(), false).unwrap();
    let text = String::from_utf8(metrics).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert_eq!(
        head,
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close",
            body.len()
        )
    );
    assert!(
        body.starts_with("# HELP ") && body.ends_with("\n"),
        "{body}"
    );
    assert!(!body.ends_with("\n\n"), "{body}");
}

#[test]
fn renders_answers() {
    assert_eq!(
        String::from_utf8(render(200, TEXT, "ok", false)).unwrap(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\
         Connection: close\r\n\r\nok\n"
    );
    let head = String::from_utf8(render(200, TEXT, "ok", true)).unwrap();
    assert!(
        head.ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"),
        "{head}"
    );
    let text = String::from_utf8(render(405, "Allow: GET\r\n", "no", false)).unwrap();
    assert_eq!(
        text,
        "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 3\r\n\
         Connection: close\r\n\r\nno\n"
    );
}

/// A connected pair over 127.0.0.1: (client, server side).
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

#[test]
fn read_head_over_a_socket() {
    let (mut c, mut s) = pair();
    c.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    c.write_all(b"Host: x\r\n\r\n").unwrap();
    assert_eq!(
        read_head(&mut s, Duration::from_secs(5)),
        Ok(Some(req("GET", "/healthz")))
    );

    let (c, mut s) = pair();
    drop(c);
    assert_eq!(read_head(&mut s, Duration::from_secs(5)), Ok(None));

    let (mut c, mut s) = pair();
    let w = std::thread::spawn(move || {
        let _ = c.write_all(&vec![b'A'; MAX_HEAD * 2]);
        c
    });
    assert_eq!(
        read_head(&mut s, Duration::from_secs(5)),
        Err(render(431, TEXT, "request head too large", false))
    );
    drop(s);
    drop(w.join());
}

#[test]
fn idle_and_slowloris_connections_time_out() {
    let (_c, mut s) = pair();
    let start = Instant::now();
    assert_eq!(read_head(&mut s, Duration::from_millis(300)), Ok(None));
    assert!(start.elapsed() < Duration::from_secs(2));

    // One byte every 100 ms never lets a per-read timeout fire: the
    // deadline covers the whole head.
    let (mut c, mut s) = pair();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let w = std::thread::spawn(move || {
        for b in b"GET /healthz HTTP/1.1\r\nX-Slow: ".iter().cycle() {
            if stop2.load(SeqCst) || c.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let start = Instant::now();
    assert_eq!(read_head(&mut s, Duration::from_millis(700)), Ok(None));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "{took:?}"
    );
    stop.store(true, SeqCst);
    drop(s);
    w.join().unwrap();
}

/// A listener on 127.0.0.1 served by [`serve`]; returns its address.
fn listener(status: &Arc<Status>, events: Sender<Event>, drain_timeout: Duration) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    start(l, Arc::clone(status), Some((events, drain_timeout))).unwrap();
    addr
}

/// Sends `path` as GET and reads the whole answer: (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // A refused connection may be closed before the request is written.
    let _ = write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    read_answer(&mut c)
}

fn read_answer(c: &mut TcpStream) -> (u16, String) {
    let mut bytes = Vec::new();
    let _ = c.read_to_end(&mut bytes);
    parse_answer(&bytes, false)
}

#[test]
fn serves_probes() {
    let status = Status::new();
    let (tx, _rx) = channel();
    let addr = listener(&status, tx, Duration::from_secs(5));
    assert_eq!(get(addr, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(addr, "/readyz"), (503, "not ready\n".into()));
    status.set_ready(true);
    assert_eq!(get(addr, "/readyz?verbose"), (200, "ready\n".into()));
    let (code, body) = get(addr, "/metrics");
    assert_eq!(code, 200);
    assert!(
        body.contains("# TYPE nlb_registrator_target_state gauge\n"),
        "{body}"
    );
    assert_eq!(get(addr, "/nothing").0, 404);
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n")
        .unwrap();
    assert_eq!(read_answer(&mut c).0, 400);
}

/// The lifecycle took the /drain request, finished, and dropped the
/// request's sender without answering it (it reached the channel after the
/// lifecycle's last look): the answer is the lifecycle's outcome, not a 503.
#[test]
fn drain_whose_waiter_was_dropped_at_exit_gets_the_outcome() {
    let status = Status::new();
    let (tx, rx) = channel();
    let addr = listener(&status, tx, Duration::from_secs(30));
    let lifecycle = {
        let status = Arc::clone(&status);
        std::thread::spawn(move || {
            let waiter = match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Event::Drain(w)) => w,
                other => panic!("{other:?}"),
            };
            status.set_outcome(Ok("deregistered".into()));
            drop(waiter);
            drop(rx);
        })
    };
    let start = Instant::now();
    assert_eq!(get(addr, "/drain"), (200, "deregistered\n".into()));
    assert!(start.elapsed() < Duration::from_secs(5));
    lifecycle.join().unwrap();
    // A /drain after the lifecycle has stopped reading events gets it too.
    assert_eq!(get(addr, "/drain"), (200, "deregistered\n".into()));
    status.flush_drain_responses(Duration::from_secs(2));
    assert_eq!(status.answering.load(SeqCst), 0);
}

#[test]
fn drain_after_exit_reports_a_failed_outcome_as_503() {
    let status = Status::new();
    let (tx, rx) = channel();
    let addr = listener(&status, tx, Duration::from_secs(30));
    status.set_outcome(Err("deregistration failed; see the sidecar's log".into()));
    drop(rx);
    assert_eq!(
        get(addr, "/drain"),
        (503, "deregistration failed; see the sidecar's log\n".into())
    );
}

#[test]
fn pending_drains_leave_workers_to_the_probes_and_are_capped() {
    let status = Status::new();
    let (tx, rx) = channel();
    let addr = listener(&status, tx, Duration::from_secs(30));
    let mut clients = Vec::new();
    let mut waiters = Vec::new();
    for _ in 0..MAX_DRAIN_WAITERS {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET /drain HTTP/1.1\r\n\r\n").unwrap();
        clients.push(c);
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Event::Drain(w)) => waiters.push(w),
            other => panic!("{other:?}"),
        }
    }
    // Probes still answer, and one more drain is refused.
    assert_eq!(get(addr, "/healthz").0, 200);
    assert_eq!(
        get(addr, "/drain"),
        (429, "too many drain requests waiting\n".into())
    );
    for w in &waiters {
        w.send(Ok("deregistered".into())).unwrap();
    }
    for c in &mut clients {
        assert_eq!(read_answer(c), (200, "deregistered\n".into()));
    }
    status.flush_drain_responses(Duration::from_secs(2));
    assert_eq!(status.answering.load(SeqCst), 0);
}

#[test]
fn drain_that_does_not_finish_in_time_is_503() {
    let status = Status::new();
    let (tx, rx) = channel();
    let addr = listener(&status, tx, Duration::from_millis(300));
    let (code, body) = get(addr, "/drain");
    assert_eq!(
        (code, body.as_str()),
        (503, "drain did not finish in time\n")
    );
    drop(rx);
}

/// Connections beyond the workers and the queue are refused at once; the
/// ones held idle are closed after [`TIMEOUT`], and the listener
/// answers again.
#[test]
fn excess_connections_are_refused_and_idle_ones_time_out() {
    let status = Status::new();
    let (tx, _rx) = channel();
    let addr = listener(&status, tx, Duration::from_secs(5));
    let mut idle = Vec::new();
    for _ in 0..WORKERS + MAX_DRAIN_WAITERS + QUEUE {
        idle.push(TcpStream::connect(addr).unwrap());
        // One at a time, so that the workers take the first ones before
        // the queue fills: a burst fills the queue first.
        std::thread::sleep(Duration::from_millis(50));
    }
    // Refused at once, before it sends anything (a request sent after
    // the close may meet a reset instead of the answer).
    let start = Instant::now();
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(read_answer(&mut c), (503, "busy\n".into()));
    assert!(start.elapsed() < Duration::from_secs(1));
    // Within two rounds of the request timeout every idle one is closed.
    let end = Instant::now() + TIMEOUT * 3;
    while get(addr, "/healthz").0 != 200 {
        assert!(Instant::now() < end, "never answered again");
        std::thread::sleep(Duration::from_millis(100));
    }
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut b = [0u8; 1];
        assert!(
            matches!(c.read(&mut b), Ok(0)),
            "idle connection not closed"
        );
    }
}

/// A connection counts as being answered from its accept on, before a
/// byte of its request has come: the exit waits for it too
/// ([`Status::flush_drain_responses`]).
#[test]
fn a_connection_counts_from_its_accept_until_answered() {
    let status = Status::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, _rx) = std::sync::mpsc::channel();
    start(l, Arc::clone(&status), Some((tx, Duration::from_secs(5)))).unwrap();
    let count = || status.answering.load(SeqCst);
    let until = |want: usize| {
        let end = Instant::now() + Duration::from_secs(5);
        while count() != want && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        count()
    };
    assert_eq!(count(), 0);
    let mut c = TcpStream::connect(addr).unwrap();
    assert_eq!(until(1), 1, "an accepted connection is counted");
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert_eq!(until(0), 0, "answered: no longer counted");
}

fn counting(up: Arc<AtomicBool>, runs: Arc<AtomicUsize>) -> AppCheck {
    Box::new(move || {
        runs.fetch_add(1, SeqCst);
        match up.load(SeqCst) {
            true => Ok(()),
            false => Err("127.0.0.1:8080: connection refused".into()),
        }
    })
}

#[test]
fn lb_health_without_app_check_follows_the_drain() {
    let status = Status::new();
    let now = Instant::now();
    assert_eq!(status.lb_health(now), (200, "ok"));
    status.begin_drain();
    assert_eq!(status.lb_health(now), (503, "draining"));
}

#[test]
fn lb_health_app_check_is_cached_for_at_most_a_second() {
    let (up, runs) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicUsize::new(0)),
    );
    let status = Status::new();
    status.set_app_check(counting(up.clone(), runs.clone()));
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    assert_eq!(status.lb_health(ms(0)).0, 200);
    up.store(false, SeqCst);
    // Cached: still 200, no new run.
    assert_eq!(status.lb_health(ms(999)).0, 200);
    assert_eq!(runs.load(SeqCst), 1);
    // A second later: checked again, the app is down.
    assert_eq!(status.lb_health(ms(1000)), (503, "app not up"));
    assert_eq!(runs.load(SeqCst), 2);
    // A drain answers 503 at once, without running the check.
    up.store(true, SeqCst);
    status.begin_drain();
    assert_eq!(status.lb_health(ms(5000)).0, 503);
    assert_eq!(runs.load(SeqCst), 2);
    status.end_drain();
    assert_eq!(status.lb_health(ms(5000)).0, 200);
}
