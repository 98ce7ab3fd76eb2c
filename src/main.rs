//! `k8s-nlb-registrator-sidecar`: the binary. See the crate docs and README.
//!
//! `main` registers the signal handlers before anything else (before any
//! thread starts), parses the command line, starts logging and the optional
//! status listener, then hands over to the lifecycle (or, with `-check`,
//! to the preflight report). Every error ends in one line on stderr and a
//! documented exit code: 0 clean, 1 runtime failure, 2 bad usage or
//! configuration.

#![forbid(unsafe_code)]

use k8s_nlb_registrator_sidecar::aws::credentials::assume_role::Role;
use k8s_nlb_registrator_sidecar::aws::http::UreqTransport;
use k8s_nlb_registrator_sidecar::aws::{Client, Settings};
use k8s_nlb_registrator_sidecar::clock::SplitMix;
use k8s_nlb_registrator_sidecar::config::{self, Action};
use k8s_nlb_registrator_sidecar::env::{Env, ProcessEnv};
use k8s_nlb_registrator_sidecar::hooks::{program, reaper};
use k8s_nlb_registrator_sidecar::lifecycle::{Lifecycle, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use k8s_nlb_registrator_sidecar::logging;
use k8s_nlb_registrator_sidecar::preflight;
use k8s_nlb_registrator_sidecar::signals::{self, SignalClock};
use k8s_nlb_registrator_sidecar::status::{self, Status};
use k8s_nlb_registrator_sidecar::system::{self, SystemEffects};
use std::sync::mpsc::channel;
use std::time::{Duration, SystemTime};

const PROGRAM: &str = "k8s-nlb-registrator-sidecar";

/// SDK settings we do not read, and what to use instead: a user who set
/// one is told it is ignored (never its value).
const IGNORED: [(&str, &str); 6] = [
    ("AWS_PROFILE", NO_FILES),
    ("AWS_DEFAULT_PROFILE", NO_FILES),
    ("AWS_CONFIG_FILE", NO_FILES),
    ("AWS_SHARED_CREDENTIALS_FILE", NO_FILES),
    ("AWS_MAX_ATTEMPTS", NO_RETRY_COUNT),
    ("AWS_RETRY_MODE", NO_RETRY_COUNT),
];
const NO_FILES: &str = "profiles and the shared config files are not supported; use IRSA, \
    EKS Pod Identity, IMDS or AWS_ACCESS_KEY_ID, AWS_REGION, AWS_ENDPOINT_URL*";
const NO_RETRY_COUNT: &str = "retries are bounded by time; use -register-timeout, \
    -deregister-timeout and -wait-in-service-timeout";

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
    logging::init(&cfg, ProcessEnv.var("RUST_LOG"));
    for (name, instead) in IGNORED {
        if ProcessEnv.var(name).is_some() {
            log::warn!("{name} is set but ignored: {instead}");
        }
    }
    if std::process::id() == 1 {
        // PID 1 of a PID namespace (a scratch image): orphans of hooks are ours.
        if let Err(e) = reaper::start_reaper() {
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
        cfg.target_id.parse().ok(),
    ) {
        Ok(t) => t,
        Err(e) => return fail(EXIT_USAGE, &e.to_string()),
    };

    if cfg.check {
        // -check: report and exit; no status listener, nothing registered.
        drop(tx);
        let mut client = Client::new(transport, settings);
        let mut clock = SignalClock::new(rx, SplitMix::seed_from_env());
        let mut findings = preflight::gather(&cfg, &mut client, &mut clock);
        let path = std::env::var("PATH").ok();
        findings.hooks = preflight::gather_hooks(&cfg, path.as_deref(), &program::path_kind);
        let report = preflight::report(&cfg, &findings);
        print!("{}", report.render());
        return report.exit_code();
    }

    status.set_app_check(system::lb_app_check(&cfg, transport.clone()));
    if let Some(addr) = &cfg.lb_health_addr {
        match status::start_lb_health(addr, status.clone()) {
            Ok(()) => {}
            Err(e @ status::StartError::Bind(_)) => return fail(EXIT_USAGE, &e.to_string()),
            Err(e @ status::StartError::Thread(_)) => return fail(EXIT_FAILURE, &e.to_string()),
        }
    }
    if let Some(addr) = &cfg.status_addr {
        // A /drain answer waits for the whole shutdown at most (and a margin).
        let drain_timeout = k8s_nlb_registrator_sidecar::lifecycle::shutdown_budget(&cfg)
            .saturating_add(Duration::from_secs(5));
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
    let mut clock = SignalClock::new(rx, SplitMix::seed_from_env());
    let code = Lifecycle::new(&cfg, &mut client, &mut effects, &mut clock, &status).run();
    // The lifecycle has recorded its outcome in `status`: a /drain still
    // arriving, or still on its way in the event channel, is answered with it.
    drop(clock);
    status.flush_drain_responses(Duration::from_secs(2));
    code
}
