//! Transition tests of the lifecycle with a fake clock, a fake ELBv2 and
//! scripted events: no sleeping, no network, no processes.

use super::*;
use crate::aws::elbv2::State;
use crate::aws::error::AwsError;
use crate::clock::Interrupted;
use crate::config::{GroupRef, GroupSpec};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::mpsc::channel;
use std::time::UNIX_EPOCH;

/// Events due at fake times, shared by the fake clock and the fake ELBv2 (which
/// can make a signal "arrive" while a request is on the wire).
type Inbox = Rc<RefCell<Vec<(Duration, Event)>>>;

struct FakeClock {
    start: Instant,
    t: Duration,
    inbox: Inbox,
    pending: VecDeque<Event>,
    shielded: bool,
    clock: Rc<RefCell<Duration>>,
}

impl FakeClock {
    fn new(inbox: Inbox, clock: Rc<RefCell<Duration>>) -> Self {
        FakeClock {
            start: Instant::now(),
            t: Duration::ZERO,
            inbox,
            pending: VecDeque::new(),
            shielded: false,
            clock,
        }
    }

    fn advance(&mut self, to: Duration) {
        self.t = self.t.max(to);
        *self.clock.borrow_mut() = self.t;
    }

    /// Takes the first event due at or before `until`, moving time to it.
    fn next_due(&mut self, until: Duration) -> Option<Event> {
        let mut inbox = self.inbox.borrow_mut();
        let idx = inbox
            .iter()
            .enumerate()
            .filter(|(_, (at, _))| *at <= until)
            .min_by_key(|(_, (at, _))| *at)
            .map(|(i, _)| i)?;
        let (at, ev) = inbox.remove(idx);
        drop(inbox);
        self.advance(at);
        Some(ev)
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.start + self.t
    }
    fn wall(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000) + self.t
    }
    fn random(&mut self) -> f64 {
        0.5
    }
    fn sleep(&mut self, d: Duration) -> Result<(), Interrupted> {
        if !self.shielded && !self.pending.is_empty() {
            return Err(Interrupted);
        }
        let end = self.t + d;
        while let Some(ev) = self.next_due(end) {
            self.pending.push_back(ev);
            if !self.shielded {
                return Err(Interrupted);
            }
        }
        self.advance(end);
        Ok(())
    }
}

impl EventClock for FakeClock {
    fn take_event(&mut self) -> Option<Event> {
        self.pending.pop_front().or_else(|| self.next_due(self.t))
    }
    fn wait_event(&mut self, timeout: Option<Duration>) -> Option<Event> {
        if let Some(ev) = self.pending.pop_front() {
            return Some(ev);
        }
        let until = match timeout {
            Some(d) => self.t + d,
            None => Duration::MAX,
        };
        let ev = self.next_due(until);
        if ev.is_none() {
            assert!(timeout.is_some(), "blocked forever with no event scheduled");
            self.advance(until);
        }
        ev
    }
    fn set_shielded(&mut self, shielded: bool) {
        self.shielded = shielded;
    }
}

#[derive(Default)]
struct FakeElb {
    clock: Rc<RefCell<Duration>>,
    inbox: Inbox,
    calls: Vec<(String, String, Duration)>,
    /// Error for the Nth register call (0-based).
    register_errors: Vec<(usize, Error)>,
    /// A signal arrives while this register call (0-based) is on the wire.
    signal_during_register: Option<usize>,
    health: VecDeque<State>,
    deregister_errors: VecDeque<Error>,
    refresh_due: Option<SystemTime>,
    refreshes: Vec<Duration>,
    drain_polls: usize,
    /// Health answers after a deregistration, before the draining logic.
    after_deregister: VecDeque<State>,
}

fn aws(code: &str) -> Error {
    Error::Aws {
        action: "x".into(),
        error: AwsError {
            status: 400,
            code: code.into(),
            message: String::new(),
            request_id: None,
        },
    }
}

impl FakeElb {
    fn log(&mut self, what: &str, arn: &str) {
        let t = *self.clock.borrow();
        self.calls.push((what.into(), arn.into(), t));
    }
    fn names(&self) -> Vec<String> {
        self.calls
            .iter()
            .map(|(w, a, _)| format!("{w} {a}"))
            .collect()
    }
}

impl Elb for FakeElb {
    fn ensure_credentials(&mut self, _b: Budget, _t: &mut dyn Clock) -> Result<(), Error> {
        Ok(())
    }
    fn refresh_due(&self) -> Option<SystemTime> {
        self.refresh_due
    }
    fn refresh_credentials(&mut self, _b: Budget, _t: &mut dyn Clock) -> Result<(), Error> {
        let now = *self.clock.borrow();
        self.refreshes.push(now);
        self.refresh_due = self.refresh_due.map(|d| d + Duration::from_secs(3600));
        Ok(())
    }
    fn describe_groups(
        &mut self,
        names: &[String],
        _b: Budget,
        _t: &mut dyn Clock,
    ) -> Result<WithId<Vec<TargetGroup>>, Error> {
        self.log("describe", &names.join(","));
        Ok(WithId {
            value: names
                .iter()
                .map(|n| TargetGroup {
                    arn: format!("arn:{n}"),
                    name: n.clone(),
                    port: Some(80),
                    target_type: Some("ip".into()),
                    load_balancer_arns: vec![],
                    ..Default::default()
                })
                .collect(),
            request_id: None,
        })
    }
    fn register(
        &mut self,
        arn: &str,
        _t: &[Target],
        _b: Budget,
        _tm: &mut dyn Clock,
    ) -> Result<Option<String>, Error> {
        let n = self.calls.iter().filter(|c| c.0 == "register").count();
        self.log("register", arn);
        if self.signal_during_register == Some(n) {
            let now = *self.clock.borrow();
            self.inbox.borrow_mut().push((now, Event::Signal(15)));
        }
        if let Some(pos) = self.register_errors.iter().position(|(i, _)| *i == n) {
            return Err(self.register_errors.remove(pos).1);
        }
        Ok(Some("rid".into()))
    }
    fn deregister(
        &mut self,
        arn: &str,
        _t: &[Target],
        _b: Budget,
        _tm: &mut dyn Clock,
    ) -> Result<Option<String>, Error> {
        self.log("deregister", arn);
        match self.deregister_errors.pop_front() {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }
    fn health(
        &mut self,
        arn: &str,
        targets: &[Target],
        _b: Budget,
        _t: &mut dyn Clock,
    ) -> Result<WithId<Vec<TargetHealth>>, Error> {
        self.log("health", arn);
        let deregistered = self.calls.iter().any(|c| c.0 == "deregister");
        let (state, reason) = if deregistered {
            if let Some(s) = self.after_deregister.pop_front() {
                (s, None)
            } else if self.drain_polls > 0 {
                self.drain_polls -= 1;
                (
                    State::Draining,
                    Some("Target.DeregistrationInProgress".to_string()),
                )
            } else {
                (State::Unused, Some("Target.NotRegistered".to_string()))
            }
        } else {
            let s = if self.health.len() > 1 {
                self.health.pop_front().unwrap_or(State::Healthy)
            } else {
                self.health.front().cloned().unwrap_or(State::Healthy)
            };
            (s, None)
        };
        Ok(WithId {
            value: vec![TargetHealth {
                target: targets[0].clone(),
                state,
                reason,
                description: None,
            }],
            request_id: None,
        })
    }
}

#[derive(Default)]
struct FakeEffects {
    hooks: Vec<&'static str>,
    fail: Option<&'static str>,
}

impl Effects for FakeEffects {
    fn run_hook(&mut self, hook: &Hook, _t: &mut dyn Clock) -> Outcome {
        self.hooks.push(hook.name);
        if self.fail == Some(hook.name) {
            Outcome::Failed("exit status 3".into())
        } else {
            Outcome::Success
        }
    }
    fn wait_for_app(&mut self, _c: &Config, _t: &mut dyn Clock) -> Result<(), AppWait> {
        Ok(())
    }
}

fn config(groups: &[&str]) -> Config {
    Config {
        groups: groups
            .iter()
            .map(|g| GroupSpec {
                group: GroupRef::Name((*g).into()),
                port: None,
            })
            .collect(),
        target_id: "10.0.0.1".into(),
        target_id_source: "test".into(),
        target_port: Some(8080),
        availability_zone: None,
        region: None,
        wait_in_service: true,
        wait_in_service_timeout: Duration::from_secs(300),
        health_poll_interval: Duration::from_secs(5),
        register_timeout: Duration::from_secs(120),
        deregister_timeout: Duration::from_secs(20),
        wait_drained: false,
        wait_drained_timeout: Duration::from_secs(300),
        pre_register: None,
        post_register: None,
        post_deregister: None,
        status_addr: None,
        wait_for_tcp: None,
        wait_for_http: None,
        wait_for_timeout: Duration::from_secs(300),
        log_level: None,
        log_format: Default::default(),
        check: false,
    }
}

/// A hook the fake effects "run".
fn hook(name: &'static str) -> Hook {
    Hook {
        name,
        argv: vec!["x".into()],
        timeout: Duration::from_secs(1),
    }
}

struct World {
    inbox: Inbox,
    elb: FakeElb,
    effects: FakeEffects,
    clock: FakeClock,
    status: Status,
}

fn world() -> World {
    let inbox: Inbox = Rc::new(RefCell::new(Vec::new()));
    let now = Rc::new(RefCell::new(Duration::ZERO));
    World {
        elb: FakeElb {
            clock: now.clone(),
            inbox: inbox.clone(),
            ..FakeElb::default()
        },
        clock: FakeClock::new(inbox.clone(), now),
        inbox,
        effects: FakeEffects::default(),
        status: Status::default(),
    }
}

impl World {
    fn at(&self, secs: u64, ev: Event) {
        self.inbox
            .borrow_mut()
            .push((Duration::from_secs(secs), ev));
    }
    fn run(&mut self, cfg: &Config) -> i32 {
        self.run_with_states(cfg).0
    }
    /// The exit code and each registration's state at the end.
    fn run_with_states(&mut self, cfg: &Config) -> (i32, Vec<RegistrationState>) {
        let mut lifecycle = Lifecycle::new(
            cfg,
            &mut self.elb,
            &mut self.effects,
            &mut self.clock,
            &self.status,
        );
        let code = lifecycle.run();
        let states = lifecycle.registrations.iter().map(|r| r.state).collect();
        (code, states)
    }
}

#[test]
fn happy_path_calls_in_order_and_exits_0() {
    let mut w = world();
    w.at(1000, Event::Signal(15));
    assert_eq!(w.run(&config(&["a"])), EXIT_OK);
    assert_eq!(
        w.elb.names(),
        [
            "describe a",
            "register arn:a",
            "health arn:a",
            "deregister arn:a"
        ]
    );
    // First poll after one jittered interval (random 0.5: exactly 5 s), then blocked until the signal.
    assert_eq!(w.elb.calls[2].2, Duration::from_secs(5));
    assert_eq!(w.elb.calls[3].2, Duration::from_secs(1000));
    assert!(!w.status.is_ready());
}

#[test]
fn signal_before_anything_makes_no_call() {
    let mut w = world();
    w.at(0, Event::Signal(15));
    assert_eq!(w.run(&config(&["a"])), EXIT_OK);
    assert!(w.elb.calls.is_empty());
}

#[test]
fn signal_while_register_is_on_the_wire_deregisters_after_it() {
    let mut w = world();
    w.elb.signal_during_register = Some(0);
    assert_eq!(w.run(&config(&["a", "b"])), EXIT_OK);
    // The second group is never registered; the first is taken out; no health wait.
    assert_eq!(
        w.elb.names(),
        ["describe a,b", "register arn:a", "deregister arn:a"]
    );
}

#[test]
fn interrupted_register_retry_still_deregisters_that_group() {
    let mut w = world();
    // A retry sleep cut short by the signal: the client returns Interrupted,
    // but an earlier attempt of this call may have landed.
    w.elb.signal_during_register = Some(0);
    w.elb.register_errors = vec![(0, Error::Interrupted)];
    assert_eq!(w.run(&config(&["a"])), EXIT_OK);
    assert_eq!(
        w.elb.names(),
        ["describe a", "register arn:a", "deregister arn:a"]
    );
}

#[test]
fn refusal_in_second_group_deregisters_both_and_exits_1() {
    let mut w = world();
    w.elb.register_errors = vec![(1, aws("AccessDenied"))];
    assert_eq!(w.run(&config(&["a", "b"])), EXIT_FAILURE);
    assert_eq!(
        w.elb.names(),
        [
            "describe a,b",
            "register arn:a",
            "register arn:b",
            "deregister arn:a",
            "deregister arn:b"
        ]
    );
}

#[test]
fn health_wait_polls_at_the_interval_until_healthy() {
    let mut w = world();
    w.elb.health = VecDeque::from([State::Initial, State::Unhealthy, State::Healthy]);
    w.at(500, Event::Signal(15));
    let mut cfg = config(&["a"]);
    cfg.post_register = Some(hook("post-register"));
    assert_eq!(w.run(&cfg), EXIT_OK);
    let polls: Vec<u64> = w
        .elb
        .calls
        .iter()
        .filter(|c| c.0 == "health")
        .map(|c| c.2.as_secs())
        .collect();
    assert_eq!(polls, [5, 10, 15]);
    assert_eq!(w.effects.hooks, ["post-register"]);
}

#[test]
fn health_wait_timeout_keeps_running_registered_and_not_ready() {
    let mut w = world();
    w.elb.health = VecDeque::from([State::Unhealthy]);
    w.at(100, Event::Signal(15));
    let mut cfg = config(&["a"]);
    cfg.wait_in_service_timeout = Duration::from_secs(12);
    assert_eq!(w.run(&cfg), EXIT_OK);
    let polls = w.elb.calls.iter().filter(|c| c.0 == "health").count();
    assert_eq!(polls, 3, "at 5, 10 and 12 s");
    let dereg = w.elb.calls.iter().find(|c| c.0 == "deregister").unwrap();
    assert_eq!(
        dereg.2,
        Duration::from_secs(100),
        "stayed registered until the signal"
    );
}

#[test]
fn ready_only_after_healthy_and_not_after_shutdown() {
    let mut w = world();
    let (tx, rx) = channel();
    w.at(50, Event::Drain(tx));
    w.at(60, Event::Signal(15));
    assert_eq!(w.run(&config(&["a"])), EXIT_OK);
    assert_eq!(rx.try_recv().unwrap(), Ok("deregistered".to_string()));
    assert_eq!(
        w.elb
            .names()
            .iter()
            .filter(|n| n.starts_with("deregister"))
            .count(),
        1
    );
    assert!(!w.status.is_ready());
}

#[test]
fn deregistration_errors() {
    let mut w = world();
    w.elb.deregister_errors = VecDeque::from([aws("InvalidTarget")]);
    w.at(10, Event::Signal(15));
    assert_eq!(
        w.run(&config(&["a"])),
        EXIT_OK,
        "not registered counts as out"
    );

    let mut w = world();
    w.elb.deregister_errors = VecDeque::from([aws("AccessDenied")]);
    w.at(10, Event::Signal(15));
    let mut cfg = config(&["a"]);
    cfg.post_deregister = Some(hook("post-deregister"));
    assert_eq!(w.run(&cfg), EXIT_FAILURE);
    assert_eq!(
        w.effects.hooks,
        ["post-deregister"],
        "the hook runs even after a failure"
    );
}

#[test]
fn failed_drain_is_retried_on_sigterm() {
    let mut w = world();
    // The first deregistration fails; by SIGTERM the permission is back.
    w.elb.deregister_errors = VecDeque::from([aws("AccessDenied")]);
    let (tx, rx) = channel();
    w.at(10, Event::Drain(tx));
    w.at(20, Event::Signal(15));
    assert_eq!(w.run(&config(&["a"])), EXIT_OK);
    assert!(rx.try_recv().unwrap().is_err());
    let deregs: Vec<u64> = w
        .elb
        .calls
        .iter()
        .filter(|c| c.0 == "deregister")
        .map(|c| c.2.as_secs())
        .collect();
    assert_eq!(deregs, [10, 20]);
}

#[test]
fn wait_drained_polls_until_the_target_is_gone() {
    let mut w = world();
    w.elb.drain_polls = 3;
    w.at(10, Event::Signal(15));
    let mut cfg = config(&["a"]);
    cfg.wait_drained = true;
    cfg.post_deregister = Some(hook("post-deregister"));
    assert_eq!(w.run(&cfg), EXIT_OK);
    let after: Vec<String> = w
        .elb
        .names()
        .into_iter()
        .skip_while(|n| !n.starts_with("deregister"))
        .collect();
    assert_eq!(
        after,
        [
            "deregister arn:a",
            "health arn:a",
            "health arn:a",
            "health arn:a",
            "health arn:a"
        ]
    );
    assert_eq!(w.effects.hooks, ["post-deregister"]);
}

#[test]
fn second_signal_during_shutdown_is_absorbed() {
    let mut w = world();
    w.elb.drain_polls = 5;
    w.at(10, Event::Signal(15));
    w.at(11, Event::Signal(15));
    w.at(12, Event::Signal(2));
    let mut cfg = config(&["a"]);
    cfg.wait_drained = true;
    assert_eq!(w.run(&cfg), EXIT_OK);
    assert_eq!(
        w.elb.calls.iter().filter(|c| c.0 == "health").count(),
        1 + 6
    );
}

#[test]
fn credentials_are_refreshed_while_blocked() {
    let mut w = world();
    w.elb.refresh_due = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 1800));
    w.at(5000, Event::Signal(15));
    assert_eq!(w.run(&config(&["a"])), EXIT_OK);
    assert_eq!(w.elb.refreshes, [Duration::from_secs(1800)]);
}

#[test]
fn failing_pre_register_hook_registers_nothing() {
    let mut w = world();
    w.effects.fail = Some("pre-register");
    let mut cfg = config(&["a"]);
    cfg.pre_register = Some(hook("pre-register"));
    assert_eq!(w.run(&cfg), EXIT_FAILURE);
    assert!(w.elb.calls.is_empty());
}

fn transport_timeout() -> Error {
    Error::Deadline {
        action: "RegisterTargets".into(),
        attempts: 3,
        last: Some(Box::new(Error::Transport {
            action: "RegisterTargets".into(),
            url: "u".into(),
            kind: crate::aws::error::TransportKind::Timeout,
            detail: "timed out".into(),
        })),
    }
}

#[test]
fn unanswered_registration_that_lands_late_is_deregistered_again() {
    let mut w = world();
    w.elb.register_errors = vec![(0, transport_timeout())];
    // "Not registered" at first; one second later the late registration shows.
    w.elb.deregister_errors = VecDeque::from([aws("InvalidTarget")]);
    w.elb.after_deregister = VecDeque::from([State::Initial]);
    assert_eq!(w.run(&config(&["a"])), EXIT_FAILURE, "registration failed");
    assert_eq!(
        w.elb.names(),
        [
            "describe a",
            "register arn:a",
            "deregister arn:a",
            "health arn:a",
            "deregister arn:a"
        ]
    );
}

#[test]
fn refused_registration_is_cleaned_up_without_a_confirmation_poll() {
    let mut w = world();
    w.elb.register_errors = vec![(0, aws("ValidationError"))];
    w.elb.deregister_errors = VecDeque::from([aws("InvalidTarget")]);
    assert_eq!(w.run(&config(&["a"])), EXIT_FAILURE);
    assert_eq!(
        w.elb.names(),
        ["describe a", "register arn:a", "deregister arn:a"]
    );
}

#[test]
fn stale_healthy_after_deregistration_is_not_drained() {
    let mut w = world();
    w.elb.after_deregister = VecDeque::from([State::Healthy, State::Draining]);
    w.at(10, Event::Signal(15));
    let mut cfg = config(&["a"]);
    cfg.wait_drained = true;
    assert_eq!(w.run(&cfg), EXIT_OK);
    let polls: Vec<u64> = w
        .elb
        .calls
        .iter()
        .skip_while(|c| c.0 != "deregister")
        .filter(|c| c.0 == "health")
        .map(|c| c.2.as_secs())
        .collect();
    // healthy (stale), draining, then gone; intervals 5 s, 10 s, 15 s (doubling, capped).
    assert_eq!(polls, [15, 25, 40]);
}

#[test]
fn registration_states_at_the_end() {
    use RegistrationState::*;
    // Registered, deregistered: out.
    let mut w = world();
    w.at(10, Event::Signal(15));
    assert_eq!(w.run_with_states(&config(&["a"])), (EXIT_OK, vec![Out]));

    // A signal while the first is on the wire: the second is never sent.
    let mut w = world();
    w.elb.signal_during_register = Some(0);
    assert_eq!(
        w.run_with_states(&config(&["a", "b"])),
        (EXIT_OK, vec![Out, NotSent])
    );

    // Deregistration refused: the target may still be in, as registered.
    let mut w = world();
    w.elb.deregister_errors = VecDeque::from([aws("AccessDenied")]);
    w.at(10, Event::Signal(15));
    assert_eq!(
        w.run_with_states(&config(&["a"])),
        (EXIT_FAILURE, vec![Registered])
    );

    // Refused registration whose precautionary deregistration fails too: out.
    let mut w = world();
    w.elb.register_errors = vec![(0, aws("AccessDenied"))];
    w.elb.deregister_errors = VecDeque::from([aws("AccessDenied")]);
    assert_eq!(
        w.run_with_states(&config(&["a"])),
        (EXIT_FAILURE, vec![Out])
    );

    // Unanswered registration that landed late and cannot be taken out: still sent.
    let mut w = world();
    w.elb.register_errors = vec![(0, transport_timeout())];
    w.elb.deregister_errors = VecDeque::from([aws("InvalidTarget"), aws("AccessDenied")]);
    w.elb.after_deregister = VecDeque::from([State::Initial]);
    assert_eq!(
        w.run_with_states(&config(&["a"])),
        (EXIT_FAILURE, vec![Sent])
    );
}
