//! Hooks around the registration steps: a command or an HTTP GET (for
//! images where no command can run), bounded by a timeout and cut short by
//! a signal or drain request.

pub mod command;
pub mod reaper;

use crate::aws::error::{redact_url, snippet, Error, TransportKind};
use crate::aws::http::{HttpRequest, HttpResponse, Transport};
use crate::clock::Clock;
use crate::config::{Hook, HookAction};
use std::sync::mpsc::channel;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(20);

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0, or an HTTP 2xx answer.
    Success,
    /// Not started, non-zero exit, killed by a signal, another HTTP answer or none.
    Failed(String),
    /// It ran past its timeout (a command is killed).
    TimedOut,
    /// A signal or drain request arrived (a command is killed).
    Interrupted,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Success => f.write_str("succeeded"),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
            Outcome::TimedOut => f.write_str("timed out and was killed"),
            Outcome::Interrupted => f.write_str("interrupted and killed"),
        }
    }
}

/// Runs `hook` (an HTTP one through `transport`) and logs how it ended.
pub fn run<T>(hook: &Hook, transport: &T, clock: &mut dyn Clock) -> Outcome
where
    T: Transport + Clone + Send + 'static,
{
    let out = match &hook.action {
        HookAction::Command(_) => command::run(hook, clock),
        HookAction::Http(url) => get(hook, url, transport.clone(), clock),
    };
    match out {
        Outcome::Success => log::info!("{} {out}", hook.describe()),
        _ => log::warn!("{} {out}", hook.describe()),
    }
    out
}

/// Calls `done` every [`POLL`] until it has an outcome, `timeout` passes
/// or the `clock` is interrupted.
fn wait(
    clock: &mut dyn Clock,
    timeout: Duration,
    mut done: impl FnMut() -> Option<Outcome>,
) -> Outcome {
    let deadline = clock.now() + timeout;
    loop {
        if let Some(out) = done() {
            return out;
        }
        let now = clock.now();
        if now >= deadline {
            return Outcome::TimedOut;
        }
        if clock.sleep(POLL.min(deadline - now)).is_err() {
            return Outcome::Interrupted;
        }
    }
}

/// What an answer (or its absence) means for the hook.
fn outcome(answer: &Result<HttpResponse, Error>) -> Outcome {
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

/// GETs `url` for `hook` within its timeout, unless the `clock` is interrupted:
/// 2xx is success (no redirects). The request runs on a thread of its own, so
/// an event ends the wait (the request then ends by its own timeout).
fn get(
    hook: &Hook,
    url: &str,
    t: impl Transport + Send + 'static,
    clock: &mut dyn Clock,
) -> Outcome {
    log::info!("calling {} HTTP hook: GET {}", hook.name, redact_url(url));
    let req = HttpRequest {
        method: "GET",
        url: url.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
        timeout: hook.timeout,
    };
    let action = hook.describe();
    let (tx, rx) = channel();
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
