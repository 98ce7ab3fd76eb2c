//! The AWS Query protocol: a POST of form parameters (`Action`, `Version`,
//! then the action's own), an `<ActionResponse>` or `<ErrorResponse>` back.

use super::error::{snippet, AwsError, Error};
use super::retry::Bucket;
use crate::aws::xml::{self, Element};
use std::time::Duration;

/// Overall timeout of one ELBv2 or STS request.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A value parsed from a successful answer, with the answer's request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithId<T> {
    /// The parsed value.
    pub value: T,
    /// `ResponseMetadata/RequestId`.
    pub request_id: Option<String>,
}

/// Form parameters of one Query API request, in order.
pub type Params = Vec<(String, String)>;

/// `(key, value)` pairs as [`Params`].
pub fn params(pairs: &[(&str, &str)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// One Query API action: name, parameters and response parser; no IO (the
/// client signs, sends and retries any of them).
pub trait Action {
    /// The service's signing name: `elasticloadbalancing` or `sts`.
    const SERVICE: &'static str = "elasticloadbalancing";
    /// The `Action` parameter, and the prefix of `<NameResponse>` and `<NameResult>`.
    const NAME: &'static str;
    /// The ELBv2 token bucket the action draws from.
    const BUCKET: Bucket = Bucket::Other;
    /// What a successful answer holds.
    type Output;

    /// The action's own parameters (without `Action` and `Version`).
    fn params(&self) -> Params;

    /// Reads the output from the answer's `<NameResult>` element.
    ///
    /// # Errors
    /// A one-line description of what is missing or malformed.
    fn parse(result: &Element) -> Result<Self::Output, String>;

    /// All form parameters: `Action`, `Version`, then [`Action::params`].
    fn form(&self) -> Params {
        form(Self::NAME, Self::SERVICE, self.params())
    }

    /// Parses a whole HTTP answer to this action.
    ///
    /// # Errors
    /// [`Error::Aws`] for an AWS error; [`Error::Response`] for a body that
    /// is not this action's response.
    fn parse_response(status: u16, body: &[u8]) -> Result<WithId<Self::Output>, Error> {
        Self::read(|parse| read_answer(Self::NAME, status, body, parse))
    }

    /// Runs `answer` (which returns the request id) with a [`Parser`] of
    /// this action's result, and gives the value it kept.
    ///
    /// # Errors
    /// `answer`'s error, or [`Error::Response`] when nothing was parsed.
    fn read(
        answer: impl FnOnce(Parser) -> Result<Option<String>, Error>,
    ) -> Result<WithId<Self::Output>, Error> {
        let mut value = None;
        let request_id = answer(&mut |r| {
            value = Some(Self::parse(r)?);
            Ok(())
        })?;
        let value = value.ok_or_else(|| Error::Response {
            action: Self::NAME.to_owned(),
            detail: "no result".to_owned(),
        })?;
        Ok(WithId { value, request_id })
    }
}

/// Reads an answer's `<ActionResult>`, keeping what it parsed.
pub type Parser<'a> = &'a mut dyn FnMut(&Element) -> Result<(), String>;

/// `Action`, `Version`, then `own` (not generic: one copy for every action).
fn form(name: &str, service: &str, own: Params) -> Params {
    let version = ["2015-12-01", "2011-06-15"][usize::from(service == "sts")];
    let mut p = params(&[("Action", name), ("Version", version)]);
    p.extend(own);
    p
}

/// Encodes parameters as a form body, with AWS's percent-encoding (only
/// `A-Z a-z 0-9 - _ . ~` stay literal).
pub fn encode_form(params: &[(String, String)]) -> String {
    let enc = |s: &str| -> String {
        let literal = |b: u8| b.is_ascii_alphanumeric() || b"-_.~".contains(&b);
        s.bytes()
            .map(|b| match literal(b) {
                true => char::from(b).to_string(),
                false => format!("%{b:02X}"),
            })
            .collect()
    };
    let pairs: Vec<_> = params.iter().map(|(k, v)| enc(k) + "=" + &enc(v)).collect();
    pairs.join("&")
}

/// Parses an answer's `<ActionResult>` element (empty when absent) with
/// `parse`, and returns its request id. An `<ErrorResponse>` is an AWS
/// error even with a 2xx status (some proxies and fakes answer errors so).
/// Not generic: one copy serves every action.
pub(crate) fn read_answer(
    action: &str,
    status: u16,
    body: &[u8],
    parse: Parser,
) -> Result<Option<String>, Error> {
    let aws = || Error::Aws {
        action: action.to_owned(),
        error: parse_error(status, body),
    };
    if !(200..300).contains(&status) {
        return Err(aws());
    }
    let bad = |detail: String| Error::Response {
        action: action.to_owned(),
        detail,
    };
    let root = xml::parse(body).map_err(|e| {
        let body = match may_hold_credentials(action, body) {
            true => " (body not shown: it may hold credentials)".to_owned(),
            false => format!("; body starts: {}", snippet(body)),
        };
        bad(format!("malformed XML: {e}{body}"))
    })?;
    if root.name == "ErrorResponse" {
        return Err(aws());
    }
    if root.name != format!("{action}Response") {
        return Err(bad(format!(
            "expected <{action}Response>, got <{}>",
            root.name
        )));
    }
    let result = root.child(&format!("{action}Result"));
    parse(result.unwrap_or(&Element::default())).map_err(bad)?;
    Ok(root.text_at(&["ResponseMetadata", "RequestId"]))
}

/// Whether no part of a body may be shown: STS's AssumeRole* answers, or
/// any body naming a credentials element (a snippet could cut a token).
fn may_hold_credentials(action: &str, body: &[u8]) -> bool {
    const MARKERS: [&[u8]; 3] = [b"Credentials", b"SessionToken", b"SecretAccessKey"];
    action.contains("AssumeRole")
        || MARKERS
            .iter()
            .any(|m| body.windows(m.len()).any(|w| w.eq_ignore_ascii_case(m)))
}

/// Parses an AWS error body: `ErrorResponse/Error` (ELBv2, STS) or
/// `.../Errors/Error` (moto's auth errors). Anything else (a proxy's HTML
/// page, nothing) gives code `HttpStatus<N>` and the body's start as message.
pub fn parse_error(status: u16, body: &[u8]) -> AwsError {
    let parsed = xml::parse(body).ok().and_then(|root| {
        let err = root
            .child("Error")
            .or_else(|| root.path(&["Errors", "Error"]))?;
        let request_id = root
            .text_at(&["RequestId"])
            .or_else(|| root.text_at(&["RequestID"]))
            .or_else(|| err.text_at(&["RequestId"]));
        Some(AwsError {
            status,
            code: err.text_at(&["Code"])?,
            message: err.text_at(&["Message"]).unwrap_or_default(),
            request_id,
        })
    });
    parsed.unwrap_or_else(|| AwsError {
        status,
        code: format!("HttpStatus{status}"),
        message: snippet(body),
        request_id: None,
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

    fn read(action: &str, status: u16, body: &[u8]) -> Error {
        match read_answer(action, status, body, &mut |_| Ok(())) {
            Err(e) => e,
            Ok(id) => panic!("{id:?}"),
        }
    }

    #[test]
    fn reads_success_envelope() {
        let body = include_bytes!("../../tests/data/register_targets.xml");
        let request_id = read_answer("RegisterTargets", 200, body, &mut |_| Ok(())).unwrap();
        assert_eq!(
            request_id.as_deref(),
            Some("f9a1e3a7-f3a9-11e5-ae48-cff02092876b")
        );
    }

    #[test]
    fn error_status_becomes_aws_error() {
        let e = read(
            "RegisterTargets",
            400,
            include_bytes!("../../tests/data/throttling.xml"),
        );
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
            match read("RegisterTargets", 200, body) {
                Error::Response { .. } => {}
                other => panic!("{other:?}"),
            }
        }
        let e = read(
            "RegisterTargets",
            200,
            include_bytes!("../../tests/data/throttling.xml"),
        );
        assert_eq!(e.aws_code(), Some("Throttling"));
        let e = read("RegisterTargets", 200, b"<a><b></a>");
        assert!(e.to_string().contains("body starts: <a><b></a>"), "{e}");
    }

    #[test]
    fn a_garbled_answer_with_credentials_is_not_shown() {
        let cut = b"<AssumeRoleResponse><AssumeRoleResult><Credentials>\
            <SessionToken>FQoGZXIvYXdzEXAMPLETOKEN";
        for action in ["AssumeRole", "AssumeRoleWithWebIdentity", "RegisterTargets"] {
            let e = read(action, 200, cut).to_string();
            assert!(!e.contains("EXAMPLETOKEN"), "{e}");
            assert!(e.contains("body not shown"), "{e}");
        }
        let e = read("AssumeRole", 200, b"<x>secret").to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn parses_elbv2_error_response() {
        let body =
            br#"<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">
  <Error>
    <Type>Sender</Type>
    <Code>TargetGroupNotFound</Code>
    <Message>One or more target groups not found</Message>
  </Error>
  <RequestId>7c7a3b1e-8b9b-4a37-9a3c-1d2f3e4a5b6c</RequestId>
</ErrorResponse>"#;
        let e = parse_error(400, body);
        assert_eq!(
            e.to_string(),
            "TargetGroupNotFound (HTTP 400): One or more target groups not found [request id 7c7a3b1e-8b9b-4a37-9a3c-1d2f3e4a5b6c]"
        );
        let moto = br#"<?xml version="1.0" encoding="UTF-8"?>
<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message></Error></Errors><RequestID>abc</RequestID></ErrorResponse>"#;
        let e = parse_error(403, moto);
        assert_eq!(e.code, "SignatureDoesNotMatch");
        assert_eq!(e.request_id.as_deref(), Some("abc"));
    }

    #[test]
    fn garbage_error_bodies_still_give_an_error() {
        let e = parse_error(502, b"<html><body>Bad Gateway</body></html>");
        assert_eq!(e.code, "HttpStatus502");
        assert!(e.message.contains("Bad Gateway"));
        assert_eq!(parse_error(500, b"").message, "empty body");
        assert_eq!(parse_error(500, b"\x00\x01\xff").code, "HttpStatus500");
    }
}
