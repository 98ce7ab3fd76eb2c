//! The pod's own IP from `/etc/hosts`, the last fallback for `-target-id`.
//!
//! Kubernetes writes `IP<TAB>HOSTNAME` for the pod into its hosts file (an
//! IPv6 address in an IPv6 cluster). The reading is the caller's (`main`);
//! finding the line is pure.

use std::net::IpAddr;

/// Finds the pod's own IP in a hosts file: the address on the line that
/// names `hostname` (Kubernetes writes `IP<TAB>HOSTNAME` there), skipping
/// loopback, unspecified and link-local addresses. The address comes back
/// in its canonical text (lowercase, zeros compressed for IPv6).
pub fn pod_ip_from_hosts(contents: &str, hostname: &str) -> Option<String> {
    let hostname = hostname.trim();
    if hostname.is_empty() {
        return None;
    }
    for line in contents.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let Some(addr) = fields.next() else { continue };
        let Ok(ip) = addr.parse::<IpAddr>() else {
            continue;
        };
        if ip.is_loopback() || ip.is_unspecified() || is_link_local(ip) {
            continue;
        }
        let matches = fields.any(|name| {
            name == hostname
                || name
                    .strip_prefix(hostname)
                    .map(|rest| rest.starts_with('.'))
                    .unwrap_or(false)
        });
        if matches {
            return Some(ip.to_string());
        }
    }
    None
}

/// `fe80::/10` and `169.254.0.0/16`: never a pod's address in a target group.
fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}
