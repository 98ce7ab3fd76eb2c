//! `k8s-nlb-registrator-sidecar`: the binary. See the crate docs and README.
//!
//! `main` registers the signal handlers before anything else (before any
//! thread starts), parses the command line, starts logging and the optional
//! status listener, then hands over to the lifecycle. Every error ends in
//! one line on stderr and a documented exit code: 0 clean, 1 runtime
//! failure, 2 bad usage or configuration.

#![forbid(unsafe_code)]

use k8s_nlb_registrator_sidecar::aws::credentials::assume_role::Role;
use k8s_nlb_registrator_sidecar::aws::http::UreqTransport;
use k8s_nlb_registrator_sidecar::aws::{Client, Settings};
use k8s_nlb_registrator_sidecar::clock::SplitMix;
use k8s_nlb_registrator_sidecar::command;
use k8s_nlb_registrator_sidecar::config::{self, Action, Config};
use k8s_nlb_registrator_sidecar::effects::{self, SystemEffects};
use k8s_nlb_registrator_sidecar::env::{Env, ProcessEnv};
use k8s_nlb_registrator_sidecar::lifecycle::{Lifecycle, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use k8s_nlb_registrator_sidecar::signals::{self, EventTimer};
use k8s_nlb_registrator_sidecar::status::{self, Status};
use std::io::Write;
use std::sync::mpsc::channel;
use std::time::{Duration, SystemTime};

const PROGRAM: &str = "k8s-nlb-registrator-sidecar";

fn main() {
    std::process::exit(try_main());
}

fn fail(code: i32, msg: &str) -> i32 {
    eprintln!("{PROGRAM}: {msg}");
    code
}

/// The pod's IP from /etc/hosts, for when no target id is configured.
fn detect_ip() -> Result<String, String> {
    let hostname = ProcessEnv
        .var("HOSTNAME")
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .ok_or("cannot tell this pod's hostname (HOSTNAME, /etc/hostname)")?;
    let hosts_path = ProcessEnv
        .var("NLB_HOSTS_FILE")
        .unwrap_or_else(|| "/etc/hosts".to_owned());
    let hosts = std::fs::read_to_string(&hosts_path)
        .map_err(|e| format!("cannot read {hosts_path}: {e}"))?;
    config::pod_ip_from_hosts(&hosts, &hostname)
        .ok_or_else(|| format!("no line for hostname {hostname:?} in {hosts_path}"))
}

fn init_logging(cfg: &Config) {
    let mut b = env_logger::Builder::new();
    match (&cfg.log_level, ProcessEnv.var("RUST_LOG")) {
        (Some(level), _) => {
            b.parse_filters(level);
        }
        (None, Some(filters)) => {
            b.parse_filters(&filters);
        }
        (None, None) => {
            b.parse_filters("info");
        }
    }
    b.format(|buf, record| {
        writeln!(
            buf,
            "{} {:<5} {}",
            humantime::format_rfc3339_millis(SystemTime::now()),
            record.level(),
            record.args()
        )
    });
    b.target(env_logger::Target::Stderr);
    let inner = b.build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(Guarded { inner })).is_ok() {
        log::set_max_level(max);
    }
}

/// Crates whose debug and trace output may hold secrets: ureq logs the
/// wire at trace (Authorization, X-Amz-Security-Token, the STS form body
/// with the web identity token), whatever the filters say.
const GUARDED: [&str; 3] = ["ureq", "ureq_proto", "rustls"];

/// The env_logger, with the guarded crates capped at `info` in a way no
/// `RUST_LOG` directive (however specific) can lift.
struct Guarded {
    inner: env_logger::Logger,
}

fn guarded(target: &str) -> bool {
    GUARDED.iter().any(|c| {
        target == *c
            || target
                .strip_prefix(c)
                .is_some_and(|rest| rest.starts_with("::"))
    })
}

impl log::Log for Guarded {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        (metadata.level() <= log::Level::Info || !guarded(metadata.target()))
            && self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

fn try_main() -> i32 {
    // Signals first: before any other thread exists. The status exists
    // already (no thread), so a signal fails /lb-health at once.
    let (tx, rx) = channel();
    let status = Status::new();
    let for_signals = status.clone();
    if let Err(e) = signals::forward_signals(tx.clone(), move || for_signals.begin_drain()) {
        return fail(
            EXIT_FAILURE,
            &format!("cannot install signal handlers: {e}"),
        );
    }
    let args = std::env::args_os().skip(1).collect();
    let cfg = match config::parse(args, &ProcessEnv, &mut detect_ip) {
        Ok(Action::Run(cfg)) => cfg,
        Ok(Action::Help) => {
            print!("{}", config::usage(PROGRAM));
            return EXIT_OK;
        }
        Ok(Action::Version) => {
            println!("{PROGRAM} {}", env!("CARGO_PKG_VERSION"));
            return EXIT_OK;
        }
        Err(e) => return fail(EXIT_USAGE, &e.to_string()),
    };
    let has_shell = std::path::Path::new(config::SHELL).is_file();
    if let Err(e) = config::check_shell(&cfg, has_shell) {
        return fail(EXIT_USAGE, &e.to_string());
    }
    init_logging(&cfg);
    if std::process::id() == 1 {
        // PID 1 of a PID namespace (a scratch image): orphans of hooks are ours.
        if let Err(e) = command::start_reaper() {
            log::warn!("cannot start the reaper of orphaned hook processes: {e}");
        }
    }

    let mut settings =
        match Settings::from_env(cfg.region.as_deref(), &ProcessEnv, SystemTime::now()) {
            Ok(s) => s,
            Err(e) => return fail(EXIT_USAGE, &e.to_string()),
        };
    settings.role = cfg
        .role
        .clone()
        .map(|r| Role::new(r.arn, r.external_id, r.session_name, SystemTime::now()));
    let bundle = match ProcessEnv.var("AWS_CA_BUNDLE") {
        Some(path) => match std::fs::read(&path) {
            Ok(pem) => Some((pem, path)),
            Err(e) => {
                return fail(
                    EXIT_USAGE,
                    &format!("cannot read AWS_CA_BUNDLE {path}: {e}"),
                )
            }
        },
        None => None,
    };
    let transport = match UreqTransport::new(
        bundle
            .as_ref()
            .map(|(pem, path)| (pem.as_slice(), path.as_str())),
    ) {
        Ok(t) => t,
        Err(e) => return fail(EXIT_USAGE, &e.to_string()),
    };

    status.set_app_check(effects::lb_app_check(&cfg, transport.clone()));
    if let Some(addr) = &cfg.lb_health_addr {
        match status::start_lb_health(addr, status.clone()) {
            Ok(()) => {}
            Err(e @ status::StartError::Bind(_)) => return fail(EXIT_USAGE, &e.to_string()),
            Err(e @ status::StartError::Thread(_)) => return fail(EXIT_FAILURE, &e.to_string()),
        }
    }
    if let Some(addr) = &cfg.status_addr {
        // A /drain answer waits for the whole shutdown at most.
        let drain_timeout = cfg.deregister_timeout
            + if cfg.wait_drained || cfg.drain_quiet_period.is_some() {
                cfg.wait_drained_timeout
            } else {
                Duration::ZERO
            }
            + cfg
                .post_deregister
                .as_ref()
                .map(|h| h.timeout)
                .unwrap_or_default()
            + Duration::from_secs(5);
        // Before anything is registered: a listener that cannot bind is a
        // configuration error, one whose threads cannot start (pids limit)
        // a runtime failure.
        match status::start(addr, status.clone(), tx.clone(), drain_timeout) {
            Ok(()) => {}
            Err(e @ status::StartError::Bind(_)) => return fail(EXIT_USAGE, &e.to_string()),
            Err(e @ status::StartError::Thread(_)) => return fail(EXIT_FAILURE, &e.to_string()),
        }
    }
    drop(tx);

    log::info!(
        "{PROGRAM} {}: target {} (from {}), {} target group(s), region {}, credentials from {}",
        env!("CARGO_PKG_VERSION"),
        cfg.target_id,
        cfg.target_id_source,
        cfg.groups.len(),
        settings.region,
        settings.credentials_label()
    );
    let mut effects = SystemEffects {
        transport: transport.clone(),
    };
    let mut client = Client::new(transport, settings);
    let mut clock = EventTimer::new(rx, SplitMix::seed_from_env());
    let code = Lifecycle::new(&cfg, &mut client, &mut effects, &mut clock, &status).run();
    // The lifecycle has recorded its outcome in `status`: a /drain still
    // arriving, or still on its way in the event channel, is answered with it.
    drop(clock);
    status.flush_drain_responses(Duration::from_secs(2));
    code
}
