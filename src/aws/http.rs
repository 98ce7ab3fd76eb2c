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

/// An HTTP request, fully built (signing included). Its `Debug` shows
/// neither header values nor the body: they hold signatures and tokens.
#[derive(Clone)]
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

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("body_len", &self.body.len())
            .field("timeout", &self.timeout)
            .finish()
    }
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
    /// For AWS endpoints: honours the proxy variables.
    agent: ureq::Agent,
    /// For loopback and link-local hosts (IMDS, the EKS Pod Identity agent,
    /// the app check): never through a proxy, which would see the container
    /// token in clear and could not reach them anyway.
    direct: ureq::Agent,
}

/// Whether a URL's host is loopback or link-local (never proxied).
pub fn is_local_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(authority),
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback() || ip.is_link_local(),
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || (ip.segments()[0] & 0xffc0) == 0xfe80 || ip.segments()[0] == 0xfd00
        }
        Err(_) => false,
    }
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
        let tls = tls.build();
        let config = |proxy: bool| {
            let builder = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .tls_config(tls.clone())
                .timeout_connect(Some(CONNECT_TIMEOUT))
                .max_redirects(0)
                .user_agent(concat!(
                    "k8s-nlb-registrator-sidecar/",
                    env!("CARGO_PKG_VERSION")
                ))
                .max_idle_connections_per_host(2);
            if proxy {
                builder.build()
            } else {
                builder.proxy(None).build()
            }
        };
        // A resolver that survives a pids limit (ureq's own spawns a thread
        // per lookup and panics when it cannot).
        let agent = |proxy: bool| {
            ureq::Agent::with_parts(
                config(proxy),
                ureq::unversioned::transport::DefaultConnector::new(),
                super::resolver::SpawnSafeResolver,
            )
        };
        Ok(UreqTransport {
            agent: agent(true),
            direct: agent(false),
        })
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
        let agent = if is_local_url(&req.url) {
            &self.direct
        } else {
            &self.agent
        };
        let request = agent
            .configure_request(request)
            .timeout_global(Some(req.timeout))
            .build();
        let mut response = agent.run(request).map_err(fail)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_urls_bypass_the_proxy() {
        for url in [
            "http://169.254.169.254/latest/api/token",
            "http://169.254.170.23/v1/credentials",
            "http://[fd00:ec2::23]/v1/credentials",
            "http://[fd00:ec2::254]/latest",
            "http://127.0.0.1:8080/",
            "http://localhost:9090/healthz",
            "http://[::1]:80/",
        ] {
            assert!(is_local_url(url), "{url}");
        }
        for url in [
            "https://elasticloadbalancing.eu-west-1.amazonaws.com/",
            "https://sts.amazonaws.com/",
            "http://10.0.0.1/",
        ] {
            assert!(!is_local_url(url), "{url}");
        }
    }

    #[test]
    fn request_debug_hides_headers_and_body() {
        let r = HttpRequest {
            method: "POST",
            url: "https://x/".into(),
            headers: vec![(
                "authorization".into(),
                "AWS4-HMAC-SHA256 Signature=abc".into(),
            )],
            body: b"WebIdentityToken=secret".to_vec(),
            timeout: Duration::from_secs(1),
        };
        let d = format!("{r:?}");
        assert!(
            d.contains("authorization") && !d.contains("Signature") && !d.contains("secret"),
            "{d}"
        );
    }

    #[test]
    fn ca_bundle_errors_are_named() {
        let e = UreqTransport::new(Some((b"not pem", "/etc/bundle.pem"))).unwrap_err();
        assert!(e.to_string().contains("/etc/bundle.pem"), "{e}");
        assert!(UreqTransport::new(None).is_ok());
    }
}
