//! The lifecycle's [`Effects`] on the real system: hooks, waiting for the
//! app, the TCP table (its tests use a fake).
//!
//! `-wait-for-tcp` and `-wait-for-http` let a scratch image (where no
//! command can run) hold the registration until the app listens or answers
//! 2xx: a try every 500 ms (1 s connect / 2 s request timeout), and an
//! event ends the wait at once.

use crate::aws::error::snippet;
use crate::aws::http::{HttpRequest, Transport};
use crate::clock::Clock;
use crate::config::{Config, Hook};
use crate::hooks::{self, Outcome};
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
    /// For `-wait-for-http` and HTTP hooks.
    pub transport: T,
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
        app_ready(tcp.as_deref(), http.as_deref(), &transport, CHECK_TIMEOUT)
    }))
}

/// `-wait-for-tcp`, then `-wait-for-http` with a request `timeout`.
fn app_ready<T: Transport>(
    tcp: Option<&str>,
    http: Option<&str>,
    transport: &T,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(addr) = tcp {
        tcp_ready(addr)?;
    }
    if let Some(url) = http {
        http_ready(transport, url, timeout)?;
    }
    Ok(())
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

impl<T: Transport + Clone + Send + 'static> Effects for SystemEffects<T> {
    fn run_hook(&mut self, hook: &Hook, clock: &mut dyn Clock) -> Outcome {
        hooks::run(hook, &self.transport, clock)
    }

    fn wait_for_app(&mut self, cfg: &Config, clock: &mut dyn Clock) -> Result<(), AppWait> {
        if !cfg.has_app_check() {
            return Ok(());
        }
        let deadline = clock.now() + cfg.wait_for_timeout;
        let (tcp, http) = (cfg.wait_for_tcp.as_deref(), cfg.wait_for_http.as_deref());
        for attempt in 0u64.. {
            let Err(why) = app_ready(tcp, http, &self.transport, Duration::from_secs(2)) else {
                break;
            };
            if attempt == 0 {
                info!("waiting for the app: {why}");
            }
            let now = clock.now();
            if now >= deadline {
                return Err(AppWait::TimedOut(why));
            }
            clock
                .sleep(APP_POLL.min(deadline - now))
                .map_err(|_| AppWait::Interrupted)?;
        }
        info!("the app is up");
        Ok(())
    }

    fn app_up(&mut self, cfg: &Config) -> Option<Result<(), String>> {
        cfg.has_app_check().then(|| {
            let (tcp, http) = (cfg.wait_for_tcp.as_deref(), cfg.wait_for_http.as_deref());
            app_ready(tcp, http, &self.transport, Duration::from_secs(2))
        })
    }

    fn tcp_table(&mut self) -> Result<Vec<crate::tcp_table::Entry>, String> {
        crate::tcp_table::read()
    }

    fn passive_opens(&mut self) -> Result<u64, String> {
        crate::tcp_table::read_passive_opens()
    }
}
