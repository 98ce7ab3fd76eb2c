//! `GET /lb-health`, for the target group's own health check: 503 from the
//! first instant of a drain (an NLB stops new connections to a failing
//! target sooner than to a deregistered one), else the app check's result.

use log::{info, warn};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long an app check's result is reused.
const CACHE_FOR: Duration = Duration::from_secs(1);
/// Timeout of one app check run for `/lb-health`.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// An app check: `Ok` when the app is up, else why not; it bounds its own time.
pub type AppCheck = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The app check, and when it last ran with what result.
pub struct LbHealth {
    check: Option<AppCheck>,
    last: Mutex<Option<(Instant, bool)>>,
}

impl LbHealth {
    /// With `check` as the app check (`None`: follow the sidecar alone).
    pub fn new(check: Option<AppCheck>) -> Self {
        LbHealth {
            check,
            last: Mutex::new(None),
        }
    }

    /// The status code and body at `now`. One request at a time runs the
    /// check; the others wait for it.
    pub fn answer(&self, draining: bool, now: Instant) -> (u16, &'static str) {
        let check = match &self.check {
            _ if draining => return (503, "draining"),
            None => return (200, "ok"),
            Some(check) => check,
        };
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let up = match *last {
            Some((at, up)) if now.saturating_duration_since(at) < CACHE_FOR => up,
            was => {
                let r = check();
                // Logged on a change only: checks come every few seconds.
                match (&r, was.map(|(_, up)| up)) {
                    (Err(why), None | Some(true)) => warn!("/lb-health: the app is not up: {why}"),
                    (Ok(()), Some(false)) => info!("/lb-health: the app is up again"),
                    _ => {}
                }
                *last = Some((now, r.is_ok()));
                r.is_ok()
            }
        };
        // The reason stays in the log: this answer may reach the whole VPC.
        match up {
            true => (200, "ok"),
            false => (503, "app not up"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn counting(up: Arc<AtomicUsize>, runs: Arc<AtomicUsize>) -> AppCheck {
        Box::new(move || {
            runs.fetch_add(1, Ordering::SeqCst);
            if up.load(Ordering::SeqCst) == 1 {
                Ok(())
            } else {
                Err("127.0.0.1:8080: connection refused".into())
            }
        })
    }

    #[test]
    fn without_app_check_follows_the_drain() {
        let h = LbHealth::new(None);
        let now = Instant::now();
        assert_eq!(h.answer(false, now), (200, "ok"));
        assert_eq!(h.answer(true, now), (503, "draining"));
    }

    #[test]
    fn app_check_is_cached_for_at_most_a_second() {
        let up = Arc::new(AtomicUsize::new(1));
        let runs = Arc::new(AtomicUsize::new(0));
        let h = LbHealth::new(Some(counting(up.clone(), runs.clone())));
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        assert_eq!(h.answer(false, ms(0)).0, 200);
        up.store(0, Ordering::SeqCst);
        // Cached: still 200, no new run.
        assert_eq!(h.answer(false, ms(999)).0, 200);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // A second later: checked again, the app is down.
        assert_eq!(h.answer(false, ms(1000)), (503, "app not up"));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        // A drain answers 503 at once, without running the check.
        up.store(1, Ordering::SeqCst);
        assert_eq!(h.answer(true, ms(5000)).0, 503);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(h.answer(false, ms(5000)).0, 200);
    }
}
