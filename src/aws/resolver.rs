//! Host name resolution that survives a pids limit.
//!
//! ureq's `DefaultResolver` runs `getaddrinfo` on a new thread for every
//! request that has a timeout (all of ours do), with `std::thread::spawn`:
//! when the container's pids limit is reached, that panics, and with
//! `panic = "abort"` the process dies, possibly in the middle of the
//! DeregisterTargets that follows SIGTERM. This resolver:
//!
//! - answers IP literals (`127.0.0.1`, `[::1]`, the IMDS and Pod Identity
//!   addresses) at once, without a thread or DNS;
//! - resolves names on a thread started with `std::thread::Builder`, so the
//!   request's timeout bounds the lookup as before;
//! - when no thread can be started, logs it and resolves on the calling
//!   thread (bounded by the system resolver's own timeouts) instead of
//!   aborting.

use log::warn;
use std::net::IpAddr;
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::time::Duration as Wait;
use ureq::unversioned::transport::NextTimeout;

/// See the module docs.
#[derive(Debug, Default)]
pub struct SpawnSafeResolver;

/// Whether `uri`'s host is an IP address (v6 in brackets).
fn is_ip_literal(uri: &Uri) -> bool {
    uri.host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .is_some_and(|h| h.parse::<IpAddr>().is_ok())
}

impl Resolver for SpawnSafeResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        // DefaultResolver resolves on the calling thread when it has no timeout.
        let here = NextTimeout {
            after: Wait::NotHappening,
            ..timeout
        };
        if is_ip_literal(uri) || timeout.after.is_not_happening() {
            return DefaultResolver::default().resolve(uri, config, here);
        }
        let (tx, rx) = sync_channel(1);
        let (u, c) = (uri.clone(), config.clone());
        let spawned = std::thread::Builder::new()
            .name("resolve".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = tx.send(DefaultResolver::default().resolve(&u, &c, here));
            });
        match spawned {
            Ok(_) => match rx.recv_timeout(*timeout.after) {
                Ok(answer) => answer,
                Err(RecvTimeoutError::Timeout) => Err(ureq::Error::Timeout(timeout.reason)),
                Err(RecvTimeoutError::Disconnected) => Err(ureq::Error::HostNotFound),
            },
            Err(e) => {
                warn!("cannot start a thread to resolve a host name (pids limit?): {e}; resolving without a timeout");
                DefaultResolver::default().resolve(uri, config, here)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_need_no_lookup() {
        let lit = |s: &str| is_ip_literal(&s.parse::<Uri>().unwrap());
        assert!(lit("http://127.0.0.1:8080/x"));
        assert!(lit("http://[fd00:ec2::254]/latest"));
        assert!(lit("http://169.254.170.23/v1/credentials"));
        assert!(!lit(
            "https://elasticloadbalancing.us-east-1.amazonaws.com/"
        ));
        assert!(!lit("http://localhost:1/"));
    }

    #[test]
    fn resolves_literals_and_names() {
        let config = Config::default();
        let t = NextTimeout {
            after: Wait::Exact(std::time::Duration::from_secs(5)),
            reason: ureq::Timeout::Global,
            ..NextTimeout::default()
        };
        let uri: Uri = "http://127.0.0.1:9/".parse().unwrap();
        let got = SpawnSafeResolver.resolve(&uri, &config, t).unwrap();
        assert_eq!(got[0], "127.0.0.1:9".parse().unwrap());
        // A name goes through the lookup thread (/etc/hosts: no network).
        let uri: Uri = "http://localhost:9/".parse().unwrap();
        let got = SpawnSafeResolver.resolve(&uri, &config, t).unwrap();
        assert!(
            got.iter().all(|a| a.ip().is_loopback() && a.port() == 9),
            "{got:?}"
        );
    }
}
