//! The lifecycle's [`Effects`] on the real system: hooks, the app checks
//! (`-wait-for-tcp` / `-wait-for-http`: 1 s connect, 2 s request timeout)
//! and the TCP table.

use crate::aws::error::{redact_url, snippet, Error};
use crate::aws::http::{HttpRequest, Transport};
use crate::clock::Clock;
use crate::config::{Config, Hook, HookAction};
use crate::hooks::{command, wait, Outcome};
use crate::lifecycle::Effects;
use crate::status::AppCheck;
use crate::tcp_table;
use log::{info, warn};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::channel;
use std::time::Duration;

/// The lifecycle's [`Effects`] on the real system; `-wait-for-http` and
/// HTTP hooks go through its transport.
pub struct SystemEffects<T: Transport>(pub T);

/// GETs `url` (redirects are not followed): `Ok(Err(why))` for an answer
/// other than a 2xx.
fn get(
    t: &impl Transport,
    action: &str,
    url: &str,
    timeout: Duration,
) -> Result<Result<(), String>, Error> {
    let req = HttpRequest {
        method: "GET",
        url: url.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
        timeout,
    };
    let r = t.send(action, &req)?;
    Ok(match r.status {
        200..=299 => Ok(()),
        s => Err(format!("HTTP {s}: {}", snippet(&r.body))),
    })
}

/// An HTTP hook: its GET runs on a thread of its own, so an event ends the
/// wait. The request may take a second longer: the wait times out first.
fn http_hook(
    hook: &Hook,
    url: &str,
    t: impl Transport + Send + 'static,
    clock: &mut dyn Clock,
) -> Outcome {
    info!("calling {} HTTP hook: GET {}", hook.name, redact_url(url));
    let (url, action) = (url.to_owned(), hook.describe());
    let timeout = hook.timeout.saturating_add(Duration::from_secs(1));
    let (tx, rx) = channel();
    let spawned = std::thread::Builder::new()
        .name("http-hook".into())
        .stack_size(1024 * 1024) // name resolution may need some
        .spawn(move || tx.send(get(&t, &action, &url, timeout)));
    // The thread always answers (its send returns whatever happens).
    let answered = || match rx.try_recv().ok()? {
        Ok(Ok(())) => Some(Outcome::Success),
        Ok(Err(why)) => Some(Outcome::Failed(why)),
        Err(e) => Some(Outcome::Failed(e.to_string())),
    };
    match spawned {
        Ok(_) => wait(clock, hook.timeout, answered),
        Err(e) => Outcome::Failed(format!("cannot start a thread (pids limit?): {e}")),
    }
}

/// The app check of `/lb-health`, its request bounded by 1 s.
pub fn lb_app_check(cfg: &Config, t: impl Transport + Send + Sync + 'static) -> AppCheck {
    let cfg = cfg.clone();
    Box::new(move || app_ready(&cfg, &t, Duration::from_secs(1)))
}

/// `-wait-for-tcp`, then `-wait-for-http` with a request `timeout`.
fn app_ready<T: Transport>(cfg: &Config, transport: &T, timeout: Duration) -> Result<(), String> {
    if let Some(addr) = &cfg.wait_for_tcp {
        let addrs = addr
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {addr}: {e}"))?;
        // The first address that takes the connection, else the last error.
        let connect = |a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).map(drop);
        let none = Err(format!("{addr} resolved to no address"));
        addrs.fold(none, |r, a| {
            r.or_else(|_| connect(a).map_err(|e| format!("{a}: {e}")))
        })?;
    }
    let Some(url) = &cfg.wait_for_http else {
        return Ok(());
    };
    let answer = get(transport, "wait-for-http", url, timeout).map_err(|e| e.to_string())?;
    answer.map_err(|why| format!("{url} answered {why}"))
}

impl<T: Transport + Clone + Send + 'static> Effects for SystemEffects<T> {
    fn run_hook(&mut self, hook: &Hook, clock: &mut dyn Clock) -> Outcome {
        let out = match &hook.action {
            HookAction::Command(_) => command::run(hook, clock),
            HookAction::Http(url) => http_hook(hook, url, self.0.clone(), clock),
        };
        match out {
            Outcome::Success => info!("{} {out}", hook.describe()),
            _ => warn!("{} {out}", hook.describe()),
        }
        out
    }

    fn app_up(&mut self, cfg: &Config) -> Option<Result<(), String>> {
        let timeout = Duration::from_secs(2);
        cfg.has_app_check()
            .then(|| app_ready(cfg, &self.0, timeout))
    }

    fn tcp_sample(&mut self) -> Result<(u64, Vec<tcp_table::Entry>), String> {
        tcp_table::sample()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_succeeds_on_2xx_only() {
        use crate::aws::tests::{ok, status, Scripted};
        let s = Scripted::new([
            ok(b""),
            status(204, b""),
            status(302, b""),
            status(500, b"nope"),
        ]);
        let get = || get(&&s, "x", "http://127.0.0.1:1/in", Duration::from_secs(1));
        assert_eq!(get(), Ok(Ok(())));
        assert_eq!(get(), Ok(Ok(())));
        assert_eq!(get(), Ok(Err("HTTP 302: empty body".into())));
        assert_eq!(get(), Ok(Err("HTTP 500: nope".into())));
        let seen = s.seen.borrow();
        assert_eq!(
            (seen[0].method, &seen[0].url[..]),
            ("GET", "http://127.0.0.1:1/in")
        );
        drop(seen);
        assert!(matches!(get(), Err(Error::Transport { .. })));
    }
}
