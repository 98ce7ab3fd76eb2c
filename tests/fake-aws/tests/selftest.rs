//! Tests of the fake AWS server, with its tiny std-only HTTP client and its
//! own SigV4 signer.

use fake_aws::time::http_date;
use fake_aws::*;
use std::io::{BufReader, Read};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";
const SECOND: Duration = Duration::from_secs(1);

/// POST an ELBv2 call (Version added), signed when `signer` is given.
fn elb(fake: &FakeAws, signer: Option<&TestSigner<'_>>, params: &[(&str, &str)]) -> HttpResponse {
    let mut all = params.to_vec();
    all.push(("Version", "2015-12-01"));
    let body = form_encode(&all);
    let host = format!("127.0.0.1:{}", fake.port());
    let base = [("host", host.as_str()), ("content-type", FORM)];
    let headers: Vec<(String, String)> = match signer {
        Some(s) => sign_for_test(s, "POST", "/", &base, body.as_bytes(), SystemTime::now()),
        None => base
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    http_request(fake.port(), "POST", "/", &headers, body.as_bytes()).expect("ELB request")
}

fn default_signer() -> TestSigner<'static> {
    TestSigner::elb(DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET)
}

fn register(fake: &FakeAws, arn: &str, id: &str, port: &str) -> HttpResponse {
    elb(
        fake,
        Some(&default_signer()),
        &[
            ("Action", "RegisterTargets"),
            ("TargetGroupArn", arn),
            ("Targets.member.1.Id", id),
            ("Targets.member.1.Port", port),
        ],
    )
}

fn health(fake: &FakeAws, arn: &str) -> Vec<(String, String)> {
    let r = elb(
        fake,
        Some(&default_signer()),
        &[("Action", "DescribeTargetHealth"), ("TargetGroupArn", arn)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let ids = xml_texts(&text, "Id");
    let states = target_health(&text).into_iter().map(|(s, _)| s);
    ids.into_iter().zip(states).collect()
}

/// (State, Reason) of each `<TargetHealth>` (not of `<AdministrativeOverride>`).
fn target_health(xml: &str) -> Vec<(String, Option<String>)> {
    xml.split("<TargetHealth>")
        .skip(1)
        .map(|seg| {
            let seg = seg.split("</TargetHealth>").next().unwrap();
            (xml_text(seg, "State").unwrap(), xml_text(seg, "Reason"))
        })
        .collect()
}

fn sts(fake: &FakeAws, token: &str) -> HttpResponse {
    let body = form_encode(&[
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", "arn:aws:iam::123456789012:role/my-role"),
        ("RoleSessionName", "sidecar-1"),
        ("WebIdentityToken", token),
    ]);
    http_request(
        fake.port(),
        "POST",
        "/",
        &[("content-type", FORM)],
        body.as_bytes(),
    )
    .expect("STS request")
}

#[test]
fn sigv4_matches_aws_test_suite_vectors() {
    // From the AWS SigV4 test suite (aws-sigv4's aws-signing-test-suite/v4).
    let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let t = parse_amz_date("20150830T123600Z").unwrap();
    assert_eq!(format_amz_date(t), "20150830T123600Z");
    assert_eq!(rfc3339(t), "2015-08-30T12:36:00Z");

    // post-x-www-form-urlencoded
    let signer = TestSigner {
        access_key_id: "AKIDEXAMPLE",
        secret,
        session_token: None,
        region: "us-east-1",
        service: "service",
    };
    let headers = sign_for_test(
        &signer,
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Host", "example.amazonaws.com"),
            ("Content-Length", "13"),
            (
                "x-amz-content-sha256",
                "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
            ),
        ],
        b"Param1=value1",
        t,
    );
    let auth = &headers.last().unwrap().1;
    assert_eq!(
        auth,
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
         SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, \
         Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"
    );

    // get-vanilla-with-session-token
    let with_token = TestSigner {
        session_token: Some("6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"),
        ..signer
    };
    let headers = sign_for_test(
        &with_token,
        "GET",
        "/",
        &[("Host", "example.amazonaws.com")],
        b"",
        t,
    );
    assert!(headers.last().unwrap().1.ends_with(
        "SignedHeaders=host;x-amz-date;x-amz-security-token, \
         Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
    ));

    // get-vanilla-query-order-key-case: query sorted.
    let headers = sign_for_test(
        &signer,
        "GET",
        "/?Param2=value2&Param1=value1",
        &[("Host", "example.amazonaws.com")],
        b"",
        t,
    );
    assert!(headers
        .last()
        .unwrap()
        .1
        .ends_with("Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"));

    // get-header-value-trim and get-header-key-duplicate: canonical headers.
    let h = [
        ("Host", "example.amazonaws.com"),
        ("My-Header1", "value2"),
        ("My-Header1", "value2"),
        ("My-Header1", "value1"),
        ("My-Header2", "\"a   b   c\""),
        ("X-Amz-Date", "20150830T123600Z"),
    ];
    let canonical = canonical_request(
        "GET",
        "/",
        "",
        &h,
        &["host", "my-header1", "x-amz-date"],
        b"",
    )
    .unwrap();
    assert_eq!(
        sigv4_signature(
            secret,
            "20150830T123600Z",
            "us-east-1",
            "service",
            &canonical
        ),
        "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"
    );
    let h = [
        ("Host", "example.amazonaws.com"),
        ("My-Header1", " value1"),
        ("My-Header2", "\"a   b   c\""),
        ("X-Amz-Date", "20150830T123600Z"),
    ];
    let canonical = canonical_request(
        "GET",
        "/",
        "",
        &h,
        &["host", "my-header1", "my-header2", "x-amz-date"],
        b"",
    )
    .unwrap();
    assert!(canonical.contains("\nmy-header2:\"a b c\"\n"));
    assert_eq!(
        sigv4_signature(
            secret,
            "20150830T123600Z",
            "us-east-1",
            "service",
            &canonical
        ),
        "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"
    );
    // double-encode-path (service other than S3: the path is encoded again).
    let canonical = canonical_request(
        "POST",
        "/test/@connections/JBDvjfGEIAMCERw%3D",
        "",
        &[("Host", "x")],
        &["host"],
        b"",
    )
    .unwrap();
    assert!(canonical.starts_with("POST\n/test/%40connections/JBDvjfGEIAMCERw%253D\n\n"));
    // A signed header missing from the request.
    assert!(canonical_request(
        "GET",
        "/",
        "",
        &[("Host", "x")],
        &["host", "x-amz-date"],
        b""
    )
    .is_none());
}

#[test]
fn unsigned_and_badly_signed_requests_are_rejected() {
    let fake = FakeAws::start();
    let params = [("Action", "DescribeTargetGroups")];

    let r = elb(&fake, None, &params);
    assert_eq!(r.status, 403);
    assert_eq!(r.xml("Code").as_deref(), Some("MissingAuthenticationToken"));
    assert!(r.text().contains(ELB_NS));

    let wrong_secret = TestSigner::elb(DEFAULT_ACCESS_KEY_ID, "not-the-secret");
    let r = elb(&fake, Some(&wrong_secret), &params);
    assert_eq!(r.status, 403);
    assert_eq!(r.xml("Code").as_deref(), Some("SignatureDoesNotMatch"));

    let r = elb(&fake, Some(&TestSigner::elb("AKIDUNKNOWN", "x")), &params);
    assert_eq!(r.status, 403);
    assert_eq!(r.xml("Code").as_deref(), Some("InvalidClientTokenId"));

    let wrong_service = TestSigner {
        service: "ec2",
        ..default_signer()
    };
    let r = elb(&fake, Some(&wrong_service), &params);
    assert_eq!(r.status, 403);
    assert!(r.xml("Message").unwrap().contains("'elasticloadbalancing'"));

    // A token on a static key is refused.
    let with_token = TestSigner {
        session_token: Some("tok"),
        ..default_signer()
    };
    assert_eq!(elb(&fake, Some(&with_token), &params).status, 403);

    // Clock skew beyond 5 minutes.
    let body = form_encode(&[
        ("Action", "DescribeTargetGroups"),
        ("Version", "2015-12-01"),
    ]);
    let host = format!("127.0.0.1:{}", fake.port());
    let old = SystemTime::now() - Duration::from_secs(600);
    let headers = sign_for_test(
        &default_signer(),
        "POST",
        "/",
        &[("host", &host), ("content-type", FORM)],
        body.as_bytes(),
        old,
    );
    let r = http_request(fake.port(), "POST", "/", &headers, body.as_bytes()).unwrap();
    assert_eq!(r.status, 403);
    assert!(r.xml("Message").unwrap().starts_with("Signature expired"));

    // Other keys may be added; the default one keeps working.
    fake.add_credentials("AKIDOTHER", "other-secret");
    assert_eq!(
        elb(
            &fake,
            Some(&TestSigner::elb("AKIDOTHER", "other-secret")),
            &params
        )
        .status,
        200
    );
    let r = elb(&fake, Some(&default_signer()), &params);
    assert_eq!(r.status, 200);
    assert!(r.header("x-amzn-RequestId").is_some());

    let recs = fake.requests();
    assert_eq!(recs.len(), 8);
    assert!(!recs[0].signature_ok && recs[0].access_key_id.is_none());
    assert!(!recs[1].signature_ok);
    assert_eq!(
        recs[1].access_key_id.as_deref(),
        Some(DEFAULT_ACCESS_KEY_ID)
    );
    assert_eq!(recs[1].auth_error.as_deref(), Some("SignatureDoesNotMatch"));
    assert!(
        recs[3].signature_ok,
        "right secret, wrong service: the signature itself is fine"
    );
    assert!(recs[6].signature_ok && recs[7].signature_ok);
    assert_eq!(recs[7].status, Some(200));
    assert_eq!(recs[7].param("Action"), Some("DescribeTargetGroups"));
    assert_eq!(fake.count("DescribeTargetGroups"), 8);

    // Unknown action and missing Version.
    let r = elb(
        &fake,
        Some(&default_signer()),
        &[("Action", "DeleteTargetGroup")],
    );
    assert_eq!(
        (r.status, r.xml("Code").as_deref()),
        (400, Some("InvalidAction"))
    );
}

/// A scripted clock offset moves the fake's SigV4 time check and its `Date`
/// header: a client whose clock is right by the real one is refused as AWS
/// refuses a skewed one, and can read AWS's time from the answer.
#[test]
fn clock_offset_moves_the_signature_check_and_the_date_header() {
    let fake = FakeAws::start();
    let params = [("Action", "DescribeTargetGroups")];
    let body = form_encode(&[
        ("Action", "DescribeTargetGroups"),
        ("Version", "2015-12-01"),
    ]);
    let host = format!("127.0.0.1:{}", fake.port());
    let signed_at = |t: SystemTime| {
        let headers = sign_for_test(
            &default_signer(),
            "POST",
            "/",
            &[("host", &host), ("content-type", FORM)],
            body.as_bytes(),
            t,
        );
        http_request(fake.port(), "POST", "/", &headers, body.as_bytes()).unwrap()
    };
    let half_hour = Duration::from_secs(1800);
    let dates = |offset: Duration, ahead: bool| {
        let now = SystemTime::now();
        let shift = |t: SystemTime| if ahead { t + offset } else { t - offset };
        [http_date(shift(now)), http_date(shift(now + SECOND))]
    };

    fake.set_clock_offset(1800);
    let expected = dates(half_hour, true);
    let r = elb(&fake, Some(&default_signer()), &params);
    assert_eq!(r.status, 403);
    assert_eq!(r.xml("Code").as_deref(), Some("SignatureDoesNotMatch"));
    assert!(r.xml("Message").unwrap().starts_with("Signature expired: "));
    assert!(
        expected
            .iter()
            .any(|d| Some(d.as_str()) == r.header("Date")),
        "{r:?}"
    );
    assert_eq!(signed_at(SystemTime::now() + half_hour).status, 200);

    fake.set_clock_offset(-1800);
    let expected = dates(half_hour, false);
    let r = elb(&fake, Some(&default_signer()), &params);
    assert_eq!(r.status, 403);
    assert!(r
        .xml("Message")
        .unwrap()
        .starts_with("Signature not yet current: "));
    assert!(
        expected
            .iter()
            .any(|d| Some(d.as_str()) == r.header("Date")),
        "{r:?}"
    );
    assert_eq!(signed_at(SystemTime::now() - half_hour).status, 200);

    fake.set_clock_offset(0);
    assert_eq!(elb(&fake, Some(&default_signer()), &params).status, 200);
    let recs = fake.requests();
    assert_eq!(recs[0].auth_error.as_deref(), Some("SignatureDoesNotMatch"));
    assert!(recs[0].signature_ok, "a skewed request is well signed");
}

#[test]
fn register_describe_deregister() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("my-tg", 80);
    assert!(
        arn.starts_with("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/my-tg/")
    );
    assert_eq!(arn.rsplit('/').next().unwrap().len(), 16);
    let s = default_signer();

    let r = elb(
        &fake,
        Some(&s),
        &[
            ("Action", "DescribeTargetGroups"),
            ("Names.member.1", "my-tg"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.xml("TargetGroupArn").as_deref(), Some(arn.as_str()));
    assert_eq!(r.xml("Port").as_deref(), Some("80"));
    assert_eq!(r.xml("TargetType").as_deref(), Some("ip"));
    assert!(r
        .text()
        .starts_with("<DescribeTargetGroupsResponse xmlns=\""));
    let r = elb(
        &fake,
        Some(&s),
        &[
            ("Action", "DescribeTargetGroups"),
            ("TargetGroupArns.member.1", &arn),
        ],
    );
    assert_eq!(r.xml("TargetGroupName").as_deref(), Some("my-tg"));
    let r = elb(
        &fake,
        Some(&s),
        &[
            ("Action", "DescribeTargetGroups"),
            ("Names.member.1", "nope"),
        ],
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.xml("Code").as_deref(), Some("TargetGroupNotFound"));
    assert_eq!(
        r.xml("Message").as_deref(),
        Some("One or more target groups not found")
    );

    // ARN with a port suffix, and an unknown ARN.
    let r = register(&fake, &format!("{arn}:8080"), "10.0.1.5", "8080");
    assert_eq!(r.xml("Code").as_deref(), Some("ValidationError"));
    let other = arn.replace("my-tg", "other");
    assert_eq!(
        register(&fake, &other, "10.0.1.5", "8080")
            .xml("Code")
            .as_deref(),
        Some("TargetGroupNotFound")
    );
    assert_eq!(
        register(&fake, &arn, "10.0.1.5", "0")
            .xml("Code")
            .as_deref(),
        Some("ValidationError")
    );
    assert!(fake.registered(&arn).is_empty());

    fake.set_health_sequence(
        &arn,
        "10.0.1.5",
        vec![
            ("initial", Some("Elb.RegistrationInProgress")),
            ("healthy", None),
        ],
    );
    let r = register(&fake, &arn, "10.0.1.5", "8080");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<RegisterTargetsResult/>"));
    assert_eq!(
        fake.registered(&arn),
        vec![("10.0.1.5".to_string(), Some(8080))]
    );
    // Registering again is idempotent.
    assert_eq!(register(&fake, &arn, "10.0.1.5", "8080").status, 200);
    assert_eq!(fake.registered(&arn).len(), 1);

    assert_eq!(
        health(&fake, &arn),
        vec![("10.0.1.5".into(), "initial".into())]
    );
    assert_eq!(
        health(&fake, &arn),
        vec![("10.0.1.5".into(), "healthy".into())]
    );
    assert_eq!(
        health(&fake, &arn),
        vec![("10.0.1.5".into(), "healthy".into())]
    );

    // Health of a specific target, with the description.
    let r = elb(
        &fake,
        Some(&s),
        &[
            ("Action", "DescribeTargetHealth"),
            ("TargetGroupArn", &arn),
            ("Targets.member.1.Id", "10.0.9.9"),
            ("Targets.member.1.Port", "8080"),
        ],
    );
    assert_eq!(
        target_health(&r.text()),
        vec![("unused".into(), Some("Target.NotRegistered".into()))]
    );
    assert_eq!(
        r.xml("State").as_deref(),
        Some("no_override"),
        "AdministrativeOverride first"
    );
    assert_eq!(r.xml("HealthCheckPort").as_deref(), Some("8080"));

    fake.set_draining_polls(2);
    let dereg = [
        ("Action", "DeregisterTargets"),
        ("TargetGroupArn", arn.as_str()),
        ("Targets.member.1.Id", "10.0.1.5"),
        ("Targets.member.1.Port", "8080"),
    ];
    let r = elb(&fake, Some(&s), &dereg);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(fake.registered(&arn).is_empty());
    assert_eq!(
        health(&fake, &arn),
        vec![("10.0.1.5".into(), "draining".into())]
    );
    let r = elb(
        &fake,
        Some(&s),
        &[
            ("Action", "DescribeTargetHealth"),
            ("TargetGroupArn", &arn),
            ("Targets.member.1.Id", "10.0.1.5"),
        ],
    );
    assert_eq!(
        target_health(&r.text()),
        vec![(
            "draining".into(),
            Some("Target.DeregistrationInProgress".into())
        )]
    );
    assert!(health(&fake, &arn).is_empty());

    // Deregistering again succeeds (AWS), unless strict (moto).
    assert_eq!(elb(&fake, Some(&s), &dereg).status, 200);
    fake.set_strict_deregister(true);
    assert_eq!(
        elb(&fake, Some(&s), &dereg).xml("Code").as_deref(),
        Some("InvalidTarget")
    );

    // No port: the group's port, reported as sent (None); AZ shown.
    let r = elb(
        &fake,
        Some(&s),
        &[
            ("Action", "RegisterTargets"),
            ("TargetGroupArn", &arn),
            ("Targets.member.1.Id", "10.0.1.6"),
            ("Targets.member.1.AvailabilityZone", "all"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(fake.registered(&arn), vec![("10.0.1.6".to_string(), None)]);
    let r = elb(
        &fake,
        Some(&s),
        &[("Action", "DescribeTargetHealth"), ("TargetGroupArn", &arn)],
    );
    assert_eq!(r.xml("Port").as_deref(), Some("80"));
    assert_eq!(r.xml("AvailabilityZone").as_deref(), Some("all"));
    assert_eq!(fake.count("RegisterTargets"), 6);
}

#[test]
fn sts_credentials_are_accepted_then_expire() {
    let fake = FakeAws::start();
    let r = sts(&fake, "tok-1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with(&format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"{STS_NS}\">"
    )));
    let akid = r.xml("AccessKeyId").unwrap();
    let secret = r.xml("SecretAccessKey").unwrap();
    let token = r.xml("SessionToken").unwrap();
    assert!(akid.starts_with("ASIAFAKE"));
    let exp = r.xml("Expiration").unwrap();
    assert_eq!(exp.len(), 20, "{exp}");
    assert!(r
        .xml("Arn")
        .unwrap()
        .ends_with(":assumed-role/my-role/sidecar-1"));

    let params = [("Action", "DescribeTargetGroups")];
    let signer = TestSigner {
        session_token: Some(&token),
        ..TestSigner::elb(&akid, &secret)
    };
    assert_eq!(elb(&fake, Some(&signer), &params).status, 200);
    let no_token = TestSigner::elb(&akid, &secret);
    let r = elb(&fake, Some(&no_token), &params);
    assert_eq!(
        (r.status, r.xml("Code").as_deref()),
        (403, Some("InvalidClientTokenId"))
    );
    let wrong = TestSigner {
        session_token: Some("other"),
        ..signer
    };
    assert_eq!(elb(&fake, Some(&wrong), &params).status, 403);

    // Zero lifetime: expired at once.
    fake.set_sts_lifetime(Duration::ZERO);
    let r = sts(&fake, "tok-2");
    let (akid, secret, token) = (
        r.xml("AccessKeyId").unwrap(),
        r.xml("SecretAccessKey").unwrap(),
        r.xml("SessionToken").unwrap(),
    );
    let signer = TestSigner {
        session_token: Some(&token),
        ..TestSigner::elb(&akid, &secret)
    };
    let r = elb(&fake, Some(&signer), &params);
    assert_eq!(
        (r.status, r.xml("Code").as_deref()),
        (400, Some("ExpiredToken"))
    );
    assert!(fake.requests().last().unwrap().signature_ok);

    let r = sts(&fake, "");
    assert_eq!(
        (r.status, r.xml("Code").as_deref()),
        (400, Some("InvalidIdentityToken"))
    );
    assert!(r.text().contains(STS_NS));
    assert_eq!(fake.web_identity_tokens(), vec!["tok-1", "tok-2", ""]);
    assert_eq!(fake.count("AssumeRoleWithWebIdentity"), 3);
    assert_eq!(fake.issued_access_keys().len(), 2);
}

#[test]
fn container_and_imds_credentials() {
    let fake = FakeAws::start();
    fake.set_container_token(Some("secret-token"));
    let none: [(&str, &str); 0] = [];
    let r = http_request(fake.port(), "GET", "/container-credentials", &none, b"").unwrap();
    assert_eq!(r.status, 401);
    let r = http_request(
        fake.port(),
        "GET",
        "/container-credentials/v1",
        &[("Authorization", "secret-token")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.text();
    let akid = json_text(&body, "AccessKeyId").unwrap();
    let secret = json_text(&body, "SecretAccessKey").unwrap();
    let token = json_text(&body, "Token").unwrap();
    assert!(json_text(&body, "Expiration").unwrap().ends_with('Z'));
    assert!(json_text(&body, "RoleArn").is_some());
    let signer = TestSigner {
        session_token: Some(&token),
        ..TestSigner::elb(&akid, &secret)
    };
    assert_eq!(
        elb(&fake, Some(&signer), &[("Action", "DescribeTargetGroups")]).status,
        200
    );

    // IMDSv2.
    let creds = "/latest/meta-data/iam/security-credentials/";
    assert_eq!(
        http_request(fake.port(), "GET", creds, &none, b"")
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        http_request(fake.port(), "PUT", "/latest/api/token", &none, b"")
            .unwrap()
            .status,
        400
    );
    let r = http_request(
        fake.port(),
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let imds_token = r.text();
    let auth = [("X-aws-ec2-metadata-token", imds_token.as_str())];
    let r = http_request(fake.port(), "GET", creds, &auth, b"").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, IMDS_ROLE));
    let r = http_request(
        fake.port(),
        "GET",
        &format!("{creds}{IMDS_ROLE}"),
        &auth,
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let body = r.text();
    assert_eq!(json_text(&body, "Code").as_deref(), Some("Success"));
    assert_eq!(json_text(&body, "Type").as_deref(), Some("AWS-HMAC"));
    let akid = json_text(&body, "AccessKeyId").unwrap();
    let secret = json_text(&body, "SecretAccessKey").unwrap();
    let token = json_text(&body, "Token").unwrap();
    let signer = TestSigner {
        session_token: Some(&token),
        ..TestSigner::elb(&akid, &secret)
    };
    assert_eq!(
        elb(&fake, Some(&signer), &[("Action", "DescribeTargetGroups")]).status,
        200
    );
    let r = http_request(
        fake.port(),
        "GET",
        &format!("{creds}other-role"),
        &auth,
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(fake.count("imds"), 6);
    assert_eq!(fake.count("container"), 2);
}

#[test]
fn scripted_faults() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let s = default_signer();
    let describe = [("Action", "DescribeTargetGroups"), ("Names.member.1", "tg")];

    fake.script(
        "DescribeTargetGroups",
        vec![
            Fault::Throttle,
            Fault::Status(503),
            Fault::Error(403, "AccessDenied"),
            Fault::Garbage(b"not xml"),
        ],
    );
    let r = elb(&fake, Some(&s), &describe);
    assert_eq!(
        (r.status, r.xml("Code").as_deref()),
        (400, Some("Throttling"))
    );
    assert_eq!(r.xml("Type").as_deref(), Some("Sender"));
    let r = elb(&fake, Some(&s), &describe);
    assert_eq!(
        (r.status, r.xml("Code").as_deref()),
        (503, Some("ServiceUnavailable"))
    );
    assert_eq!(r.xml("Type").as_deref(), Some("Receiver"));
    let r = elb(&fake, Some(&s), &describe);
    assert_eq!(
        (r.status, r.xml("Code").as_deref()),
        (403, Some("AccessDenied"))
    );
    let r = elb(&fake, Some(&s), &describe);
    assert_eq!((r.status, r.text().as_str()), (200, "not xml"));
    assert_eq!(fake.faults_left("DescribeTargetGroups"), 0);
    assert_eq!(elb(&fake, Some(&s), &describe).status, 200);

    // Reset and Truncated: the client sees a broken exchange.
    fake.script("*", vec![Fault::Reset, Fault::Truncated]);
    let body = form_encode(&[
        ("Action", "DescribeTargetGroups"),
        ("Version", "2015-12-01"),
    ]);
    let none: [(&str, &str); 0] = [];
    assert!(http_request(fake.port(), "POST", "/", &none, body.as_bytes()).is_err());
    let e = http_request(fake.port(), "POST", "/", &none, body.as_bytes()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);

    // Delay.
    fake.script(
        "DescribeTargetGroups",
        vec![Fault::Delay(Duration::from_millis(80))],
    );
    let t = Instant::now();
    assert_eq!(elb(&fake, Some(&s), &describe).status, 200);
    assert!(t.elapsed() >= Duration::from_millis(80));

    // ApplyThenFail: the registration lands, the client sees a 500.
    fake.script(
        "RegisterTargets",
        vec![Fault::ApplyThenFail(500), Fault::ApplyThenReset],
    );
    let r = register(&fake, &arn, "10.0.0.1", "80");
    assert_eq!(
        (r.status, r.xml("Code").as_deref()),
        (500, Some("InternalFailure"))
    );
    assert_eq!(fake.registered(&arn).len(), 1);
    let host = format!("127.0.0.1:{}", fake.port());
    let body = form_encode(&[
        ("Action", "RegisterTargets"),
        ("TargetGroupArn", &arn),
        ("Targets.member.1.Id", "10.0.0.2"),
        ("Version", "2015-12-01"),
    ]);
    let headers = sign_for_test(
        &s,
        "POST",
        "/",
        &[("host", &host), ("content-type", FORM)],
        body.as_bytes(),
        SystemTime::now(),
    );
    assert!(http_request(fake.port(), "POST", "/", &headers, body.as_bytes()).is_err());
    assert_eq!(fake.registered(&arn).len(), 2);

    let recs = fake.requests_for("RegisterTargets");
    assert_eq!(recs[0].fault, Some(Fault::ApplyThenFail(500)));
    assert_eq!(recs[0].status, Some(500));
    assert_eq!(recs[1].status, None);

    // Hang: no answer until the server goes away.
    fake.script("DescribeTargetHealth", vec![Fault::Hang]);
    let mut stream = TcpStream::connect(("127.0.0.1", fake.port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let body = form_encode(&[
        ("Action", "DescribeTargetHealth"),
        ("Version", "2015-12-01"),
    ]);
    write_request(
        &mut stream,
        fake.port(),
        "POST",
        "/",
        &[("content-type", FORM)],
        body.as_bytes(),
    )
    .unwrap();
    assert!(fake.wait_for("DescribeTargetHealth", SECOND));
    let mut buf = [0u8; 16];
    assert!(stream.read(&mut buf).is_err(), "timed out");
    drop(fake);
    stream.set_read_timeout(Some(SECOND)).unwrap();
    assert_eq!(
        stream.read(&mut buf).unwrap_or(0),
        0,
        "closed when the server drops"
    );
}

#[test]
fn hold_and_release() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.script("RegisterTargets", vec![Fault::Hold, Fault::HoldThenApply]);

    thread::scope(|scope| {
        let call = scope.spawn(|| register(&fake, &arn, "10.0.0.1", "80"));
        assert!(fake.wait_for("RegisterTargets", SECOND));
        assert!(fake.wait_held(1, SECOND));
        assert_eq!(fake.registered(&arn).len(), 1, "Hold applies first");
        assert_eq!(fake.requests()[0].status, None, "not answered yet");
        fake.release();
        assert_eq!(call.join().unwrap().status, 200);
    });
    assert_eq!(fake.held(), 0);

    thread::scope(|scope| {
        let call = scope.spawn(|| register(&fake, &arn, "10.0.0.2", "80"));
        assert!(fake.wait_held(1, SECOND));
        assert_eq!(
            fake.registered(&arn).len(),
            1,
            "HoldThenApply applies after release"
        );
        fake.release();
        assert_eq!(call.join().unwrap().status, 200);
        assert_eq!(fake.registered(&arn).len(), 2);
    });
    assert!(fake.wait_for_count("RegisterTargets", 2, SECOND));
    assert!(!fake.wait_for("DeregisterTargets", Duration::from_millis(20)));
}

#[test]
fn keep_alive_and_malformed_http() {
    let fake = FakeAws::start();
    let port = fake.port();
    let s = default_signer();
    let host = format!("127.0.0.1:{port}");
    let body = form_encode(&[
        ("Action", "DescribeTargetGroups"),
        ("Version", "2015-12-01"),
    ]);

    // Two requests on one connection.
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(SECOND * 5)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..2 {
        let headers = sign_for_test(
            &s,
            "POST",
            "/",
            &[("host", &host), ("content-type", FORM)],
            body.as_bytes(),
            SystemTime::now(),
        );
        write_request(&mut writer, port, "POST", "/", &headers, body.as_bytes()).unwrap();
        let r = read_response(&mut reader).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.header("connection").is_none());
    }

    // Chunked bodies are refused.
    let r = http_request(
        port,
        "POST",
        "/",
        &[("content-type", FORM), ("transfer-encoding", "chunked")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 400);

    // Garbage on the wire gets a 400, not a crash.
    for raw in [
        &b"garbage\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(SECOND * 5)).unwrap();
        std::io::Write::write_all(&mut stream, raw).unwrap();
        let r = read_response(&mut BufReader::new(stream)).unwrap();
        assert!(r.status == 400 || r.status == 505, "{}", r.status);
    }
    // Truncated input just closes.
    {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::io::Write::write_all(
            &mut stream,
            b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc",
        )
        .unwrap();
    }

    // Unknown paths and a POST / without Action.
    let none: [(&str, &str); 0] = [];
    assert_eq!(
        http_request(port, "GET", "/nope", &none, b"")
            .unwrap()
            .status,
        404
    );
    let r = http_request(
        port,
        "POST",
        "/",
        &[("content-type", FORM)],
        b"Version=2015-12-01",
    )
    .unwrap();
    assert_eq!(
        (r.status, r.xml("Code").as_deref()),
        (400, Some("MissingAction"))
    );

    // The server still works, and stops on drop.
    assert_eq!(
        elb(&fake, Some(&s), &[("Action", "DescribeTargetGroups")]).status,
        200
    );
    drop(fake);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// POST a signed STS AssumeRole (Version added).
fn assume_role(fake: &FakeAws, signer: &TestSigner<'_>, params: &[(&str, &str)]) -> HttpResponse {
    let mut all = vec![("Action", "AssumeRole"), ("Version", "2011-06-15")];
    all.extend_from_slice(params);
    let body = form_encode(&all);
    let host = format!("127.0.0.1:{}", fake.port());
    let base = [("host", host.as_str()), ("content-type", FORM)];
    let headers = sign_for_test(
        signer,
        "POST",
        "/",
        &base,
        body.as_bytes(),
        SystemTime::now(),
    );
    http_request(fake.port(), "POST", "/", &headers, body.as_bytes()).expect("STS request")
}

#[test]
fn assume_role_is_signed_for_sts_and_checks_the_external_id() {
    let fake = FakeAws::start();
    let role = "arn:aws:iam::444455556666:role/nlb-registrator";
    fake.add_role(role, Some("ext-1"));
    let sts_signer = TestSigner {
        service: "sts",
        ..default_signer()
    };
    let ok_params = [
        ("RoleArn", role),
        ("RoleSessionName", "pod-a"),
        ("ExternalId", "ext-1"),
        ("DurationSeconds", "3600"),
    ];
    let r = assume_role(&fake, &sts_signer, &ok_params);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .text()
        .starts_with(&format!("<AssumeRoleResponse xmlns=\"{STS_NS}\">")));
    assert_eq!(
        r.xml("Arn").as_deref(),
        Some("arn:aws:sts::444455556666:assumed-role/nlb-registrator/pod-a")
    );
    let (akid, secret, token) = (
        r.xml("AccessKeyId").unwrap(),
        r.xml("SecretAccessKey").unwrap(),
        r.xml("SessionToken").unwrap(),
    );
    assert!(akid.starts_with("ASIAROLE"), "{akid}");
    let granted = fake.assumed_roles();
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0].caller_access_key_id, DEFAULT_ACCESS_KEY_ID);
    assert_eq!(granted[0].issued_access_key_id, akid);
    assert_eq!(granted[0].external_id.as_deref(), Some("ext-1"));
    assert_eq!(granted[0].duration_seconds, Some(3600));
    // The role's keys sign ELBv2 calls.
    let role_signer = TestSigner {
        session_token: Some(&token),
        ..TestSigner::elb(&akid, &secret)
    };
    assert_eq!(
        elb(
            &fake,
            Some(&role_signer),
            &[("Action", "DescribeTargetGroups")]
        )
        .status,
        200
    );

    // Signed for the wrong service, with a wrong secret, unsigned.
    let r = assume_role(&fake, &default_signer(), &ok_params);
    assert_eq!(
        (r.status, r.xml("Code").as_deref()),
        (403, Some("SignatureDoesNotMatch"))
    );
    let wrong = TestSigner {
        secret: "nope",
        ..sts_signer
    };
    let r = assume_role(&fake, &wrong, &ok_params);
    assert_eq!(
        (r.status, r.xml("Code").as_deref()),
        (403, Some("SignatureDoesNotMatch"))
    );
    assert!(!fake.requests().last().unwrap().signature_ok);
    let body = form_encode(&[("Action", "AssumeRole"), ("Version", "2011-06-15")]);
    let r = http_request(
        fake.port(),
        "POST",
        "/",
        &[("content-type", FORM)],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(
        (r.status, r.xml("Code").as_deref()),
        (403, Some("MissingAuthenticationToken"))
    );

    // ExternalId missing or wrong, unknown role: AccessDenied.
    for params in [
        &ok_params[..2],
        &[
            ("RoleArn", role),
            ("RoleSessionName", "pod-a"),
            ("ExternalId", "ext-2"),
        ][..],
        &[
            ("RoleArn", "arn:aws:iam::444455556666:role/other"),
            ("RoleSessionName", "pod-a"),
        ][..],
    ] {
        let r = assume_role(&fake, &sts_signer, params);
        assert_eq!(
            (r.status, r.xml("Code").as_deref()),
            (403, Some("AccessDenied")),
            "{params:?}"
        );
        assert!(r
            .text()
            .contains("is not authorized to perform: sts:AssumeRole on resource"));
    }

    // Role chaining (temporary caller credentials) is limited to one hour.
    let chained = TestSigner {
        service: "sts",
        ..role_signer
    };
    let mut long = ok_params.to_vec();
    long[3] = ("DurationSeconds", "7200");
    let r = assume_role(&fake, &chained, &long);
    assert_eq!(
        (r.status, r.xml("Code").as_deref()),
        (400, Some("ValidationError"))
    );
    assert_eq!(assume_role(&fake, &chained, &ok_params).status, 200);

    // Short lifetimes for refresh tests; scripted faults.
    fake.set_assume_role_lifetime(Duration::ZERO);
    let r = assume_role(&fake, &sts_signer, &ok_params);
    let (akid, secret, token) = (
        r.xml("AccessKeyId").unwrap(),
        r.xml("SecretAccessKey").unwrap(),
        r.xml("SessionToken").unwrap(),
    );
    let expired = TestSigner {
        session_token: Some(&token),
        ..TestSigner::elb(&akid, &secret)
    };
    let r = elb(&fake, Some(&expired), &[("Action", "DescribeTargetGroups")]);
    assert_eq!(
        (r.status, r.xml("Code").as_deref()),
        (400, Some("ExpiredToken"))
    );
    fake.script("AssumeRole", vec![Fault::Error(403, "AccessDenied")]);
    let r = assume_role(&fake, &sts_signer, &ok_params);
    assert_eq!(
        (r.status, r.xml("Code").as_deref()),
        (403, Some("AccessDenied"))
    );
    assert_eq!(fake.count("AssumeRole"), 11);
}

#[test]
fn ipv6_groups_take_ipv6_targets_only() {
    let fake = FakeAws::start();
    let v6 = fake.add_ipv6_target_group("v6", 80);
    let v4 = fake.add_target_group("v4", 80);
    let s = default_signer();
    let r = elb(
        &fake,
        Some(&s),
        &[("Action", "DescribeTargetGroups"), ("Names.member.1", "v6")],
    );
    assert_eq!(r.xml("IpAddressType").as_deref(), Some("ipv6"));
    let r = register(&fake, &v6, "10.0.1.5", "80");
    assert_eq!(r.xml("Code").as_deref(), Some("ValidationError"));
    assert!(r
        .xml("Message")
        .unwrap()
        .contains("not a valid IPv6 address"));
    let r = register(&fake, &v4, "fd00::5", "80");
    assert_eq!(r.xml("Code").as_deref(), Some("ValidationError"));
    assert!(r
        .xml("Message")
        .unwrap()
        .contains("not a valid IPv4 address"));
    assert_eq!(register(&fake, &v6, "fd00::5", "80").status, 200);
    assert_eq!(
        fake.registered(&v6),
        vec![("fd00::5".to_string(), Some(80))]
    );
    assert!(fake.registered(&v4).is_empty());
}

#[test]
fn lost_registration_lands_after_the_next_deregistration() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let s = default_signer();
    fake.script(
        "RegisterTargets",
        vec![Fault::LandAfterDeregister(Duration::from_millis(200))],
    );
    let host = format!("127.0.0.1:{}", fake.port());
    let body = form_encode(&[
        ("Action", "RegisterTargets"),
        ("TargetGroupArn", &arn),
        ("Targets.member.1.Id", "10.0.0.1"),
        ("Targets.member.1.Port", "80"),
        ("Version", "2015-12-01"),
    ]);
    let headers = sign_for_test(
        &s,
        "POST",
        "/",
        &[("host", &host), ("content-type", FORM)],
        body.as_bytes(),
        SystemTime::now(),
    );
    assert!(
        http_request(fake.port(), "POST", "/", &headers, body.as_bytes()).is_err(),
        "no answer"
    );
    thread::sleep(Duration::from_millis(300));
    assert!(
        fake.registered(&arn).is_empty(),
        "not before a deregistration"
    );

    // Another target's deregistration does not set it off.
    let dereg = |id: &str| {
        elb(
            &fake,
            Some(&s),
            &[
                ("Action", "DeregisterTargets"),
                ("TargetGroupArn", &arn),
                ("Targets.member.1.Id", id),
                ("Targets.member.1.Port", "80"),
            ],
        )
    };
    assert_eq!(dereg("10.0.0.9").status, 200);
    thread::sleep(Duration::from_millis(300));
    assert!(fake.registered(&arn).is_empty());

    // Its own does: AWS answers success (not registered), and 200 ms later it lands.
    let t = Instant::now();
    assert_eq!(dereg("10.0.0.1").status, 200);
    assert!(fake.registered(&arn).is_empty(), "not at once");
    while fake.registered(&arn).is_empty() {
        assert!(t.elapsed() < SECOND, "landed within a second");
        thread::sleep(Duration::from_millis(10));
    }
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert_eq!(fake.registered(&arn), [("10.0.0.1".to_string(), Some(80))]);
    assert_eq!(health(&fake, &arn).len(), 1);
    assert_eq!(fake.requests_for("RegisterTargets")[0].status, None);
}

#[test]
fn token_buckets_throttle_as_aws_documents() {
    let fake = FakeAws::start();
    fake.set_quiet(true);
    let arn = fake.add_target_group("tg", 80);
    // Small buckets with a slow refill, so the test does not race it.
    fake.set_rate_limits(Some(RateLimits {
        describe: (3.0, 0.5),
        mutating: (2.0, 0.5),
    }));
    let statuses: Vec<u16> = (0..4).map(|_| health_status(&fake, &arn)).collect();
    assert_eq!(statuses, [200, 200, 200, 400]);
    // The other bucket is separate.
    assert_eq!(register(&fake, &arn, "10.0.0.1", "80").status, 200);
    assert_eq!(register(&fake, &arn, "10.0.0.2", "80").status, 200);
    let r = register(&fake, &arn, "10.0.0.3", "80");
    assert_eq!(r.status, 400);
    assert_eq!(xml_text(&r.text(), "Code").as_deref(), Some("Throttling"));
    assert_eq!(
        xml_text(&r.text(), "Message").as_deref(),
        Some("Rate exceeded")
    );
    // A throttled call has no effect and is recorded with its answer.
    assert_eq!(fake.registered(&arn).len(), 2);
    let throttled = fake
        .requests()
        .iter()
        .filter(|r| r.error_code.as_deref() == Some("Throttling"))
        .count();
    assert_eq!(throttled, 2);
    // A token comes back after 2 s (0.5 a second); a scripted fault waits
    // for an answered call.
    fake.script("DescribeTargetHealth", vec![Fault::Status(503)]);
    thread::sleep(Duration::from_millis(2100));
    assert_eq!(health_status(&fake, &arn), 503);
    assert_eq!(health_status(&fake, &arn), 400);
    // Off again: no throttling.
    fake.set_rate_limits(None);
    assert!((0..10).all(|_| health_status(&fake, &arn) == 200));
    // The AWS figures.
    assert_eq!(RateLimits::ELB.describe, (40.0, 10.0));
    assert_eq!(RateLimits::ELB.mutating, (20.0, 5.0));
}

fn health_status(fake: &FakeAws, arn: &str) -> u16 {
    elb(
        fake,
        Some(&default_signer()),
        &[("Action", "DescribeTargetHealth"), ("TargetGroupArn", arn)],
    )
    .status
}

#[test]
fn time_based_health_and_reported_health_check_settings() {
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    fake.set_healthy_after(Some(Duration::from_millis(600)));
    fake.configure_target_group(
        &arn,
        GroupSettings {
            health_check_interval_seconds: 1,
            healthy_threshold: 3,
            ..GroupSettings::default()
        },
    );
    let r = elb(
        &fake,
        Some(&default_signer()),
        &[("Action", "DescribeTargetGroups"), ("Names.member.1", "tg")],
    );
    assert_eq!(
        xml_text(&r.text(), "HealthCheckIntervalSeconds").as_deref(),
        Some("1")
    );
    assert_eq!(
        xml_text(&r.text(), "HealthyThresholdCount").as_deref(),
        Some("3")
    );
    assert_eq!(register(&fake, &arn, "10.0.0.1", "80").status, 200);
    let r = elb(
        &fake,
        Some(&default_signer()),
        &[("Action", "DescribeTargetHealth"), ("TargetGroupArn", &arn)],
    );
    assert_eq!(
        target_health(&r.text()),
        [(
            "initial".to_string(),
            Some("Elb.RegistrationInProgress".to_string())
        )]
    );
    thread::sleep(Duration::from_millis(300));
    // Registering again does not restart the clock.
    assert_eq!(register(&fake, &arn, "10.0.0.1", "80").status, 200);
    thread::sleep(Duration::from_millis(400));
    assert_eq!(
        health(&fake, &arn),
        [("10.0.0.1".to_string(), "healthy".to_string())]
    );
}
