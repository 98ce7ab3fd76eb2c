//! The status listener's request parser and router, on any bytes a client
//! may send: `status::parse_head`, then `status::route`.
//!
//! Invariants: no panic; a head that parses has an upper-case method and a
//! path that starts with `/` and holds no query; more than `MAX_HEAD` bytes
//! without a parsed head are refused as too large; a head judged complete
//! stays the same request when more bytes follow (a body or the next
//! request never changes it).
#![no_main]

use k8s_nlb_registrator_sidecar::status::{parse_head, route, Status, MAX_HEAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_head(data) {
        Ok(Some((method, path))) => {
            assert!(!method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase()));
            assert!(path.starts_with('/') && !path.contains('?'), "{path:?}");
            let mut more = data.to_vec();
            more.extend_from_slice(b"GET /drain HTTP/1.1\r\n\r\n");
            assert_eq!(parse_head(&more), Ok(Some((method.clone(), path.clone()))));
            let done = Status::new();
            done.set_outcome(Ok("deregistered".into()));
            for (status, lb_only) in [(Status::new(), false), (done, false), (Status::new(), true)] {
                if let Some(answer) = route(&method, &path, &status, lb_only) {
                    assert!(answer.starts_with(b"HTTP/1.1 "));
                }
            }
        }
        Ok(None) => assert!(data.len() <= MAX_HEAD, "{} bytes and still incomplete", data.len()),
        Err(refusal) => assert!(refusal.starts_with(b"HTTP/1.1 400 ") || data.len() > MAX_HEAD),
    }
});
