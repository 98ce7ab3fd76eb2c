//! Hooks around the registration steps: a command or an HTTP GET (for
//! images where no command can run; `system` sends it), bounded by a timeout
//! and cut short by a signal or drain request.

pub mod command;
pub mod reaper;

use crate::clock::Clock;
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

/// Calls `done` every [`POLL`] until it has an outcome, `timeout` passes
/// or the `clock` is interrupted.
pub(crate) fn wait(
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
