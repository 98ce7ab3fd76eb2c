//! Hooks: what the sidecar runs around its registration steps
//! (`-pre-register`, `-post-register`, `-post-deregister`, and their
//! `-*-http` twins), a command ([`command`]) or an HTTP GET ([`http`]),
//! each bounded by its step's timeout and cut short by a signal or drain
//! request. [`run`] dispatches on the hook's [`HookAction`]; both kinds end
//! in one [`Outcome`].
//!
//! [`reaper`] collects the orphans a command hook leaves behind when the
//! sidecar is PID 1 (a scratch image), without ever taking a hook's own
//! exit status. [`program`] finds a command hook's program as execvp(3)
//! would, for `-check`.

pub mod command;
pub mod http;
pub mod program;
pub mod reaper;

use crate::aws::http::Transport;
use crate::clock::Clock;
use crate::config::{Hook, HookAction};

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0, or an HTTP 2xx answer.
    Success,
    /// Non-zero exit, killed by a signal, another HTTP answer or none; the
    /// text says which.
    Failed(String),
    /// It ran past its timeout (a command is killed).
    TimedOut,
    /// A signal or drain request arrived: a command was killed, a request
    /// left to end by its own timeout.
    Interrupted,
    /// It could not be started (not found, not executable, no thread).
    NotStarted(String),
}

impl Outcome {
    /// Whether the hook succeeded.
    pub fn ok(&self) -> bool {
        *self == Outcome::Success
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Success => f.write_str("succeeded"),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
            Outcome::TimedOut => f.write_str("timed out and was killed"),
            Outcome::Interrupted => f.write_str("interrupted and killed"),
            Outcome::NotStarted(why) => write!(f, "could not be started: {why}"),
        }
    }
}

/// Runs `hook`: a command through [`command::run`], an HTTP GET through
/// [`http::run`] on `transport`. The `clock`'s events (a sleep that says
/// `Interrupted`) end the wait.
pub fn run<T>(hook: &Hook, transport: &T, clock: &mut dyn Clock) -> Outcome
where
    T: Transport + Clone + Send + 'static,
{
    match &hook.action {
        HookAction::Command(_) => command::run(hook, clock),
        HookAction::Http(url) => http::run(hook.name, url, hook.timeout, transport, clock),
    }
}
