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
//! Proxies: as every request ([`crate::aws::http::goes_direct`]).

use super::Outcome;
use crate::aws::error::{redact_url, snippet, Error, TransportKind};
use crate::aws::http::{HttpRequest, Transport};
use crate::clock::Clock;
use log::{info, warn};
use std::sync::mpsc::{channel, TryRecvError};
use std::time::Duration;

/// How often a request in flight is checked (as a command hook's child is).
const POLL: Duration = Duration::from_millis(20);
/// Stack of the request thread (name resolution may need some).
const STACK_SIZE: usize = 1024 * 1024;

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
