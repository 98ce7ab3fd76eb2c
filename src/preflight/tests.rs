use super::*;
use crate::aws::elbv2::HealthCheck;
use crate::aws::AwsError;
use crate::config::GroupSpec;
use std::os::unix::fs::PermissionsExt;

fn cfg() -> Config {
    Config {
        groups: vec![GroupSpec {
            group: GroupRef::Name("web".into()),
            port: None,
        }],
        target_id: "10.0.0.1".into(),
        target_id_source: "POD_IP".into(),
        target_port: Some(8080),
        availability_zone: None,
        region: None,
        role_arn: None,
        role_external_id: None,
        role_session_name: None,
        wait_in_service: true,
        wait_in_service_timeout: Duration::from_secs(300),
        health_poll_interval: Duration::from_secs(5),
        health_poll_explicit: false,
        register_timeout: Duration::from_secs(120),
        deregister_timeout: Duration::from_secs(20),
        wait_drained: true,
        wait_drained_timeout: Duration::from_secs(300),
        hooks: vec![],
        status_addr: None,
        wait_for_tcp: None,
        wait_for_http: None,
        wait_for_timeout: Duration::from_secs(300),
        log_level: None,
        log_json: false,
        check: true,
        drain_quiet_period: None,
        lb_health_addr: None,
        drain_ignore_from: vec![],
    }
}

fn aws(action: &str, code: &str) -> Error {
    Error::Aws {
        action: action.into(),
        error: AwsError {
            status: 400,
            code: code.into(),
            message: format!("{code} message"),
            request_id: Some("rid-1".into()),
        },
    }
}

fn group() -> TargetGroup {
    TargetGroup {
        arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
            .into(),
        name: "web".into(),
        port: Some(8080),
        protocol: Some("TCP".into()),
        target_type: Some("ip".into()),
        load_balancer_arns: vec!["arn:lb".into()],
        ip_address_type: Some("ipv4".into()),
        health_check: HealthCheck {
            enabled: Some(true),
            protocol: Some("HTTP".into()),
            port: Some("traffic-port".into()),
            path: Some("/healthz".into()),
            interval_seconds: Some(10),
            healthy_threshold: Some(3),
            unhealthy_threshold: Some(2),
        },
    }
}

fn good() -> Findings {
    Findings {
        region: "us-east-1".into(),
        source: "web identity (IRSA)".into(),
        identity: Ok(Ok(CallerIdentity {
            account: "123456789012".into(),
            arn: "arn:aws:sts::123456789012:assumed-role/nlb/pod".into(),
        })),
        groups: vec![GroupFindings {
            group: GroupRef::Name("web".into()),
            target: Target {
                id: "10.0.0.1".into(),
                port: Some(8080),
                availability_zone: None,
            },
            described: Ok(Some(group())),
            attributes: Some(Ok(vec![(DEREGISTRATION_DELAY.into(), "60".into())])),
            registered: Some(Ok(None)),
            deregister: Some(Ok(())),
        }],
    }
}

/// The report as the tests read it: its text and exit code.
struct Report(String, i32);

fn report(cfg: &Config, f: &Findings) -> Report {
    report_in(cfg, f, None)
}

/// The report with `path` as `PATH`.
fn report_in(cfg: &Config, f: &Findings, path: Option<&str>) -> Report {
    let (text, code) = super::report(cfg, f, path);
    Report(text, code)
}

impl Report {
    fn passed(&self) -> bool {
        self.1 == 0
    }
    fn exit_code(&self) -> i32 {
        self.1
    }
    fn render(&self) -> String {
        self.0.clone()
    }
    /// The lines of the checks (the verdict left out).
    fn checks(&self) -> Vec<&str> {
        let lines: Vec<&str> = self.0.lines().collect();
        lines[..lines.len() - 1].to_vec()
    }
}

fn has(r: &Report, level: &str, needle: &str) -> bool {
    let text = |l: &str| l.split_once(": ").map_or("", |(_, t)| t).contains(needle);
    r.checks().iter().any(|l| l.starts_with(level) && text(l))
}

#[test]
fn a_working_setup_passes_with_one_line_per_check() {
    let r = report(&cfg(), &good());
    assert!(r.passed(), "{}", r.render());
    assert_eq!(r.exit_code(), 0);
    let text = r.render();
    assert_eq!(
        text,
        "ok   config: target 10.0.0.1 (from POD_IP), 1 target group(s), region us-east-1
ok   credentials: source web identity (IRSA); identity arn:aws:sts::123456789012:assumed-role/nlb/pod (account 123456789012)
ok   target group web: exists (arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef)
ok   target group web: target type ip
ok   target group web: IP address type ipv4 matches target 10.0.0.1
ok   target group web: attached to 1 load balancer(s)
ok   target group web: health check HTTP on traffic-port /healthz every 10s; a new target healthy after one passing check (at least 10s), healthy again after 3 passing, unhealthy after 2 failing; security groups must let the load balancer reach the target and health-check ports
ok   target group web: deregistration delay 1m within -wait-drained-timeout 5m
ok   target group web: target 10.0.0.1:8080 is not registered yet
ok   target group web: may deregister (DeregisterTargets of the unregistered target answered success)
check passed: the sidecar would work here (RegisterTargets is not tried: it would change the group)
",
    );
}

#[test]
fn moto_invalid_target_answer_counts_as_permission() {
    let mut f = good();
    f.groups[0].deregister = Some(Err(aws("DeregisterTargets", "InvalidTarget")));
    let r = report(&cfg(), &f);
    assert!(r.passed());
    assert!(has(&r, "ok  ", "answered InvalidTarget, not AccessDenied"));
}

#[test]
fn denied_deregistration_fails_naming_what_and_why() {
    let mut f = good();
    f.groups[0].deregister = Some(Err(aws("DeregisterTargets", "AccessDenied")));
    let r = report(&cfg(), &f);
    assert_eq!(r.exit_code(), 1);
    assert!(has(&r, FAIL, "may not deregister"));
    assert!(has(&r, FAIL, "AccessDenied"));
    assert!(r
        .render()
        .ends_with("check FAILED: 1 problem(s) in target group web\n"));
}

#[test]
fn missing_wrong_type_wrong_family_and_unattached_groups_fail() {
    let mut f = good();
    // What gather finds for a group that does not exist: no ARN, no more calls.
    let g = &mut f.groups[0];
    (g.described, g.attributes, g.registered, g.deregister) = (Ok(None), None, None, None);
    let r = report(&cfg(), &f);
    assert!(has(&r, FAIL, "not found"));
    // Nothing else is said about a group that does not exist.
    assert_eq!(r.checks().len(), 3, "{}", r.0);

    let mut f = good();
    let mut g = group();
    g.target_type = Some("instance".into());
    g.ip_address_type = Some("ipv6".into());
    g.load_balancer_arns.clear();
    f.groups[0].described = Ok(Some(g));
    let r = report(&cfg(), &f);
    assert!(has(&r, FAIL, "target type instance"));
    assert!(has(
        &r,
        FAIL,
        "IP address type ipv6, but target 10.0.0.1 is ipv4"
    ));
    assert!(has(&r, FAIL, "not attached to a load balancer"));
    let fails = r.checks().iter().filter(|l| l.starts_with(FAIL)).count();
    assert_eq!(fails, 3);

    // Without -wait-in-service an unattached group only warns.
    let mut c = cfg();
    c.wait_in_service = false;
    let mut f = good();
    let mut g = group();
    g.load_balancer_arns.clear();
    f.groups[0].described = Ok(Some(g));
    let r = report(&c, &f);
    assert!(r.passed());
    assert!(has(&r, "warn", "no traffic"));
}

#[test]
fn ipv6_targets_need_ipv6_groups() {
    let mut c = cfg();
    c.target_id = "fd00::5".into();
    let mut f = good();
    f.groups[0].target.id = "fd00::5".into();
    let r = report(&c, &f);
    assert!(has(
        &r,
        FAIL,
        "IP address type ipv4, but target fd00::5 is ipv6"
    ));
    let mut g = group();
    g.ip_address_type = Some("ipv6".into());
    f.groups[0].described = Ok(Some(g));
    assert!(report(&c, &f).passed());
    // An answer without IpAddressType means ipv4 (older API answers).
    let mut f = good();
    let mut g = group();
    g.ip_address_type = None;
    f.groups[0].described = Ok(Some(g));
    assert!(report(&cfg(), &f).passed());
}

#[test]
fn health_checks_slower_than_the_wait_fail() {
    // A new target needs one passing check: the 10 s interval fails a 10 s
    // wait, while 3 checks (the healthy threshold) x 10 s against a 20 s
    // wait would have failed a working setup.
    let mut c = cfg();
    c.wait_in_service_timeout = Duration::from_secs(20);
    assert!(report(&c, &good()).passed());
    c.wait_in_service_timeout = Duration::from_secs(10);
    let r = report(&c, &good());
    assert!(has(&r, FAIL, "longer than -wait-in-service-timeout 10s"));
    let mut f = good();
    let mut g = group();
    g.health_check.enabled = Some(false);
    f.groups[0].described = Ok(Some(g));
    assert!(has(&report(&cfg(), &f), "warn", "health checks disabled"));
}

#[test]
fn deregistration_delay_against_the_drain_wait() {
    let mut f = good();
    f.groups[0].attributes = Some(Ok(vec![(DEREGISTRATION_DELAY.into(), "300".into())]));
    let mut c = cfg();
    c.wait_drained_timeout = Duration::from_secs(120);
    let r = report(&c, &f);
    assert!(r.passed());
    assert!(has(
        &r,
        "warn",
        "deregistration delay 5m is longer than -wait-drained-timeout 2m"
    ));
    c.wait_drained = false;
    assert!(has(&report(&c, &f), "ok  ", "not waited for"));
    // AccessDenied on the attributes is tolerated with a note.
    f.groups[0].attributes = Some(Err(aws("DescribeTargetGroupAttributes", "AccessDenied")));
    let r = report(&cfg(), &f);
    assert!(r.passed());
    assert!(has(
        &r,
        "warn",
        "may not call DescribeTargetGroupAttributes"
    ));
}

#[test]
fn a_registered_target_is_not_probed_and_denied_health_fails_when_needed() {
    let mut f = good();
    f.groups[0].registered = Some(Ok(Some("healthy".into())));
    f.groups[0].deregister = None;
    let r = report(&cfg(), &f);
    assert!(r.passed());
    assert!(has(&r, "warn", "registered already (healthy)"));

    let mut f = good();
    f.groups[0].registered = Some(Err(aws("DescribeTargetHealth", "AccessDenied")));
    f.groups[0].deregister = None;
    let r = report(&cfg(), &f);
    assert!(has(&r, FAIL, "may not call DescribeTargetHealth"));
    let mut c = cfg();
    c.wait_in_service = false;
    c.wait_drained = false;
    assert!(report(&c, &f).passed());
}

#[test]
fn credentials_and_identity() {
    let mut f = good();
    f.identity = Err(Error::Credentials(
        "AWS_WEB_IDENTITY_TOKEN_FILE /x: not found".into(),
    ));
    f.groups.clear();
    let r = report(&cfg(), &f);
    assert_eq!(r.exit_code(), 1);
    assert!(has(&r, FAIL, "none could be had"));
    assert!(r.render().contains("in credentials"));

    let mut f = good();
    f.identity = Ok(Err(aws("GetCallerIdentity", "InvalidClientTokenId")));
    assert!(!report(&cfg(), &f).passed());
    // A message over several lines still makes one line.
    let mut e = aws("GetCallerIdentity", "SignatureDoesNotMatch");
    if let Error::Aws { error, .. } = &mut e {
        error.message = "The Canonical String should have been\n'POST\n/\n'".into();
    }
    f.identity = Ok(Err(e));
    let r = report(&cfg(), &f);
    assert!(has(&r, FAIL, "should have been 'POST / '"));
    assert_eq!(r.render().lines().count(), 11);
    f.identity = Ok(Err(Error::Transport {
        action: "GetCallerIdentity".into(),
        url: "https://sts.us-east-1.amazonaws.com/".into(),
        kind: crate::aws::error::TransportKind::Timeout,
        detail: "timed out".into(),
    }));
    let r = report(&cfg(), &f);
    assert!(r.passed());
    assert!(has(&r, "warn", "identity unknown"));
}

#[test]
fn describe_denied_fails_for_names_and_warns_for_arns() {
    let mut f = good();
    f.groups[0].described = Err(aws("DescribeTargetGroups", "AccessDenied"));
    f.groups[0].attributes = None;
    f.groups[0].registered = None;
    f.groups[0].deregister = None;
    assert!(has(
        &report(&cfg(), &f),
        FAIL,
        "may not call DescribeTargetGroups"
    ));
    let arn =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef";
    f.groups[0].group = GroupRef::Arn(arn.into());
    f.groups[0].attributes = Some(Ok(vec![]));
    f.groups[0].registered = Some(Ok(None));
    f.groups[0].deregister = Some(Ok(()));
    let r = report(&cfg(), &f);
    assert!(r.passed(), "{}", r.render());
    assert!(has(&r, "warn", "cannot describe it"));
}

/// A fresh directory holding `a/tool` (not executable), `b/tool` (executable),
/// `b/data` (not executable) and `b/sub/`.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nlb-preflight-{name}-{}", std::process::id()));
    let files = [
        ("a/tool", 0o644),
        ("b/tool", 0o755),
        ("b/data", 0o644),
        ("b/sub/x", 0o644),
    ];
    for (file, mode) in files {
        let p = d.join(file);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    d
}

#[test]
fn programs_are_looked_for_as_execvp_would() {
    let d = scratch("locate");
    let (a, b) = (d.join("a"), d.join("b"));
    let path = format!("{}:{}", a.display(), b.display());
    // Not executable in the first directory: execvp goes on, and so do we.
    assert_eq!(locate("tool", Some(&path)), Ok(b.join("tool")));
    let only_a = Some(a.to_str().unwrap());
    let not_executable = format!("{}/tool is not executable", a.display());
    assert_eq!(locate("tool", only_a), Err(not_executable));
    // A directory named like the program is skipped.
    let nowhere = format!("sub is in no directory of the search path {path}");
    assert_eq!(locate("sub", Some(&path)), Err(nowhere));
    // A name with a slash is taken as it is.
    let tool = b.join("tool");
    assert_eq!(locate(tool.to_str().unwrap(), only_a), Ok(tool));
    for (file, why) in [
        ("data", "is not executable"),
        ("sub", "is a directory"),
        ("nope", "does not exist"),
    ] {
        let p = b.join(file).display().to_string();
        assert_eq!(locate(&p, None), Err(format!("{p} {why}")));
    }
    // Unset or empty: musl's default; an empty entry: the working directory.
    let musl = "nlb-nope is in no directory of the search path /usr/local/bin:/bin:/usr/bin";
    assert_eq!(locate("nlb-nope", None), Err(musl.into()));
    assert_eq!(locate("nlb-nope", Some("")), Err(musl.into()));
    let cwd = Err("./Cargo.toml is not executable".into());
    assert_eq!(locate("Cargo.toml", Some("/nowhere::")), cwd);
    std::fs::remove_dir_all(&d).unwrap();
}

/// A command hook of step `name` running `line` (split at spaces).
fn command(name: &'static str, line: &str) -> Option<Hook> {
    let argv = line.split(' ').map(str::to_owned).collect();
    let (action, timeout) = (HookAction::Command(argv), Duration::from_secs(5));
    Some(Hook {
        name,
        action,
        timeout,
    })
}

#[test]
fn hook_programs_are_reported_and_http_hooks_not_called() {
    let d = scratch("hooks");
    let path = format!("{}:{}", d.join("a").display(), d.join("b").display());
    let mut c = cfg();
    c.hooks.extend(command(
        "pre-register",
        "tool -fsS http://127.0.0.1:8080/warm",
    ));
    c.hooks.push(Hook {
        name: "post-register",
        action: HookAction::Http("http://user:secret@127.0.0.1:8080/lb/in".into()),
        timeout: Duration::from_secs(5),
    });
    c.hooks
        .extend(command("post-deregister", "/bin/sh -c sleep&&true"));
    let r = report_in(&c, &good(), Some(&path));
    assert!(r.passed(), "{}", r.render());
    let out = r.render();
    let all: Vec<&str> = out.lines().collect();
    let hooks = &all[all.len() - 4..];
    assert_eq!(
        hooks,
        [
            &format!("ok   pre-register command: runs {}/b/tool", d.display()),
            "ok   post-register HTTP hook: GET http://***@127.0.0.1:8080/lb/in (not called by -check: it may change the app's state)",
            "ok   post-deregister command: runs /bin/sh, shell syntax (&&)",
            "check passed: the sidecar would work here (RegisterTargets is not tried: it would change the group)",
        ],
        "{out}"
    );
    assert!(!r.render().contains("secret"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_missing_pre_register_program_fails_a_missing_post_program_warns() {
    let d = scratch("missing");
    let data = d.join("b/data").display().to_string();
    let mut c = cfg();
    c.hooks
        .extend(command("pre-register", "nlb-nope -q http://127.0.0.1/"));
    c.hooks
        .extend(command("post-deregister", &format!("{data} out")));
    let f = good();
    let r = report(&c, &f);
    assert_eq!(r.exit_code(), 1);
    let out = r.render();
    assert!(
        out.contains(
            "FAIL pre-register command: cannot run: nlb-nope is in no directory of the search path \
         /usr/local/bin:/bin:/usr/bin: the hook would fail and nothing would be registered\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "warn post-deregister command: cannot run: {data} is not executable: \
         the hook would fail (the sidecar logs it and goes on)\n"
        )),
        "{out}"
    );
    assert!(
        out.ends_with("check FAILED: 1 problem(s) in pre-register command\n"),
        "{out}"
    );

    // Only the post-deregister hook missing: a warning, the check passes.
    c.hooks.retain(|h| h.name != "pre-register");
    let r = report(&c, &f);
    assert!(r.passed(), "{}", r.render());
    assert!(has(&r, "warn", &format!("{data} is not executable")));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn hooks_are_reported_even_without_credentials() {
    let mut c = cfg();
    c.hooks.extend(command("pre-register", "nlb-nope"));
    let mut f = good();
    f.identity = Err(Error::Credentials("no source".into()));
    f.groups.clear();
    let r = report_in(&c, &f, Some("/nowhere"));
    assert!(has(
        &r,
        FAIL,
        "nlb-nope is in no directory of the search path /nowhere"
    ));
}

#[test]
fn lb_health_on_a_group_that_resets_connections_warns_naming_the_attribute() {
    let mut c = cfg();
    c.lb_health_addr = Some("10.0.0.1:8081".into());
    let termination = "target_health_state.unhealthy.connection_termination.enabled";
    let warned = |c: &Config, f: &Findings| has(&report(c, f), "warn", termination);
    // Unset (AWS's default, true) and true warn; false does not.
    let mut f = good();
    assert!(warned(&c, &f));
    f.groups[0].attributes = Some(Ok(vec![(termination.into(), "true".into())]));
    assert!(warned(&c, &f));
    f.groups[0].attributes = Some(Ok(vec![
        (termination.into(), "false".into()),
        (UNHEALTHY_DRAINING.into(), "300".into()),
    ]));
    assert!(!warned(&c, &f));
    assert!(has(
        &report(&c, &f),
        "ok  ",
        "draining_interval_seconds 300"
    ));
    // Attributes that cannot be read: the user is told it is unknown.
    f.groups[0].attributes = Some(Err(aws("DescribeTargetGroupAttributes", "AccessDenied")));
    assert!(has(&report(&c, &f), "warn", "enabled unknown"));
    // Nothing without -lb-health-addr, nor on a UDP group.
    assert!(!warned(&cfg(), &good()));
    let mut f = good();
    if let Ok(Some(g)) = &mut f.groups[0].described {
        g.protocol = Some("UDP".into());
    }
    assert!(!warned(&c, &f));
}

#[test]
fn drain_without_an_app_check_warns_that_restarts_stay_out() {
    let mut c = cfg();
    c.status_addr = Some("10.0.0.1:8081".into());
    let needle = "cannot tell an app container restart";
    assert!(has(&report(&c, &good()), "warn", needle));
    c.wait_for_tcp = Some("127.0.0.1:8080".into());
    assert!(!has(&report(&c, &good()), "warn", needle));
    assert!(!has(&report(&cfg(), &good()), "warn", needle));
}
