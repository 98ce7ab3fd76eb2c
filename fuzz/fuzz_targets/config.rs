//! Command line + environment parsing (`config::parse`) and the /etc/hosts
//! reader (`config::pod_ip_from_hosts`).
//!
//! Input layout: `ARGS [0x01 ENV [0x01 HOSTNAME '\n' HOSTS]]`
//! - ARGS: arguments separated by NUL bytes (raw bytes, so non-UTF-8 too);
//! - ENV: `NAME=VALUE` lines;
//! - HOSTNAME/HOSTS: fed to `pod_ip_from_hosts`.
#![no_main]

use k8s_nlb_registrator_sidecar::config::{self, Action};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::ffi::OsString;
use std::net::IpAddr;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 1);
    let args_part = parts.next().unwrap_or_default();
    let env_part = parts.next();
    let hosts_part = parts.next();

    let args: Vec<OsString> = if args_part.is_empty() {
        Vec::new()
    } else {
        args_part
            .split(|&b| b == 0)
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect()
    };
    let mut env: HashMap<String, String> = HashMap::new();
    if let Some(e) = env_part {
        for line in String::from_utf8_lossy(e).lines() {
            if let Some((k, v)) = line.split_once('=') {
                env.insert(k.to_owned(), v.to_owned());
            }
        }
    }

    if let Some(h) = hosts_part {
        let text = String::from_utf8_lossy(h);
        let (hostname, contents) = text.split_once('\n').unwrap_or((&text, ""));
        let ip = config::pod_ip_from_hosts(contents, hostname);
        if let Some(ip) = &ip {
            let parsed: IpAddr = ip.parse().expect("pod_ip_from_hosts returned a non-IP");
            assert!(!parsed.is_loopback() && !parsed.is_unspecified());
            assert!(!hostname.trim().is_empty());
        }
    }

    // Detection reads no file of the machine: a hosts file that is not there.
    env.insert("NLB_HOSTS_FILE".into(), "/nonexistent/hosts".into());
    let result = config::parse(args, &env);

    match result {
        Ok(Action::Run(c)) => {
            assert!(!c.groups.is_empty());
            for (i, g) in c.groups.iter().enumerate() {
                assert!(!c.groups[..i].contains(g), "duplicate group accepted");
                assert_ne!(g.port, Some(0));
            }
            let ip: Result<IpAddr, _> = c.target_id.parse();
            assert!(ip.is_ok(), "target id {:?} is not an IP", c.target_id);
            assert_eq!(c.target_id, c.target_id.trim());
            assert_ne!(c.target_port, Some(0));
            assert!(c.health_poll_interval >= Duration::from_millis(10));
            for h in &c.hooks {
                match &h.action {
                    config::HookAction::Command(argv) => {
                        assert!(!argv.is_empty(), "hook {} with no argv", h.name)
                    }
                    config::HookAction::Http(url) => {
                        assert!(url.starts_with("http://"), "hook {} with URL {url:?}", h.name)
                    }
                }
            }
            if let Some(l) = &c.log_level {
                assert!(["off", "error", "warn", "info", "debug", "trace"].contains(&l.as_str()));
            }
            if let Some(u) = &c.wait_for_http {
                assert!(u.starts_with("http://") && u.len() > 7);
            }
            for a in [&c.status_addr, &c.wait_for_tcp].into_iter().flatten() {
                assert!(a.contains(':'));
            }
        }
        Ok(Action::Print(_)) => {}
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
    }
});
