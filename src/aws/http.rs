//! The HTTP client: the only module that imports `ureq`.
//!
//! One [`UreqTransport`] (a ureq `Agent`) is built at start-up and keeps
//! connections alive between calls. It honours `HTTPS_PROXY` / `NO_PROXY`
//! (ureq reads them), replaces the compiled-in webpki roots with the PEM
//! bundle of `AWS_CA_BUNDLE` when set (as the SDKs do), reads 4xx/5xx bodies
//! (AWS's XML errors are in them), and puts a connect and an overall
//! timeout on every request.

use super::error::{Error, TransportKind};
use std::time::Duration;

/// Largest response body read (AWS answers are a few KiB).
pub const MAX_BODY: u64 = 1 << 20;

/// An HTTP request, fully built (signing included).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// `GET`, `PUT` or `POST`.
    pub method: &'static str,
    /// Full URL.
    pub url: String,
    /// Headers to send. May hold secrets: never log them.
    pub headers: Vec<(String, String)>,
    /// Body (empty for GET).
    pub body: Vec<u8>,
    /// Overall timeout of this request.
    pub timeout: Duration,
}

/// An HTTP response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body, at most [`MAX_BODY`] bytes.
    pub body: Vec<u8>,
}

/// Sends requests. The real one is [`UreqTransport`]; tests may fake it.
pub trait Transport {
    /// Sends `req`; `action` names the call in errors.
    ///
    /// # Errors
    /// [`Error::Transport`] when no complete response arrived.
    fn send(&self, action: &str, req: &HttpRequest) -> Result<HttpResponse, Error>;
}

/// The ureq-backed transport (cheap to clone: clones share the connection pool).
#[derive(Debug, Clone)]
pub struct UreqTransport {
    agent: ureq::Agent,
}

/// Connect timeout of every request.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

impl UreqTransport {
    /// Builds the agent. `ca_bundle` is the PEM content of `AWS_CA_BUNDLE`,
    /// if set; `bundle_path` names it in errors.
    ///
    /// # Errors
    /// [`Error::Config`] when the bundle holds no certificate or bad PEM.
    pub fn new(ca_bundle: Option<(&[u8], &str)>) -> Result<Self, Error> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some((pem, path)) = ca_bundle {
            let mut certs = Vec::new();
            for item in ureq::tls::parse_pem(pem) {
                match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
                    Ok(_) => {}
                    Err(e) => {
                        return Err(Error::Config(format!("AWS_CA_BUNDLE {path}: bad PEM: {e}")))
                    }
                }
            }
            if certs.is_empty() {
                return Err(Error::Config(format!(
                    "AWS_CA_BUNDLE {path}: no certificate in the file"
                )));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls.build())
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .max_redirects(0)
            .user_agent(concat!(
                "k8s-nlb-registrator-sidecar/",
                env!("CARGO_PKG_VERSION")
            ))
            .max_idle_connections_per_host(2)
            .build()
            .new_agent();
        Ok(UreqTransport { agent })
    }
}

fn classify(err: &ureq::Error) -> TransportKind {
    match err {
        ureq::Error::Timeout(_) => TransportKind::Timeout,
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => TransportKind::Connect,
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::AddrNotAvailable
            | std::io::ErrorKind::NetworkUnreachable
            | std::io::ErrorKind::HostUnreachable => TransportKind::Connect,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => TransportKind::Timeout,
            _ => TransportKind::Io,
        },
        ureq::Error::Tls(_) => TransportKind::Tls,
        ureq::Error::BadUri(_) | ureq::Error::InvalidProxyUrl | ureq::Error::Http(_) => {
            TransportKind::Request
        }
        _ => TransportKind::Io,
    }
}

impl Transport for UreqTransport {
    fn send(&self, action: &str, req: &HttpRequest) -> Result<HttpResponse, Error> {
        let fail = |err: ureq::Error| Error::Transport {
            action: action.to_owned(),
            url: req.url.clone(),
            kind: classify(&err),
            detail: err.to_string(),
        };
        let mut builder = ureq::http::Request::builder()
            .method(req.method)
            .uri(req.url.as_str());
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let request = builder
            .body(req.body.clone())
            .map_err(|e| Error::Transport {
                action: action.to_owned(),
                url: req.url.clone(),
                kind: TransportKind::Request,
                detail: e.to_string(),
            })?;
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(Some(req.timeout))
            .build();
        let mut response = self.agent.run(request).map_err(fail)?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| Error::Transport {
                action: action.to_owned(),
                url: req.url.clone(),
                kind: classify(&e),
                detail: format!("reading the response body: {e}"),
            })?;
        Ok(HttpResponse { status, body })
    }
}
