use super::*;
use crate::aws::credentials::Role;
use crate::aws::credentials::Secret;
use crate::aws::elbv2::{DeregisterTargets, DescribeTargetHealth, RegisterTargets, Target};
use crate::aws::error::TransportKind;
use crate::aws::http::{HttpRequest, HttpResponse};
use crate::aws::tests::{dated, ok, status, Scripted};
use crate::clock::testing::FakeClock;

fn settings(source: Source) -> Settings {
    Settings {
        region: "us-east-1".into(),
        elbv2_url: "http://127.0.0.1:1".into(),
        sts_url: "http://127.0.0.1:2".into(),
        source,
        role: None,
    }
}

fn static_source() -> Source {
    Source::Static(Credentials {
        access_key_id: "AKID".into(),
        secret_access_key: Secret::new("SECRET".into()),
        session_token: None,
        expiry: None,
    })
}

const REGISTERED: &[u8] = include_bytes!("../../../tests/data/register_targets.xml");
const THROTTLED: &[u8] = include_bytes!("../../../tests/data/throttling.xml");

fn target() -> Vec<Target> {
    vec![Target {
        id: "10.0.0.1".into(),
        port: Some(80),
        availability_zone: None,
    }]
}

#[test]
fn retries_throttling_then_succeeds_with_jittered_backoff() {
    let s = Scripted::new([status(400, THROTTLED), status(503, b""), ok(REGISTERED)]);
    let mut c = Client::new(&s, settings(static_source()));
    let mut t = FakeClock::new();
    let deadline = t.now() + Duration::from_secs(60);
    let id = register_target(&mut c, Budget::until(deadline), &mut t).unwrap();
    assert_eq!(
        id.request_id.as_deref(),
        Some("f9a1e3a7-f3a9-11e5-ae48-cff02092876b")
    );
    // Throttling: a slot of the cut rate (0.5 calls/s: 0.5 × 4 s); the
    // 503: the short backoff (0.5 × 400 ms).
    assert_eq!(
        t.slept,
        vec![Duration::from_secs(2), Duration::from_millis(200)]
    );
    let seen = s.seen.borrow();
    assert_eq!(seen.len(), 3);
    let auth = seen[0]
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .unwrap();
    assert!(auth
        .1
        .contains("Credential=AKID/20231114/us-east-1/elasticloadbalancing/aws4_request"));
    let body = String::from_utf8(seen[0].body.clone()).unwrap();
    assert!(body.starts_with("Action=RegisterTargets&Version=2015-12-01&TargetGroupArn=arn%3Atg"));
}

const HEALTH: &[u8] = include_bytes!("../../../tests/data/describe_target_health.xml");

#[test]
fn throttling_paces_its_bucket_only() {
    let s = Scripted::new([
        status(400, THROTTLED),
        ok(HEALTH),
        ok(REGISTERED),
        ok(HEALTH),
    ]);
    let mut c = Client::new(&s, settings(static_source()));
    let mut t = FakeClock::new();
    let budget = Budget::until(t.now() + Duration::from_secs(60));
    let health = DescribeTargetHealth {
        arn: "arn:tg",
        targets: &target(),
    };
    c.call(&health, budget, &mut t).unwrap();
    assert_eq!(t.slept, vec![Duration::from_secs(2)]);
    assert_eq!(c.adaptive(Bucket::Describe).unwrap().throttles, 1);
    // The mutating bucket was not throttled: RegisterTargets goes at once.
    register_target(&mut c, budget, &mut t).unwrap();
    assert_eq!(t.slept.len(), 1);
    assert_eq!(c.adaptive(Bucket::Mutating).unwrap().throttles, 0);
    // A new call goes at once (its retries would be paced).
    c.call(&health, budget, &mut t).unwrap();
    assert_eq!(t.slept.len(), 1);
}

#[test]
fn throttled_deregistration_retries_within_its_deadline() {
    let s = Scripted::new(
        (0..40)
            .map(|_| status(400, THROTTLED))
            .chain([ok(REGISTERED)]),
    );
    let mut c = Client::new(&s, settings(static_source()));
    let mut t = FakeClock::new();
    let deadline = t.now() + Duration::from_secs(20);
    let dereg = DeregisterTargets {
        arn: "arn:tg",
        targets: &target(),
    };
    let e = c.call(&dereg, Budget::until(deadline), &mut t).unwrap_err();
    assert!(matches!(e, Error::Deadline { .. }), "{e:?}");
    // Slots of 2 and 4 s, then of the lowest rate (random 0.5: 5 s); then
    // within the time left, never past it.
    assert_eq!(&t.slept[..3], &[2, 4, 5].map(Duration::from_secs));
    assert!(t.elapsed() < Duration::from_secs(20));
    assert!(t.elapsed() > Duration::from_secs(18), "{:?}", t.slept);
    assert!(s.seen.borrow().len() < 10, "{}", s.seen.borrow().len());
}

/// AssumeRole goes the ELBv2 calls' way: signed for `sts` (in the
/// client's region), counted, and its errors name their layer and
/// keep their kind (AccessDenied final, 503 retried).
#[test]
fn assume_role_is_signed_for_sts_and_its_errors_name_the_role() {
    let denied = br#"<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error></ErrorResponse>"#;
    let s = Scripted::new([status(503, b""), status(403, denied)]);
    let mut settings = settings(static_source());
    settings.region = "eu-west-1".into();
    settings.sts_url = "https://sts.eu-west-1.amazonaws.com".into();
    settings.role = Some(Role::new(
        "arn:r".into(),
        None,
        None,
        SystemTime::UNIX_EPOCH,
    ));
    let mut c = Client::new(&s, settings);
    let mut t = FakeClock::new();
    let e = c
        .fetch_credentials(
            false,
            Budget::until(t.now() + Duration::from_secs(60)),
            &mut t,
        )
        .unwrap_err();
    assert_eq!(t.slept.len(), 1, "the 503 is retried");
    assert_eq!(
        e.to_string(),
        "assuming role arn:r: AssumeRole failed: AccessDenied (HTTP 403): no"
    );
    assert!(!e.is_retryable() && e.aws_code() == Some("AccessDenied"));
    let seen = s.seen.borrow();
    assert_eq!(seen[0].url, "https://sts.eu-west-1.amazonaws.com/");
    let auth = &seen[0]
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .unwrap()
        .1;
    assert!(
        auth.contains("Credential=AKID/20231114/eu-west-1/sts/aws4_request"),
        "{auth}"
    );
}

#[test]
fn never_retries_client_errors() {
    let denied = br#"<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error></ErrorResponse>"#;
    let s = Scripted::new([status(403, denied), ok(REGISTERED)]);
    let mut c = Client::new(&s, settings(static_source()));
    let mut t = FakeClock::new();
    let deadline = t.now() + Duration::from_secs(60);
    let e = register_target(&mut c, Budget::until(deadline), &mut t).unwrap_err();
    assert_eq!(e.aws_code(), Some("AccessDenied"));
    assert_eq!(s.seen.borrow().len(), 1);
}

#[test]
fn stops_at_the_deadline_with_the_last_error() {
    let s = Scripted::new((0..100).map(|_| status(500, b"oops")));
    let mut c = Client::new(&s, settings(static_source()));
    let mut t = FakeClock::new();
    let deadline = t.now() + Duration::from_secs(10);
    let e = c
        .call(
            &DeregisterTargets {
                arn: "arn:tg",
                targets: &target(),
            },
            Budget::until(deadline),
            &mut t,
        )
        .unwrap_err();
    match &e {
        Error::Deadline { attempts, last, .. } => {
            assert!(*attempts > 3);
            assert!(last.to_string().contains("HttpStatus500"));
        }
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() <= Duration::from_secs(10));
}

#[test]
fn max_attempts_and_interrupts() {
    let s = Scripted::new((0..10).map(|_| status(400, THROTTLED)));
    let mut c = Client::new(&s, settings(static_source()));
    let mut t = FakeClock::new();
    let budget = Budget {
        deadline: t.now() + Duration::from_secs(60),
        max_attempts: 2,
    };
    let e = c
        .call(
            &DescribeTargetHealth {
                arn: "arn:tg",
                targets: &target(),
            },
            budget,
            &mut t,
        )
        .unwrap_err();
    assert_eq!(e.aws_code(), Some("Throttling"));
    assert_eq!(s.seen.borrow().len(), 2);
    t.interrupt_after = Some(t.slept.len());
    let e = c
        .call(
            &DescribeTargetHealth {
                arn: "arn:tg",
                targets: &target(),
            },
            Budget::until(t.now() + Duration::from_secs(60)),
            &mut t,
        )
        .unwrap_err();
    assert_eq!(e, Error::Interrupted);
}

#[test]
fn web_identity_fetch_caches_and_refreshes() {
    let dir = std::env::temp_dir().join(format!("nlb-wi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    // Expiry 2014: already expired relative to the fake clock, so every call refreshes.
    let sts_body = include_bytes!("../../../tests/data/assume_role_with_web_identity.xml");
    let s = Scripted::new([ok(sts_body), ok(REGISTERED), ok(sts_body), ok(REGISTERED)]);
    let source = Source::WebIdentity {
        role_arn: "arn:aws:iam::1:role/r".into(),
        token_file: token_file.to_string_lossy().into_owned(),
        session_name: "s".into(),
    };
    let mut c = Client::new(&s, settings(source));
    let mut t = FakeClock::new();
    let budget = Budget::until(t.now() + Duration::from_secs(60));
    register_target(&mut c, budget, &mut t).unwrap();
    std::fs::write(&token_file, "second-token").unwrap();
    register_target(&mut c, budget, &mut t).unwrap();
    let seen = s.seen.borrow();
    let sts1 = String::from_utf8(seen[0].body.clone()).unwrap();
    let sts2 = String::from_utf8(seen[2].body.clone()).unwrap();
    assert!(sts1.contains("WebIdentityToken=first-token"), "{sts1}");
    assert!(sts2.contains("WebIdentityToken=second-token"), "{sts2}");
    assert!(!seen[0].headers.iter().any(|(k, _)| k == "authorization"));
    let elb = &seen[1];
    assert!(elb.headers.iter().any(|(k, v)| k == "x-amz-security-token"
        && v == "AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE"));
    std::fs::remove_dir_all(&dir).ok();
}

fn web_identity_source(dir: &std::path::Path) -> Source {
    std::fs::create_dir_all(dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "a-token").unwrap();
    Source::WebIdentity {
        role_arn: "arn:aws:iam::1:role/r".into(),
        token_file: token_file.to_string_lossy().into_owned(),
        session_name: "s".into(),
    }
}

const STS_OK: &[u8] = include_bytes!("../../../tests/data/assume_role_with_web_identity.xml");
const STS_INVALID_TOKEN: &[u8] =
    include_bytes!("../../../tests/data/sts_invalid_identity_token.xml");

#[test]
fn invalid_identity_token_is_retried_with_backoff() {
    let dir = std::env::temp_dir().join(format!("nlb-iit-{}", std::process::id()));
    let s = Scripted::new([
        status(400, STS_INVALID_TOKEN),
        status(400, STS_INVALID_TOKEN),
        ok(STS_OK),
        ok(REGISTERED),
    ]);
    let mut c = Client::new(&s, settings(web_identity_source(&dir)));
    let mut t = FakeClock::new();
    register_target(
        &mut c,
        Budget::until(t.now() + Duration::from_secs(20)),
        &mut t,
    )
    .unwrap();
    assert_eq!(s.seen.borrow().len(), 4);
    assert_eq!(
        t.slept,
        vec![Duration::from_millis(100), Duration::from_millis(200)]
    );
    // At start (no signed call yet) too, and within the deadline only.
    let s = Scripted::new((0..100).map(|_| status(400, STS_INVALID_TOKEN)));
    let mut c = Client::new(&s, settings(web_identity_source(&dir)));
    let mut t = FakeClock::new();
    let e = c
        .fetch_credentials(
            false,
            Budget::until(t.now() + Duration::from_secs(10)),
            &mut t,
        )
        .unwrap_err();
    assert!(
        matches!(e, Error::Deadline { attempts, .. } if attempts > 3),
        "{e:?}"
    );
    assert_eq!(e.aws_code(), Some("InvalidIdentityToken"));
    assert!(t.elapsed() <= Duration::from_secs(10));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn throttled_metadata_endpoints_are_retried_with_backoff() {
    let creds_json = br#"{"AccessKeyId":"ASIA1","SecretAccessKey":"S1","Token":"T1","Expiration":"2099-01-01T00:00:00Z"}"#;
    let too_many = b"Too Many Requests";
    // The EKS Pod Identity agent / container endpoint.
    let s = Scripted::new([
        status(429, too_many),
        status(503, b""),
        ok(creds_json),
        ok(REGISTERED),
    ]);
    let source = Source::Container {
        url: "http://127.0.0.1:3/creds".into(),
        token_file: None,
        token: Some(Secret::new("container-token".into())),
    };
    let mut c = Client::new(&s, settings(source));
    let mut t = FakeClock::new();
    c.fetch_credentials(
        false,
        Budget::until(t.now() + Duration::from_secs(20)),
        &mut t,
    )
    .unwrap();
    assert_eq!(
        t.slept,
        vec![Duration::from_millis(100), Duration::from_millis(200)]
    );
    // IMDS: 429 on the token PUT and on the credentials GET.
    let imds = include_bytes!("../../../tests/data/imds_credentials.json");
    let s = Scripted::new([
        status(429, too_many),
        ok(b"TOKEN"),
        ok(b"role"),
        status(429, too_many),
        ok(b"TOKEN"),
        ok(b"role"),
        ok(imds),
        ok(REGISTERED),
    ]);
    let source = Source::Imds {
        endpoint: "http://127.0.0.1:4".into(),
    };
    let mut c = Client::new(&s, settings(source));
    let mut t = FakeClock::new();
    register_target(
        &mut c,
        Budget::until(t.now() + Duration::from_secs(20)),
        &mut t,
    )
    .unwrap();
    assert_eq!(s.seen.borrow().len(), 8);
    assert_eq!(t.slept.len(), 2);
    // Within the deadline only.
    let s = Scripted::new((0..100).map(|_| status(429, too_many)));
    let source = Source::Imds {
        endpoint: "http://127.0.0.1:4".into(),
    };
    let mut c = Client::new(&s, settings(source));
    let mut t = FakeClock::new();
    let e = c
        .fetch_credentials(
            false,
            Budget::until(t.now() + Duration::from_secs(5)),
            &mut t,
        )
        .unwrap_err();
    assert_eq!(e.aws_code(), Some("HttpStatus429"), "{e:?}");
    assert!(t.elapsed() <= Duration::from_secs(5));
}

const SIGNATURE_EXPIRED: &[u8] = br#"<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>Signature expired: 20231114T221320Z is now earlier than 20231114T222320Z (20231114T223820Z - 15 min.)</Message></Error><RequestId>1</RequestId></ErrorResponse>"#;
// 25 minutes after the fake clock's 2023-11-14T22:13:20Z.
const AWS_DATE: &str = "Tue, 14 Nov 2023 22:38:20 GMT";

#[test]
fn a_skewed_clock_is_a_final_error_naming_the_offset() {
    let s = Scripted::new([dated(403, AWS_DATE, SIGNATURE_EXPIRED), ok(REGISTERED)]);
    let mut c = Client::new(&s, settings(static_source()));
    let mut t = FakeClock::new();
    let budget = Budget::until(t.now() + Duration::from_secs(20));
    let e = register_target(&mut c, budget, &mut t).unwrap_err();
    assert_eq!(e.aws_code(), Some("SignatureDoesNotMatch"));
    assert_eq!(
        e.to_string(),
        "RegisterTargets failed: SignatureDoesNotMatch (HTTP 403): this node's clock is \
         25m0s behind AWS's (the answer's Date header): fix the node's time sync \
         (chrony, Amazon Time Sync); AWS said \"Signature expired: 20231114T221320Z is now \
         earlier than 20231114T222320Z (20231114T223820Z - 15 min.)\" [request id 1]"
    );
    // Neither signed again nor retried.
    assert!(t.slept.is_empty());
    assert_eq!(s.seen.borrow().len(), 1);
    // A real signature mismatch (Date agrees with our clock) keeps AWS's
    // message, as does a refusal without a Date.
    for answer in [
        dated(403, "Tue, 14 Nov 2023 22:13:21 GMT", SIGNATURE_EXPIRED),
        status(403, SIGNATURE_EXPIRED),
    ] {
        let s = Scripted::new([answer, ok(REGISTERED)]);
        let mut c = Client::new(&s, settings(static_source()));
        let e = register_target(&mut c, budget, &mut t).unwrap_err();
        assert!(e.to_string().contains(": Signature expired: "), "{e}");
        assert_eq!(s.seen.borrow().len(), 1);
    }
}

/// A signal that came while the call was on the wire: an answer that
/// calls for a retry at once (expired credentials) sends nothing more.
#[test]
fn no_retry_at_once_after_a_signal() {
    let expired = br#"<ErrorResponse><Error><Code>ExpiredToken</Code></Error></ErrorResponse>"#;
    let creds_json = br#"{"AccessKeyId":"ASIA1","SecretAccessKey":"S1","Token":"T1","Expiration":"2099-01-01T00:00:00Z"}"#;
    let source = Source::Container {
        url: "http://127.0.0.1:3/creds".into(),
        token_file: None,
        token: None,
    };
    let s = Scripted::new([ok(creds_json), status(400, expired), ok(creds_json)]);
    let mut c = Client::new(&s, settings(source));
    let mut t = FakeClock::new();
    t.interrupt_after = Some(0);
    let budget = Budget::until(t.now() + Duration::from_secs(20));
    let e = register_target(&mut c, budget, &mut t).unwrap_err();
    assert_eq!(e, Error::Interrupted);
    assert_eq!(s.seen.borrow().len(), 2);
}

#[test]
fn expired_token_answer_forces_one_refresh() {
    let expired = br#"<ErrorResponse><Error><Code>ExpiredToken</Code><Message>The security token included in the request is expired</Message></Error></ErrorResponse>"#;
    let creds_json = br#"{"AccessKeyId":"ASIA1","SecretAccessKey":"S1","Token":"T1","Expiration":"2099-01-01T00:00:00Z"}"#;
    let creds_json2 = br#"{"AccessKeyId":"ASIA2","SecretAccessKey":"S2","Token":"T2","Expiration":"2099-01-01T00:00:00Z"}"#;
    let s = Scripted::new([
        ok(creds_json),
        status(400, expired),
        ok(creds_json2),
        ok(REGISTERED),
    ]);
    let source = Source::Container {
        url: "http://127.0.0.1:3/creds".into(),
        token_file: None,
        token: Some(Secret::new("container-token".into())),
    };
    let mut c = Client::new(&s, settings(source));
    let mut t = FakeClock::new();
    register_target(
        &mut c,
        Budget::until(t.now() + Duration::from_secs(60)),
        &mut t,
    )
    .unwrap();
    let seen = s.seen.borrow();
    assert_eq!(seen.len(), 4);
    assert!(seen[0]
        .headers
        .contains(&("authorization".into(), "container-token".into())));
    assert!(seen[3]
        .headers
        .iter()
        .any(|(k, v)| k == "authorization" && v.contains("Credential=ASIA2/")));
    assert!(t.slept.is_empty());
}

/// -role-arn: AssumeRole signed with the base keys for `sts`, the
/// ELBv2 calls with the role's; an ExpiredToken answer to an ELBv2
/// call assumes the role again; the background refresh renews it.
#[test]
fn a_role_signs_the_elbv2_calls() {
    let role_answer = |id: &str| {
        format!(
            "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>{id}</AccessKeyId>\
             <SecretAccessKey>S</SecretAccessKey><SessionToken>T-{id}</SessionToken>\
             <Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>"
        )
        .into_bytes()
    };
    let expired = br#"<ErrorResponse><Error><Code>ExpiredToken</Code><Message>expired</Message></Error></ErrorResponse>"#;
    let s = Scripted::new([
        ok(&role_answer("ASIAROLE1")),
        ok(REGISTERED),
        status(400, expired),
        ok(&role_answer("ASIAROLE2")),
        ok(REGISTERED),
        ok(&role_answer("ASIAROLE3")),
    ]);
    let mut settings = settings(static_source());
    settings.role = Some(Role::new(
        "arn:aws:iam::444455556666:role/nlb".into(),
        None,
        Some("pod-a".into()),
        std::time::SystemTime::UNIX_EPOCH,
    ));
    assert_eq!(
        settings.credentials_label(),
        "role arn:aws:iam::444455556666:role/nlb, assumed with environment"
    );
    let mut c = Client::new(&s, settings);
    let mut t = FakeClock::new();
    for _ in 0..2 {
        register_target(
            &mut c,
            Budget::until(t.now() + Duration::from_secs(60)),
            &mut t,
        )
        .unwrap();
    }
    c.fetch_credentials(
        true,
        Budget::until(t.now() + Duration::from_secs(60)),
        &mut t,
    )
    .unwrap();
    let seen = s.seen.borrow();
    assert_eq!(seen.len(), 6);
    let auth = |i: usize| {
        seen[i]
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(seen[0].url, "http://127.0.0.1:2/");
    assert!(auth(0).contains("Credential=AKID/20231114/us-east-1/sts/aws4_request"));
    assert!(auth(1).contains("Credential=ASIAROLE1/20231114/us-east-1/elasticloadbalancing/"));
    assert!(auth(3).contains("Credential=AKID/"));
    assert!(auth(4).contains("Credential=ASIAROLE2/"));
    assert!(auth(5).contains("Credential=AKID/"));
    assert_eq!(
        c.refresh_due(),
        Some(
            crate::aws::credentials::parse_expiration("2099-01-01T00:00:00Z").unwrap()
                - Duration::from_secs(600)
        )
    );
}

/// A clock and a transport sharing one fake time: a request takes its
/// latency, or its timeout when that is shorter (then it fails with a
/// timeout, as a held endpoint does).
mod timed {
    use super::*;
    use crate::aws::error::TransportKind;
    use crate::clock::testing::SharedTime;
    use std::cell::RefCell;
    use std::collections::VecDeque;

    pub struct Transport {
        pub t: SharedTime,
        /// Latency and answer of each request, in order.
        pub script: RefCell<VecDeque<(Duration, &'static [u8])>>,
        /// URL and timeout of each request sent, and the time it was sent.
        pub seen: RefCell<Vec<(String, Duration, Duration)>>,
    }

    impl crate::aws::http::Transport for &Transport {
        fn send(&self, action: &str, req: &HttpRequest) -> Result<HttpResponse, Error> {
            let sent = self.t.get();
            self.seen
                .borrow_mut()
                .push((req.url.clone(), req.timeout, sent));
            let (latency, body) = self
                .script
                .borrow_mut()
                .pop_front()
                .unwrap_or((Duration::from_secs(3600), b""));
            if latency > req.timeout {
                self.t.set(sent + req.timeout);
                return Err(Error::Transport {
                    action: action.to_owned(),
                    url: req.url.clone(),
                    kind: TransportKind::Timeout,
                    detail: "timed out".into(),
                });
            }
            self.t.set(sent + latency);
            Ok(HttpResponse {
                status: 200,
                body: body.to_vec(),
                date: None,
            })
        }
    }

    pub fn pair(script: Vec<(Duration, &'static [u8])>) -> (FakeClock, Transport) {
        let clock = FakeClock::new();
        let transport = Transport {
            t: clock.shared_time(),
            script: RefCell::new(script.into()),
            seen: RefCell::new(Vec::new()),
        };
        (clock, transport)
    }
}

/// Web identity credentials from STS at 127.0.0.1:2, the token in a
/// file named after `tag`.
fn web_identity(tag: &str) -> (Source, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("nlb-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "token").unwrap();
    let source = Source::WebIdentity {
        role_arn: "arn:aws:iam::1:role/r".into(),
        token_file: token_file.to_string_lossy().into_owned(),
        session_name: "s".into(),
    };
    (source, dir)
}

/// STS credentials that expire 4 minutes after the fake clock's start
/// (2023-11-14T22:13:20Z): valid, and due for a refresh at once.
const STS_4_MIN: &[u8] = br#"<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><SessionToken>T</SessionToken><SecretAccessKey>S</SecretAccessKey><Expiration>2023-11-14T22:17:20Z</Expiration><AccessKeyId>ASIA4MIN</AccessKeyId></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"#;

fn register_target<T: Transport>(
    c: &mut Client<T>,
    budget: Budget,
    clock: &mut dyn Clock,
) -> Result<WithId<()>, Error> {
    c.call(
        &RegisterTargets {
            arn: "arn:tg",
            targets: &target(),
        },
        budget,
        clock,
    )
}

fn deregister<T: Transport>(
    c: &mut Client<T>,
    budget: Budget,
    clock: &mut dyn Clock,
) -> Result<WithId<()>, Error> {
    c.call(
        &DeregisterTargets {
            arn: "arn:tg",
            targets: &target(),
        },
        budget,
        clock,
    )
}

#[test]
fn a_held_credentials_endpoint_cannot_outlast_the_deadline() {
    let (source, dir) = web_identity("held");
    // STS never answers.
    let (mut clock, transport) = timed::pair(vec![]);
    let mut c = Client::new(&transport, settings(source));
    let budget = Budget::until(clock.now() + Duration::from_secs(5));
    let e = deregister(&mut c, budget, &mut clock).unwrap_err();
    assert!(matches!(e, Error::Deadline { .. }), "{e}");
    let seen = transport.seen.borrow();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "http://127.0.0.1:2/", "the STS request");
    assert_eq!(seen[0].1, Duration::from_secs(5), "min(10 s, time left)");
    assert_eq!(clock.elapsed(), Duration::from_secs(5));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn past_the_deadline_an_attempt_gets_the_least_call_timeout_in_all() {
    let (source, dir) = web_identity("past");
    // STS takes 1.5 s; the call that follows has 0.5 s of the 2 s left.
    let dereg = include_bytes!("../../../tests/data/deregister_targets.xml");
    let (mut clock, transport) = timed::pair(vec![
        (Duration::from_millis(1500), STS_4_MIN),
        (Duration::ZERO, dereg),
    ]);
    let mut c = Client::new(&transport, settings(source));
    let budget = Budget::until(clock.now());
    deregister(&mut c, budget, &mut clock).unwrap();
    let seen = transport.seen.borrow();
    let timeouts: Vec<Duration> = seen.iter().map(|s| s.1).collect();
    assert_eq!(
        timeouts,
        [Duration::from_secs(2), Duration::from_millis(500)],
        "{seen:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_refresh_ahead_of_expiry_leaves_the_call_half_the_time() {
    let (source, dir) = web_identity("ahead");
    let dereg = include_bytes!("../../../tests/data/deregister_targets.xml");
    let (mut clock, transport) = timed::pair(vec![
        (Duration::ZERO, STS_4_MIN),
        (Duration::ZERO, dereg),
        // The refresh (the credentials expire in 4 minutes) is held.
        (Duration::from_secs(3600), b""),
        (Duration::from_millis(100), dereg),
    ]);
    let mut c = Client::new(&transport, settings(source));
    let budget = Budget::until(clock.now() + Duration::from_secs(60));
    deregister(&mut c, budget, &mut clock).unwrap();
    let start = clock.elapsed();
    let budget = Budget::until(clock.now() + Duration::from_secs(6));
    deregister(&mut c, budget, &mut clock).unwrap();
    let seen = transport.seen.borrow();
    let later: Vec<(Duration, Duration)> = seen[2..].iter().map(|s| (s.1, s.2 - start)).collect();
    assert_eq!(
        later,
        [
            (Duration::from_secs(3), Duration::ZERO),
            (Duration::from_secs(3), Duration::from_secs(3))
        ],
        "the refresh gets 3 s of 6, the call the other 3 with the cached credentials"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_refresh_in_flight_at_a_signal_ends_after_its_one_request() {
    let (source, dir) = web_identity("refresh");
    let (mut clock, transport) = timed::pair(vec![]);
    // Every backoff sleep is cut short by an event.
    clock.interrupt_after = Some(0);
    let mut c = Client::new(&transport, settings(source));
    let budget = Budget {
        deadline: clock.now() + Duration::from_secs(30),
        max_attempts: 3,
    };
    let e = c.fetch_credentials(true, budget, &mut clock).unwrap_err();
    assert_eq!(e, Error::Interrupted);
    assert_eq!(transport.seen.borrow().len(), 1);
    assert_eq!(clock.elapsed(), CALL_TIMEOUT, "one request timeout");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_call_that_must_fetch_credentials_first_takes_one_request_timeout_in_all() {
    // No cached credentials: the web identity fetch (STS, 9 s to
    // answer), then the call itself (held) share one request timeout,
    // so a signal that comes meanwhile waits 10 s at most.
    let (source, dir) = web_identity("call-with-fetch");
    let (mut clock, transport) = timed::pair(vec![(Duration::from_secs(9), STS_4_MIN)]);
    // Every backoff sleep is cut short by an event.
    clock.interrupt_after = Some(0);
    let mut c = Client::new(&transport, settings(source));
    let budget = Budget {
        deadline: clock.now() + Duration::from_secs(30),
        max_attempts: 3,
    };
    let targets = target();
    let action = DescribeTargetHealth {
        arn: "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/tg/1",
        targets: &targets,
    };
    let e = c.call(&action, budget, &mut clock).unwrap_err();
    assert_eq!(e, Error::Interrupted);
    let timeouts: Vec<Duration> = transport.seen.borrow().iter().map(|s| s.1).collect();
    assert_eq!(
        timeouts,
        [CALL_TIMEOUT, Duration::from_secs(1)],
        "the call gets what the credentials fetch left"
    );
    assert_eq!(clock.elapsed(), CALL_TIMEOUT, "one request timeout in all");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_role_refresh_in_flight_at_a_signal_ends_within_one_request_timeout() {
    // -role-arn: the base credentials (STS, 9 s to answer), then
    // AssumeRole (held). The whole attempt shares one request timeout.
    let (source, dir) = web_identity("role-refresh");
    let (mut clock, transport) = timed::pair(vec![(Duration::from_secs(9), STS_4_MIN)]);
    // Every backoff sleep is cut short by an event.
    clock.interrupt_after = Some(0);
    let mut s = settings(source);
    s.role = Some(Role::new(
        "arn:aws:iam::2:role/x".into(),
        None,
        Some("s".into()),
        clock.wall(),
    ));
    let mut c = Client::new(&transport, s);
    let budget = Budget {
        deadline: clock.now() + Duration::from_secs(30),
        max_attempts: 3,
    };
    let e = c.fetch_credentials(true, budget, &mut clock).unwrap_err();
    assert_eq!(e, Error::Interrupted);
    let timeouts: Vec<Duration> = transport.seen.borrow().iter().map(|s| s.1).collect();
    assert_eq!(
        timeouts,
        [CALL_TIMEOUT, Duration::from_secs(1)],
        "AssumeRole gets what the base fetch left"
    );
    assert_eq!(clock.elapsed(), CALL_TIMEOUT, "one request timeout in all");
    std::fs::remove_dir_all(&dir).ok();
}

fn transport(kind: TransportKind) -> Result<HttpResponse, Error> {
    Err(Error::Transport {
        action: "RegisterTargets".into(),
        url: "http://127.0.0.1:1".into(),
        kind,
        detail: "scripted".into(),
    })
}

/// A timed-out or broken attempt may have reached AWS: the call says how
/// many there were, answered in the end or not; a refused connection
/// never reached it. Each call starts counting afresh.
#[test]
fn unanswered_attempts_of_the_last_call() {
    let s = Scripted::new([
        transport(TransportKind::Timeout),
        transport(TransportKind::Connect),
        transport(TransportKind::Io),
        ok(REGISTERED),
        ok(REGISTERED),
    ]);
    let mut c = Client::new(&s, settings(static_source()));
    let mut t = FakeClock::new();
    let deadline = t.now() + Duration::from_secs(60);
    register_target(&mut c, Budget::until(deadline), &mut t).unwrap();
    assert_eq!(s.seen.borrow().len(), 4);
    assert_eq!(c.unanswered, 2);
    register_target(&mut c, Budget::until(deadline), &mut t).unwrap();
    assert_eq!(c.unanswered, 0);
}

/// STS throttling the credentials fetch before a DescribeTargetHealth is
/// retried after the short backoff: it says nothing of ELBv2's `Describe*`
/// bucket, which stays unpaced (and the health polls unwidened).
#[test]
fn sts_throttling_does_not_pace_the_elbv2_bucket() {
    let (source, dir) = web_identity("sts-throttle");
    let s = Scripted::new([status(400, THROTTLED), ok(STS_OK), ok(HEALTH)]);
    let mut c = Client::new(&s, settings(source));
    let mut t = FakeClock::new();
    let health = DescribeTargetHealth {
        arn: "arn:tg",
        targets: &target(),
    };
    c.call(
        &health,
        Budget::until(t.now() + Duration::from_secs(60)),
        &mut t,
    )
    .unwrap();
    // The short backoff (0.5 × 200 ms), not a slot of a cut rate.
    assert_eq!(t.slept, vec![Duration::from_millis(100)]);
    assert_eq!(c.adaptive(Bucket::Describe).unwrap().throttles, 0);
    let describe = c.adaptive(Bucket::Describe).unwrap();
    assert_eq!(
        describe.widen(Duration::from_secs(5)),
        Duration::from_secs(5)
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A web identity refusal on a call's way is final, shown as STS said it,
/// and its request id still reaches the log fields.
#[test]
fn a_web_identity_refusal_keeps_its_message_and_request_id() {
    let (source, dir) = web_identity("refusal");
    let denied = br#"<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error><RequestId>req-1</RequestId></ErrorResponse>"#;
    let s = Scripted::new([status(403, denied)]);
    let mut c = Client::new(&s, settings(source));
    let mut t = FakeClock::new();
    let e = register_target(
        &mut c,
        Budget::until(t.now() + Duration::from_secs(60)),
        &mut t,
    )
    .unwrap_err();
    std::fs::remove_dir_all(dir).ok();
    assert_eq!(s.seen.borrow().len(), 1, "AccessDenied is final");
    assert_eq!(
        e.to_string(),
        "AssumeRoleWithWebIdentity failed: AccessDenied (HTTP 403): no [request id req-1]"
    );
    assert_eq!(e.request_id(), Some("req-1"));
    assert!(
        e.is_refusal() && e.code().is_none(),
        "not the call's own answer"
    );
}

/// -role-arn: AssumeRole answering ExpiredToken means the base credentials
/// died early: they are fetched again and the role assumed once more, but
/// not after an event (issue 19: no request after a signal).
#[test]
fn an_expired_base_under_a_role_is_fetched_again_unless_an_event_came() {
    let creds = |id: &str| {
        format!(r#"{{"AccessKeyId":"{id}","SecretAccessKey":"S","Token":"T","Expiration":"2099-01-01T00:00:00Z"}}"#)
            .into_bytes()
    };
    let role_answer = b"<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIAROLE</AccessKeyId>\
        <SecretAccessKey>S</SecretAccessKey><SessionToken>T</SessionToken>\
        <Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>";
    let expired = br#"<ErrorResponse><Error><Code>ExpiredToken</Code></Error></ErrorResponse>"#;
    let (base1, base2) = (creds("ASIABASE1"), creds("ASIABASE2"));
    let s = Scripted::new([
        ok(&base1),
        status(400, expired),
        ok(&base2),
        ok(role_answer),
        ok(REGISTERED),
    ]);
    let mut c = Client::new(&s, role_settings());
    let mut t = FakeClock::new();
    let budget = Budget::until(t.now() + Duration::from_secs(20));
    register_target(&mut c, budget, &mut t).unwrap();
    let seen = s.seen.borrow();
    assert_eq!(seen.len(), 5);
    assert!(seen[3]
        .headers
        .iter()
        .any(|(k, v)| k == "authorization" && v.contains("Credential=ASIABASE2/")));

    let s = Scripted::new([ok(&base1), status(400, expired), ok(&base2)]);
    let mut c = Client::new(&s, role_settings());
    let mut t = FakeClock::new();
    t.interrupt_after = Some(0);
    let e = register_target(&mut c, budget, &mut t).unwrap_err();
    assert_eq!(e, Error::Interrupted);
    assert_eq!(s.seen.borrow().len(), 2);
}

#[test]
fn a_failed_base_fetch_leaves_the_unexpired_role_credentials_in_use() {
    let base = br#"{"AccessKeyId":"ASIABASE","SecretAccessKey":"S","Token":"T","Expiration":"2023-11-14T22:20:00Z"}"#;
    let role_answer = b"<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIAROLE</AccessKeyId>\
        <SecretAccessKey>S</SecretAccessKey><SessionToken>T</SessionToken>\
        <Expiration>2023-11-14T22:30:00Z</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>";
    let s = Scripted::new([
        ok(base),
        ok(role_answer),
        ok(REGISTERED),
        status(400, b"no credentials for you"),
        ok(REGISTERED),
    ]);
    let mut c = Client::new(&s, role_settings());
    let mut t = FakeClock::new();
    register_target(
        &mut c,
        Budget::until(t.now() + Duration::from_secs(20)),
        &mut t,
    )
    .unwrap();
    // 22:25:20: the role's credentials are due (they expire at 22:30), the
    // base's have expired, and fetching new base credentials fails.
    t.advance_to(Duration::from_secs(12 * 60));
    register_target(
        &mut c,
        Budget::until(t.now() + Duration::from_secs(20)),
        &mut t,
    )
    .unwrap();
    let seen = s.seen.borrow();
    assert_eq!(seen.len(), 5);
    assert!(seen[4]
        .headers
        .iter()
        .any(|(k, v)| k == "authorization" && v.contains("Credential=ASIAROLE/")));
}

/// A role assumed with container credentials (EKS Pod Identity's shape).
fn role_settings() -> Settings {
    let mut settings = settings(Source::Container {
        url: "http://127.0.0.1:3/creds".into(),
        token_file: None,
        token: None,
    });
    settings.role = Some(Role::new(
        "arn:aws:iam::444455556666:role/nlb".into(),
        None,
        Some("pod-a".into()),
        std::time::SystemTime::UNIX_EPOCH,
    ));
    settings
}
