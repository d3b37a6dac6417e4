//! Helpers that read attributes and children of a positioned element and
//! report what was expected when the input does not fit.

use std::str::FromStr;
use std::time::Duration;

use super::error::Diagnostics;
use super::time::{parse_time, TimeUnit};
use super::xml::{Attr, Element};

/// Reading context: the diagnostics sink and a note about known attributes.
pub(crate) struct Reader<'d> {
    pub(crate) d: &'d mut Diagnostics,
}

impl Reader<'_> {
    /// Warns about attributes of `e` not in `known` (SafeKit ignores them too).
    pub(crate) fn known_attrs(&mut self, e: &Element, known: &[&str]) {
        for a in &e.attrs {
            if !known.contains(&a.name.as_str()) {
                self.d.warning(a.pos, format!("unknown attribute {} on <{}> is ignored (known: {})", a.name, e.name, known.join(", ")));
            }
        }
    }

    /// The children of `e`, with an error for each one not in `known`.
    pub(crate) fn children<'e>(&mut self, e: &'e Element, known: &[&str]) -> Vec<&'e Element> {
        let mut out = Vec::new();
        for c in &e.children {
            if known.contains(&c.name.as_str()) {
                out.push(c);
            } else if known.is_empty() {
                self.d.error(c.pos, format!("unexpected element <{}> inside <{}> (it takes no child elements)", c.name, e.name));
            } else {
                self.d.error(c.pos, format!("unknown element <{}> inside <{}> (expected one of: {})", c.name, e.name, known.join(", ")));
            }
        }
        out
    }

    /// At most one child called `name`.
    pub(crate) fn single<'e>(&mut self, kids: &[&'e Element], name: &str) -> Option<&'e Element> {
        let mut found = kids.iter().filter(|c| c.name == name);
        let first = found.next().copied();
        for extra in found {
            let first_pos = first.map(|f| f.pos).unwrap_or_default();
            self.d.error(extra.pos, format!("<{name}> appears more than once (first at {first_pos}); only one is allowed"));
        }
        first
    }

    /// A required attribute; `hint` says what is expected.
    pub(crate) fn req<'e>(&mut self, e: &'e Element, name: &str, hint: &str) -> Option<&'e Attr> {
        let a = e.attr(name);
        if a.is_none() {
            let hint = if hint.is_empty() { String::new() } else { format!(" ({hint})") };
            self.d.error(e.pos, format!("<{}> needs attribute {name}{hint}", e.name));
        }
        a
    }

    /// A required, non-empty string attribute.
    pub(crate) fn req_str(&mut self, e: &Element, name: &str, hint: &str) -> Option<String> {
        let a = self.req(e, name, hint)?;
        if a.value.trim().is_empty() {
            let hint = if hint.is_empty() { String::new() } else { format!(" ({hint})") };
            self.d.error(a.pos, format!("attribute {name} of <{}> is empty{hint}", e.name));
            return None;
        }
        Some(a.value.trim().to_string())
    }

    /// A required name (of a node, a lan): printable, at most 255 bytes (a
    /// heartbeat carries it in one length byte), no control characters.
    pub(crate) fn req_name(&mut self, e: &Element, name: &str, hint: &str) -> Option<String> {
        let v = self.req_str(e, name, hint)?;
        let bad = v.chars().find(|c| c.is_control());
        if bad.is_some() || v.len() > 255 {
            let pos = e.attr(name).map_or(e.pos, |a| a.pos);
            let why =
                bad.map_or_else(|| format!("{} bytes long", v.len()), |c| format!("contains the control character U+{:04X}", u32::from(c)));
            self.d.error(pos, format!("attribute {name} of <{}> {why} (expected {hint}: printable, at most 255 bytes)", e.name));
            return None;
        }
        Some(v)
    }

    /// An optional string attribute.
    pub(crate) fn opt_str(&mut self, e: &Element, name: &str) -> Option<String> {
        e.attr(name).map(|a| a.value.clone())
    }

    /// One of `choices`; `None` if absent or invalid (invalid is reported).
    pub(crate) fn choice(&mut self, e: &Element, name: &str, choices: &[&'static str]) -> Option<&'static str> {
        let a = e.attr(name)?;
        let v = a.value.trim();
        match choices.iter().find(|c| **c == v) {
            Some(c) => Some(c),
            None => {
                self.d.error(
                    a.pos,
                    format!(
                        "invalid value '{}' for the attribute {name} of <{}> (expected one of: {})",
                        a.value,
                        e.name,
                        choices.join(", ")
                    ),
                );
                None
            }
        }
    }

    /// An on/off switch (`yes`/`no` and `true`/`false` are accepted too).
    pub(crate) fn onoff(&mut self, e: &Element, name: &str, default: bool) -> bool {
        let Some(a) = e.attr(name) else {
            return default;
        };
        match a.value.trim().to_ascii_lowercase().as_str() {
            "on" | "yes" | "true" => true,
            "off" | "no" | "false" => false,
            _ => {
                self.d.error(a.pos, format!("invalid value '{}' for the attribute {name} of <{}> (expected on or off)", a.value, e.name));
                default
            }
        }
    }

    /// A number.
    pub(crate) fn num<T: FromStr + Copy>(&mut self, e: &Element, name: &str, default: T, what: &str) -> T {
        self.opt_num(e, name, what).unwrap_or(default)
    }

    /// An optional number (`what` describes the expected range).
    pub(crate) fn opt_num<T: FromStr + Copy>(&mut self, e: &Element, name: &str, what: &str) -> Option<T> {
        let a = e.attr(name)?;
        let v = a.value.trim();
        let v = v
            .strip_prefix("0x")
            .map_or_else(|| v.parse::<T>().ok(), |hex| u64::from_str_radix(hex, 16).ok().and_then(|n| n.to_string().parse().ok()));
        if v.is_none() {
            self.d.error(a.pos, format!("invalid value '{}' for the attribute {name} of <{}> (expected {what})", a.value, e.name));
        }
        v
    }

    /// A time value in `unit` when written without a unit.
    pub(crate) fn time(&mut self, e: &Element, name: &str, unit: TimeUnit, default: Duration) -> Duration {
        let Some(a) = e.attr(name) else {
            return default;
        };
        match parse_time(&a.value, name, unit) {
            Ok(d) => d,
            Err(msg) => {
                self.d.error(a.pos, msg);
                default
            }
        }
    }
}
