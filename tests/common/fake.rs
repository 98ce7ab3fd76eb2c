//! A fake AWS endpoint for process tests.
//!
//! One `std::net::TcpListener` bound to 127.0.0.1:0 serves, routed by path
//! and by the `Action` parameter:
//! - `POST /` with an ELBv2 action (DescribeTargetGroups, RegisterTargets,
//!   DeregisterTargets, DescribeTargetHealth): the ELBv2 Query API, every
//!   request SigV4-verified independently (with `ring`, not aws-sigv4);
//! - `POST /` with `Action=AssumeRoleWithWebIdentity`: STS, unsigned;
//! - `GET /container-credentials...`: the ECS / EKS Pod Identity credentials
//!   endpoint (point `AWS_CONTAINER_CREDENTIALS_FULL_URI` at it);
//! - `/latest/...`: IMDSv2 (token, role name, role credentials).
//!
//! Every request is recorded ([`Recorded`]) and calls can be scripted to fail
//! ([`Fault`]). HTTP/1.1 with keep-alive and Content-Length bodies only. The
//! shape follows ureq 2.x's test server: an accept thread, one thread per
//! connection, and `Drop` stops the server. Each request also prints one line
//! on stderr (`fake-aws: ...`), which the test harness shows only for a
//! failing test.
#![allow(dead_code)]

use ring::{digest, hmac};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Account id in every ARN the fake hands out.
pub const ACCOUNT_ID: &str = "123456789012";
/// Region in the ARNs the fake hands out. Requests may be signed for any
/// region unless [`FakeAws::require_region`] says otherwise.
pub const REGION: &str = "us-east-1";
/// VPC of every target group.
pub const VPC_ID: &str = "vpc-0a1b2c3d4e5f60718";
/// The one load balancer every target group is attached to.
pub const LOAD_BALANCER_ARN: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/fake-nlb/50dc6c495c0c9188";
/// XML namespace of ELBv2 responses.
pub const ELB_NS: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";
/// XML namespace of STS responses.
pub const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// Access key accepted from the start.
pub const DEFAULT_ACCESS_KEY_ID: &str = "AKIDFAKE";
/// Secret of [`DEFAULT_ACCESS_KEY_ID`].
pub const DEFAULT_SECRET: &str = "fake-secret";
/// Role name served by the fake IMDS.
pub const IMDS_ROLE: &str = "fake-role";
/// SigV4 signing name of ELBv2.
pub const ELB_SERVICE: &str = "elasticloadbalancing";
/// ELBv2 actions the fake implements.
pub const ELB_ACTIONS: [&str; 4] = [
    "DescribeTargetGroups",
    "RegisterTargets",
    "DeregisterTargets",
    "DescribeTargetHealth",
];

/// Largest clock difference accepted in `x-amz-date` (as AWS: 5 minutes).
const MAX_SKEW: Duration = Duration::from_secs(300);
/// Largest request head (request line + headers) in bytes.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body in bytes.
const MAX_BODY: u64 = 8 * 1024 * 1024;
const HOUR: Duration = Duration::from_secs(3600);
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const SECRET_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+";
const TOKEN_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+=";

/// A scripted misbehaviour for one call (see [`FakeAws::script`]).
///
/// Error bodies follow the endpoint: ELBv2 / STS XML
/// (`<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/>`),
/// JSON `{"code","message"}` for the container endpoint, plain text for IMDS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Sleep, then answer normally (the effect happens after the sleep).
    Delay(Duration),
    /// HTTP 400 `Throttling` "Rate exceeded" (429 for the container endpoint and IMDS). No effect.
    Throttle,
    /// This status with a matching error body: 500 `InternalFailure`,
    /// 503 `ServiceUnavailable`, 429 `Throttling`, 403 `AccessDenied`, other 5xx
    /// `InternalFailure`, other 4xx `ValidationError`. No effect.
    Status(u16),
    /// This status and AWS error code (`AccessDenied`, `TargetGroupNotFound`,
    /// `ValidationError`, `InvalidTarget`, ...) with a plausible message. No effect.
    Error(u16, &'static str),
    /// Close the socket without answering (an orderly FIN: std cannot set
    /// SO_LINGER 0, so no RST). No effect.
    Reset,
    /// HTTP 200 with this body. No effect.
    Garbage(&'static [u8]),
    /// HTTP 200 whose Content-Length is 64 bytes more than the (partial XML)
    /// body sent, then close. No effect.
    Truncated,
    /// Never answer: hold the connection until the server is dropped. No effect.
    Hang,
    /// Apply the effect at once (e.g. the registration lands), then block until
    /// [`FakeAws::release`], then answer normally.
    Hold,
    /// Block until [`FakeAws::release`], then apply the effect and answer
    /// normally (a call that lands late on the AWS side).
    HoldThenApply,
    /// Apply the effect, then answer this status (AWS did it, the client sees a failure).
    ApplyThenFail(u16),
    /// Apply the effect, then close the socket without answering.
    ApplyThenReset,
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// ELBv2/STS `Action`; "container" and "imds" for those endpoints; "" for
    /// `/` without an `Action`; "unknown" for any other path.
    pub action: String,
    /// Query-string parameters, then form-body parameters, decoded, in order.
    pub params: Vec<(String, String)>,
    /// When the request had been read in full (before any fault or answer).
    pub at: Instant,
    /// Access key id from the `Authorization` header, known to the fake or not.
    pub access_key_id: Option<String>,
    /// The SigV4 signature matched the secret of that key. True even when the
    /// request was refused for another reason (expired or missing session token,
    /// wrong service, clock skew); see `auth_error`.
    pub signature_ok: bool,
    /// Path without the query string.
    pub path: String,
    /// HTTP method.
    pub method: String,
    /// Headers as received (original case, in order).
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
    /// Why authentication failed (an AWS error code), for ELBv2 and signed STS calls.
    pub auth_error: Option<String>,
    /// Region of the credential scope.
    pub region: Option<String>,
    /// Service of the credential scope.
    pub service: Option<String>,
    /// The request id the fake answered with (`x-amzn-RequestId` and `<RequestId>`).
    pub request_id: String,
    /// The fault applied to this call, if one was scripted.
    pub fault: Option<Fault>,
    /// Status sent, once answered (None while in flight, and when the fault sent none).
    pub status: Option<u16>,
    /// AWS error code sent, if the answer was an error.
    pub error_code: Option<String>,
}

impl Recorded {
    /// First value of a parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        param(&self.params, name)
    }

    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }
}

/// The fake server. Dropping it stops the server and closes its connections.
pub struct FakeAws {
    shared: Arc<Shared>,
    port: u16,
    accept: Option<JoinHandle<()>>,
}

impl FakeAws {
    /// Bind 127.0.0.1:0 and start serving.
    pub fn start() -> FakeAws {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("fake AWS: bind 127.0.0.1:0");
        let port = listener.local_addr().expect("fake AWS: local_addr").port();
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(port) << 40)
            ^ (u64::from(std::process::id()) << 16);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(seed)),
            cond: Condvar::new(),
            stop: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
        });
        let for_thread = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("fake-aws-accept".into())
            .spawn(move || accept_loop(listener, for_thread))
            .expect("fake AWS: spawn accept thread");
        FakeAws {
            shared,
            port,
            accept: Some(accept),
        }
    }

    /// Base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Accept SigV4 requests signed with this key pair (may be called several
    /// times; a known key gets the new secret). Default: ("AKIDFAKE", "fake-secret").
    pub fn add_credentials(&self, access_key_id: &str, secret: &str) {
        self.shared.lock().creds.insert(
            access_key_id.to_string(),
            Cred {
                secret: secret.to_string(),
                token: None,
                expires: None,
            },
        );
    }

    /// Accept temporary credentials: requests must carry (and sign)
    /// `x-amz-security-token: token`; after `expires` they get 400 `ExpiredToken`.
    pub fn add_session_credentials(
        &self,
        access_key_id: &str,
        secret: &str,
        token: &str,
        expires: Option<SystemTime>,
    ) {
        self.shared.lock().creds.insert(
            access_key_id.to_string(),
            Cred {
                secret: secret.to_string(),
                token: Some(token.to_string()),
                expires,
            },
        );
    }

    /// Make every credential issued so far (STS, container, IMDS, session
    /// credentials) expire now. Static keys are not affected.
    pub fn expire_temporary_credentials(&self) {
        let now = SystemTime::now();
        for cred in self.shared.lock().creds.values_mut() {
            if cred.expires.is_some() {
                cred.expires = Some(now);
            }
        }
    }

    /// Require this region in the SigV4 credential scope (None: any region, the default).
    pub fn require_region(&self, region: Option<&str>) {
        self.shared.lock().region = region.map(str::to_string);
    }

    /// Create an `ip` target group (protocol TCP, on [`LOAD_BALANCER_ARN`]) and
    /// return its ARN, `arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/NAME/<16 hex>`.
    /// A name that exists already returns the existing ARN.
    pub fn add_target_group(&self, name: &str, port: u16) -> String {
        let mut st = self.shared.lock();
        if let Some(g) = st.groups.iter().find(|g| g.name == name) {
            return g.arn.clone();
        }
        let id = st.next_u64();
        let arn = format!(
            "arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT_ID}:targetgroup/{name}/{id:016x}"
        );
        st.groups.push(TargetGroup {
            arn: arn.clone(),
            name: name.to_string(),
            port,
            targets: Vec::new(),
        });
        arn
    }

    /// Delete a target group (later calls naming it get `TargetGroupNotFound`).
    /// Returns whether it existed.
    pub fn remove_target_group(&self, tg_arn: &str) -> bool {
        let mut st = self.shared.lock();
        let before = st.groups.len();
        st.groups.retain(|g| g.arn != tg_arn);
        st.draining.retain(|d| d.arn != tg_arn);
        before != st.groups.len()
    }

    /// Register a target directly, as if a RegisterTargets had succeeded
    /// (e.g. left over by an earlier pod). Unknown group: nothing happens.
    pub fn register_target(&self, tg_arn: &str, id: &str, port: Option<u16>) {
        let mut st = self.shared.lock();
        if let Some(gi) = st.groups.iter().position(|g| g.arn == tg_arn) {
            st.add_target(
                gi,
                TargetSpec {
                    id: id.to_string(),
                    port,
                    az: None,
                },
            );
        }
    }

    /// Queue faults for the next calls of an action ("RegisterTargets",
    /// "DeregisterTargets", "DescribeTargetGroups", "DescribeTargetHealth",
    /// "AssumeRoleWithWebIdentity", "container" (credentials GET), "imds" (any
    /// IMDS call), or "*" for any). Each call pops one fault, from its own
    /// action's queue first, then from "*"; when both are empty calls behave
    /// normally. Appends to what is queued already.
    pub fn script(&self, action: &str, faults: Vec<Fault>) {
        self.shared
            .lock()
            .faults
            .entry(action.to_string())
            .or_default()
            .extend(faults);
    }

    /// Faults still queued for this action (its own queue only).
    pub fn faults_left(&self, action: &str) -> usize {
        self.shared
            .lock()
            .faults
            .get(action)
            .map_or(0, VecDeque::len)
    }

    /// Drop every queued fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Health states returned for a target by DescribeTargetHealth: each call
    /// returns the next element, the last repeats. Default when unset:
    /// "healthy" if registered, else state "unused" reason "Target.NotRegistered".
    /// The sequence is used only while the target is registered (not draining,
    /// not deregistered). Setting it again restarts it.
    pub fn set_health_sequence(
        &self,
        tg_arn: &str,
        target_id: &str,
        seq: Vec<(&str, Option<&str>)>,
    ) {
        let states = seq
            .into_iter()
            .map(|(s, r)| (s.to_string(), r.map(str::to_string)))
            .collect();
        self.shared.lock().health.insert(
            (tg_arn.to_string(), target_id.to_string()),
            HealthSeq { states, next: 0 },
        );
    }

    /// After a DeregisterTargets, report the target as ("draining",
    /// Some("Target.DeregistrationInProgress")) for the next n
    /// DescribeTargetHealth calls that cover it, then as not registered.
    /// Applies to deregistrations after this call. Default 0.
    pub fn set_draining_polls(&self, n: usize) {
        self.shared.lock().draining_polls = n;
    }

    /// Deregistering a target that is not registered: false (default) succeeds
    /// like AWS for ip targets; true answers 400 `InvalidTarget` like moto.
    pub fn set_strict_deregister(&self, strict: bool) {
        self.shared.lock().strict_deregister = strict;
    }

    /// Currently registered targets of a group: (id, port as sent in
    /// RegisterTargets, None when the request had no Port). Targets are keyed
    /// by (Id, effective port), the group's port standing in for a missing Port.
    pub fn registered(&self, tg_arn: &str) -> Vec<(String, Option<u16>)> {
        let st = self.shared.lock();
        st.groups
            .iter()
            .find(|g| g.arn == tg_arn)
            .map(|g| {
                g.targets
                    .iter()
                    .map(|t| (t.id.clone(), t.sent_port))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// The requests of one action ("*": all), in arrival order.
    pub fn requests_for(&self, action: &str) -> Vec<Recorded> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| action == "*" || r.action == action)
            .cloned()
            .collect()
    }

    /// How many requests of this action have arrived ("*": all).
    pub fn count(&self, action: &str) -> usize {
        self.shared.lock().count(action)
    }

    /// Block until a request for this action has ARRIVED (been received, before
    /// the response), or timeout. Returns true if so (at once if one already has).
    pub fn wait_for(&self, action: &str, timeout: Duration) -> bool {
        self.wait_for_count(action, 1, timeout)
    }

    /// Block until at least `n` requests for this action ("*": any) have arrived,
    /// or timeout. Returns true if so.
    pub fn wait_for_count(&self, action: &str, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |st| st.count(action) >= n)
    }

    /// Release all requests currently blocked by [`Fault::Hold`] or [`Fault::HoldThenApply`].
    pub fn release(&self) {
        let mut st = self.shared.lock();
        st.hold_generation += 1;
        self.shared.cond.notify_all();
    }

    /// How many requests are blocked by `Hold`/`HoldThenApply` right now.
    pub fn held(&self) -> usize {
        self.shared.lock().held
    }

    /// Block until at least `n` requests are held (for a `Hold`, its effect has
    /// then been applied), or timeout. Returns true if so.
    pub fn wait_held(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |st| st.held >= n)
    }

    /// Lifetime of credentials issued by AssumeRoleWithWebIdentity (default 1h;
    /// `Expiration` is rounded down to the second, and so is the expiry the fake enforces).
    pub fn set_sts_lifetime(&self, d: Duration) {
        self.shared.lock().sts_lifetime = d;
    }

    /// WebIdentityToken values seen by STS, in order (including refused ones).
    pub fn web_identity_tokens(&self) -> Vec<String> {
        self.shared.lock().web_identity_tokens.clone()
    }

    /// Token the container endpoint requires in `Authorization` (None: no check, the default).
    pub fn set_container_token(&self, token: Option<&str>) {
        self.shared.lock().container_token = token.map(str::to_string);
    }

    /// Lifetime of container credentials (default 1h).
    pub fn set_container_lifetime(&self, d: Duration) {
        self.shared.lock().container_lifetime = d;
    }

    /// Lifetime of IMDS role credentials (default 1h).
    pub fn set_imds_lifetime(&self, d: Duration) {
        self.shared.lock().imds_lifetime = d;
    }

    /// Access key ids issued so far by STS, the container endpoint and IMDS, in order.
    pub fn issued_access_keys(&self) -> Vec<String> {
        self.shared.lock().issued.clone()
    }

    /// Secret keys and session tokens issued so far (for leak checks on logs).
    pub fn issued_secrets(&self) -> Vec<String> {
        let st = self.shared.lock();
        let mut out = Vec::new();
        for key in &st.issued {
            if let Some(c) = st.creds.get(key) {
                out.push(c.secret.clone());
                out.extend(c.token.clone());
            }
        }
        out
    }

    fn wait_until(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if done(&st) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .shared
                .cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for FakeAws {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _st = self.shared.lock();
            self.shared.cond.notify_all();
        }
        // Unblock accept().
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        let conns: Vec<TcpStream> = self
            .shared
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        for s in conns {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

// ---------------------------------------------------------------------------
// State

struct Shared {
    state: Mutex<State>,
    /// Notified on every arrival, hold, release and stop.
    cond: Condvar,
    stop: AtomicBool,
    /// Open connections, shut down on drop.
    conns: Mutex<HashMap<u64, TcpStream>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleep for `d` unless the server stops first. Returns false if it stopped.
    fn sleep(&self, d: Duration) -> bool {
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
    fn hold(&self) -> bool {
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

    fn wait_stop(&self) {
        let mut st = self.lock();
        while !self.stopped() {
            st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

struct Cred {
    secret: String,
    token: Option<String>,
    expires: Option<SystemTime>,
}

struct Target {
    id: String,
    /// Effective port (the group's when the request had none).
    port: u16,
    sent_port: Option<u16>,
    az: Option<String>,
}

struct TargetGroup {
    arn: String,
    name: String,
    port: u16,
    targets: Vec<Target>,
}

struct Draining {
    arn: String,
    id: String,
    port: u16,
    az: Option<String>,
    remaining: usize,
}

struct HealthSeq {
    states: Vec<(String, Option<String>)>,
    next: usize,
}

struct TargetSpec {
    id: String,
    port: Option<u16>,
    az: Option<String>,
}

struct State {
    creds: HashMap<String, Cred>,
    groups: Vec<TargetGroup>,
    faults: HashMap<String, VecDeque<Fault>>,
    health: HashMap<(String, String), HealthSeq>,
    draining_polls: usize,
    draining: Vec<Draining>,
    strict_deregister: bool,
    requests: Vec<Recorded>,
    sts_lifetime: Duration,
    container_lifetime: Duration,
    imds_lifetime: Duration,
    container_token: Option<String>,
    web_identity_tokens: Vec<String>,
    imds_tokens: Vec<(String, SystemTime)>,
    issued: Vec<String>,
    serial: u64,
    rng: u64,
    hold_generation: u64,
    held: usize,
    region: Option<String>,
}

#[derive(Debug, Clone)]
struct AwsError {
    status: u16,
    code: String,
    message: String,
}

impl AwsError {
    fn new(status: u16, code: &str, message: impl Into<String>) -> AwsError {
        AwsError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    fn validation(message: impl Into<String>) -> AwsError {
        AwsError::new(400, "ValidationError", message)
    }

    fn null(field: &str) -> AwsError {
        AwsError::validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    }
}

impl State {
    fn new(seed: u64) -> State {
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
            requests: Vec::new(),
            sts_lifetime: HOUR,
            container_lifetime: HOUR,
            imds_lifetime: HOUR,
            container_token: None,
            web_identity_tokens: Vec::new(),
            imds_tokens: Vec::new(),
            issued: Vec::new(),
            serial: 0,
            rng: seed,
            hold_generation: 0,
            held: 0,
            region: None,
        }
    }

    /// splitmix64.
    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn random_string(&mut self, len: usize, alphabet: &[u8]) -> String {
        (0..len)
            .map(|_| {
                let i = (self.next_u64() % alphabet.len() as u64) as usize;
                char::from(alphabet[i])
            })
            .collect()
    }

    fn request_id(&mut self) -> String {
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

    fn count(&self, action: &str) -> usize {
        self.requests
            .iter()
            .filter(|r| action == "*" || r.action == action)
            .count()
    }

    fn pop_fault(&mut self, action: &str) -> Option<Fault> {
        for key in [action, "*"] {
            if let Some(f) = self.faults.get_mut(key).and_then(VecDeque::pop_front) {
                return Some(f);
            }
        }
        None
    }

    /// Issue temporary credentials, accepted from now on until they expire.
    fn issue_credentials(
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

    // --- ELBv2 -------------------------------------------------------------

    fn elb(&mut self, action: &str, params: &[(String, String)]) -> Result<String, AwsError> {
        if !ELB_ACTIONS.contains(&action) {
            return Err(AwsError::new(
                400,
                "InvalidAction",
                format!("The action {action} is not valid for this web service."),
            ));
        }
        match param(params, "Version") {
            Some("2015-12-01") => {}
            v => {
                return Err(AwsError::new(
                    400,
                    "InvalidAction",
                    format!(
                        "Could not find operation {action} for version {}",
                        v.unwrap_or("NO_VERSION_SPECIFIED")
                    ),
                ))
            }
        }
        match action {
            "DescribeTargetGroups" => self.describe_target_groups(params),
            "RegisterTargets" => self.register_targets(params),
            "DeregisterTargets" => self.deregister_targets(params),
            _ => self.describe_target_health(params),
        }
    }

    fn group_index(&self, params: &[(String, String)]) -> Result<usize, AwsError> {
        let arn =
            param(params, "TargetGroupArn").ok_or_else(|| AwsError::null("targetGroupArn"))?;
        if !valid_tg_arn(arn) {
            return Err(AwsError::validation(format!(
                "'{arn}' is not a valid target group ARN"
            )));
        }
        self.groups
            .iter()
            .position(|g| g.arn == arn)
            .ok_or_else(|| {
                AwsError::new(
                    400,
                    "TargetGroupNotFound",
                    format!("Target groups '{arn}' not found"),
                )
            })
    }

    fn describe_target_groups(&self, params: &[(String, String)]) -> Result<String, AwsError> {
        let names = members(params, "Names.member.");
        let arns = members(params, "TargetGroupArns.member.");
        if !names.is_empty() && !arns.is_empty() {
            return Err(AwsError::validation(
                "Target group names and target group ARNs cannot be specified at the same time",
            ));
        }
        let not_found = || {
            AwsError::new(
                400,
                "TargetGroupNotFound",
                "One or more target groups not found",
            )
        };
        let mut selected: Vec<&TargetGroup> = Vec::new();
        if !names.is_empty() {
            for n in &names {
                selected.push(
                    self.groups
                        .iter()
                        .find(|g| &g.name == n)
                        .ok_or_else(not_found)?,
                );
            }
        } else if !arns.is_empty() {
            for a in &arns {
                if !valid_tg_arn(a) {
                    return Err(AwsError::validation(format!(
                        "'{a}' is not a valid target group ARN"
                    )));
                }
                selected.push(
                    self.groups
                        .iter()
                        .find(|g| &g.arn == a)
                        .ok_or_else(not_found)?,
                );
            }
        } else if let Some(lb) = param(params, "LoadBalancerArn") {
            if lb != LOAD_BALANCER_ARN {
                return Err(AwsError::new(
                    400,
                    "LoadBalancerNotFound",
                    "One or more load balancers not found",
                ));
            }
            selected = self.groups.iter().collect();
        } else {
            selected = self.groups.iter().collect();
        }
        let mut xml = String::from("\n    <TargetGroups>");
        for g in selected {
            xml.push_str(&format!(
                "
      <member>
        <TargetGroupArn>{arn}</TargetGroupArn>
        <TargetGroupName>{name}</TargetGroupName>
        <Protocol>TCP</Protocol>
        <Port>{port}</Port>
        <VpcId>{VPC_ID}</VpcId>
        <HealthCheckProtocol>TCP</HealthCheckProtocol>
        <HealthCheckPort>traffic-port</HealthCheckPort>
        <HealthCheckEnabled>true</HealthCheckEnabled>
        <HealthCheckIntervalSeconds>30</HealthCheckIntervalSeconds>
        <HealthCheckTimeoutSeconds>10</HealthCheckTimeoutSeconds>
        <HealthyThresholdCount>5</HealthyThresholdCount>
        <UnhealthyThresholdCount>2</UnhealthyThresholdCount>
        <LoadBalancerArns>
          <member>{LOAD_BALANCER_ARN}</member>
        </LoadBalancerArns>
        <TargetType>ip</TargetType>
        <IpAddressType>ipv4</IpAddressType>
      </member>",
                arn = xml_escape(&g.arn),
                name = xml_escape(&g.name),
                port = g.port
            ));
        }
        xml.push_str("\n    </TargetGroups>\n  ");
        Ok(xml)
    }

    fn add_target(&mut self, gi: usize, spec: TargetSpec) {
        let Some(g) = self.groups.get_mut(gi) else {
            return;
        };
        let port = spec.port.unwrap_or(g.port);
        let arn = g.arn.clone();
        if let Some(t) = g
            .targets
            .iter_mut()
            .find(|t| t.id == spec.id && t.port == port)
        {
            t.sent_port = spec.port;
            t.az = spec.az;
        } else {
            g.targets.push(Target {
                id: spec.id.clone(),
                port,
                sent_port: spec.port,
                az: spec.az,
            });
        }
        self.draining
            .retain(|d| !(d.arn == arn && d.id == spec.id && d.port == port));
    }

    fn register_targets(&mut self, params: &[(String, String)]) -> Result<String, AwsError> {
        let gi = self.group_index(params)?;
        let specs = parse_targets(params)?;
        if specs.is_empty() {
            return Err(AwsError::null("targets"));
        }
        if let Some(s) = specs.iter().find(|s| s.id.parse::<IpAddr>().is_err()) {
            return Err(AwsError::validation(format!(
                "The IP address '{}' is not a valid IPv4 address",
                s.id
            )));
        }
        for s in specs {
            self.add_target(gi, s);
        }
        Ok(String::new())
    }

    fn deregister_targets(&mut self, params: &[(String, String)]) -> Result<String, AwsError> {
        let gi = self.group_index(params)?;
        let specs = parse_targets(params)?;
        if specs.is_empty() {
            return Err(AwsError::null("targets"));
        }
        let (arn, gport) = (self.groups[gi].arn.clone(), self.groups[gi].port);
        // Real AWS answers success when an ip target that is not registered is
        // deregistered; moto answers 400 InvalidTarget (set_strict_deregister).
        if self.strict_deregister {
            let missing: Vec<String> = specs
                .iter()
                .filter(|s| {
                    let p = s.port.unwrap_or(gport);
                    !self.groups[gi]
                        .targets
                        .iter()
                        .any(|t| t.id == s.id && t.port == p)
                })
                .map(|s| format!("'{}:{}'", s.id, s.port.unwrap_or(gport)))
                .collect();
            if !missing.is_empty() {
                return Err(AwsError::new(
                    400,
                    "InvalidTarget",
                    format!(
                        "The following targets are not registered in target group '{arn}': {}",
                        missing.join(", ")
                    ),
                ));
            }
        }
        for s in specs {
            let p = s.port.unwrap_or(gport);
            let targets = &mut self.groups[gi].targets;
            if let Some(pos) = targets.iter().position(|t| t.id == s.id && t.port == p) {
                let t = targets.remove(pos);
                if self.draining_polls > 0 {
                    self.draining.push(Draining {
                        arn: arn.clone(),
                        id: t.id,
                        port: t.port,
                        az: t.az,
                        remaining: self.draining_polls,
                    });
                }
            }
        }
        Ok(String::new())
    }

    /// Each member starts with an `AdministrativeOverride` block (as AWS sends
    /// since zonal shift) whose `<State>no_override</State>` comes before the
    /// `TargetHealth` one: a parser must not take the first `<State>`.
    fn describe_target_health(&mut self, params: &[(String, String)]) -> Result<String, AwsError> {
        let gi = self.group_index(params)?;
        let specs = parse_targets(params)?;
        let (arn, gport) = (self.groups[gi].arn.clone(), self.groups[gi].port);
        let mut entries: Vec<(String, u16, Option<String>)> = Vec::new();
        if specs.is_empty() {
            for t in &self.groups[gi].targets {
                entries.push((t.id.clone(), t.port, t.az.clone()));
            }
            for d in self.draining.iter().filter(|d| d.arn == arn) {
                entries.push((d.id.clone(), d.port, d.az.clone()));
            }
        } else {
            for s in &specs {
                match s.port {
                    Some(p) => entries.push((s.id.clone(), p, s.az.clone())),
                    None => {
                        let before = entries.len();
                        for t in self.groups[gi].targets.iter().filter(|t| t.id == s.id) {
                            entries.push((t.id.clone(), t.port, t.az.clone()));
                        }
                        for d in self
                            .draining
                            .iter()
                            .filter(|d| d.arn == arn && d.id == s.id)
                        {
                            entries.push((d.id.clone(), d.port, d.az.clone()));
                        }
                        if entries.len() == before {
                            entries.push((s.id.clone(), gport, s.az.clone()));
                        }
                    }
                }
            }
        }
        let mut xml = String::from("\n    <TargetHealthDescriptions>");
        for (id, port, az) in entries {
            let (state, reason, az) = self.health_of(gi, &id, port, az);
            let az = az
                .map(|az| {
                    format!(
                        "\n          <AvailabilityZone>{}</AvailabilityZone>",
                        xml_escape(&az)
                    )
                })
                .unwrap_or_default();
            let reason = reason
                .map(|r| {
                    format!(
                        "\n          <Reason>{}</Reason>\n          <Description>{}</Description>",
                        xml_escape(&r),
                        xml_escape(&reason_description(&r))
                    )
                })
                .unwrap_or_default();
            xml.push_str(&format!(
                "
      <member>
        <AdministrativeOverride>
          <State>no_override</State>
          <Reason>AdministrativeOverride.NoOverride</Reason>
          <Description>No override is currently active on target</Description>
        </AdministrativeOverride>
        <HealthCheckPort>{port}</HealthCheckPort>
        <Target>
          <Id>{id}</Id>
          <Port>{port}</Port>{az}
        </Target>
        <TargetHealth>
          <State>{state}</State>{reason}
        </TargetHealth>
      </member>",
                id = xml_escape(&id),
                state = xml_escape(&state),
            ));
        }
        xml.push_str("\n    </TargetHealthDescriptions>\n  ");
        Ok(xml)
    }

    /// (state, reason, availability zone) of one target for one DescribeTargetHealth call.
    fn health_of(
        &mut self,
        gi: usize,
        id: &str,
        port: u16,
        az: Option<String>,
    ) -> (String, Option<String>, Option<String>) {
        let arn = self.groups[gi].arn.clone();
        if let Some(pos) = self
            .draining
            .iter()
            .position(|d| d.arn == arn && d.id == id && d.port == port)
        {
            let d = &mut self.draining[pos];
            let az = d.az.clone().or(az);
            d.remaining = d.remaining.saturating_sub(1);
            if d.remaining == 0 {
                self.draining.remove(pos);
            }
            return (
                "draining".into(),
                Some("Target.DeregistrationInProgress".into()),
                az,
            );
        }
        if let Some(t) = self.groups[gi]
            .targets
            .iter()
            .find(|t| t.id == id && t.port == port)
        {
            let az = t.az.clone().or(az);
            if let Some(seq) = self.health.get_mut(&(arn, id.to_string())) {
                if !seq.states.is_empty() {
                    let i = seq.next.min(seq.states.len() - 1);
                    seq.next = seq.next.saturating_add(1);
                    let (s, r) = seq.states[i].clone();
                    return (s, r, az);
                }
            }
            return ("healthy".into(), None, az);
        }
        ("unused".into(), Some("Target.NotRegistered".into()), az)
    }

    // --- STS ----------------------------------------------------------------

    fn assume_role_with_web_identity(
        &mut self,
        params: &[(String, String)],
        now: SystemTime,
    ) -> Result<String, AwsError> {
        if let Some(token) = param(params, "WebIdentityToken") {
            self.web_identity_tokens.push(token.to_string());
        }
        match param(params, "Version") {
            Some("2011-06-15") => {}
            v => {
                return Err(AwsError::new(
                    400,
                    "InvalidAction",
                    format!(
                        "Could not find operation AssumeRoleWithWebIdentity for version {}",
                        v.unwrap_or("NO_VERSION_SPECIFIED")
                    ),
                ))
            }
        }
        let role_arn = param(params, "RoleArn").ok_or_else(|| AwsError::null("roleArn"))?;
        let role_name = role_arn.split_once(":role/").map(|(_, r)| r).unwrap_or("");
        if !role_arn.starts_with("arn:aws:iam::") || role_name.is_empty() {
            return Err(AwsError::validation(format!("{role_arn} is invalid")));
        }
        let session =
            param(params, "RoleSessionName").ok_or_else(|| AwsError::null("roleSessionName"))?;
        if !(2..=64).contains(&session.len())
            || !session
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value '{session}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
            )));
        }
        let token =
            param(params, "WebIdentityToken").ok_or_else(|| AwsError::null("webIdentityToken"))?;
        if token.is_empty() {
            return Err(AwsError::new(
                400,
                "InvalidIdentityToken",
                "The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)",
            ));
        }
        if let Some(d) = param(params, "DurationSeconds") {
            if !matches!(d.parse::<u64>(), Ok(900..=43200)) {
                return Err(AwsError::validation(format!(
                    "1 validation error detected: Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900"
                )));
            }
        }
        let role_name = role_name
            .rsplit('/')
            .next()
            .unwrap_or(role_name)
            .to_string();
        let (akid, secret, session_token, expires) =
            self.issue_credentials("ASIAFAKE", self.sts_lifetime, now);
        Ok(format!(
            "
    <SubjectFromWebIdentityToken>system:serviceaccount:default:fake</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role}/{session}</Arn>
      <AssumedRoleId>AROAFAKEROLEID0000000:{session}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>{token}</SessionToken>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <Expiration>{expiration}</Expiration>
      <AccessKeyId>{akid}</AccessKeyId>
    </Credentials>
    <Provider>arn:aws:iam::{ACCOUNT_ID}:oidc-provider/oidc.eks.{REGION}.amazonaws.com/id/FAKE0123456789ABCDEF</Provider>
  ",
            role = xml_escape(&role_name),
            session = xml_escape(session),
            token = xml_escape(&session_token),
            secret = xml_escape(&secret),
            expiration = rfc3339(expires),
        ))
    }

    // --- container credentials and IMDS -------------------------------------

    fn container(&mut self, req: &Request, now: SystemTime, request_id: &str) -> Response {
        if req.method != "GET" {
            let e = AwsError::new(405, "MethodNotAllowed", "only GET is supported");
            return error_response(Kind::Container, &e, request_id);
        }
        if let Some(expected) = &self.container_token {
            if req.header("authorization") != Some(expected.as_str()) {
                let e = AwsError::new(
                    401,
                    "AccessDenied",
                    "Authorization token is missing or invalid",
                );
                return error_response(Kind::Container, &e, request_id);
            }
        }
        let (akid, secret, token, expires) =
            self.issue_credentials("ASIACONT", self.container_lifetime, now);
        let body = format!(
            "{{\"AccessKeyId\":\"{}\",\"SecretAccessKey\":\"{}\",\"Token\":\"{}\",\"AccountId\":\"{ACCOUNT_ID}\",\"Expiration\":\"{}\",\"RoleArn\":\"arn:aws:iam::{ACCOUNT_ID}:role/fake-pod-role\"}}",
            json_escape(&akid),
            json_escape(&secret),
            json_escape(&token),
            rfc3339(expires)
        );
        Response::new(200, "application/json", body.into_bytes())
    }

    fn imds(&mut self, req: &Request, now: SystemTime) -> Response {
        let text =
            |status: u16, body: &str| Response::new(status, "text/plain", body.as_bytes().to_vec());
        if req.path == "/latest/api/token" {
            if req.method != "PUT" {
                return text(405, "Method Not Allowed");
            }
            if req.header("x-forwarded-for").is_some() {
                return text(403, "Forbidden");
            }
            let ttl = match req
                .header("x-aws-ec2-metadata-token-ttl-seconds")
                .map(str::parse::<u64>)
            {
                Some(Ok(ttl @ 1..=21600)) => ttl,
                _ => return text(400, "Bad Request"),
            };
            let token = format!("AQAEAFAKE{}==", self.random_string(48, ALNUM));
            self.imds_tokens.retain(|(_, exp)| *exp > now);
            self.imds_tokens
                .push((token.clone(), now + Duration::from_secs(ttl)));
            return text(200, &token)
                .header("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", &ttl.to_string());
        }
        if req.method != "GET" {
            return text(405, "Method Not Allowed");
        }
        let authorized = req
            .header("x-aws-ec2-metadata-token")
            .is_some_and(|t| self.imds_tokens.iter().any(|(k, exp)| k == t && *exp > now));
        if !authorized {
            return text(401, "Unauthorized");
        }
        let creds_path = "/latest/meta-data/iam/security-credentials";
        let Some(rest) = req.path.strip_prefix(creds_path) else {
            return text(404, "Not Found");
        };
        match rest.trim_end_matches('/') {
            "" => text(200, IMDS_ROLE),
            r if r.strip_prefix('/') == Some(IMDS_ROLE) => {
                let (akid, secret, token, expires) =
                    self.issue_credentials("ASIAIMDS", self.imds_lifetime, now);
                let body = format!(
                    "{{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"{}\",\n  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"{}\",\n  \"SecretAccessKey\" : \"{}\",\n  \"Token\" : \"{}\",\n  \"Expiration\" : \"{}\"\n}}",
                    rfc3339(now),
                    json_escape(&akid),
                    json_escape(&secret),
                    json_escape(&token),
                    rfc3339(expires)
                );
                text(200, &body)
            }
            _ => text(404, "Not Found"),
        }
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Values of `PREFIXn` parameters, ordered by n.
fn members(params: &[(String, String)], prefix: &str) -> Vec<String> {
    let mut found: Vec<(u32, String)> = params
        .iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix(prefix)?.parse::<u32>().ok()?;
            Some((n, v.clone()))
        })
        .collect();
    found.sort_by_key(|(n, _)| *n);
    found.into_iter().map(|(_, v)| v).collect()
}

fn parse_targets(params: &[(String, String)]) -> Result<Vec<TargetSpec>, AwsError> {
    type Fields = (Option<String>, Option<String>, Option<String>);
    let mut by_n: BTreeMap<u32, Fields> = BTreeMap::new();
    for (k, v) in params {
        let Some(rest) = k.strip_prefix("Targets.member.") else {
            continue;
        };
        let (n, field) = rest.split_once('.').unwrap_or((rest, ""));
        let n = match n.parse::<u32>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(AwsError::validation(format!(
                    "Invalid parameter name '{k}'"
                )))
            }
        };
        let e = by_n.entry(n).or_default();
        match field {
            "Id" => e.0 = Some(v.clone()),
            "Port" => e.1 = Some(v.clone()),
            "AvailabilityZone" => e.2 = Some(v.clone()),
            _ => return Err(AwsError::validation(format!("Unknown parameter '{k}'"))),
        }
    }
    let mut out = Vec::new();
    for (n, (id, port, az)) in by_n {
        let id = id.ok_or_else(|| AwsError::null(&format!("targets.{n}.member.id")))?;
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p >= 1 => Some(p),
                _ => {
                    return Err(AwsError::validation(format!(
                        "1 validation error detected: Value '{p}' at 'targets.{n}.member.port' failed to satisfy constraint: Member must have value greater than or equal to 1 and less than or equal to 65535"
                    )))
                }
            },
        };
        out.push(TargetSpec { id, port, az });
    }
    Ok(out)
}

/// `arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID16HEX`.
fn valid_tg_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("arn:aws:elasticloadbalancing:") else {
        return false;
    };
    let mut parts = rest.splitn(3, ':');
    let (Some(region), Some(account), Some(resource)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some((name, id)) = resource
        .strip_prefix("targetgroup/")
        .and_then(|r| r.split_once('/'))
    else {
        return false;
    };
    !region.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && name.len() <= 32
        && id.len() == 16
        && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn reason_description(reason: &str) -> String {
    match reason {
        "Elb.RegistrationInProgress" => "Target registration is in progress",
        "Elb.InitialHealthChecking" => "Initial health checks in progress",
        "Elb.InternalError" => "Health checks failed due to an internal error",
        "Target.ResponseCodeMismatch" => "Health checks failed with these codes: [502]",
        "Target.Timeout" => "Request timed out",
        "Target.FailedHealthChecks" => "Health checks failed",
        "Target.NotRegistered" => "Target is not registered to the target group",
        "Target.NotInUse" => {
            "Target group is not configured to receive traffic from the load balancer"
        }
        "Target.DeregistrationInProgress" => "Target deregistration is in progress",
        "Target.InvalidState" => "Target is in the stopped or terminated state",
        "Target.IpUnusable" => "The target IP address is reserved for use by a load balancer",
        "Target.HealthCheckDisabled" => "Health checks are disabled",
        other => return format!("Fake description of {other}"),
    }
    .to_string()
}

// ---------------------------------------------------------------------------
// SigV4 verification

#[derive(Default)]
struct Auth {
    access_key_id: Option<String>,
    signature_ok: bool,
    error: Option<AwsError>,
    region: Option<String>,
    service: Option<String>,
}

struct AuthHeader {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
}

fn parse_authorization(value: &str) -> Option<AuthHeader> {
    let rest = value.trim().strip_prefix("AWS4-HMAC-SHA256 ")?;
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k.trim() {
            "Credential" => cred = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => sig = Some(v.trim()),
            _ => return None,
        }
    }
    let scope: Vec<&str> = cred?.split('/').collect();
    if scope.len() != 5 || scope[4] != "aws4_request" || scope[..4].iter().any(|s| s.is_empty()) {
        return None;
    }
    let signed_headers: Vec<String> = signed?.split(';').map(str::to_string).collect();
    if signed_headers.iter().any(String::is_empty) {
        return None;
    }
    Some(AuthHeader {
        access_key_id: scope[0].to_string(),
        date: scope[1].to_string(),
        region: scope[2].to_string(),
        service: scope[3].to_string(),
        signed_headers,
        signature: sig?.to_string(),
    })
}

fn check_sigv4(st: &State, req: &Request, expected_service: &str, now: SystemTime) -> Auth {
    let mut auth = Auth::default();
    let Some(value) = req.header("authorization") else {
        auth.error = Some(AwsError::new(
            403,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        ));
        return auth;
    };
    let Some(h) = parse_authorization(value) else {
        auth.error = Some(AwsError::new(
            400,
            "IncompleteSignature",
            format!(
                "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' in the form 'AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex': '{value}'"
            ),
        ));
        return auth;
    };
    auth.access_key_id = Some(h.access_key_id.clone());
    auth.region = Some(h.region.clone());
    auth.service = Some(h.service.clone());
    let cred = st.creds.get(&h.access_key_id);
    let amz_date = req.header("x-amz-date");
    let signed: Vec<&str> = h.signed_headers.iter().map(String::as_str).collect();
    let canonical = canonical_request(
        &req.method,
        &req.path,
        &req.query,
        &req.headers,
        &signed,
        &req.body,
    );
    let mut to_sign = String::new();
    if let (Some(cred), Some(date), Some(canonical)) = (cred, amz_date, &canonical) {
        let scope = format!("{}/{}/{}/aws4_request", h.date, h.region, h.service);
        to_sign = string_to_sign(date, &scope, canonical);
        let key = signing_key(&cred.secret, &h.date, &h.region, &h.service);
        auth.signature_ok = hex(hmac::sign(&key, to_sign.as_bytes()).as_ref()) == h.signature;
    }
    let sdm = |msg: String| Some(AwsError::new(403, "SignatureDoesNotMatch", msg));
    let token = req.header("x-amz-security-token");
    auth.error = if let Some(cred) = cred {
        let skew = amz_date.and_then(parse_amz_date);
        if cred.token.as_deref() != token {
            Some(AwsError::new(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            ))
        } else if token.is_some() && !signed.contains(&"x-amz-security-token") {
            sdm("x-amz-security-token must be a signed header (fake AWS rule)".into())
        } else if cred.expires.is_some_and(|e| e <= now) {
            Some(AwsError::new(
                400,
                "ExpiredToken",
                "The security token included in the request is expired",
            ))
        } else if h.service != expected_service {
            sdm(format!(
                "Credential should be scoped to correct service: '{expected_service}'. "
            ))
        } else if st.region.as_deref().is_some_and(|r| r != h.region) {
            sdm("Credential should be scoped to a valid region. ".into())
        } else if amz_date.is_none() {
            Some(AwsError::new(
                400,
                "IncompleteSignature",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            ))
        } else if skew.is_none() {
            Some(AwsError::new(
                400,
                "IncompleteSignature",
                "X-Amz-Date must be in the ISO 8601 basic format YYYYMMDDTHHMMSSZ",
            ))
        } else if amz_date.and_then(|d| d.get(..8)) != Some(h.date.as_str()) {
            sdm(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{}'.",
                h.date,
                amz_date.and_then(|d| d.get(..8)).unwrap_or(""),
                amz_date.unwrap_or("")
            ))
        } else if skew.is_some_and(|t| t.checked_add(MAX_SKEW).is_some_and(|late| late < now)) {
            sdm(format!(
                "Signature expired: {} is now earlier than {} ({} - 5 min.)",
                amz_date.unwrap_or(""),
                format_amz_date(now.checked_sub(MAX_SKEW).unwrap_or(now)),
                format_amz_date(now)
            ))
        } else if skew.is_some_and(|t| t > now + MAX_SKEW) {
            sdm(format!(
                "Signature not yet current: {} is still later than {} ({} + 5 min.)",
                amz_date.unwrap_or(""),
                format_amz_date(now + MAX_SKEW),
                format_amz_date(now)
            ))
        } else if !signed.contains(&"host") {
            sdm("'Host' must be a 'SignedHeader' in the AWS Authorization.".into())
        } else if canonical.is_none() {
            sdm(format!(
                "A header listed in SignedHeaders is missing from the request: {}",
                signed.join(";")
            ))
        } else if !auth.signature_ok {
            sdm(format!(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\nThe Canonical String for this request should have been\n'{}'\n\nThe String-to-Sign should have been\n'{to_sign}'\n",
                canonical.as_deref().unwrap_or("")
            ))
        } else {
            None
        }
    } else {
        Some(AwsError::new(
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ))
    };
    auth
}

/// The SigV4 canonical request, or None when a signed header is absent.
/// `path` is the path as sent (it is URI-encoded once more, as for every
/// service but S3), `query` the raw query string, `signed_headers` the
/// lowercase names in the order of the SignedHeaders list.
pub fn canonical_request<K: AsRef<str>, V: AsRef<str>>(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(K, V)],
    signed_headers: &[&str],
    body: &[u8],
) -> Option<String> {
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = headers
            .iter()
            .filter(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref().split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return None;
        }
        canonical_headers.push_str(&name.to_ascii_lowercase());
        canonical_headers.push(':');
        canonical_headers.push_str(&values.join(","));
        canonical_headers.push('\n');
    }
    let uri = if path.is_empty() {
        "/".to_string()
    } else {
        uri_encode(path.as_bytes(), true)
    };
    Some(format!(
        "{method}\n{uri}\n{}\n{canonical_headers}\n{}\n{}",
        canonical_query(query),
        signed_headers.join(";"),
        hex(digest::digest(&digest::SHA256, body).as_ref())
    ))
}

/// Query parameters decoded, re-encoded strictly and sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|seg| {
            let (k, v) = seg.split_once('=').unwrap_or((seg, ""));
            (
                uri_encode(&percent_decode(k, false), false),
                uri_encode(&percent_decode(v, false), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `AWS4-HMAC-SHA256\n{amz_date}\n{scope}\nhex(sha256(canonical_request))`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
    )
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in [date, region, service, "aws4_request"] {
        let k = hmac::Key::new(hmac::HMAC_SHA256, &key);
        key = hmac::sign(&k, part.as_bytes()).as_ref().to_vec();
    }
    hmac::Key::new(hmac::HMAC_SHA256, &key)
}

/// Hex SigV4 signature of a canonical request (scope date = first 8 chars of `amz_date`).
pub fn sigv4_signature(
    secret: &str,
    amz_date: &str,
    region: &str,
    service: &str,
    canonical_request: &str,
) -> String {
    let date = amz_date.get(..8).unwrap_or("");
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let key = signing_key(secret, date, region, service);
    hex(hmac::sign(
        &key,
        string_to_sign(amz_date, &scope, canonical_request).as_bytes(),
    )
    .as_ref())
}

/// Credentials and scope for [`sign_for_test`].
#[derive(Clone, Copy, Debug)]
pub struct TestSigner<'a> {
    /// Access key id.
    pub access_key_id: &'a str,
    /// Secret access key.
    pub secret: &'a str,
    /// Session token, sent (and signed) as `x-amz-security-token`.
    pub session_token: Option<&'a str>,
    /// Region of the credential scope.
    pub region: &'a str,
    /// Service of the credential scope.
    pub service: &'a str,
}

impl<'a> TestSigner<'a> {
    /// ELBv2 in [`REGION`] with static credentials.
    pub fn elb(access_key_id: &'a str, secret: &'a str) -> TestSigner<'a> {
        TestSigner {
            access_key_id,
            secret,
            session_token: None,
            region: REGION,
            service: ELB_SERVICE,
        }
    }
}

/// Sign a request with SigV4 as of `time`: returns `headers` (all of them
/// signed; include `host`) plus `x-amz-date`, `x-amz-security-token` (with a
/// session token) and `authorization`.
pub fn sign_for_test(
    signer: &TestSigner<'_>,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    time: SystemTime,
) -> Vec<(String, String)> {
    let date = format_amz_date(time);
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.push(("x-amz-date".into(), date.clone()));
    if let Some(t) = signer.session_token {
        out.push(("x-amz-security-token".into(), t.to_string()));
    }
    let mut names: Vec<String> = out.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
    names.sort();
    names.dedup();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let canonical = canonical_request(method, path, query, &out, &refs, body).unwrap_or_default();
    let signature = sigv4_signature(
        signer.secret,
        &date,
        signer.region,
        signer.service,
        &canonical,
    );
    out.push((
        "authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{}/{}/{}/aws4_request, SignedHeaders={}, Signature={signature}",
            signer.access_key_id,
            date.get(..8).unwrap_or(""),
            signer.region,
            signer.service,
            names.join(";")
        ),
    ));
    out
}

// ---------------------------------------------------------------------------
// HTTP server

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Elb,
    Sts,
    Container,
    Imds,
    MissingAction,
    NotFound,
}

struct Request {
    method: String,
    path: String,
    query: String,
    version: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    fn keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.header("connection")
                .is_some_and(|c| c.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        };
        if has("close") {
            false
        } else {
            self.version == "HTTP/1.1" || has("keep-alive")
        }
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Declare a Content-Length 64 bytes longer than the body, then close.
    truncate: bool,
    error_code: Option<String>,
}

impl Response {
    fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            truncate: false,
            error_code: None,
        }
    }

    fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

enum ReadError {
    /// EOF or IO error: close quietly.
    Closed,
    /// Malformed request: answer this status and close.
    Bad(u16, &'static str),
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut next_id = 0u64;
    for conn in listener.incoming() {
        if shared.stopped() {
            break;
        }
        let Ok(stream) = conn else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        next_id += 1;
        let id = next_id;
        let _ = stream.set_nodelay(true);
        if let Ok(clone) = stream.try_clone() {
            shared
                .conns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, clone);
        }
        let for_thread = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name(format!("fake-aws-conn-{id}"))
            .spawn(move || {
                serve_connection(&for_thread, stream);
                for_thread
                    .conns
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            });
        if spawned.is_err() {
            shared
                .conns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }
    }
}

fn serve_connection(shared: &Shared, stream: TcpStream) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut out = stream;
    while !shared.stopped() {
        let req = match read_request(&mut reader, &mut out) {
            Ok(Some(req)) => req,
            Ok(None) | Err(ReadError::Closed) => break,
            Err(ReadError::Bad(status, msg)) => {
                let resp = Response::new(status, "text/plain", format!("{msg}\n").into_bytes());
                let _ = write_response(&mut out, &resp, true);
                break;
            }
        };
        if shared.stopped() {
            break;
        }
        let keep_alive = req.keep_alive();
        let Some(resp) = handle(shared, &req) else {
            break;
        };
        let close = !keep_alive || resp.truncate;
        if write_response(&mut out, &resp, close).is_err() || close {
            break;
        }
    }
    let _ = out.shutdown(Shutdown::Both);
}

fn read_line<R: BufRead>(reader: &mut R, limit: usize) -> Result<Option<Vec<u8>>, ReadError> {
    let mut buf = Vec::new();
    let n = reader
        .by_ref()
        .take(limit as u64)
        .read_until(b'\n', &mut buf)
        .map_err(|_| ReadError::Closed)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if buf.len() >= limit {
            ReadError::Bad(431, "request header line too long")
        } else {
            ReadError::Closed
        });
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(buf))
}

fn read_request<R: BufRead>(
    reader: &mut R,
    out: &mut TcpStream,
) -> Result<Option<Request>, ReadError> {
    let mut blank = 0;
    let line = loop {
        match read_line(reader, 8192)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => {
                blank += 1;
                if blank > 8 {
                    return Err(ReadError::Bad(400, "empty request"));
                }
            }
            Some(l) => break String::from_utf8_lossy(&l).into_owned(),
        }
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(400, "malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ReadError::Bad(400, "malformed request method"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(ReadError::Bad(505, "HTTP version not supported"));
    }
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    if !target.starts_with('/') {
        return Err(ReadError::Bad(400, "request target must be a path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    let mut total = line.len();
    loop {
        let Some(h) = read_line(reader, MAX_HEAD)? else {
            return Err(ReadError::Closed);
        };
        if h.is_empty() {
            break;
        }
        total += h.len();
        if total > MAX_HEAD || headers.len() >= 200 {
            return Err(ReadError::Bad(431, "request header fields too large"));
        }
        if h[0] == b' ' || h[0] == b'\t' {
            return Err(ReadError::Bad(400, "obsolete header line folding"));
        }
        let h = String::from_utf8_lossy(&h).into_owned();
        let Some((name, value)) = h.split_once(':') else {
            return Err(ReadError::Bad(400, "malformed header line"));
        };
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err(ReadError::Bad(400, "malformed header name"));
        }
        headers.push((
            name.to_string(),
            value.trim_matches(|c| c == ' ' || c == '\t').to_string(),
        ));
    }
    let mut req = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        version: version.to_string(),
        headers,
        body: Vec::new(),
    };
    if req.header("transfer-encoding").is_some() {
        return Err(ReadError::Bad(
            400,
            "Transfer-Encoding is not supported by the fake AWS server; send Content-Length",
        ));
    }
    let mut len: Option<u64> = None;
    for (k, v) in &req.headers {
        if k.eq_ignore_ascii_case("content-length") {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ReadError::Bad(400, "invalid Content-Length"));
            }
            let n = v
                .parse::<u64>()
                .map_err(|_| ReadError::Bad(413, "body too large"))?;
            if len.is_some_and(|l| l != n) {
                return Err(ReadError::Bad(400, "conflicting Content-Length headers"));
            }
            len = Some(n);
        }
    }
    let len = len.unwrap_or(0);
    if len > MAX_BODY {
        return Err(ReadError::Bad(413, "body too large"));
    }
    if len > 0
        && req
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|_| ReadError::Closed)?;
    }
    let mut body = vec![0; len as usize];
    reader
        .read_exact(&mut body)
        .map_err(|_| ReadError::Closed)?;
    req.body = body;
    Ok(Some(req))
}

fn write_response(out: &mut TcpStream, resp: &Response, close: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nDate: {}\r\n",
        resp.status,
        reason_phrase(resp.status),
        http_date(SystemTime::now())
    );
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let declared = resp.body.len() + if resp.truncate { 64 } else { 0 };
    head.push_str(&format!("Content-Length: {declared}\r\n"));
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&resp.body);
    out.write_all(&bytes)?;
    out.flush()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// Route a request: (kind, action name for faults and records, parameters).
fn route(req: &Request) -> (Kind, String, Vec<(String, String)>) {
    let mut params = parse_form(&req.query);
    if req.path == "/" {
        let is_form = req.header("content-type").is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
        if req.method == "POST" && is_form {
            params.extend(parse_form(&String::from_utf8_lossy(&req.body)));
        }
        let kind = match param(&params, "Action") {
            None => Kind::MissingAction,
            Some("AssumeRoleWithWebIdentity") => Kind::Sts,
            Some(_) => Kind::Elb,
        };
        let action = param(&params, "Action").unwrap_or("").to_string();
        (kind, action, params)
    } else if req.path.starts_with("/container-credentials") {
        (Kind::Container, "container".into(), params)
    } else if req.path == "/latest" || req.path.starts_with("/latest/") {
        (Kind::Imds, "imds".into(), params)
    } else {
        (Kind::NotFound, "unknown".into(), params)
    }
}

struct Ctx<'a> {
    shared: &'a Shared,
    req: &'a Request,
    kind: Kind,
    action: &'a str,
    params: &'a [(String, String)],
    auth: &'a Auth,
    request_id: &'a str,
}

/// Record the request, apply any fault, build the answer (None: close without one).
fn handle(shared: &Shared, req: &Request) -> Option<Response> {
    let at = Instant::now();
    let now = SystemTime::now();
    let (kind, action, params) = route(req);
    let mut st = shared.lock();
    let auth = match kind {
        Kind::Elb => check_sigv4(&st, req, ELB_SERVICE, now),
        Kind::Sts if req.header("authorization").is_some() => check_sigv4(&st, req, "sts", now),
        _ => Auth::default(),
    };
    let request_id = st.request_id();
    let fault = st.pop_fault(&action);
    st.requests.push(Recorded {
        action: action.clone(),
        params: params.clone(),
        at,
        access_key_id: auth.access_key_id.clone(),
        signature_ok: auth.signature_ok,
        path: req.path.clone(),
        method: req.method.clone(),
        headers: req.headers.clone(),
        body: req.body.clone(),
        auth_error: auth.error.as_ref().map(|e| e.code.clone()),
        region: auth.region.clone(),
        service: auth.service.clone(),
        request_id: request_id.clone(),
        fault: fault.clone(),
        status: None,
        error_code: None,
    });
    let index = st.requests.len() - 1;
    shared.cond.notify_all();
    drop(st);

    let ctx = Ctx {
        shared,
        req,
        kind,
        action: &action,
        params: &params,
        auth: &auth,
        request_id: &request_id,
    };
    let resp = apply(fault.clone(), &ctx);

    let mut st = shared.lock();
    if let Some(r) = st.requests.get_mut(index) {
        r.status = resp.as_ref().map(|r| r.status);
        r.error_code = resp.as_ref().and_then(|r| r.error_code.clone());
    }
    drop(st);
    eprintln!(
        "fake-aws: {} {} action={:?} key={} sig_ok={} fault={:?} -> {}",
        req.method,
        req.path,
        action,
        auth.access_key_id.as_deref().unwrap_or("-"),
        auth.signature_ok,
        fault,
        match &resp {
            Some(r) => format!("{} {}", r.status, r.error_code.as_deref().unwrap_or("")),
            None => "no answer".into(),
        }
    );
    resp
}

fn apply(fault: Option<Fault>, c: &Ctx<'_>) -> Option<Response> {
    let fail = |e: AwsError| Some(error_response(c.kind, &e, c.request_id));
    match fault {
        None => Some(normal(c)),
        Some(Fault::Delay(d)) => c.shared.sleep(d).then(|| normal(c)),
        Some(Fault::Throttle) => {
            let status = if matches!(c.kind, Kind::Container | Kind::Imds) {
                429
            } else {
                400
            };
            fail(AwsError::new(status, "Throttling", "Rate exceeded"))
        }
        Some(Fault::Status(s)) => fail(status_error(s)),
        Some(Fault::Error(s, code)) => fail(AwsError::new(s, code, code_message(code))),
        Some(Fault::Reset) => None,
        Some(Fault::Garbage(body)) => Some(Response::new(200, content_type(c.kind), body.to_vec())),
        Some(Fault::Truncated) => {
            let body = match c.kind {
                Kind::Container | Kind::Imds => "{\"AccessKeyId\":\"ASIA".to_string(),
                _ => format!("<{}Response xmlns=\"{ELB_NS}\">\n  <", c.action),
            };
            let mut r = Response::new(200, content_type(c.kind), body.into_bytes());
            r.truncate = true;
            Some(r)
        }
        Some(Fault::Hang) => {
            c.shared.wait_stop();
            None
        }
        Some(Fault::Hold) => {
            let r = normal(c);
            c.shared.hold().then_some(r)
        }
        Some(Fault::HoldThenApply) => c.shared.hold().then(|| normal(c)),
        Some(Fault::ApplyThenFail(s)) => {
            let _ = normal(c);
            fail(status_error(s))
        }
        Some(Fault::ApplyThenReset) => {
            let _ = normal(c);
            None
        }
    }
}

/// The answer without faults (applies the action's effect).
fn normal(c: &Ctx<'_>) -> Response {
    let now = SystemTime::now();
    let rid = c.request_id;
    match c.kind {
        Kind::Elb => {
            if let Some(e) = &c.auth.error {
                return error_response(Kind::Elb, e, rid);
            }
            let result = c.shared.lock().elb(c.action, c.params);
            match result {
                Ok(inner) => ok_xml(ELB_NS, c.action, &inner, rid),
                Err(e) => error_response(Kind::Elb, &e, rid),
            }
        }
        Kind::Sts => {
            let result = c.shared.lock().assume_role_with_web_identity(c.params, now);
            match result {
                Ok(inner) => ok_xml(STS_NS, c.action, &inner, rid),
                Err(e) => error_response(Kind::Sts, &e, rid),
            }
        }
        Kind::Container => c.shared.lock().container(c.req, now, rid),
        Kind::Imds => c.shared.lock().imds(c.req, now),
        Kind::MissingAction => error_response(
            Kind::Elb,
            &AwsError::new(
                400,
                "MissingAction",
                "Missing Action parameter (POST / needs a form body with Action=...)",
            ),
            rid,
        ),
        Kind::NotFound => Response::new(404, "text/plain", b"not found (fake AWS)\n".to_vec()),
    }
}

fn content_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Container => "application/json",
        Kind::Imds | Kind::NotFound => "text/plain",
        _ => "text/xml",
    }
}

fn ok_xml(ns: &str, action: &str, inner: &str, request_id: &str) -> Response {
    let result = if inner.is_empty() {
        format!("<{action}Result/>")
    } else {
        format!("<{action}Result>{inner}</{action}Result>")
    };
    let body = format!(
        "<{action}Response xmlns=\"{ns}\">\n  {result}\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n</{action}Response>\n"
    );
    Response::new(200, "text/xml", body.into_bytes()).header("x-amzn-RequestId", request_id)
}

fn error_response(kind: Kind, e: &AwsError, request_id: &str) -> Response {
    let mut r = match kind {
        Kind::Container => Response::new(
            e.status,
            "application/json",
            format!(
                "{{\"code\":\"{}\",\"message\":\"{}\"}}",
                json_escape(&e.code),
                json_escape(&e.message)
            )
            .into_bytes(),
        ),
        Kind::Imds | Kind::NotFound => Response::new(
            e.status,
            "text/plain",
            format!("{}: {}\n", e.code, e.message).into_bytes(),
        ),
        Kind::Sts | Kind::Elb | Kind::MissingAction => {
            let ns = if kind == Kind::Sts { STS_NS } else { ELB_NS };
            let typ = if e.status >= 500 {
                "Receiver"
            } else {
                "Sender"
            };
            let body = format!(
                "<ErrorResponse xmlns=\"{ns}\">\n  <Error>\n    <Type>{typ}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
                xml_escape(&e.code),
                xml_escape(&e.message)
            );
            Response::new(e.status, "text/xml", body.into_bytes())
                .header("x-amzn-RequestId", request_id)
        }
    };
    r.error_code = Some(e.code.clone());
    r
}

fn status_error(status: u16) -> AwsError {
    match status {
        500 => AwsError::new(500, "InternalFailure", code_message("InternalFailure")),
        503 => AwsError::new(
            503,
            "ServiceUnavailable",
            code_message("ServiceUnavailable"),
        ),
        429 => AwsError::new(429, "Throttling", code_message("Throttling")),
        403 => AwsError::new(403, "AccessDenied", code_message("AccessDenied")),
        s if s >= 500 => AwsError::new(s, "InternalFailure", code_message("InternalFailure")),
        s => AwsError::new(s, "ValidationError", code_message("ValidationError")),
    }
}

fn code_message(code: &str) -> String {
    match code {
        "AccessDenied" => format!(
            "User: arn:aws:sts::{ACCOUNT_ID}:assumed-role/fake-role/fake-session is not authorized to perform this action"
        ),
        "TargetGroupNotFound" => "One or more target groups not found".into(),
        "ValidationError" => "Fake validation error".into(),
        "InvalidTarget" => "The specified target does not exist, is not in the same VPC as the target group, or has an unsupported instance type".into(),
        "Throttling" => "Rate exceeded".into(),
        "InternalFailure" => "An internal error has occurred. Please try again.".into(),
        "ServiceUnavailable" => "Service is unavailable. Please try again.".into(),
        "ExpiredToken" => "The security token included in the request is expired".into(),
        "InvalidClientTokenId" => "The security token included in the request is invalid.".into(),
        "InvalidIdentityToken" => "Couldn't retrieve verification key from your identity provider".into(),
        "IDPCommunicationError" => "Couldn't contact the identity provider".into(),
        "HealthUnavailable" => {
            "The health of the specified targets could not be retrieved due to an internal error."
                .into()
        }
        other => format!("Fake {other} error"),
    }
}

// ---------------------------------------------------------------------------
// Encoding helpers

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3986 encoding: unreserved characters kept (and `/` when `keep_slash`),
/// every other byte as %XX (uppercase).
fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// %XX decoding (invalid escapes kept as they are); `+` as space when `plus_as_space`.
fn percent_decode(s: &str, plus_as_space: bool) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let hex_at = |j: usize| bytes.get(j).and_then(|c| char::from(*c).to_digit(16));
        if b == b'%' {
            if let (Some(h), Some(l)) = (hex_at(i + 1), hex_at(i + 2)) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if plus_as_space && b == b'+' { b' ' } else { b });
        i += 1;
    }
    out
}

/// Parse `application/x-www-form-urlencoded` (or a query string) into decoded pairs.
pub fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|seg| !seg.is_empty())
        .map(|seg| {
            let (k, v) = seg.split_once('=').unwrap_or((seg, ""));
            (
                String::from_utf8_lossy(&percent_decode(k, true)).into_owned(),
                String::from_utf8_lossy(&percent_decode(v, true)).into_owned(),
            )
        })
        .collect()
}

/// Encode pairs as an `application/x-www-form-urlencoded` body (RFC 3986 style, as the SDKs do).
pub fn form_encode(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                uri_encode(k.as_bytes(), false),
                uri_encode(v.as_bytes(), false)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Text of the first `<tag>...</tag>` in an XML document (entities resolved), for leaf elements.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    xml_texts(xml, tag).into_iter().next()
}

/// Texts of every `<tag>...</tag>` in order, for leaf elements.
pub fn xml_texts(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else {
            break;
        };
        out.push(xml_unescape(&after[..j]));
        rest = &after[j + close.len()..];
    }
    out
}

/// String value of `"key"` in a flat JSON object (no escapes handled beyond `\"`), for tests.
pub fn json_text(json: &str, key: &str) -> Option<String> {
    let quoted = format!("\"{key}\"");
    let after = &json[json.find(&quoted)? + quoted.len()..];
    let after = after
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = after.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Time helpers

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn trunc_secs(t: SystemTime) -> SystemTime {
    from_unix(unix_secs(t))
}

fn from_unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH
            .checked_add(Duration::from_secs(secs.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day, hour, minute, second, days since epoch).
fn parts(t: SystemTime) -> (i64, u32, u32, i64, i64, i64, i64) {
    let secs = unix_secs(t);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    (y, mo, d, rem / 3600, rem % 3600 / 60, rem % 60, days)
}

/// `2026-11-25T12:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = parts(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `20261125T120000Z` (SigV4's x-amz-date).
pub fn format_amz_date(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = parts(t);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Parse `20261125T120000Z`.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = b.get(from..to)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            digits
                .iter()
                .fold(0i64, |n, d| n * 10 + i64::from(d - b'0')),
        )
    };
    let (y, mo, d) = (num(0, 4)?, num(4, 6)?, num(6, 8)?);
    let (h, mi, sec) = (num(9, 11)?, num(11, 13)?, num(13, 15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    Some(from_unix(days * 86_400 + h * 3600 + mi * 60 + sec))
}

/// `Tue, 25 Nov 2026 12:00:00 GMT`.
fn http_date(t: SystemTime) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, days) = parts(t);
    let wd = WEEKDAYS[days.rem_euclid(7) as usize];
    let mon = MONTHS[(mo as usize).saturating_sub(1).min(11)];
    format!("{wd}, {d:02} {mon} {y:04} {h:02}:{mi:02}:{s:02} GMT")
}

// ---------------------------------------------------------------------------
// A tiny HTTP client for tests

/// A response read by [`http_request`] or [`read_response`].
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers in order, original case.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    /// Body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Text of the first `<tag>` in the body.
    pub fn xml(&self, tag: &str) -> Option<String> {
        xml_text(&self.text(), tag)
    }
}

/// Write one HTTP/1.1 request. Adds `Host: 127.0.0.1:PORT` unless given, and
/// Content-Length for a body or a POST/PUT unless given.
pub fn write_request<W: Write, K: AsRef<str>, V: AsRef<str>>(
    stream: &mut W,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(K, V)],
    body: &[u8],
) -> io::Result<()> {
    let has = |name: &str| {
        headers
            .iter()
            .any(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{}: {}\r\n", k.as_ref(), v.as_ref()));
    }
    if !has("content-length") && (!body.is_empty() || method == "POST" || method == "PUT") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes)?;
    stream.flush()
}

/// Read one HTTP/1.1 response (skipping 1xx). A body shorter than its
/// Content-Length is an `UnexpectedEof` error; without Content-Length the body
/// runs to EOF.
pub fn read_response<R: BufRead>(reader: &mut R) -> io::Result<HttpResponse> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        if line.trim().is_empty() {
            continue;
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("malformed status line"))?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF in headers",
                ));
            }
            let h = h.trim_end_matches(['\r', '\n']);
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').ok_or_else(|| bad("malformed header"))?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        if (100..200).contains(&status) {
            continue;
        }
        let mut body = Vec::new();
        match header_of(&headers, "content-length") {
            Some(len) => {
                let len: usize = len.parse().map_err(|_| bad("bad Content-Length"))?;
                body.resize(len, 0);
                reader.read_exact(&mut body)?;
            }
            None => {
                reader.read_to_end(&mut body)?;
            }
        }
        return Ok(HttpResponse {
            status,
            headers,
            body,
        });
    }
}

/// One request on a new connection to 127.0.0.1:`port` (with
/// `Connection: close` unless given; 10 s read timeout).
pub fn http_request<K: AsRef<str>, V: AsRef<str>>(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(K, V)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
        .collect();
    if header_of(&all, "connection").is_none() {
        all.push(("Connection".into(), "close".into()));
    }
    write_request(&mut stream, port, method, path, &all, body)?;
    read_response(&mut BufReader::new(stream))
}
