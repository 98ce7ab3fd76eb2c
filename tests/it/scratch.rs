//! The FROM scratch property, without Docker: the static musl binary runs a
//! whole lifecycle in an otherwise empty root holding only what Kubernetes
//! mounts (/etc/resolv.conf, /etc/hosts), against the fake on 127.0.0.1.
//!
//! Needs root (chroot) and the static binary (`scripts/test` builds it with
//! `scripts/build-static`; the path can
//! be given in NLB_STATIC_BIN). Without root the test fails loudly; set
//! NLB_SKIP_ROOT_TESTS=1 to turn the failure into a loud warning.

use crate::common::is_root;
use fake_aws::process::{base_env, Sidecar, TempDir};
use fake_aws::FakeAws;
use std::path::PathBuf;
use std::time::Duration;

fn static_binary() -> PathBuf {
    if let Ok(p) = std::env::var("NLB_STATIC_BIN") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/x86_64-unknown-linux-musl/release/k8s-nlb-registrator-sidecar")
}

#[test]
fn static_binary_runs_a_lifecycle_in_an_empty_root() {
    if !is_root() {
        let msg =
            "tests/it/scratch.rs needs root to chroot: the FROM scratch property was NOT tested";
        if std::env::var("NLB_SKIP_ROOT_TESTS").as_deref() == Ok("1") {
            eprintln!("\n!!!!!!!! WARNING: {msg} (NLB_SKIP_ROOT_TESTS=1) !!!!!!!!\n");
            return;
        }
        panic!("{msg}; run as root or set NLB_SKIP_ROOT_TESTS=1 to skip it knowingly");
    }
    let bin = static_binary();
    assert!(
        bin.exists(),
        "static binary {} missing: build it with `bash scripts/build-static` (scripts/test does)",
        bin.display()
    );
    let elf = std::fs::read(&bin).unwrap();
    assert!(
        !elf.windows(b"ld-musl".len()).any(|w| w == b"ld-musl")
            && !elf.windows(b"ld-linux".len()).any(|w| w == b"ld-linux"),
        "{} asks for a dynamic loader: it would not start in a scratch image",
        bin.display()
    );

    let root = TempDir::new("scratch");
    std::fs::create_dir_all(root.0.join("etc")).unwrap();
    std::fs::write(
        root.0.join("etc/resolv.conf"),
        "nameserver 127.0.0.1\noptions ndots:5\n",
    )
    .unwrap();
    std::fs::write(
        root.0.join("etc/hosts"),
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n10.1.2.3\tscratch-pod-7f9c\n",
    )
    .unwrap();
    std::fs::copy(&bin, root.0.join("k8s-nlb-registrator-sidecar")).unwrap();
    let entries: Vec<String> = walk(&root.0);
    assert_eq!(
        entries,
        [
            "etc",
            "etc/hosts",
            "etc/resolv.conf",
            "k8s-nlb-registrator-sidecar"
        ]
    );

    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let mut env = base_env(&fake.url());
    env.remove("PATH");
    env.insert("HOSTNAME".into(), "scratch-pod-7f9c".into());
    let dir = root.0.to_string_lossy().into_owned();
    let chroot = ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chroot(8) from coreutils");
    let run = |extra: &[&str]| {
        let mut args = vec![
            dir.as_str(),
            "/k8s-nlb-registrator-sidecar",
            "-target-group-name",
            "tg",
        ];
        args.extend_from_slice(extra);
        Sidecar::run_to_exit(chroot, &args, &env)
    };
    // No /bin/sh here: a hook in shell syntax is refused at start.
    let (code, out) = run(&[
        "-pre-register-command",
        "curl -fsS http://127.0.0.1:8080/ && true",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("-pre-register-command uses shell syntax (&&) and needs /bin/sh, which this image does not have"),
        "{out}"
    );
    // -check finds that a plain command's program is not in the image.
    let (code, out) = run(&[
        "-check",
        "-post-deregister-command",
        "curl -fsS http://127.0.0.1:8080/out",
    ]);
    assert_eq!(code, 0, "a missing post-* program only warns: {out}");
    assert!(
        out.contains("warn post-deregister command: cannot run: curl is in no directory of the search path /usr/local/bin:/bin:/usr/bin"),
        "{out}"
    );
    assert_eq!(fake.count("RegisterTargets"), 0);

    let mut s = Sidecar::spawn(
        chroot,
        &[
            &dir,
            "/k8s-nlb-registrator-sidecar",
            "-target-group-name",
            "tg",
            "-health-poll-interval",
            "50ms",
        ],
        &env,
    );
    s.expect_log("blocking until SIGTERM", Duration::from_secs(10));
    assert!(
        s.output().contains("target 10.1.2.3 (from /etc/hosts)"),
        "{}",
        s.output()
    );
    assert_eq!(fake.registered(&arn), vec![("10.1.2.3".to_string(), None)]);
    s.term();
    assert_eq!(s.wait_exit(Duration::from_secs(10)), 0);
    assert!(fake.registered(&arn).is_empty());
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The aarch64 cross build, run under qemu-user: a whole lifecycle too.
#[test]
fn aarch64_static_binary_runs_a_lifecycle_under_qemu() {
    let bin = std::env::var("NLB_STATIC_BIN_AARCH64")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/aarch64-unknown-linux-musl/release/k8s-nlb-registrator-sidecar")
        });
    let qemu = ["/usr/bin/qemu-aarch64-static", "/usr/bin/qemu-aarch64"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let (Some(qemu), true) = (qemu, bin.exists()) else {
        let msg = format!(
            "the aarch64 build was NOT tested: needs {} (scripts/build-static) and qemu-user-static",
            bin.display()
        );
        if std::env::var("NLB_SKIP_CROSS_TESTS").as_deref() == Ok("1") {
            eprintln!("\n!!!!!!!! WARNING: {msg} (NLB_SKIP_CROSS_TESTS=1) !!!!!!!!\n");
            return;
        }
        panic!("{msg}; set NLB_SKIP_CROSS_TESTS=1 to skip it knowingly");
    };
    let fake = FakeAws::start();
    let arn = fake.add_target_group("tg", 80);
    let bin = bin.to_string_lossy().into_owned();
    let mut s = Sidecar::spawn(
        qemu,
        &[
            &bin,
            "-target-group-name",
            "tg",
            "-target-id",
            "10.1.2.4",
            "-health-poll-interval",
            "50ms",
        ],
        &base_env(&fake.url()),
    );
    s.expect_log("blocking until SIGTERM", Duration::from_secs(20));
    assert_eq!(fake.registered(&arn), vec![("10.1.2.4".to_string(), None)]);
    s.term();
    assert_eq!(s.wait_exit(Duration::from_secs(20)), 0);
    assert!(fake.registered(&arn).is_empty());
}

/// The static binaries carry their crate list as cargo-auditable writes it
/// (a `.dep-v0` section of zlib-compressed JSON, which Trivy, Grype and
/// Syft read), and it survives `strip = true`.
#[test]
fn static_binaries_carry_their_crate_list() {
    let x86 = static_binary();
    let arm = x86.to_string_lossy().replace("x86_64", "aarch64");
    for bin in [x86.clone(), PathBuf::from(arm)] {
        if bin != x86 && !bin.exists() {
            continue; // aarch64_static_binary_runs_a_lifecycle_under_qemu says so
        }
        assert!(
            bin.exists(),
            "static binary {} missing: build it with scripts/build-static",
            bin.display()
        );
        let dir = TempDir::new("dep-v0");
        let section = dir.path("dep-v0");
        let out = std::process::Command::new("objcopy")
            // elf64-little: the host's objcopy reads an aarch64 ELF so.
            .args(["-I", "elf64-little"])
            .arg(format!("--dump-section=.dep-v0={section}"))
            .arg(&bin)
            .arg(dir.path("copy"))
            .output()
            .expect("objcopy (binutils)");
        assert!(out.status.success(), "{out:?}");
        let size = std::fs::metadata(&section).map_or(0, |m| m.len());
        assert!(
            (1..20_000).contains(&size),
            "{}: .dep-v0 is {size} bytes: build with scripts/build-static (cargo auditable build)",
            bin.display()
        );
        let names = std::process::Command::new("python3")
            .args([
                "-c",
                "import json, sys, zlib; print(*(p['name'] for p in json.loads(zlib.decompress(open(sys.argv[1], 'rb').read()))['packages']))",
                &section,
            ])
            .output()
            .expect("python3");
        let names = String::from_utf8_lossy(&names.stdout);
        let names: Vec<&str> = names.split_whitespace().collect();
        for krate in [
            "k8s-nlb-registrator-sidecar",
            "ureq",
            "rustls",
            "ring",
            "aws-sigv4",
        ] {
            assert!(
                names.contains(&krate),
                "{}: no {krate} in {names:?}",
                bin.display()
            );
        }
        assert!(
            !names.contains(&"fake-aws"),
            "a dev-dependency is listed: {names:?}"
        );
    }
}
