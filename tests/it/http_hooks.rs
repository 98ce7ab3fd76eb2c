//! HTTP hooks (`-pre-register-http`, `-post-register-http`,
//! `-post-deregister-http`) over real HTTP: a small server on 127.0.0.1
//! records every GET and answers as told per path (a status, or never).

use crate::common::BIN;
use fake_aws::process::{base_env, secs, Sidecar};
use fake_aws::FakeAws;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const IP: &str = "10.0.0.7";

/// What the server does for a path.
#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    /// Never answers (holds the connection until the server is dropped).
    Hang,
}

/// A GET the server received: its request target as sent (an absolute
/// URL when it came through as a proxy) and when.
#[derive(Debug, Clone)]
struct Got {
    target: String,
    at: Instant,
}

struct HookServer {
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
    stop: Arc<AtomicBool>,
}

impl HookServer {
    /// Serves `answers` (path suffix to answer; 404 for others).
    fn start(answers: &[(&str, Answer)]) -> HookServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let answers: Vec<(String, Answer)> =
            answers.iter().map(|(p, a)| (p.to_string(), *a)).collect();
        let (g, s) = (Arc::clone(&got), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (g, s, answers) = (Arc::clone(&g), Arc::clone(&s), answers.clone());
                std::thread::spawn(move || serve(stream, &g, &s, &answers));
            }
        });
        HookServer { port, got, stop }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// `METHOD TARGET` of each request.
    fn targets(&self) -> Vec<String> {
        self.got().into_iter().map(|g| g.target).collect()
    }

    fn at(&self, path: &str) -> Instant {
        self.got()
            .into_iter()
            .find(|g| g.target.ends_with(path))
            .unwrap_or_else(|| panic!("no GET {path}: {:?}", self.targets()))
            .at
    }
}

impl Drop for HookServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    mut stream: TcpStream,
    got: &Mutex<Vec<Got>>,
    stop: &AtomicBool,
    answers: &[(String, Answer)],
) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // A proxied request comes as CONNECT (ureq tunnels http:// too), then
    // the request itself on the same connection.
    loop {
        let Some(line) = read_head(&mut stream) else {
            return;
        };
        let mut parts = line.split(' ');
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        got.lock().unwrap().push(Got {
            target: format!("{} {target}", method),
            at: Instant::now(),
        });
        if method == "CONNECT" {
            let _ = write!(stream, "HTTP/1.1 200 Connection established\r\n\r\n");
            continue;
        }
        let answer = answers
            .iter()
            .find(|(p, _)| target.ends_with(p.as_str()))
            .map_or(Answer::Status(404), |(_, a)| *a);
        match answer {
            Answer::Status(code) => {
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Length: 3\r\nConnection: close\r\n\r\nhi\n"
                );
            }
            Answer::Hang => {
                let end = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        return;
    }
}

/// Reads one request head; its request line.
fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) | Err(_) => return None,
            Ok(_) => head.push(byte[0]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    head.lines().next().map(str::to_owned)
}

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "-target-group-name",
        "tg",
        "-target-id",
        IP,
        "-health-poll-interval",
        "50ms",
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn the_three_hooks_are_called_in_their_places() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let hooks = HookServer::start(&[
        ("/pre", Answer::Status(200)),
        ("/in", Answer::Status(204)),
        ("/out", Answer::Status(200)),
    ]);
    let (pre, post, out) = (hooks.url("/pre"), hooks.url("/in"), hooks.url("/out"));
    // A password in a hook's URL never reaches the log.
    let post = post.replace("http://", "http://hook:hunter2@");
    let mut env = base_env(&fake.url());
    // Loopback goes direct whatever the proxy variables say.
    env.insert("HTTP_PROXY".into(), "http://127.0.0.1:1".into());
    env.insert("NLB_POST_DEREGISTER_HTTP".into(), out.clone());
    let a = args(&["-pre-register-http", &pre, "-post-register-http", &post]);
    let mut s = Sidecar::spawn(BIN, &a, &env);
    s.expect_log("blocking until SIGTERM", secs(10));
    assert_eq!(hooks.targets(), ["GET /pre", "GET /in"]);
    let register = fake.requests_for("RegisterTargets")[0].at;
    assert!(hooks.at("/pre") < register);
    assert!(hooks.at("/in") > register);
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
    assert_eq!(hooks.targets(), ["GET /pre", "GET /in", "GET /out"]);
    assert!(hooks.at("/out") > fake.requests_for("DeregisterTargets")[0].at);
    assert!(fake.registered(&arn).is_empty());
    let log = s.output();
    assert!(
        log.contains(&format!("calling pre-register HTTP hook: GET {pre}")),
        "{log}"
    );
    assert!(log.contains("post-deregister HTTP hook succeeded"), "{log}");
    assert!(log.contains("calling post-register HTTP hook: GET http://***@127.0.0.1:"));
    assert!(!log.contains("hunter2"), "{log}");
}

#[test]
fn a_failing_pre_register_hook_registers_nothing_and_exits_1() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    let hooks = HookServer::start(&[("/pre", Answer::Status(500))]);
    let pre = hooks.url("/pre");
    let mut s = Sidecar::spawn(
        BIN,
        &args(&["-pre-register-http", &pre]),
        &base_env(&fake.url()),
    );
    assert_eq!(s.wait_exit(secs(10)), 1, "{}", s.output());
    assert_eq!(fake.count("RegisterTargets"), 0);
    assert!(
        s.output()
            .contains("not registering: pre-register HTTP hook failed: HTTP 500"),
        "{}",
        s.output()
    );
}

#[test]
fn a_hanging_pre_register_hook_times_out() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    let hooks = HookServer::start(&[("/pre", Answer::Hang)]);
    let pre = hooks.url("/pre");
    let started = Instant::now();
    let mut s = Sidecar::spawn(
        BIN,
        &args(&["-pre-register-http", &pre, "-pre-register-timeout", "500ms"]),
        &base_env(&fake.url()),
    );
    assert_eq!(s.wait_exit(secs(10)), 1, "{}", s.output());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < secs(5),
        "{took:?}"
    );
    assert_eq!(hooks.targets(), ["GET /pre"]);
    assert_eq!(fake.count("RegisterTargets"), 0);
    assert!(
        s.output()
            .contains("not registering: pre-register HTTP hook timed out"),
        "{}",
        s.output()
    );
}

#[test]
fn a_signal_interrupts_a_hanging_hook() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    let hooks = HookServer::start(&[("/pre", Answer::Hang)]);
    let pre = hooks.url("/pre");
    let mut s = Sidecar::spawn(
        BIN,
        &args(&["-pre-register-http", &pre, "-pre-register-timeout", "60s"]),
        &base_env(&fake.url()),
    );
    s.expect_log("calling pre-register HTTP hook", secs(10));
    let end = Instant::now() + secs(10);
    while hooks.got().is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let signalled = Instant::now();
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
    assert!(signalled.elapsed() < secs(5));
    assert_eq!(fake.count("RegisterTargets"), 0);
    assert!(s.output().contains("pre-register HTTP hook interrupted"));
}

#[test]
fn a_hook_to_another_host_goes_through_the_proxy() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    // The recording server plays the proxy (ureq tunnels with CONNECT).
    let proxy = HookServer::start(&[("/in", Answer::Status(200))]);
    let mut env = base_env(&fake.url());
    env.insert(
        "HTTP_PROXY".into(),
        format!("http://127.0.0.1:{}", proxy.port),
    );
    // The fake AWS endpoint is loopback: it stays direct.
    let a = args(&["-post-register-http", "http://app.example:8080/in"]);
    let mut s = Sidecar::spawn(BIN, &a, &env);
    s.expect_log("post-register HTTP hook succeeded", secs(10));
    assert_eq!(proxy.targets(), ["CONNECT app.example:8080", "GET /in"]);
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
}

#[test]
fn https_other_schemes_and_two_hooks_for_one_step_are_usage_errors() {
    let env = base_env("http://127.0.0.1:1");
    let cases: [(&[&str], &str); 3] = [
        (
            &["-pre-register-http", "https://127.0.0.1/ready"],
            "-pre-register-http \"https://127.0.0.1/ready\": https:// is not supported, only http://",
        ),
        (
            &["-post-deregister-http", "127.0.0.1:8080/out"],
            "must start with http://",
        ),
        (
            &["-post-register-command", "true", "-post-register-http", "http://127.0.0.1/in"],
            "-post-register-command and -post-register-http are both set",
        ),
    ];
    for (extra, want) in cases {
        let (code, out) = Sidecar::run_to_exit(BIN, &args(extra), &env);
        assert_eq!(code, 2, "{extra:?}: {out}");
        assert!(out.contains(want), "{extra:?}: {out}");
        assert_eq!(out.trim().lines().count(), 1, "{out}");
    }
}
