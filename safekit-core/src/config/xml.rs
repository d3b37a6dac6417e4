//! A small positioned XML tree built on quick-xml.
//!
//! Why not deserialize straight into typed structs with serde? Because a
//! configuration error must name `file:line:column`, and serde's data model
//! forgets where a value came from. So the file is first read into this tree,
//! where every element and attribute keeps its byte offset, and the typed
//! configuration is built from the tree by hand (see `build`).

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event};
use quick_xml::XmlVersion;

use super::error::{Diagnostics, Pos, SourceMap};

/// One XML attribute with the position of its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attr {
    /// Attribute name as written.
    pub(crate) name: String,
    /// Value after entity resolution and macro expansion.
    pub(crate) value: String,
    /// Where the attribute name starts.
    pub(crate) pos: Pos,
}

/// One XML element with its attributes, children and text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Element {
    /// Element name as written.
    pub(crate) name: String,
    /// Position of the `<` that opens the element.
    pub(crate) pos: Pos,
    /// Attributes in document order.
    pub(crate) attrs: Vec<Attr>,
    /// Child elements in document order.
    pub(crate) children: Vec<Element>,
    /// Concatenated character data (text and CDATA), untrimmed.
    pub(crate) text: String,
    /// Each CDATA section separately: `<failover>` keeps one per rule language.
    pub(crate) cdata: Vec<String>,
    /// Where each piece of `text` came from: (offset in `text`, position in
    /// the file), so errors inside the text (failover rules) name their place.
    pub(crate) text_marks: Vec<(usize, Pos)>,
}

impl Element {
    /// The file position of byte `offset` of `text`.
    pub(crate) fn text_pos(&self, offset: usize) -> Pos {
        let Some(&(start, pos)) = self.text_marks.iter().rev().find(|(o, _)| *o <= offset) else {
            return self.pos;
        };
        let piece = self.text.get(start..offset).unwrap_or_default();
        match piece.rfind('\n') {
            None => Pos { line: pos.line, column: pos.column + u32::try_from(piece.chars().count()).unwrap_or(0) },
            Some(nl) => Pos {
                line: pos.line + u32::try_from(piece.matches('\n').count()).unwrap_or(0),
                column: 1 + u32::try_from(piece[nl + 1..].chars().count()).unwrap_or(0),
            },
        }
    }

    /// The attribute called `name`, if present.
    pub(crate) fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }
}

/// Deepest element nesting accepted (SafeKit's own files use about 6).
pub(crate) const MAX_DEPTH: usize = 64;

/// Reads `text` into a tree. Syntax errors are reported with their position
/// and end the parse (there is no tree to check after a syntax error).
pub(crate) fn parse(text: &str, map: &SourceMap, diags: &mut Diagnostics) -> Option<Element> {
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    let base = text.as_ptr() as usize;
    // Offset of a slice borrowed from `text`, or `fallback` if it is not.
    let offset_of = |s: &str, fallback: usize| -> usize {
        let p = s.as_ptr() as usize;
        if p >= base && p <= base + text.len() {
            p - base
        } else {
            fallback
        }
    };
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let before = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = match reader.read_event() {
            Ok(ev) => ev,
            Err(e) => {
                let at = usize::try_from(reader.error_position()).unwrap_or(0);
                diags.error(map.pos(at), format!("malformed XML: {e}"));
                return None;
            }
        };
        match event {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    // SafeKit's files are a few levels deep; a tree this
                    // deep would only overflow the stack when it is dropped.
                    diags.error(map.pos(before), format!("elements nested more than {MAX_DEPTH} levels deep"));
                    return None;
                }
                let el = open(&start, before, &offset_of, map, diags)?;
                stack.push(el);
            }
            Event::Empty(start) => {
                let el = open(&start, before, &offset_of, map, diags)?;
                if !attach(&mut stack, &mut root, el, map, diags) {
                    return None;
                }
            }
            Event::End(_) => {
                let Some(el) = stack.pop() else {
                    diags.error(map.pos(before), "closing tag without an opening tag");
                    return None;
                };
                if !attach(&mut stack, &mut root, el, map, diags) {
                    return None;
                }
            }
            Event::Text(t) => push_text(&mut stack, &t.xml_content(XmlVersion::Implicit1_0), before, map, diags)?,
            Event::CData(c) => {
                let s = c.xml_content(XmlVersion::Implicit1_0).into_owned();
                match stack.last_mut() {
                    Some(top) => {
                        // The content starts after "<![CDATA[".
                        top.text_marks.push((top.text.len(), map.pos(before + 9)));
                        top.text.push_str(&s);
                        top.cdata.push(s);
                    }
                    None => {
                        diags.error(map.pos(before), "CDATA outside the root element");
                        return None;
                    }
                }
            }
            Event::GeneralRef(r) => {
                let resolved: Option<Cow<'_, str>> = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(Cow::Owned(c.to_string())),
                    Ok(None) => quick_xml::escape::resolve_predefined_entity(&r.xml_content(XmlVersion::Implicit1_0)).map(Cow::Borrowed),
                    Err(_) => None,
                };
                let Some(s) = resolved else {
                    diags.error(map.pos(before), format!("unknown entity reference '&{};'", r.xml_content(XmlVersion::Implicit1_0)));
                    return None;
                };
                push_text(&mut stack, &s, before, map, diags)?;
            }
            Event::Eof => break,
            // Declarations, comments, processing instructions and the
            // `<!DOCTYPE safe>` line carry nothing we use.
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if let Some(open) = stack.last() {
        diags.error(map.pos(text.len()), format!("end of file inside <{}> (opened at {})", open.name, open.pos));
        return None;
    }
    if root.is_none() {
        diags.error(map.pos(0), "no root element");
    }
    root
}

fn open(
    start: &BytesStart<'_>,
    before: usize,
    offset_of: &dyn Fn(&str, usize) -> usize,
    map: &SourceMap,
    diags: &mut Diagnostics,
) -> Option<Element> {
    let name = start.name().0.to_string();
    let el_off = offset_of(start.name().0, before + 1).saturating_sub(1);
    let mut el = Element { name, pos: map.pos(el_off), ..Element::default() };
    for attr in start.attributes().with_checks(true) {
        let attr = match attr {
            Ok(a) => a,
            Err(e) => {
                diags.error(map.pos(el_off), format!("malformed attribute in <{}>: {e}", el.name));
                return None;
            }
        };
        let key = attr.key.0;
        let pos = map.pos(offset_of(key, el_off));
        let value = match attr.normalized_value(XmlVersion::Implicit1_0) {
            Ok(v) => v.into_owned(),
            Err(e) => {
                diags.error(pos, format!("bad value for attribute {key}: {e}"));
                return None;
            }
        };
        el.attrs.push(Attr { name: key.to_string(), value, pos });
    }
    Some(el)
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element, map: &SourceMap, diags: &mut Diagnostics) -> bool {
    if let Some(parent) = stack.last_mut() {
        parent.children.push(el);
        true
    } else if root.is_some() {
        diags.error(el.pos, format!("second root element <{}>: a file has exactly one", el.name));
        let _ = map;
        false
    } else {
        *root = Some(el);
        true
    }
}

fn push_text(stack: &mut [Element], s: &str, at: usize, map: &SourceMap, diags: &mut Diagnostics) -> Option<()> {
    match stack.last_mut() {
        Some(top) => {
            top.text_marks.push((top.text.len(), map.pos(at)));
            top.text.push_str(s);
            Some(())
        }
        None if s.trim().is_empty() => Some(()),
        None => {
            diags.error(map.pos(at), "text outside the root element");
            None
        }
    }
}
