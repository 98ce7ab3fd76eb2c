//! Errors of the AWS layer; none holds a secret (credentials errors name
//! variables and files, URLs go through [`redact_url`]).

use std::fmt;

/// An error answered by an AWS service (`<ErrorResponse>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    /// HTTP status.
    pub status: u16,
    /// AWS error code, such as `Throttling`.
    pub code: String,
    /// AWS's message (may be empty).
    pub message: String,
    /// AWS's request id.
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
    /// No connection (refused, unreachable, DNS).
    Connect,
    /// A timeout passed.
    Timeout,
    /// The connection broke mid-request.
    Io,
    /// TLS handshake or certificate failure.
    Tls,
}

/// Which credentials fetch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    /// The credentials source (no `-role-arn`).
    Source,
    /// The named source under `-role-arn`.
    Base(&'static str),
    /// Assuming the role with this ARN.
    Role(String),
}

/// Every failure of the AWS layer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The service answered with an AWS error.
    Aws {
        /// The API action.
        action: String,
        /// What AWS said.
        error: AwsError,
    },
    /// No HTTP response.
    Transport {
        /// The API action or credentials source.
        action: String,
        /// The URL called.
        url: String,
        /// What failed.
        kind: TransportKind,
        /// The HTTP client's detail.
        detail: String,
    },
    /// A success response that could not be understood.
    Response {
        /// The API action or credentials source.
        action: String,
        /// What was wrong.
        detail: String,
    },
    /// Credentials could not be resolved or read.
    Credentials(String),
    /// Bad region, endpoint or transport configuration.
    Config(String),
    /// A signal (or drain request) cut a wait short.
    Interrupted,
    /// The deadline passed before the call succeeded.
    Deadline {
        /// The API action.
        action: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<Error>,
    },
    /// Fetching credentials failed on the way to a call.
    Fetch {
        /// Where.
        layer: Layer,
        /// What failed.
        error: Box<Error>,
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
                };
                let (url, detail) = (redact_url(url), redact_url(detail));
                write!(f, "{action}: {what} {url}: {detail}")
            }
            Error::Response { action, detail } => {
                write!(f, "{action}: unexpected response: {detail}")
            }
            Error::Credentials(m) => write!(f, "credentials: {m}"),
            Error::Config(m) => write!(f, "configuration: {m}"),
            Error::Interrupted => write!(f, "interrupted by a signal"),
            Error::Deadline {
                action,
                attempts,
                last,
            } => write!(
                f,
                "{action}: gave up after {attempts} attempt(s) at the deadline; last error: {last}"
            ),
            Error::Fetch { layer, error, .. } => {
                match layer {
                    Layer::Source => return error.fmt(f),
                    Layer::Base(source) => write!(f, "base credentials from {source}: ")?,
                    Layer::Role(arn) => write!(f, "assuming role {arn}: ")?,
                }
                match &**error {
                    Error::Credentials(m) => f.write_str(m),
                    other => other.fmt(f),
                }
            }
        }
    }
}

impl std::error::Error for Error {}

const THROTTLING_CODES: &str = "Throttling ThrottlingException ThrottledException \
    RequestThrottledException TooManyRequestsException ProvisionedThroughputExceededException \
    TransactionInProgressException RequestLimitExceeded BandwidthLimitExceeded \
    LimitExceededException RequestThrottled SlowDown PriorRequestNotComplete EC2ThrottledException";

// `IDPCommunicationError`: STS failed to reach the identity provider; every SDK retries it.
const TRANSIENT_CODES: &str = "RequestTimeout RequestTimeoutException InternalError \
    InternalFailure ServiceUnavailable IDPCommunicationError";

pub(crate) fn is_throttling_code(code: &str) -> bool {
    THROTTLING_CODES.split_whitespace().any(|c| c == code)
}

impl Error {
    /// AWS's answer behind the error, looking through a deadline and a
    /// credentials fetch.
    fn answer(&self) -> Option<&AwsError> {
        match self {
            Error::Aws { error, .. } => Some(error),
            Error::Deadline { last: e, .. } | Error::Fetch { error: e, .. } => e.answer(),
            _ => None,
        }
    }

    /// The AWS error code, looking through a deadline and a credentials fetch.
    pub fn aws_code(&self) -> Option<&str> {
        self.answer().map(|e| e.code.as_str())
    }

    /// The request id of the AWS answer behind the error.
    pub fn request_id(&self) -> Option<&str> {
        self.answer()?.request_id.as_deref()
    }

    /// Whether another attempt may succeed (throttling, transient codes,
    /// 429 and 5xx, connection faults, garbled bodies); client errors and
    /// TLS failures are final.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Error::Aws { error, action } => {
                let code = error.code.as_str();
                is_throttling_code(code)
                    || TRANSIENT_CODES.split_whitespace().any(|c| c == code)
                    || matches!(error.status, 429 | 500 | 502 | 503 | 504)
                    // Also answered while the identity provider's signing keys rotate:
                    // most SDKs retry it (not smithy-rs: aws-sdk-rust#827).
                    || (action == "AssumeRoleWithWebIdentity" && code == "InvalidIdentityToken")
            }
            Error::Transport { kind, .. } => *kind != TransportKind::Tls,
            Error::Response { .. } => true,
            Error::Fetch { error, .. } => error.is_retryable(),
            _ => false,
        }
    }

    pub(crate) fn is_throttling(&self) -> bool {
        self.code().is_some_and(is_throttling_code)
    }

    /// AWS's own answer says the target is not in the group: as good as
    /// deregistered.
    pub(crate) fn is_target_absent(&self) -> bool {
        matches!(self.code(), Some("InvalidTarget" | "TargetGroupNotFound"))
    }

    /// AWS refused for good (a deadline is not a refusal).
    pub(crate) fn is_refusal(&self) -> bool {
        match self {
            Error::Aws { .. } => !self.is_retryable(),
            Error::Fetch { error, .. } => error.is_refusal(),
            _ => false,
        }
    }

    /// The code of AWS's answer to the call itself: never one looked up
    /// through a deadline or a credentials fetch.
    pub(crate) fn code(&self) -> Option<&str> {
        match self {
            Error::Aws { error, .. } => Some(error.code.as_str()),
            _ => None,
        }
    }
}

/// `text` with the user info of every URL hidden (`https://***@host/`).
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| "/?#\"'<>".contains(c) || c.is_whitespace())
            .unwrap_or(tail.len());
        let (authority, after) = tail.split_at(end);
        match authority.rfind('@') {
            Some(at) => out.push_str(&format!("***{}", &authority[at..])),
            None => out.push_str(authority),
        }
        rest = after;
    }
    out + rest
}

/// The first 120 printable characters of a body, for error messages.
pub fn snippet(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(120)
        .collect();
    match text.split_whitespace().collect::<Vec<_>>().join(" ") {
        t if t.is_empty() => "empty body".into(),
        t => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(redact_url("https://u:p@h:1/x@y"), "https://***@h:1/x@y");
        assert_eq!(
            redact_url("GET \"http://a:b@h\" x"),
            "GET \"http://***@h\" x"
        );
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
        assert!(aws(400, "Throttling").is_retryable());
        assert!(aws(400, "RequestLimitExceeded").is_retryable());
        assert!(aws(503, "ServiceUnavailable").is_retryable());
        assert!(aws(500, "HttpStatus500").is_retryable());
        assert!(aws(429, "HttpStatus429").is_retryable());
        assert!(aws(400, "IDPCommunicationError").is_retryable());
        assert!(!aws(404, "HttpStatus404").is_retryable());
        for code in ["InvalidTarget", "TargetGroupNotFound"] {
            assert!(aws(400, code).is_target_absent() && aws(400, code).is_refusal());
        }
        assert!(
            !aws(403, "AccessDenied").is_target_absent() && !aws(400, "Throttling").is_refusal()
        );
        for code in [
            "AccessDenied",
            "ValidationError",
            "TargetGroupNotFound",
            "InvalidTarget",
            "SignatureDoesNotMatch",
            "InvalidIdentityToken",
        ] {
            assert!(!aws(400, code).is_retryable(), "{code}");
        }
        let t = |kind| Error::Transport {
            action: "x".into(),
            url: "u".into(),
            kind,
            detail: String::new(),
        };
        assert!(t(TransportKind::Timeout).is_retryable());
        assert!(t(TransportKind::Connect).is_retryable());
        assert!(t(TransportKind::Io).is_retryable());
        assert!(!t(TransportKind::Tls).is_retryable());
        assert!(!Error::Interrupted.is_retryable());
        let late = Error::Deadline {
            action: "x".into(),
            attempts: 1,
            last: Box::new(aws(400, "Throttling")),
        };
        assert!(!late.is_refusal() && late.aws_code() == Some("Throttling"));
        // A fetch names its layer; web identity also retries `InvalidIdentityToken`.
        let role = Error::Fetch {
            layer: Layer::Role("arn:r".into()),
            error: Box::new(aws(403, "AccessDenied")),
        };
        assert!(!role.is_retryable() && role.is_refusal() && role.code().is_none());
        assert_eq!(
            role.to_string(),
            "assuming role arn:r: RegisterTargets failed: AccessDenied (HTTP 403)"
        );
        let web = |action: &str| Error::Aws {
            action: action.into(),
            error: AwsError {
                status: 400,
                code: "InvalidIdentityToken".into(),
                message: String::new(),
                request_id: None,
            },
        };
        assert!(web("AssumeRoleWithWebIdentity").is_retryable());
        assert!(!web("AssumeRole").is_retryable());
        let unread = Error::Fetch {
            layer: Layer::Base("web identity (IRSA)"),
            error: Box::new(Error::Credentials("cannot read x".into())),
        };
        assert_eq!(
            unread.to_string(),
            "base credentials from web identity (IRSA): cannot read x"
        );
    }
}
