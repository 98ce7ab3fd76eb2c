//! Container-credentials / IMDS JSON, RFC 3339 expirations and token files.
//! Every parser runs on the whole input (they are cheap), so one corpus
//! serves all three.
#![no_main]

use k8s_nlb_registrator_sidecar::aws::credentials::providers::{parse_credentials_json, token_from};
use k8s_nlb_registrator_sidecar::aws::credentials::{parse_expiration, Secret};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_credentials_json("c", data) {
        Ok(creds) => {
            assert!(!creds.access_key_id.is_empty());
            assert!(!creds.secret_access_key.expose().is_empty());
            if let Some(t) = &creds.session_token {
                assert!(!t.expose().is_empty());
            }
            let mut other = creds.clone();
            other.secret_access_key = Secret::new("x".into());
            other.session_token = other.session_token.as_ref().map(|_| Secret::new("y".into()));
            assert_eq!(format!("{creds:?}"), format!("{other:?}"), "Debug shows a secret");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(t) = parse_expiration(s) {
            // Surrounding white space does not change the result.
            assert_eq!(parse_expiration(&format!(" {s}\n")), Some(t));
        }
    }

    match token_from(data) {
        Ok(t) => {
            let t = t.expose();
            assert!(!t.is_empty() && t == t.trim());
            assert!(!t.contains(['\r', '\n']), "token would break the header");
        }
        Err(e) => assert!(!e.is_empty()),
    }
});
