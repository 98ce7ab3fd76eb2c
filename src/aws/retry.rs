//! Retry timing: capped exponential backoff with full jitter. The clock,
//! randomness and interruptible sleep it needs are passed in
//! ([`crate::clock::Clock`]).
//!
//! ELBv2's rate limits are per account and region, shared by every pod that
//! calls it. A rolling update of a large Deployment makes many sidecars call
//! at once; full jitter (`random[0,1) × min(cap, base × 2^attempt)`) spreads
//! their retries so they do not hit the limit in lockstep again.

use std::time::Duration;

/// Backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Upper bound of the first retry's delay.
    pub base: Duration,
    /// Upper bound of any delay.
    pub cap: Duration,
}

impl Default for Backoff {
    /// 200 ms doubling up to 5 s: a sidecar's shutdown has a grace period
    /// of tens of seconds, so waits stay short.
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// Delay before retry number `attempt` (0 for the first retry), given a
    /// random draw in `[0, 1)`: `random × min(cap, base × 2^attempt)`.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let ceiling = self
            .base
            .checked_mul(1u32 << attempt.min(20))
            .unwrap_or(self.cap)
            .min(self.cap);
        ceiling.mul_f64(unit(random))
    }
}

/// A jittered polling interval: `interval × (0.8 + 0.4 × random)`, so pods
/// started together do not poll together.
pub fn jittered(interval: Duration, random: f64) -> Duration {
    interval.mul_f64(0.8 + 0.4 * unit(random))
}

/// Clamps a random draw into `[0, 1]`; NaN counts as 1 (never a panic in
/// `Duration::mul_f64`).
fn unit(random: f64) -> f64 {
    if random.is_nan() {
        1.0
    } else {
        random.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff::default();
        assert_eq!(
            b.delay(0, 0.999_999),
            Duration::from_millis(200).mul_f64(0.999_999)
        );
        assert_eq!(b.delay(1, 0.5), Duration::from_millis(200));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(1600));
        assert_eq!(b.delay(10, 1.0), Duration::from_secs(5));
        assert_eq!(b.delay(u32::MAX, 1.0), Duration::from_secs(5));
        assert_eq!(b.delay(5, 0.0), Duration::ZERO);
        assert_eq!(b.delay(5, f64::NAN), Duration::from_secs(5));
    }

    #[test]
    fn jitter_range() {
        let i = Duration::from_secs(5);
        assert_eq!(jittered(i, 0.0), Duration::from_secs(4));
        assert_eq!(jittered(i, 1.0), Duration::from_secs(6));
        assert_eq!(jittered(i, f64::INFINITY), Duration::from_secs(6));
        assert_eq!(jittered(i, f64::NAN), Duration::from_secs(6));
    }
}
