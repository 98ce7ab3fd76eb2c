//! The HTTP client, the only module that imports `ureq` (docs/aws.md,
//! "Transport" and "Proxies").

use super::error::{redact_url, Error, TransportKind};
use crate::env::{Env, ProcessEnv};
use std::net::IpAddr;
use std::time::Duration;

const MAX_BODY: u64 = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const USER_AGENT: &str = concat!("k8s-nlb-registrator-sidecar/", env!("CARGO_PKG_VERSION"));
/// The proxy variables ureq reads, in its order.
const PROXY_VARS: &str = "ALL_PROXY all_proxy HTTPS_PROXY https_proxy HTTP_PROXY http_proxy";

/// An HTTP request, signed. No `Debug`: its headers and body hold secrets.
#[derive(Clone)]
pub struct HttpRequest {
    /// `GET`, `PUT` or `POST`.
    pub method: &'static str,
    /// Full URL.
    pub url: String,
    /// Headers; may hold secrets.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Overall timeout.
    pub timeout: Duration,
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// The `Date` header: AWS's clock.
    pub date: Option<String>,
    /// Body, at most 1 MiB.
    pub body: Vec<u8>,
}

/// Sends requests: [`UreqTransport`], or a fake in tests.
pub trait Transport {
    /// Sends `req`; `action` names the call in errors.
    ///
    /// # Errors
    /// [`Error::Transport`] when no complete response arrived.
    fn send(&self, action: &str, req: &HttpRequest) -> Result<HttpResponse, Error>;
}

/// The ureq transport (clones share the connection pools).
#[derive(Debug, Clone)]
pub struct UreqTransport {
    proxied: ureq::Agent,
    direct: ureq::Agent,
    pod_ip: Option<IpAddr>,
}

/// Whether `url` skips the proxy: loopback and link-local hosts (IMDS, the
/// Pod Identity agent: a proxy cannot reach them and would see their
/// tokens) and `pod_ip`.
pub fn goes_direct(url: &str, pod_ip: Option<IpAddr>) -> bool {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else {
        return false;
    };
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(ip) = host.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
        return host.eq_ignore_ascii_case("localhost");
    };
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        // fe80::/10, and fd00:ec2::/32 (IMDS and Pod Identity over IPv6).
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] & 0xffc0 == 0xfe80 || (s[0] == 0xfd00 && s[1] == 0x0ec2)
        }
    };
    ip.is_loopback() || link_local || Some(ip) == pod_ip.map(|p| p.to_canonical())
}

fn roots(pem: &[u8], path: &str) -> Result<ureq::tls::RootCerts, Error> {
    let bad = |why: String| Error::Config(format!("AWS_CA_BUNDLE {path}: {why}"));
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        let item = item.map_err(|e| bad(format!("bad PEM: {e}")))?;
        if let ureq::tls::PemItem::Certificate(c) = item {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    Ok(ureq::tls::RootCerts::new_with_certs(&certs))
}

impl UreqTransport {
    /// Builds the agents; `ca_bundle` is `AWS_CA_BUNDLE`'s content and path.
    ///
    /// # Errors
    /// [`Error::Config`] for a bundle without certificates or with bad PEM,
    /// or a proxy variable that is not an `http://` or `https://` proxy URL.
    pub fn new(ca_bundle: Option<(&[u8], &str)>, pod_ip: Option<IpAddr>) -> Result<Self, Error> {
        // ureq would skip a bad one, or cannot speak SOCKS, and go direct.
        let usable = |v: &str| {
            use ureq::ProxyProtocol::{Http, Https};
            let p = ureq::Proxy::new(v);
            p.is_ok_and(|p| matches!(p.protocol(), Http | Https) && !p.host().is_empty())
        };
        let mut vars = PROXY_VARS.split_whitespace();
        if let Some(var) = vars.find(|var| ProcessEnv.var(var).is_some_and(|v| !usable(&v))) {
            let msg = format!("{var}: not a proxy URL like http://proxy.example.com:3128");
            return Err(Error::Config(msg));
        }
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some((pem, path)) = ca_bundle {
            tls = tls.root_certs(roots(pem, path)?);
        }
        let tls = tls.build();
        let agent = |proxy: Option<ureq::Proxy>| {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .tls_config(tls.clone())
                .timeout_connect(Some(CONNECT_TIMEOUT))
                .max_redirects(0)
                .user_agent(USER_AGENT)
                .max_idle_connections_per_host(2)
                .proxy(proxy)
                .build()
                .new_agent()
        };
        let proxy = ureq::Proxy::try_from_env();
        if let Some(p) = &proxy {
            let creds = p.username().map_or("", |_| " (with credentials)");
            let scheme = p.protocol().to_string().to_ascii_lowercase();
            log::info!("proxy: {scheme}://{}:{}{creds}", p.host(), p.port());
        }
        Ok(UreqTransport {
            proxied: agent(proxy),
            direct: agent(None),
            pod_ip,
        })
    }
}

/// The error of a request to `url` that got no complete answer.
fn failed(action: &str, url: &str, err: ureq::Error) -> Error {
    use std::io::ErrorKind as K;
    use TransportKind::{Connect, Io, Timeout, Tls};
    let kind = match &err {
        ureq::Error::Timeout(_) => Timeout,
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => Connect,
        ureq::Error::Io(io) => match io.kind() {
            K::ConnectionRefused
            | K::AddrNotAvailable
            | K::NetworkUnreachable
            | K::HostUnreachable => Connect,
            K::TimedOut | K::WouldBlock => Timeout,
            // rustls's certificate and handshake errors (ureq wraps them so).
            K::InvalidData => Tls,
            _ => Io,
        },
        ureq::Error::Tls(_) => Tls,
        ureq::Error::BadUri(_) | ureq::Error::InvalidProxyUrl | ureq::Error::Http(_) => {
            let msg = format!("{action}: cannot build request to {url}: {err}");
            return Error::Config(redact_url(&msg));
        }
        _ => Io,
    };
    let (action, url, detail) = (action.to_owned(), url.to_owned(), err.to_string());
    Error::Transport {
        action,
        url,
        kind,
        detail,
    }
}

impl Transport for UreqTransport {
    fn send(&self, action: &str, req: &HttpRequest) -> Result<HttpResponse, Error> {
        let fail = |e| failed(action, &req.url, e);
        let mut builder = ureq::http::Request::builder()
            .method(req.method)
            .uri(req.url.as_str());
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let request = builder.body(req.body.clone()).map_err(|e| fail(e.into()))?;
        let direct = goes_direct(&req.url, self.pod_ip);
        let agent = if direct { &self.direct } else { &self.proxied };
        let request = agent
            .configure_request(request)
            .timeout_global(Some(req.timeout))
            .build();
        let mut response = agent.run(request).map_err(fail)?;
        let status = response.status().as_u16();
        let date = response.headers().get("date").and_then(|v| v.to_str().ok());
        let date = date.map(str::to_owned);
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec();
        Ok(HttpResponse {
            status,
            date,
            body: body.map_err(fail)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_hosts() {
        let pod = "10.0.0.5".parse().ok();
        for url in [
            "http://169.254.169.254/latest/api/token",
            "http://169.254.170.23/v1/credentials",
            "http://[fd00:ec2::23]/v1/credentials",
            "http://[fd00:ec2::254]/latest",
            "http://127.0.0.1:8080/",
            "http://localhost:9090/healthz",
            "http://[::1]:80/",
            "http://[::ffff:127.0.0.1]/",
            "https://[fe80::1]/",
            "http://10.0.0.5:8080/ready",
            "http://u:p@10.0.0.5/",
        ] {
            assert!(goes_direct(url, pod), "{url}");
        }
        for url in [
            "https://elasticloadbalancing.eu-west-1.amazonaws.com/",
            "https://sts.amazonaws.com/",
            "http://10.0.0.50/",
            "http://[fd00::1]/",
            "http://app.default.svc/in",
            "http://localhost.example.com/",
        ] {
            assert!(!goes_direct(url, pod), "{url}");
        }
        assert!(!goes_direct("http://10.0.0.5/", None));
    }

    #[test]
    fn ca_bundle_errors_are_named() {
        let e = UreqTransport::new(Some((b"not pem", "/etc/bundle.pem")), None).unwrap_err();
        assert!(e.to_string().contains("/etc/bundle.pem"), "{e}");
        assert!(UreqTransport::new(None, None).is_ok());
    }
}
