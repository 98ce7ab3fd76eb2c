//! The drain quiet period (`-drain-quiet-period DUR`): after the
//! deregistration (and after `-wait-drained`), wait until no new
//! connection to the target port has been accepted for DUR.
//!
//! Why: a Network Load Balancer keeps opening new connections to a target
//! for a while after DeregisterTargets has answered (seconds to a couple
//! of minutes). An app that stops listening as soon as `/drain` answers
//! refuses them. The sidecar shares the pod's network namespace, so the
//! kernel's TCP tables ([`crate::tcp_table`]) show it every connection the
//! app has: it samples them every [`SAMPLE_EVERY`] (often enough to see a
//! connection that lives 300 ms) and calls a connection new when its
//! (local, remote) address pair was not in the previous sample. The target
//! port (the registration's port, else the group's) is matched as the
//! local port, so the status and `/lb-health` listeners never count.
//!
//! Every connection state but listening counts: a connection that opened
//! and closed between two samples still shows as TIME_WAIT (when the app
//! closed first) or CLOSE_WAIT / LAST_ACK (when the client did) for a
//! moment. Only the time since the watch began is vouched for, so the wait
//! lasts at least DUR. It ends at the latest `-wait-drained-timeout` after
//! the deregistration (the budget it shares with `-wait-drained`).
//!
//! Signals do not cut it short: the clock is shielded during the whole
//! shutdown, and a SIGTERM arriving while the app's `preStop` waits on
//! `/drain` is exactly the case this wait is for (in a pod with a plain
//! sidecar container, the kubelet signals the sidecar while the app's
//! preStop hook runs). A second signal is logged and changes nothing; the
//! bound is `-wait-drained-timeout`, and the kubelet's SIGKILL at the end
//! of the grace period is the last word.
//!
//! What it cannot see: connections the load balancer has not opened yet.
//! DUR must cover the longest gap between two new connections while the
//! load balancer still sends them; with its health check pointed at
//! `/lb-health` the load balancer stops early, and a few seconds suffice.

use super::Lifecycle;
use crate::tcp_table::Entry;
use log::{info, warn};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often the TCP tables are read during the wait.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// A connection: our address and the peer's.
type Key = (SocketAddr, SocketAddr);

/// The connections to one of `ports` in a table, with whether each is open.
fn connections<'a>(table: &'a [Entry], ports: &'a [u16]) -> impl Iterator<Item = (Key, bool)> + 'a {
    table
        .iter()
        .filter(|e| e.state.is_connection() && ports.contains(&e.local.port()))
        .map(|e| ((e.local, e.remote), e.state.is_open()))
}

/// How a quiet wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuietEnd {
    /// No new connection for the whole period.
    Quiet,
    /// `-wait-drained-timeout` came first.
    TimedOut,
}

/// The pure part of the quiet wait: successive samples of the TCP table
/// in, the decision and the summary's facts out. Times are passed in.
#[derive(Debug, Clone)]
pub struct QuietWatch {
    ports: Vec<u16>,
    previous: HashSet<Key>,
    deregistered_at: Instant,
    started: Instant,
    last_new: Option<Instant>,
    /// When the last sample could not be read (the quiet clock restarts).
    last_blind: Option<Instant>,
    new_connections: usize,
    open: usize,
}

impl QuietWatch {
    /// Starts watching `ports` at `now` with a first sample; connections
    /// already in it are not new.
    pub fn new(ports: &[u16], deregistered_at: Instant, now: Instant, first: &[Entry]) -> Self {
        let mut watch = QuietWatch {
            ports: ports.to_vec(),
            previous: HashSet::new(),
            deregistered_at,
            started: now,
            last_new: None,
            last_blind: None,
            new_connections: 0,
            open: 0,
        };
        watch.take(first);
        watch
    }

    /// Keeps `sample` as the previous one; returns how many of its
    /// connections were not in the previous one.
    fn take(&mut self, sample: &[Entry]) -> usize {
        let mut current = HashSet::new();
        let mut open = 0;
        let mut new = 0;
        for (key, is_open) in connections(sample, &self.ports) {
            if is_open {
                open += 1;
            }
            if !self.previous.contains(&key) {
                new += 1;
            }
            current.insert(key);
        }
        self.previous = current;
        self.open = open;
        new
    }

    /// Takes a sample read at `now`; returns how many new connections it shows.
    pub fn observe(&mut self, sample: &[Entry], now: Instant) -> usize {
        let new = self.take(sample);
        if new > 0 {
            self.new_connections += new;
            self.last_new = Some(now);
        }
        new
    }

    /// A sample could not be read at `now`: what happened since the last
    /// one is unknown, so the quiet clock starts again.
    pub fn blind(&mut self, now: Instant) {
        self.last_blind = Some(now);
    }

    /// Since when nothing new has been seen.
    fn quiet_since(&self) -> Instant {
        [Some(self.started), self.last_new, self.last_blind]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(self.started)
    }

    /// How long it has been quiet at `now`.
    pub fn quiet_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.quiet_since())
    }

    /// Whether it has been quiet for `period` at `now`.
    pub fn is_quiet(&self, now: Instant, period: Duration) -> bool {
        self.quiet_for(now) >= period
    }

    /// When the last new connection was seen, relative to the deregistration.
    pub fn last_new_after_deregistration(&self) -> Option<Duration> {
        self.last_new
            .map(|t| t.saturating_duration_since(self.deregistered_at))
    }

    /// The one summary line.
    pub fn summary(&self, now: Instant, end: QuietEnd) -> String {
        let ports = self
            .ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let last = match self.last_new_after_deregistration() {
            Some(d) => format!(
                "last new connection to port {ports} {} after the deregistration",
                secs(d)
            ),
            None => format!(
                "no new connection to port {ports} since the watch began {} after the deregistration",
                secs(self.started.saturating_duration_since(self.deregistered_at))
            ),
        };
        let head = match end {
            QuietEnd::Quiet => "drain quiet period reached",
            QuietEnd::TimedOut => "drain quiet period NOT reached by -wait-drained-timeout",
        };
        format!(
            "{head}: {last}; quiet for {}; {} new connection(s) during the watch; {} connection(s) still open",
            secs(self.quiet_for(now)),
            self.new_connections,
            self.open
        )
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

impl Lifecycle<'_> {
    /// The local ports the app's load-balanced connections arrive on: each
    /// registration's port, else its group's.
    fn quiet_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .registrations
            .iter()
            .filter_map(|r| r.target.port.or(r.group_port))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The quiet wait when `-drain-quiet-period` is set; returns false
    /// when `-wait-drained-timeout` came first.
    pub(super) fn quiet_step(&mut self, deregistered_at: Instant) -> bool {
        match self.cfg.drain_quiet_period {
            Some(period) => self.wait_quiet(period, deregistered_at),
            None => true,
        }
    }

    /// Waits until no new connection to the target port has been accepted
    /// for `period`, at most until `-wait-drained-timeout` after
    /// `deregistered_at`. Returns false when the bound came first.
    fn wait_quiet(&mut self, period: Duration, deregistered_at: Instant) -> bool {
        let deadline = deregistered_at + self.cfg.wait_drained_timeout;
        let ports = self.quiet_ports();
        let first = if ports.is_empty() {
            Err("the target port is unknown (give -target-port)".to_owned())
        } else {
            self.effects.tcp_table()
        };
        let mut watch = match first {
            Ok(table) => QuietWatch::new(&ports, deregistered_at, self.clock.now(), &table),
            Err(e) => return self.wait_blind(period, deadline, &e),
        };
        info!(
            "waiting until no new connection to port {} for {} (drain quiet period)",
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
            humantime::format_duration(period)
        );
        let mut warned = false;
        loop {
            let now = self.clock.now();
            if watch.is_quiet(now, period) {
                info!("{}", watch.summary(now, QuietEnd::Quiet));
                return true;
            }
            if now >= deadline {
                warn!("{}", watch.summary(now, QuietEnd::TimedOut));
                return false;
            }
            // Shielded: events are queued, not acted on (see the module docs).
            let _ = self.clock.sleep(SAMPLE_EVERY.min(deadline - now));
            let now = self.clock.now();
            match self.effects.tcp_table() {
                Ok(table) => {
                    watch.observe(&table, now);
                }
                Err(e) => {
                    if !warned {
                        warn!("cannot read the TCP table ({e}); the quiet period starts again");
                        warned = true;
                    }
                    watch.blind(now);
                }
            }
        }
    }

    /// Without a TCP table: the quiet period becomes a fixed wait.
    fn wait_blind(&mut self, period: Duration, deadline: Instant, why: &str) -> bool {
        let now = self.clock.now();
        let end = (now + period).min(deadline);
        warn!(
            "cannot watch connections: {why}; waiting the whole -drain-quiet-period ({}) instead",
            humantime::format_duration(period)
        );
        while self.clock.now() < end {
            let _ = self.clock.sleep(end - self.clock.now());
        }
        now + period <= deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp_table::TcpState;

    fn conn(remote_port: u16, state: TcpState) -> Entry {
        Entry {
            local: "10.0.0.1:8080".parse().unwrap(),
            remote: SocketAddr::from(([10, 1, 2, 3], remote_port)),
            state,
            inode: 1,
        }
    }

    fn other(local_port: u16) -> Entry {
        Entry {
            local: SocketAddr::from(([10, 0, 0, 1], local_port)),
            remote: "10.1.2.3:5000".parse().unwrap(),
            state: TcpState::Established,
            inode: 1,
        }
    }

    #[test]
    fn matches_the_target_port_as_local_port_only() {
        let listener = Entry {
            state: TcpState::Listen,
            remote: "0.0.0.0:0".parse().unwrap(),
            ..conn(0, TcpState::Listen)
        };
        // A connection from the app to port 8080 elsewhere: 8080 is remote.
        let outgoing = Entry {
            local: "10.0.0.1:40000".parse().unwrap(),
            remote: "10.9.9.9:8080".parse().unwrap(),
            state: TcpState::Established,
            inode: 1,
        };
        let table = [
            listener,
            outgoing,
            other(8081),
            conn(1, TcpState::Established),
            conn(2, TcpState::TimeWait),
        ];
        let got: Vec<_> = connections(&table, &[8080]).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got.iter().filter(|(_, open)| *open).count(), 1);
    }

    #[test]
    fn new_connections_restart_the_quiet_clock() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let period = Duration::from_secs(1);
        let open = TcpState::Established;
        // Deregistered at 0; the watch begins 100 ms later with one connection.
        let mut w = QuietWatch::new(&[8080], t0, ms(100), &[conn(1, open)]);
        assert_eq!(w.open, 1);
        assert!(!w.is_quiet(ms(1000), period));
        // A new one at 400 ms; the old one still there is not new.
        assert_eq!(w.observe(&[conn(1, open), conn(2, open)], ms(400)), 1);
        assert!(!w.is_quiet(ms(1100), period));
        // One that opened and closed between samples shows as TIME_WAIT.
        assert_eq!(
            w.observe(&[conn(2, open), conn(3, TcpState::TimeWait)], ms(450)),
            1
        );
        assert_eq!(w.open, 1);
        // The same address pair gone and back is a new connection.
        assert_eq!(w.observe(&[conn(3, TcpState::TimeWait)], ms(500)), 0);
        assert_eq!(w.observe(&[conn(2, open)], ms(550)), 1);
        assert_eq!(w.observe(&[conn(2, open)], ms(1500)), 0);
        assert!(!w.is_quiet(ms(1549), period));
        assert!(w.is_quiet(ms(1550), period));
        assert_eq!(w.new_connections, 3);
        assert_eq!(
            w.last_new_after_deregistration(),
            Some(Duration::from_millis(550))
        );
        assert_eq!(
            w.summary(ms(1600), QuietEnd::Quiet),
            "drain quiet period reached: last new connection to port 8080 0.55s after the \
             deregistration; quiet for 1.05s; 3 new connection(s) during the watch; \
             1 connection(s) still open"
        );
    }

    #[test]
    fn quiet_counts_from_the_watch_start_and_blind_samples() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut w = QuietWatch::new(&[8080, 9090], t0, ms(2000), &[]);
        assert_eq!(w.quiet_for(ms(2500)), Duration::from_millis(500));
        w.blind(ms(2600));
        assert_eq!(w.quiet_for(ms(2700)), Duration::from_millis(100));
        assert_eq!(
            w.summary(ms(3000), QuietEnd::TimedOut),
            "drain quiet period NOT reached by -wait-drained-timeout: no new connection to \
             port 8080,9090 since the watch began 2.00s after the deregistration; quiet for \
             0.40s; 0 new connection(s) during the watch; 0 connection(s) still open"
        );
    }
}
