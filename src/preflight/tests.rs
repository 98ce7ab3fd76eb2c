use super::*;
use crate::aws::credentials::{Credentials, Secret, Source};
use crate::aws::elbv2::HealthCheck;
use crate::aws::error::TransportKind;
use crate::aws::tests::{ok as answer, status, Scripted};
use crate::aws::{AwsError, Settings};
use crate::clock::testing::FakeClock;
use std::os::unix::fs::PermissionsExt;

fn cfg() -> Config {
    Config {
        groups: vec![GroupSpec {
            group: GroupRef::Name("web".into()),
            port: None,
        }],
        target_id: "10.0.1.23".into(),
        target_id_source: "POD_IP".into(),
        target_port: Some(80),
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

const IDENTITY: &[u8] = include_bytes!("../../tests/data/get_caller_identity.xml");
const GROUPS: &[u8] = include_bytes!("../../tests/data/describe_target_groups.xml");
const ATTRIBUTES: &[u8] = include_bytes!("../../tests/data/describe_target_group_attributes.xml");
const UNUSED: &[u8] = include_bytes!("../../tests/data/describe_target_health_unused.xml");
const HEALTHY: &[u8] = include_bytes!("../../tests/data/describe_target_health.xml");
const DEREGISTERED: &[u8] = include_bytes!("../../tests/data/deregister_targets.xml");
const ARN: &str =
    "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067";

/// An AWS error answer with `code` (and a message saying so).
fn refused(code: &str) -> Answer {
    let xml = format!("<ErrorResponse><Error><Code>{code}</Code><Message>{code} message</Message></Error><RequestId>rid-1</RequestId></ErrorResponse>");
    status(400, xml.as_bytes())
}

/// The report as the tests read it (text, exit code) and the actions called.
struct Report(String, i32, Vec<String>);

type Answer = Result<crate::aws::http::HttpResponse, Error>;

fn keys() -> Source {
    Source::Static(Credentials {
        access_key_id: "AKID".into(),
        secret_access_key: Secret::new("SECRET".into()),
        session_token: None,
        expiry: None,
    })
}

/// `-check` with `cfg`, environment keys and `PATH` unset, AWS answering `answers`.
fn run(cfg: &Config, answers: Vec<Answer>) -> Report {
    run_with(cfg, keys(), answers, None)
}

fn run_with(cfg: &Config, source: Source, answers: Vec<Answer>, path: Option<&str>) -> Report {
    let s = Scripted::new(answers);
    let settings = Settings {
        region: "us-east-1".into(),
        elbv2_url: "http://127.0.0.1:1".into(),
        sts_url: "http://127.0.0.1:2".into(),
        source,
        role: None,
    };
    let (text, code) = check(
        cfg,
        &mut Client::new(&s, settings),
        &mut FakeClock::new(),
        path,
    );
    let seen = s.seen.borrow();
    let action = |body: &[u8]| {
        let body = String::from_utf8_lossy(body);
        let a = body.split('&').find_map(|p| p.strip_prefix("Action="));
        a.unwrap_or_default().to_owned()
    };
    Report(text, code, seen.iter().map(|r| action(&r.body)).collect())
}

/// Every call answered as a working setup's.
fn good() -> Vec<Answer> {
    let bodies = [IDENTITY, GROUPS, ATTRIBUTES, UNUSED, DEREGISTERED];
    bodies.into_iter().map(answer).collect()
}

impl Report {
    fn passed(&self) -> bool {
        self.1 == 0
    }
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
fn a_working_setup_passes_with_one_line_per_check_in_the_order_of_the_calls() {
    let r = run(&cfg(), good());
    assert_eq!(r.1, 0);
    assert_eq!(
        r.0,
        format!("ok   config: target 10.0.1.23 (from POD_IP), 1 target group(s), region us-east-1
ok   credentials: source environment; identity arn:aws:iam::123456789012:user/Alice (account 123456789012)
ok   target group web: exists ({ARN})
ok   target group web: target type ip
ok   target group web: IP address type ipv4 matches target 10.0.1.23
ok   target group web: attached to 1 load balancer(s)
ok   target group web: health check TCP on traffic-port every 30s; a new target healthy after one passing check (at least 30s), healthy again after 3 passing, unhealthy after 3 failing; security groups must let the load balancer reach the target and health-check ports
ok   target group web: deregistration delay 5m within -wait-drained-timeout 5m
ok   target group web: target 10.0.1.23:80 is not registered yet
ok   target group web: may deregister (DeregisterTargets of the unregistered target answered success)
check passed: the sidecar would work here (RegisterTargets is not tried: it would change the group)
"),
    );
    let calls = [
        "GetCallerIdentity",
        "DescribeTargetGroups",
        "DescribeTargetGroupAttributes",
        "DescribeTargetHealth",
        "DeregisterTargets",
    ];
    assert_eq!(r.2, calls);
}

#[test]
fn denied_deregistration_fails_naming_what_and_why() {
    let mut answers = good();
    answers[4] = refused("AccessDenied");
    let r = run(&cfg(), answers);
    assert_eq!(r.1, 1);
    assert!(has(&r, FAIL, "may not deregister"));
    assert!(has(&r, FAIL, "AccessDenied"));
    assert!(r
        .0
        .ends_with("check FAILED: 1 problem(s) in target group web\n"));
    // moto's answer to deregistering an unregistered target shows the permission too.
    let mut answers = good();
    answers[4] = refused("InvalidTarget");
    let r = run(&cfg(), answers);
    assert!(r.passed());
    assert!(has(&r, "ok  ", "answered InvalidTarget, not AccessDenied"));
    assert_eq!(probe(&Err(aws("InvalidTarget"))).unwrap().0, "ok  ");
    assert_eq!(probe(&Err(aws("Throttling"))).unwrap().0, FAIL);
}

#[test]
fn a_group_not_found_gets_no_more_calls_nor_lines() {
    let mut answers = good();
    answers[1] = refused("TargetGroupNotFound");
    let r = run(&cfg(), answers);
    assert!(has(&r, FAIL, "not found"));
    assert_eq!(r.checks().len(), 3, "{}", r.0);
    assert_eq!(r.2, ["GetCallerIdentity", "DescribeTargetGroups"]);
    let empty = br#"<DescribeTargetGroupsResponse><DescribeTargetGroupsResult><TargetGroups/></DescribeTargetGroupsResult></DescribeTargetGroupsResponse>"#;
    let r = run(&cfg(), vec![answer(IDENTITY), answer(empty)]);
    assert!(has(&r, FAIL, "not found"));
    assert_eq!(r.checks().len(), 3, "{}", r.0);
}

#[test]
fn a_registered_target_is_not_probed_and_an_invalid_target_is_absent() {
    let mut answers = good();
    answers[3] = answer(HEALTHY);
    answers.pop();
    let r = run(&cfg(), answers);
    assert!(r.passed());
    assert!(has(&r, "warn", "registered already (healthy)"));
    assert_eq!(r.2.len(), 4, "no DeregisterTargets: {:?}", r.2);
    let mut answers = good();
    answers[3] = refused("InvalidTarget");
    let r = run(&cfg(), answers);
    assert!(has(&r, "ok  ", "is not registered yet"));
    assert_eq!(r.2.len(), 5);
}

#[test]
fn without_credentials_nothing_is_called_and_hooks_are_still_reported() {
    let mut c = cfg();
    c.hooks.extend(command("pre-register", "nlb-nope"));
    let source = Source::WebIdentity {
        role_arn: "arn:aws:iam::123456789012:role/nlb".into(),
        token_file: "/nonexistent/token".into(),
        session_name: "s".into(),
    };
    let r = run_with(&c, source, good(), Some("/nowhere"));
    assert_eq!(r.1, 1);
    assert!(has(&r, FAIL, "none could be had"));
    assert!(
        r.0.contains("in credentials, pre-register command"),
        "{}",
        r.0
    );
    assert!(r.2.is_empty(), "{:?}", r.2);
    let nowhere = "nlb-nope is in no directory of the search path /nowhere";
    assert!(has(&r, FAIL, nowhere));
}

#[test]
fn refused_credentials_fail_in_one_line_an_unreachable_sts_warns() {
    let mut answers = good();
    answers[0] = refused("InvalidClientTokenId");
    assert!(!run(&cfg(), answers).passed());
    // A message over several lines still makes one line.
    let multi = "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>The Canonical String should have been\n'POST\n/\n'</Message></Error></ErrorResponse>";
    let mut answers = good();
    answers[0] = status(403, multi.as_bytes());
    let r = run(&cfg(), answers);
    assert!(has(&r, FAIL, "should have been 'POST / '"));
    assert_eq!(r.0.lines().count(), 11);
    let timeout = Err(Error::Transport {
        action: "GetCallerIdentity".into(),
        url: "https://sts.us-east-1.amazonaws.com/".into(),
        kind: TransportKind::Timeout,
        detail: "timed out".into(),
    });
    let v = credentials("environment", &Ok(timeout)).unwrap();
    assert_eq!(v.0, "warn");
    assert!(v.1.contains("identity unknown"), "{}", v.1);
}

#[test]
fn describe_denied_fails_for_names_and_warns_for_arns_used_as_given() {
    let mut answers = good();
    answers[1] = refused("AccessDenied");
    let r = run(&cfg(), answers);
    assert!(has(&r, FAIL, "may not call DescribeTargetGroups"));
    assert_eq!(r.2.len(), 2);
    let mut c = cfg();
    c.groups[0].group = GroupRef::Arn(ARN.into());
    let mut answers = good();
    answers[1] = refused("AccessDenied");
    let r = run(&c, answers);
    assert!(r.passed(), "{}", r.0);
    assert!(has(&r, "warn", "cannot describe it"));
    assert_eq!(r.2.len(), 5);
}

fn aws(code: &str) -> Error {
    Error::Aws {
        action: "X".into(),
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
        arn: ARN.into(),
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

fn level(v: Verdict) -> &'static str {
    v.map_or("none", |(level, _)| level)
}

/// `v`'s level is `level` and its text holds `needle`.
fn says(v: Verdict, level: &str, needle: &str) -> bool {
    v.is_some_and(|(l, text)| l == level && text.contains(needle))
}

#[test]
fn wrong_type_wrong_family_and_unattached_groups_fail() {
    let mut g = group();
    g.target_type = Some("instance".into());
    g.ip_address_type = Some("ipv6".into());
    g.load_balancer_arns.clear();
    assert!(says(ip_type(&cfg(), &g), FAIL, "target type instance"));
    let wrong = "IP address type ipv6, but target 10.0.1.23 is ipv4";
    assert!(says(family(&cfg(), &g), FAIL, wrong));
    assert!(says(
        attached(&cfg(), &g),
        FAIL,
        "not attached to a load balancer"
    ));
    // Without -wait-in-service an unattached group only warns.
    let mut c = cfg();
    c.wait_in_service = false;
    assert!(says(attached(&c, &g), "warn", "no traffic"));
    assert!(says(attached(&c, &group()), "ok  ", "attached to 1"));
}

#[test]
fn ipv6_targets_need_ipv6_groups() {
    let mut c = cfg();
    c.target_id = "fd00::5".into();
    let wrong = "IP address type ipv4, but target fd00::5 is ipv6";
    assert!(says(family(&c, &group()), FAIL, wrong));
    let mut g = group();
    g.ip_address_type = Some("ipv6".into());
    assert_eq!(level(family(&c, &g)), "ok  ");
    // An answer without IpAddressType means ipv4 (older API answers).
    g.ip_address_type = None;
    assert_eq!(level(family(&cfg(), &g)), "ok  ");
}

#[test]
fn health_checks_slower_than_the_wait_fail() {
    // A new target needs one passing check: the 10 s interval fails a 10 s
    // wait, while 3 checks (the healthy threshold) x 10 s against a 20 s
    // wait would have failed a working setup.
    let mut c = cfg();
    c.wait_in_service_timeout = Duration::from_secs(20);
    let want = "health check HTTP on traffic-port /healthz every 10s; a new target healthy after one passing check (at least 10s), healthy again after 3 passing, unhealthy after 2 failing; security";
    assert!(says(health(&c, &group()), "ok  ", want));
    c.wait_in_service_timeout = Duration::from_secs(10);
    let slow = "longer than -wait-in-service-timeout 10s";
    assert!(says(health(&c, &group()), FAIL, slow));
    let mut g = group();
    g.health_check.enabled = Some(false);
    assert!(says(health(&cfg(), &g), "warn", "health checks disabled"));
}

#[test]
fn deregistration_delay_against_the_drain_wait() {
    let attrs = Ok(vec![(DEREGISTRATION_DELAY.into(), "300".into())]);
    let mut c = cfg();
    c.wait_drained_timeout = Duration::from_secs(120);
    let long = "deregistration delay 5m is longer than -wait-drained-timeout 2m";
    assert!(says(delay(&c, &attrs), "warn", long));
    c.wait_drained = false;
    assert!(says(delay(&c, &attrs), "ok  ", "not waited for"));
    // AccessDenied on the attributes is tolerated with a note.
    let denied = Err(aws("AccessDenied"));
    let note = "may not call DescribeTargetGroupAttributes";
    assert!(says(delay(&cfg(), &denied), "warn", note));
    let unreadable = "no readable deregistration_delay.timeout_seconds";
    assert!(says(delay(&cfg(), &Ok(vec![])), "warn", unreadable));
}

#[test]
fn denied_health_fails_when_a_wait_needs_it() {
    let t = Target {
        id: "10.0.1.23".into(),
        port: Some(80),
        availability_zone: None,
    };
    let denied = Err(aws("AccessDenied"));
    let needle = "may not call DescribeTargetHealth";
    assert!(says(registered(&cfg(), &t, &denied), FAIL, needle));
    let mut c = cfg();
    c.wait_in_service = false;
    c.wait_drained = false;
    assert!(says(registered(&c, &t, &denied), "warn", needle));
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
    let r = run_with(&c, keys(), good(), Some(&path));
    assert!(r.passed(), "{}", r.0);
    let all: Vec<&str> = r.0.lines().collect();
    let hooks = &all[all.len() - 4..];
    assert_eq!(
        hooks,
        [
            &format!("ok   pre-register command: runs {}/b/tool", d.display()),
            "ok   post-register HTTP hook: GET http://***@127.0.0.1:8080/lb/in (not called by -check: it may change the app's state)",
            "ok   post-deregister command: runs /bin/sh, shell syntax (&&)",
            "check passed: the sidecar would work here (RegisterTargets is not tried: it would change the group)",
        ],
        "{}", r.0
    );
    assert!(!r.0.contains("secret"));
    assert_eq!(r.2.len(), 5, "an HTTP hook is not called");
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
    let r = run(&c, good());
    assert_eq!(r.1, 1);
    let out = &r.0;
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
    let r = run(&c, good());
    assert!(r.passed(), "{}", r.0);
    assert!(has(&r, "warn", &format!("{data} is not executable")));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn lb_health_on_a_group_that_resets_connections_warns_naming_the_attribute() {
    let mut c = cfg();
    c.lb_health_addr = Some("10.0.0.1:8081".into());
    let termination = "target_health_state.unhealthy.connection_termination.enabled";
    let attrs = |v: &[(&str, &str)]| {
        let pairs = v.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Ok(pairs.collect())
    };
    let warned = |c: &Config, tg: &TargetGroup, a: &Result<_, _>| {
        says(resets(c, tg, a), "warn", termination)
    };
    // Unset (AWS's default, true) and true warn; false does not.
    assert!(warned(&c, &group(), &attrs(&[])));
    assert!(warned(&c, &group(), &attrs(&[(termination, "true")])));
    let off = attrs(&[(termination, "false"), (UNHEALTHY_DRAINING, "300")]);
    assert!(!warned(&c, &group(), &off));
    let interval = "draining_interval_seconds 300";
    assert!(says(resets(&c, &group(), &off), "ok  ", interval));
    // Attributes that cannot be read: the user is told it is unknown.
    let denied = Err(aws("AccessDenied"));
    assert!(says(
        resets(&c, &group(), &denied),
        "warn",
        "enabled unknown"
    ));
    // Nothing without -lb-health-addr, nor on a UDP group.
    assert_eq!(resets(&cfg(), &group(), &attrs(&[])), None);
    let mut g = group();
    g.protocol = Some("UDP".into());
    assert_eq!(resets(&c, &g, &attrs(&[])), None);
    // The report says it, once the group is described.
    assert!(has(&run(&c, good()), "warn", termination));
}

#[test]
fn drain_without_an_app_check_warns_that_restarts_stay_out() {
    let mut c = cfg();
    c.status_addr = Some("10.0.0.1:8081".into());
    let needle = "cannot tell an app container restart";
    assert!(has(&run(&c, good()), "warn", needle));
    c.wait_for_tcp = Some("127.0.0.1:8080".into());
    assert_eq!(drain_without_app_check(&c), None);
    assert_eq!(drain_without_app_check(&cfg()), None);
}
