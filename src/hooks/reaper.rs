//! Reaps the orphans hooks leave when the sidecar is PID 1, once a second
//! (as tini does). It never takes a hook's own exit status: a hook's child
//! exists only while `hold`'s guard lives, and the reaper reaps only
//! while holding it.

use log::info;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

static HOOK: Mutex<()> = Mutex::new(());

/// Keeps the reaper off while the guard lives (a hook's spawn and wait).
pub(super) fn hold() -> MutexGuard<'static, ()> {
    HOOK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts the thread that reaps orphans.
pub fn start_reaper() -> std::io::Result<()> {
    let reap = || loop {
        let n = {
            let _no_hook_child = hold();
            reap_exited()
        };
        if n > 0 {
            info!("reaped {n} orphaned process(es)");
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    std::thread::Builder::new()
        .name("reaper".into())
        .stack_size(256 * 1024)
        .spawn(reap)
        .map(drop)
}

#[allow(unsafe_code)]
fn reap_exited() -> usize {
    // SAFETY: waitpid(2) writes only into the c_int it is given.
    std::iter::repeat_with(|| unsafe { libc::waitpid(-1, &mut 0, libc::WNOHANG) })
        .take_while(|pid| *pid > 0)
        .count()
}
