#![allow(dead_code)]
//! Runs the real binary as a process for tests: controlled environment,
//! captured stderr, real signals, and a kill on drop.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_k8s-nlb-registrator-sidecar");

/// The environment every test starts from: static fake credentials, the
/// fake as endpoint, no metadata service, nothing inherited.
pub fn base_env(endpoint: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".into(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
    );
    env.insert("AWS_ACCESS_KEY_ID".into(), "AKIDFAKE".into());
    env.insert("AWS_SECRET_ACCESS_KEY".into(), "fake-secret".into());
    env.insert("AWS_REGION".into(), "us-east-1".into());
    env.insert("AWS_ENDPOINT_URL".into(), endpoint.into());
    env.insert("AWS_EC2_METADATA_DISABLED".into(), "true".into());
    env
}

#[derive(Default)]
struct Log {
    lines: Vec<String>,
    closed: bool,
}

/// A running sidecar.
pub struct Sidecar {
    child: Child,
    log: Arc<(Mutex<Log>, Condvar)>,
    status: Option<ExitStatus>,
    /// When it was spawned.
    pub started: Instant,
}

impl Sidecar {
    /// Spawns the binary with exactly `env` and `args`.
    pub fn spawn(args: &[&str], env: &BTreeMap<String, String>) -> Sidecar {
        Sidecar::spawn_program(BIN, args, env)
    }

    /// Spawns `program` (e.g. `chroot DIR /binary`) with exactly `env` and `args`.
    pub fn spawn_program(program: &str, args: &[&str], env: &BTreeMap<String, String>) -> Sidecar {
        let started = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the sidecar binary");
        let log = Arc::new((Mutex::new(Log::default()), Condvar::new()));
        for stream in [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let (m, cv) = &*sink;
                    m.lock().unwrap().lines.push(line);
                    cv.notify_all();
                }
                let (m, cv) = &*sink;
                m.lock().unwrap().closed = true;
                cv.notify_all();
            });
        }
        Sidecar {
            child,
            log,
            status: None,
            started,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything printed so far (stderr and stdout lines).
    pub fn output(&self) -> String {
        self.log.0.lock().unwrap().lines.join("\n")
    }

    /// Waits until a printed line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let (m, cv) = &*self.log;
        let deadline = Instant::now() + timeout;
        let mut log = m.lock().unwrap();
        loop {
            if log.lines.iter().any(|l| l.contains(needle)) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || log.closed {
                return log.lines.iter().any(|l| l.contains(needle));
            }
            log = cv.wait_timeout(log, deadline - now).unwrap().0;
        }
    }

    /// Panics with the log unless a line contains `needle` within `timeout`.
    pub fn expect_log(&self, needle: &str, timeout: Duration) {
        assert!(
            self.wait_log(needle, timeout),
            "no log line containing {needle:?} within {timeout:?}; output:\n{}",
            self.output()
        );
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) on our own child process id.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// Sends SIGTERM.
    pub fn term(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Waits for the exit code (panics with the log after `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let st = self.wait_status(timeout);
        st.code()
            .unwrap_or_else(|| panic!("killed by a signal: {st:?}\n{}", self.output()))
    }

    /// Waits for the process to end and returns its raw status (which may
    /// be death by a signal); panics on a timeout or a panic in the output.
    pub fn wait_status(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                self.status = Some(st);
                // Let the reader threads collect the last lines.
                let (m, cv) = &*self.log;
                let mut log = m.lock().unwrap();
                let until = Instant::now() + Duration::from_secs(2);
                while !log.closed && Instant::now() < until {
                    log = cv.wait_timeout(log, Duration::from_millis(50)).unwrap().0;
                }
                drop(log);
                let out = self.output();
                assert!(!out.contains("panicked"), "the sidecar panicked:\n{out}");
                return st;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the sidecar did not exit within {timeout:?}; output:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the binary to completion (for usage errors); returns code and output.
pub fn run_to_exit(args: &[&str], env: &BTreeMap<String, String>) -> (i32, String) {
    let mut s = Sidecar::spawn(args, env);
    let code = s.wait_exit(Duration::from_secs(20));
    (code, s.output())
}

/// A free 127.0.0.1 port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// Creates one named after `tag`.
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("nlb-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    /// A path inside it, as a string.
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
