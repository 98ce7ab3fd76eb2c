//! What the process tests share beyond the `fake-aws` crate.

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_k8s-nlb-registrator-sidecar");

/// Whether the tests run as root (chroot, podman, PID and network namespaces).
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid() == 0
    }
}

/// Runs the test `name` (its full path) again in a network namespace of its
/// own, with `NLB_IN_NETNS=1`, and asserts it passed; `false` when that is
/// not possible here (not root, or already inside). Tests whose subject is
/// the namespace's connection counters use it: other tests' connections
/// would count in a shared one.
pub fn rerun_in_own_netns(name: &str) -> bool {
    if std::env::var_os("NLB_IN_NETNS").is_some() || !is_root() {
        return false;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let status = std::process::Command::new("unshare")
        .args([
            "--net",
            "sh",
            "-c",
            r#"ip link set lo up && exec "$@""#,
            "sh",
        ])
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("NLB_IN_NETNS", "1")
        .status()
        .expect("unshare (util-linux) and ip (iproute2): scripts/install-test-deps installs them");
    assert!(
        status.success(),
        "{name} in its own network namespace: {status}"
    );
    true
}

/// Whether this test runs in a network namespace of its own.
pub fn in_own_netns() -> bool {
    std::env::var_os("NLB_IN_NETNS").is_some()
}
