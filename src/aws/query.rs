//! The AWS Query protocol: form-encoded requests, XML envelopes back.
//!
//! A Query API request is a POST of `application/x-www-form-urlencoded`
//! parameters (`Action`, `Version`, then the action's own, lists flattened
//! as `Name.member.N`). A success answer is `<ActionResponse>` holding
//! `<ActionResult>` and `<ResponseMetadata><RequestId>`; a failure is an
//! `<ErrorResponse>` with a 4xx/5xx status. Both directions are plain
//! functions here, so the signing and sending code never sees a parameter.
//!
//! Each action the program calls is one type implementing [`Action`] (its
//! name, parameters and response parser, in one file under
//! [`super::elbv2`] or in [`super::sts`]), as rusty-s3 does for S3.

use super::error::{parse_error, snippet, Error};
use super::http::HttpRequest;
use super::retry::Bucket;
use crate::aws::xml::{self, Element};
use std::time::Duration;

/// Overall timeout of one ELBv2 or STS request.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Content type of a Query API request body.
const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// The AWS services this program calls, with what their requests share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Elastic Load Balancing v2 (signed).
    Elbv2,
    /// Security Token Service (AssumeRoleWithWebIdentity is unsigned).
    Sts,
}

impl Service {
    /// The `Version` parameter of the service's Query API.
    pub fn version(self) -> &'static str {
        match self {
            Service::Elbv2 => "2015-12-01",
            Service::Sts => "2011-06-15",
        }
    }

    /// The SigV4 signing name of the service.
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::Elbv2 => "elasticloadbalancing",
            Service::Sts => "sts",
        }
    }
}

/// A value parsed from a successful answer, with the answer's request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithId<T> {
    /// The parsed value.
    pub value: T,
    /// `ResponseMetadata/RequestId`.
    pub request_id: Option<String>,
}

/// One Query API action: its name, its parameters and its response parser.
///
/// Implementors build requests and parse answers without IO; the client
/// signs, sends and retries any of them.
pub trait Action {
    /// The service the action belongs to.
    const SERVICE: Service;
    /// The action's name, e.g. `RegisterTargets`: the `Action` parameter and
    /// the prefix of the answer's `<NameResponse>` and `<NameResult>`.
    const NAME: &'static str;
    /// The ELBv2 token bucket the action draws from; [`Bucket::Other`]
    /// (no shared bucket) unless the action says otherwise.
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

    /// All form parameters of the request: `Action`, `Version`, then [`Action::params`].
    fn form(&self) -> Params {
        let mut p = vec![
            ("Action".to_owned(), Self::NAME.to_owned()),
            ("Version".to_owned(), Self::SERVICE.version().to_owned()),
        ];
        p.extend(self.params());
        p
    }

    /// Parses a whole HTTP answer (status and body) to this action.
    ///
    /// # Errors
    /// [`Error::Aws`] for a non-2xx status or an `<ErrorResponse>`;
    /// [`Error::Response`] naming the action for a body that is not its
    /// response or that [`Action::parse`] refuses.
    fn parse_response(status: u16, body: &[u8]) -> Result<WithId<Self::Output>, Error> {
        let Answer { result, request_id } = read_answer(Self::NAME, status, body)?;
        let value = Self::parse(&result).map_err(|detail| Error::Response {
            action: Self::NAME.to_owned(),
            status,
            detail,
        })?;
        Ok(WithId { value, request_id })
    }
}

/// The unsigned POST of the parameters `form` (see [`Action::form`]) to
/// the service endpoint `endpoint` (a base URL without the trailing `/`),
/// with overall timeout `timeout`.
pub fn request(endpoint: &str, form: &[(String, String)], timeout: Duration) -> HttpRequest {
    HttpRequest {
        method: "POST",
        url: format!("{endpoint}/"),
        headers: vec![("content-type".to_owned(), FORM.to_owned())],
        body: encode_form(form).into_bytes(),
        timeout,
    }
}

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
    let root = xml::parse(body).map_err(|e| {
        if may_hold_credentials(action, body) {
            bad(format!("{e} (body not shown: it may hold credentials)"))
        } else {
            bad(format!("{e}; body starts: {}", snippet(body)))
        }
    })?;
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

/// Whether a success answer may carry credentials, so that no part of it
/// may be shown: STS's AssumeRole* answers, or any body that names a
/// credentials element (`<Credentials>` may come first, and a cut-off
/// snippet would hold part of a session token).
fn may_hold_credentials(action: &str, body: &[u8]) -> bool {
    const MARKERS: [&[u8]; 3] = [b"Credentials", b"SessionToken", b"SecretAccessKey"];
    action.contains("AssumeRole")
        || MARKERS
            .iter()
            .any(|m| body.windows(m.len()).any(|w| w.eq_ignore_ascii_case(m)))
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
        let e = read_answer("RegisterTargets", 200, b"<a><b></a>").unwrap_err();
        assert!(e.to_string().contains("body starts: <a><b></a>"), "{e}");
    }

    #[test]
    fn a_garbled_answer_with_credentials_is_not_shown() {
        let cut = b"<AssumeRoleResponse><AssumeRoleResult><Credentials>\
            <SessionToken>FQoGZXIvYXdzEXAMPLETOKEN";
        for action in ["AssumeRole", "AssumeRoleWithWebIdentity", "RegisterTargets"] {
            let e = read_answer(action, 200, cut).unwrap_err().to_string();
            assert!(!e.contains("EXAMPLETOKEN"), "{e}");
            assert!(e.contains("body not shown"), "{e}");
        }
        let e = read_answer("AssumeRole", 200, b"<x>secret")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret"), "{e}");
    }
}
