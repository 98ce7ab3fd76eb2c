//! The image, for real: `k8s-nlb-registrator-sidecar:dev` (Dockerfile.scratch,
//! built by `scripts/build-image`) runs as a podman container on the host
//! network against the fake ELBv2 on 127.0.0.1: the sidecar is the
//! container's PID 1 as user 65532 with nothing else in its filesystem, finds
//! its IP in the /etc/hosts the engine gives it, registers, and on
//! `podman stop` (SIGTERM) deregisters and exits 0.
//!
//! Needs root and podman with runc (`scripts/install-test-deps`). When the
//! image is missing the test builds it with `scripts/build-image`
//! (`scripts/test` always rebuilds it first). NLB_IMAGE names another image,
//! NLB_PODMAN_RUNTIME another runtime. Without root the test fails loudly;
//! NLB_SKIP_ROOT_TESTS=1 turns that into a loud warning.

use crate::common::is_root;
use fake_aws::process::{base_env, TempDir};
use fake_aws::FakeAws;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const POD_HOSTNAME: &str = "image-pod-5d8c";
const POD_IP: &str = "10.1.2.6";

fn image() -> String {
    std::env::var("NLB_IMAGE").unwrap_or_else(|_| "k8s-nlb-registrator-sidecar:dev".into())
}

/// `podman --runtime runc ARGS` (crun fails on hybrid cgroup hosts).
fn podman(args: &[&str]) -> Output {
    let runtime = std::env::var("NLB_PODMAN_RUNTIME").unwrap_or_else(|_| "runc".into());
    Command::new("podman")
        .args(["--runtime", &runtime])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run podman ({e}): scripts/install-test-deps installs podman and runc")
        })
}

/// `podman ARGS`, which must succeed; its trimmed stdout.
fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the container on drop, also when the test fails half-way.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.0]);
    }
}

impl Container {
    /// What the container printed so far (stdout and stderr).
    fn logs(&self) -> String {
        let out = podman(&["logs", &self.0]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let logs = self.logs();
            if logs.contains(needle) {
                return;
            }
            let state = podman_ok(&["inspect", "--format", "{{.State.Status}}", &self.0]);
            assert!(
                Instant::now() < deadline && state == "running",
                "no {needle:?} in the container's log within {timeout:?} (state {state}):\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The image, built with scripts/build-image when it is missing.
fn ensure_image(image: &str) {
    if podman(&["image", "exists", image]).status.success() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("bash")
        .arg(root.join("scripts/build-image"))
        .env("IMAGE", image)
        .current_dir(root)
        .status()
        .expect("cannot run scripts/build-image");
    assert!(status.success(), "scripts/build-image failed ({status})");
}

/// The value of `key:` in /proc/PID/status, split on whitespace.
fn proc_status(pid: &str, key: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status:\n{status}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn image_runs_a_lifecycle_as_pid_1_on_podman() {
    if !is_root() {
        let msg = "tests/it/image.rs needs root to run podman: the image was NOT tested";
        if std::env::var("NLB_SKIP_ROOT_TESTS").as_deref() == Ok("1") {
            eprintln!("\n!!!!!!!! WARNING: {msg} (NLB_SKIP_ROOT_TESTS=1) !!!!!!!!\n");
            return;
        }
        panic!("{msg}; run as root or set NLB_SKIP_ROOT_TESTS=1 to skip it knowingly");
    }
    let image = image();
    ensure_image(&image);
    assert_eq!(
        podman_ok(&["image", "inspect", "--format", "{{.Config.User}}", &image]),
        "65532:65532"
    );
    // A manifest list (scripts/build-image) resolves to the host's image.
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    let labels = "{{.Architecture}} {{index .Labels \"org.opencontainers.image.version\"}}";
    assert_eq!(
        podman_ok(&["image", "inspect", "--format", labels, &image]),
        format!("{arch} {}", env!("CARGO_PKG_VERSION"))
    );

    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let name = format!("nlb-image-test-{}", std::process::id());
    let container = Container(name.clone());
    let _ = podman(&["rm", "--force", "--time", "0", &name]);

    // The container's whole environment, given explicitly: nothing of this
    // machine's AWS_* variables gets in (podman passes only what -e names,
    // plus its own PATH, HOSTNAME and container=podman).
    let mut env = base_env(&fake.url());
    env.remove("PATH");
    let mut args: Vec<String> = [
        "run",
        "--detach",
        "--name",
        &name,
        "--network",
        "host",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=4096:4096",
        // Kubernetes writes no /etc/passwd entry for the user; podman would.
        "--passwd=false",
        "--hostname",
        POD_HOSTNAME,
        "--add-host",
        &format!("{POD_HOSTNAME}:{POD_IP}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (k, v) in &env {
        args.push("--env".into());
        args.push(format!("{k}={v}"));
    }
    args.push(image.clone());
    for a in ["-target-group-name", "tg", "-health-poll-interval", "50ms"] {
        args.push(a.into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    podman_ok(&args);

    container.wait_log("blocking until SIGTERM", Duration::from_secs(30));
    assert_eq!(
        fake.registered(&arn),
        vec![(POD_IP.to_string(), None)],
        "{}",
        container.logs()
    );

    // PID 1 of its own PID namespace, user and group 65532, the binary.
    let pid = podman_ok(&["inspect", "--format", "{{.State.Pid}}", &name]);
    assert_eq!(
        proc_status(&pid, "NSpid:").last().map(String::as_str),
        Some("1")
    );
    assert_eq!(proc_status(&pid, "Uid:"), ["65532"; 4]);
    assert_eq!(proc_status(&pid, "Gid:"), ["65532"; 4]);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe.ends_with("k8s-nlb-registrator-sidecar"),
        "{}",
        exe.display()
    );

    // The container's filesystem: the binary, and only the empty mount
    // points the engine adds for what it mounts (/etc/hosts, /proc, ...).
    let dir = TempDir::new("image");
    let tar = dir.path("fs.tar");
    podman_ok(&["export", "--output", &tar, &name]);
    let listing = Command::new("tar")
        .args(["-tvf", &tar])
        .output()
        .expect("tar");
    assert!(listing.status.success());
    let listing = String::from_utf8_lossy(&listing.stdout);
    let mut files = Vec::new();
    for line in listing.lines() {
        // mode owner size date time name
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(f.len() >= 6, "{line}");
        if f[0].starts_with('-') && f[2] != "0" {
            files.push(f[5].trim_start_matches("./").to_string());
        }
    }
    assert_eq!(files, ["k8s-nlb-registrator-sidecar"], "{listing}");

    // podman stop sends SIGTERM (the image sets no StopSignal).
    podman_ok(&["stop", "--time", "30", &name]);
    let code = podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", &name]);
    let logs = container.logs();
    assert_eq!(code, "0", "{logs}");
    assert!(logs.contains("deregistered target"), "{logs}");
    assert!(fake.registered(&arn).is_empty(), "{logs}");
}
