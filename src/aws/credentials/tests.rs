use super::*;

use crate::env::test_env as env;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

#[test]
fn static_keys_win() {
    let e = env(&[
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "SECRET"),
        ("AWS_SESSION_TOKEN", "TOKEN"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", "/f"),
        ("AWS_ROLE_ARN", "arn"),
    ]);
    match select_source(&e, now()).unwrap() {
        Source::Static(c) => {
            assert_eq!(c.access_key_id, "AKID");
            assert_eq!(c.session_token.unwrap().expose(), "TOKEN");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn half_configured_sources_are_errors() {
    let e = select_source(&env(&[("AWS_ACCESS_KEY_ID", "AKID")]), now()).unwrap_err();
    assert!(
        e.to_string().contains("AWS_SECRET_ACCESS_KEY is not"),
        "{e}"
    );
    let e = select_source(&env(&[("AWS_SECRET_ACCESS_KEY", "S")]), now()).unwrap_err();
    assert!(e.to_string().contains("AWS_ACCESS_KEY_ID is not"), "{e}");
    assert!(!e.to_string().contains("S\""));
    let e = select_source(&env(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/t")]), now()).unwrap_err();
    assert!(e.to_string().contains("AWS_ROLE_ARN"), "{e}");
}

#[test]
fn web_identity_with_default_session_name() {
    let e = env(&[
        ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
        ("AWS_ROLE_ARN", "arn:r"),
    ]);
    assert_eq!(
        select_source(&e, now()).unwrap(),
        Source::WebIdentity {
            role_arn: "arn:r".into(),
            token_file: "/t".into(),
            session_name: "k8s-nlb-registrator-1700000000".into()
        }
    );
}

#[test]
fn container_urls() {
    let ok = |url: &str| {
        select_source(&env(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)]), now()).is_ok()
    };
    assert!(ok("http://169.254.170.23/v1/credentials"));
    assert!(ok("http://169.254.170.2/x"));
    assert!(ok("http://[fd00:ec2::23]/v1/credentials"));
    assert!(ok("http://127.0.0.1:8080/creds"));
    assert!(ok("http://localhost/creds"));
    assert!(ok("https://creds.example.com/x"));
    assert!(!ok("http://10.0.0.1/creds"));
    assert!(!ok("http://169.254.169.254/creds"));
    assert!(!ok("ftp://127.0.0.1/"));
    assert!(!ok("http://127.0.0.1:80@evil.example/creds"));
    assert!(!ok("http://[::1]@evil.example/creds"));
    for url in [
        "https://user:hunter2@creds.example.com/x",
        "http://user:hunter2@127.0.0.1/creds",
        "ftp://user:hunter2@127.0.0.1/",
    ] {
        let e = select_source(&env(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)]), now())
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
    let s = select_source(
        &env(&[
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/abc",
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "tok"),
        ]),
        now(),
    )
    .unwrap();
    match s {
        Source::Container { url, token, .. } => {
            assert_eq!(url, "http://169.254.170.2/v2/credentials/abc");
            assert_eq!(token.unwrap().expose(), "tok");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn imds_and_nothing() {
    assert_eq!(
        select_source(&env(&[]), now()).unwrap(),
        Source::Imds {
            endpoint: "http://169.254.169.254".into()
        }
    );
    assert_eq!(
        select_source(
            &env(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/")]),
            now()
        )
        .unwrap(),
        Source::Imds {
            endpoint: "http://127.0.0.1:9".into()
        }
    );
    let e = select_source(&env(&[("AWS_EC2_METADATA_DISABLED", "TRUE")]), now()).unwrap_err();
    let msg = e.to_string();
    for part in ["environment", "web identity", "container", "IMDS"] {
        assert!(msg.contains(part), "{msg}");
    }
}

#[test]
fn expiration_formats() {
    let base = parse_expiration("2026-11-25T18:04:33Z").unwrap();
    assert_eq!(parse_expiration("2026-11-25T18:04:33+00:00"), Some(base));
    assert_eq!(
        parse_expiration("2026-11-25T18:04:33.500Z"),
        Some(base + Duration::from_millis(500))
    );
    assert_eq!(parse_expiration("garbage"), None);
}

fn get(
    c: &mut Cache,
    now: SystemTime,
    refresh: bool,
    fetch: impl FnOnce() -> Result<Credentials, Error>,
) -> Result<Credentials, Error> {
    match c.fresh(now, refresh) {
        Some(fresh) => Ok(fresh),
        None => c.store("x", now, refresh, fetch()),
    }
}

#[test]
fn cache_reuses_until_due_then_keeps_old_ones_until_expiry() {
    let creds = |id: &str, expiry_secs| Credentials {
        access_key_id: id.into(),
        secret_access_key: Secret::new("s".into()),
        session_token: None,
        expiry: Some(UNIX_EPOCH + Duration::from_secs(expiry_secs)),
    };
    let down = || Err(Error::Credentials("down".into()));
    let at = |s| UNIX_EPOCH + Duration::from_secs(s);
    let mut c = Cache::default();
    assert!(get(&mut c, at(0), false, down).is_err());
    assert_eq!(
        get(&mut c, at(0), false, || Ok(creds("A", 1000)))
            .unwrap()
            .access_key_id,
        "A"
    );
    // Not due: no fetch.
    let not_due = || panic!("fetched 301 s before expiry");
    assert_eq!(
        get(&mut c, at(699), false, not_due).unwrap().access_key_id,
        "A"
    );
    assert_eq!(c.refresh_due(), Some(at(400)));
    // Due, the fetch fails, still valid: the old ones.
    assert_eq!(
        get(&mut c, at(800), false, down).unwrap().access_key_id,
        "A"
    );
    assert!(c.usable(at(800)));
    // A refresh reports its failure; the old ones stay.
    assert!(get(&mut c, at(800), true, down).is_err());
    assert_eq!(
        get(&mut c, at(800), false, down).unwrap().access_key_id,
        "A"
    );
    // Expired: the error.
    assert!(get(&mut c, at(1000), false, down).is_err());
    assert!(!c.usable(at(1000)));
    let b = || Ok(creds("B", 5000));
    assert_eq!(get(&mut c, at(1000), true, b).unwrap().access_key_id, "B");
    // A refresh fetches even when not due.
    assert_eq!(
        get(&mut c, at(1000), true, || Ok(creds("C", 5000)))
            .unwrap()
            .access_key_id,
        "C"
    );
    c.0 = None;
    assert!(get(&mut c, at(1000), false, down).is_err());
}
