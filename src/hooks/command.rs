//! Command hooks: a program run without a shell, in a process group of its
//! own that gets SIGTERM, then SIGKILL after [`KILL_GRACE`], on timeout or
//! interruption. Its output is logged line by line as it comes.

use super::{reaper, wait, Outcome, POLL};
use crate::clock::Clock;
use crate::config::Hook;
use log::{info, warn};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

const MAX_OUTPUT: u64 = 16 * 1024;
/// How long an ended hook's output may take (a process it left may hold the pipes).
const OUTPUT_WAIT: Duration = Duration::from_millis(200);
/// Time a process group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

#[allow(unsafe_code)]
fn kill_group(pid: u32, sig: libc::c_int) {
    if let Ok(pgid @ 2..) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions; a negative
        // pid addresses the group made for this child (process_group(0)).
        unsafe { libc::kill(-pgid, sig) };
    }
}

/// Hands `line` each line of `stream`'s first [`MAX_OUTPUT`] bytes, then
/// drains it (a full pipe would block the hook) and drops `eof`; on a
/// detached thread, as a process the hook left may hold the pipe.
fn forward(stream: Option<OwnedFd>, eof: Sender<()>, mut line: impl FnMut(&str) + Send + 'static) {
    let Some(stream) = stream else { return };
    let read = move || {
        let _eof = eof;
        let mut r = BufReader::new(File::from(stream));
        let first = r.by_ref().take(MAX_OUTPUT);
        for l in first.split(b'\n').map_while(Result::ok) {
            let l = String::from_utf8_lossy(&l);
            if !l.trim().is_empty() {
                line(l.trim_end());
            }
        }
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    };
    let thread = std::thread::Builder::new().name("hook-output".into());
    if let Err(e) = thread.stack_size(256 * 1024).spawn(read) {
        // The pipe closes: a hook that writes then fails (SIGPIPE).
        warn!("cannot start a thread to read a hook's output (pids limit?): {e}");
    }
}

fn stop(child: &mut Child) {
    kill_group(child.id(), libc::SIGTERM);
    let end = Instant::now() + KILL_GRACE;
    while Instant::now() < end && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(POLL);
    }
    // Also when the leader is gone: the rest of its group may not be.
    kill_group(child.id(), libc::SIGKILL);
    let _ = child.wait();
}

/// Runs a command hook to completion, timeout, or the `clock`'s interruption.
pub fn run(hook: &Hook, clock: &mut dyn Clock) -> Outcome {
    let Some((program, args)) = hook.argv().split_first() else {
        return Outcome::Failed("empty command".into());
    };
    let shown = shlex::try_join(hook.argv().iter().map(String::as_str)).unwrap_or_default();
    info!("running {} command: {shown}", hook.name);
    // From spawn to wait, so the reaper cannot take the child's status.
    reaper::while_hook_runs(|| {
        let spawned = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => return Outcome::Failed(format!("could not be started: {program}: {e}")),
        };
        let (tx, eof) = mpsc::channel();
        let name = hook.name;
        let log = |which| move |l: &str| info!("[{name} {which}] {l}");
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        forward(stdout.map(Into::into), tx.clone(), log("stdout"));
        forward(stderr.map(Into::into), tx, log("stderr"));
        let outcome = wait(clock, hook.timeout, || match child.try_wait() {
            Ok(Some(status)) if status.success() => Some(Outcome::Success),
            Ok(Some(status)) => Some(Outcome::Failed(status.to_string())),
            Ok(None) => None,
            Err(e) => Some(Outcome::Failed(format!("cannot wait for it: {e}"))),
        });
        if !matches!(child.try_wait(), Ok(Some(_))) {
            stop(&mut child); // timed out, interrupted or cannot be waited for
        }
        // Nothing is sent: this waits until both readers are at their end.
        let _ = eof.recv_timeout(OUTPUT_WAIT);
        outcome
    })
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
        let action = crate::config::HookAction::Command(shlex::split(cmd).unwrap());
        let timeout = Duration::from_millis(timeout_ms);
        Hook {
            name: "test",
            action,
            timeout,
        }
    }

    #[test]
    fn success_failure_and_not_found() {
        let mut t = Wall { interrupt_at: None };
        assert_eq!(run(&hook("true", 5000), &mut t), Outcome::Success);
        assert_eq!(
            run(&hook("false", 5000), &mut t),
            Outcome::Failed("exit status: 1".into())
        );
        match run(&hook("/nonexistent/program arg", 5000), &mut t) {
            Outcome::Failed(why) => assert!(why.contains("started: /nonexistent/program"), "{why}"),
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
        reaper::start_reaper().unwrap();
        let mut t = Wall { interrupt_at: None };
        for _ in 0..30 {
            assert_eq!(
                run(&hook("sh -c 'exit 7'", 5000), &mut t),
                Outcome::Failed("exit status: 7".into())
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
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        forward(child.stdout.take().map(Into::into), tx, move |l| {
            sink.lock().unwrap().push(l.to_owned());
        });
        child.wait().unwrap();
        let started = Instant::now();
        let _ = eof.recv_timeout(Duration::from_secs(5));
        assert!(started.elapsed() < Duration::from_secs(4), "returns at EOF");
        assert_eq!(*lines.lock().unwrap(), ["early", "late"]);
        // A pipe held open: the wait ends at its bound.
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30 & echo x"])
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let (tx, eof) = mpsc::channel();
        forward(child.stdout.take().map(Into::into), tx, |_| {});
        child.wait().unwrap();
        let started = Instant::now();
        let _ = eof.recv_timeout(Duration::from_millis(100));
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
