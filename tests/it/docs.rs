//! The docs against the binary and the tree: the flag table of
//! `docs/configuration.md` says what `-h` prints, and every relative link
//! (with its `#anchor`) in `README.md`, `docs/` and `examples/README.md`
//! resolves.

use crate::common::BIN;
use fake_aws::process::base_env;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Flag name -> (default, environment variable).
type Flags = BTreeMap<String, (Option<String>, Option<String>)>;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Text between `open` and the next `close` after it.
fn between<'a>(s: &'a str, open: &str, close: char) -> Option<&'a str> {
    let rest = &s[s.find(open)? + open.len()..];
    Some(&rest[..rest.find(close)?])
}

/// `-h`: a flag line (`  -name value`), then its description with
/// `(default X)` and `[env NAME]` when it has them.
fn help_flags() -> Flags {
    let out = Command::new(BIN)
        .arg("-h")
        .env_clear()
        .envs(base_env("http://127.0.0.1:9"))
        .output()
        .expect("run -h");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let mut flags = Flags::new();
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with("  -") {
            continue;
        }
        let desc = lines.get(i + 1).copied().unwrap_or("");
        let default = between(desc, "(default ", ')').map(str::to_owned);
        let env = between(desc, "[env ", ']').map(str::to_owned);
        for name in line.trim().split(", ") {
            let name = name.trim_end_matches(" value");
            flags.insert(name.to_owned(), (default.clone(), env.clone()));
        }
    }
    flags
}

/// Backticked spans of a table cell.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// The table of docs/configuration.md: names (first word of each backticked
/// span in the first cell), the first `NLB_` variable, and a default only
/// when the cell is a backticked literal (prose such as "group's port" is
/// no literal default, and `-h` must print none either).
fn table_flags() -> Flags {
    let mut flags = Flags::new();
    for line in read(&root().join("docs/configuration.md")).lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with("`-") {
            continue;
        }
        let env = code_spans(cells[2])
            .into_iter()
            .find(|s| s.starts_with("NLB_"))
            .map(str::to_owned);
        let default = cells[3]
            .starts_with('`')
            .then(|| code_spans(cells[3])[0].to_owned());
        for span in code_spans(cells[1]) {
            let name = span.split_whitespace().next().unwrap_or(span);
            flags.insert(name.to_owned(), (default.clone(), env.clone()));
        }
    }
    flags
}

#[test]
fn configuration_table_matches_help() {
    let (help, table) = (help_flags(), table_flags());
    assert!(help.len() > 30, "-h lists the flags: {help:?}");
    let names = |f: &Flags| f.keys().cloned().collect::<BTreeSet<_>>();
    let (h, t) = (names(&help), names(&table));
    assert_eq!(
        (
            h.difference(&t).collect::<Vec<_>>(),
            t.difference(&h).collect::<Vec<_>>()
        ),
        (vec![], vec![]),
        "flags only in -h, only in docs/configuration.md"
    );
    for (name, seen) in &help {
        assert_eq!(
            &table[name], seen,
            "{name}: (default, env) in docs/configuration.md vs -h"
        );
    }
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces
/// to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The lines outside fenced code blocks, with their line numbers.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    text.lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l))
        .filter(|(_, l)| {
            if l.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

fn anchors(path: &Path) -> BTreeSet<String> {
    prose(&read(path))
        .into_iter()
        .filter(|(_, l)| l.starts_with('#'))
        .map(|(_, l)| slug(l.trim_start_matches('#')))
        .collect()
}

/// `](target)` links of a line, inline code left out.
fn links(line: &str) -> Vec<&str> {
    let mut found = Vec::new();
    for (i, part) in line.split('`').enumerate() {
        if i % 2 == 1 {
            continue;
        }
        let mut rest = part;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                found.push(&rest[..end]);
            }
        }
    }
    found
}

#[test]
fn relative_links_resolve() {
    let mut files: Vec<PathBuf> = vec![root().join("README.md"), root().join("examples/README.md")];
    for entry in std::fs::read_dir(root().join("docs")).expect("docs/") {
        let path = entry.expect("docs/ entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    let mut broken = Vec::new();
    for file in &files {
        for (n, line) in prose(&read(file)) {
            for link in links(line) {
                if link.contains("://") || link.starts_with("mailto:") {
                    continue;
                }
                let (path, anchor) = link.split_once('#').unwrap_or((link, ""));
                let target = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().unwrap_or(root()).join(path)
                };
                let ok = target.exists()
                    && (anchor.is_empty()
                        || target.extension().is_none_or(|e| e != "md")
                        || anchors(&target).contains(anchor));
                if !ok {
                    broken.push(format!("{}:{n}: {link}", file.display()));
                }
            }
        }
    }
    assert!(files.len() > 5, "README.md, examples/README.md and docs/");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
