//! HTTP hooks: a GET, for images where no command can run. 2xx is success
//! (no redirects); the request runs on a thread of its own, so an event
//! ends the wait (the request then ends by its own timeout).

use super::{wait, Outcome};
use crate::aws::error::{redact_url, snippet, Error, TransportKind};
use crate::aws::http::{HttpRequest, HttpResponse, Transport};
use crate::clock::Clock;
use crate::config::Hook;
use log::info;
use std::sync::mpsc::channel;

/// What an answer (or its absence) means for the hook.
pub fn outcome(answer: &Result<HttpResponse, Error>) -> Outcome {
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

/// GETs `url` for `hook` within its timeout, unless the `clock` is interrupted.
pub fn run<T>(hook: &Hook, url: &str, transport: &T, clock: &mut dyn Clock) -> Outcome
where
    T: Transport + Clone + Send + 'static,
{
    info!("calling {} HTTP hook: GET {}", hook.name, redact_url(url));
    let req = HttpRequest {
        method: "GET",
        url: url.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
        timeout: hook.timeout,
    };
    let action = hook.describe();
    let (tx, rx) = channel();
    let t = transport.clone();
    let spawned = std::thread::Builder::new()
        .name("http-hook".into())
        .stack_size(1024 * 1024) // name resolution may need some
        .spawn(move || tx.send(t.send(&action, &req)));
    if let Err(e) = spawned {
        return Outcome::Failed(format!("cannot start a thread (pids limit?): {e}"));
    }
    // The thread always answers (its send returns whatever happens).
    wait(clock, hook.timeout, || {
        rx.try_recv().ok().map(|a| outcome(&a))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::http::HttpResponse;

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
