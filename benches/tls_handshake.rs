//! What a new connection costs at shutdown: the sidecar's own transport
//! (ureq + rustls/ring, the same config as in production) against a local
//! TLS 1.3 server (`openssl s_server`), fresh connection each time, versus
//! the same request over plain TCP.
//!
//! At rest the sidecar keeps no connection open to AWS, so the
//! DeregisterTargets after SIGTERM pays one TCP + TLS handshake. On
//! loopback this measures the handshake's CPU cost; against a regional
//! endpoint add the round trips (one for TCP, one for TLS 1.3) and a DNS
//! lookup. Needs `openssl` (the CLI). Run: `cargo bench --bench tls_handshake`.

use fake_aws::process::free_port;
use k8s_nlb_registrator_sidecar::aws::http::{HttpRequest, Transport, UreqTransport};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("tls_handshake: {msg}");
    std::process::exit(1)
}

fn openssl(args: &[&str], dir: &std::path::Path) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        fail(&format!(
            "openssl {} failed (is the openssl CLI installed?)",
            args.join(" ")
        ));
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time_get(url: &str, ca: Option<&[u8]>) -> f64 {
    // A new transport each time: a new pool, so a new connection (and handshake).
    let t = UreqTransport::new(ca.map(|pem| (pem, "bench-ca.pem")), None)
        .unwrap_or_else(|e| fail(&e.to_string()));
    let req = HttpRequest {
        method: "GET",
        url: url.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
        timeout: Duration::from_secs(5),
    };
    let start = Instant::now();
    match t.send("bench", &req) {
        Ok(r) if r.status < 500 => start.elapsed().as_secs_f64() * 1000.0,
        Ok(r) => fail(&format!("{url} answered {}", r.status)),
        Err(e) => fail(&e.to_string()),
    }
}

fn wait_listening(port: u16) {
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > end {
            fail("the local server did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    let runs: usize = std::env::var("NLB_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = std::env::temp_dir().join(format!("nlb-tls-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| fail(&e.to_string()));
    // A CA and a leaf for 127.0.0.1 (webpki refuses a CA certificate as end entity).
    openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ca.key",
        ],
        &dir,
    );
    openssl(
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=bench-ca",
            "-days",
            "1",
            "-out",
            "ca.pem",
        ],
        &dir,
    );
    openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "leaf.key",
        ],
        &dir,
    );
    openssl(
        &[
            "req",
            "-new",
            "-key",
            "leaf.key",
            "-subj",
            "/CN=127.0.0.1",
            "-out",
            "leaf.csr",
        ],
        &dir,
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap_or_else(|e| fail(&e.to_string()));
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "leaf.pem",
        ],
        &dir,
    );
    let ca = std::fs::read(dir.join("ca.pem")).unwrap_or_else(|e| fail(&e.to_string()));

    let tls_port = free_port();
    let _tls = Server(
        Command::new("openssl")
            .args([
                "s_server",
                "-accept",
                &format!("127.0.0.1:{tls_port}"),
                "-cert",
                "leaf.pem",
                "-key",
                "leaf.key",
                "-tls1_3",
                "-www",
                "-quiet",
            ])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("openssl s_server: {e}"))),
    );
    let plain_port = free_port();
    let listener =
        TcpListener::bind(("127.0.0.1", plain_port)).unwrap_or_else(|e| fail(&e.to_string()));
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { break };
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    wait_listening(tls_port);
    wait_listening(plain_port);

    let tls_url = format!("https://127.0.0.1:{tls_port}/");
    let plain_url = format!("http://127.0.0.1:{plain_port}/");
    time_get(&tls_url, Some(&ca)); // warm-up
    time_get(&plain_url, None);
    let tls: Vec<f64> = (0..runs).map(|_| time_get(&tls_url, Some(&ca))).collect();
    let plain: Vec<f64> = (0..runs).map(|_| time_get(&plain_url, None)).collect();
    let (t, p) = (median(tls), median(plain));
    println!("| request on a new connection (loopback, {runs} runs) | median ms |");
    println!("|---|---:|");
    println!("| plain TCP | {p:.3} |");
    println!("| TCP + TLS 1.3 handshake (ECDSA P-256, rustls/ring) | {t:.3} |");
    println!("| TLS handshake cost | {:.3} |", t - p);
    println!("BENCH\ttls_handshake_ms\t{:.3}", t - p);
    let _ = std::fs::remove_dir_all(&dir);
}
