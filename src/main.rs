//! The binary: signal handlers first (before any thread), then config,
//! logging, listeners and the lifecycle (or `-check`'s report). An error is
//! one line on stderr and exit 1 (runtime) or 2 (usage or configuration).

#![forbid(unsafe_code)]

use k8s_nlb_registrator_sidecar::aws::credentials::Role;
use k8s_nlb_registrator_sidecar::aws::http::UreqTransport;
use k8s_nlb_registrator_sidecar::aws::{Client, Settings};
use k8s_nlb_registrator_sidecar::config::{self, Action, Config, PROGRAM, VERSION};
use k8s_nlb_registrator_sidecar::env::{Env, ProcessEnv};
use k8s_nlb_registrator_sidecar::hooks::reaper;
use k8s_nlb_registrator_sidecar::lifecycle::{self, Lifecycle, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use k8s_nlb_registrator_sidecar::signals::{self, Event, SignalClock};
use k8s_nlb_registrator_sidecar::status::{self, Status};
use k8s_nlb_registrator_sidecar::system::{self, SystemEffects};
use k8s_nlb_registrator_sidecar::{logging, preflight};
use std::net::TcpListener;
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// An exit code and the one line that explains it.
type Failure = (i32, String);

/// SDK settings we do not read, and what to use instead (a warning; never the value).
const IGNORED: [(&str, &str); 2] = [
    (
        "AWS_PROFILE AWS_DEFAULT_PROFILE AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE",
        "profiles and the shared config files are not supported; use IRSA, \
         EKS Pod Identity, IMDS or AWS_ACCESS_KEY_ID, AWS_REGION, AWS_ENDPOINT_URL*",
    ),
    (
        "AWS_MAX_ATTEMPTS AWS_RETRY_MODE",
        "retries are bounded by time; use -register-timeout, \
         -deregister-timeout and -wait-in-service-timeout",
    ),
];

fn main() {
    std::process::exit(try_main().unwrap_or_else(|(code, msg)| {
        eprintln!("{PROGRAM}: {msg}");
        code
    }));
}

fn usage(e: String) -> Failure {
    (EXIT_USAGE, e)
}

fn runtime(e: String) -> Failure {
    (EXIT_FAILURE, e)
}

fn try_main() -> Result<i32, Failure> {
    // Signals first: before any other thread exists. The status exists
    // already (no thread), so a signal fails /lb-health at once.
    let (tx, rx) = channel();
    let status = Status::new();
    let for_signals = status.clone();
    signals::forward_signals(tx.clone(), move || for_signals.begin_drain())
        .map_err(|e| runtime(format!("cannot install signal handlers: {e}")))?;
    let args = std::env::args_os().skip(1).collect();
    let cfg = match config::parse(args, &ProcessEnv).map_err(usage)? {
        Action::Run(cfg) => cfg,
        Action::Print(text) => {
            print!("{text}");
            return Ok(EXIT_OK);
        }
    };
    logging::init(&cfg, ProcessEnv.var("RUST_LOG"));
    for (names, instead) in IGNORED {
        for name in names.split(' ').filter(|n| ProcessEnv.var(n).is_some()) {
            log::warn!("{name} is set but ignored: {instead}");
        }
    }
    // The EKS webhook sets `regional` everywhere: only `legacy` is news.
    if ProcessEnv.var("AWS_STS_REGIONAL_ENDPOINTS").as_deref() == Some("legacy") {
        log::warn!(
            "AWS_STS_REGIONAL_ENDPOINTS=legacy is ignored: STS is called at its regional endpoint"
        );
    }
    // PID 1 of a PID namespace (a scratch image): orphans of hooks are ours.
    if let Some(Err(e)) = (std::process::id() == 1).then(reaper::start_reaper) {
        log::warn!("cannot start the reaper of orphaned hook processes: {e}");
    }
    let now = SystemTime::now();
    let mut settings = Settings::from_env(cfg.region.as_deref(), &ProcessEnv, now)
        .map_err(|e| usage(e.to_string()))?;
    let (external_id, session_name) = (&cfg.role_external_id, &cfg.role_session_name);
    let role = |arn| Role::new(arn, external_id.clone(), session_name.clone(), now);
    settings.role = cfg.role_arn.clone().map(role);
    // Trusting AWS_CA_BUNDLE's roots when set; requests to the pod itself go direct.
    let ca = ProcessEnv.var("AWS_CA_BUNDLE");
    let read =
        |p| std::fs::read(p).map_err(|e| usage(format!("cannot read AWS_CA_BUNDLE {p}: {e}")));
    let pem = ca.as_ref().map(read).transpose()?;
    let roots = pem.as_deref().zip(ca.as_deref());
    let transport =
        UreqTransport::new(roots, cfg.target_id.parse().ok()).map_err(|e| usage(e.to_string()))?;
    let mut clock = SignalClock::new(rx);
    if cfg.check {
        // -check: the report on stdout, and exit; no status listener, nothing registered.
        drop(tx);
        let path = std::env::var("PATH").ok();
        let mut client = Client::new(transport, settings);
        let (report, code) = preflight::check(&cfg, &mut client, &mut clock, path.as_deref());
        print!("{report}");
        return Ok(code);
    }
    run(&cfg, &status, tx, transport, settings, clock)
}

/// Starts the listeners before anything is registered (an unbindable address is a usage
/// error, a thread that cannot start a runtime one), then the lifecycle to its exit.
fn run(
    cfg: &Config,
    status: &Arc<Status>,
    tx: Sender<Event>,
    transport: UreqTransport,
    settings: Settings,
    mut clock: SignalClock,
) -> Result<i32, Failure> {
    let listen = |addr: &String, flag| {
        TcpListener::bind(addr).map_err(|e| usage(format!("cannot listen on -{flag} {addr}: {e}")))
    };
    if cfg.has_app_check() {
        status.set_app_check(system::lb_app_check(cfg, transport.clone()));
    }
    if let Some(addr) = &cfg.lb_health_addr {
        status::start(listen(addr, "lb-health-addr")?, status.clone(), None).map_err(runtime)?;
    }
    if let Some(addr) = &cfg.status_addr {
        // A /drain answer waits for the whole shutdown at most (and a margin).
        let drain_timeout = lifecycle::shutdown_budget(cfg).saturating_add(Duration::from_secs(5));
        let drains = Some((tx, drain_timeout));
        status::start(listen(addr, "status-addr")?, status.clone(), drains).map_err(runtime)?;
    }
    let summary = preflight::summary(cfg, &settings.region);
    let source = settings.credentials_label();
    log::info!("{PROGRAM} {VERSION}: {summary}, credentials from {source}");
    let mut effects = SystemEffects(transport.clone());
    let mut client = Client::new(transport, settings);
    let code = Lifecycle::new(cfg, &mut client, &mut effects, &mut clock, status).run();
    // The lifecycle has recorded its outcome in `status`: a /drain still
    // arriving, or still on its way in the event channel, is answered with it.
    drop(clock);
    status.flush_drain_responses(Duration::from_secs(2));
    Ok(code)
}
