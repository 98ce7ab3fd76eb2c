//! The Kubernetes manifests and IAM documents in `examples/` are valid as written.
//!
//! Runs `scripts/validate_manifests.py`: kubernetes-validate (PyPI) checks every
//! `examples/*.yaml` offline against the Kubernetes API schemas (strict, every version
//! from 1.29 to the newest it ships), the IAM JSON must parse, and cross-checks cover
//! what the schemas cannot (env var order, probe and preStop wiring, sidecar flags, IAM
//! scope). The script installs kubernetes-validate with pip when it is missing; if that
//! fails this test fails too: it never passes without having validated anything.

use std::path::Path;
use std::process::Command;

#[test]
fn example_manifests_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("scripts/validate_manifests.py");
    let output = Command::new("python3")
        .arg(&script)
        .env(
            "NLB_SIDECAR_BIN",
            env!("CARGO_BIN_EXE_k8s-nlb-registrator-sidecar"),
        )
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");

    match output.status.code() {
        Some(0) => {}
        Some(3) => panic!(
            "kubernetes-validate is not available and could not be installed with pip \
             (PyPI: kubernetes-validate); install it with \
             `python3 -m pip install kubernetes-validate` and rerun.\n{stderr}"
        ),
        _ => panic!(
            "scripts/validate_manifests.py failed ({}): see the FAIL/ERROR lines above",
            output.status
        ),
    }
    // Guard against a run that validated nothing.
    assert!(
        stdout.contains("ok   schema: examples/deployment-sidecar.yaml")
            && stdout.contains("ok   schema: examples/deployment-native-sidecar.yaml")
            && stdout.contains("ok   checks:")
            && stdout.contains("validate-manifests: "),
        "scripts/validate_manifests.py exited 0 without reporting the validated manifests"
    );
}
