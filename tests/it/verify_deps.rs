//! `scripts/verify-deps` fails loudly, with one line naming the package, when
//! a package the build needs is missing: here a PATH without
//! x86_64-linux-musl-gcc (musl-tools), and an aarch64-linux-gnu-gcc that
//! cannot find the C headers of libc6-dev-arm64-cross (what the issue saw in
//! ring's build). The machine's own PATH is used for everything else; when
//! the machine itself passes the check (`scripts/test` installs first), the
//! one missing package must be the only line.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("nlb-verify-deps-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs scripts/verify-deps with PATH; its exit code and stderr lines.
fn verify(path: &str) -> (Option<i32>, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("/bin/bash")
        .arg(root.join("scripts/verify-deps"))
        .env("PATH", path)
        .output()
        .expect("cannot run scripts/verify-deps");
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code(),
        stderr.lines().map(str::to_string).collect(),
    )
}

fn machine_passes() -> bool {
    static PASSES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PASSES.get_or_init(|| verify(&std::env::var("PATH").unwrap()).0 == Some(0))
}

/// Asserts exit 1 and a line naming `package`, the only line when the
/// machine passes on its own.
fn assert_names(code: Option<i32>, lines: &[String], package: &str) {
    let prefix = format!("verify-deps: missing {package}: ");
    assert_eq!(code, Some(1), "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.starts_with(&prefix)),
        "no line naming {package}: {lines:#?}"
    );
    assert!(
        lines.iter().all(|l| l.starts_with("verify-deps: missing ")),
        "{lines:#?}"
    );
    if machine_passes() {
        assert_eq!(lines.len(), 1, "{lines:#?}");
    }
}

#[test]
fn a_missing_musl_compiler_names_musl_tools() {
    // Every command of PATH but x86_64-linux-musl-gcc, as symlinks in one dir.
    let dir = Dir::new("path");
    let path = std::env::var("PATH").unwrap();
    for d in std::env::split_paths(&path) {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let link = dir.0.join(&name);
            if name == "x86_64-linux-musl-gcc" || link.exists() {
                continue;
            }
            let _ = symlink(e.path(), link);
        }
    }
    assert!(!dir.0.join("x86_64-linux-musl-gcc").exists());
    let (code, lines) = verify(&dir.0.to_string_lossy());
    assert_names(code, &lines, "musl-tools");
}

#[test]
fn missing_aarch64_headers_name_libc6_dev_arm64_cross() {
    // A compiler that fails the way gcc-aarch64-linux-gnu does without them.
    let dir = Dir::new("cc");
    let cc = dir.0.join("aarch64-linux-gnu-gcc");
    std::fs::write(
        &cc,
        "#!/bin/sh\necho '/usr/include/stdint.h:26:10: fatal error: bits/libc-header-start.h: No such file or directory' >&2\nexit 1\n",
    )
    .unwrap();
    let mut perms = std::fs::metadata(&cc).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&cc, perms).unwrap();
    let path = format!(
        "{}:{}",
        dir.0.to_string_lossy(),
        std::env::var("PATH").unwrap()
    );
    let (code, lines) = verify(&path);
    assert_names(code, &lines, "libc6-dev-arm64-cross");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("libc6-dev-arm64-cross") && l.contains("bits/libc-header-start.h")),
        "{lines:#?}"
    );
}
