//! A tiny XML tree for AWS Query API responses.
//!
//! AWS answers the ELBv2 and STS Query APIs with small XML documents (a few
//! kilobytes). Rather than drive a streaming parser in every response parser,
//! we read the whole body once into a tree of [`Element`]s keyed by *local*
//! name (namespaces are dropped: AWS puts `xmlns` on the root and nothing
//! depends on prefixes), then walk it with [`Element::child`] and friends.
//!
//! The reader is built for hostile input: it never panics, limits nesting
//! depth and element count, resolves the predefined and numeric character
//! references itself (quick-xml 0.42 reports them as separate events), and
//! rejects mismatched tags, unknown entities and trailing garbage with an
//! [`XmlError`] that says what went wrong.

use quick_xml::events::Event;
use quick_xml::Reader;
use std::fmt;

/// Deepest nesting accepted. AWS responses nest about six levels.
const MAX_DEPTH: usize = 32;
/// Most elements accepted in one document (a defence against huge bodies).
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

/// Why a body could not be read as XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError(String);

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed XML: {}", self.0)
    }
}

impl std::error::Error for XmlError {}

impl Element {
    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
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
        match self.path(names) {
            Some(list) => list.children_named("member").collect(),
            None => Vec::new(),
        }
    }
}

/// Parses a whole document and returns its root element.
///
/// # Errors
/// [`XmlError`] when the bytes are not UTF-8, not well-formed XML, have no
/// root element, nest deeper than 32 levels or hold more than 100,000 elements.
pub fn parse(body: &[u8]) -> Result<Element, XmlError> {
    let text = std::str::from_utf8(body).map_err(|e| XmlError(format!("not UTF-8 ({e})")))?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError(format!("{e} at byte {}", reader.error_position())))?;
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(XmlError("content after the root element".into()));
            }
            Event::Start(start) | Event::Empty(start) => {
                count += 1;
                if stack.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err(XmlError("document too deep or too large".into()));
                }
                let name = start.local_name().as_ref().to_owned();
                stack.push(Element {
                    name,
                    ..Element::default()
                });
                if empty {
                    close(&mut stack, &mut root)?;
                }
            }
            Event::End(_) => close(&mut stack, &mut root)?,
            Event::Text(t) => push_text(&mut stack, &root, &t.xml10_content())?,
            Event::CData(t) => push_text(&mut stack, &root, &t.xml10_content())?,
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => predefined(&r.xml10_content())
                        .ok_or_else(|| XmlError(format!("unknown entity &{};", r.xml10_content())))?
                        .to_string(),
                    Err(e) => return Err(XmlError(format!("bad character reference: {e}"))),
                };
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&resolved),
                    None => return Err(XmlError("entity outside the root element".into())),
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError("document ends inside an element".into()));
    }
    root.ok_or_else(|| XmlError("no root element".into()))
}

/// Closes the innermost open element.
fn close(stack: &mut Vec<Element>, root: &mut Option<Element>) -> Result<(), XmlError> {
    let el = stack
        .pop()
        .ok_or_else(|| XmlError("closing tag without opening tag".into()))?;
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
    Ok(())
}

fn predefined(name: &str) -> Option<&'static str> {
    Some(match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        _ => return None,
    })
}

fn push_text(stack: &mut [Element], root: &Option<Element>, text: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(el) => {
            el.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None if root.is_some() => Err(XmlError("text after the root element".into())),
        None => Err(XmlError("text before the root element".into())),
    }
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
        let cs: Vec<_> = b.children_named("C").map(|c| c.text.as_str()).collect();
        assert_eq!(cs, ["one", "two"]);
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
