//! The drain quiet period (`-drain-quiet-period`, docs/zero-downtime.md):
//! wait until no new connection to the target port was accepted for the
//! period. New: a (local, remote) pair not in the previous sample of the
//! pod's TCP tables, plus what `PassiveOpens` counts beyond the samples
//! and the sidecar's own listeners (a client that closes first leaves no
//! trace in the tables). Signals do not cut it short (shielded shutdown).

use super::{Lifecycle, Transport};
use crate::config::Cidr;
use crate::tcp_table::{Entry, TcpState};
use log::{info, log, warn, Level};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Often enough to see a connection that lives 300 ms.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// The TCP tables, `PassiveOpens`, and how many of those the sidecar accepted.
#[derive(Debug, Clone, Default)]
struct Sample {
    table: Vec<Entry>,
    opened: u64,
    own: u64,
}

/// The pure part of the wait: samples and times in, the decision and summary
/// out. Connections to `ports` count, except from `ignore`; `own`: the sidecar's ports.
struct QuietWatch {
    ports: Vec<u16>,
    ignore: Vec<Cidr>,
    own: Vec<u16>,
    previous: HashSet<(SocketAddr, SocketAddr)>,
    /// The counters (opened, own) of the last sample.
    counters: (u64, u64),
    deregistered_at: Instant,
    started: Instant,
    /// An unreadable sample restarts it too.
    quiet_since: Instant,
    last_new: Option<Instant>,
    new_connections: u64,
    /// Of those, counted by `PassiveOpens` alone.
    unseen: u64,
    /// Open connections to the target ports in the last sample.
    open: usize,
}

impl QuietWatch {
    /// Starts at `now`; connections in the `first` sample are not new.
    fn new(
        ports: Vec<u16>,
        ignore: Vec<Cidr>,
        own: Vec<u16>,
        at: [Instant; 2],
        first: &Sample,
    ) -> Self {
        let [deregistered_at, now] = at;
        let mut watch = QuietWatch {
            ports,
            ignore,
            own,
            previous: HashSet::new(),
            counters: (first.opened, first.own),
            deregistered_at,
            started: now,
            quiet_since: now,
            last_new: None,
            new_connections: 0,
            unseen: 0,
            open: 0,
        };
        watch.take(first);
        watch
    }

    /// Returns how many connections to the target ports are new in `sample`,
    /// and how many accepted connections no sample showed.
    fn take(&mut self, sample: &Sample) -> (u64, u64) {
        let listening: HashSet<u16> = (sample.table.iter())
            .filter(|e| e.state == TcpState::LISTEN)
            .map(|e| e.local.port())
            .collect();
        let mut current = HashSet::new();
        let (mut open, mut new, mut seen) = (0, 0, 0);
        for e in sample.table.iter().filter(|e| e.state.is_connection()) {
            let port = e.local.port();
            let fresh = !self.previous.contains(&(e.local, e.remote));
            // Accepted by an app listener: PassiveOpens has it too.
            if fresh && listening.contains(&port) && !self.own.contains(&port) {
                seen += 1;
            }
            let ignored = self.ignore.iter().any(|c| c.contains(e.remote.ip()));
            if self.ports.contains(&port) && !ignored {
                open += usize::from(e.state.is_open());
                new += u64::from(fresh);
            }
            current.insert((e.local, e.remote));
        }
        let (opened, own) = self.counters;
        let unseen = (sample.opened.saturating_sub(opened))
            .saturating_sub(sample.own.saturating_sub(own))
            .saturating_sub(seen);
        self.counters = (sample.opened, sample.own);
        self.previous = current;
        self.open = open;
        (new, unseen)
    }

    /// Takes a sample read at `now` (`None`: unreadable); returns how many are new.
    fn observe(&mut self, sample: Option<&Sample>, now: Instant) -> u64 {
        let Some(sample) = sample else {
            self.quiet_since = now;
            return 0;
        };
        let (seen, unseen) = self.take(sample);
        if seen + unseen > 0 {
            self.new_connections += seen + unseen;
            self.unseen += unseen;
            self.last_new = Some(now);
            self.quiet_since = now;
        }
        seen + unseen
    }

    fn quiet_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.quiet_since)
    }

    fn summary(&self, now: Instant, reached: bool) -> String {
        let (last, began, at) = match self.last_new {
            Some(t) => ("last", "", t),
            None => ("no", " since the watch began", self.started),
        };
        let head = match reached {
            true => "drain quiet period reached",
            false => "drain quiet period NOT reached by -wait-drained-timeout",
        };
        format!(
            "{head}: {last} new connection to port {}{began} {} after the deregistration; quiet for {}; \
             {} new connection(s) during the watch ({} too short to see, counted by /proc/net/snmp \
             PassiveOpens); {} connection(s) still open",
            join(&self.ports),
            secs(at.saturating_duration_since(self.deregistered_at)),
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

fn join(ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    ports.join(",")
}

impl<T: Transport> Lifecycle<'_, T> {
    /// False when `-wait-drained-timeout` after `deregistered_at` came first.
    pub(super) fn wait_quiet(&mut self, deregistered_at: Instant) -> bool {
        let Some(period) = self.cfg.drain_quiet_period else {
            return true;
        };
        let deadline = deregistered_at + self.cfg.wait_drained_timeout;
        let mut ports: Vec<u16> = (self.registrations.iter())
            .filter_map(|r| r.target.port.or(r.group_port))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        let text = humantime::format_duration(period);
        let sample = match ports.is_empty() {
            true => Err("the target port is unknown (give -target-port)".into()),
            false => self.sample(),
        };
        let first = match sample {
            Ok(sample) => sample,
            Err(why) => {
                warn!("cannot watch connections: {why}; waiting the whole -drain-quiet-period ({text}) instead");
                let left = deadline.saturating_duration_since(self.clock.now());
                // Shielded: no event cuts it short.
                let _ = self.clock.sleep(period.min(left));
                return period <= left;
            }
        };
        info!(
            "waiting until no new connection to port {} for {text} (drain quiet period)",
            join(&ports)
        );
        let (ignore, own) = (&self.cfg.drain_ignore_from, self.status.own_connections());
        let at = [deregistered_at, self.clock.now()];
        let mut watch = QuietWatch::new(ports, ignore.clone(), own.0, at, &first);
        let mut warned = false;
        loop {
            let now = self.clock.now();
            let reached = watch.quiet_for(now) >= period;
            if reached || now >= deadline {
                let level = if reached { Level::Info } else { Level::Warn };
                log!(level, "{}", watch.summary(now, reached));
                return reached;
            }
            let _ = self.clock.sleep(SAMPLE_EVERY.min(deadline - now));
            let now = self.clock.now();
            let sample = self.sample();
            if let Err(e) = &sample {
                if !std::mem::replace(&mut warned, true) {
                    warn!("cannot read the TCP table ({e}); the quiet period starts again");
                }
            }
            watch.observe(sample.as_ref().ok(), now);
        }
    }

    /// The counter first: a connection is counted before any table shows it.
    fn sample(&mut self) -> Result<Sample, String> {
        let (opened, table) = self.effects.tcp_sample()?;
        let own = self.status.own_connections().1;
        Ok(Sample { table, opened, own })
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
        }
    }

    fn listener(port: u16) -> Entry {
        Entry {
            local: SocketAddr::from(([0, 0, 0, 0], port)),
            remote: "0.0.0.0:0".parse().unwrap(),
            state: TcpState::LISTEN,
        }
    }

    fn at(table: &[Entry]) -> Sample {
        Sample {
            table: table.to_vec(),
            ..Sample::default()
        }
    }

    /// A watch of `ports` deregistered at `t0`, begun at `now`.
    fn watch(ports: &[u16], t0: Instant, now: Instant, first: &Sample) -> QuietWatch {
        QuietWatch::new(ports.to_vec(), vec![], vec![], [t0, now], first)
    }

    #[test]
    fn counts_the_target_port_as_local_port_only() {
        // A connection from the app to port 8080 elsewhere: 8080 is remote.
        let outgoing = Entry {
            local: "10.0.0.1:40000".parse().unwrap(),
            remote: "10.9.9.9:8080".parse().unwrap(),
            state: TcpState::ESTABLISHED,
        };
        let other = Entry {
            local: "10.0.0.1:8081".parse().unwrap(),
            ..conn(5000, TcpState::ESTABLISHED)
        };
        let t0 = Instant::now();
        let mut w = watch(&[8080], t0, t0, &at(&[listener(8080)]));
        let table = [
            listener(8080),
            outgoing,
            other,
            conn(1, TcpState::ESTABLISHED),
            conn(2, TcpState::TIME_WAIT),
        ];
        assert_eq!(w.observe(Some(&at(&table)), t0), 2);
        assert_eq!(w.open, 1);
    }

    #[test]
    fn ignored_peers_never_count() {
        let t0 = Instant::now();
        let args = [
            "-target-group-name=tg",
            "-target-id=10.0.0.1",
            "-drain-ignore-from=10.1.2.3",
        ];
        let env = std::collections::HashMap::new();
        let parsed = crate::config::parse(args.map(Into::into).to_vec(), &env);
        let Ok(crate::config::Action::Run(cfg)) = parsed else {
            panic!("{parsed:?}")
        };
        let ignore = cfg.drain_ignore_from;
        let mut w = QuietWatch::new(vec![8080], ignore, vec![], [t0, t0], &at(&[]));
        // The kubelet's probe, closed by the app: TIME_WAIT; and an IPv4
        // peer of a dual-stack socket.
        let mapped = Entry {
            local: "[::ffff:10.0.0.1]:8080".parse().unwrap(),
            remote: "[::ffff:10.1.2.3]:7".parse().unwrap(),
            ..conn(7, TcpState::ESTABLISHED)
        };
        let probes = at(&[listener(8080), conn(1, TcpState::TIME_WAIT), mapped]);
        assert_eq!(
            w.observe(
                Some(&Sample {
                    opened: 2,
                    ..probes
                }),
                t0
            ),
            0
        );
        assert_eq!(w.open, 0);
        let lb = SocketAddr::from(([10, 9, 9, 9], 1));
        let from_lb = Entry {
            remote: lb,
            ..conn(0, TcpState::ESTABLISHED)
        };
        let lb_table = [listener(8080), from_lb];
        assert_eq!(
            w.observe(
                Some(&Sample {
                    opened: 3,
                    ..at(&lb_table)
                }),
                t0
            ),
            1
        );
    }

    #[test]
    fn accepted_connections_no_sample_showed_count() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let sample = |opened, own, table: &[Entry]| Sample {
            table: table.to_vec(),
            opened,
            own,
        };
        let mut w = QuietWatch::new(
            vec![8080],
            vec![],
            vec![9090],
            [t0, t0],
            &sample(100, 10, &[]),
        );
        // Three accepted: two by the sidecar's listeners, one seen.
        let seen = [listener(8080), conn(1, TcpState::ESTABLISHED)];
        assert_eq!(w.observe(Some(&sample(103, 12, &seen)), ms(50)), 1);
        // A connection to the sidecar, seen too: counted once (as its own).
        let to_own = Entry {
            local: "10.0.0.1:9090".parse().unwrap(),
            ..conn(2, TcpState::TIME_WAIT)
        };
        let mut table = seen.to_vec();
        table.extend([listener(9090), to_own]);
        assert_eq!(w.observe(Some(&sample(104, 13, &table)), ms(100)), 0);
        // Two accepted that no sample shows: both count.
        assert_eq!(w.observe(Some(&sample(106, 13, &table)), ms(150)), 2);
        assert_eq!((w.new_connections, w.unseen), (3, 2));
        assert_eq!(w.last_new.map(|t| t - t0), Some(Duration::from_millis(150)));
        // An app listener's connection on another port, seen: explained.
        let other = Entry {
            local: "10.0.0.1:7000".parse().unwrap(),
            ..conn(3, TcpState::ESTABLISHED)
        };
        table.extend([listener(7000), other]);
        assert_eq!(w.observe(Some(&sample(107, 13, &table)), ms(200)), 0);
    }

    #[test]
    fn new_connections_restart_the_quiet_clock() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let period = Duration::from_secs(1);
        let open = TcpState::ESTABLISHED;
        // Deregistered at 0; the watch begins 100 ms later with one connection.
        let mut w = watch(&[8080], t0, ms(100), &at(&[conn(1, open)]));
        assert_eq!(w.open, 1);
        assert!(w.quiet_for(ms(1000)) < period);
        // A new one at 400 ms; the old one still there is not new.
        assert_eq!(
            w.observe(Some(&at(&[conn(1, open), conn(2, open)])), ms(400)),
            1
        );
        assert!(w.quiet_for(ms(1100)) < period);
        // One that opened and closed between samples shows as TIME_WAIT.
        assert_eq!(
            w.observe(
                Some(&at(&[conn(2, open), conn(3, TcpState::TIME_WAIT)])),
                ms(450)
            ),
            1
        );
        assert_eq!(w.open, 1);
        // The same address pair gone and back is a new connection.
        assert_eq!(
            w.observe(Some(&at(&[conn(3, TcpState::TIME_WAIT)])), ms(500)),
            0
        );
        assert_eq!(w.observe(Some(&at(&[conn(2, open)])), ms(550)), 1);
        assert_eq!(w.observe(Some(&at(&[conn(2, open)])), ms(1500)), 0);
        assert!(w.quiet_for(ms(1549)) < period);
        assert!(w.quiet_for(ms(1550)) >= period);
        assert_eq!(w.new_connections, 3);
        assert_eq!(w.last_new.map(|t| t - t0), Some(Duration::from_millis(550)));
        assert_eq!(
            w.summary(ms(1600), true),
            "drain quiet period reached: last new connection to port 8080 0.55s after the \
             deregistration; quiet for 1.05s; 3 new connection(s) during the watch (0 too \
             short to see, counted by /proc/net/snmp PassiveOpens); 1 connection(s) still open"
        );
    }

    #[test]
    fn quiet_counts_from_the_watch_start_and_blind_samples() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut w = watch(&[8080, 9090], t0, ms(2000), &at(&[]));
        assert_eq!(w.quiet_for(ms(2500)), Duration::from_millis(500));
        w.observe(None, ms(2600));
        assert_eq!(w.quiet_for(ms(2700)), Duration::from_millis(100));
        assert_eq!(
            w.summary(ms(3000), false),
            "drain quiet period NOT reached by -wait-drained-timeout: no new connection to \
             port 8080,9090 since the watch began 2.00s after the deregistration; quiet for \
             0.40s; 0 new connection(s) during the watch (0 too short to see, counted by \
             /proc/net/snmp PassiveOpens); 0 connection(s) still open"
        );
    }
}
