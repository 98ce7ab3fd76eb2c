//! Transition tests of the lifecycle with a fake clock, the real AWS client
//! over a fake ELBv2 transport (XML answers, container credentials) and
//! scripted events: no sleeping, no network, no processes.

use super::*;
use crate::aws::client::Settings;
use crate::aws::credentials::{Credentials, Secret, Source};
use crate::aws::elbv2::State;
use crate::aws::error::{AwsError, Error};
use crate::aws::http::{HttpRequest, HttpResponse};
use crate::clock::testing::{FakeClock, SharedTime};
use crate::clock::Interrupted;
use crate::config::{GroupRef, GroupSpec};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

mod quiet;

/// Events due at fake times, shared by the event clock and the fake ELBv2 (which
/// can make a signal "arrive" while a request is on the wire).
type Inbox = Rc<RefCell<Vec<(Duration, Event)>>>;

/// The event clock of these tests: the fake clock's time, plus events
/// that arrive at fake times and cut unshielded sleeps short.
struct FakeEventClock {
    core: FakeClock,
    inbox: Inbox,
    pending: VecDeque<Event>,
    shielded: bool,
    /// The readiness the lifecycle reported each time it took an event.
    status: Arc<Status>,
    ready_at_events: Vec<bool>,
}

impl FakeEventClock {
    fn new(inbox: Inbox) -> Self {
        FakeEventClock {
            core: FakeClock::new(),
            inbox,
            pending: VecDeque::new(),
            shielded: false,
            status: Status::new(),
            ready_at_events: Vec::new(),
        }
    }

    /// The fake time, shared with the fake ELBv2 (a request may take time).
    fn t(&self) -> Duration {
        self.core.elapsed()
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
        self.core.advance_to(at);
        Some(ev)
    }
}

impl Clock for FakeEventClock {
    fn now(&self) -> Instant {
        self.core.now()
    }
    fn wall(&self) -> SystemTime {
        self.core.wall()
    }
    fn random(&mut self) -> f64 {
        self.core.random()
    }
    fn sleep(&mut self, d: Duration) -> Result<(), Interrupted> {
        if !self.shielded && !self.pending.is_empty() {
            return Err(Interrupted);
        }
        let end = self.t() + d;
        while let Some(ev) = self.next_due(end) {
            self.pending.push_back(ev);
            if !self.shielded {
                return Err(Interrupted);
            }
        }
        self.core.advance_to(end);
        Ok(())
    }
}

impl EventClock for FakeEventClock {
    fn take_event(&mut self) -> Option<Event> {
        let ev = self.pending.pop_front().or_else(|| self.next_due(self.t()));
        if ev.is_some() {
            self.ready_at_events.push(self.status.is_ready());
        }
        ev
    }
    fn wait_event(&mut self, timeout: Option<Duration>) -> Option<Event> {
        if let Some(ev) = self.pending.pop_front() {
            return Some(ev);
        }
        let until = match timeout {
            Some(d) => self.t() + d,
            None => Duration::MAX,
        };
        let ev = self.next_due(until);
        if ev.is_none() {
            assert!(timeout.is_some(), "blocked forever with no event scheduled");
            self.core.advance_to(until);
        }
        ev
    }
    fn set_shielded(&mut self, shielded: bool) {
        self.shielded = shielded;
    }
}

/// ELBv2 and the credentials endpoint as the client's transport sees them.
#[derive(Default)]
struct FakeElb {
    clock: SharedTime,
    inbox: Inbox,
    calls: Vec<(String, String, Duration)>,
    /// Error for the Nth register call (0-based).
    register_errors: Vec<(usize, Error)>,
    /// A signal arrives while this register call (0-based) is on the wire.
    signal_during_register: Option<usize>,
    /// A signal arrives while this health call (0-based) is on the wire.
    signal_during_health: Option<usize>,
    /// A signal arrives while the first credentials fetch is on the wire.
    signal_during_credentials: bool,
    /// A background refresh takes this long, and a signal arrives 1 s into it.
    refresh_takes: Option<Duration>,
    health: VecDeque<State>,
    /// Errors of the first health calls.
    health_errors: VecDeque<Error>,
    deregister_errors: VecDeque<Error>,
    refresh_due: Option<SystemTime>,
    refreshes: Vec<Duration>,
    drain_polls: usize,
    /// Health answers after a deregistration, before the draining logic
    /// (`unused` with reason `Target.NotInUse`: registered in a group no
    /// load balancer uses).
    after_deregister: VecDeque<State>,
    /// No load balancer uses the groups: a registered target shows `unused`.
    not_in_use: bool,
    /// The groups the target is in (by ARN), as the fake AWS sees it.
    registered: Vec<String>,
    /// moto's DeregisterTargets: `InvalidTarget` for a target that is not
    /// registered (AWS, the default, answers success).
    strict_deregister: bool,
    /// This register call (0-based) is lost: no answer (a timeout), and AWS
    /// applies it just after the next DeregisterTargets of its group.
    lost_register: Option<usize>,
    /// This register call (0-based) has its first attempt lost (AWS applies
    /// it just after the next DeregisterTargets of its group) and a retry
    /// answered with success.
    lost_attempt_then_ok: Option<usize>,
    /// A lost attempt: the client sends again, answered with `retry`.
    lost: bool,
    retry: Option<Result<HttpResponse, Error>>,
    /// Describe calls answered with throttling so far.
    throttled: u32,
    /// The first credentials fetch is done: later ones are refreshes.
    fetched: bool,
    /// The group of a lost registration not applied yet.
    landing: Option<String>,
    /// The status the lifecycle reports to, and whether it said ready at each call.
    status: Arc<Status>,
    ready_seen: Vec<bool>,
    ready_at_refresh: Vec<bool>,
    /// Whether `/lb-health` was failing (a drain begun) at each register call.
    draining_at_register: Vec<bool>,
    /// HealthCheckIntervalSeconds and HealthyThresholdCount of every group.
    group_pace: Option<(u32, u32)>,
    /// Polling intervals are widened by this factor (throttling seen).
    widen: u32,
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
        let t = self.clock.get();
        self.calls.push((what.into(), arn.into(), t));
        self.ready_seen.push(self.status.is_ready());
    }
    /// A SIGTERM arrives now (while a request is on the wire).
    fn signal_now(&mut self) {
        let now = self.clock.get();
        self.inbox.borrow_mut().push((now, Event::Signal(15)));
    }
    fn names(&self) -> Vec<String> {
        self.calls
            .iter()
            .map(|(w, a, _)| format!("{w} {a}"))
            .collect()
    }
    /// [`FakeElb::names`] from the first DeregisterTargets on.
    fn names_since_deregistering(&self) -> Vec<String> {
        self.names()
            .into_iter()
            .skip_while(|n| !n.starts_with("deregister"))
            .collect()
    }
}

impl FakeElb {
    fn describe_groups(&mut self, names: &[String]) -> String {
        self.log("describe", &names.join(","));
        let pace = self.group_pace.map_or(String::new(), |(every, n)| {
            format!("<HealthCheckIntervalSeconds>{every}</HealthCheckIntervalSeconds><HealthyThresholdCount>{n}</HealthyThresholdCount>")
        });
        let groups: String = names
            .iter()
            .map(|n| {
                format!("<member><TargetGroupArn>arn:{n}</TargetGroupArn><TargetGroupName>{n}</TargetGroupName><Port>80</Port><TargetType>ip</TargetType>{pace}</member>")
            })
            .collect();
        format!("<TargetGroups>{groups}</TargetGroups>")
    }
    fn register(&mut self, arn: &str) -> Result<Option<String>, Error> {
        let n = self.calls.iter().filter(|c| c.0 == "register").count();
        self.log("register", arn);
        self.draining_at_register.push(self.status.is_draining());
        if self.signal_during_register == Some(n) {
            self.signal_now();
        }
        if self.lost_register == Some(n) {
            self.landing = Some(arn.into());
            self.lost = true;
            return Err(transport_timeout());
        }
        if self.lost_attempt_then_ok == Some(n) {
            self.landing = Some(arn.into());
            self.lost = true;
        }
        if let Some(pos) = self.register_errors.iter().position(|(i, _)| *i == n) {
            return Err(self.register_errors.remove(pos).1);
        }
        self.registered.push(arn.into());
        Ok(Some("rid".into()))
    }
    fn deregister(&mut self, arn: &str) -> Result<Option<String>, Error> {
        self.log("deregister", arn);
        let was_in = self.registered.iter().any(|a| a == arn);
        let answer = match self.deregister_errors.pop_front() {
            Some(e) => Err(e),
            None if !was_in && self.strict_deregister => Err(aws("InvalidTarget")),
            None => {
                self.registered.retain(|a| a != arn);
                Ok(None)
            }
        };
        if self.landing.as_deref() == Some(arn) {
            self.landing = None;
            self.registered.push(arn.into());
        }
        answer
    }
    fn health(&mut self, arn: &str, id: &str) -> Result<String, Error> {
        let n = self.calls.iter().filter(|c| c.0 == "health").count();
        self.log("health", arn);
        if self.signal_during_health == Some(n) {
            self.signal_now();
        }
        if let Some(e) = self.health_errors.pop_front() {
            return Err(e);
        }
        // Since the last RegisterTargets (an app restart registers again).
        let last = |what: &str| self.calls.iter().rposition(|c| c.0 == what);
        let deregistered = last("deregister") > last("register");
        let back_in = self.registered.iter().any(|a| a == arn);
        let (state, reason) = if deregistered {
            let not_in_use = || ("unused".into(), Some("Target.NotInUse".to_string()));
            if back_in && self.after_deregister.is_empty() && self.not_in_use {
                not_in_use()
            } else if back_in && self.after_deregister.is_empty() {
                ("initial".into(), None)
            } else if let Some(s) = self.after_deregister.pop_front() {
                if s == "unused" {
                    not_in_use()
                } else {
                    (s, None)
                }
            } else if self.drain_polls > 0 {
                self.drain_polls -= 1;
                (
                    "draining".into(),
                    Some("Target.DeregistrationInProgress".to_string()),
                )
            } else {
                ("unused".into(), Some("Target.NotRegistered".to_string()))
            }
        } else {
            let s = if self.health.len() > 1 {
                self.health.pop_front().unwrap_or("healthy".into())
            } else {
                self.health.front().cloned().unwrap_or("healthy".into())
            };
            (s, None)
        };
        let reason = reason.map_or(String::new(), |r| format!("<Reason>{r}</Reason>"));
        Ok(format!(
            "<TargetHealthDescriptions><member><Target><Id>{id}</Id><Port>8080</Port></Target>\
             <TargetHealth><State>{state}</State>{reason}</TargetHealth></member></TargetHealthDescriptions>"
        ))
    }
}

/// Where the fake serves container credentials.
const CREDS_URL: &str = "http://127.0.0.1/creds";

impl Transport for &RefCell<FakeElb> {
    fn send(&self, _action: &str, req: &HttpRequest) -> Result<HttpResponse, Error> {
        self.borrow_mut().answer(req)
    }
}

/// A 200 answer to `action` holding `result`.
fn answer(action: &str, result: &str, request_id: Option<String>) -> Result<HttpResponse, Error> {
    let id = request_id.map_or(String::new(), |id| format!("<RequestId>{id}</RequestId>"));
    let body = format!(
        "<{action}Response><{action}Result>{result}</{action}Result>\
         <ResponseMetadata>{id}</ResponseMetadata></{action}Response>"
    );
    Ok(HttpResponse {
        status: 200,
        date: None,
        body: body.into_bytes(),
    })
}

/// `t` as AWS writes times (all fake times fall in November 2023).
fn iso(t: SystemTime) -> String {
    let s = t.duration_since(UNIX_EPOCH).unwrap().as_secs() - 1_698_796_800;
    let (d, s) = (s / 86400 + 1, s % 86400);
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    format!("2023-11-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

impl FakeElb {
    /// The client's settings: container credentials when a test looks at them.
    fn settings(&self) -> Settings {
        let source = if self.refresh_due.is_some() || self.signal_during_credentials {
            Source::Container {
                url: CREDS_URL.into(),
                token_file: None,
                token: None,
            }
        } else {
            Source::Static(Credentials {
                access_key_id: "AKID".into(),
                secret_access_key: Secret::new("SECRET".into()),
                session_token: None,
                expiry: None,
            })
        };
        Settings {
            region: "us-east-1".into(),
            elbv2_url: "http://127.0.0.1/elb".into(),
            sts_url: "http://127.0.0.1/sts".into(),
            source,
            role: None,
        }
    }

    /// Answers one attempt; the form's values are read back percent-decoded.
    fn answer(&mut self, req: &HttpRequest) -> Result<HttpResponse, Error> {
        if req.url == CREDS_URL {
            return self.credentials();
        }
        if let Some(next) = self.retry.take() {
            return next;
        }
        let body = String::from_utf8_lossy(&req.body).replace("%3A", ":");
        let form: Vec<(&str, &str)> = body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let get = |key: &str| {
            let value = form
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string());
            value.unwrap_or_default()
        };
        let (action, arn) = (get("Action"), get("TargetGroupArn"));
        if action.starts_with("Describe") && self.widen > 1 << self.throttled {
            self.throttled += 1;
            return Err(aws("Throttling"));
        }
        let result = match action.as_str() {
            "DescribeTargetGroups" => {
                let names = form.iter().filter(|(k, _)| k.contains(".member."));
                let names: Vec<String> = names.map(|(_, v)| v.to_string()).collect();
                answer(&action, &self.describe_groups(&names), None)
            }
            "RegisterTargets" => self.register(&arn).and_then(|id| answer(&action, "", id)),
            "DeregisterTargets" => self.deregister(&arn).and_then(|id| answer(&action, "", id)),
            "DescribeTargetHealth" => {
                let id = get("Targets.member.1.Id");
                (self.health(&arn, &id)).and_then(|r| answer(&action, &r, None))
            }
            other => panic!("the lifecycle does not call {other}"),
        };
        if std::mem::take(&mut self.lost) {
            self.retry = Some(result);
            return Err(Error::Transport {
                action,
                url: "u".into(),
                kind: crate::aws::error::TransportKind::Timeout,
                detail: "timed out".into(),
            });
        }
        result
    }

    fn credentials(&mut self) -> Result<HttpResponse, Error> {
        if !std::mem::replace(&mut self.fetched, true) {
            if std::mem::take(&mut self.signal_during_credentials) {
                self.signal_now();
            }
        } else {
            let now = self.clock.get();
            self.refreshes.push(now);
            if let Some(d) = self.refresh_takes {
                let signal_at = now + Duration::from_secs(1);
                self.inbox.borrow_mut().push((signal_at, Event::Signal(15)));
                self.clock.set(now + d);
            }
            self.ready_at_refresh.push(self.status.is_ready());
            self.refresh_due = self.refresh_due.map(|d| d + Duration::from_secs(3600));
        }
        // Refreshed ten minutes before expiry.
        let expiry = self
            .refresh_due
            .map_or(UNIX_EPOCH + Duration::from_secs(1_701_000_000), |d| {
                d + Duration::from_secs(600)
            });
        let body = format!(
            r#"{{"AccessKeyId":"ASIA","SecretAccessKey":"S","Token":"T","Expiration":"{}"}}"#,
            iso(expiry)
        );
        Ok(HttpResponse {
            status: 200,
            date: None,
            body: body.into_bytes(),
        })
    }
}

/// A fake TCP table, read at the fake clock's time.
type TcpSource = Box<dyn FnMut() -> Result<Vec<crate::tcp_table::Entry>, String>>;

#[derive(Default)]
struct FakeEffects {
    hooks: Vec<&'static str>,
    fail: Option<&'static str>,
    tcp: Option<TcpSource>,
    /// The app check: down during this fake time span, up otherwise
    /// (checked only when the config sets an app check).
    app_down: Option<(Duration, Duration)>,
    clock: SharedTime,
    /// The PassiveOpens counter (none: it never moves).
    opened: Option<Box<dyn FnMut() -> u64>>,
    /// A signal arrives just as this hook ends with success.
    signal_as_it_ends: Option<(&'static str, Inbox)>,
}

impl Effects for FakeEffects {
    fn run_hook(&mut self, hook: &Hook, _t: &mut dyn Clock) -> Outcome {
        self.hooks.push(hook.name);
        if let Some((_, inbox)) = self.signal_as_it_ends.as_ref().filter(|s| s.0 == hook.name) {
            inbox
                .borrow_mut()
                .push((self.clock.get(), Event::Signal(15)));
        }
        if self.fail == Some(hook.name) {
            Outcome::Failed("exit status 3".into())
        } else {
            Outcome::Success
        }
    }
    fn app_up(&mut self, cfg: &Config) -> Option<Result<(), String>> {
        let now = self.clock.get();
        let down = self.app_down.is_some_and(|(a, b)| a <= now && now < b);
        cfg.has_app_check()
            .then(|| if down { Err("refused".into()) } else { Ok(()) })
    }
    fn tcp_sample(&mut self) -> Result<(u64, Vec<crate::tcp_table::Entry>), String> {
        let opened = self.opened.as_mut().map_or(0, |f| f());
        match &mut self.tcp {
            Some(source) => Ok((opened, source()?)),
            None => Err("no table in this test".into()),
        }
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
        role_arn: None,
        role_external_id: None,
        role_session_name: None,
        wait_in_service: true,
        wait_in_service_timeout: Duration::from_secs(300),
        health_poll_interval: Duration::from_secs(5),
        health_poll_explicit: false,
        register_timeout: Duration::from_secs(120),
        deregister_timeout: Duration::from_secs(20),
        wait_drained: false,
        wait_drained_timeout: Duration::from_secs(300),
        hooks: vec![],
        status_addr: None,
        wait_for_tcp: None,
        wait_for_http: None,
        wait_for_timeout: Duration::from_secs(300),
        log_level: None,
        log_json: false,
        check: false,
        drain_quiet_period: None,
        lb_health_addr: None,
        drain_ignore_from: vec![],
    }
}

/// A hook the fake effects "run".
fn hook(name: &'static str) -> Hook {
    let action = crate::config::HookAction::Command(vec!["x".into()]);
    let timeout = Duration::from_secs(1);
    Hook {
        name,
        action,
        timeout,
    }
}

struct World {
    inbox: Inbox,
    elb: FakeElb,
    effects: FakeEffects,
    clock: FakeEventClock,
    status: Arc<Status>,
}

fn world() -> World {
    let inbox: Inbox = Rc::new(RefCell::new(Vec::new()));
    let mut clock = FakeEventClock::new(inbox.clone());
    let status = Status::new();
    clock.status = status.clone();
    World {
        elb: FakeElb {
            clock: clock.core.shared_time(),
            inbox: inbox.clone(),
            status: status.clone(),
            ..FakeElb::default()
        },
        effects: FakeEffects {
            clock: clock.core.shared_time(),
            ..FakeEffects::default()
        },
        clock,
        inbox,
        status,
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
        let fake = RefCell::new(std::mem::take(&mut self.elb));
        let mut client = Client::new(&fake, fake.borrow().settings());
        let mut lifecycle = Lifecycle::new(
            cfg,
            &mut client,
            &mut self.effects,
            &mut self.clock,
            &self.status,
        );
        let code = lifecycle.run();
        let states = lifecycle.registrations.iter().map(|r| r.state).collect();
        drop(client);
        self.elb = fake.into_inner();
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
    // The first look right after registering, then blocked until the signal.
    assert_eq!(w.elb.calls[2].2, Duration::ZERO);
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
    // Its answer never came: one look whether it landed after the deregistration.
    assert_eq!(
        w.elb.names(),
        [
            "describe a",
            "register arn:a",
            "deregister arn:a",
            "health arn:a"
        ]
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
    // unhealthy.draining (NLB draining_interval_seconds) takes no new
    // connection: not healthy either.
    w.elb.health = VecDeque::from([
        "initial".into(),
        "unhealthy.draining".into(),
        "healthy".into(),
    ]);
    w.at(500, Event::Signal(15));
    let mut cfg = config(&["a"]);
    cfg.hooks.push(hook("post-register"));
    assert_eq!(w.run(&cfg), EXIT_OK);
    let polls = health_polls(&w);
    // A look at once, then every jittered interval (random 0.5: exactly 5 s).
    assert_eq!(polls, [0, 5, 10]);
    assert_eq!(w.effects.hooks, ["post-register"]);
}

#[test]
fn health_wait_timeout_keeps_running_registered_and_not_ready() {
    let mut w = world();
    w.elb.health = VecDeque::from(["unhealthy".into()]);
    w.at(100, Event::Signal(15));
    let mut cfg = config(&["a"]);
    cfg.wait_in_service_timeout = Duration::from_secs(12);
    // The global registry: other tests only add to it.
    let timeouts = || {
        crate::metrics::global().render().lines().find_map(|l| {
            l.strip_prefix("nlb_registrator_health_wait_timeouts_total ")?
                .parse::<f64>()
                .ok()
        })
    };
    let before = timeouts();
    assert_eq!(w.run(&cfg), EXIT_OK);
    assert!(timeouts() > before, "the timeout is counted");
    let polls = health_polls(&w);
    // The wait: 0, 5, 10 and 12 s; then, blocked, pauses of 5, 10, 20, 40 s.
    assert_eq!(polls, [0, 5, 10, 12, 17, 27, 47, 87]);
    assert!(w.elb.ready_seen.iter().all(|r| !r));
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
    cfg.hooks.push(hook("post-deregister"));
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
    cfg.hooks.push(hook("post-deregister"));
    assert_eq!(w.run(&cfg), EXIT_OK);
    let after = w.elb.names_since_deregistering();
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
    cfg.hooks.push(hook("pre-register"));
    assert_eq!(w.run(&cfg), EXIT_FAILURE);
    assert!(w.elb.calls.is_empty());
}

fn transport_timeout() -> Error {
    Error::Deadline {
        action: "RegisterTargets".into(),
        attempts: 3,
        last: Box::new(Error::Transport {
            action: "RegisterTargets".into(),
            url: "u".into(),
            kind: crate::aws::error::TransportKind::Timeout,
            detail: "timed out".into(),
        }),
    }
}

#[test]
fn unanswered_registration_that_lands_late_is_deregistered_again() {
    let mut w = world();
    w.elb.register_errors = vec![(0, transport_timeout())];
    // "Not registered" at first; one second later the late registration shows.
    w.elb.deregister_errors = VecDeque::from([aws("InvalidTarget")]);
    w.elb.after_deregister = VecDeque::from(["initial".into()]);
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
fn unhealthy_draining_after_the_deregistration_is_not_a_late_landing() {
    let mut w = world();
    w.elb.register_errors = vec![(0, transport_timeout())];
    w.elb.after_deregister = VecDeque::from(["unhealthy.draining".into()]);
    assert_eq!(w.run(&config(&["a"])), EXIT_FAILURE, "registration failed");
    assert_eq!(
        w.elb.names(),
        [
            "describe a",
            "register arn:a",
            "deregister arn:a",
            "health arn:a"
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
    w.elb.after_deregister = VecDeque::from(["healthy".into(), "draining".into()]);
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
        (EXIT_OK, vec![Out, Out])
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
    w.elb.after_deregister = VecDeque::from(["initial".into()]);
    assert_eq!(
        w.run_with_states(&config(&["a"])),
        (EXIT_FAILURE, vec![Sent])
    );
}

/// A RegisterTargets whose answer is lost and that AWS applies just after
/// the deregistration: taken out again, whether DeregisterTargets answers
/// success for a target that is not registered (AWS) or `InvalidTarget` (moto).
#[test]
fn lost_registration_landing_after_the_deregistration_is_taken_out() {
    for strict in [false, true] {
        let mut w = world();
        w.elb.strict_deregister = strict;
        w.elb.lost_register = Some(0);
        assert_eq!(
            w.run_with_states(&config(&["a"])),
            (EXIT_FAILURE, vec![RegistrationState::Out]),
            "registration failed; strict {strict}"
        );
        assert_eq!(
            w.elb.names(),
            [
                "describe a",
                "register arn:a",
                "deregister arn:a",
                "health arn:a",
                "deregister arn:a"
            ],
            "strict {strict}"
        );
        assert!(w.elb.registered.is_empty(), "strict {strict}");
        // The look comes a second after the deregistration.
        assert_eq!(w.elb.calls[3].2 - w.elb.calls[2].2, Duration::from_secs(1));
    }
}

/// RegisterTargets answered with success after a first attempt timed
/// out: that attempt may land after the deregistration (as AWS may apply
/// it late), so the shutdown looks once more and deregisters again.
#[test]
fn a_lost_attempt_before_an_answered_retry_is_looked_for_after_deregistering() {
    for strict in [false, true] {
        let mut w = world();
        w.elb.strict_deregister = strict;
        w.elb.lost_attempt_then_ok = Some(0);
        w.at(10, Event::Signal(15));
        assert_eq!(
            w.run_with_states(&config(&["a"])),
            (EXIT_OK, vec![RegistrationState::Out]),
            "strict {strict}"
        );
        let after = w.elb.names_since_deregistering();
        assert_eq!(
            after,
            ["deregister arn:a", "health arn:a", "deregister arn:a"],
            "strict {strict}"
        );
        assert!(w.elb.registered.is_empty(), "strict {strict}");
    }
    // Every attempt answered: no look after the deregistration.
    let mut w = world();
    w.at(10, Event::Signal(15));
    assert_eq!(w.run(&config(&["a"])), EXIT_OK);
    let after = w.elb.names_since_deregistering();
    assert_eq!(after, ["deregister arn:a"]);
}

/// RegisterTargets refused after an attempt of it went unanswered: that
/// attempt may have landed, so a failed deregistration is a failure like
/// any other (state kept, metric, drain answer), not a precaution.
#[test]
fn refused_registration_with_a_lost_attempt_may_be_in() {
    let mut w = world();
    w.elb.lost_attempt_then_ok = Some(0);
    w.elb.register_errors = vec![(0, aws("AccessDenied"))];
    w.elb.deregister_errors = VecDeque::from([aws("AccessDenied")]);
    let cfg = config(&["refused-lost"]);
    assert_eq!(
        w.run_with_states(&cfg),
        (EXIT_FAILURE, vec![RegistrationState::Sent])
    );
    assert!(w.status.outcome().is_some_and(|o| o.is_err()));
    let metric = r#"deregistration_failures_total{target_group="refused-lost"} 1"#;
    assert!(metrics::global().render().contains(metric));
}

#[test]
fn lost_registration_that_never_lands_costs_one_look() {
    for strict in [false, true] {
        let mut w = world();
        w.elb.strict_deregister = strict;
        w.elb.register_errors = vec![(0, transport_timeout())];
        assert_eq!(w.run(&config(&["a"])), EXIT_FAILURE);
        assert_eq!(
            w.elb.names(),
            [
                "describe a",
                "register arn:a",
                "deregister arn:a",
                "health arn:a"
            ],
            "strict {strict}"
        );
    }
}

#[test]
fn unanswered_late_landing_check_deregisters_once_more() {
    for strict in [false, true] {
        let mut w = world();
        w.elb.strict_deregister = strict;
        w.elb.register_errors = vec![(0, transport_timeout())];
        w.elb.health_errors = VecDeque::from([Error::Deadline {
            action: "DescribeTargetHealth".into(),
            attempts: 3,
            last: Box::new(aws("Throttling")),
        }]);
        assert_eq!(w.run(&config(&["a"])), EXIT_FAILURE);
        assert_eq!(
            w.elb.names(),
            [
                "describe a",
                "register arn:a",
                "deregister arn:a",
                "health arn:a",
                "deregister arn:a"
            ],
            "strict {strict}"
        );
    }
}

/// In a group no load balancer uses, AWS shows a registered target as
/// `unused` (`Target.NotInUse`): neither the late-landing check nor the
/// drain wait takes that for out.
#[test]
fn unused_but_registered_is_not_out() {
    let mut w = world();
    w.elb.not_in_use = true;
    w.elb.lost_register = Some(0);
    assert_eq!(w.run(&config(&["a"])), EXIT_FAILURE);
    let after = w.elb.names_since_deregistering();
    assert_eq!(
        after,
        ["deregister arn:a", "health arn:a", "deregister arn:a"]
    );
    assert!(w.elb.registered.is_empty());

    let mut w = world();
    w.elb.after_deregister = VecDeque::from(["unused".into()]);
    w.at(10, Event::Signal(15));
    let mut cfg = config(&["a"]);
    cfg.wait_drained = true;
    assert_eq!(w.run(&cfg), EXIT_OK);
    let after = w.elb.names_since_deregistering();
    assert_eq!(after, ["deregister arn:a", "health arn:a", "health arn:a"]);
}

#[test]
fn late_landing_check_stays_within_the_deregistration_deadline() {
    let mut w = world();
    w.elb.lost_register = Some(0);
    let mut cfg = config(&["a"]);
    cfg.deregister_timeout = Duration::from_millis(400);
    assert_eq!(w.run(&cfg), EXIT_FAILURE);
    let times: Vec<Duration> = w
        .elb
        .calls
        .iter()
        .filter(|c| c.0 != "describe")
        .map(|c| c.2)
        .collect();
    // register (its retry 100 ms after the lost attempt), deregister, the
    // look, deregister again.
    assert_eq!(
        times,
        [
            Duration::ZERO,
            Duration::from_millis(100),
            Duration::from_millis(500),
            Duration::from_millis(500)
        ],
        "the look waits only until the deadline"
    );
    assert!(w.elb.registered.is_empty());
}

#[test]
fn ready_after_a_health_wait_timeout_once_healthy() {
    let mut w = world();
    // Unhealthy through the wait (0, 5, 10, 12 s) and one more poll, healthy at the second.
    w.elb.health = VecDeque::from(vec!["unhealthy".into(); 5]);
    w.elb.health.push_back("healthy".into());
    w.at(3600, Event::Signal(15));
    let mut cfg = config(&["a"]);
    cfg.wait_in_service_timeout = Duration::from_secs(12);
    cfg.hooks.push(hook("post-register"));
    // A credentials refresh at 1000 s shows whether the pod is ready then.
    w.elb.refresh_due = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 1000));
    assert_eq!(w.run(&cfg), EXIT_OK);
    let polls: Vec<(u64, bool)> = w
        .elb
        .calls
        .iter()
        .zip(&w.elb.ready_seen)
        .filter(|(c, _)| c.0 == "health")
        .map(|(c, ready)| (c.2.as_secs(), *ready))
        .collect();
    // Pauses of 5, 10 s after the timeout; no poll after healthy.
    assert_eq!(
        polls,
        [
            (0, false),
            (5, false),
            (10, false),
            (12, false),
            (17, false),
            (27, false)
        ]
    );
    assert_eq!(w.elb.refreshes, [Duration::from_secs(1000)]);
    assert_eq!(w.elb.ready_at_refresh, [true], "ready once healthy");
    assert_eq!(w.effects.hooks, ["post-register"], "at the timeout, once");
}

#[test]
fn polls_after_a_health_wait_timeout_grow_to_a_minute_and_stop_at_a_signal() {
    let mut w = world();
    w.elb.health = VecDeque::from(["unhealthy".into()]);
    w.at(400, Event::Signal(15));
    let mut cfg = config(&["a"]);
    cfg.wait_in_service_timeout = Duration::from_secs(12);
    assert_eq!(w.run(&cfg), EXIT_OK);
    let polls = health_polls(&w);
    assert_eq!(
        polls,
        [0, 5, 10, 12, 17, 27, 47, 87, 147, 207, 267, 327, 387]
    );
    assert_eq!(w.elb.calls.last().unwrap().2, Duration::from_secs(400));
}

#[test]
fn refused_health_check_is_not_polled_again() {
    let mut w = world();
    w.elb.health_errors = VecDeque::from([aws("AccessDenied")]);
    w.at(400, Event::Signal(15));
    assert_eq!(w.run(&config(&["a"])), EXIT_OK);
    assert_eq!(w.elb.calls.iter().filter(|c| c.0 == "health").count(), 1);
}

#[test]
fn throttled_last_health_poll_is_not_a_refusal() {
    // The wait's last poll runs into its deadline: a Throttling answer
    // there comes back wrapped in a Deadline. AWS refused nothing: the
    // polls go on, and the target turns ready.
    let mut w = world();
    w.elb.health_errors = VecDeque::from([Error::Deadline {
        action: "DescribeTargetHealth".into(),
        attempts: 1,
        last: Box::new(aws("Throttling")),
    }]);
    w.elb.refresh_due = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 100));
    w.at(400, Event::Signal(15));
    let mut cfg = config(&["a"]);
    cfg.wait_in_service_timeout = Duration::from_secs(5);
    assert_eq!(w.run(&cfg), EXIT_OK);
    let polls = health_polls(&w);
    // The look at once is the throttled one; the next poll, at the wait's
    // deadline, finds the target healthy.
    assert_eq!(polls, [0, 5], "polled again after the throttled answer");
    assert_eq!(w.elb.ready_at_refresh, [true]);
}

#[test]
fn refresh_and_recovery_polls_share_the_blocked_wait() {
    let mut w = world();
    w.elb.health = VecDeque::from(["unhealthy".into()]);
    w.elb.refresh_due = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 100));
    w.at(400, Event::Signal(15));
    let mut cfg = config(&["a"]);
    cfg.wait_in_service_timeout = Duration::from_secs(12);
    assert_eq!(w.run(&cfg), EXIT_OK);
    assert_eq!(w.elb.refreshes, [Duration::from_secs(100)]);
    let polls = w.elb.calls.iter().filter(|c| c.0 == "health").count();
    // The look at once, then the same 12 polls as without the refresh.
    assert_eq!(polls, 13);
}

#[test]
fn refresh_in_flight_at_a_signal_delays_the_deregistration_by_itself_only() {
    let mut w = world();
    // Unhealthy: the health polls go on while blocked, one is due at 1827 s.
    w.elb.health = VecDeque::from(["unhealthy".into()]);
    w.elb.refresh_due = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 1800));
    // The refresh's request is held for its whole timeout (10 s); SIGTERM at 1801 s.
    w.elb.refresh_takes = Some(Duration::from_secs(10));
    let mut cfg = config(&["a"]);
    cfg.wait_in_service_timeout = Duration::from_secs(12);
    assert_eq!(w.run(&cfg), EXIT_OK);
    assert_eq!(w.elb.refreshes, [Duration::from_secs(1800)]);
    let last = w.elb.calls.last().unwrap();
    assert_eq!(
        (last.0.as_str(), last.2),
        ("deregister", Duration::from_secs(1810))
    );
    let before = &w.elb.calls[w.elb.calls.len() - 2];
    assert!(before.2 < Duration::from_secs(1800), "{before:?}");
}

#[test]
fn after_a_signal_only_the_shutdown_calls_aws() {
    // A signal during the credentials fetch: no DescribeTargetGroups.
    let mut w = world();
    w.elb.signal_during_credentials = true;
    assert_eq!(w.run(&config(&["a"])), EXIT_OK);
    assert!(w.elb.calls.is_empty(), "{:?}", w.elb.names());

    // A signal during the first group's health poll: the second is not polled.
    let mut w = world();
    w.elb.signal_during_health = Some(0);
    assert_eq!(w.run(&config(&["a", "b"])), EXIT_OK);
    assert_eq!(
        w.elb.names(),
        [
            "describe a,b",
            "register arn:a",
            "register arn:b",
            "health arn:a",
            "deregister arn:a",
            "deregister arn:b"
        ]
    );

    // The same in a health poll while blocked after a health-wait timeout.
    let mut w = world();
    w.elb.health = VecDeque::from(["unhealthy".into()]);
    w.elb.signal_during_health = Some(6);
    let mut cfg = config(&["a", "b"]);
    cfg.wait_in_service_timeout = Duration::from_secs(12);
    assert_eq!(w.run(&cfg), EXIT_OK);
    let names = w.elb.names();
    assert_eq!(
        names[names.len() - 3..],
        ["health arn:a", "deregister arn:a", "deregister arn:b"]
    );
    assert_eq!(names.iter().filter(|n| n.starts_with("health")).count(), 7);
}

#[test]
fn a_signal_during_the_last_health_poll_never_makes_it_ready() {
    let mut w = world();
    w.elb.health = VecDeque::from(["healthy".into()]);
    w.elb.signal_during_health = Some(0);
    assert_eq!(w.run(&config(&["a"])), EXIT_OK);
    assert_eq!(w.clock.ready_at_events, [false]);
    assert_eq!(
        w.elb.names(),
        [
            "describe a",
            "register arn:a",
            "health arn:a",
            "deregister arn:a"
        ]
    );

    // Nor a signal that comes as the post-register hook succeeds.
    let mut w = world();
    w.elb.health = VecDeque::from(["healthy".into()]);
    w.effects.signal_as_it_ends = Some(("post-register", w.inbox.clone()));
    let mut cfg = config(&["a"]);
    cfg.hooks.push(hook("post-register"));
    assert_eq!(w.run(&cfg), EXIT_OK);
    assert_eq!(w.clock.ready_at_events, [false]);
    assert_eq!(
        w.elb.names(),
        [
            "describe a",
            "register arn:a",
            "health arn:a",
            "deregister arn:a"
        ]
    );
}

#[test]
fn a_target_healthy_at_once_is_ready_at_once() {
    let mut w = world();
    w.elb.health = VecDeque::from(["healthy".into()]);
    w.at(100, Event::Signal(15));
    assert_eq!(w.run(&config(&["a"])), EXIT_OK);
    let health: Vec<_> = w.elb.calls.iter().filter(|c| c.0 == "health").collect();
    assert_eq!(health.len(), 1);
    assert_eq!(health[0].2, Duration::ZERO);
    assert!(w.status.is_ready() || w.elb.calls.last().unwrap().0 == "deregister");
}

fn health_polls(w: &World) -> Vec<u64> {
    w.elb
        .calls
        .iter()
        .filter(|c| c.0 == "health")
        .map(|c| c.2.as_secs())
        .collect()
}

#[test]
fn named_groups_are_polled_at_their_own_pace() {
    let mut w = world();
    // Every 30 s: not healthy before 30 s (one passing check); then every
    // 30 s (random 0.5: the earliest plus a tenth of the interval, then
    // exact intervals).
    w.elb.group_pace = Some((30, 5));
    w.elb.health = VecDeque::from(["initial".into(), "initial".into(), "healthy".into()]);
    w.at(1000, Event::Signal(15));
    let mut cfg = config(&["a"]);
    cfg.wait_in_service_timeout = Duration::from_secs(600);
    assert_eq!(w.run(&cfg), EXIT_OK);
    assert_eq!(health_polls(&w), [0, 33, 63]);
}

#[test]
fn an_explicit_poll_interval_overrides_the_group_pace() {
    let mut w = world();
    w.elb.group_pace = Some((30, 5));
    w.elb.health = VecDeque::from(["initial".into(), "initial".into(), "healthy".into()]);
    w.at(1000, Event::Signal(15));
    let mut cfg = config(&["a"]);
    cfg.health_poll_explicit = true;
    assert_eq!(w.run(&cfg), EXIT_OK);
    assert_eq!(health_polls(&w), [0, 5, 10]);
}

#[test]
fn groups_by_arn_are_polled_at_the_flag_interval_and_widened_after_throttling() {
    let mut w = world();
    w.elb.group_pace = Some((30, 5));
    w.elb.widen = 2;
    w.elb.health = VecDeque::from(["initial".into(), "initial".into(), "healthy".into()]);
    w.at(1000, Event::Signal(15));
    let mut cfg = config(&[]);
    cfg.groups = vec![GroupSpec {
        group: GroupRef::Arn("arn:x".into()),
        port: None,
    }];
    assert_eq!(w.run(&cfg), EXIT_OK);
    assert!(!w.elb.names().iter().any(|n| n.starts_with("describe")));
    // The first poll is throttled (the client's retry answers 2 s later):
    // from then on, the widened interval.
    assert_eq!(health_polls(&w), [2, 12, 22]);
}

/// Throttled already when an app restart registers again: no look at once
/// even where the group's pace is unknown (given by ARN).
#[test]
fn registering_again_after_throttling_makes_no_look_at_once() {
    let (w, code) = restart(|w, cfg| {
        w.elb.widen = 2;
        cfg.groups = vec![GroupSpec {
            group: GroupRef::Arn("arn:x".into()),
            port: None,
        }];
    });
    assert_eq!(code, EXIT_OK);
    // Registered again at 25 s: the first poll a widened 10 s later.
    assert_eq!(call_times(&w, "register"), [0, 25]);
    assert_eq!(health_polls(&w), [2, 35]);
}

/// The drain wait's polls: doubling from `-health-poll-interval` up to
/// 15 s, and, after throttling, widened like the health wait's.
#[test]
fn drain_polls_double_and_are_widened_after_throttling() {
    let drain_polls = |widen: u32| {
        let mut w = world();
        w.elb.widen = widen;
        w.elb.drain_polls = 4;
        w.at(100, Event::Signal(15));
        let mut cfg = config(&["a"]);
        cfg.health_poll_explicit = true;
        cfg.wait_drained = true;
        assert_eq!(w.run(&cfg), EXIT_OK);
        let deregistered = w
            .elb
            .calls
            .iter()
            .find(|c| c.0 == "deregister")
            .map(|c| c.2.as_secs())
            .expect("deregistered");
        health_polls(&w)
            .into_iter()
            .filter(|t| *t >= deregistered)
            .map(|t| t - deregistered)
            .collect::<Vec<u64>>()
    };
    // 5 s, 10 s, 15 s, 15 s apart.
    assert_eq!(drain_polls(1), [5, 15, 30, 45, 60]);
    // Doubled: 10 s, 20 s, 30 s, 30 s apart.
    assert_eq!(drain_polls(2), [10, 30, 60, 90, 120]);
}

#[test]
fn after_throttling_the_first_poll_comes_when_the_target_can_be_healthy() {
    let mut w = world();
    w.elb.group_pace = Some((30, 5));
    w.elb.widen = 2;
    w.elb.health = VecDeque::from(["initial".into(), "healthy".into()]);
    w.at(1000, Event::Signal(15));
    let mut cfg = config(&["a"]);
    cfg.wait_in_service_timeout = Duration::from_secs(600);
    assert_eq!(w.run(&cfg), EXIT_OK);
    // DescribeTargetGroups was throttled (answered 2 s later): no look at
    // once, 30 s + a tenth of 30 s; then the widened interval.
    assert_eq!(health_polls(&w), [35, 95]);
}

#[test]
fn shutdown_budget_adds_up_the_readme_table() {
    let mut cfg = config(&["a"]);
    // docs/kubernetes.md: "With the defaults, one group, no hooks [...]: 10 + 20 + 6 = 36 s".
    assert_eq!(shutdown_budget(&cfg), Duration::from_secs(36));
    cfg.groups = config(&["a", "b"]).groups;
    cfg.wait_drained = true;
    cfg.wait_drained_timeout = Duration::from_secs(60);
    cfg.hooks.push(Hook {
        timeout: Duration::from_secs(5),
        ..hook("post-deregister")
    });
    // 10 + 20 + 6 x 2 + (60 + 2 x 2) + (5 + 2)
    assert_eq!(shutdown_budget(&cfg), Duration::from_secs(113));
    cfg.deregister_timeout = Duration::MAX;
    assert_eq!(shutdown_budget(&cfg), Duration::MAX, "no overflow");
}

/// Drained by request (the app's preStop), the app down from 20 s to 25 s
/// (a container restart) and SIGTERM at 100 s; `with` adjusts the world.
fn restart(with: impl FnOnce(&mut World, &mut Config)) -> (World, i32) {
    let mut w = world();
    let (tx, rx) = channel();
    w.at(10, Event::Drain(tx));
    w.at(100, Event::Signal(15));
    w.effects.app_down = Some((Duration::from_secs(20), Duration::from_secs(25)));
    let mut cfg = config(&["a"]);
    cfg.wait_for_tcp = Some("127.0.0.1:8080".into());
    cfg.hooks.push(hook("pre-register"));
    cfg.hooks.push(hook("post-register"));
    with(&mut w, &mut cfg);
    let code = w.run(&cfg);
    assert_eq!(rx.try_recv().unwrap(), Ok("deregistered".to_string()));
    (w, code)
}

fn call_times(w: &World, what: &str) -> Vec<u64> {
    let calls = w.elb.calls.iter().filter(|c| c.0 == what);
    calls.map(|c| c.2.as_secs()).collect()
}

#[test]
fn app_restart_after_a_drain_registers_again() {
    // A credentials refresh in the second blocked state (at 85 s) shows
    // whether the pod is ready again.
    let due = UNIX_EPOCH + Duration::from_secs(1_700_000_060);
    let (w, code) = restart(|w, _| w.elb.refresh_due = Some(due));
    assert_eq!(code, EXIT_OK);
    // The groups are known: no second DescribeTargetGroups.
    assert_eq!(
        w.elb.names(),
        [
            "describe a",
            "register arn:a",
            "health arn:a",
            "deregister arn:a",
            "register arn:a",
            "health arn:a",
            "deregister arn:a"
        ]
    );
    // Seen back at the first app check (every second) after 25 s.
    assert_eq!(call_times(&w, "register"), [0, 25]);
    assert_eq!(call_times(&w, "deregister"), [10, 100]);
    assert_eq!(
        w.effects.hooks,
        [
            "pre-register",
            "post-register",
            "pre-register",
            "post-register"
        ]
    );
    // /lb-health passes again for the new registration; ready again after it.
    assert_eq!(w.elb.draining_at_register, [false, false]);
    assert_eq!(w.elb.refreshes, [Duration::from_secs(85)]);
    assert_eq!(w.elb.ready_at_refresh, [true]);
}

#[test]
fn a_second_drain_after_registering_again_drains_the_same_way() {
    let (tx, rx) = channel();
    let (w, code) = restart(|w, _| w.at(50, Event::Drain(tx)));
    assert_eq!(code, EXIT_OK);
    assert_eq!(rx.try_recv().unwrap(), Ok("deregistered".to_string()));
    assert_eq!(call_times(&w, "deregister"), [10, 50]);
}

#[test]
fn signal_during_the_second_registration_deregisters_after_it() {
    let (w, code) = restart(|w, _| w.elb.signal_during_register = Some(1));
    assert_eq!(code, EXIT_OK);
    assert_eq!(
        w.elb.names_since_deregistering(),
        ["deregister arn:a", "register arn:a", "deregister arn:a"]
    );
    assert_eq!(call_times(&w, "deregister"), [10, 25]);
}

#[test]
fn drain_holds_while_the_app_stays_up_or_without_an_app_check() {
    // Without an app check, a restart cannot be told from a deletion.
    for no_app_check in [false, true] {
        let (w, code) = restart(|w, cfg| {
            w.effects.app_down = None;
            if no_app_check {
                cfg.wait_for_tcp = None;
            }
        });
        assert_eq!(code, EXIT_OK);
        assert_eq!(call_times(&w, "register"), [0]);
        assert_eq!(call_times(&w, "deregister"), [10]);
    }
}

#[test]
fn the_security_group_hint_follows_states_of_checks_that_never_reach() {
    use super::health::unreachable;
    assert!(unreachable("initial (Elb.RegistrationInProgress)"));
    assert!(unreachable("unhealthy (Target.Timeout)"));
    assert!(unreachable("unhealthy (Target.FailedHealthChecks)"));
    assert!(!unreachable("unhealthy (Target.ResponseCodeMismatch)"));
    assert!(!unreachable("unused (Target.NotInUse)"));
}

#[test]
fn waits_for_the_app_before_registering_and_fails_at_the_wait_for_timeout() {
    let mut cfg = config(&["a"]);
    cfg.wait_for_tcp = Some("127.0.0.1:8080".into());
    cfg.wait_for_timeout = Duration::from_secs(10);
    let mut w = world();
    w.at(100, Event::Signal(15));
    w.effects.app_down = Some((Duration::ZERO, Duration::from_secs(3)));
    assert_eq!(w.run(&cfg), EXIT_OK);
    // Tried every 500 ms: up at the seventh try.
    assert_eq!(call_times(&w, "register"), [3]);
    let mut w = world();
    w.effects.app_down = Some((Duration::ZERO, Duration::from_secs(30)));
    assert_eq!(w.run(&cfg), EXIT_FAILURE);
    assert_eq!(w.elb.names(), Vec::<String>::new());
}
