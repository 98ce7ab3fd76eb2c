//! Reaps the orphans hooks leave when the sidecar is PID 1. It never takes
//! a hook's own exit status: a hook's child exists only inside
//! `while_hook_runs`, which holds `RUNS`'s lock, and the reaper reaps only
//! while holding it.

use log::{info, warn};
use std::io;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Completed hook runs (after each, orphans may be waiting).
static RUNS: Mutex<u64> = Mutex::new(0);
static RAN: Condvar = Condvar::new();

fn runs() -> MutexGuard<'static, u64> {
    RUNS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts the thread that reaps orphans; it sleeps until a child exits
/// (until a hook ran, while there is no child).
pub fn start_reaper() -> io::Result<()> {
    std::thread::Builder::new()
        .name("reaper".into())
        .stack_size(256 * 1024)
        .spawn(reap_forever)
        .map(drop)
}

fn reap_forever() {
    loop {
        let before = *runs();
        match wait_for_any_child() {
            Ok(()) => {
                let _no_hook_child = runs();
                let n = reap_exited();
                if n > 0 {
                    info!("reaped {n} orphaned process(es)");
                }
            }
            // No children: none can appear before a hook runs.
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                drop(RAN.wait_while(runs(), |r| *r == before));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return warn!("reaping orphaned processes stopped: {e}"),
        }
    }
}

/// Blocks until some child has exited, without reaping it.
#[allow(unsafe_code)]
fn wait_for_any_child() -> io::Result<()> {
    // SAFETY: siginfo_t is plain data, valid when zeroed; waitid(2) only
    // writes into it.
    let rc = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT)
    };
    (rc == 0).then_some(()).ok_or_else(io::Error::last_os_error)
}

#[allow(unsafe_code)]
fn reap_exited() -> usize {
    // SAFETY: waitpid(2) writes only into the c_int it is given.
    std::iter::repeat_with(|| unsafe { libc::waitpid(-1, &mut 0, libc::WNOHANG) })
        .take_while(|pid| *pid > 0)
        .count()
}

/// Runs `f` (a hook's spawn and wait) with the reaper kept off, then wakes it.
pub(super) fn while_hook_runs<R>(f: impl FnOnce() -> R) -> R {
    let mut runs = runs();
    let result = f();
    *runs += 1;
    drop(runs);
    RAN.notify_all();
    result
}
