//! ELBv2 Query API response parsers and the AWS error parser.
//!
//! Input: first byte = selector (low 2 bits: which parser; next 4 bits:
//! which HTTP status from `STATUSES`), the rest = response body.
#![no_main]

use k8s_nlb_registrator_sidecar::aws::elbv2::{
    self, DescribeTargetGroupAttributes, DescribeTargetGroups, DescribeTargetHealth,
    RegisterTargets,
};
use k8s_nlb_registrator_sidecar::aws::error::{snippet, Error};
use k8s_nlb_registrator_sidecar::aws::query::parse_error;
use k8s_nlb_registrator_sidecar::aws::{Action, WithId};
use libfuzzer_sys::fuzz_target;

const STATUSES: [u16; 16] = [
    200, 200, 200, 200, 204, 299, 400, 400, 403, 404, 409, 429, 500, 503, 199, 302,
];

fn ok_status(s: u16) -> bool {
    (200..300).contains(&s)
}

/// An error value from a response parser is one of the two response kinds,
/// names the right action, and formats without panicking.
fn check_err(e: &Error, action: &str, status: u16) {
    let _ = e.to_string();
    let _ = format!("{e:?}");
    match e {
        Error::Aws { action: a, error } => {
            assert_eq!(a, action);
            assert_eq!(error.status, status);
            assert!(!error.code.is_empty());
        }
        Error::Response { action: a, .. } => {
            assert_eq!(a, action);
            assert!(ok_status(status), "non-2xx must give an AWS error");
        }
        other => panic!("unexpected error kind from a response parser: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    let status = STATUSES[usize::from((sel >> 2) & 15)];
    match sel & 3 {
        0 => match DescribeTargetGroups::parse_response(status, body) {
            Ok(WithId { value: groups, .. }) => {
                assert!(ok_status(status));
                for g in &groups {
                    assert!(!g.arn.is_empty() && g.arn == g.arn.trim());
                    assert!(g.load_balancer_arns.iter().all(|a| !a.is_empty()));
                }
            }
            Err(e) => check_err(&e, "DescribeTargetGroups", status),
        },
        1 => match DescribeTargetHealth::parse_response(status, body) {
            Ok(WithId { value: entries, .. }) => {
                assert!(ok_status(status));
                for h in &entries {
                    assert!(!h.target.id.is_empty());
                    let _ = h.is_gone();
                    let _ = h.to_string();
                    assert!(elbv2::find_health(&entries, &h.target).is_some());
                }
            }
            Err(e) => check_err(&e, "DescribeTargetHealth", status),
        },
        2 => {
            match RegisterTargets::parse_response(status, body) {
                Ok(WithId { request_id: id, .. }) => {
                    assert!(ok_status(status));
                    if let Some(id) = id {
                        assert!(!id.is_empty());
                    }
                }
                Err(e) => check_err(&e, "RegisterTargets", status),
            }
            // The same body to DescribeTargetGroupAttributes (-check).
            match DescribeTargetGroupAttributes::parse_response(status, body) {
                Ok(WithId { value: attrs, .. }) => {
                    assert!(ok_status(status));
                    assert!(attrs.iter().all(|(k, _)| !k.is_empty()));
                }
                Err(e) => check_err(&e, "DescribeTargetGroupAttributes", status),
            }
        }
        _ => {
            let e = parse_error(status, body);
            assert_eq!(e.status, status);
            assert!(!e.code.is_empty());
            let _ = e.to_string();
            let s = snippet(body);
            assert!(s.chars().count() <= 120, "snippet too long");
            assert!(!s.chars().any(char::is_control), "snippet has control characters");
        }
    }
});
