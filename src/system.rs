//! The lifecycle's [`Effects`] on the real system: hooks, the app checks
//! (`-wait-for-tcp` / `-wait-for-http`: a try every 500 ms, 1 s connect,
//! 2 s request timeout; an event ends the wait at once) and the TCP table.

use crate::aws::error::snippet;
use crate::aws::http::{HttpRequest, Transport};
use crate::clock::Clock;
use crate::config::{Config, Hook};
use crate::hooks::{self, Outcome};
use crate::lb_health::{AppCheck, CHECK_TIMEOUT};
use crate::lifecycle::Effects;
use crate::tcp_table;
use log::info;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const APP_POLL: Duration = Duration::from_millis(500);

/// The lifecycle's [`Effects`] on the real system.
pub struct SystemEffects<T: Transport> {
    /// For `-wait-for-http` and HTTP hooks.
    pub transport: T,
}

/// The app check of `/lb-health` (`None` when neither `-wait-for-tcp` nor
/// `-wait-for-http` is set), its request bounded by [`CHECK_TIMEOUT`].
pub fn lb_app_check<T>(cfg: &Config, transport: T) -> Option<AppCheck>
where
    T: Transport + Send + Sync + 'static,
{
    let cfg = cfg.clone();
    cfg.has_app_check()
        .then(|| -> AppCheck { Box::new(move || app_ready(&cfg, &transport, CHECK_TIMEOUT)) })
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
    let req = HttpRequest {
        method: "GET",
        url: url.clone(),
        headers: Vec::new(),
        body: Vec::new(),
        timeout,
    };
    let r = transport
        .send("wait-for-http", &req)
        .map_err(|e| e.to_string())?;
    match r.status {
        200..=299 => Ok(()),
        s => Err(format!("{url} answered HTTP {s}: {}", snippet(&r.body))),
    }
}

impl<T: Transport + Clone + Send + 'static> Effects for SystemEffects<T> {
    fn run_hook(&mut self, hook: &Hook, clock: &mut dyn Clock) -> Outcome {
        hooks::run(hook, &self.transport, clock)
    }

    fn wait_for_app(&mut self, cfg: &Config, clock: &mut dyn Clock) -> Result<(), String> {
        let deadline = clock.now() + cfg.wait_for_timeout;
        let mut logged = false;
        while let Some(Err(why)) = self.app_up(cfg) {
            if !std::mem::replace(&mut logged, true) {
                info!("waiting for the app: {why}");
            }
            let left = deadline.saturating_duration_since(clock.now());
            if left.is_zero() {
                return Err(why);
            }
            if clock.sleep(APP_POLL.min(left)).is_err() {
                return Ok(()); // an event: the lifecycle sees it next
            }
        }
        if cfg.has_app_check() {
            info!("the app is up");
        }
        Ok(())
    }

    fn app_up(&mut self, cfg: &Config) -> Option<Result<(), String>> {
        let timeout = Duration::from_secs(2);
        cfg.has_app_check()
            .then(|| app_ready(cfg, &self.transport, timeout))
    }

    fn tcp_sample(&mut self) -> Result<(u64, Vec<tcp_table::Entry>), String> {
        Ok((tcp_table::read_passive_opens()?, tcp_table::read()?))
    }
}
