//! The HTTP client: the only module that imports `ureq`.
//!
//! One [`UreqTransport`] (a ureq `Agent`) is built at start-up and keeps
//! connections alive between calls. It honours the proxy variables as the
//! SDKs read them (decided in [`super::proxy`], not by ureq), replaces the compiled-in webpki roots with the PEM
//! bundle of `AWS_CA_BUNDLE` when set (as the SDKs do), reads 4xx/5xx bodies
//! (AWS's XML errors are in them), and puts a connect and an overall
//! timeout on every request.

use super::error::{redact_url, Error, TransportKind};
pub use super::proxy::is_local_url;
use super::proxy::{ProxySettings, ProxyUrl};
use crate::env::ProcessEnv;
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
            .field("url", &redact_url(&self.url))
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

/// An HTTP response: status, `Date` header and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// The `Date` header, if any: AWS's clock, for clock skew correction.
    pub date: Option<String>,
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
///
/// A ureq `Agent` has one proxy, so there is one agent per route, all built
/// at start: a direct one, and one per distinct proxy of [`ProxySettings`]
/// (at most two: for `http://` and `https://` URLs). Each request picks its
/// agent with [`ProxySettings::proxy_for`]; ureq's own reading of the proxy
/// variables is never used.
#[derive(Debug, Clone)]
pub struct UreqTransport {
    /// For URLs that no proxy applies to, including loopback and link-local
    /// hosts (IMDS, the EKS Pod Identity agent, the app check).
    direct: ureq::Agent,
    /// One agent per proxy in use.
    proxied: Vec<(ProxyUrl, ureq::Agent)>,
    /// Which route each URL takes.
    proxies: ProxySettings,
}

/// Connect timeout of every request.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

impl UreqTransport {
    /// Builds the agents, with the proxy variables of the process
    /// environment. `ca_bundle` is the PEM content of `AWS_CA_BUNDLE`, if
    /// set, and its path (named in errors).
    ///
    /// # Errors
    /// [`Error::Config`] when the bundle holds no certificate or bad PEM, or
    /// a proxy variable is malformed.
    pub fn new(ca_bundle: Option<(&[u8], &str)>) -> Result<Self, Error> {
        Self::with_proxies(ca_bundle, ProxySettings::from_env(&ProcessEnv)?)
    }

    /// Builds the agents with the given proxy settings.
    ///
    /// # Errors
    /// As [`UreqTransport::new`].
    pub fn with_proxies(
        ca_bundle: Option<(&[u8], &str)>,
        proxies: ProxySettings,
    ) -> Result<Self, Error> {
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
        let agent = |proxy: Option<ureq::Proxy>| {
            let config = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .tls_config(tls.clone())
                .timeout_connect(Some(CONNECT_TIMEOUT))
                .max_redirects(0)
                .user_agent(concat!(
                    "k8s-nlb-registrator-sidecar/",
                    env!("CARGO_PKG_VERSION")
                ))
                .max_idle_connections_per_host(2)
                // Always set: `None` turns off ureq's own env detection.
                .proxy(proxy)
                .build();
            // A resolver that survives a pids limit (ureq's own spawns a
            // thread per lookup and panics when it cannot).
            ureq::Agent::with_parts(
                config,
                ureq::unversioned::transport::DefaultConnector::new(),
                super::resolver::SpawnSafeResolver,
            )
        };
        let mut proxied: Vec<(ProxyUrl, ureq::Agent)> = Vec::new();
        for p in [&proxies.http, &proxies.https].into_iter().flatten() {
            if proxied.iter().any(|(q, _)| q.full_url() == p.full_url()) {
                continue;
            }
            let proxy = ureq::Proxy::new(&p.full_url())
                .map_err(|e| Error::Config(format!("{}: unusable proxy URL: {e}", p.var)))?;
            proxied.push((p.clone(), agent(Some(proxy))));
        }
        for (scheme, p) in [("http", &proxies.http), ("https", &proxies.https)] {
            if let Some(p) = p {
                log::info!("proxy for {scheme}:// endpoints: {p}");
            }
        }
        Ok(UreqTransport {
            direct: agent(None),
            proxied,
            proxies,
        })
    }
}

impl UreqTransport {
    /// The agent for `url`: its proxy's, or the direct one.
    fn agent_for(&self, url: &str) -> &ureq::Agent {
        self.proxies
            .proxy_for(url)
            .and_then(|p| {
                self.proxied
                    .iter()
                    .find(|(q, _)| q.full_url() == p.full_url())
            })
            .map_or(&self.direct, |(_, agent)| agent)
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
            // rustls's certificate and handshake errors (ureq wraps them so).
            std::io::ErrorKind::InvalidData => TransportKind::Tls,
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
        let agent = self.agent_for(&req.url);
        let request = agent
            .configure_request(request)
            .timeout_global(Some(req.timeout))
            .build();
        let mut response = agent.run(request).map_err(fail)?;
        let status = response.status().as_u16();
        let date = response
            .headers()
            .get("date")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
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
        Ok(HttpResponse { status, date, body })
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
            url: "https://u:hunter2@x/".into(),
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
        assert!(
            d.contains("https://***@x/") && !d.contains("hunter2"),
            "{d}"
        );
    }

    #[test]
    fn each_url_takes_its_route() {
        let env: std::collections::HashMap<String, String> = [
            ("HTTP_PROXY", "http://u:p@proxy.corp:3128"),
            ("HTTPS_PROXY", "proxy.corp:3129"),
            ("NO_PROXY", ".internal"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let t = UreqTransport::with_proxies(None, ProxySettings::from_env(&env).unwrap()).unwrap();
        assert_eq!(t.proxied.len(), 2);
        let via = |url: &str| {
            let agent = t.agent_for(url);
            if std::ptr::eq(agent, &t.direct) {
                "direct".to_string()
            } else {
                let (p, _) = t
                    .proxied
                    .iter()
                    .find(|(_, a)| std::ptr::eq(a, agent))
                    .unwrap();
                p.host_port.clone()
            }
        };
        assert_eq!(
            via("https://elasticloadbalancing.us-east-1.amazonaws.com/"),
            "proxy.corp:3129"
        );
        assert_eq!(via("http://elbv2.example.com/"), "proxy.corp:3128");
        assert_eq!(via("https://sts.vpce.internal/"), "direct");
        assert_eq!(via("http://169.254.169.254/latest/api/token"), "direct");
        // One proxy for both schemes: one agent.
        let env: std::collections::HashMap<String, String> =
            [("ALL_PROXY".to_string(), "proxy.corp:3128".to_string())].into();
        let t = UreqTransport::with_proxies(None, ProxySettings::from_env(&env).unwrap()).unwrap();
        assert_eq!(t.proxied.len(), 1);
        assert!(!std::ptr::eq(t.agent_for("https://x.example/"), &t.direct));
    }

    #[test]
    fn ureq_accepts_every_proxy_url_we_accept() {
        for value in [
            "http://proxy:3128",
            "proxy.corp:3128",
            "https://proxy.corp",
            "http://10.0.0.9:8080",
            "http://[fd00::9]:8080",
            "fd00::9",
            "http://u:p%40ss@proxy:3128",
            "http://user@my_proxy-1.corp/",
        ] {
            let env: std::collections::HashMap<String, String> =
                [("HTTPS_PROXY".to_string(), value.to_string())].into();
            let settings = ProxySettings::from_env(&env).unwrap();
            assert!(
                UreqTransport::with_proxies(None, settings).is_ok(),
                "{value}"
            );
        }
    }

    #[test]
    fn ca_bundle_errors_are_named() {
        let e = UreqTransport::new(Some((b"not pem", "/etc/bundle.pem"))).unwrap_err();
        assert!(e.to_string().contains("/etc/bundle.pem"), "{e}");
        assert!(UreqTransport::new(None).is_ok());
    }
}
