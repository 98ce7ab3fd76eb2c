//! Hooks around the registration steps: a command or an HTTP GET, bounded
//! by a timeout and cut short by a signal or drain request.

pub mod command;
pub mod http;
pub mod reaper;

use crate::aws::http::Transport;
use crate::clock::Clock;
use crate::config::{Hook, HookAction};
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
        HookAction::Http(url) => http::run(hook, url, transport, clock),
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
