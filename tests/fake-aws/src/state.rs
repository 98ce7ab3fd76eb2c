//! What the fake holds: credentials it accepts, target groups and their
//! targets, scripted faults and health sequences, the request record.
//! The actions that change it live in `elbv2` and `credentials`.

use crate::server::{Fault, Recorded};
use crate::time::trunc_secs;
use crate::{DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET};
use std::collections::{HashMap, VecDeque};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

const HOUR: Duration = Duration::from_secs(3600);
pub(crate) const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const SECRET_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+";
const TOKEN_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+=";

pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    /// Notified on every arrival, hold, release and stop.
    pub(crate) cond: Condvar,
    pub(crate) stop: AtomicBool,
    /// Open connections, shut down on drop.
    pub(crate) conns: Mutex<HashMap<u64, TcpStream>>,
}

impl Shared {
    /// The state, with the late registrations that are due applied.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.land_late_registrations(Instant::now());
        st
    }

    /// The fake's wall clock: the real one moved by the scripted offset.
    /// Its SigV4 time check, credential expiry and `Date` headers use it.
    pub(crate) fn now(&self) -> SystemTime {
        let offset = self.lock().clock_offset;
        let by = Duration::from_secs(offset.unsigned_abs());
        let real = SystemTime::now();
        if offset >= 0 {
            real.checked_add(by).unwrap_or(real)
        } else {
            real.checked_sub(by).unwrap_or(real)
        }
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleep for `d` unless the server stops first. Returns false if it stopped.
    pub(crate) fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut st = self.lock();
        loop {
            if self.stopped() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            st = self
                .cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Block until `release()` or stop. Returns false if the server stopped.
    pub(crate) fn hold(&self) -> bool {
        let mut st = self.lock();
        let generation = st.hold_generation;
        st.held += 1;
        self.cond.notify_all();
        while st.hold_generation == generation && !self.stopped() {
            st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.held = st.held.saturating_sub(1);
        !self.stopped()
    }

    pub(crate) fn wait_stop(&self) {
        let mut st = self.lock();
        while !self.stopped() {
            st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

pub(crate) struct Cred {
    pub(crate) secret: String,
    pub(crate) token: Option<String>,
    pub(crate) expires: Option<SystemTime>,
}

/// A role that AssumeRole may assume (see `FakeAws::add_role`).
pub(crate) struct RoleSpec {
    /// `ExternalId` the trust policy requires (None: the condition is absent).
    pub(crate) external_id: Option<String>,
}

/// One successful AssumeRole, as the fake granted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssumedRole {
    /// `RoleArn`.
    pub role_arn: String,
    /// `RoleSessionName`.
    pub session_name: String,
    /// `ExternalId`, when sent.
    pub external_id: Option<String>,
    /// `DurationSeconds`, when sent.
    pub duration_seconds: Option<u64>,
    /// The access key that signed the call (the caller's, base layer).
    pub caller_access_key_id: String,
    /// The access key issued for the role.
    pub issued_access_key_id: String,
}

pub(crate) struct Target {
    pub(crate) id: String,
    /// When it was registered (a re-registration keeps the first time).
    pub(crate) registered_at: Instant,
    /// Effective port (the group's when the request had none).
    pub(crate) port: u16,
    pub(crate) sent_port: Option<u16>,
    pub(crate) az: Option<String>,
}

pub(crate) struct TargetGroup {
    pub(crate) arn: String,
    pub(crate) name: String,
    pub(crate) port: u16,
    /// `IpAddressType`: `ipv4` or `ipv6`; an ip target of the other family
    /// is refused.
    pub(crate) ip_address_type: &'static str,
    pub(crate) targets: Vec<Target>,
    pub(crate) settings: GroupSettings,
}

/// What DescribeTargetGroups and DescribeTargetGroupAttributes report of a
/// group besides its name, port and IP address type
/// ([`crate::FakeAws::configure_target_group`]; `ipv6` groups come from
/// [`crate::FakeAws::add_ipv6_target_group`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    /// `TargetType` (default `ip`).
    pub target_type: String,
    /// Whether `LoadBalancerArns` names [`crate::LOAD_BALANCER_ARN`] (default
    /// true); when not, a registered target shows `unused` (`Target.NotInUse`).
    pub attached: bool,
    /// `deregistration_delay.timeout_seconds` (default 300, AWS's default).
    pub deregistration_delay_seconds: u32,
    /// `HealthCheckIntervalSeconds` (default 30).
    pub health_check_interval_seconds: u32,
    /// `HealthyThresholdCount` (default 5).
    pub healthy_threshold: u32,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            target_type: "ip".into(),
            attached: true,
            deregistration_delay_seconds: 300,
            health_check_interval_seconds: 30,
            healthy_threshold: 5,
        }
    }
}

pub(crate) struct Draining {
    pub(crate) arn: String,
    pub(crate) id: String,
    pub(crate) port: u16,
    pub(crate) az: Option<String>,
    pub(crate) remaining: usize,
}

/// A registration held back by [`Fault::LandAfterDeregister`].
pub(crate) struct LateRegistration {
    /// Group ARN.
    pub(crate) arn: String,
    /// Target ids of the RegisterTargets.
    pub(crate) ids: Vec<String>,
    /// The RegisterTargets parameters, to apply it.
    pub(crate) params: Vec<(String, String)>,
    /// How long after the next DeregisterTargets of one of its targets.
    pub(crate) delay: Duration,
    /// When it lands: set by that DeregisterTargets.
    pub(crate) due: Option<Instant>,
}

pub(crate) struct HealthSeq {
    pub(crate) states: Vec<(String, Option<String>)>,
    pub(crate) next: usize,
}

pub(crate) struct TargetSpec {
    pub(crate) id: String,
    pub(crate) port: Option<u16>,
    pub(crate) az: Option<String>,
}

pub(crate) struct State {
    pub(crate) creds: HashMap<String, Cred>,
    pub(crate) groups: Vec<TargetGroup>,
    pub(crate) faults: HashMap<String, VecDeque<Fault>>,
    pub(crate) health: HashMap<(String, String), HealthSeq>,
    pub(crate) draining_polls: usize,
    pub(crate) draining: Vec<Draining>,
    pub(crate) strict_deregister: bool,
    pub(crate) late_registrations: Vec<LateRegistration>,
    pub(crate) requests: Vec<Recorded>,
    pub(crate) sts_lifetime: Duration,
    pub(crate) container_lifetime: Duration,
    pub(crate) imds_lifetime: Duration,
    /// Lifetime of AssumeRole credentials; None: `DurationSeconds` (default 1 h).
    pub(crate) assume_role_lifetime: Option<Duration>,
    pub(crate) roles: HashMap<String, RoleSpec>,
    pub(crate) assumed_roles: Vec<AssumedRole>,
    pub(crate) container_token: Option<String>,
    pub(crate) web_identity_tokens: Vec<String>,
    pub(crate) imds_tokens: Vec<(String, SystemTime)>,
    pub(crate) issued: Vec<String>,
    pub(crate) serial: u64,
    pub(crate) rng: u64,
    pub(crate) hold_generation: u64,
    pub(crate) held: usize,
    pub(crate) region: Option<String>,
    /// The fake's clock minus the real one, in seconds (see
    /// [`crate::FakeAws::set_clock_offset`]).
    pub(crate) clock_offset: i64,
    /// ELBv2 token buckets (`Describe*`, registration calls); off when None.
    pub(crate) buckets: Option<[TokenBucket; 2]>,
    /// Targets without a health sequence are `initial` this long after
    /// their registration, then `healthy`; None: `healthy` at once.
    pub(crate) healthy_after: Option<Duration>,
    /// No `fake-aws: ...` line on stderr per request.
    pub(crate) quiet: bool,
}

/// A token bucket as AWS describes its API throttling: `capacity` tokens,
/// refilled at `rate` a second; a call takes one or is throttled (and takes
/// none).
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    pub(crate) capacity: f64,
    pub(crate) rate: f64,
    pub(crate) tokens: f64,
    pub(crate) last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(capacity: f64, rate: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            capacity,
            rate,
            tokens: capacity,
            last: now,
        }
    }

    /// Takes a token at `now`; false when the bucket is empty.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.capacity);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct AwsError {
    pub(crate) status: u16,
    pub(crate) code: String,
    pub(crate) message: String,
}

impl AwsError {
    pub(crate) fn new(status: u16, code: &str, message: impl Into<String>) -> AwsError {
        AwsError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn validation(message: impl Into<String>) -> AwsError {
        AwsError::new(400, "ValidationError", message)
    }

    pub(crate) fn null(field: &str) -> AwsError {
        AwsError::validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    }
}

impl State {
    pub(crate) fn new(seed: u64) -> State {
        let mut creds = HashMap::new();
        creds.insert(
            DEFAULT_ACCESS_KEY_ID.to_string(),
            Cred {
                secret: DEFAULT_SECRET.to_string(),
                token: None,
                expires: None,
            },
        );
        State {
            creds,
            groups: Vec::new(),
            faults: HashMap::new(),
            health: HashMap::new(),
            draining_polls: 0,
            draining: Vec::new(),
            strict_deregister: false,
            late_registrations: Vec::new(),
            requests: Vec::new(),
            sts_lifetime: HOUR,
            container_lifetime: HOUR,
            imds_lifetime: HOUR,
            assume_role_lifetime: None,
            roles: HashMap::new(),
            assumed_roles: Vec::new(),
            container_token: None,
            web_identity_tokens: Vec::new(),
            imds_tokens: Vec::new(),
            issued: Vec::new(),
            serial: 0,
            rng: seed,
            hold_generation: 0,
            held: 0,
            region: None,
            clock_offset: 0,
            buckets: None,
            healthy_after: None,
            quiet: false,
        }
    }

    /// Takes a token for ELBv2 `action` at `now` when the buckets are on;
    /// false when its bucket is empty (the call is throttled).
    pub(crate) fn take_token(&mut self, action: &str, now: Instant) -> bool {
        let Some(buckets) = self.buckets.as_mut() else {
            return true;
        };
        let bucket = if action.starts_with("Describe") {
            &mut buckets[0]
        } else if matches!(action, "RegisterTargets" | "DeregisterTargets") {
            &mut buckets[1]
        } else {
            return true;
        };
        bucket.take(now)
    }

    /// splitmix64.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn random_string(&mut self, len: usize, alphabet: &[u8]) -> String {
        (0..len)
            .map(|_| {
                let i = (self.next_u64() % alphabet.len() as u64) as usize;
                char::from(alphabet[i])
            })
            .collect()
    }

    pub(crate) fn request_id(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    pub(crate) fn count(&self, action: &str) -> usize {
        self.requests
            .iter()
            .filter(|r| action == "*" || r.action == action)
            .count()
    }

    pub(crate) fn pop_fault(&mut self, action: &str) -> Option<Fault> {
        for key in [action, "*"] {
            if let Some(f) = self.faults.get_mut(key).and_then(VecDeque::pop_front) {
                return Some(f);
            }
        }
        None
    }

    /// Issue temporary credentials, accepted from now on until they expire.
    pub(crate) fn issue_credentials(
        &mut self,
        prefix: &str,
        lifetime: Duration,
        now: SystemTime,
    ) -> (String, String, String, SystemTime) {
        self.serial += 1;
        let akid = format!("{prefix}{}", self.serial);
        let secret = self.random_string(40, SECRET_CHARS);
        let token = format!(
            "IQoJb3JpZ2luX2VjEFAKE{}",
            self.random_string(200, TOKEN_CHARS)
        );
        let expires = trunc_secs(now.checked_add(lifetime).unwrap_or(now));
        self.creds.insert(
            akid.clone(),
            Cred {
                secret: secret.clone(),
                token: Some(token.clone()),
                expires: Some(expires),
            },
        );
        self.issued.push(akid.clone());
        (akid, secret, token, expires)
    }
}
