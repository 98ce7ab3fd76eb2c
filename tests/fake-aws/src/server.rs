//! The handle a test holds: start the fake, seed its state, script faults,
//! read what it received. Dropping it stops the server.

use crate::http::accept_loop;
use crate::state::{
    AssumedRole, Cred, GroupSettings, HealthSeq, RoleSpec, Shared, State, TargetGroup, TargetSpec,
    TokenBucket,
};
use crate::wire::{header_of, param};
use crate::{ACCOUNT_ID, REGION};
use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    /// RegisterTargets only: close the socket without answering and, for
    /// now, without effect; then apply the registration this long after the
    /// next DeregisterTargets of one of its targets in that group, as AWS
    /// may apply a registration whose answer was lost after the
    /// deregistration that followed it. It is applied at the first look at
    /// the fake's state from that time on (any request, or a query such as
    /// [`FakeAws::registered`]), which nobody outside can tell from "at
    /// that time".
    LandAfterDeregister(Duration),
}

/// ELBv2 API throttling: token buckets per account and region (ELB user
/// guide, "Request throttling for the ELB API"). A call takes a token from
/// its action's bucket; when the bucket is empty it is answered HTTP 400
/// `Throttling` "Rate exceeded", without effect, and takes none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimits {
    /// `Describe*` calls: (bucket capacity, refill per second).
    pub describe: (f64, f64),
    /// RegisterTargets and DeregisterTargets: (capacity, refill per second).
    pub mutating: (f64, f64),
}

impl RateLimits {
    /// AWS's documented `Describe*` bucket (40 tokens, 10 a second) and the
    /// registration calls modelled as 20 tokens, 5 a second.
    pub const ELB: RateLimits = RateLimits {
        describe: (40.0, 10.0),
        mutating: (20.0, 5.0),
    };
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
        let now = self.shared.now();
        for cred in self.shared.lock().creds.values_mut() {
            if cred.expires.is_some() {
                cred.expires = Some(now);
            }
        }
    }

    /// Throttle ELBv2 calls with these token buckets, full from now on
    /// (None: no throttling, the default).
    pub fn set_rate_limits(&self, limits: Option<RateLimits>) {
        let now = Instant::now();
        self.shared.lock().buckets = limits.map(|l| {
            [
                TokenBucket::new(l.describe.0, l.describe.1, now),
                TokenBucket::new(l.mutating.0, l.mutating.1, now),
            ]
        });
    }

    /// Time-based health: a registered target without a health sequence is
    /// `initial` (`Elb.RegistrationInProgress`) for this long after its
    /// registration, then `healthy` (None: `healthy` at once, the default).
    /// A re-registration of a registered target does not restart it. What
    /// DescribeTargetGroups reports of the group's health check does not
    /// change with it: see [`FakeAws::configure_target_group`].
    pub fn set_healthy_after(&self, after: Option<Duration>) {
        self.shared.lock().healthy_after = after;
    }

    /// No `fake-aws: ...` line on stderr per request (for benches with
    /// thousands of calls). Default: a line each.
    pub fn set_quiet(&self, quiet: bool) {
        self.shared.lock().quiet = quiet;
    }

    /// Require this region in the SigV4 credential scope (None: any region, the default).
    pub fn require_region(&self, region: Option<&str>) {
        self.shared.lock().region = region.map(str::to_string);
    }

    /// Create an `ip` target group (protocol TCP, on [`LOAD_BALANCER_ARN`](crate::LOAD_BALANCER_ARN)) and
    /// return its ARN, `arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/NAME/<16 hex>`.
    /// A name that exists already returns the existing ARN.
    pub fn add_target_group(&self, name: &str, port: u16) -> String {
        self.add_group(name, port, "ipv4")
    }

    /// As [`FakeAws::add_target_group`], for an `ip` target group whose
    /// `IpAddressType` is `ipv6`: it takes IPv6 targets only, as AWS's do.
    pub fn add_ipv6_target_group(&self, name: &str, port: u16) -> String {
        self.add_group(name, port, "ipv6")
    }

    fn add_group(&self, name: &str, port: u16, ip_address_type: &'static str) -> String {
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
            ip_address_type,
            targets: Vec::new(),
            settings: GroupSettings::default(),
        });
        arn
    }

    /// Change what the fake reports of a group (target type, load
    /// balancer, deregistration delay, health check timing).
    /// Returns whether the group exists.
    pub fn configure_target_group(&self, tg_arn: &str, settings: GroupSettings) -> bool {
        let mut st = self.shared.lock();
        match st.groups.iter_mut().find(|g| g.arn == tg_arn) {
            Some(g) => {
                g.settings = settings;
                true
            }
            None => false,
        }
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
    /// "AssumeRoleWithWebIdentity", "AssumeRole", "container" (credentials GET), "imds" (any
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

    /// Moves the fake's clock `secs` seconds ahead of the real one (behind
    /// when negative), as AWS's clock is ahead of a pod's that drifted or was
    /// restored from a snapshot. The fake's SigV4 time check (an `x-amz-date`
    /// more than 5 minutes away is refused with 403 `SignatureDoesNotMatch`
    /// "Signature expired: ..." or "Signature not yet current: ...", as AWS
    /// answers), the credentials it issues and enforces, and the `Date`
    /// header of every answer follow it. Default 0.
    pub fn set_clock_offset(&self, secs: i64) {
        self.shared.lock().clock_offset = secs;
    }

    /// Lifetime of credentials issued by AssumeRoleWithWebIdentity (default 1h;
    /// `Expiration` is rounded down to the second, and so is the expiry the fake enforces).
    pub fn set_sts_lifetime(&self, d: Duration) {
        self.shared.lock().sts_lifetime = d;
    }

    /// Let STS AssumeRole assume `role_arn` (`arn:aws:iam::ACCOUNT:role/NAME`),
    /// requiring this `ExternalId` when given (the trust policy's
    /// `sts:ExternalId` condition). Calls must be signed for service `sts` by
    /// credentials the fake accepts; an unknown role, a missing or wrong
    /// ExternalId get 403 `AccessDenied`, as from AWS. Issued access key ids
    /// start with `ASIAROLE`.
    pub fn add_role(&self, role_arn: &str, external_id: Option<&str>) {
        self.shared.lock().roles.insert(
            role_arn.to_string(),
            RoleSpec {
                external_id: external_id.map(str::to_string),
            },
        );
    }

    /// Lifetime of credentials issued by AssumeRole (default: the request's
    /// `DurationSeconds`, else 1h; rounded down to the second like STS lifetimes).
    pub fn set_assume_role_lifetime(&self, d: Duration) {
        self.shared.lock().assume_role_lifetime = Some(d);
    }

    /// Every AssumeRole the fake granted, in order.
    pub fn assumed_roles(&self) -> Vec<AssumedRole> {
        self.shared.lock().assumed_roles.clone()
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

    /// Access key ids issued so far by STS (both actions), the container endpoint and IMDS, in order.
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
