//! Hook commands: run a program, bounded in time.
//!
//! A FROM scratch image has no `/bin/sh`, so a plain command string is
//! split into words by POSIX shell rules (quotes and backslashes, no
//! expansion; done in `config`) and the program is executed directly. A
//! command that uses shell operators outside quotes (`&&`, `|`, `>`, `$(`...)
//! arrives here as `/bin/sh -c COMMAND`, as the Go original ran every hook;
//! `main` refuses it at start when the image has no `/bin/sh`.
//!
//! The child runs in its own process group. On timeout, or when a signal
//! interrupts the wait, the whole group is sent SIGTERM and, if it is
//! still there after a short grace, SIGKILL: a hook that ignores SIGTERM
//! cannot hold the shutdown hostage. Output is captured (up to 16 KiB per
//! stream) and logged line by line after the command ends.
//!
//! In a scratch image the sidecar is its container's PID 1, so processes a
//! hook leaves behind (a daemon it started, a double fork) become its
//! children when they are orphaned, and their zombies stay unless it reaps
//! them. [`start_reaper`] does, without ever collecting a hook's own exit
//! status: a hook's child exists only while [`run`] holds the lock of
//! `CHILDREN` (from spawn to its wait), and the reaper collects other
//! children only while holding that lock.

use crate::clock::Clock;
use crate::config::Hook;
use log::{info, warn};
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Bytes of output kept per stream.
const MAX_OUTPUT: usize = 16 * 1024;
/// How often a running child is checked.
const POLL: Duration = Duration::from_millis(20);
/// How long the output of a hook that has ended may take to reach the end
/// of its pipes (a grandchild may hold them open).
const OUTPUT_WAIT: Duration = Duration::from_millis(200);
/// Time a process group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// The process's children: the lock is held while a hook child exists,
/// and counts completed hook runs (after each, orphans may be waiting).
struct Children {
    runs: Mutex<u64>,
    done: Condvar,
}

static CHILDREN: Children = Children {
    runs: Mutex::new(0),
    done: Condvar::new(),
};

impl Children {
    fn lock(&self) -> MutexGuard<'_, u64> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts a thread that reaps orphaned processes, for when this process is
/// PID 1 of its namespace (orphans are reparented to it). It sleeps in the
/// kernel until a child is waitable, and while there is no child at all,
/// until a hook has run.
///
/// # Errors
/// The OS error if the thread cannot be started.
pub fn start_reaper() -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("reaper".into())
        .stack_size(256 * 1024)
        .spawn(reap_forever)
        .map(drop)
}

fn reap_forever() {
    loop {
        let runs_before = *CHILDREN.lock();
        match wait_for_any_child() {
            Ok(()) => {
                let _hooks_done = CHILDREN.lock();
                let n = reap_waiting_children();
                if n > 0 {
                    info!("reaped {n} orphaned process(es)");
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                // No children: none can appear before a hook runs.
                let runs = CHILDREN.lock();
                drop(CHILDREN.done.wait_while(runs, |runs| *runs == runs_before));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                warn!("reaping orphaned processes stopped: {e}");
                return;
            }
        }
    }
}

/// Blocks until some child has exited, without reaping it.
#[allow(unsafe_code)]
fn wait_for_any_child() -> std::io::Result<()> {
    // SAFETY: siginfo_t is plain data, valid when zeroed; waitid(2) writes
    // into it and has no other memory-safety preconditions.
    let rc = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Reaps every child that has exited; the caller holds [`CHILDREN`]'s lock,
/// so none of them is a hook's. Returns how many.
#[allow(unsafe_code)]
fn reap_waiting_children() -> usize {
    let mut reaped = 0;
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) writes only into `status`, a valid c_int.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return reaped;
        }
        reaped += 1;
    }
}

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0.
    Success,
    /// Non-zero exit or killed by a signal; the text says which.
    Failed(String),
    /// It ran past its timeout and was killed.
    TimedOut,
    /// A signal or drain request arrived; the command was killed.
    Interrupted,
    /// It could not be started (not found, not executable).
    NotStarted(String),
}

impl Outcome {
    /// Whether the command succeeded.
    pub fn ok(&self) -> bool {
        *self == Outcome::Success
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Success => f.write_str("succeeded"),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
            Outcome::TimedOut => f.write_str("timed out and was killed"),
            Outcome::Interrupted => f.write_str("interrupted and killed"),
            Outcome::NotStarted(why) => write!(f, "could not be started: {why}"),
        }
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "unknown exit status".to_owned(),
    }
}

/// Sends `sig` to the process group led by `pid`.
#[allow(unsafe_code)]
fn kill_group(pid: u32, sig: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid
    // addresses the process group we created for this child (process_group(0)).
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Reads `stream` into the returned buffer on a thread of its own, which
/// drops `eof` when the stream ends (see [`wait_for_output`]).
fn capture(stream: Option<impl Read + Send + 'static>, eof: Sender<()>) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    if let Some(mut s) = stream {
        let sink = Arc::clone(&buf);
        // Detached: a grandchild that keeps the pipe open must not block us.
        let spawned = std::thread::Builder::new()
            .name("hook-output".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let _eof = eof;
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if let Ok(mut b) = sink.lock() {
                                let room = MAX_OUTPUT.saturating_sub(b.len());
                                b.extend_from_slice(&chunk[..n.min(room)]);
                            }
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            // The pipe's read end closes with the closure: a hook that
            // writes output then fails (SIGPIPE), and that failure is
            // handled like any other; this process goes on.
            warn!("cannot start a thread to read a hook's output (pids limit?): {e}");
        }
    }
    buf
}

/// Waits until every reader thread of [`capture`] has reached the end of
/// its stream (all the senders of `eof` are gone), `max` at most.
fn wait_for_output(eof: &Receiver<()>, max: Duration) {
    let end = Instant::now() + max;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match eof.recv_timeout(left) {
            Ok(()) => {}
            // Both at their end; or still open past `max` (a process the
            // hook left running holds them): what was read is logged.
            Err(RecvTimeoutError::Disconnected | RecvTimeoutError::Timeout) => return,
        }
    }
}

fn log_output(hook: &str, stream: &str, buf: &Arc<Mutex<Vec<u8>>>) {
    let Ok(b) = buf.lock() else { return };
    for line in String::from_utf8_lossy(&b)
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        info!("[{hook} {stream}] {line}");
    }
}

/// Stops a child's whole group: SIGTERM, a grace period, then SIGKILL.
fn stop(child: &mut Child) {
    kill_group(child.id(), libc::SIGTERM);
    let mut waited = Duration::ZERO;
    while waited < KILL_GRACE {
        if let Ok(Some(_)) = child.try_wait() {
            // The leader is gone; make sure the rest of its group is too.
            kill_group(child.id(), libc::SIGKILL);
            return;
        }
        std::thread::sleep(POLL);
        waited += POLL;
    }
    kill_group(child.id(), libc::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs a hook to completion, timeout, or interruption by an event the
/// `clock` reports (its sleep returns `Interrupted`).
pub fn run(hook: &Hook, clock: &mut dyn Clock) -> Outcome {
    // Held until the child is reaped, so the reaper cannot take its status.
    let mut runs = CHILDREN.lock();
    let outcome = run_locked(hook, clock);
    *runs += 1;
    drop(runs);
    CHILDREN.done.notify_all();
    outcome
}

fn run_locked(hook: &Hook, clock: &mut dyn Clock) -> Outcome {
    use std::os::unix::process::CommandExt;
    let Some((program, args)) = hook.argv().split_first() else {
        return Outcome::NotStarted("empty command".into());
    };
    info!(
        "running {} command: {}",
        hook.name,
        shlex::try_join(hook.argv().iter().map(String::as_str)).unwrap_or_default()
    );
    let spawned = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let out = Outcome::NotStarted(format!("{program}: {e}"));
            warn!("{} command {out}", hook.name);
            return out;
        }
    };
    let (eof_tx, eof) = mpsc::channel();
    let out_buf = capture(child.stdout.take(), eof_tx.clone());
    let err_buf = capture(child.stderr.take(), eof_tx);
    let deadline = clock.now() + hook.timeout;
    let outcome = loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break Outcome::Success,
            Ok(Some(status)) => break Outcome::Failed(describe(status)),
            Ok(None) => {}
            Err(e) => {
                stop(&mut child);
                break Outcome::Failed(format!("cannot wait for it: {e}"));
            }
        }
        let now = clock.now();
        if now >= deadline {
            stop(&mut child);
            break Outcome::TimedOut;
        }
        if clock.sleep(POLL.min(deadline - now)).is_err() {
            stop(&mut child);
            break Outcome::Interrupted;
        }
    };
    wait_for_output(&eof, OUTPUT_WAIT);
    log_output(hook.name, "stdout", &out_buf);
    log_output(hook.name, "stderr", &err_buf);
    if outcome.ok() {
        info!("{} command succeeded", hook.name);
    } else {
        warn!("{} command {outcome}", hook.name);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Interrupted;
    use std::time::SystemTime;

    /// Real time, interrupted after a given instant.
    struct Wall {
        interrupt_at: Option<Instant>,
    }

    impl Clock for Wall {
        fn now(&self) -> Instant {
            Instant::now()
        }
        fn wall(&self) -> SystemTime {
            SystemTime::now()
        }
        fn random(&mut self) -> f64 {
            0.5
        }
        fn sleep(&mut self, d: Duration) -> Result<(), Interrupted> {
            if self
                .interrupt_at
                .map(|t| Instant::now() >= t)
                .unwrap_or(false)
            {
                return Err(Interrupted);
            }
            std::thread::sleep(d);
            Ok(())
        }
    }

    fn hook(cmd: &str, timeout_ms: u64) -> Hook {
        Hook::command(
            "test",
            shlex::split(cmd).unwrap(),
            Duration::from_millis(timeout_ms),
        )
    }

    #[test]
    fn success_failure_and_not_found() {
        let mut t = Wall { interrupt_at: None };
        assert_eq!(run(&hook("true", 5000), &mut t), Outcome::Success);
        assert_eq!(
            run(&hook("false", 5000), &mut t),
            Outcome::Failed("exit status 1".into())
        );
        match run(&hook("/nonexistent/program arg", 5000), &mut t) {
            Outcome::NotStarted(why) => assert!(why.contains("/nonexistent/program"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timeout_kills_the_whole_group_even_if_it_ignores_sigterm() {
        let mut t = Wall { interrupt_at: None };
        let started = Instant::now();
        let out = run(
            &hook("sh -c 'trap \"\" TERM; sleep 30 & sleep 30; wait'", 200),
            &mut t,
        );
        assert_eq!(out, Outcome::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn the_reaper_never_takes_a_hooks_exit_status() {
        // The reaper sees every child of this process exit; hooks must
        // still get their own statuses, every time.
        start_reaper().unwrap();
        let mut t = Wall { interrupt_at: None };
        for _ in 0..30 {
            assert_eq!(
                run(&hook("sh -c 'exit 7'", 5000), &mut t),
                Outcome::Failed("exit status 7".into())
            );
            assert_eq!(run(&hook("true", 5000), &mut t), Outcome::Success);
        }
    }

    #[test]
    fn output_written_after_the_hook_exits_is_read_to_its_end() {
        // The leader exits at once; a process it left writes 50 ms later.
        let mut child = Command::new("sh")
            .args(["-c", "(sleep 0.05; echo late) & echo early"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, eof) = mpsc::channel();
        let buf = capture(child.stdout.take(), tx);
        child.wait().unwrap();
        let started = Instant::now();
        wait_for_output(&eof, Duration::from_secs(5));
        assert!(started.elapsed() < Duration::from_secs(4), "returns at EOF");
        assert_eq!(*buf.lock().unwrap(), b"early\nlate\n");
        // A pipe held open: the wait ends at its bound.
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30 & echo x"])
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let (tx, eof) = mpsc::channel();
        let _buf = capture(child.stdout.take(), tx);
        child.wait().unwrap();
        let started = Instant::now();
        wait_for_output(&eof, Duration::from_millis(100));
        kill_group(child.id(), libc::SIGKILL);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn interruption_stops_the_command() {
        let mut t = Wall {
            interrupt_at: Some(Instant::now() + Duration::from_millis(100)),
        };
        let started = Instant::now();
        assert_eq!(run(&hook("sleep 30", 60_000), &mut t), Outcome::Interrupted);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
