//! Signals and drain requests, as events on one channel. [`SignalClock`]'s
//! sleeps wait on it, so an event cuts any wait short. During shutdown the
//! clock is *shielded*: events are queued but do not interrupt, so a second
//! SIGTERM cannot skip the deregistration.

use crate::clock::{Clock, Interrupted, SplitMix};
use log::info;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

/// The answer to a drain request: `Ok` when deregistered, else the reason.
pub type DrainResult = Result<String, String>;

/// Something that changes the lifecycle's course.
#[derive(Debug)]
pub enum Event {
    /// SIGTERM or SIGINT (the number).
    Signal(i32),
    /// A `/drain` request; the answer goes back on the sender.
    Drain(Sender<DrainResult>),
}

/// The name of a signal number we handle.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "signal",
    }
}

/// Registers SIGTERM and SIGINT and forwards them to `tx` from a thread,
/// calling `on_signal` first (the main thread may be inside a request).
///
/// # Errors
/// The OS error if a handler cannot be registered or the thread started.
pub fn forward_signals(
    tx: Sender<Event>,
    on_signal: impl Fn() + Send + 'static,
) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    let forward = move || {
        for sig in signals.forever() {
            info!("received {}", signal_name(sig));
            on_signal();
            let _ = tx.send(Event::Signal(sig));
        }
    };
    let thread = std::thread::Builder::new().name("signals".into());
    thread.stack_size(256 * 1024).spawn(forward).map(drop)
}

/// A [`Clock`] that also delivers the events that cut its sleeps short.
pub trait EventClock: Clock {
    /// Takes the oldest event that has arrived, without waiting.
    fn take_event(&mut self) -> Option<Event> {
        self.wait_event(Some(Duration::ZERO))
    }
    /// Waits for the next event, up to `timeout` (forever when `None`).
    fn wait_event(&mut self, timeout: Option<Duration>) -> Option<Event>;
    /// While shielded, events are queued but do not interrupt sleeps.
    fn set_shielded(&mut self, shielded: bool);
}

/// The program's clock: real time, SplitMix jitter, sleeps cut by events.
pub struct SignalClock {
    rx: Receiver<Event>,
    pending: VecDeque<Event>,
    shielded: bool,
    rng: SplitMix,
}

impl SignalClock {
    /// A clock reading events from `rx`, its jitter seeded from the OS's
    /// randomness (std's hash keys).
    pub fn new(rx: Receiver<Event>) -> Self {
        let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8);
        SignalClock {
            rx,
            pending: VecDeque::new(),
            shielded: false,
            rng: SplitMix::new(seed),
        }
    }

    // Even a zero timeout looks: an arrived event must stop a retry's new
    // request. Once every sender is gone it still waits: no caller spins.
    fn recv(&self, timeout: Option<Duration>) -> Option<Event> {
        let timeout = timeout.unwrap_or(Duration::MAX); // waits for ever
        let got = self.rx.recv_timeout(timeout);
        if let Err(RecvTimeoutError::Disconnected) = got {
            std::thread::sleep(timeout);
        }
        got.ok()
    }
}

impl Clock for SignalClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }

    fn random(&mut self) -> f64 {
        self.rng.next_f64()
    }

    fn sleep(&mut self, d: Duration) -> Result<(), Interrupted> {
        let end = Instant::now() + d;
        while self.shielded || self.pending.is_empty() {
            let Some(ev) = self.recv(Some(end.saturating_duration_since(Instant::now()))) else {
                return Ok(());
            };
            self.pending.push_back(ev);
        }
        Err(Interrupted)
    }
}

impl EventClock for SignalClock {
    fn wait_event(&mut self, timeout: Option<Duration>) -> Option<Event> {
        self.pending.pop_front().or_else(|| self.recv(timeout))
    }

    fn set_shielded(&mut self, shielded: bool) {
        self.shielded = shielded;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn waits_last_their_time_when_no_event_can_come() {
        let (tx, rx) = channel::<Event>();
        drop(tx);
        let mut t = SignalClock::new(rx);
        let start = Instant::now();
        assert!(t.wait_event(Some(Duration::from_millis(50))).is_none());
        assert!(start.elapsed() >= Duration::from_millis(50), "no spin");
        assert_eq!(t.sleep(Duration::from_millis(20)), Ok(()));
        assert!(start.elapsed() >= Duration::from_millis(70));
    }

    #[test]
    fn events_cut_sleeps_short_unless_shielded() {
        let (tx, rx) = channel();
        let mut t = SignalClock::new(rx);
        let start = Instant::now();
        assert_eq!(t.sleep(Duration::from_millis(20)), Ok(()));
        assert!(start.elapsed() >= Duration::from_millis(20));

        tx.send(Event::Signal(SIGTERM)).unwrap();
        assert_eq!(
            t.sleep(Duration::ZERO),
            Err(Interrupted),
            "even a zero sleep"
        );
        assert!(matches!(t.take_event(), Some(Event::Signal(SIGTERM))));
        tx.send(Event::Signal(SIGTERM)).unwrap();
        let start = Instant::now();
        assert_eq!(t.sleep(Duration::from_secs(10)), Err(Interrupted));
        assert!(start.elapsed() < Duration::from_secs(5));
        // Still pending: later sleeps are interrupted at once.
        assert_eq!(t.sleep(Duration::from_secs(10)), Err(Interrupted));
        assert!(matches!(t.take_event(), Some(Event::Signal(SIGTERM))));

        t.set_shielded(true);
        tx.send(Event::Signal(SIGINT)).unwrap();
        assert_eq!(t.sleep(Duration::from_millis(30)), Ok(()));
        assert!(matches!(t.take_event(), Some(Event::Signal(SIGINT))));
        assert!(t.take_event().is_none());
        assert!(t.wait_event(Some(Duration::from_millis(10))).is_none());
        assert!(t.random() < 1.0);
        assert_eq!(signal_name(SIGINT), "SIGINT");
    }
}
