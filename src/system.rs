//! The real system behind the lifecycle: [`SystemEffects`] implements its
//! [`Effects`] with real processes, sockets and `/proc` (hooks through
//! [`hooks`], waiting for the app, the TCP table), where the lifecycle's
//! tests use a fake.
//!
//! `-wait-for-tcp HOST:PORT` and `-wait-for-http URL` let a scratch image
//! (where no command can run) hold the registration until the app listens
//! or answers 2xx. Both poll every 500 ms, each try bounded by a 1 s
//! connect / 2 s request timeout, and an event ends the wait at once.

use crate::aws::error::snippet;
use crate::aws::http::{HttpRequest, Transport};
use crate::clock::Clock;
use crate::config::{Config, Hook};
use crate::hooks::{self, HttpRoutes, Outcome};
use crate::lb_health::{AppCheck, CHECK_TIMEOUT};
use crate::lifecycle::{AppWait, Effects};
use log::info;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const APP_POLL: Duration = Duration::from_millis(500);

/// The lifecycle's [`Effects`] on the real system: hooks through
/// [`hooks::run`], app checks over TCP and `transport`, the TCP table from
/// `/proc`.
pub struct SystemEffects<T: Transport> {
    /// Used for `-wait-for-http`, and HTTP hooks to other hosts.
    pub transport: T,
    /// Never proxied: HTTP hooks to loopback, link-local and pod-local URLs.
    pub direct: T,
    /// The pod's IP (the target id): URLs on it are pod-local.
    pub pod_ip: String,
}

/// The app check of `/lb-health`: `-wait-for-tcp` then `-wait-for-http`
/// (`None` when neither is set), each bounded by
/// [`lb_health::CHECK_TIMEOUT`](crate::lb_health::CHECK_TIMEOUT).
pub fn lb_app_check<T: Transport + Send + Sync + 'static>(
    cfg: &Config,
    transport: T,
) -> Option<AppCheck> {
    let (tcp, http) = (cfg.wait_for_tcp.clone(), cfg.wait_for_http.clone());
    if tcp.is_none() && http.is_none() {
        return None;
    }
    Some(Box::new(move || {
        if let Some(addr) = &tcp {
            tcp_ready(addr)?;
        }
        if let Some(url) = &http {
            http_ready(&transport, url, CHECK_TIMEOUT)?;
        }
        Ok(())
    }))
}

fn tcp_ready(addr: &str) -> Result<(), String> {
    let addrs = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?;
    let mut last = format!("{addr} resolved to no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(1)) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    Err(last)
}

fn http_ready<T: Transport>(transport: &T, url: &str, timeout: Duration) -> Result<(), String> {
    let req = HttpRequest {
        method: "GET",
        url: url.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
        timeout,
    };
    match transport.send("wait-for-http", &req) {
        Ok(r) if (200..300).contains(&r.status) => Ok(()),
        Ok(r) => Err(format!(
            "{url} answered HTTP {}: {}",
            r.status,
            snippet(&r.body)
        )),
        Err(e) => Err(e.to_string()),
    }
}

impl<T: Transport> SystemEffects<T> {
    fn http_ready(&self, url: &str) -> Result<(), String> {
        http_ready(&self.transport, url, Duration::from_secs(2))
    }
}

impl<T: Transport + Clone + Send + 'static> Effects for SystemEffects<T> {
    fn run_hook(&mut self, hook: &Hook, clock: &mut dyn Clock) -> Outcome {
        let routes = HttpRoutes {
            proxied: &self.transport,
            direct: &self.direct,
            pod_ip: &self.pod_ip,
        };
        hooks::run(hook, routes, clock)
    }

    fn wait_for_app(&mut self, cfg: &Config, clock: &mut dyn Clock) -> Result<(), AppWait> {
        if cfg.wait_for_tcp.is_none() && cfg.wait_for_http.is_none() {
            return Ok(());
        }
        let deadline = clock.now() + cfg.wait_for_timeout;
        let mut logged = false;
        loop {
            let check = match (&cfg.wait_for_tcp, &cfg.wait_for_http) {
                (Some(addr), _) => tcp_ready(addr).and_then(|()| match &cfg.wait_for_http {
                    Some(url) => self.http_ready(url),
                    None => Ok(()),
                }),
                (None, Some(url)) => self.http_ready(url),
                (None, None) => Ok(()),
            };
            match check {
                Ok(()) => {
                    info!("the app is up");
                    return Ok(());
                }
                Err(why) => {
                    if !logged {
                        info!("waiting for the app: {why}");
                        logged = true;
                    }
                    let now = clock.now();
                    if now >= deadline {
                        return Err(AppWait::TimedOut(why));
                    }
                    clock
                        .sleep(APP_POLL.min(deadline - now))
                        .map_err(|_| AppWait::Interrupted)?;
                }
            }
        }
    }

    fn tcp_table(&mut self) -> Result<Vec<crate::tcp_table::Entry>, String> {
        crate::tcp_table::read()
    }

    fn passive_opens(&mut self) -> Result<u64, String> {
        crate::tcp_table::read_passive_opens()
    }
}
