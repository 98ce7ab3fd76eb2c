//! STS AssumeRoleWithWebIdentity and GetCallerIdentity response parsers.
//!
//! Input: first byte picks the HTTP status from `STATUSES`, the rest is the body.
#![no_main]

use k8s_nlb_registrator_sidecar::aws::credentials::Secret;
use k8s_nlb_registrator_sidecar::aws::error::Error;
use k8s_nlb_registrator_sidecar::aws::sts::{AssumeRoleWithWebIdentity, GetCallerIdentity};
use k8s_nlb_registrator_sidecar::aws::Action;
use libfuzzer_sys::fuzz_target;

const STATUSES: [u16; 8] = [200, 200, 200, 200, 400, 403, 500, 503];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    let status = STATUSES[usize::from(sel & 7)];
    match GetCallerIdentity::parse_response(status, body) {
        Ok(id) => {
            assert!((200..300).contains(&status));
            let _ = format!("{:?}", id.value);
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(matches!(e, Error::Aws { .. } | Error::Response { .. }), "{e:?}");
        }
    }
    match AssumeRoleWithWebIdentity::parse_response(status, body).map(|r| r.value) {
        Ok(creds) => {
            assert!((200..300).contains(&status));
            assert!(!creds.access_key_id.is_empty());
            assert!(!creds.secret_access_key.expose().is_empty());
            assert!(creds.session_token.is_some(), "STS credentials always have a session token");
            assert!(creds.expiry.is_some(), "STS credentials always expire");
            // Debug never shows a secret: it does not change when the secrets do.
            let mut other = creds.clone();
            other.secret_access_key = Secret::new("x".into());
            other.session_token = Some(Secret::new("y".into()));
            assert_eq!(format!("{creds:?}"), format!("{other:?}"));
        }
        Err(e) => {
            let _ = e.to_string();
            match e {
                Error::Aws { error, .. } => assert!(!error.code.is_empty()),
                Error::Response { .. } => assert!((200..300).contains(&status)),
                other => panic!("unexpected error kind: {other:?}"),
            }
        }
    }
});
