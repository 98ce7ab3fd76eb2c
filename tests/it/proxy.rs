//! Process tests of the proxy variables: the real binary, the fake ELBv2,
//! and a recording HTTP proxy on 127.0.0.1 between them.
//!
//! The endpoint is named `elbv2.proxy-test.invalid`, a name that does not
//! resolve: through a proxy only the proxy resolves it (here every name is
//! 127.0.0.1), so a lifecycle that succeeds went through the proxy, and one
//! that goes direct fails with a lookup error and leaves the proxy unused.
//!
//! ureq tunnels every proxied request with `CONNECT host:port`, `http://`
//! URLs included (curl and Go send those in absolute form instead); the
//! proxy records the request lines it gets and answers anything other than
//! CONNECT with 405, so a change of that behaviour shows up here.

use crate::common::BIN;
use fake_aws::process::{base_env, secs, Sidecar};
use fake_aws::FakeAws;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

const IP: &str = "10.0.0.5";
const HOST: &str = "elbv2.proxy-test.invalid";

/// One request head the proxy received.
#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    proxy_authorization: Option<String>,
}

/// A CONNECT proxy on 127.0.0.1 that records what it is asked and tunnels
/// to 127.0.0.1 whatever the host name. Dropping it stops accepting.
struct RecordingProxy {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl RecordingProxy {
    fn start() -> RecordingProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("proxy: bind");
        let port = listener.local_addr().expect("proxy: local_addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        let accept = thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let seen = Arc::clone(&seen2);
                    thread::spawn(move || serve(conn, &seen));
                }
            }
        });
        RecordingProxy {
            port,
            seen,
            stop,
            accept: Some(accept),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request head; records it; tunnels a CONNECT to 127.0.0.1.
fn serve(mut client: TcpStream, seen: &Mutex<Vec<Seen>>) {
    let _ = client.set_read_timeout(Some(secs(30)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 * 1024 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let proxy_authorization = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("proxy-authorization")
            .then(|| v.trim().to_string())
    });
    seen.lock().unwrap().push(Seen {
        request_line: request_line.clone(),
        proxy_authorization,
    });
    let mut words = request_line.split(' ');
    let (method, target) = (words.next(), words.next().unwrap_or_default());
    let port = target
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok());
    let (Some("CONNECT"), Some(port)) = (method, port) else {
        let _ = client.write_all(
            b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    };
    // Every name resolves to 127.0.0.1 here: tests send nothing elsewhere.
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)) else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let _ = upstream.set_read_timeout(Some(secs(30)));
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
        || upstream.write_all(&buf[end..]).is_err()
    {
        return;
    }
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let up = thread::spawn(move || pipe(c2, u2));
    pipe(upstream, client);
    let _ = up.join();
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// Arguments of a short lifecycle: one group by name, no health wait.
fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "-target-group-name",
        "tg",
        "-target-id",
        IP,
        "-wait-in-service=false",
    ];
    a.extend_from_slice(extra);
    a
}

/// The fake, its group, and an env whose endpoint is `HOST` on the fake's port.
fn setup() -> (FakeAws, String, BTreeMap<String, String>) {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let env = base_env(&format!("http://{HOST}:{}", fake.port()));
    (fake, arn, env)
}

fn with(mut env: BTreeMap<String, String>, vars: &[(&str, &str)]) -> BTreeMap<String, String> {
    for (k, v) in vars {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

/// Register, block, SIGTERM, deregister; returns exit code and output.
fn lifecycle(env: &BTreeMap<String, String>) -> (i32, String) {
    let mut s = Sidecar::spawn(BIN, &args(&[]), env);
    s.expect_log("blocking until SIGTERM", secs(10));
    s.term();
    let code = s.wait_exit(secs(10));
    (code, s.output())
}

/// A start that cannot reach the endpoint: gives up after a second.
fn unreachable_start(env: &BTreeMap<String, String>) -> (i32, String) {
    Sidecar::run_to_exit(BIN, &args(&["-register-timeout", "1s"]), env)
}

#[test]
fn an_http_endpoint_goes_through_http_proxy() {
    let (fake, arn, env) = setup();
    let proxy = RecordingProxy::start();
    let env = with(env, &[("HTTP_PROXY", &proxy.url())]);
    let (code, out) = lifecycle(&env);
    assert_eq!(code, 0, "{out}");
    assert!(fake.registered(&arn).is_empty());
    assert!(fake.count("RegisterTargets") == 1 && fake.count("DeregisterTargets") == 1);
    assert!(fake.requests().iter().all(|r| r.signature_ok));
    assert!(out.contains(&format!("proxy: {}", proxy.url())), "{out}");
    let seen = proxy.seen();
    let connect = format!("CONNECT {HOST}:{} HTTP/1.1", fake.port());
    assert!(!seen.is_empty(), "the proxy saw nothing");
    assert!(seen.iter().all(|s| s.request_line == connect), "{seen:?}");
}

/// The route real AWS takes: an `https://` endpoint goes through
/// `HTTPS_PROXY` (a `CONNECT` tunnel; the fake behind it speaks plain
/// HTTP, so the TLS handshake then fails and the start gives up).
#[test]
fn an_https_endpoint_goes_through_https_proxy() {
    let fake = FakeAws::start();
    fake.add_target_group("tg", 80);
    let env = base_env(&format!("https://{HOST}:{}", fake.port()));
    let proxy = RecordingProxy::start();
    let (code, out) = unreachable_start(&with(env, &[("HTTPS_PROXY", &proxy.url())]));
    assert_eq!(code, 1, "{out}");
    let seen = proxy.seen();
    let connect = format!("CONNECT {HOST}:{} HTTP/1.1", fake.port());
    assert!(!seen.is_empty(), "the proxy saw nothing");
    assert!(seen.iter().all(|s| s.request_line == connect), "{seen:?}");
}

#[test]
fn no_proxy_entries_send_matching_endpoints_direct() {
    for no_proxy in [
        "other.example,.proxy-test.invalid",
        "*.proxy-test.invalid",
        "elbv2.proxy-test.invalid",
        "*",
    ] {
        let (fake, _arn, env) = setup();
        let proxy = RecordingProxy::start();
        let env = with(env, &[("HTTP_PROXY", &proxy.url()), ("NO_PROXY", no_proxy)]);
        let (code, out) = unreachable_start(&env);
        // It went direct: the name did not resolve, the proxy saw nothing.
        assert_eq!(code, 1, "NO_PROXY={no_proxy:?}:\n{out}");
        assert!(out.contains(HOST), "{out}");
        assert!(proxy.seen().is_empty(), "NO_PROXY={no_proxy:?}");
        assert!(fake.requests().is_empty());
    }
}

#[test]
fn loopback_endpoints_never_use_the_proxy() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let proxy = RecordingProxy::start();
    let env = with(base_env(&fake.url()), &[("HTTP_PROXY", &proxy.url())]);
    let (code, out) = lifecycle(&env);
    assert_eq!(code, 0, "{out}");
    assert!(fake.registered(&arn).is_empty());
    assert!(proxy.seen().is_empty(), "{:?}", proxy.seen());
}

/// An app on 127.0.0.1 answering 200 to every request; counts them.
fn app_server() -> (u16, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(Mutex::new(0));
    let counter = Arc::clone(&hits);
    thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            *counter.lock().unwrap() += 1;
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nup\n",
            );
        }
    });
    (port, hits)
}

/// Issue 19: `-wait-for-http` and the `/lb-health` app check go to the pod
/// itself, never through the proxy (which answers 405 to all but CONNECT).
#[test]
fn app_checks_to_the_pod_never_use_the_proxy() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let proxy = RecordingProxy::start();
    let (app_port, hits) = app_server();
    let app = format!("http://127.0.0.1:{app_port}/ready");
    let lb_port = fake_aws::process::free_port();
    let lb_addr = format!("127.0.0.1:{lb_port}");
    let env = with(base_env(&fake.url()), &[("HTTP_PROXY", &proxy.url())]);
    let a = args(&[
        "-wait-for-http",
        &app,
        "-wait-for-timeout",
        "3s",
        "-lb-health-addr",
        &lb_addr,
    ]);
    let mut s = Sidecar::spawn(BIN, &a, &env);
    s.expect_log("blocking until SIGTERM", secs(10));
    assert_eq!(fake.registered(&arn).len(), 1);
    let (code, body) = fake_aws::process::get(lb_port, "/lb-health");
    assert_eq!((code, body.as_str()), (200, "ok\n"), "{}", s.output());
    s.term();
    assert_eq!(s.wait_exit(secs(10)), 0, "{}", s.output());
    assert!(*hits.lock().unwrap() >= 2);
    assert!(proxy.seen().is_empty(), "{:?}", proxy.seen());
}

#[test]
fn proxy_credentials_are_sent_and_never_logged() {
    let (fake, arn, env) = setup();
    let proxy = RecordingProxy::start();
    let url = format!("http://user:pa%40ss-w0rd@127.0.0.1:{}", proxy.port);
    let env = with(env, &[("HTTP_PROXY", &url), ("NLB_LOG_LEVEL", "trace")]);
    let (code, out) = lifecycle(&env);
    assert_eq!(code, 0, "{out}");
    assert!(fake.registered(&arn).is_empty());
    // base64("user:pa@ss-w0rd")
    let want = "Basic dXNlcjpwYUBzcy13MHJk";
    let seen = proxy.seen();
    assert!(
        seen.iter()
            .all(|s| s.proxy_authorization.as_deref() == Some(want)),
        "{seen:?}"
    );
    assert!(!out.contains("w0rd") && !out.contains(want), "{out}");
    assert!(out.contains("(with credentials)"), "{out}");
}

#[test]
fn a_malformed_proxy_url_is_a_configuration_error() {
    let (fake, _arn, env) = setup();
    for (var, value) in [
        ("HTTPS_PROXY", "socks5://127.0.0.1:1080"),
        ("HTTP_PROXY", "http://:3128"),
        ("all_proxy", "ftp://proxy"),
    ] {
        let (code, out) =
            Sidecar::run_to_exit(BIN, &args(&[]), &with(env.clone(), &[(var, value)]));
        assert_eq!(code, 2, "{var}={value}:\n{out}");
        assert_eq!(out.trim().lines().count(), 1, "{out}");
        assert!(
            out.contains(&format!("{var}: not a proxy URL")),
            "{var}={value}: {out}"
        );
    }
    assert!(fake.requests().is_empty());
}
