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
//! and closed between two samples still shows as TIME_WAIT when the app
//! closed first. One the client closed first leaves nothing to see, so the
//! namespace's `PassiveOpens` counter (`/proc/net/snmp`) is read too: what
//! it counts beyond the sidecar's own listeners' connections and those the
//! samples showed counts as new (it may have been to the target port).
//! Peers in `-drain-ignore-from` (the node, whose kubelet probes the app)
//! never count. Only the time since the watch began is vouched for, so the wait
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
use crate::config::Cidr;
use crate::tcp_table::{Entry, TcpState};
use log::{info, warn};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often the TCP tables are read during the wait.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// A connection: our address and the peer's.
type Key = (SocketAddr, SocketAddr);

/// What the watch counts: connections to `ports` except from `ignore`
/// (`-drain-ignore-from`); `own` are the sidecar's listeners, whose
/// connections are counted apart.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The target ports.
    pub ports: Vec<u16>,
    /// Peers that never count.
    pub ignore: Vec<Cidr>,
    /// The sidecar's own listening ports.
    pub own: Vec<u16>,
}

/// One reading of the pod's connections.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// The TCP tables.
    pub table: Vec<Entry>,
    /// The namespace's accepted connections so far (`PassiveOpens`).
    pub opened: u64,
    /// Of those, the sidecar's own listeners' so far.
    pub own: u64,
}

/// How a quiet wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuietEnd {
    /// No new connection for the whole period.
    Quiet,
    /// `-wait-drained-timeout` came first.
    TimedOut,
}

/// The pure part of the quiet wait: successive samples in, the decision
/// and the summary's facts out. Times are passed in.
#[derive(Debug, Clone)]
pub struct QuietWatch {
    scope: Scope,
    /// Every connection of the last sample, whatever its port.
    previous: HashSet<Key>,
    /// The counters of the last sample.
    counters: (u64, u64),
    deregistered_at: Instant,
    started: Instant,
    last_new: Option<Instant>,
    /// When the last sample could not be read (the quiet clock restarts).
    last_blind: Option<Instant>,
    new_connections: u64,
    /// Of those, seen by the counter alone.
    unseen: u64,
    open: usize,
}

impl QuietWatch {
    /// Starts watching at `now` with a first sample; connections already
    /// in it are not new.
    pub fn new(scope: Scope, deregistered_at: Instant, now: Instant, first: &Sample) -> Self {
        let mut watch = QuietWatch {
            scope,
            previous: HashSet::new(),
            counters: (first.opened, first.own),
            deregistered_at,
            started: now,
            last_new: None,
            last_blind: None,
            new_connections: 0,
            unseen: 0,
            open: 0,
        };
        watch.take(first);
        watch
    }

    /// Keeps `sample` as the previous one; returns how many connections to
    /// the target ports it shows that were not in the previous one, and
    /// how many accepted connections no sample showed.
    fn take(&mut self, sample: &Sample) -> (u64, u64) {
        let scope = &self.scope;
        let listening: HashSet<u16> = (sample.table.iter())
            .filter(|e| e.state == TcpState::Listen)
            .map(|e| e.local.port())
            .collect();
        let mut current = HashSet::new();
        let (mut open, mut new, mut seen) = (0, 0, 0);
        for e in sample.table.iter().filter(|e| e.state.is_connection()) {
            let key = (e.local, e.remote);
            let (port, fresh) = (e.local.port(), !self.previous.contains(&key));
            // Accepted by a listener here: the counter has it too.
            if fresh && listening.contains(&port) && !scope.own.contains(&port) {
                seen += 1;
            }
            let ignored = scope.ignore.iter().any(|c| c.contains(e.remote.ip()));
            if scope.ports.contains(&port) && !ignored {
                open += usize::from(e.state.is_open());
                new += u64::from(fresh);
            }
            current.insert(key);
        }
        // What the namespace accepted beyond what the sidecar's listeners
        // took and the samples showed: opened and closed between two
        // samples (closed by the client first, it leaves no TIME_WAIT).
        // It may have been to the target port: it counts.
        let (opened, own) = self.counters;
        let unseen = (sample.opened.saturating_sub(opened))
            .saturating_sub(sample.own.saturating_sub(own))
            .saturating_sub(seen);
        self.counters = (sample.opened, sample.own);
        self.previous = current;
        self.open = open;
        (new, unseen)
    }

    /// Takes a sample read at `now`; returns how many new connections it shows.
    pub fn observe(&mut self, sample: &Sample, now: Instant) -> u64 {
        let (seen, unseen) = self.take(sample);
        if seen + unseen > 0 {
            self.new_connections += seen + unseen;
            self.unseen += unseen;
            self.last_new = Some(now);
        }
        seen + unseen
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
            .scope
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
            "{head}: {last}; quiet for {}; {} new connection(s) during the watch \
             ({} too short to see, counted by /proc/net/snmp PassiveOpens); {} connection(s) still open",
            secs(self.quiet_for(now)),
            self.new_connections,
            self.unseen,
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
            self.sample()
        };
        let scope = Scope {
            ports: ports.clone(),
            ignore: self.cfg.drain_ignore_from.clone(),
            own: self.status.own_connections().0,
        };
        let mut watch = match first {
            Ok(sample) => QuietWatch::new(scope, deregistered_at, self.clock.now(), &sample),
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
            match self.sample() {
                Ok(sample) => {
                    watch.observe(&sample, now);
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

    /// Reads the counter, the tables, then the sidecar's own count: a
    /// connection is counted before any sample can show it.
    fn sample(&mut self) -> Result<Sample, String> {
        let opened = self.effects.passive_opens()?;
        let table = self.effects.tcp_table()?;
        let own = self.status.own_connections().1;
        Ok(Sample { table, opened, own })
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

    fn conn(remote_port: u16, state: TcpState) -> Entry {
        Entry {
            local: "10.0.0.1:8080".parse().unwrap(),
            remote: SocketAddr::from(([10, 1, 2, 3], remote_port)),
            state,
            inode: 1,
        }
    }

    fn listener(port: u16) -> Entry {
        Entry {
            local: SocketAddr::from(([0, 0, 0, 0], port)),
            remote: "0.0.0.0:0".parse().unwrap(),
            state: TcpState::Listen,
            inode: 1,
        }
    }

    fn at(table: &[Entry]) -> Sample {
        Sample {
            table: table.to_vec(),
            ..Sample::default()
        }
    }

    fn scope(ports: &[u16]) -> Scope {
        Scope {
            ports: ports.to_vec(),
            ..Scope::default()
        }
    }

    #[test]
    fn counts_the_target_port_as_local_port_only() {
        // A connection from the app to port 8080 elsewhere: 8080 is remote.
        let outgoing = Entry {
            local: "10.0.0.1:40000".parse().unwrap(),
            remote: "10.9.9.9:8080".parse().unwrap(),
            state: TcpState::Established,
            inode: 1,
        };
        let other = Entry {
            local: "10.0.0.1:8081".parse().unwrap(),
            ..conn(5000, TcpState::Established)
        };
        let t0 = Instant::now();
        let mut w = QuietWatch::new(scope(&[8080]), t0, t0, &at(&[listener(8080)]));
        let table = [
            listener(8080),
            outgoing,
            other,
            conn(1, TcpState::Established),
            conn(2, TcpState::TimeWait),
        ];
        assert_eq!(w.observe(&at(&table), t0), 2);
        assert_eq!(w.open, 1);
    }

    #[test]
    fn ignored_peers_never_count() {
        let t0 = Instant::now();
        let ignore = vec!["10.1.2.3/32".parse().unwrap()];
        let scope = Scope {
            ignore,
            ..scope(&[8080])
        };
        let mut w = QuietWatch::new(scope, t0, t0, &at(&[]));
        // The kubelet's probe, closed by the app: TIME_WAIT; and an IPv4
        // peer of a dual-stack socket.
        let mapped = Entry {
            local: "[::ffff:10.0.0.1]:8080".parse().unwrap(),
            remote: "[::ffff:10.1.2.3]:7".parse().unwrap(),
            ..conn(7, TcpState::Established)
        };
        let probes = at(&[listener(8080), conn(1, TcpState::TimeWait), mapped]);
        assert_eq!(
            w.observe(
                &Sample {
                    opened: 2,
                    ..probes
                },
                t0
            ),
            0
        );
        assert_eq!(w.open, 0);
        let lb = SocketAddr::from(([10, 9, 9, 9], 1));
        let from_lb = Entry {
            remote: lb,
            ..conn(0, TcpState::Established)
        };
        let lb_table = [listener(8080), from_lb];
        assert_eq!(
            w.observe(
                &Sample {
                    opened: 3,
                    ..at(&lb_table)
                },
                t0
            ),
            1
        );
    }

    #[test]
    fn accepted_connections_no_sample_showed_count() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let own = Scope {
            own: vec![9090],
            ..scope(&[8080])
        };
        let sample = |opened, own, table: &[Entry]| Sample {
            table: table.to_vec(),
            opened,
            own,
        };
        let mut w = QuietWatch::new(own, t0, t0, &sample(100, 10, &[]));
        // Three accepted: two by the sidecar's listeners, one seen.
        let seen = [listener(8080), conn(1, TcpState::Established)];
        assert_eq!(w.observe(&sample(103, 12, &seen), ms(50)), 1);
        // A connection to the sidecar, seen too: counted once (as its own).
        let to_own = Entry {
            local: "10.0.0.1:9090".parse().unwrap(),
            ..conn(2, TcpState::TimeWait)
        };
        let mut table = seen.to_vec();
        table.extend([listener(9090), to_own]);
        assert_eq!(w.observe(&sample(104, 13, &table), ms(100)), 0);
        // Two accepted that no sample shows: both count.
        assert_eq!(w.observe(&sample(106, 13, &table), ms(150)), 2);
        assert_eq!((w.new_connections, w.unseen), (3, 2));
        assert_eq!(
            w.last_new_after_deregistration(),
            Some(Duration::from_millis(150))
        );
        // An app listener's connection on another port, seen: explained.
        let other = Entry {
            local: "10.0.0.1:7000".parse().unwrap(),
            ..conn(3, TcpState::Established)
        };
        table.extend([listener(7000), other]);
        assert_eq!(w.observe(&sample(107, 13, &table), ms(200)), 0);
    }

    #[test]
    fn new_connections_restart_the_quiet_clock() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let period = Duration::from_secs(1);
        let open = TcpState::Established;
        // Deregistered at 0; the watch begins 100 ms later with one connection.
        let mut w = QuietWatch::new(scope(&[8080]), t0, ms(100), &at(&[conn(1, open)]));
        assert_eq!(w.open, 1);
        assert!(!w.is_quiet(ms(1000), period));
        // A new one at 400 ms; the old one still there is not new.
        assert_eq!(w.observe(&at(&[conn(1, open), conn(2, open)]), ms(400)), 1);
        assert!(!w.is_quiet(ms(1100), period));
        // One that opened and closed between samples shows as TIME_WAIT.
        assert_eq!(
            w.observe(&at(&[conn(2, open), conn(3, TcpState::TimeWait)]), ms(450)),
            1
        );
        assert_eq!(w.open, 1);
        // The same address pair gone and back is a new connection.
        assert_eq!(w.observe(&at(&[conn(3, TcpState::TimeWait)]), ms(500)), 0);
        assert_eq!(w.observe(&at(&[conn(2, open)]), ms(550)), 1);
        assert_eq!(w.observe(&at(&[conn(2, open)]), ms(1500)), 0);
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
             deregistration; quiet for 1.05s; 3 new connection(s) during the watch (0 too \
             short to see, counted by /proc/net/snmp PassiveOpens); 1 connection(s) still open"
        );
    }

    #[test]
    fn quiet_counts_from_the_watch_start_and_blind_samples() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut w = QuietWatch::new(scope(&[8080, 9090]), t0, ms(2000), &at(&[]));
        assert_eq!(w.quiet_for(ms(2500)), Duration::from_millis(500));
        w.blind(ms(2600));
        assert_eq!(w.quiet_for(ms(2700)), Duration::from_millis(100));
        assert_eq!(
            w.summary(ms(3000), QuietEnd::TimedOut),
            "drain quiet period NOT reached by -wait-drained-timeout: no new connection to \
             port 8080,9090 since the watch began 2.00s after the deregistration; quiet for \
             0.40s; 0 new connection(s) during the watch (0 too short to see, counted by \
             /proc/net/snmp PassiveOpens); 0 connection(s) still open"
        );
    }
}
