//! Retry timing, pure: capped exponential backoff with full jitter, and
//! the pacing after throttling answers (docs/design.md, "The pacing model").

use std::time::{Duration, Instant};

/// The delay before retry `attempt` (0 first) for a draw in `[0, 1)`:
/// `random × min(5 s, 200 ms × 2^attempt)`.
pub(crate) fn backoff(attempt: u32, random: f64) -> Duration {
    let ceiling = Duration::from_millis(200).saturating_mul(1 << attempt.min(20));
    ceiling.min(Duration::from_secs(5)).mul_f64(unit(random))
}

/// `interval × (0.8 + 0.4 × random)`: pods started together do not poll together.
pub(crate) fn jittered(interval: Duration, random: f64) -> Duration {
    interval.mul_f64(0.8 + 0.4 * unit(random))
}

/// Into [0, 1], NaN as 1 (`mul_f64` panics on NaN; `min` replaces it).
pub(crate) fn unit(random: f64) -> f64 {
    random.clamp(0.0, 1.0).min(1.0)
}

/// The ELBv2 token bucket an action draws from (ELB user guide, "Request
/// throttling for the ELB API").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// `Describe*`.
    Describe,
    /// RegisterTargets, DeregisterTargets.
    Mutating,
    /// STS, credentials endpoints: no ELBv2 bucket (must stay last: the client indexes by it).
    Other,
}

const FIRST_SLOT: Duration = Duration::from_secs(4);
const MAX_SLOT: Duration = Duration::from_secs(10);
/// A success this long after the last throttling answer starts the slot over.
const RECOVERY: Duration = Duration::from_secs(8);

/// The pacing of one [`Bucket`] after throttling answers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Adaptive {
    /// Throttling answers seen so far.
    pub(crate) throttles: u32,
    streak: u32,
    last_throttle: Option<Instant>,
}

impl Adaptive {
    pub(crate) fn on_throttle(&mut self, now: Instant) {
        self.throttles = self.throttles.saturating_add(1);
        self.streak = self.streak.saturating_add(1);
        self.last_throttle = Some(now);
    }

    pub(crate) fn on_success(&mut self, now: Instant) {
        if self
            .last_throttle
            .is_some_and(|t| now.saturating_duration_since(t) >= RECOVERY)
        {
            self.streak = 0;
        }
    }

    /// `random × slot`: 4 s, doubling with each throttling answer in a row
    /// up to 10 s; zero before any.
    pub(crate) fn retry_delay(&self, random: f64) -> Duration {
        if self.streak == 0 {
            return Duration::ZERO;
        }
        let slot = FIRST_SLOT.saturating_mul(1 << (self.streak.min(3) - 1));
        slot.min(MAX_SLOT).mul_f64(unit(random))
    }

    /// A polling interval, doubled after the first throttling answer and
    /// quadrupled after later ones, for life.
    pub(crate) fn widen(&self, interval: Duration) -> Duration {
        interval.saturating_mul(1 << self.throttles.min(2))
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
        assert_eq!(a.retry_delay(0.9), Duration::ZERO);
        assert_eq!(a.widen(secs(5.0)), secs(5.0));
    }

    #[test]
    fn throttling_in_a_row_doubles_the_slot_and_a_late_success_starts_it_over() {
        let mut a = Adaptive::default();
        let t0 = Instant::now();
        a.on_throttle(t0);
        assert_eq!(a.retry_delay(0.5), secs(2.0));
        assert_eq!(a.retry_delay(0.0), Duration::ZERO);
        a.on_success(t0 + secs(1.0));
        a.on_throttle(t0 + secs(1.0));
        assert_eq!(a.retry_delay(1.0), secs(8.0));
        for _ in 0..10 {
            a.on_throttle(t0 + secs(1.0));
        }
        assert_eq!(a.retry_delay(1.0), secs(10.0));
        assert_eq!(a.retry_delay(f64::NAN), secs(10.0));
        assert_eq!(a.throttles, 12);
        a.on_success(t0 + secs(9.0));
        a.on_throttle(t0 + secs(9.0));
        assert_eq!(a.retry_delay(1.0), secs(4.0));
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
        a.on_success(t0 + secs(3600.0));
        assert_eq!(a.widen(secs(5.0)), secs(20.0));
    }
}
