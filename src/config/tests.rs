use super::*;
use std::collections::HashMap;

/// No target id is detected unless a test names a hosts file.
fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let none = [
        ("HOSTNAME", "pod"),
        ("NLB_HOSTS_FILE", "/nonexistent/hosts"),
    ];
    crate::env::test_env(&[&none[..], pairs].concat())
}

fn args(a: &[&str]) -> Vec<OsString> {
    a.iter().map(OsString::from).collect()
}

fn run(a: &[&str], e: &[(&str, &str)]) -> Result<Config, ConfigError> {
    match parse(args(a), &env(e))? {
        Action::Run(c) => Ok(*c),
        other => panic!("{other:?}"),
    }
}

#[test]
fn go_syntax_forms() {
    for form in [
        &["-target-group-name", "tg", "-target-id", "10.0.0.1"][..],
        &["-target-group-name=tg", "-target-id=10.0.0.1"],
        &["--target-group-name", "tg", "--target-id", "10.0.0.1"],
        &["--target-group-name=tg", "--target-id=10.0.0.1"],
        &["-target-group-name=tg", "-target-id=10.0.0.1", "--"],
    ] {
        let c = run(form, &[]).unwrap();
        assert_eq!(
            c.groups,
            vec![GroupSpec {
                group: GroupRef::Name("tg".into()),
                port: None
            }]
        );
        assert_eq!(c.target_id, "10.0.0.1");
        assert!(c.wait_in_service);
        assert_eq!(c.wait_in_service_timeout, Duration::from_secs(300));
        assert!(c.hooks.is_empty());
    }
}

#[test]
fn values_attached_or_next_with_one_dash_or_two() {
    let c = run(
        &[
            "-target-group-name=tg",
            "--target-id=10.0.0.1",
            "-wait-drained",
            "--wait-in-service=false",
            "-pre-register-command=-x",
            "--post-register-command",
            "--y",
            "-post-deregister-command",
            "a=b",
        ],
        &[],
    )
    .unwrap();
    assert!(c.wait_drained && !c.wait_in_service);
    assert_eq!(c.hook("pre-register").unwrap().argv(), ["-x"]);
    assert_eq!(c.hook("post-register").unwrap().argv(), ["--y"]);
    assert_eq!(c.hook("post-deregister").unwrap().argv(), ["a=b"]);
    for (a, needle) in [
        (&["-t"][..], "not defined: -t "),
        (&["--target-id"], "flag needs an argument: -target-id"),
        (&["-target-id="], "empty value for -target-id"),
        (&["tg2"], "unexpected argument \"tg2\" (flags only"),
        (&["-wait-drained", "false"], "take their value after '='"),
        (&["-"], "unexpected argument \"-\""),
        (&["--", "-x"], "unexpected argument \"-x\""),
    ] {
        let e = run(&[&["-target-group-name", "tg"][..], a].concat(), &[]).unwrap_err();
        assert!(e.contains(needle), "{a:?}: {e}");
    }
    use std::os::unix::ffi::OsStringExt;
    let bad = OsString::from_vec(b"-target-id=\xff".to_vec());
    let e = parse(vec![bad], &env(&[])).unwrap_err();
    assert!(e.contains("not UTF-8"), "{e}");
}

#[test]
fn health_poll_interval_given_or_default() {
    let base = ["-target-group-name", "tg", "-target-id", "10.0.0.1"];
    let c = run(&base, &[]).unwrap();
    assert_eq!(c.health_poll_interval, Duration::from_secs(5));
    assert!(!c.health_poll_explicit);
    let mut a = base.to_vec();
    a.extend(["-health-poll-interval", "5s"]);
    let c = run(&a, &[]).unwrap();
    assert_eq!(c.health_poll_interval, Duration::from_secs(5));
    assert!(c.health_poll_explicit);
    let c = run(&base, &[("NLB_HEALTH_POLL_INTERVAL", "2s")]).unwrap();
    assert_eq!(c.health_poll_interval, Duration::from_secs(2));
    assert!(c.health_poll_explicit);
    let e = run(&base, &[("NLB_HEALTH_POLL_INTERVAL", "9ms")]).unwrap_err();
    assert_eq!(
        e,
        "NLB_HEALTH_POLL_INTERVAL 9ms is too short: at least 10ms"
    );
}

#[test]
fn booleans_and_durations() {
    let base = ["-target-group-name", "tg", "-target-id", "10.0.0.1"];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        run(&a, &[])
    };
    assert!(!with(&["-wait-in-service=false"]).unwrap().wait_in_service);
    assert!(with(&["-wait-in-service"]).unwrap().wait_in_service);
    assert!(with(&["--wait-drained"]).unwrap().wait_drained);
    assert!(!with(&["-wait-drained=0"]).unwrap().wait_drained);
    let e = with(&["-wait-in-service=maybe"]).unwrap_err();
    assert!(e.contains("maybe") && e.contains("-wait-in-service"), "{e}");
    let c = with(&[
        "-wait-in-service-timeout",
        "1m30s",
        "-pre-register-timeout=300ms",
    ])
    .unwrap();
    assert_eq!(c.wait_in_service_timeout, Duration::from_secs(90));
    let c = with(&[
        "-wait-in-service-timeout=5m0s",
        "-deregister-timeout",
        "1.5s",
    ])
    .unwrap();
    assert_eq!(c.wait_in_service_timeout, Duration::from_secs(300));
    assert_eq!(c.deregister_timeout, Duration::from_millis(1500));
    let e = with(&["-deregister-timeout", "100000000h"]).unwrap_err();
    assert!(e.contains("too long"), "{e}");
    let e = with(&["-wait-in-service-timeout", "forever"]).unwrap_err();
    assert!(
        e.contains("forever") && e.contains("-wait-in-service-timeout"),
        "{e}"
    );
}

#[test]
fn values_starting_with_a_dash_are_values() {
    let c = run(
        &[
            "-target-group-name",
            "tg",
            "-target-id",
            "10.0.0.1",
            "-pre-register-command",
            "-x --y",
        ],
        &[],
    );
    // "-x --y" is one argument: the command, split into words.
    assert_eq!(
        c.unwrap().hook("pre-register").unwrap().argv(),
        ["-x", "--y"]
    );
}

#[test]
fn drain_quiet_period_and_lb_health_addr() {
    let base = ["-target-group-name", "tg", "-target-id", "10.0.0.1"];
    let with = |extra: &[&str], e: &[(&str, &str)]| {
        let a: Vec<&str> = base.iter().chain(extra).copied().collect();
        run(&a, e)
    };
    let c = with(&[], &[]).unwrap();
    assert_eq!((c.drain_quiet_period, c.lb_health_addr), (None, None));
    let c = with(
        &[
            "-drain-quiet-period",
            "5s",
            "-lb-health-addr",
            "0.0.0.0:9091",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.drain_quiet_period, Some(Duration::from_secs(5)));
    assert_eq!(c.lb_health_addr.as_deref(), Some("0.0.0.0:9091"));
    let c = with(
        &[],
        &[
            ("NLB_DRAIN_QUIET_PERIOD", "1m30s"),
            ("NLB_LB_HEALTH_ADDR", "[::]:9091"),
        ],
    )
    .unwrap();
    assert_eq!(c.drain_quiet_period, Some(Duration::from_secs(90)));
    assert_eq!(c.lb_health_addr.as_deref(), Some("[::]:9091"));
    // 0 is off.
    assert_eq!(
        with(&["-drain-quiet-period=0s"], &[])
            .unwrap()
            .drain_quiet_period,
        None
    );
    let bad: &[(&[&str], &str)] = &[
        (&["-drain-quiet-period", "soon"], "-drain-quiet-period"),
        (&["-lb-health-addr", "9091"], "-lb-health-addr"),
        (
            &["-drain-quiet-period=5m"],
            "-drain-quiet-period 5m can never end within -wait-drained-timeout 5m",
        ),
    ];
    for (extra, want) in bad {
        let e = with(extra, &[]).unwrap_err().to_string();
        assert!(e.contains(want), "{extra:?}: {e}");
    }
    // A group by ARN has no port until one is given.
    let arn = "arn:aws:elasticloadbalancing:us-east-1:111122223333:targetgroup/tg/0123456789abcdef";
    let by_arn = |extra: &[&str]| {
        let mut a = vec!["-target-group-arn", arn, "-target-id", "10.0.0.1"];
        a.extend_from_slice(extra);
        run(&a, &[])
    };
    let e = by_arn(&["-drain-quiet-period=5s"]).unwrap_err().to_string();
    assert!(e.contains("give -target-port or ARN:PORT"), "{e}");
    assert!(by_arn(&["-drain-quiet-period=5s", "-target-port=8080"]).is_ok());
    let with_port = format!("{arn}:8080");
    let a = [
        "-target-group-arn",
        &with_port,
        "-target-id",
        "10.0.0.1",
        "-drain-quiet-period=5s",
    ];
    assert!(run(&a, &[]).is_ok());
}

#[test]
fn bad_usage_is_named() {
    let cases: &[(&[&str], &str)] = &[
        (&["-nope"], "-nope"),
        (&["-target-group-name"], "-target-group-name"),
        (
            &[
                "-target-group-name",
                "tg",
                "-target-id",
                "10.0.0.1",
                "extra",
            ],
            "extra",
        ),
        (&["-target-group-name", "tg"], "no target id"),
        (&["-target-id", "10.0.0.1"], "no target group"),
        (
            &["-target-group-name", "tg", "-target-id", "pod"],
            "\"pod\"",
        ),
        (
            &["-target-group-name", "tg:99999", "-target-id", "10.0.0.1"],
            "99999",
        ),
        (
            &["-target-group-name", "bad_name", "-target-id", "10.0.0.1"],
            "bad_name",
        ),
        (
            &["-target-group-arn", "arn:nope", "-target-id", "10.0.0.1"],
            "arn:nope",
        ),
        (
            &[
                "-target-group-name",
                "tg",
                "-target-id",
                "10.0.0.1",
                "-target-port",
                "0",
            ],
            "-target-port",
        ),
        (
            &[
                "-target-group-name",
                "tg",
                "-target-id",
                "10.0.0.1",
                "-status-addr",
                "9090",
            ],
            "-status-addr",
        ),
        (
            &[
                "-target-group-name",
                "tg",
                "-target-id",
                "10.0.0.1",
                "-pre-register-command",
                "'open",
            ],
            "quotes",
        ),
        (
            &[
                "-target-group-name",
                "tg",
                "-target-id",
                "10.0.0.1",
                "-log-level",
                "loud",
            ],
            "loud",
        ),
        (
            &[
                "-target-group-name",
                "tg",
                "-target-id",
                "10.0.0.1",
                "-wait-for-http",
                "https://x",
            ],
            "http://",
        ),
        (
            &[
                "-target-group-name",
                "tg",
                "-target-id",
                "10.0.0.1",
                "-wait-for-http",
                "http://app/a b",
            ],
            "-wait-for-http",
        ),
        (
            &[
                "-target-group-name",
                "tg",
                "-target-group-name",
                "tg",
                "-target-id",
                "10.0.0.1",
            ],
            "twice",
        ),
        (&["-x"], "-x"),
        (
            &[
                "-target-group-name",
                "tg",
                "-target-id",
                "10.0.0.1",
                "-wait-in-service",
                "false",
            ],
            "-wait-in-service=false",
        ),
        (
            &["-target-group-name", "tg", "-target-id="],
            "empty value for -target-id",
        ),
        (
            &[
                "-target-group-name",
                "tg",
                "-target-id",
                "10.0.0.1",
                "-health-poll-interval",
                "1ms",
            ],
            "-health-poll-interval 1ms",
        ),
        (
            &[
                "-target-group-name",
                "tg",
                "-target-id",
                "10.0.0.1",
                "-log-format",
                "xml",
            ],
            "\"xml\" for -log-format",
        ),
    ];
    for (a, needle) in cases {
        let e = run(a, &[]).unwrap_err();
        assert!(e.contains(needle), "{a:?}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn role_flags_and_variables() {
    let base = [("NLB_TARGET_GROUP_NAME", "a"), ("POD_IP", "10.0.0.8")];
    assert_eq!(run(&[], &base).unwrap().role_arn, None);
    let arn = "arn:aws:iam::444455556666:role/nlb-registrator";
    let mut e = base.to_vec();
    e.extend([
        ("NLB_ROLE_ARN", arn),
        ("NLB_ROLE_EXTERNAL_ID", "ext-1"),
        ("NLB_ROLE_SESSION_NAME", "pod-a"),
    ]);
    let c = run(&[], &e).unwrap();
    assert_eq!(c.role_arn.as_deref(), Some(arn));
    assert_eq!(c.role_external_id, Some("ext-1".into()));
    assert_eq!(c.role_session_name.as_deref(), Some("pod-a"));
    let dbg = format!("{c:?}");
    assert!(dbg.contains("pod-a") && !dbg.contains("ext-1"), "{dbg}");
    let c = run(&["-role-arn", arn, "-role-session-name=pod-b"], &base).unwrap();
    assert_eq!(
        (c.role_external_id, c.role_session_name.as_deref()),
        (None, Some("pod-b"))
    );

    let mut e = base.to_vec();
    e.push(("NLB_ROLE_EXTERNAL_ID", "ext-1"));
    let err = run(&[], &e).unwrap_err();
    assert!(
        err.starts_with("NLB_ROLE_EXTERNAL_ID is set but -role-arn (NLB_ROLE_ARN) is not"),
        "{err}"
    );
    let err = run(&["-role-session-name", "s1"], &base).unwrap_err();
    assert!(err.starts_with("-role-session-name is set"), "{err}");
    let err = run(&["-role-arn", "my-role"], &base).unwrap_err();
    assert!(
        err.starts_with("-role-arn: invalid role ARN \"my-role\""),
        "{err}"
    );
}

#[test]
fn env_fallbacks_and_precedence() {
    let e = [
        ("NLB_TARGET_GROUP_NAME", "a:8080, b"),
        ("NLB_TARGET_ID", "10.0.0.9"),
        ("POD_IP", "10.0.0.8"),
        ("NLB_WAIT_IN_SERVICE", "false"),
        ("NLB_TARGET_PORT", "9000"),
        ("NLB_PRE_REGISTER_COMMAND", "echo 'hello world'"),
        ("NLB_PRE_REGISTER_TIMEOUT", "2s"),
    ];
    let c = run(&[], &e).unwrap();
    assert_eq!(
        c.groups,
        vec![
            GroupSpec {
                group: GroupRef::Name("a".into()),
                port: Some(8080)
            },
            GroupSpec {
                group: GroupRef::Name("b".into()),
                port: None
            }
        ]
    );
    assert_eq!(c.target_id, "10.0.0.9");
    assert_eq!(c.target_id_source, "NLB_TARGET_ID");
    assert!(!c.wait_in_service);
    assert_eq!(c.target_port, Some(9000));
    let hook = c.hook("pre-register").unwrap();
    assert_eq!(hook.argv(), ["echo", "hello world"]);
    assert_eq!(hook.timeout, Duration::from_secs(2));

    let c = run(
        &[
            "-target-group-name",
            "z",
            "-target-id",
            "10.0.0.1",
            "-wait-in-service",
        ],
        &e,
    )
    .unwrap();
    assert_eq!(c.groups.len(), 1);
    assert_eq!(c.target_id, "10.0.0.1");
    assert!(c.wait_in_service);

    let c = run(
        &[],
        &[("NLB_TARGET_GROUP_NAME", "a"), ("POD_IP", "10.0.0.8")],
    )
    .unwrap();
    assert_eq!(
        (c.target_id.as_str(), c.target_id_source.as_str()),
        ("10.0.0.8", "POD_IP")
    );
    let e = run(
        &[],
        &[
            ("NLB_TARGET_GROUP_NAME", "a"),
            ("POD_IP", "10.0.0.8"),
            ("NLB_DEREGISTER_TIMEOUT", "x"),
        ],
    )
    .unwrap_err();
    assert!(e.contains("NLB_DEREGISTER_TIMEOUT"), "{e}");
}

#[test]
fn groups_from_names_and_arns_add_up_whichever_side_they_come_from() {
    let arn =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/my-tg/73e2d6bc24d8a067";
    let by_name = |n: &str| GroupSpec {
        group: GroupRef::Name(n.into()),
        port: None,
    };
    let by_arn = GroupSpec {
        group: GroupRef::Arn(arn.into()),
        port: None,
    };
    let id = ["-target-id", "10.0.0.1"];
    let c = run(
        &[&id[..], &["-target-group-name", "a"]].concat(),
        &[("NLB_TARGET_GROUP_ARN", arn)],
    )
    .unwrap();
    assert_eq!(c.groups, vec![by_name("a"), by_arn.clone()]);
    let c = run(
        &[&id[..], &["-target-group-arn", arn]].concat(),
        &[("NLB_TARGET_GROUP_NAME", "b")],
    )
    .unwrap();
    assert_eq!(c.groups, vec![by_name("b"), by_arn.clone()]);
    // A flag still beats its own variable.
    let c = run(
        &[&id[..], &["-target-group-name", "a"]].concat(),
        &[
            ("NLB_TARGET_GROUP_NAME", "b"),
            ("NLB_TARGET_GROUP_ARN", arn),
        ],
    )
    .unwrap();
    assert_eq!(c.groups, vec![by_name("a"), by_arn]);
    // Errors name the variable a bad item came from.
    let e = run(
        &[&id[..], &["-target-group-name", "a"]].concat(),
        &[("NLB_TARGET_GROUP_ARN", "arn:nope")],
    )
    .unwrap_err();
    assert!(e.contains("NLB_TARGET_GROUP_ARN"), "{e}");
}

#[test]
fn http_hooks_take_http_urls_and_exclude_the_command_of_their_step() {
    let base = ["-target-group-name", "tg", "-target-id", "10.0.0.1"];
    let c = run(
        &[
            &base[..],
            &["-pre-register-http", "http://127.0.0.1:8080/ready"],
            &["-pre-register-timeout", "2s"],
            &["-post-deregister-command", "true"],
        ]
        .concat(),
        &[("NLB_POST_REGISTER_HTTP", "http://10.0.0.1/in")],
    )
    .unwrap();
    let pre = c.hook("pre-register").unwrap();
    assert_eq!(
        pre.action,
        HookAction::Http("http://127.0.0.1:8080/ready".into())
    );
    assert_eq!(pre.timeout, Duration::from_secs(2));
    assert_eq!(pre.describe(), "pre-register HTTP hook");
    assert_eq!(
        c.hook("post-register").unwrap().action,
        HookAction::Http("http://10.0.0.1/in".into())
    );
    assert_eq!(
        c.hook("post-deregister").unwrap().describe(),
        "post-deregister command"
    );

    let refused = |a: &[&str], e: &[(&str, &str)]| run(&[&base[..], a].concat(), e).unwrap_err();
    let e = refused(&["-post-register-http", "https://app/in"], &[]);
    assert!(
        e.contains("-post-register-http") && e.contains("https:// is not supported"),
        "{e}"
    );
    let e = refused(&[], &[("NLB_POST_DEREGISTER_HTTP", "ftp://app/out")]);
    assert!(
        e.contains("NLB_POST_DEREGISTER_HTTP") && e.contains("http://"),
        "{e}"
    );
    for bad in ["http://", "http:///x", "http://a b/", "127.0.0.1:80/x"] {
        let e = refused(&["-pre-register-http", bad], &[]);
        assert!(e.contains("-pre-register-http"), "{bad}: {e}");
    }
    let e = refused(
        &["-pre-register-command", "true"],
        &[("NLB_PRE_REGISTER_HTTP", "http://127.0.0.1/")],
    );
    assert!(
        e.contains("-pre-register-command")
            && e.contains("NLB_PRE_REGISTER_HTTP")
            && e.contains("both"),
        "{e}"
    );
    // Blank counts as absent, as for commands.
    let c = run(
        &[
            &base[..],
            &["-pre-register-http", " ", "-pre-register-command", "true"],
        ]
        .concat(),
        &[],
    )
    .unwrap();
    assert_eq!(c.hook("pre-register").unwrap().argv(), ["true"]);
}

#[test]
fn hooks_in_shell_syntax_need_a_shell() {
    let base = ["-target-group-name", "tg", "-target-id", "10.0.0.1"];
    let c = run(
        &[&base[..], &["-post-register-command", "a && b"]].concat(),
        &[("NLB_PRE_REGISTER_COMMAND", "echo 'a && b'")],
    )
    .unwrap();
    assert_eq!(c.hook("pre-register").unwrap().shell_syntax(), None);
    let post = c.hook("post-register").unwrap();
    assert_eq!(post.argv(), ["/bin/sh", "-c", "a && b"]);
    assert_eq!(post.shell_syntax(), Some("&&"));
    assert_eq!(check_shell(&c, true), Ok(()));
    let e = check_shell(&c, false).unwrap_err();
    assert!(
        e.contains("-post-register-command")
            && e.contains("&&")
            && e.contains("/bin/sh")
            && !e.contains('\n'),
        "{e}"
    );
    let plain = run(
        &[&base[..], &["-pre-register-command", "true"]].concat(),
        &[],
    )
    .unwrap();
    assert_eq!(check_shell(&plain, false), Ok(()));
}

#[test]
fn arns_with_and_without_port() {
    let arn =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/my-tg/73e2d6bc24d8a067";
    let c = run(
        &[
            "-target-group-arn",
            arn,
            "-target-group-arn",
            &format!("{arn}:8443"),
            "-target-id",
            "10.0.0.1",
        ],
        &[],
    );
    // The same ARN twice with different ports is two registrations.
    let c = c.unwrap();
    assert_eq!(
        c.groups[0],
        GroupSpec {
            group: GroupRef::Arn(arn.into()),
            port: None
        }
    );
    assert_eq!(
        c.groups[1],
        GroupSpec {
            group: GroupRef::Arn(arn.into()),
            port: Some(8443)
        }
    );
    let c = run(
        &[],
        &[
            ("NLB_TARGET_GROUP_ARN", &format!("{arn},{arn}:81")),
            ("POD_IP", "fd00::5"),
        ],
    )
    .unwrap();
    assert_eq!(c.groups.len(), 2);
    assert_eq!(c.target_id, "fd00::5");
    let c = run(
        &[],
        &[
            ("NLB_TARGET_GROUP_ARN", arn),
            ("POD_IP", "2600:1F14:0:0:0:0:0:1A2B"),
        ],
    )
    .unwrap();
    assert_eq!(c.target_id, "2600:1f14::1a2b");
    assert!(run(
        &[],
        &[("NLB_TARGET_GROUP_ARN", arn), ("POD_IP", "[fd00::5]")]
    )
    .is_err());
}

#[test]
fn log_format_and_check() {
    let base = ["-target-group-name", "tg", "-target-id", "10.0.0.1"];
    let c = run(&base, &[]).unwrap();
    assert_eq!((c.log_json, c.check), (false, false));
    let c = run(
        &[&base[..], &["-check", "-log-format", "JSON"]].concat(),
        &[],
    )
    .unwrap();
    assert_eq!((c.log_json, c.check), (true, true));
    let c = run(&base, &[("NLB_LOG_FORMAT", "json"), ("NLB_CHECK", "true")]).unwrap();
    assert_eq!((c.log_json, c.check), (true, true));
    let e = run(&base, &[("NLB_LOG_FORMAT", "yaml")]).unwrap_err();
    assert!(e.contains("NLB_LOG_FORMAT"), "{e}");
}

#[test]
fn detection_is_the_last_resort() {
    let path = std::env::temp_dir().join(format!("nlb-hosts-{}", std::process::id()));
    std::fs::write(&path, "127.0.0.1 localhost\n10.1.2.3\tweb-0\n").unwrap();
    let hosts = path.to_str().unwrap();
    let found = run(
        &["-target-group-name", "tg"],
        &[("HOSTNAME", "web-0"), ("NLB_HOSTS_FILE", hosts)],
    );
    let missing = run(&["-target-group-name", "tg"], &[("NLB_HOSTS_FILE", hosts)]);
    std::fs::remove_file(&path).unwrap();
    let c = found.unwrap();
    assert_eq!(
        (&c.target_id[..], &c.target_id_source[..]),
        ("10.1.2.3", "/etc/hosts")
    );
    let e = missing.unwrap_err();
    assert!(
        e.contains("no target id") && e.contains("no line for hostname \"pod\""),
        "{e}"
    );
    let c = run(
        &["-target-group-name", "tg"],
        &[("POD_IP", "10.0.0.9"), ("NLB_HOSTS_FILE", hosts)],
    );
    assert_eq!(c.unwrap().target_id_source, "POD_IP");
}

#[test]
fn help_and_version() {
    let u = resolve::usage();
    for h in ["-h", "-help", "--help", "--h"] {
        let a = parse(args(&[h]), &env(&[])).unwrap();
        assert_eq!(a, Action::Print(u.clone()));
    }
    for v in ["--version", "-version"] {
        let a = parse(args(&[v]), &env(&[])).unwrap();
        assert_eq!(a, Action::Print(format!("{PROGRAM} {VERSION}\n")));
    }
    assert!(u.starts_with("Usage of k8s-nlb-registrator-sidecar:\n"));
    for (name, ..) in resolve::FLAGS {
        assert!(u.contains(&format!("  -{name}")));
    }
    assert!(u.contains("(default 5m)"));
    assert!(u.contains("NLB_WAIT_IN_SERVICE_TIMEOUT"));
}

#[test]
fn hosts_file_detection() {
    let hosts = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
                 fe00::0\tip6-localnet\n10.244.1.17\tweb-6d4cf56db6-x2x9z\n";
    assert_eq!(
        pod_ip_from_hosts(hosts, "web-6d4cf56db6-x2x9z").as_deref(),
        Some("10.244.1.17")
    );
    assert_eq!(pod_ip_from_hosts(hosts, "other"), None);
    let sub = "10.0.0.7\tweb-0.web.default.svc.cluster.local\tweb-0\n";
    assert_eq!(pod_ip_from_hosts(sub, "web-0").as_deref(), Some("10.0.0.7"));
    assert_eq!(pod_ip_from_hosts("127.0.1.1 box\n", "box"), None);
    assert_eq!(pod_ip_from_hosts("garbage line\n\n", "garbage"), None);
    assert_eq!(pod_ip_from_hosts(hosts, ""), None);
}

#[test]
fn hosts_file_detection_ipv6() {
    // An EKS IPv6 pod's hosts file, as the kubelet writes it.
    let hosts = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
                 fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
                 2600:1F14:ABC:DEF0::1A2B\tweb-6d4cf56db6-x2x9z\n";
    assert_eq!(
        pod_ip_from_hosts(hosts, "web-6d4cf56db6-x2x9z").as_deref(),
        Some("2600:1f14:abc:def0::1a2b")
    );
    assert_eq!(
        pod_ip_from_hosts(hosts, "ip6-allnodes").as_deref(),
        Some("fe00::1")
    );
    assert_eq!(pod_ip_from_hosts("fe80::1\tbox\n", "box"), None);
    assert_eq!(pod_ip_from_hosts("::\tbox\n", "box"), None);
    assert_eq!(pod_ip_from_hosts("fe80::1%eth0\tbox\n", "box"), None);
}

#[test]
fn drain_ignore_from_is_a_repeatable_list_of_cidrs() {
    let base = ["-target-group-name", "tg", "-target-id", "10.0.0.1"];
    let with = |extra: &[&str], e: &[(&str, &str)]| {
        let a: Vec<&str> = base.iter().chain(extra).copied().collect();
        run(&a, e).map(|c| c.drain_ignore_from)
    };
    let cidrs = |l: &[&str]| {
        l.iter()
            .map(|c| parse_cidr("t", c).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(with(&[], &[]).unwrap(), []);
    let var = [(
        "NLB_DRAIN_IGNORE_FROM",
        "10.0.0.0/8, fd00::/64,,192.168.1.2",
    )];
    assert_eq!(
        with(&[], &var).unwrap(),
        cidrs(&["10.0.0.0/8", "fd00::/64", "192.168.1.2/32"])
    );
    // Flags beat the variable.
    let flags = [
        "-drain-ignore-from",
        "10.1.2.3/32",
        "-drain-ignore-from=::1/128",
    ];
    assert_eq!(
        with(&flags, &var).unwrap(),
        cidrs(&["10.1.2.3/32", "::1/128"])
    );
    for bad in [
        "$(HOST_IP)/32",
        "10.0.0.1/33",
        "::1/129",
        "10.0.0.1/",
        "10.0.0/8",
        "/8",
    ] {
        let e = with(&["-drain-ignore-from", bad], &[]).unwrap_err();
        assert_eq!(
            e,
            format!(
                "invalid CIDR {bad:?} for -drain-ignore-from: expected ADDRESS/PREFIX, \
                 e.g. 10.0.0.5/32 or fd00::/64"
            )
        );
    }
}

#[test]
fn cidr_contains() {
    let cidr = |s: &str| parse_cidr("t", s).unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let node = cidr("10.0.3.7/32");
    assert!(node.contains(ip("10.0.3.7")));
    assert!(!node.contains(ip("10.0.3.8")));
    // An IPv4 peer of a dual-stack socket, as /proc/net/tcp6 shows it.
    assert!(node.contains(ip("::ffff:10.0.3.7")));
    assert!(!node.contains(ip("::ffff:10.0.3.8")));
    assert!(cidr("10.0.0.0/8").contains(ip("10.255.0.1")));
    assert!(!cidr("10.0.0.0/8").contains(ip("11.0.0.1")));
    assert!(cidr("0.0.0.0/0").contains(ip("192.0.2.1")));
    assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
    assert!(cidr("::/0").contains(ip("2001:db8::1")));
    assert!(cidr("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
    assert!(!cidr("2001:db8::/32").contains(ip("2001:db9::1")));
    assert!(cidr("2001:db8::5/128").contains(ip("2001:db8::5")));
    assert!(!cidr("2001:db8::5/128").contains(ip("10.0.3.7")));
}

#[test]
fn every_default_is_a_valid_value() {
    for (name, default, _) in resolve::FLAGS.iter().filter(|f| !f.1.is_empty()) {
        let ok = match *name {
            _ if is_bool(default) => parse_bool(name, default).is_ok(),
            "log-level" => parse_log_level(name, default).is_ok(),
            "log-format" => parse_log_format(name, default).is_ok(),
            _ => parse_duration(name, default).is_ok(),
        };
        assert!(ok, "default of -{name} is {default:?}");
    }
}
