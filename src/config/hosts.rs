//! The pod's own IP from `/etc/hosts`, the last fallback for `-target-id`.

use std::net::IpAddr;

/// The address on the line of a hosts file that names `hostname` (or
/// `hostname.DOMAIN`), as the kubelet writes `IP<TAB>HOSTNAME` there;
/// loopback, unspecified and link-local addresses are skipped. The address
/// comes back in its canonical text.
pub fn pod_ip_from_hosts(contents: &str, hostname: &str) -> Option<String> {
    let hostname = hostname.trim();
    let names_us = |name: &str| {
        name.strip_prefix(hostname)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    };
    let ip = contents.lines().find_map(|line| {
        let mut fields = line.split('#').next()?.split_whitespace();
        let ip: IpAddr = fields.next()?.parse().ok()?;
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => v6.is_unicast_link_local(),
        };
        let usable = !ip.is_loopback() && !ip.is_unspecified() && !link_local;
        (usable && fields.any(names_us)).then_some(ip)
    });
    ip.filter(|_| !hostname.is_empty()).map(|ip| ip.to_string())
}
