//! The drain quiet period in the lifecycle: a fake TCP table whose
//! connections come and go on the fake clock.

use super::*;
use crate::tcp_table::{Entry, TcpState};
use std::net::SocketAddr;

/// Load-balanced traffic: a connection to `port` every 50 ms from `from`
/// until (not including) `until`, each open for 300 ms. Times in ms.
struct Traffic {
    port: u16,
    from: u64,
    until: u64,
}

impl Traffic {
    fn table_at(&self, now_ms: u64) -> Vec<Entry> {
        (self.from..self.until)
            .step_by(50)
            .filter(|&at| at <= now_ms && now_ms < at + 300)
            .map(|at| Entry {
                local: SocketAddr::from(([10, 0, 0, 1], self.port)),
                // A fresh client port per connection.
                remote: SocketAddr::from(([10, 9, 0, 1], 10_000 + (at / 50 % 50_000) as u16)),
                state: TcpState::ESTABLISHED,
            })
            .collect()
    }
}

/// Installs `traffic` as the fake table; returns the fake times it was read at.
fn serve(w: &mut World, traffic: Traffic) -> Rc<RefCell<Vec<Duration>>> {
    let reads = Rc::new(RefCell::new(Vec::new()));
    let (clock, log) = (w.elb.clock.clone(), reads.clone());
    w.effects.tcp = Some(Box::new(move || {
        let now = clock.get();
        log.borrow_mut().push(now);
        Ok(traffic.table_at(now.as_millis() as u64))
    }));
    reads
}

fn quiet_config(period_ms: u64) -> Config {
    let mut cfg = config(&["a"]);
    cfg.drain_quiet_period = Some(Duration::from_millis(period_ms));
    cfg.wait_drained_timeout = Duration::from_secs(30);
    cfg
}

#[test]
fn drain_answers_once_no_new_connection_came_for_the_period() {
    let mut w = world();
    let reads = serve(
        &mut w,
        Traffic {
            port: 8080,
            from: 990_000,
            until: 1_003_000,
        },
    );
    let (tx, rx) = channel();
    w.at(1000, Event::Drain(tx));
    w.at(2000, Event::Signal(15));
    assert_eq!(w.run(&quiet_config(2000)), EXIT_OK);
    assert_eq!(rx.try_recv().unwrap(), Ok("deregistered".into()));
    // /lb-health has failed since the drain began.
    assert!(w.status.is_draining());
    // The last connection opened at 1002.95 s; quiet for 2 s from then.
    let reads = reads.borrow();
    assert_eq!(reads.first(), Some(&Duration::from_secs(1000)));
    assert_eq!(reads.last(), Some(&Duration::from_millis(1_004_950)));
    // Sampled every 50 ms throughout.
    assert_eq!(reads.len(), 100);
}

#[test]
fn a_second_signal_does_not_cut_the_wait_short() {
    let mut w = world();
    serve(
        &mut w,
        Traffic {
            port: 8080,
            from: 990_000,
            until: 1_003_000,
        },
    );
    w.at(1000, Event::Signal(15));
    w.at(1001, Event::Signal(2));
    let mut cfg = quiet_config(2000);
    cfg.hooks.push(hook("post-deregister"));
    assert_eq!(w.run(&cfg), EXIT_OK);
    assert_eq!(w.clock.t(), Duration::from_millis(1_004_950));
    // The post-deregister hook runs after the quiet wait.
    assert_eq!(w.effects.hooks, ["post-deregister"]);
}

#[test]
fn traffic_that_never_stops_ends_at_wait_drained_timeout() {
    let mut w = world();
    serve(
        &mut w,
        Traffic {
            port: 8080,
            from: 990_000,
            until: 5_000_000,
        },
    );
    let (tx, rx) = channel();
    w.at(1000, Event::Drain(tx));
    w.at(2000, Event::Signal(15));
    // The target is out: exit 0, but the drain answer says what happened.
    assert_eq!(w.run(&quiet_config(2000)), EXIT_OK);
    let answer = rx.try_recv().unwrap().unwrap_err();
    assert!(answer.contains("new connections kept arriving"), "{answer}");
}

#[test]
fn without_a_table_the_period_is_a_fixed_wait() {
    let mut w = world();
    w.at(1000, Event::Signal(15));
    assert_eq!(w.run(&quiet_config(3000)), EXIT_OK);
    assert_eq!(w.clock.t(), Duration::from_secs(1003));
}

#[test]
fn the_groups_port_is_watched_when_the_target_has_none() {
    for (port, ends_at) in [(80, 1_004_950), (8080, 1_002_000)] {
        let mut w = world();
        serve(
            &mut w,
            Traffic {
                port,
                from: 990_000,
                until: 1_003_000,
            },
        );
        w.at(1000, Event::Signal(15));
        let mut cfg = quiet_config(2000);
        // The fake DescribeTargetGroups gives port 80.
        cfg.target_port = None;
        assert_eq!(w.run(&cfg), EXIT_OK);
        assert_eq!(w.clock.t(), Duration::from_millis(ends_at), "port {port}");
    }
}

#[test]
fn off_by_default_and_nothing_to_wait_for_when_nothing_was_deregistered() {
    let mut w = world();
    let reads = serve(
        &mut w,
        Traffic {
            port: 8080,
            from: 0,
            until: 5_000_000,
        },
    );
    w.at(1000, Event::Signal(15));
    assert_eq!(w.run(&config(&["a"])), EXIT_OK);
    assert_eq!(w.clock.t(), Duration::from_secs(1000));
    assert!(reads.borrow().is_empty());

    // A signal before registering: nothing to deregister, no wait.
    let mut w = world();
    w.at(0, Event::Signal(15));
    assert_eq!(w.run(&quiet_config(2000)), EXIT_OK);
    assert_eq!(w.clock.t(), Duration::ZERO);
}

#[test]
fn connections_too_short_to_see_are_counted() {
    let mut w = world();
    let nothing = Traffic {
        port: 8080,
        from: 0,
        until: 0,
    };
    let reads = serve(&mut w, nothing);
    // A connection accepted every 50 ms until 1003 s, never in a table.
    let clock = w.elb.clock.clone();
    w.effects.opened = Some(Box::new(move || {
        (clock.get().as_millis() as u64).min(1_003_000) / 50
    }));
    let (tx, rx) = channel();
    w.at(1000, Event::Drain(tx));
    w.at(2000, Event::Signal(15));
    assert_eq!(w.run(&quiet_config(2000)), EXIT_OK);
    assert_eq!(rx.try_recv().unwrap(), Ok("deregistered".into()));
    assert_eq!(
        reads.borrow().last(),
        Some(&Duration::from_millis(1_005_000))
    );
}
