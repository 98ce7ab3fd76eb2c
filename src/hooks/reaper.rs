//! The reaper of orphaned processes, for when the sidecar is PID 1.
//!
//! In a scratch image the sidecar is its container's PID 1, so processes a
//! hook leaves behind (a daemon it started, a double fork) become its
//! children when they are orphaned, and their zombies stay unless it reaps
//! them. [`start_reaper`] does, without ever collecting a hook's own exit
//! status: a hook's child exists only inside `while_hook_runs`, which
//! holds the lock of `CHILDREN` (from spawn to its wait), and the reaper
//! collects other children only while holding that lock.

use log::{info, warn};
use std::sync::{Condvar, Mutex, MutexGuard};

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

/// Runs `f`, which spawns a hook's child and waits for it, holding the
/// lock that keeps the reaper off; then wakes a reaper waiting for
/// children to appear (orphans of the hook may be waiting).
pub(super) fn while_hook_runs<R>(f: impl FnOnce() -> R) -> R {
    let mut runs = CHILDREN.lock();
    let result = f();
    *runs += 1;
    drop(runs);
    CHILDREN.done.notify_all();
    result
}
