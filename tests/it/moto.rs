//! The real binary against moto (`pip install 'moto[server]'`), an independent ELBv2
//! implementation: real process, real SIGTERM, real exit codes, moto's final state.
//!
//! Every test starts its own `moto_server` on 127.0.0.1 (a free port), creates a VPC,
//! subnets, a network load balancer and IP target groups with `scripts/moto-env.py`
//! (boto3), runs the sidecar with a cleared environment pointed at that server only,
//! and checks with DescribeTargetHealth what moto holds. moto marks IP targets healthy
//! at once and never shows `draining`: health and draining sequences are tested against
//! our own fake server, not here.
//!
//! `moto_server` (or `$MOTO_SERVER`) and `python3` (or `$PYTHON`) with boto3 must be
//! installed: when they are missing these tests fail, they never pass without moto.

use crate::common::BIN;
use fake_aws::process::{base_env, free_port, Sidecar};
use fake_aws::REGION;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TARGET: &str = "10.0.1.5";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `name` as a path: itself if it has a slash, else the first executable on `$PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn moto_server_program() -> PathBuf {
    let name = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    find_program(&name).unwrap_or_else(|| {
        panic!(
            "`{name}` not found on PATH: these tests need moto's server. Install it with \
             `python3 -m pip install 'moto[server]'` (or set MOTO_SERVER to its path) and rerun."
        )
    })
}

fn python_program() -> PathBuf {
    let name = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    find_program(&name).unwrap_or_else(|| {
        panic!("`{name}` not found on PATH: scripts/moto-env.py needs python3 with boto3")
    })
}

/// The test's own environment without AWS_* (this machine exports AWS_CA_BUNDLE and
/// more), for the Python helpers and moto_server, which need PATH, HOME, pyenv etc.
fn python_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(&key);
        }
    }
    // A developer's ~/.aws must not change what boto3 does.
    cmd.env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// A moto_server of our own, killed (whole process group) when dropped, even on panic.
struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Moto {
    fn start() -> Moto {
        Moto::start_with_env(&[])
    }

    fn start_with_env(env: &[(&str, &str)]) -> Moto {
        let program = moto_server_program();
        let mut last_error = String::new();
        // The free port can be taken between our probe and moto's bind: then try another.
        for _ in 0..3 {
            let port = free_port();
            let log = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("moto-{}-{port}.log", std::process::id()));
            let log_file = std::fs::File::create(&log).expect("create moto log");
            let mut cmd = python_command(&program);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("dup moto log"))
                .stderr(log_file)
                .process_group(0);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
            let mut moto = Moto { child, port, log };
            match moto.wait_ready(Duration::from_secs(20)) {
                Ok(()) => return moto,
                Err(e) => last_error = e,
            }
        }
        panic!("moto_server did not start: {last_error}")
    }

    /// Polls GET /moto-api/ (which, unlike other paths, does not use up any of
    /// INITIAL_NO_AUTH_ACTION_COUNT) until moto answers 200.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "moto_server exited ({status}):\n{}",
                    self.log_text()
                ));
            }
            if self.get_status("/moto-api/") == Some(200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "moto_server not answering on port {} after {timeout:?}:\n{}",
                    self.port,
                    self.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn get_status(&self, path: &str) -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.port
        )
        .ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs scripts/moto-env.py against this server; its stdout parsed as JSON.
    fn env_py(&self, creds: (&str, &str), args: &[&str]) -> Result<Value, String> {
        let script = root().join("scripts/moto-env.py");
        let out = python_command(&python_program())
            .arg(&script)
            .args(["--endpoint", &self.endpoint(), "--region", REGION])
            .args(["--access-key-id", creds.0, "--secret-access-key", creds.1])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            return Err(stderr);
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "moto-env.py {args:?}: bad JSON ({e}): {}\n{stderr}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    fn setup(&self, args: &[&str]) -> Value {
        self.setup_as(TEST_CREDS, args)
    }

    fn setup_as(&self, creds: (&str, &str), args: &[&str]) -> Value {
        self.env_py(creds, args)
            .unwrap_or_else(|e| panic!("moto-env.py {args:?} failed:\n{e}"))
    }

    /// The (id, port, state) of every target moto holds in the group.
    fn targets(&self, tg_arn: &str) -> Targets {
        self.targets_as(TEST_CREDS, tg_arn)
    }

    fn targets_as(&self, creds: (&str, &str), tg_arn: &str) -> Targets {
        self.targets_of(creds, &[tg_arn]).remove(0)
    }

    /// [`Moto::targets`] of several groups in one run of the Python helper.
    fn targets_of(&self, creds: (&str, &str), tg_arns: &[&str]) -> Vec<Targets> {
        let mut args = vec!["--health"];
        args.extend_from_slice(tg_arns);
        let health = self.setup_as(creds, &args);
        let health = health.as_array().expect("health is a list");
        tg_arns
            .iter()
            .map(|arn| {
                let mut v: Targets = health
                    .iter()
                    .filter(|d| d["target_group_arn"] == *arn)
                    .map(|d| {
                        (
                            d["id"].as_str().unwrap_or_default().to_owned(),
                            d["port"].as_u64().unwrap_or_default(),
                            d["state"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect();
                v.sort();
                v
            })
            .collect()
    }
}

/// (id, port, state) of each target in a group, sorted.
type Targets = Vec<(String, u64, String)>;

impl Drop for Moto {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- moto_server log ({}):\n{}",
                self.log.display(),
                self.log_text()
            );
        }
        // Our own process group (process_group(0) at spawn): moto and anything it forked.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

const TEST_CREDS: (&str, &str) = ("test", "test");

/// The sidecar with a cleared environment pointed at `moto` only.
fn spawn(moto: &Moto, creds: (&str, &str), args: &[&str]) -> Sidecar {
    let mut env = base_env(&moto.endpoint());
    env.insert("AWS_ACCESS_KEY_ID".into(), creds.0.into());
    env.insert("AWS_SECRET_ACCESS_KEY".into(), creds.1.into());
    Sidecar::spawn(BIN, args, &env)
}

/// Panics with the output if the sidecar is no longer running.
fn assert_running(sidecar: &mut Sidecar) {
    assert!(
        sidecar.running(),
        "the sidecar exited before SIGTERM:\n{}",
        sidecar.output()
    );
}

fn tg_arn(setup: &Value, name: &str) -> String {
    setup["target_groups"][name]["arn"]
        .as_str()
        .unwrap_or_else(|| panic!("no ARN for {name} in {setup}"))
        .to_owned()
}

/// Whether the log reports a registration ("deregistered target" lines aside).
fn registered_something(stderr: &str) -> bool {
    stderr
        .lines()
        .any(|l| l.contains("registered target") && !l.contains("deregistered target"))
}

fn healthy(port: u64) -> Targets {
    vec![(TARGET.to_owned(), port, "healthy".to_owned())]
}

const SECOND: Duration = Duration::from_secs(1);

/// Register, healthy, SIGTERM, deregistered, exit 0.
#[test]
fn end_to_end_register_healthy_sigterm_deregister() {
    let moto = Moto::start();
    let setup = moto.setup(&["--target-group", "my-tg:8080"]);
    let arn = tg_arn(&setup, "my-tg");
    assert!(
        setup["load_balancer_arn"]
            .as_str()
            .is_some_and(|a| a.contains(":loadbalancer/")),
        "{setup}"
    );

    let mut sidecar = spawn(
        &moto,
        TEST_CREDS,
        &[
            "-target-group-name",
            "my-tg",
            "-target-id",
            TARGET,
            "-health-poll-interval",
            "200ms",
        ],
    );
    sidecar.expect_log("all targets are healthy", 10 * SECOND);
    assert!(
        sidecar.output().contains("registered target 10.0.1.5")
            && sidecar.output().contains("my-tg"),
        "{}",
        sidecar.output()
    );
    // The group's own port, since neither the group nor -target-port gives one.
    assert_eq!(moto.targets(&arn), healthy(8080));
    assert_running(&mut sidecar);

    sidecar.term();
    let code = sidecar.wait_exit(10 * SECOND);
    let stderr = sidecar.output();
    assert_eq!(code, 0, "exit code; stderr:\n{stderr}");
    for needle in [
        "received SIGTERM",
        "deregistered target 10.0.1.5",
        "exiting: every target is out",
    ] {
        assert!(stderr.contains(needle), "no {needle:?} in:\n{stderr}");
    }
    assert_eq!(
        moto.targets(&arn),
        vec![],
        "target still in moto after exit 0"
    );
}

/// Several groups, by name and by ARN, each with its own port (and -target-port for a
/// group given without one): all registered with the right ports, all gone after SIGTERM.
#[test]
fn several_target_groups_with_ports() {
    let moto = Moto::start();
    // The groups' own ports differ from the ones requested, so the port must come
    // from the command line.
    let setup = moto.setup(&[
        "--target-group",
        "a:1001",
        "--target-group",
        "b:1002",
        "--target-group",
        "c:1003",
        "--target-group",
        "d:1004",
    ]);
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| tg_arn(&setup, n));
    let c_with_port = format!("{c}:7070");

    let mut sidecar = spawn(
        &moto,
        TEST_CREDS,
        &[
            "-target-group-name",
            "a:8080",
            "-target-group-name",
            "b:9090",
            "-target-group-arn",
            &c_with_port,
            "-target-group-name",
            "d",
            "-target-port",
            "6060",
            "-target-id",
            TARGET,
            "-health-poll-interval",
            "200ms",
        ],
    );
    sidecar.expect_log("all targets are healthy", 10 * SECOND);
    assert_running(&mut sidecar);
    let groups = [a.as_str(), b.as_str(), c.as_str(), d.as_str()];
    assert_eq!(
        moto.targets_of(TEST_CREDS, &groups),
        vec![healthy(8080), healthy(9090), healthy(7070), healthy(6060)],
        "groups a:8080, b:9090, c (by ARN):7070, d (-target-port):6060"
    );

    sidecar.term();
    let code = sidecar.wait_exit(10 * SECOND);
    let stderr = sidecar.output();
    assert_eq!(code, 0, "exit code; stderr:\n{stderr}");
    assert_eq!(
        moto.targets_of(TEST_CREDS, &groups),
        vec![vec![]; 4],
        "groups a, b, c, d after SIGTERM"
    );
    assert_eq!(
        stderr.matches("deregistered target 10.0.1.5").count(),
        4,
        "{stderr}"
    );
}

/// moto in signature checking mode: setup calls are free, every later call is
/// verified (SigV4 and IAM policy). The real key pair does a whole lifecycle
/// (DescribeTargetGroups, RegisterTargets, DescribeTargetHealth, DeregisterTargets all
/// accepted); a wrong secret is refused with SignatureDoesNotMatch; a user allowed only
/// the Describe actions gets AccessDenied on RegisterTargets. Neither is retried.
#[test]
fn signature_checking_mode() {
    // More than the setup needs (2 IAM users: 4 calls each; resources: 6 calls); the
    // rest is spent by --exhaust-free-calls, so the count need not be exact.
    let moto = Moto::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "40")]);
    let user = moto.setup(&["--iam-user", "sidecar"]);
    let readonly = moto.setup(&[
        "--iam-user",
        "readonly",
        "--iam-actions",
        "elasticloadbalancing:DescribeTargetGroups,elasticloadbalancing:DescribeTargetHealth",
    ]);
    let setup = moto.setup(&["--target-group", "my-tg:8080"]);
    let arn = tg_arn(&setup, "my-tg");
    let key = |v: &Value| {
        (
            v["access_key_id"].as_str().expect("key id").to_owned(),
            v["secret_access_key"].as_str().expect("secret").to_owned(),
        )
    };
    let (key_id, secret) = key(&user);
    let (ro_key_id, ro_secret) = key(&readonly);
    let good = (key_id.as_str(), secret.as_str());

    // Spend what is left of the free calls: from now on moto verifies every call.
    let burned = moto.setup_as((&key_id, "not-the-secret"), &["--exhaust-free-calls"]);
    assert_eq!(burned["code"], "SignatureDoesNotMatch", "{burned}");
    let err = moto
        .env_py((&key_id, "not-the-secret"), &["--health", &arn])
        .expect_err("moto accepted a wrong secret after the free calls");
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    assert_eq!(moto.targets_as(good, &arn), vec![]);

    // 1. The real key pair: the whole lifecycle is accepted.
    let mut sidecar = spawn(
        &moto,
        good,
        &[
            "-target-group-name",
            "my-tg",
            "-target-id",
            TARGET,
            "-health-poll-interval",
            "200ms",
        ],
    );
    sidecar.expect_log("all targets are healthy", 10 * SECOND);
    assert_running(&mut sidecar);
    assert_eq!(moto.targets_as(good, &arn), healthy(8080));
    sidecar.term();
    let code = sidecar.wait_exit(10 * SECOND);
    let stderr = sidecar.output();
    assert_eq!(code, 0, "exit code with the right key; stderr:\n{stderr}");
    for needle in [
        "resolved 1 target group(s) by name",
        "registered target 10.0.1.5",
        "is healthy",
        "deregistered target 10.0.1.5",
    ] {
        assert!(stderr.contains(needle), "no {needle:?} in:\n{stderr}");
    }
    assert_eq!(moto.targets_as(good, &arn), vec![]);

    // 2. A wrong secret: refused at the first call, exit 1 at once, nothing registered.
    let started = Instant::now();
    let mut sidecar = spawn(
        &moto,
        (&key_id, "wrong-secret"),
        &["-target-group-name", "my-tg", "-target-id", TARGET],
    );
    let code = sidecar.wait_exit(10 * SECOND);
    let stderr = sidecar.output();
    let took = started.elapsed();
    assert_eq!(code, 1, "exit code with a wrong secret; stderr:\n{stderr}");
    assert!(stderr.contains("SignatureDoesNotMatch"), "{stderr}");
    assert!(took < 5 * SECOND, "took {took:?}: retried?\n{stderr}");
    assert!(!registered_something(&stderr), "{stderr}");
    assert_eq!(moto.targets_as(good, &arn), vec![]);

    // 3. Allowed to describe but not to register: AccessDenied, not retried, exit 1.
    let started = Instant::now();
    let mut sidecar = spawn(
        &moto,
        (&ro_key_id, &ro_secret),
        &["-target-group-name", "my-tg", "-target-id", TARGET],
    );
    let code = sidecar.wait_exit(10 * SECOND);
    let stderr = sidecar.output();
    let took = started.elapsed();
    assert_eq!(
        code, 1,
        "exit code without RegisterTargets; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("AccessDenied") && stderr.contains("RegisterTargets"),
        "{stderr}"
    );
    assert!(took < 5 * SECOND, "took {took:?}: retried?\n{stderr}");
    assert_eq!(moto.targets_as(good, &arn), vec![]);
}

/// An unknown target group name: exit 1 at once, TargetGroupNotFound on stderr, and
/// nothing registered, not even in the group that does exist.
#[test]
fn unknown_target_group_name() {
    let moto = Moto::start();
    let setup = moto.setup(&["--target-group", "my-tg:8080"]);
    let arn = tg_arn(&setup, "my-tg");

    let started = Instant::now();
    let mut sidecar = spawn(
        &moto,
        TEST_CREDS,
        &[
            "-target-group-name",
            "my-tg",
            "-target-group-name",
            "no-such-tg",
            "-target-id",
            TARGET,
        ],
    );
    let code = sidecar.wait_exit(10 * SECOND);
    let stderr = sidecar.output();
    let took = started.elapsed();
    assert_eq!(code, 1, "exit code; stderr:\n{stderr}");
    assert!(stderr.contains("TargetGroupNotFound"), "{stderr}");
    assert!(took < 5 * SECOND, "took {took:?}: retried?\n{stderr}");
    assert!(!registered_something(&stderr), "{stderr}");
    assert_eq!(
        moto.targets(&arn),
        vec![],
        "registered despite the unknown group"
    );
}

/// Runs `-check` against `moto` with `args`; (exit code, stdout). Nothing
/// but the report goes to stdout.
fn run_check(moto: &Moto, creds: (&str, &str), args: &[&str]) -> (i32, String) {
    let mut env = base_env(&moto.endpoint());
    env.insert("AWS_ACCESS_KEY_ID".into(), creds.0.into());
    env.insert("AWS_SECRET_ACCESS_KEY".into(), creds.1.into());
    let mut all = vec!["-check", "-target-id", TARGET];
    all.extend_from_slice(args);
    let out = Command::new(BIN)
        .args(&all)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .output()
        .expect("run the binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().unwrap_or(-1), stdout)
}

/// `-check` against moto: groups by name and by ARN pass (moto answers the
/// DeregisterTargets probe with InvalidTarget, AWS with success: both show
/// the permission), an unknown group fails with exit 1, and nothing is
/// ever registered.
#[test]
fn check_passes_against_moto_and_registers_nothing() {
    let moto = Moto::start();
    let setup = moto.setup(&[
        "--target-group",
        "my-tg:8080",
        "--target-group",
        "other:9090",
    ]);
    let arn = tg_arn(&setup, "my-tg");
    let other = tg_arn(&setup, "other");
    let (code, out) = run_check(
        &moto,
        TEST_CREDS,
        &["-target-group-name", "my-tg", "-target-group-arn", &other],
    );
    assert_eq!(code, 0, "{out}");
    for line in [
        "ok   config: target 10.0.1.5 (from -target-id), 2 target group(s), region us-east-1",
        "ok   credentials: source environment; identity arn:aws:",
        &format!("ok   target group my-tg: exists ({arn})"),
        "ok   target group my-tg: target type ip",
        "ok   target group my-tg: IP address type ipv4 matches target 10.0.1.5",
        "ok   target group my-tg: attached to 1 load balancer(s)",
        "ok   target group my-tg: health check TCP",
        "ok   target group my-tg: deregistration delay",
        "ok   target group my-tg: target 10.0.1.5 is not registered yet",
        "ok   target group my-tg: may deregister (DeregisterTargets of the unregistered target answered InvalidTarget, not AccessDenied)",
        &format!("ok   target group {other}: exists ({other})"),
        &format!("ok   target group {other}: may deregister"),
        "check passed",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert_eq!(
        moto.targets_of(TEST_CREDS, &[&arn, &other]),
        vec![vec![], vec![]]
    );

    let (code, out) = run_check(&moto, TEST_CREDS, &["-target-group-name", "no-such-tg"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL target group no-such-tg: not found (TargetGroupNotFound)"),
        "{out}"
    );
    assert!(
        out.contains("check FAILED: 1 problem(s) in target group no-such-tg"),
        "{out}"
    );
}

/// `-check -lb-health-addr` reads moto's target group attributes: a group
/// that resets connections to unhealthy targets (the attribute unset: AWS's
/// default, true) warns naming it; one set to false with a draining
/// interval does not.
#[test]
fn check_warns_when_a_failing_lb_health_would_reset_connections() {
    let moto = Moto::start();
    let attr = "target_health_state.unhealthy.connection_termination.enabled";
    moto.setup(&["--target-group", "resets:8080"]);
    moto.setup(&[
        "--target-group",
        "keeps:8081",
        "--lb-name",
        "keeps-nlb",
        "--target-group-attribute",
        &format!("{attr}=false"),
        "--target-group-attribute",
        "target_health_state.unhealthy.draining_interval_seconds=300",
    ]);
    let check = |group: &str| {
        let args = [
            "-target-group-name",
            group,
            "-lb-health-addr",
            "127.0.0.1:8082",
        ];
        run_check(&moto, TEST_CREDS, &args)
    };
    let (code, out) = check("resets");
    assert_eq!(code, 0, "{out}");
    let warning = format!("warn target group resets: {attr} is unset (default true)");
    assert!(out.contains(&warning), "{out}");
    let (code, out) = check("keeps");
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("warn"), "{out}");
    let ok = format!("ok   target group keeps: {attr} false");
    assert!(out.contains(&ok), "{out}");
    assert!(out.contains("draining_interval_seconds 300"), "{out}");
}

/// `-check` in moto's signature checking mode: a user without
/// DeregisterTargets fails with exit 1 naming it; a wrong secret fails on
/// the credentials.
#[test]
fn check_names_a_missing_permission_against_moto() {
    let moto = Moto::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "40")]);
    let user = moto.setup(&["--iam-user", "sidecar"]);
    let readonly = moto.setup(&[
        "--iam-user",
        "readonly",
        "--iam-actions",
        "elasticloadbalancing:DescribeTargetGroups,elasticloadbalancing:DescribeTargetHealth,elasticloadbalancing:DescribeTargetGroupAttributes",
    ]);
    let setup = moto.setup(&["--target-group", "my-tg:8080"]);
    let arn = tg_arn(&setup, "my-tg");
    let key = |v: &Value| {
        (
            v["access_key_id"].as_str().expect("key id").to_owned(),
            v["secret_access_key"].as_str().expect("secret").to_owned(),
        )
    };
    let (key_id, secret) = key(&user);
    let (ro_key_id, ro_secret) = key(&readonly);
    let good = (key_id.as_str(), secret.as_str());
    let burned = moto.setup_as((&key_id, "not-the-secret"), &["--exhaust-free-calls"]);
    assert_eq!(burned["code"], "SignatureDoesNotMatch", "{burned}");

    let (code, out) = run_check(&moto, good, &["-target-group-name", "my-tg"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok   target group my-tg: may deregister"),
        "{out}"
    );

    let (code, out) = run_check(
        &moto,
        (&ro_key_id, &ro_secret),
        &["-target-group-name", "my-tg"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL target group my-tg: may not deregister"),
        "{out}"
    );
    assert!(out.contains("AccessDenied"), "{out}");

    let (code, out) = run_check(
        &moto,
        (&key_id, "wrong-secret"),
        &["-target-group-name", "my-tg"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL credentials: source environment: AWS refuses them"),
        "{out}"
    );
    assert!(!out.contains("wrong-secret"), "{out}");
    assert_eq!(moto.targets_as(good, &arn), vec![]);
}

/// An Application Load Balancer's IP target group (HTTP, health check path and
/// matcher, HTTP listener): the same API, the same lifecycle. By name and by ARN, one
/// group each, the second with its own port.
#[test]
fn application_load_balancer_http_target_groups() {
    let moto = Moto::start();
    let setup = moto.setup(&[
        "--alb",
        "--health-check-path",
        "/healthz",
        "--target-group",
        "web:8080",
        "--target-group",
        "api:9090",
    ]);
    assert_eq!(setup["load_balancer_type"], "application", "{setup}");
    assert!(
        setup["load_balancer_arn"]
            .as_str()
            .is_some_and(|a| a.contains(":loadbalancer/app/")),
        "{setup}"
    );
    let (web, api) = (tg_arn(&setup, "web"), tg_arn(&setup, "api"));
    let api_with_port = format!("{api}:9091");

    let mut sidecar = spawn(
        &moto,
        TEST_CREDS,
        &[
            "-target-group-name",
            "web",
            "-target-group-arn",
            &api_with_port,
            "-target-id",
            TARGET,
            "-health-poll-interval",
            "200ms",
        ],
    );
    sidecar.expect_log("all targets are healthy", 10 * SECOND);
    assert_eq!(
        moto.targets_of(TEST_CREDS, &[&web, &api]),
        vec![healthy(8080), healthy(9091)]
    );
    assert_running(&mut sidecar);

    sidecar.term();
    let code = sidecar.wait_exit(10 * SECOND);
    let stderr = sidecar.output();
    assert_eq!(code, 0, "exit code; stderr:\n{stderr}");
    assert!(stderr.contains("deregistered target 10.0.1.5"), "{stderr}");
    assert_eq!(
        moto.targets_of(TEST_CREDS, &[&web, &api]),
        vec![vec![], vec![]],
        "targets still in moto after exit 0"
    );
}
