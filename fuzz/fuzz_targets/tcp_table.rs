//! `/proc/net/tcp` and `/proc/net/tcp6` parser.
//!
//! Input: the table's text. The parser must never panic, and whatever it
//! accepts must be consistent: one address family per entry, and a table
//! that parses keeps parsing the same when a blank line is appended.
#![no_main]

use k8s_nlb_registrator_sidecar::tcp_table::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(entries) => {
            for e in &entries {
                assert_eq!(e.local.is_ipv4(), e.remote.is_ipv4());
            }
            let mut more = data.to_vec();
            more.extend_from_slice(b"\n\n");
            assert_eq!(parse(&more).ok(), Some(entries));
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("TCP table"));
            assert!(!msg.contains('\n'), "one-line error: {msg:?}");
        }
    }
});
