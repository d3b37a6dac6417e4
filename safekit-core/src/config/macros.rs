//! `<macro>` and `%NAME%` expansion (SafeKit UG §13.2): a macro wins over an
//! environment variable of the same name; an unknown `%NAME%` stays as written
//! and is reported as a warning, since `%` may legitimately appear in data.

use super::error::Diagnostics;
use super::model::Macro;
use super::xml::Element;

/// Looks up environment variables; injected so tests and the daemon decide.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A macro left blank (`value=""`) that the configuration uses: a
/// template's field to fill (SafeKit's published modules ship this way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blank {
    pub(crate) name: String,
    /// Where its value is written.
    pub(crate) pos: super::error::Pos,
    /// Where it is used.
    pub(crate) uses: Vec<super::error::Pos>,
}

/// Collects the root's `<macro>` children and expands every attribute value
/// and text of the tree in place; returns the macros and the blank ones in use.
pub(crate) fn expand_tree(root: &mut Element, env: EnvLookup<'_>, d: &mut Diagnostics) -> (Vec<Macro>, Vec<Blank>) {
    let mut macros: Vec<Macro> = Vec::new();
    let mut blanks: Vec<Blank> = Vec::new();
    for m in root.children.iter().filter(|c| c.name == "macro") {
        let (Some(name), Some(value)) = (m.attr("name"), m.attr("value")) else {
            d.error(m.pos, "<macro> needs attributes name and value");
            continue;
        };
        if let Some(prev) = macros.iter().find(|p| p.name == name.value) {
            d.warning(name.pos, format!("macro {} is defined twice; the later value replaces '{}'", name.value, prev.value));
        }
        // A macro value may itself use environment variables or earlier macros.
        let (pos, value) = (value.pos, expand(&value.value, &macros, env, &mut |_| {}));
        macros.retain(|p| p.name != name.value);
        blanks.retain(|b| b.name != name.value);
        if value.trim().is_empty() {
            blanks.push(Blank { name: name.value.clone(), pos, uses: Vec::new() });
        }
        macros.push(Macro { name: name.value.clone(), value });
    }
    walk(root, &macros, env, d, &mut blanks);
    blanks.retain(|b| !b.uses.is_empty());
    (macros, blanks)
}

/// The `%NAME%` references in `s`.
fn references(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        match after.find('%').map(|e| &after[..e]) {
            Some(n) if is_ident(n) => {
                out.push(n);
                rest = &after[n.len() + 1..];
            }
            _ => rest = after,
        }
    }
    out
}

fn walk(e: &mut Element, macros: &[Macro], env: EnvLookup<'_>, d: &mut Diagnostics, blanks: &mut [Blank]) {
    if e.name == "macro" {
        return;
    }
    for a in &mut e.attrs {
        let pos = a.pos;
        for n in references(&a.value) {
            if let Some(b) = blanks.iter_mut().find(|b| b.name == n) {
                b.uses.push(pos);
            }
        }
        a.value = expand(&a.value, macros, env, &mut |name| {
            d.warning(pos, format!("%{name}% is neither a macro nor an environment variable; kept as written"));
        });
    }
    let pos = e.pos;
    if e.text.contains('%') && e.name != "failover" {
        e.text = expand(&e.text, macros, env, &mut |name| {
            d.warning(pos, format!("%{name}% is neither a macro nor an environment variable; kept as written"));
        });
    }
    for c in &mut e.children {
        walk(c, macros, env, d, blanks);
    }
}

/// Expands `%NAME%` in `s`; `unknown` is told each name left as written.
pub(crate) fn expand(s: &str, macros: &[Macro], env: EnvLookup<'_>, unknown: &mut dyn FnMut(&str)) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('%');
        let name = end.map(|e| &after[..e]);
        match name {
            Some(n) if is_ident(n) => {
                if let Some(m) = macros.iter().find(|m| m.name == n) {
                    out.push_str(&m.value);
                } else if let Some(v) = env(n) {
                    out.push_str(&v);
                } else {
                    unknown(n);
                    out.push('%');
                    out.push_str(n);
                    out.push('%');
                }
                rest = &after[n.len() + 1..];
            }
            _ => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_wins_over_environment_and_unknown_names_stay() {
        let macros = vec![Macro { name: "PORT".into(), value: "80".into() }];
        let env = |n: &str| (n == "PORT" || n == "HOME").then(|| "env".to_string());
        let mut unknown = Vec::new();
        let s = expand("a%PORT%b%HOME%c%NOPE%d 50% done", &macros, &env, &mut |n| unknown.push(n.to_string()));
        assert_eq!(s, "a80benvc%NOPE%d 50% done");
        assert_eq!(unknown, vec!["NOPE".to_string()]);
    }

    #[test]
    fn a_template_with_blanks_names_exactly_what_to_fill() {
        let text = r#"<safe>
<macro name="VIRTUAL_IP" value=""/>
<macro name="UNUSED" value=""/>
<macro name="PORT" value="80"/>
<service mode="farm">
  <farm><lan name="default"/></farm>
  <vip><interface_list><interface><virtual_interface type="vmac_directed">
    <virtual_addr addr="%VIRTUAL_IP%" where="alias"/>
  </virtual_interface></interface></interface_list>
  <loadbalancing_list><group name="g"><rule port="%PORT%" proto="tcp" filter="on_addr"/></group></loadbalancing_list></vip>
</service>
</safe>"#;
        let e = crate::config::parse_userconfig(text, crate::config::UserConfigOptions::new()).unwrap_err();
        assert_eq!(e.blanks, ["VIRTUAL_IP"], "a blank macro nobody uses is not a blank to fill");
        let errors: Vec<String> = e.errors().map(ToString::to_string).collect();
        assert_eq!(errors, ["userconfig.xml:2:26: macro VIRTUAL_IP is blank: fill its value (used at 8:19)"]);
        // Filled: valid.
        let filled = text.replace(r#"name="VIRTUAL_IP" value="""#, r#"name="VIRTUAL_IP" value="10.0.0.100""#);
        assert!(crate::config::parse_userconfig(&filled, crate::config::UserConfigOptions::new()).is_ok());
    }
}
