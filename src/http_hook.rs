//! HTTP hooks (`-pre-register-http`, `-post-register-http`,
//! `-post-deregister-http`): a GET to an `http://` URL, for images where
//! no command can run (`FROM scratch`), so the sidecar can tell the app
//! "you are in the load balancer" or "you are out".
//!
//! Same semantics as the command hooks: 2xx is success (redirects are not
//! followed), anything else, no answer or a broken connection is a
//! failure, the step's `-*-timeout` bounds the whole request, and a
//! signal or drain request ends the wait where it ends a command hook's
//! (the request is left to end by its own timeout on a thread of its own,
//! as a killed command's pipes are left to their reader threads).
//!
//! Proxies: a URL on loopback, a link-local address or the pod's own IP
//! (the target id) always goes direct; any other host follows the proxy
//! variables like every other request ([`crate::aws::proxy`]).

use crate::aws::error::{redact_url, snippet, Error, TransportKind};
use crate::aws::http::{is_local_url, HttpRequest, Transport};
use crate::clock::Clock;
use crate::command::Outcome;
use log::{info, warn};
use std::net::IpAddr;
use std::sync::mpsc::{channel, TryRecvError};
use std::time::Duration;

/// How often a request in flight is checked (as a command hook's child is).
const POLL: Duration = Duration::from_millis(20);
/// Stack of the request thread (name resolution may need some).
const STACK_SIZE: usize = 1024 * 1024;

/// The host of an `http://` URL as an IP address, when it is one.
pub fn url_ip(url: &str) -> Option<IpAddr> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => host_port.split(':').next()?,
    };
    host.parse().ok()
}

/// Whether `url` must go direct: loopback, link-local, or `pod_ip`.
pub fn is_pod_local(url: &str, pod_ip: &str) -> bool {
    let pod: Option<IpAddr> = pod_ip.parse().ok();
    is_local_url(url) || (pod.is_some() && url_ip(url) == pod)
}

/// The URL without credentials, for logs (see [`redact_url`]).
pub fn redacted(url: &str) -> String {
    redact_url(url)
}

/// What an answer (or its absence) means for the hook.
pub fn outcome(answer: &Result<crate::aws::http::HttpResponse, Error>) -> Outcome {
    match answer {
        Ok(r) if (200..300).contains(&r.status) => Outcome::Success,
        Ok(r) => Outcome::Failed(format!("HTTP {}: {}", r.status, snippet(&r.body))),
        Err(Error::Transport {
            kind: TransportKind::Timeout,
            ..
        }) => Outcome::TimedOut,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// GETs `url` for the hook `name` through `transport` within `timeout`;
/// a signal or drain request (the `clock`'s sleep says `Interrupted`)
/// ends the wait.
pub fn run<T>(
    name: &str,
    url: &str,
    timeout: Duration,
    transport: &T,
    clock: &mut dyn Clock,
) -> Outcome
where
    T: Transport + Clone + Send + 'static,
{
    let shown = redacted(url);
    info!("calling {name} HTTP hook: GET {shown}");
    let req = HttpRequest {
        method: "GET",
        url: url.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
        timeout,
    };
    let action = format!("{name} HTTP hook");
    let (tx, rx) = channel();
    let t = transport.clone();
    let spawned = std::thread::Builder::new()
        .name("http-hook".into())
        .stack_size(STACK_SIZE)
        .spawn(move || {
            let _ = tx.send(t.send(&action, &req));
        });
    if let Err(e) = spawned {
        let out = Outcome::NotStarted(format!("cannot start a thread (pids limit?): {e}"));
        warn!("{name} HTTP hook {out}");
        return out;
    }
    let deadline = clock.now() + timeout;
    let out = loop {
        match rx.try_recv() {
            Ok(answer) => break outcome(&answer),
            Err(TryRecvError::Disconnected) => {
                break Outcome::Failed("the request thread ended without an answer".into())
            }
            Err(TryRecvError::Empty) => {}
        }
        let now = clock.now();
        if now >= deadline {
            break Outcome::TimedOut;
        }
        if clock.sleep(POLL.min(deadline - now)).is_err() {
            break Outcome::Interrupted;
        }
    };
    if out.ok() {
        info!("{name} HTTP hook succeeded");
    } else {
        warn!("{name} HTTP hook {out}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::http::HttpResponse;

    #[test]
    fn pod_local_urls_go_direct() {
        assert!(is_pod_local("http://127.0.0.1:8080/ready", "10.0.0.5"));
        assert!(is_pod_local("http://localhost/x", "10.0.0.5"));
        assert!(is_pod_local("http://[::1]:80/", "10.0.0.5"));
        assert!(is_pod_local("http://169.254.1.1/", "10.0.0.5"));
        assert!(is_pod_local("http://10.0.0.5:8080/in", "10.0.0.5"));
        assert!(is_pod_local("http://[fd00::5]:8080/in", "fd00::5"));
        assert!(is_pod_local("http://u:p@10.0.0.5/", "10.0.0.5"));
        assert!(!is_pod_local("http://10.0.0.6:8080/in", "10.0.0.5"));
        assert!(!is_pod_local("http://app.default.svc/in", "10.0.0.5"));
        assert!(!is_pod_local("http://10.0.0.50/", "10.0.0.5"));
    }

    #[test]
    fn credentials_are_not_logged() {
        assert_eq!(
            redacted("http://user:pw@10.0.0.5:80/a@b"),
            "http://***@10.0.0.5:80/a@b"
        );
        assert_eq!(redacted("http://10.0.0.5/a@b"), "http://10.0.0.5/a@b");
    }

    #[test]
    fn two_hundreds_succeed_the_rest_fail() {
        let answer = |status: u16| {
            Ok(HttpResponse {
                status,
                date: None,
                body: b"nope".to_vec(),
            })
        };
        assert_eq!(outcome(&answer(200)), Outcome::Success);
        assert_eq!(outcome(&answer(204)), Outcome::Success);
        assert_eq!(
            outcome(&answer(500)),
            Outcome::Failed("HTTP 500: nope".into())
        );
        assert!(matches!(outcome(&answer(302)), Outcome::Failed(_)));
        let timeout = Err(Error::Transport {
            action: "x".into(),
            url: "http://127.0.0.1/".into(),
            kind: TransportKind::Timeout,
            detail: "slow".into(),
        });
        assert_eq!(outcome(&timeout), Outcome::TimedOut);
        let refused = Err(Error::Transport {
            action: "x".into(),
            url: "http://127.0.0.1/".into(),
            kind: TransportKind::Connect,
            detail: "refused".into(),
        });
        assert!(matches!(outcome(&refused), Outcome::Failed(_)));
    }
}
