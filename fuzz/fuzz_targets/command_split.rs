//! Hook command splitting, through our own code path:
//! `config::parse(["-pre-register-command", INPUT, ...valid flags])`.
//!
//! Invariants: a command whose words shlex can split is accepted: with
//! exactly those words when it is plain, as `/bin/sh -c COMMAND` when it
//! uses a shell operator outside quotes (and then it has such an operator
//! word or character); one shlex cannot split (or that is empty, or whose
//! program name is the empty word, as in `''`) is refused with an error,
//! never a panic; blank input means no hook.
#![no_main]

use k8s_nlb_registrator_sidecar::config::{self, Action};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

fuzz_target!(|data: &[u8]| {
    let args: Vec<OsString> = vec![
        "-pre-register-command".into(),
        OsString::from_vec(data.to_vec()),
        "-target-group-name".into(),
        "tg".into(),
        "-target-id".into(),
        "10.0.0.1".into(),
    ];
    let env: HashMap<String, String> = HashMap::new();
    let result = config::parse(args, &env);

    let Ok(text) = std::str::from_utf8(data) else {
        assert!(result.is_err(), "non-UTF-8 command accepted");
        return;
    };
    let expected = shlex::split(text);
    match result {
        Ok(Action::Run(c)) => match c.hook("pre-register") {
            None => assert!(text.trim().is_empty(), "command {text:?} dropped"),
            Some(h) => {
                assert!(!h.argv().is_empty());
                let words = expected.as_ref().expect("accepted a command shlex cannot split");
                match config::shell_operator(text) {
                    Some(op) => {
                        assert_eq!(h.argv(), [config::SHELL, "-c", text], "shell form");
                        assert_eq!(h.shell_syntax(), Some(op));
                        // The operator survives shlex somewhere: outside
                        // quotes it is (part of) a word.
                        assert!(
                            words.iter().any(|w| w.contains(op)),
                            "{op:?} found in {text:?} but not in its words {words:?}"
                        );
                    }
                    None => {
                        assert_eq!(h.argv(), words.as_slice(), "argv differs from shlex");
                        assert_eq!(h.shell_syntax(), None);
                    }
                }
            }
        },
        Ok(other) => panic!("unexpected {other:?}"),
        Err(e) => {
            assert!(!text.trim().is_empty(), "blank command refused: {e}");
            assert!(
                matches!(&expected, None)
                    || matches!(&expected, Some(w) if w.is_empty() || w[0].is_empty()),
                "splittable command {text:?} refused: {e}"
            );
        }
    }
});
