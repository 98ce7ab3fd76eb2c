//! Errors of the AWS layer: what the service said, what the network did,
//! and what we could not understand.
//!
//! Every variant carries enough context for a one-line message that names
//! the action or endpoint involved. None ever holds a secret: credentials
//! errors name variables and files, never their contents.

use crate::aws::query::Action;
use crate::aws::sts::AssumeRoleWithWebIdentity;
use crate::aws::xml;
use std::fmt;

/// An error answered by an AWS service (`<ErrorResponse>`), with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    /// HTTP status of the response.
    pub status: u16,
    /// AWS error code, such as `Throttling` or `TargetGroupNotFound`.
    pub code: String,
    /// Human-readable message from AWS (may be empty).
    pub message: String,
    /// The request id AWS assigned, for support cases.
    pub request_id: Option<String>,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {})", self.code, self.status)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [request id {id}]")?;
        }
        Ok(())
    }
}

/// How a request failed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// No connection could be made (refused, unreachable, DNS).
    Connect,
    /// The connect or overall timeout passed.
    Timeout,
    /// The connection broke mid-request (reset, EOF, truncated body).
    Io,
    /// TLS handshake or certificate verification failed.
    Tls,
    /// The request could not be built (bad URL, proxy settings).
    Request,
}

/// Every failure of the AWS layer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The service answered with an AWS error.
    Aws {
        /// The API action, e.g. `RegisterTargets`.
        action: String,
        /// What AWS said.
        error: AwsError,
    },
    /// The request did not get an HTTP response.
    Transport {
        /// The API action or credential source.
        action: String,
        /// The URL that was called.
        url: String,
        /// What kind of failure.
        kind: TransportKind,
        /// Detail from the HTTP client.
        detail: String,
    },
    /// A response arrived but could not be understood.
    Response {
        /// The API action or credential source.
        action: String,
        /// HTTP status of the response.
        status: u16,
        /// What was wrong with it.
        detail: String,
    },
    /// Credentials could not be resolved or fetched.
    Credentials(String),
    /// Region, endpoint or transport configuration is wrong.
    Config(String),
    /// A signal (or drain request) cut a wait short.
    Interrupted,
    /// The deadline passed before the call succeeded; holds the last failure.
    Deadline {
        /// The API action.
        action: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure seen (None if no attempt could be made).
        last: Option<Box<Error>>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Aws { action, error } => write!(f, "{action} failed: {error}"),
            Error::Transport {
                action,
                url,
                kind,
                detail,
            } => {
                let what = match kind {
                    TransportKind::Connect => "cannot connect to",
                    TransportKind::Timeout => "timed out calling",
                    TransportKind::Io => "connection broken calling",
                    TransportKind::Tls => "TLS failure calling",
                    TransportKind::Request => "cannot build request to",
                };
                write!(
                    f,
                    "{action}: {what} {}: {}",
                    redact_url(url),
                    redact_url(detail)
                )
            }
            Error::Response {
                action,
                status,
                detail,
            } => write!(f, "{action}: unexpected response (HTTP {status}): {detail}"),
            Error::Credentials(m) => write!(f, "credentials: {m}"),
            Error::Config(m) => write!(f, "configuration: {m}"),
            Error::Interrupted => write!(f, "interrupted by a signal"),
            Error::Deadline {
                action,
                attempts,
                last,
            } => {
                write!(
                    f,
                    "{action}: gave up after {attempts} attempt(s) at the deadline"
                )?;
                if let Some(last) = last {
                    write!(f, "; last error: {last}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The same error with `f` applied to the action it names, for
    /// [`Error::Aws`], [`Error::Transport`] and [`Error::Response`]; any
    /// other error unchanged. Its kind stays, and so does how it is
    /// classified for retries.
    #[must_use]
    pub fn map_action(self, f: impl FnOnce(String) -> String) -> Error {
        match self {
            Error::Aws { action, error } => Error::Aws {
                action: f(action),
                error,
            },
            Error::Transport {
                action,
                url,
                kind,
                detail,
            } => Error::Transport {
                action: f(action),
                url,
                kind,
                detail,
            },
            Error::Response {
                action,
                status,
                detail,
            } => Error::Response {
                action: f(action),
                status,
                detail,
            },
            other => other,
        }
    }

    /// The same error with `f` applied to the detail of an
    /// [`Error::Transport`]; any other error unchanged.
    #[must_use]
    pub fn map_transport_detail(self, f: impl FnOnce(String) -> String) -> Error {
        match self {
            Error::Transport {
                action,
                url,
                kind,
                detail,
            } => Error::Transport {
                action,
                url,
                kind,
                detail: f(detail),
            },
            other => other,
        }
    }

    /// The AWS error code, when the service answered with one.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Error::Aws { error, .. } => Some(&error.code),
            Error::Deadline { last: Some(l), .. } => l.aws_code(),
            _ => None,
        }
    }

    /// Whether AWS answered that the target is not in the target group:
    /// `InvalidTarget` (the target "does not exist", i.e. is not
    /// registered) or `TargetGroupNotFound` (the group itself is gone).
    /// Either way the group sends it no traffic, so for taking a target
    /// out this is as good as success.
    ///
    /// AWS's own DeregisterTargets answers success for a target that is
    /// not registered; moto and older endpoints answer `InvalidTarget`.
    /// DescribeTargetHealth answers either code for a target or group that
    /// is gone. Only AWS's own answer counts: an [`Error::Deadline`] holds
    /// a retryable failure, never one of these.
    ///
    /// ```
    /// use k8s_nlb_registrator_sidecar::aws::{AwsError, Error};
    /// let aws = |code: &str| Error::Aws {
    ///     action: "DeregisterTargets".into(),
    ///     error: AwsError { status: 400, code: code.into(), message: String::new(), request_id: None },
    /// };
    /// assert!(aws("InvalidTarget").is_target_absent());
    /// assert!(aws("TargetGroupNotFound").is_target_absent());
    /// assert!(!aws("AccessDenied").is_target_absent());
    /// assert!(!Error::Interrupted.is_target_absent());
    /// ```
    pub fn is_target_absent(&self) -> bool {
        self.is_invalid_target() || self.is_group_not_found()
    }

    /// Whether AWS answered this call with a final refusal: an AWS error
    /// that is not worth retrying (AccessDenied, ValidationError, ...).
    /// Not an [`Error::Deadline`]: [`Error::aws_code`] looks through it at
    /// its last failure, but that failure was retryable (throttling, 5xx)
    /// and only the time ran out.
    ///
    /// ```
    /// use k8s_nlb_registrator_sidecar::aws::{AwsError, Error};
    /// let aws = |code: &str| Error::Aws {
    ///     action: "DescribeTargetHealth".into(),
    ///     error: AwsError { status: 400, code: code.into(), message: String::new(), request_id: None },
    /// };
    /// assert!(aws("AccessDenied").is_refusal());
    /// assert!(!aws("Throttling").is_refusal());
    /// let late = Error::Deadline { action: "x".into(), attempts: 1, last: Some(Box::new(aws("Throttling"))) };
    /// assert!(!late.is_refusal());
    /// ```
    pub fn is_refusal(&self) -> bool {
        matches!(self, Error::Aws { .. }) && !is_retryable(self)
    }

    /// The code of AWS's own answer: an [`Error::Aws`] only, never the
    /// last failure inside an [`Error::Deadline`] (that one was retryable).
    fn own_code(&self) -> Option<&str> {
        match self {
            Error::Aws { error, .. } => Some(error.code.as_str()),
            _ => None,
        }
    }

    /// AWS said the target is not registered in the group: `InvalidTarget`
    /// (moto's and older endpoints' answer to DeregisterTargets of an
    /// absent target; DescribeTargetHealth's for a target it does not know).
    pub fn is_invalid_target(&self) -> bool {
        self.own_code() == Some("InvalidTarget")
    }

    /// AWS said there is no such target group: `TargetGroupNotFound`.
    pub fn is_group_not_found(&self) -> bool {
        self.own_code() == Some("TargetGroupNotFound")
    }

    /// AWS refused the request's content: `ValidationError` (for
    /// RegisterTargets, e.g. an address of the wrong family for the group).
    pub fn is_validation(&self) -> bool {
        self.own_code() == Some("ValidationError")
    }

    /// The identity may not make this call: `AccessDenied` and the other
    /// spellings AWS services use.
    ///
    /// ```
    /// use k8s_nlb_registrator_sidecar::aws::{AwsError, Error};
    /// let aws = |code: &str| Error::Aws {
    ///     action: "DeregisterTargets".into(),
    ///     error: AwsError { status: 403, code: code.into(), message: String::new(), request_id: None },
    /// };
    /// assert!(aws("AccessDenied").is_access_denied());
    /// assert!(aws("UnauthorizedOperation").is_access_denied());
    /// assert!(!aws("InvalidTarget").is_access_denied());
    /// assert!(aws("InvalidTarget").is_invalid_target());
    /// assert!(aws("ValidationError").is_validation());
    /// assert!(aws("TargetGroupNotFound").is_group_not_found());
    /// ```
    pub fn is_access_denied(&self) -> bool {
        matches!(
            self.own_code(),
            Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation")
        )
    }
}

/// Error codes that mean "slow down": retried with backoff.
pub const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes that mean "a passing fault on AWS's side": retried.
///
/// `IDPCommunicationError` is STS failing to reach the identity provider
/// that issued a web identity token; every SDK retries it: smithy-rs marks
/// the shape `@retryable` (`aws/sdk-codegen/.../customize/sts/STSDecorator.kt`),
/// aws-sdk-go adds it to every STS request's `RetryErrorCodes`
/// (`service/sts/customizations.go`), botocore's standard retry mode has
/// `retries/special.py::RetryIDPCommunicationError`, aws-sdk-cpp lists it
/// in the web identity provider's `SpecifiedRetryableErrorsRetryStrategy`.
pub const TRANSIENT_CODES: &[&str] = &[
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "IDPCommunicationError",
];

/// Error codes of STS `AssumeRoleWithWebIdentity` that are retried like a
/// transient fault, though AWS answers them as the caller's (HTTP 400).
///
/// `InvalidIdentityToken` also comes while the identity provider's signing
/// keys are being rotated and STS has not fetched the new ones yet, so the
/// SDKs retry it for this action only: aws-sdk-go-v2
/// `credentials/stscreds/web_identity_provider.go` wraps the retryer with
/// `retry.AddWithErrorCodes(options.Retryer, "InvalidIdentityToken")`,
/// aws-sdk-go v1 appends `sts.ErrCodeInvalidIdentityTokenException` to the
/// request's `RetryErrorCodes` ("InvalidIdentityToken error is a temporary
/// error that can occur when assuming an Role with a JWT web identity
/// token"), aws-sdk-java-v2's `StsWebIdentityCredentialsProviderFactory`
/// has an `StsRetryCondition` for it (aws/aws-sdk-java-v2#1320, after the
/// SDKs' shared design for web identity), aws-sdk-ruby (#2099), aws-sdk-php
/// (#1858) and aws-sdk-cpp's `STSAssumeRoleWebIdentityCredentialsProvider`
/// retry it too; smithy-rs and botocore do not (aws-sdk-rust#827 shows one
/// failing on "Couldn't retrieve verification key from your identity
/// provider"). Those SDKs stop at their attempt limit (3 by default); here
/// the step's deadline bounds it, as it does every other retry.
pub const WEB_IDENTITY_RETRY_CODES: &[&str] = &["InvalidIdentityToken"];

/// Whether an error is worth another attempt (throttling, 5xx, network).
///
/// HTTP 429 is throttling whatever the body. The AWS Query APIs answer
/// throttling as 400 `Throttling`, but the credential endpoints have no
/// error codes: IMDS throttles per instance (the EC2 user guide says to
/// retry "with an exponential backoff strategy"), and the EKS Pod Identity
/// agent fronts the EKS Auth API, which throttles too. The SDKs read a
/// bare 429 as throttling (aws-sdk-java-v2
/// `SdkServiceException::isThrottlingException` is `statusCode == 429`;
/// botocore's `too_many_requests` retry policy; botocore's container
/// fetcher retries every non-200 answer, its IMDS fetcher every non-200
/// answer up to `AWS_METADATA_SERVICE_NUM_ATTEMPTS`), though not all of
/// them: smithy-rs retries only 5xx (and 401) from IMDS and the container
/// endpoint. The IMDS token PUT included: on a 429 there, botocore (after
/// its attempts) and aws-sdk-go-v2 fall back to IMDSv1, which this program
/// does not do.
///
/// Client errors (AccessDenied, ValidationError, TargetGroupNotFound,
/// InvalidTarget, SignatureDoesNotMatch, ...) are final: retrying them only
/// burns the account's shared API rate limit.
pub fn is_retryable(err: &Error) -> bool {
    match err {
        Error::Aws { action, error } => {
            let code = error.code.as_str();
            THROTTLING_CODES.contains(&code)
                || TRANSIENT_CODES.contains(&code)
                || (unlayered(action) == AssumeRoleWithWebIdentity::NAME
                    && WEB_IDENTITY_RETRY_CODES.contains(&code))
                || matches!(error.status, 429 | 500 | 502 | 503 | 504)
        }
        Error::Transport { kind, .. } => {
            !matches!(kind, TransportKind::Request | TransportKind::Tls)
        }
        // A garbled body is what a proxy or a broken connection produces.
        Error::Response { .. } => true,
        Error::Credentials(_) | Error::Config(_) | Error::Interrupted | Error::Deadline { .. } => {
            false
        }
    }
}

/// Whether AWS answered with a throttling code (`Throttling`, ...): its
/// token bucket for this account is empty.
pub fn is_throttling(err: &Error) -> bool {
    matches!(err, Error::Aws { error, .. } if THROTTLING_CODES.contains(&error.code.as_str()))
}

/// The API action an error names, without the prefix of the credentials
/// layer it came from (`base credentials from web identity (IRSA): ` under
/// `-role-arn`, see [`crate::aws::credentials::assume_role::in_layer`]).
fn unlayered(action: &str) -> &str {
    action.rsplit(": ").next().unwrap_or(action)
}

/// Whether the error says the credentials used have expired (refresh, then retry).
///
/// Not `RequestExpired`: that is the request's timestamp, more than 15
/// minutes from AWS's clock (ELBv2 API reference, Common Errors), a clock
/// skew answer ([`crate::aws::skew`]), which fresh credentials do not fix.
pub fn is_expired_credentials(err: &Error) -> bool {
    matches!(
        err.aws_code(),
        Some("ExpiredToken" | "ExpiredTokenException")
    )
}

/// Parses an AWS Query API error body into an [`AwsError`].
///
/// Understands `ErrorResponse/Error` (ELBv2, STS), `ErrorResponse/Errors/Error`
/// (what moto answers for auth errors) and `Response/Errors/Error` (EC2 style).
/// A body that is not such XML (a proxy's HTML page, nothing at all) still
/// gives an error: code `HttpStatus<N>` and the start of the body as message.
pub fn parse_error(status: u16, body: &[u8]) -> AwsError {
    let parsed = xml::parse(body).ok().and_then(|root| {
        let err = root
            .child("Error")
            .or_else(|| root.path(&["Errors", "Error"]))?;
        let code = err.text_at(&["Code"])?;
        let request_id = root
            .text_at(&["RequestId"])
            .or_else(|| root.text_at(&["RequestID"]))
            .or_else(|| err.text_at(&["RequestId"]));
        Some(AwsError {
            status,
            code,
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

/// `text` with the user info of every URL in it hidden
/// (`https://user:pass@host/` becomes `https://***@host/`): the form for
/// any URL shown in a message or a `Debug` output, since an endpoint or
/// credentials URL from the environment may carry a password.
///
/// ```
/// use k8s_nlb_registrator_sidecar::aws::error::redact_url;
/// assert_eq!(redact_url("https://u:p@h:1/x@y"), "https://***@h:1/x@y");
/// assert_eq!(redact_url("http://h/"), "http://h/");
/// assert_eq!(redact_url("GET \"http://a:b@h\" failed"), "GET \"http://***@h\" failed");
/// ```
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let (authority, after) = tail.split_at(end);
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The first 120 printable characters of a body, for error messages.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(120)
        .collect();
    let trimmed = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if trimmed.is_empty() {
        "empty body".to_owned()
    } else {
        trimmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(e.code, "TargetGroupNotFound");
        assert_eq!(e.message, "One or more target groups not found");
        assert_eq!(
            e.request_id.as_deref(),
            Some("7c7a3b1e-8b9b-4a37-9a3c-1d2f3e4a5b6c")
        );
        assert_eq!(
            e.to_string(),
            "TargetGroupNotFound (HTTP 400): One or more target groups not found [request id 7c7a3b1e-8b9b-4a37-9a3c-1d2f3e4a5b6c]"
        );
    }

    #[test]
    fn parses_moto_auth_error_shape() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message></Error></Errors><RequestID>abc</RequestID></ErrorResponse>"#;
        let e = parse_error(403, body);
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

    #[test]
    fn transport_errors_hide_the_password_of_a_url() {
        let e = Error::Transport {
            action: "container credentials".into(),
            url: "https://user:hunter2@creds.example.com:8443/v1?x=1".into(),
            kind: TransportKind::Timeout,
            detail: "timed out calling https://user:hunter2@creds.example.com:8443/v1".into(),
        };
        let text = e.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("user"), "{text}");
        assert!(
            text.contains("https://***@creds.example.com:8443/v1?x=1"),
            "{text}"
        );
        assert_eq!(redact_url("no url here"), "no url here");
        assert_eq!(redact_url("http://@h"), "http://***@h");
        assert_eq!(redact_url("a://b@c d://e@f"), "a://***@c d://***@f");
        assert_eq!(redact_url("x://"), "x://");
    }

    #[test]
    fn classifies_retryable_errors() {
        let aws = |status, code: &str| Error::Aws {
            action: "RegisterTargets".into(),
            error: AwsError {
                status,
                code: code.into(),
                message: String::new(),
                request_id: None,
            },
        };
        assert!(is_retryable(&aws(400, "Throttling")));
        assert!(is_retryable(&aws(400, "RequestLimitExceeded")));
        assert!(is_retryable(&aws(503, "ServiceUnavailable")));
        assert!(is_retryable(&aws(500, "HttpStatus500")));
        assert!(is_retryable(&aws(429, "HttpStatus429")));
        assert!(!is_retryable(&aws(404, "HttpStatus404")));
        for code in [
            "AccessDenied",
            "ValidationError",
            "TargetGroupNotFound",
            "InvalidTarget",
            "SignatureDoesNotMatch",
        ] {
            assert!(!is_retryable(&aws(400, code)), "{code}");
        }
        let sts = |code: &str| Error::Aws {
            action: "AssumeRoleWithWebIdentity".into(),
            error: AwsError {
                status: 400,
                code: code.into(),
                message: String::new(),
                request_id: None,
            },
        };
        assert!(is_retryable(&sts("InvalidIdentityToken")));
        assert!(is_retryable(&sts("IDPCommunicationError")));
        assert!(!is_retryable(&sts("AccessDenied")));
        assert!(!is_retryable(&sts("ExpiredTokenException")));
        assert!(!is_retryable(&aws(400, "InvalidIdentityToken")));
        assert!(is_expired_credentials(&aws(400, "ExpiredToken")));
        let t = |kind| Error::Transport {
            action: "x".into(),
            url: "u".into(),
            kind,
            detail: String::new(),
        };
        assert!(is_retryable(&t(TransportKind::Timeout)));
        assert!(is_retryable(&t(TransportKind::Connect)));
        assert!(is_retryable(&t(TransportKind::Io)));
        assert!(!is_retryable(&t(TransportKind::Tls)));
        assert!(!is_retryable(&Error::Interrupted));
    }
}
