//! The AWS Query protocol: form-encoded requests, XML envelopes back.
//!
//! A Query API request is a POST of `application/x-www-form-urlencoded`
//! parameters (`Action`, `Version`, then the action's own, lists flattened
//! as `Name.member.N`). A success answer is `<ActionResponse>` holding
//! `<ActionResult>` and `<ResponseMetadata><RequestId>`; a failure is an
//! `<ErrorResponse>` with a 4xx/5xx status. Both directions are plain
//! functions here, so the signing and sending code never sees a parameter.

use super::error::{parse_error, snippet, Error};
use crate::aws::xml::{self, Element};

/// Form parameters of one Query API request, in order.
pub type Params = Vec<(String, String)>;

/// Encodes parameters as an `application/x-www-form-urlencoded` body, with
/// AWS's percent-encoding (only `A-Z a-z 0-9 - _ . ~` stay literal).
pub fn encode_form(params: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        percent_encode_into(k, &mut out);
        out.push('=');
        percent_encode_into(v, &mut out);
    }
    out
}

fn percent_encode_into(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// A successful Query API answer: the `<ActionResult>` element and the request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The `<ActionResult>` element (empty when the response has none).
    pub result: Element,
    /// `ResponseMetadata/RequestId`, when present.
    pub request_id: Option<String>,
}

/// Reads a Query API response for `action`.
///
/// # Errors
/// [`Error::Aws`] for a non-2xx status (the `<ErrorResponse>` parsed, or a
/// synthetic `HttpStatusN` code for a body that is not one);
/// [`Error::Response`] for a 2xx body that is not `<ActionResponse>` XML.
pub fn read_answer(action: &str, status: u16, body: &[u8]) -> Result<Answer, Error> {
    if !(200..300).contains(&status) {
        return Err(Error::Aws {
            action: action.to_owned(),
            error: parse_error(status, body),
        });
    }
    let bad = |detail: String| Error::Response {
        action: action.to_owned(),
        status,
        detail,
    };
    let root = xml::parse(body).map_err(|e| bad(format!("{e}; body starts: {}", snippet(body))))?;
    if root.name == "ErrorResponse" {
        // Some proxies and fakes answer errors with 200: still an error.
        return Err(Error::Aws {
            action: action.to_owned(),
            error: parse_error(status, body),
        });
    }
    let expected = format!("{action}Response");
    if root.name != expected {
        return Err(bad(format!("expected <{expected}>, got <{}>", root.name)));
    }
    let result_name = format!("{action}Result");
    let result = root.child(&result_name).cloned().unwrap_or_default();
    Ok(Answer {
        result,
        request_id: root.text_at(&["ResponseMetadata", "RequestId"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_aws() {
        let p = vec![
            ("Action".to_owned(), "RegisterTargets".to_owned()),
            (
                "TargetGroupArn".to_owned(),
                "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/a b/c~".to_owned(),
            ),
            ("X".to_owned(), "ü+&=/".to_owned()),
        ];
        assert_eq!(
            encode_form(&p),
            "Action=RegisterTargets&TargetGroupArn=arn%3Aaws%3Aelasticloadbalancing%3Aus-east-1%3A1%3Atargetgroup%2Fa%20b%2Fc~&X=%C3%BC%2B%26%3D%2F"
        );
    }

    #[test]
    fn reads_success_envelope() {
        let a = read_answer(
            "RegisterTargets",
            200,
            include_bytes!("../../tests/data/register_targets.xml"),
        )
        .unwrap();
        assert_eq!(
            a.request_id.as_deref(),
            Some("f9a1e3a7-f3a9-11e5-ae48-cff02092876b")
        );
    }

    #[test]
    fn error_status_becomes_aws_error() {
        let e = read_answer(
            "RegisterTargets",
            400,
            include_bytes!("../../tests/data/throttling.xml"),
        )
        .unwrap_err();
        assert_eq!(e.aws_code(), Some("Throttling"));
        assert!(e
            .to_string()
            .starts_with("RegisterTargets failed: Throttling (HTTP 400): Rate exceeded"));
    }

    #[test]
    fn wrong_or_garbled_success_bodies_are_response_errors() {
        for body in [
            &b"<DeregisterTargetsResponse/>"[..],
            b"garbage",
            b"",
            b"<a><b></a>",
        ] {
            match read_answer("RegisterTargets", 200, body) {
                Err(Error::Response { .. }) => {}
                other => panic!("{other:?}"),
            }
        }
        let e = read_answer(
            "RegisterTargets",
            200,
            include_bytes!("../../tests/data/throttling.xml"),
        )
        .unwrap_err();
        assert_eq!(e.aws_code(), Some("Throttling"));
    }
}
