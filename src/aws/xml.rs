//! A tiny XML tree for the small AWS Query API answers, elements keyed by
//! local name (AWS's `xmlns` means nothing here). Built for hostile input:
//! no panic, bounded depth and size, mismatched tags and unknown entities
//! rejected. quick-xml 0.42 reports entities as events: resolved here.

use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::Event;
use quick_xml::Reader;

const MAX_DEPTH: usize = 32;
const MAX_ELEMENTS: usize = 100_000;

/// One XML element: local name, child elements and concatenated text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Local name, without namespace prefix.
    pub name: String,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Text directly inside this element (entities resolved), untrimmed.
    pub text: String,
}

impl Element {
    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Follows a path of child names from this element.
    pub fn path(&self, names: &[&str]) -> Option<&Element> {
        names.iter().try_fold(self, |el, name| el.child(name))
    }

    /// Trimmed text of the child at `names`, `None` when absent or empty.
    pub fn text_at(&self, names: &[&str]) -> Option<String> {
        self.path(names)
            .map(|e| e.text.trim())
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    }

    /// The `member` children of the list element at `names` (empty when absent).
    pub fn members<'a>(&'a self, names: &[&str]) -> Vec<&'a Element> {
        let list = self.path(names).map_or(&[][..], |list| &list.children);
        list.iter().filter(|c| c.name == "member").collect()
    }
}

/// Parses a whole document and returns its root element.
///
/// # Errors
/// What is wrong, when the bytes are not UTF-8, not well-formed XML, have no
/// root element, nest deeper than 32 levels or hold more than 100,000 elements.
pub fn parse(body: &[u8]) -> Result<Element, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8 ({e})"))?;
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    (config.check_end_names, config.expand_empty_elements) = (true, true);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("{e} at byte {}", reader.error_position()))?;
        let (text, is_ref) = match event {
            Event::Start(_) if root.is_some() => {
                return Err("content after the root element".into());
            }
            Event::Start(ref start) => {
                count += 1;
                if stack.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err("document too deep or too large".into());
                }
                let name = start.local_name().as_ref().to_owned();
                stack.push(Element {
                    name,
                    ..Element::default()
                });
                continue;
            }
            Event::End(_) => {
                close(&mut stack, &mut root)?;
                continue;
            }
            Event::Text(t) => (t.xml10_content().into_owned(), false),
            Event::CData(t) => (t.xml10_content().into_owned(), false),
            Event::GeneralRef(r) => match r.resolve_char_ref() {
                Ok(Some(c)) => (c.to_string(), true),
                Ok(None) => match resolve_xml_entity(&r.xml10_content()) {
                    Some(s) => (s.to_owned(), true),
                    None => return Err(format!("unknown entity &{};", r.xml10_content())),
                },
                Err(e) => return Err(format!("bad character reference: {e}")),
            },
            Event::Eof => break,
            // Comments, declarations, doctypes; no `Empty` (expanded).
            _ => continue,
        };
        match stack.last_mut() {
            Some(el) => el.text.push_str(&text),
            None if !is_ref && text.trim().is_empty() => {}
            None => return Err("text or entity outside the root element".into()),
        }
    }
    if !stack.is_empty() {
        return Err("document ends inside an element".into());
    }
    root.ok_or_else(|| "no root element".into())
}

/// Closes the innermost open element.
fn close(stack: &mut Vec<Element>, root: &mut Option<Element>) -> Result<(), String> {
    let el = stack.pop().ok_or("closing tag without opening tag")?;
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_elements_and_drops_namespaces() {
        let doc = parse(
            br#"<?xml version="1.0"?>
<R xmlns="urn:x"><a:B xmlns:a="urn:a"><C>one</C><C>two</C><E/></a:B></R>"#,
        )
        .unwrap();
        assert_eq!(doc.name, "R");
        let b = doc.child("B").unwrap();
        let cs: Vec<_> = b.children.iter().map(|c| (&*c.name, &*c.text)).collect();
        assert_eq!(cs, [("C", "one"), ("C", "two"), ("E", "")]);
        assert!(b.child("E").is_some());
        assert_eq!(doc.text_at(&["B", "C"]).as_deref(), Some("one"));
        assert_eq!(doc.text_at(&["B", "E"]), None);
    }

    #[test]
    fn resolves_entities_and_character_references() {
        let doc = parse(b"<m>a &amp; b &lt;c&gt; &quot;&apos; &#65;&#x42; <![CDATA[<raw>]]></m>")
            .unwrap();
        assert_eq!(doc.text, "a & b <c> \"' AB <raw>");
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            &b""[..],
            b"not xml at all",
            b"<a><b></a>",
            b"<a>",
            b"</a>",
            b"<a>&bogus;</a>",
            b"<a>&#xZZ;</a>",
            b"<a/><b/>",
            b"<a/>trailing",
            b"\xff\xfe<a/>",
            b"<<<>>>",
            b"<a>&#0;</a>",
        ] {
            assert!(
                parse(bad).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn limits_depth() {
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(parse(deep.as_bytes()).is_err());
        let ok = "<a>".repeat(20) + &"</a>".repeat(20);
        assert!(parse(ok.as_bytes()).is_ok());
    }
}
