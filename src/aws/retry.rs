//! Retry timing: capped exponential backoff with full jitter, and the
//! clock, randomness and interruptible sleep it needs, passed in.
//!
//! ELBv2's rate limits are per account and region, shared by every pod that
//! calls it. A rolling update of a large Deployment makes many sidecars call
//! at once; full jitter (`random[0,1) × min(cap, base × 2^attempt)`) spreads
//! their retries so they do not hit the limit in lockstep again.

use std::time::{Duration, Instant, SystemTime};

/// The program's view of time and chance: everything that waits, reads a
/// clock or draws a random number goes through it, so retry and polling
/// logic is tested with a fake that never sleeps.
pub trait Timer {
    /// Monotonic now.
    fn now(&self) -> Instant;
    /// Wall-clock now (for signing and credential expiry).
    fn wall(&self) -> SystemTime;
    /// A random number in `[0, 1)`.
    fn random(&mut self) -> f64;
    /// Sleeps `d`, or less when interrupted.
    ///
    /// # Errors
    /// [`Interrupted`] when a signal or drain request arrived during the sleep.
    fn sleep(&mut self, d: Duration) -> Result<(), Interrupted>;
}

/// A wait was cut short by an event (signal or drain request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

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

/// A small PRNG (SplitMix64) for jitter; not for anything secret.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// Seeds the generator.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// A seed from the clock and the process id.
    pub fn seed_from_env() -> u64 {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        nanos ^ (u64::from(std::process::id()) << 32)
    }

    /// The next number in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
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

    #[test]
    fn splitmix_is_uniformish_and_reproducible() {
        let mut a = SplitMix::new(42);
        let mut b = SplitMix::new(42);
        let xs: Vec<f64> = (0..1000).map(|_| a.next_f64()).collect();
        let ys: Vec<f64> = (0..1000).map(|_| b.next_f64()).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / 1000.0;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }
}
