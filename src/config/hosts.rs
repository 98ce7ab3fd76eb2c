//! The pod's own IP from `/etc/hosts`, the last fallback for `-target-id`.
//!
//! Kubernetes writes `IP<TAB>HOSTNAME` for the pod into its hosts file. The
//! reading is the caller's (`main`); finding the line is pure.

use std::net::IpAddr;

/// Finds the pod's own IP in a hosts file: the address on the line that
/// names `hostname` (Kubernetes writes `IP<TAB>HOSTNAME` there), skipping
/// loopback addresses.
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
        if ip.is_loopback() || ip.is_unspecified() {
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
