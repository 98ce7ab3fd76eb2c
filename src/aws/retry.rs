//! Retry timing: capped exponential backoff with full jitter, and the
//! pacing after throttling answers ([`Adaptive`], one per ELBv2 token
//! [`Bucket`]); see docs/design.md, "The pacing model". Pure: time and
//! randomness are passed in.

use std::time::{Duration, Instant};

/// The delay before retry number `attempt` (0 for the first), given a
/// random draw in `[0, 1)`: `random × min(5 s, 200 ms × 2^attempt)`
/// (short: a shutdown's grace period is tens of seconds).
pub fn backoff(attempt: u32, random: f64) -> Duration {
    let cap = Duration::from_secs(5);
    let ceiling = Duration::from_millis(200).saturating_mul(1 << attempt.min(20));
    ceiling.min(cap).mul_f64(unit(random))
}

/// A jittered polling interval: `interval × (0.8 + 0.4 × random)`, so pods
/// started together do not poll together.
pub fn jittered(interval: Duration, random: f64) -> Duration {
    interval.mul_f64(0.8 + 0.4 * unit(random))
}

/// A random draw clamped into `[0, 1]`, NaN as 1 (`mul_f64` panics on NaN).
fn unit(random: f64) -> f64 {
    if random.is_nan() {
        1.0
    } else {
        random.clamp(0.0, 1.0)
    }
}

/// The ELBv2 token bucket an action draws from (ELB user guide, "Request
/// throttling for the ELB API": `Describe*` calls share one; the
/// registration calls have their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// `Describe*` (DescribeTargetGroups, DescribeTargetHealth).
    Describe,
    /// RegisterTargets, DeregisterTargets.
    Mutating,
    /// Anything else (STS, credential endpoints): no shared ELBv2 bucket.
    Other,
}

/// The rate assumed when the first throttling answer comes (calls/s).
const START_RATE: f64 = 1.0;
/// The rate is multiplied by this on each throttling answer (CUBIC's β; the
/// SDKs use 0.7 on a measured rate, we cut harder from an assumed one).
const BETA: f64 = 0.5;
/// Lowest rate: one call in 5 s (a retry waits at most 10 s).
const MIN_RATE: f64 = 0.2;
/// Highest rate the recovery reaches.
const MAX_RATE: f64 = 10.0;
/// CUBIC's scale constant, in calls/s per s³: back at the rate of the last
/// throttling answer after `cbrt(last × (1 − β) / C)` seconds (about 8 s
/// from 1 call/s, 6 s from 0.5).
const SCALE: f64 = 0.001;
/// Largest factor [`Adaptive::widen`] applies to a polling interval.
const MAX_WIDEN: u32 = 4;

/// A client-side rate limiter for one [`Bucket`], driven by throttling
/// answers (see the module docs). Inactive (no pacing at all) until the
/// first throttling answer; pure: time and randomness are passed in.
#[derive(Debug, Clone, Default)]
pub struct Adaptive {
    /// Throttling answers seen in this process's life.
    throttles: u32,
    /// The rate at the last throttling answer, before the cut (CUBIC's W_max).
    last_max: f64,
    /// The allowed rate (calls/s): cut on a throttling answer, set from the
    /// CUBIC curve on a success (as the SDKs do: throttling answers in a
    /// row keep cutting).
    rate: f64,
    /// When the last throttling answer came.
    last_throttle: Option<Instant>,
}

impl Adaptive {
    /// Throttling answers seen so far.
    pub fn throttles(&self) -> u32 {
        self.throttles
    }

    /// The allowed rate (calls/s); `None` before any throttling.
    pub fn rate(&self) -> Option<f64> {
        self.last_throttle.map(|_| self.rate)
    }

    /// The CUBIC curve at `now`: `C × (t − K)³ + W_max` with
    /// `K = cbrt(W_max × (1 − β) / C)`, `t` the time since the last
    /// throttling answer; `β × W_max` right after it.
    fn cubic(&self, now: Instant) -> Option<f64> {
        let at = self.last_throttle?;
        let t = now.saturating_duration_since(at).as_secs_f64();
        let k = (self.last_max * (1.0 - BETA) / SCALE).cbrt();
        let cubic = SCALE * (t - k).powi(3) + self.last_max;
        Some(cubic.clamp(MIN_RATE, MAX_RATE))
    }

    /// Records a throttling answer at `now`: the rate is cut by β.
    pub fn on_throttle(&mut self, now: Instant) {
        self.last_max = self.rate().unwrap_or(START_RATE);
        self.rate = (self.last_max * BETA).max(MIN_RATE);
        self.last_throttle = Some(now);
        self.throttles = self.throttles.saturating_add(1);
    }

    /// Records a successful answer at `now`: the rate follows the CUBIC
    /// recovery.
    pub fn on_success(&mut self, now: Instant) {
        if let Some(rate) = self.cubic(now) {
            self.rate = rate;
        }
    }

    /// The delay before retrying after a throttling answer (recorded with
    /// [`Adaptive::on_throttle`]): `random × 2 / rate`, full jitter over two
    /// slots of the cut rate. Zero before any throttling.
    pub fn retry_delay(&self, random: f64) -> Duration {
        match self.rate() {
            Some(rate) => Duration::from_secs_f64(2.0 / rate).mul_f64(unit(random)),
            None => Duration::ZERO,
        }
    }

    /// A polling interval widened for the rest of the process's life after
    /// throttling: doubled after the first throttling answer, quadrupled
    /// after the second and later ones.
    pub fn widen(&self, interval: Duration) -> Duration {
        let factor = 1u32 << self.throttles.min(MAX_WIDEN.trailing_zeros());
        interval.saturating_mul(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(
            backoff(0, 0.999_999),
            Duration::from_millis(200).mul_f64(0.999_999)
        );
        assert_eq!(backoff(1, 0.5), Duration::from_millis(200));
        assert_eq!(backoff(3, 1.0), Duration::from_millis(1600));
        assert_eq!(backoff(10, 1.0), Duration::from_secs(5));
        assert_eq!(backoff(u32::MAX, 1.0), Duration::from_secs(5));
        assert_eq!(backoff(5, 0.0), Duration::ZERO);
        assert_eq!(backoff(5, f64::NAN), Duration::from_secs(5));
    }

    #[test]
    fn jitter_range() {
        let i = Duration::from_secs(5);
        assert_eq!(jittered(i, 0.0), Duration::from_secs(4));
        assert_eq!(jittered(i, 1.0), Duration::from_secs(6));
        assert_eq!(jittered(i, f64::INFINITY), Duration::from_secs(6));
        assert_eq!(jittered(i, f64::NAN), Duration::from_secs(6));
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn inactive_until_throttled() {
        let a = Adaptive::default();
        assert_eq!(a.rate(), None);
        assert_eq!(a.retry_delay(0.9), Duration::ZERO);
        assert_eq!(a.widen(secs(5.0)), secs(5.0));
    }

    #[test]
    fn throttling_cuts_the_rate_and_spreads_retries() {
        let mut a = Adaptive::default();
        let t0 = Instant::now();
        a.on_throttle(t0);
        // β × 1 call/s: retries spread over [0, 4 s).
        let r = a.rate().unwrap();
        assert!((r - 0.5).abs() < 1e-9, "{r}");
        assert_eq!(a.retry_delay(0.5), secs(2.0));
        assert_eq!(a.retry_delay(0.0), Duration::ZERO);
        // A second throttling answer at once: 0.25 calls/s, over [0, 8 s).
        a.on_throttle(t0);
        assert!((a.rate().unwrap() - 0.25).abs() < 1e-9);
        assert_eq!(a.retry_delay(1.0), secs(8.0));
        // Many more: never below one call in 5 s.
        for _ in 0..10 {
            a.on_throttle(t0);
        }
        assert_eq!(a.rate(), Some(MIN_RATE));
        assert_eq!(a.retry_delay(1.0), secs(10.0));
        assert_eq!(a.retry_delay(f64::NAN), secs(10.0));
        assert_eq!(a.throttles(), 12);
    }

    #[test]
    fn recovers_along_a_cubic_curve() {
        let mut a = Adaptive::default();
        let t0 = Instant::now();
        a.on_throttle(t0);
        let k = (1.0f64 * (1.0 - BETA) / SCALE).cbrt();
        let at = |s: f64| a.cubic(t0 + secs(s)).unwrap();
        // Concave up to W_max at K, flat around it, then growing, capped.
        assert!(at(1.0) > 0.5 && at(1.0) < at(4.0));
        assert!((at(k) - 1.0).abs() < 1e-6);
        assert!(at(k + 1.0) - 1.0 < 0.01);
        assert!(at(k + 20.0) > 5.0);
        assert_eq!(at(1000.0), MAX_RATE);
        // Throttling answers in a row keep cutting; one after a success
        // cuts from the rate reached.
        assert!((a.rate().unwrap() - 0.5).abs() < 1e-9);
        let mid = at(4.0);
        a.on_success(t0 + secs(4.0));
        assert_eq!(a.rate(), Some(mid));
        a.on_throttle(t0 + secs(4.0));
        assert!((a.rate().unwrap() - mid * BETA).abs() < 1e-9);
    }

    #[test]
    fn widening_is_for_life_and_bounded() {
        let mut a = Adaptive::default();
        let t0 = Instant::now();
        a.on_throttle(t0);
        assert_eq!(a.widen(secs(5.0)), secs(10.0));
        a.on_throttle(t0);
        assert_eq!(a.widen(secs(5.0)), secs(20.0));
        a.on_throttle(t0);
        assert_eq!(a.widen(secs(5.0)), secs(20.0));
        // Long after, the rate has recovered, the widening stays.
        a.on_success(t0 + secs(3600.0));
        assert_eq!(a.rate(), Some(MAX_RATE));
        assert_eq!(a.widen(secs(5.0)), secs(20.0));
    }
}
