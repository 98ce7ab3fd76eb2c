//! Which proxy, if any, a request goes through: the proxy environment
//! variables read as the AWS SDKs read them, decided without IO.
//!
//! There is no standard for these variables; curl, Go's `net/http` (which
//! aws-sdk-go-v2 uses) and `hyper-util` (which the AWS SDK for Rust uses)
//! each differ a little. We follow the SDKs, and curl where they disagree
//! with each other:
//!
//! - An `https://` URL uses `HTTPS_PROXY`, then `https_proxy`; an `http://`
//!   URL uses `HTTP_PROXY`, then `http_proxy`. Neither falls back to the
//!   other. Upper case is read first, as Go and the Rust SDK do (curl reads
//!   lower case first and ignores upper-case `HTTP_PROXY`, a guard for CGI
//!   programs, which a sidecar is not).
//! - `ALL_PROXY`, then `all_proxy`, is the fallback for both schemes (curl,
//!   the Rust SDK; Go ignores it).
//! - `NO_PROXY`, then `no_proxy`: comma-separated entries, each trimmed and
//!   compared without regard to case. `*` means no proxy at all. An IP
//!   address matches that address (IPv6 compared as addresses, so `::1`
//!   matches `[0:0::1]`), a CIDR block (`10.0.0.0/8`, `fd00::/8`) every
//!   address in it. Any other entry is a domain: `example.com`,
//!   `.example.com` and `*.example.com` all match `example.com` and every
//!   name under it, never `notexample.com` (curl and the Rust SDK; Go's
//!   `.example.com` skips the apex). An entry with a port (`host:8443`,
//!   `10.1.2.3:80`, `[::1]:8080`) matches only URLs on that port, the
//!   scheme's default port counting (Go). Empty and unusable entries are
//!   skipped, as everywhere else.
//! - Loopback and link-local hosts (`localhost`, `127.0.0.0/8`, `::1`,
//!   IMDS `169.254.169.254` and `fd00:ec2::254`, the EKS Pod Identity
//!   agent `169.254.170.23` and `fd00:ec2::23`, ECS `169.254.170.2`) never
//!   go through a proxy. Go exempts loopback only; for the metadata and
//!   credential endpoints AWS asks users to list them in `NO_PROXY`. A proxy
//!   cannot reach the node's link-local addresses and would see the
//!   container credentials token in clear, so we exempt them always.
//! - A proxy URL without a scheme is `http://` (all three). Only `http` and
//!   `https` proxies are supported. A proxy variable that would be used but
//!   does not hold a usable URL is a configuration error at start, where
//!   the others silently ignore it.

use super::error::Error;
use crate::env::Env;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// A proxy to send requests through, parsed from a variable.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// The variable it came from, e.g. `HTTPS_PROXY`.
    pub var: &'static str,
    /// `http` or `https` (how the proxy itself is reached).
    pub scheme: &'static str,
    /// `user:password` or `user`, still percent-encoded. A secret.
    userinfo: Option<String>,
    /// Host (IPv6 in brackets) and optional `:port`.
    pub host_port: String,
}

impl ProxyUrl {
    /// The URL to hand to the HTTP client, credentials included.
    pub fn full_url(&self) -> String {
        match &self.userinfo {
            Some(u) => format!("{}://{u}@{}", self.scheme, self.host_port),
            None => format!("{}://{}", self.scheme, self.host_port),
        }
    }
}

/// Shows the proxy without its credentials (safe to log).
impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host_port)?;
        if self.userinfo.is_some() {
            write!(f, " (with credentials)")?;
        }
        write!(f, " from {}", self.var)
    }
}

/// Like `Display`: never shows the credentials.
impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

/// One `NO_PROXY` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NoProxyEntry {
    /// `*`.
    All,
    /// An IP address, with an optional port.
    Ip(IpAddr, Option<u16>),
    /// A CIDR block.
    Net(IpAddr, u8),
    /// A domain without leading dot, lower case, with an optional port.
    Domain(String, Option<u16>),
}

/// The proxy settings of the process, read once at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// For `http://` URLs.
    pub http: Option<ProxyUrl>,
    /// For `https://` URLs.
    pub https: Option<ProxyUrl>,
    no_proxy: Vec<NoProxyEntry>,
}

impl ProxySettings {
    /// Reads the proxy variables (see the module docs for the rules).
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable when a proxy URL that would be
    /// used is malformed or has an unsupported scheme.
    pub fn from_env(env: &dyn Env) -> Result<Self, Error> {
        let pick = |names: &[&'static str]| -> Result<Option<ProxyUrl>, Error> {
            match names.iter().find_map(|n| env.var(n).map(|v| (*n, v))) {
                Some((var, value)) => parse_proxy_url(var, &value).map(Some),
                None => Ok(None),
            }
        };
        let http = pick(&["HTTP_PROXY", "http_proxy"])?;
        let https = pick(&["HTTPS_PROXY", "https_proxy"])?;
        // ALL_PROXY is read (and checked) only when it would be used.
        let all = match (&http, &https) {
            (Some(_), Some(_)) => None,
            _ => pick(&["ALL_PROXY", "all_proxy"])?,
        };
        let http = http.or_else(|| all.clone());
        let https = https.or(all);
        let no_proxy = env
            .var("NO_PROXY")
            .or_else(|| env.var("no_proxy"))
            .map(|v| parse_no_proxy(&v))
            .unwrap_or_default();
        Ok(ProxySettings {
            http,
            https,
            no_proxy,
        })
    }

    /// The proxy for `url`, or `None` to connect directly.
    pub fn proxy_for(&self, url: &str) -> Option<&ProxyUrl> {
        let target = Target::parse(url)?;
        let proxy = match target.scheme {
            Scheme::Http => self.http.as_ref()?,
            Scheme::Https => self.https.as_ref()?,
        };
        if target.is_local() || self.bypass(&target) {
            return None;
        }
        Some(proxy)
    }

    /// Whether a `NO_PROXY` entry matches the target.
    fn bypass(&self, t: &Target) -> bool {
        let port_ok = |p: &Option<u16>| p.is_none_or(|p| p == t.port);
        self.no_proxy.iter().any(|e| match (e, &t.host) {
            (NoProxyEntry::All, _) => true,
            (NoProxyEntry::Ip(ip, port), Host::Ip(h)) => canonical(*ip) == *h && port_ok(port),
            (NoProxyEntry::Net(net, bits), Host::Ip(h)) => in_net(*h, *net, *bits),
            (NoProxyEntry::Domain(d, port), Host::Name(h)) => {
                let under = h.len() > d.len()
                    && h.ends_with(d.as_str())
                    && h.as_bytes()[h.len() - d.len() - 1] == b'.';
                (h == d || under) && port_ok(port)
            }
            _ => false,
        })
    }
}

/// The decision for one URL, reading the variables from `env`.
///
/// # Errors
/// As [`ProxySettings::from_env`].
#[cfg(test)]
fn proxy_for(url: &str, env: &dyn Env) -> Result<Option<ProxyUrl>, Error> {
    Ok(ProxySettings::from_env(env)?.proxy_for(url).cloned())
}

/// Whether a URL's host is loopback or link-local (never proxied).
pub fn is_local_url(url: &str) -> bool {
    Target::parse(url).is_some_and(|t| t.is_local())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// Canonical: an IPv4-mapped IPv6 address is stored as IPv4.
    Ip(IpAddr),
    /// Lower case, without a trailing dot.
    Name(String),
}

/// The parts of a request URL that the decision needs.
#[derive(Debug)]
struct Target {
    scheme: Scheme,
    host: Host,
    port: u16,
}

impl Target {
    fn parse(url: &str) -> Option<Target> {
        let (scheme, rest) = url.split_once("://")?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return None,
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            Some(p) => p,
            None if scheme == Scheme::Http => 80,
            None => 443,
        };
        Some(Target {
            scheme,
            host: parse_host(host)?,
            port,
        })
    }

    fn is_local(&self) -> bool {
        match &self.host {
            Host::Name(n) => n == "localhost",
            Host::Ip(IpAddr::V4(ip)) => ip.is_loopback() || ip.is_link_local(),
            Host::Ip(IpAddr::V6(ip)) => {
                let s = ip.segments();
                ip.is_loopback() || (s[0] & 0xffc0) == 0xfe80 || (s[0] == 0xfd00 && s[1] == 0x0ec2)
            }
        }
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let parse_port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0);
    if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(parse_port(p)?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    if s.parse::<Ipv6Addr>().is_ok() {
        return Some((s, None));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(parse_port(p)?))),
        None => Some((s, None)),
    }
}

fn parse_host(h: &str) -> Option<Host> {
    if h.is_empty() {
        return None;
    }
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Some(Host::Ip(canonical(ip)));
    }
    let name = h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
    Some(Host::Name(name))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (a, b, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(a.to_bits()), u128::from(b.to_bits()), 32u32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits(), b.to_bits(), 128),
        _ => return false,
    };
    let Some(shift) = width.checked_sub(u32::from(bits)) else {
        return false;
    };
    // A shift by the whole width (a /0 block) leaves nothing to compare.
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

fn parse_no_proxy(value: &str) -> Vec<NoProxyEntry> {
    value
        .split(',')
        .filter_map(|e| parse_no_proxy_entry(&e.trim().to_ascii_lowercase()))
        .collect()
}

fn parse_no_proxy_entry(e: &str) -> Option<NoProxyEntry> {
    if e.is_empty() {
        return None;
    }
    if e == "*" {
        return Some(NoProxyEntry::All);
    }
    if let Some((addr, bits)) = e.split_once('/') {
        let ip = addr.parse::<IpAddr>().ok()?;
        let bits = bits.parse::<u8>().ok()?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if bits > max {
            return None;
        }
        // Hosts are compared in canonical form (an IPv4-mapped address as
        // IPv4), so an IPv4-mapped block becomes the IPv4 block; one wider
        // than the mapped range (under /96) cannot be written in IPv4.
        return match (ip, canonical(ip)) {
            (IpAddr::V6(_), v4 @ IpAddr::V4(_)) => {
                Some(NoProxyEntry::Net(v4, bits.checked_sub(96)?))
            }
            _ => Some(NoProxyEntry::Net(ip, bits)),
        };
    }
    let (host, port) = split_host_port(e)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(NoProxyEntry::Ip(ip, port));
    }
    let domain = host.strip_prefix('*').unwrap_or(host);
    let domain = domain.trim_start_matches('.');
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.is_empty() || domain.contains(['*', '[', ']', ' ']) {
        return None;
    }
    Some(NoProxyEntry::Domain(domain.to_owned(), port))
}

/// Parses a proxy variable's value.
fn parse_proxy_url(var: &'static str, value: &str) -> Result<ProxyUrl, Error> {
    let bad = |why: &str| Error::Config(format!("{var}: {why}"));
    let value = value.trim();
    let (scheme, rest) = match value.split_once("://") {
        Some((s, rest)) => match s.to_ascii_lowercase().as_str() {
            "http" => ("http", rest),
            "https" => ("https", rest),
            other => {
                return Err(bad(&format!(
                    "proxy scheme '{other}' is not supported (http:// and https:// proxies only)"
                )))
            }
        },
        None => ("http", value),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((u, hp)) => (Some(u.to_owned()), hp),
        None => (None, authority),
    };
    let malformed = || bad("not a proxy URL like http://proxy.example.com:3128");
    let (host, port) = split_host_port(host_port).ok_or_else(malformed)?;
    let host_ok = !host.is_empty()
        && (host.parse::<IpAddr>().is_ok()
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'));
    if !host_ok || host_port.ends_with(':') {
        return Err(malformed());
    }
    let host_port = match (host.parse::<Ipv6Addr>(), port) {
        (Ok(_), Some(p)) => format!("[{host}]:{p}"),
        (Ok(_), None) => format!("[{host}]"),
        (Err(_), Some(p)) => format!("{host}:{p}"),
        (Err(_), None) => host.to_owned(),
    };
    if userinfo
        .as_deref()
        .is_some_and(|u| u.is_empty() || u.contains([' ', '/']))
    {
        return Err(bad("malformed credentials in the proxy URL"));
    }
    Ok(ProxyUrl {
        var,
        scheme,
        userinfo,
        host_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::test_env as env;

    /// The proxy's `host:port` for `url`, or "direct".
    fn route(pairs: &[(&str, &str)], url: &str) -> String {
        match proxy_for(url, &env(pairs)).unwrap() {
            Some(p) => format!("{} {}", p.var, p.host_port),
            None => "direct".into(),
        }
    }

    const ELB: &str = "https://elasticloadbalancing.eu-west-1.amazonaws.com/";
    const HTTP_EP: &str = "http://vpce.example.internal:8080/";

    #[test]
    fn scheme_picks_the_variable() {
        let all = [
            ("HTTPS_PROXY", "s:1"),
            ("HTTP_PROXY", "h:2"),
            ("ALL_PROXY", "a:3"),
        ];
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (&all, ELB, "HTTPS_PROXY s:1"),
            (&all, HTTP_EP, "HTTP_PROXY h:2"),
            // No fallback from one scheme to the other.
            (&[("HTTPS_PROXY", "s:1")], HTTP_EP, "direct"),
            (&[("HTTP_PROXY", "h:2")], ELB, "direct"),
            // ALL_PROXY is the fallback for both.
            (&[("ALL_PROXY", "a:3")], ELB, "ALL_PROXY a:3"),
            (&[("ALL_PROXY", "a:3")], HTTP_EP, "ALL_PROXY a:3"),
            (&[("all_proxy", "a:3")], ELB, "all_proxy a:3"),
            (
                &[("HTTPS_PROXY", "s:1"), ("ALL_PROXY", "a:3")],
                HTTP_EP,
                "ALL_PROXY a:3",
            ),
            // Lower case works; upper case is read first (Go, Rust SDK).
            (&[("https_proxy", "l:1")], ELB, "https_proxy l:1"),
            (&[("http_proxy", "l:2")], HTTP_EP, "http_proxy l:2"),
            (
                &[("HTTPS_PROXY", "u:1"), ("https_proxy", "l:1")],
                ELB,
                "HTTPS_PROXY u:1",
            ),
            (
                &[("HTTP_PROXY", "u:2"), ("http_proxy", "l:2")],
                HTTP_EP,
                "HTTP_PROXY u:2",
            ),
            // Empty counts as unset.
            (
                &[("HTTPS_PROXY", ""), ("https_proxy", "l:1")],
                ELB,
                "https_proxy l:1",
            ),
            (&[], ELB, "direct"),
            // Not http(s): never proxied.
            (&all, "ftp://x/", "direct"),
        ];
        for (pairs, url, want) in cases {
            assert_eq!(route(pairs, url), *want, "{pairs:?} {url}");
        }
    }

    #[test]
    fn local_hosts_are_never_proxied() {
        let all = [("HTTP_PROXY", "p:1"), ("HTTPS_PROXY", "p:1")];
        for url in [
            "http://169.254.169.254/latest/api/token",
            "http://169.254.170.2/v2/credentials/x",
            "http://169.254.170.23/v1/credentials",
            "http://[fd00:ec2::23]/v1/credentials",
            "http://[fd00:ec2::254]/latest",
            "http://127.0.0.1:8080/",
            "http://127.0.0.53/",
            "http://localhost:9090/healthz",
            "http://LOCALHOST./",
            "http://[::1]:80/",
            "http://[::ffff:127.0.0.1]/",
            "https://[fe80::1]/",
        ] {
            assert!(is_local_url(url), "{url}");
            assert_eq!(route(&all, url), "direct", "{url}");
        }
        for url in [
            ELB,
            "https://sts.amazonaws.com/",
            "http://10.0.0.1/",
            "http://[fd00::1]/",
            "http://localhost.example.com/",
        ] {
            assert!(!is_local_url(url), "{url}");
            assert!(route(&all, url).ends_with("_PROXY p:1"), "{url}");
        }
    }

    #[test]
    fn no_proxy_entries() {
        // (NO_PROXY, URL, bypassed?) from curl's and Go's documentation.
        let cases: &[(&str, &str, bool)] = &[
            ("*", ELB, true),
            ("foo.com, *", ELB, true),
            (" * ", ELB, true),
            // Domains match themselves and their subdomains, whatever the dot.
            ("example.com", "https://example.com/", true),
            ("example.com", "https://www.example.com/", true),
            ("example.com", "https://a.b.example.com:8443/", true),
            ("example.com", "https://notexample.com/", false),
            ("example.com", "https://example.com.evil.org/", false),
            (".example.com", "https://www.example.com/", true),
            (".example.com", "https://example.com/", true),
            (".example.com", "https://notexample.com/", false),
            ("*.example.com", "https://www.example.com/", true),
            ("amazonaws.com", ELB, true),
            (".eu-west-1.amazonaws.com", ELB, true),
            ("us-east-1.amazonaws.com", ELB, false),
            // Trimmed, case-insensitive, trailing dots ignored.
            (
                "  foo.com ,  Example.COM  ",
                "https://www.example.com/",
                true,
            ),
            ("foo.com,,example.com", "https://example.com/", true),
            ("example.com.", "https://www.example.com./", true),
            // Ports: only that port; the default port counts.
            ("example.com:8443", "https://example.com:8443/", true),
            ("example.com:8443", "https://example.com/", false),
            ("example.com:443", "https://www.example.com/", true),
            ("example.com:80", "https://example.com/", false),
            // IP addresses and blocks.
            ("10.1.2.3", "http://10.1.2.3:8080/", true),
            ("10.1.2.3", "http://10.1.2.4/", false),
            ("10.1.2.3:80", "http://10.1.2.3/", true),
            ("10.1.2.3:80", "http://10.1.2.3:8080/", false),
            ("10.0.0.0/8", "http://10.200.3.4/", true),
            ("10.0.0.0/8", "http://11.0.0.1/", false),
            ("10.0.0.0/8", "http://10.example.com/", false),
            ("192.168.0.0/16", "https://192.168.44.1/", true),
            ("0.0.0.0/0", "https://8.8.8.8/", true),
            ("::2", "http://[::2]/", true),
            ("::2", "http://[0:0::2]/", true),
            ("[::2]:8080", "http://[::2]:8080/", true),
            ("[::2]:8080", "http://[::2]/", false),
            ("2001:db8::/32", "http://[2001:db8:1::5]/", true),
            ("2001:db8::/32", "http://[2001:db9::5]/", false),
            ("10.0.0.0/8", "http://[::ffff:10.1.1.1]/", true),
            // An IPv4-mapped block is the IPv4 block (bits - 96); one
            // wider than the mapped range is skipped.
            ("::ffff:10.0.0.0/104", "http://10.1.2.3/", true),
            ("::ffff:10.0.0.0/104", "http://[::ffff:10.1.2.3]/", true),
            ("::ffff:10.0.0.0/104", "http://11.0.0.1/", false),
            ("::ffff:0.0.0.0/96", "http://8.8.8.8/", true),
            ("::ffff:0.0.0.0/95", "http://8.8.8.8/", false),
            ("::ffff:0.0.0.0/80", "http://[2001:db8::1]/", false),
            // An IP entry does not match as a domain suffix (Go does).
            ("0.1", "http://10.0.0.1/", false),
            // Unusable entries are skipped.
            ("10.0.0.0/33, example.com", "https://example.com/", true),
            ("10.0.0.0/33", "http://10.0.0.1/", false),
            (",,  ,", ELB, false),
            ("example.com:notaport", "https://example.com/", false),
        ];
        for (no_proxy, url, bypassed) in cases {
            let pairs = [
                ("HTTP_PROXY", "p:1"),
                ("HTTPS_PROXY", "p:1"),
                ("NO_PROXY", *no_proxy),
            ];
            let got = route(&pairs, url) == "direct";
            assert_eq!(got, *bypassed, "NO_PROXY={no_proxy:?} {url}");
        }
    }

    #[test]
    fn in_net_never_overflows() {
        let v4 = IpAddr::from([10, 0, 0, 1]);
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(!in_net(v4, v4, 33));
        assert!(!in_net(v4, v4, 255));
        assert!(!in_net(v6, v6, 129));
        assert!(in_net(v4, IpAddr::from([0, 0, 0, 0]), 0));
        assert!(in_net(v6, "::".parse().unwrap(), 0));
        assert!(in_net(v4, v4, 32));
        assert!(in_net(v6, v6, 128));
    }

    #[test]
    fn no_proxy_lower_case_and_precedence() {
        let base = [("HTTPS_PROXY", "p:1")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            route(&v, ELB)
        };
        assert_eq!(with(&[("no_proxy", "amazonaws.com")]), "direct");
        assert_eq!(
            with(&[("NO_PROXY", "example.com"), ("no_proxy", "amazonaws.com")]),
            "HTTPS_PROXY p:1"
        );
    }

    #[test]
    fn proxy_urls_are_parsed() {
        let p = |v: &str| parse_proxy_url("HTTPS_PROXY", v).map(|p| (p.full_url(), p.to_string()));
        let ok: &[(&str, &str)] = &[
            ("http://proxy:3128", "http://proxy:3128"),
            ("proxy.corp:3128", "http://proxy.corp:3128"),
            ("HTTP://Proxy:3128/", "http://Proxy:3128"),
            ("https://proxy.corp", "https://proxy.corp"),
            ("  http://10.0.0.9:8080  ", "http://10.0.0.9:8080"),
            ("http://[fd00::9]:8080", "http://[fd00::9]:8080"),
            ("http://u:p%40ss@proxy:3128", "http://u:p%40ss@proxy:3128"),
        ];
        for (input, want) in ok {
            assert_eq!(p(input).unwrap().0, *want, "{input}");
        }
        let (full, shown) = p("http://user:hunter2@proxy:3128").unwrap();
        assert!(full.contains("hunter2"));
        assert!(
            !shown.contains("hunter2") && shown.contains("with credentials"),
            "{shown}"
        );
        let debug = format!(
            "{:?}",
            parse_proxy_url("X", "http://u:hunter2@p:1").unwrap()
        );
        assert!(!debug.contains("hunter2"), "{debug}");
        for bad in [
            "socks5://proxy:1080",
            "ftp://proxy",
            "http://",
            "http://:3128",
            "http://proxy:",
            "http://proxy:99999",
            "http://proxy:abc",
            "http://pro xy:3128",
            "http://[fd00::9:3128",
            "http://@proxy:3128",
            "://proxy",
        ] {
            let e = p(bad).unwrap_err().to_string();
            assert!(e.starts_with("configuration: HTTPS_PROXY: "), "{bad}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn a_malformed_variable_is_an_error_even_behind_a_good_one() {
        // The variable that would be used decides: upper case first.
        let e = proxy_for(
            ELB,
            &env(&[("HTTPS_PROXY", "socks5://x:1"), ("https_proxy", "p:1")]),
        );
        assert!(e.unwrap_err().to_string().contains("HTTPS_PROXY"));
        // A bad HTTP_PROXY fails at start even if only https is called.
        assert!(ProxySettings::from_env(&env(&[("HTTP_PROXY", "http://")])).is_err());
        assert!(ProxySettings::from_env(&env(&[("ALL_PROXY", "socks5h://x")])).is_err());
        assert!(ProxySettings::from_env(&env(&[("all_proxy", "ftp://x")])).is_err());
        // ALL_PROXY is a fallback: checked only when it would be used.
        let both = [("HTTP_PROXY", "p:1"), ("HTTPS_PROXY", "p:1")];
        let mut v = both.to_vec();
        v.push(("ALL_PROXY", "ftp://x"));
        assert!(ProxySettings::from_env(&env(&v)).is_ok());
        assert!(
            ProxySettings::from_env(&env(&[("HTTPS_PROXY", "p:1"), ("ALL_PROXY", "ftp://x")]))
                .is_err()
        );
        assert_eq!(
            ProxySettings::from_env(&env(&[])).unwrap(),
            ProxySettings::default()
        );
    }
}
