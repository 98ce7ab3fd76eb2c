//! Runs the sidecar binary as a process for tests and benches: exactly the
//! environment given, captured output, real signals, and a kill on drop.
//!
//! The one way every test spawns the binary, waits for a log line, sends
//! SIGTERM and waits for the exit; plus the small helpers those tests share
//! ([`free_port`], [`secs`], [`TempDir`]).

use crate::{DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET, REGION};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The line the sidecar logs once it is registered, healthy and waiting.
pub const BLOCKING_LINE: &str = "blocking until SIGTERM";

/// `n` seconds, for timeouts.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A free 127.0.0.1 port (bound then released).
///
/// # Panics
/// When no port can be bound.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The environment every test starts from: the fake's static credentials,
/// `endpoint` as the AWS endpoint, no metadata service, nothing inherited
/// but `PATH`.
pub fn base_env(endpoint: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".into(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
    );
    env.insert("AWS_ACCESS_KEY_ID".into(), DEFAULT_ACCESS_KEY_ID.into());
    env.insert("AWS_SECRET_ACCESS_KEY".into(), DEFAULT_SECRET.into());
    env.insert("AWS_REGION".into(), REGION.into());
    env.insert("AWS_ENDPOINT_URL".into(), endpoint.into());
    env.insert("AWS_EC2_METADATA_DISABLED".into(), "true".into());
    env
}

/// Output lines with the instant each was read, and whether both streams ended.
#[derive(Default)]
struct Log {
    lines: Vec<(Instant, String)>,
    closed: usize,
}

impl Log {
    fn find(&self, needle: &str) -> Option<Instant> {
        self.lines
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(at, _)| *at)
    }
}

/// A running sidecar (or any program started the same way).
pub struct Sidecar {
    child: Child,
    log: Arc<(Mutex<Log>, Condvar)>,
    /// Set once the process was reaped (here or by the caller).
    done: bool,
    /// When it was spawned (just before the fork).
    pub started: Instant,
}

impl Sidecar {
    /// Spawns `program` (the binary, or e.g. `chroot` with the binary as an
    /// argument) with exactly `env` and `args`; stdout and stderr are read
    /// line by line.
    ///
    /// # Panics
    /// When the program cannot be started.
    pub fn spawn<S: AsRef<OsStr>>(
        program: impl AsRef<OsStr>,
        args: &[S],
        env: &BTreeMap<String, String>,
    ) -> Sidecar {
        let program = program.as_ref();
        let started = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.to_string_lossy()));
        let log = Arc::new((Mutex::new(Log::default()), Condvar::new()));
        let streams: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ];
        for stream in streams.into_iter().flatten() {
            let sink = Arc::clone(&log);
            std::thread::spawn(move || {
                let (m, cv) = &*sink;
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    m.lock().unwrap().lines.push((Instant::now(), line));
                    cv.notify_all();
                }
                m.lock().unwrap().closed += 1;
                cv.notify_all();
            });
        }
        Sidecar {
            child,
            log,
            done: false,
            started,
        }
    }

    /// Runs `program` to completion (for usage errors); returns the exit
    /// code and the output.
    pub fn run_to_exit<S: AsRef<OsStr>>(
        program: impl AsRef<OsStr>,
        args: &[S],
        env: &BTreeMap<String, String>,
    ) -> (i32, String) {
        let mut s = Sidecar::spawn(program, args, env);
        let code = s.wait_exit(secs(20));
        (code, s.output())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything printed so far (stderr and stdout lines).
    pub fn output(&self) -> String {
        let log = self.log.0.lock().unwrap();
        let lines: Vec<&str> = log.lines.iter().map(|(_, l)| l.as_str()).collect();
        lines.join("\n")
    }

    /// Waits until a printed line contains `needle`; returns when that line
    /// was read, or `None` after `timeout` or once the output has ended.
    pub fn wait_log_at(&self, needle: &str, timeout: Duration) -> Option<Instant> {
        let (m, cv) = &*self.log;
        let deadline = Instant::now() + timeout;
        let mut log = m.lock().unwrap();
        loop {
            if let Some(at) = log.find(needle) {
                return Some(at);
            }
            let now = Instant::now();
            if now >= deadline || log.closed == 2 {
                return None;
            }
            log = cv.wait_timeout(log, deadline - now).unwrap().0;
        }
    }

    /// Waits until a printed line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_log_at(needle, timeout).is_some()
    }

    /// Panics with the output unless a line contains `needle` within `timeout`.
    pub fn expect_log(&self, needle: &str, timeout: Duration) {
        assert!(
            self.wait_log(needle, timeout),
            "no log line containing {needle:?} within {timeout:?}; output:\n{}",
            self.output()
        );
    }

    /// Sends a signal (the result of `kill(2)` is not checked: a process
    /// that already exited is a zombie until reaped and takes it silently).
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

    /// Waits for the exit code (panics with the output after `timeout`, on
    /// death by a signal, or on a panic in the output).
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
                self.done = true;
                self.drain(secs(2));
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

    /// Says the caller reaped the process itself (e.g. with `wait4` for its
    /// resource usage): no kill on drop. Then collects the last lines.
    pub fn reaped_elsewhere(&mut self) {
        self.done = true;
        self.drain(secs(2));
    }

    /// Lets the reader threads collect the last lines, up to `limit`.
    fn drain(&self, limit: Duration) {
        let (m, cv) = &*self.log;
        let mut log = m.lock().unwrap();
        let until = Instant::now() + limit;
        while log.closed < 2 && Instant::now() < until {
            log = cv.wait_timeout(log, Duration::from_millis(50)).unwrap().0;
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates one named after `tag`.
    ///
    /// # Panics
    /// When the directory cannot be created.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
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

/// `GET path` on the sidecar's listener at 127.0.0.1:`port`: the status
/// and body, or status 0 and the error when there was no answer.
pub fn get(port: u16, path: &str) -> (u16, String) {
    match crate::http_request::<&str, &str>(port, "GET", path, &[], b"") {
        Ok(r) => (r.status, r.text()),
        Err(e) => (0, e.to_string()),
    }
}

/// Polls `path` until it answers `want`.
///
/// # Panics
/// When it has not by `timeout`, with the last answer.
pub fn wait_status(port: u16, path: &str, want: u16, timeout: Duration) {
    let end = Instant::now() + timeout;
    loop {
        let (code, body) = get(port, path);
        if code == want {
            return;
        }
        assert!(
            Instant::now() < end,
            "{path} never answered {want}; last {code} {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
