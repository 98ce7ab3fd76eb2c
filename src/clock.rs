//! Time and chance, passed in: retry, polling and lifecycle logic take a
//! `&mut dyn Clock`, so tests drive them with a fake that never sleeps.

use std::time::{Duration, Instant, SystemTime};

/// Everything that waits, reads a clock or draws a random number.
pub trait Clock {
    /// Monotonic now.
    fn now(&self) -> Instant;
    /// Wall-clock now (for signing and credential expiry).
    fn wall(&self) -> SystemTime;
    /// A random number in `[0, 1)`.
    fn random(&mut self) -> f64;
    /// Sleeps `d`; [`Interrupted`] when a signal or drain request cut it short.
    fn sleep(&mut self, d: Duration) -> Result<(), Interrupted>;
}

/// A wait was cut short by an event (signal or drain request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

/// A small PRNG (SplitMix64) for jitter; not for anything secret.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// Seeds the generator.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
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

/// The one fake clock of the unit tests.
#[cfg(test)]
pub mod testing {
    use super::{Clock, Interrupted};
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    /// Fake time shared between a [`FakeClock`] and the fakes that take time
    /// (a transport whose requests have latency, a fake ELBv2): the time
    /// elapsed since the clock's start.
    pub type SharedTime = Rc<Cell<Duration>>;

    /// A clock that only moves when slept on or when a holder of its
    /// [`SharedTime`] moves it. Its wall clock starts at
    /// 2023-11-14T22:13:20Z (1_700_000_000 s after the epoch), its random
    /// source is fixed (0.5 unless set), and it records every sleep.
    pub struct FakeClock {
        start: Instant,
        time: SharedTime,
        /// What [`Clock::random`] returns.
        pub random: f64,
        /// Sleeps completed, in order (an interrupted sleep or one of zero,
        /// a look for events, is not recorded).
        pub slept: Vec<Duration>,
        /// Once this many sleeps completed, every later sleep is interrupted.
        pub interrupt_after: Option<usize>,
    }

    impl Default for FakeClock {
        fn default() -> Self {
            Self::new()
        }
    }

    impl FakeClock {
        /// A clock at its start, with random 0.5 and no interrupt.
        pub fn new() -> Self {
            FakeClock {
                start: Instant::now(),
                time: Rc::new(Cell::new(Duration::ZERO)),
                random: 0.5,
                slept: Vec::new(),
                interrupt_after: None,
            }
        }

        /// A handle on this clock's fake time, for fakes that take time.
        pub fn shared_time(&self) -> SharedTime {
            self.time.clone()
        }

        /// Fake time elapsed since the start.
        pub fn elapsed(&self) -> Duration {
            self.time.get()
        }

        /// Moves the fake time to `t` since the start (never backwards).
        pub fn advance_to(&self, t: Duration) {
            self.time.set(self.time.get().max(t));
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            self.start + self.elapsed()
        }
        fn wall(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_secs(1_700_000_000) + self.elapsed()
        }
        fn random(&mut self) -> f64 {
            self.random
        }
        fn sleep(&mut self, d: Duration) -> Result<(), Interrupted> {
            if self.interrupt_after.is_some_and(|n| self.slept.len() >= n) {
                return Err(Interrupted);
            }
            if !d.is_zero() {
                self.slept.push(d);
            }
            self.time.set(self.time.get() + d);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
