//! `xml::parse` on arbitrary bytes: never panics; a tree it returns
//! respects the documented depth limit (32 levels of start tags, plus one
//! level of empty elements) and the element-count limit, and its accessors
//! do not panic either. (Names may be empty: quick-xml reads `<:/>` as an
//! element whose local name is empty; harmless, no lookup asks for "".)
#![no_main]

use k8s_nlb_registrator_sidecar::aws::xml::{self, Element};
use libfuzzer_sys::fuzz_target;

fn walk(el: &Element, depth: usize, count: &mut usize) -> usize {
    *count += 1;
    let mut deepest = depth;
    for c in &el.children {
        deepest = deepest.max(walk(c, depth + 1, count));
    }
    deepest
}

fuzz_target!(|data: &[u8]| {
    let Ok(root) = xml::parse(data) else { return };
    // A document that parses must be UTF-8 (parse checks it first).
    assert!(std::str::from_utf8(data).is_ok());
    let mut count = 0;
    let depth = walk(&root, 1, &mut count);
    assert!(depth <= 33, "tree depth {depth} exceeds the limit");
    assert!(count <= 100_000, "{count} elements exceed the limit");
    // The accessors the response parsers use.
    let _ = root.text_at(&["ResponseMetadata", "RequestId"]);
    let _ = root.members(&["TargetGroups"]);
    if let Some(first) = root.children.first() {
        assert_eq!(root.child(&first.name), Some(first));
        assert_eq!(root.path(&[&first.name]), Some(first));
    }
    if let Some(t) = root.text_at(&[]) {
        assert!(!t.is_empty() && t == t.trim());
    }
});
