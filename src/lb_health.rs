//! `GET /lb-health`: the answer meant for the target group's own health
//! check.
//!
//! 200 while the app check passes (`-wait-for-tcp` / `-wait-for-http`, run
//! again with a short timeout, at most once per [`CACHE_FOR`]) and no drain
//! has begun; 503 from the first instant of a drain request or a signal,
//! before DeregisterTargets is sent. With no app check configured it
//! follows the sidecar alone: 200 until a drain or signal.
//!
//! Why: a Network Load Balancer keeps opening new connections to a target
//! for a while after DeregisterTargets, but stops sending new connections
//! to a target its health checks find unhealthy after `interval x
//! unhealthy threshold`. Failing the health check at the first instant of
//! the drain closes that window sooner; the drain quiet period
//! (`-drain-quiet-period`) then sees when the connections really stopped.
//!
//! The decision is pure ([`LbHealth::answer`] takes the time and whether a
//! drain has begun); the app check is a closure given by the caller.

use log::{info, warn};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an app check's result is reused.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

/// An app check: `Ok` when the app is up, else why not. It must bound its
/// own time (the real ones time out after [`CHECK_TIMEOUT`]).
pub type AppCheck = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Timeout of one app check run for `/lb-health`.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The answer to `/lb-health`: HTTP status and a short body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// 200 or 503.
    pub code: u16,
    /// `ok`, `draining`, or why the app is not up.
    pub body: String,
}

/// The `/lb-health` state: the app check and its last result.
pub struct LbHealth {
    check: Option<AppCheck>,
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl std::fmt::Debug for LbHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LbHealth")
            .field("check", &self.check.is_some())
            .finish_non_exhaustive()
    }
}

impl LbHealth {
    /// With `check` as the app check (`None`: follow the sidecar alone).
    pub fn new(check: Option<AppCheck>) -> Self {
        LbHealth {
            check,
            last: Mutex::new(None),
        }
    }

    /// The answer at `now`; `draining` says whether a drain or signal has
    /// begun. Runs the app check when its last result is older than
    /// [`CACHE_FOR`] (one request at a time runs it; the others wait for
    /// its result).
    pub fn answer(&self, draining: bool, now: Instant) -> Answer {
        if draining {
            return Answer {
                code: 503,
                body: "draining".into(),
            };
        }
        let Some(check) = &self.check else {
            return Answer {
                code: 200,
                body: "ok".into(),
            };
        };
        let result = match self.last.lock() {
            Ok(mut last) => match &*last {
                Some((at, r)) if now.saturating_duration_since(*at) < CACHE_FOR => r.clone(),
                _ => {
                    let r = check();
                    // Logged on a change only: health checks come every few seconds.
                    match (&r, last.as_ref().map(|(_, was)| was.is_ok())) {
                        (Err(why), None | Some(true)) => {
                            warn!("/lb-health: the app is not up: {why}")
                        }
                        (Ok(()), Some(false)) => info!("/lb-health: the app is up again"),
                        _ => {}
                    }
                    *last = Some((now, r.clone()));
                    r
                }
            },
            // A check panicked while holding the lock: check without the cache.
            Err(_) => check(),
        };
        // The reason stays in the log: this answer may reach the whole VPC.
        match result {
            Ok(()) => Answer {
                code: 200,
                body: "ok".into(),
            },
            Err(_) => Answer {
                code: 503,
                body: "app not up".into(),
            },
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
        assert_eq!(h.answer(false, now).code, 200);
        assert_eq!(
            h.answer(true, now),
            Answer {
                code: 503,
                body: "draining".into()
            }
        );
    }

    #[test]
    fn app_check_is_cached_for_at_most_a_second() {
        let up = Arc::new(AtomicUsize::new(1));
        let runs = Arc::new(AtomicUsize::new(0));
        let h = LbHealth::new(Some(counting(up.clone(), runs.clone())));
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        assert_eq!(h.answer(false, ms(0)).code, 200);
        up.store(0, Ordering::SeqCst);
        // Cached: still 200, no new run.
        assert_eq!(h.answer(false, ms(999)).code, 200);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // A second later: checked again, the app is down.
        let a = h.answer(false, ms(1000));
        assert_eq!(a.code, 503);
        assert_eq!(a.body, "app not up");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        // A drain answers 503 at once, without running the check.
        up.store(1, Ordering::SeqCst);
        assert_eq!(h.answer(true, ms(5000)).code, 503);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(h.answer(false, ms(5000)).code, 200);
    }
}
