//! `<check>`: tcp, ping, intf, ip, custom, module and splitbrain checkers
//! with SafeKit's defaults for `when` and `action` (reference §1.9).

use std::time::Duration;

use super::super::model::{Check, CheckAction, CheckTarget, Checker, CheckerKind, Mode, When};
use super::super::time::TimeUnit;
use super::super::xml::Element;
use super::Ctx;

pub(super) fn check(e: &Element, mode: Mode, cx: &mut Ctx<'_, '_>) -> Check {
    cx.r.known_attrs(e, &[]);
    let mut checkers: Vec<Checker> = Vec::new();
    let mut splitbrain_at = None;
    for c in cx.r.children(e, &["tcp", "ping", "intf", "ip", "custom", "module", "splitbrain"]) {
        let Some(ch) = checker(c, cx) else { continue };
        if ch.kind == CheckerKind::Splitbrain {
            if let Some(first) = splitbrain_at {
                cx.r.d.error(c.pos, format!("only one <splitbrain> checker is allowed (first at {first})"));
            }
            splitbrain_at = Some(c.pos);
            if mode != Mode::Mirror {
                cx.r.d.error(c.pos, "<splitbrain> is only allowed in a mirror module");
            }
        }
        if checkers.iter().any(|o| o.kind == ch.kind && o.ident == ch.ident) {
            cx.r.d.error(c.pos, format!("two checkers define resource {}.{}", ch.kind.as_str(), ch.ident));
        }
        checkers.push(ch);
    }
    Check { checkers }
}

fn kind_of(name: &str) -> CheckerKind {
    match name {
        "tcp" => CheckerKind::Tcp,
        "ping" => CheckerKind::Ping,
        "intf" => CheckerKind::Intf,
        "ip" => CheckerKind::Ip,
        "custom" => CheckerKind::Custom,
        "module" => CheckerKind::Module,
        _ => CheckerKind::Splitbrain,
    }
}

fn checker(e: &Element, cx: &mut Ctx<'_, '_>) -> Option<Checker> {
    let kind = kind_of(&e.name);
    let (attrs, whens, actions): (&[&str], &[&'static str], &[&'static str]) = match kind {
        CheckerKind::Tcp => {
            (&["ident", "when", "action"], &["pre", "prim", "second", "both"], &["wait", "stop", "stopstart", "restart", "noaction"])
        }
        CheckerKind::Ping => {
            (&["ident", "when", "action"], &["pre", "prim", "second", "both"], &["wait", "stop", "stopstart", "restart", "noaction"])
        }
        CheckerKind::Intf => (&["ident", "when"], &["pre"], &[]),
        CheckerKind::Ip => (&["ident", "when"], &["prim", "both"], &[]),
        CheckerKind::Custom => (
            &["ident", "when", "exec", "arg", "action"],
            &["pre", "prim", "second", "both"],
            &["wait", "stop", "stopstart", "restart", "noaction"],
        ),
        CheckerKind::Module => (&["ident", "name"], &[], &[]),
        CheckerKind::Splitbrain => (&["ident", "exec", "arg", "when"], &["pre"], &[]),
    };
    cx.r.known_attrs(e, attrs);
    let module = if kind == CheckerKind::Module { cx.r.req_str(e, "name", "the name of the module this one depends on") } else { None };
    let ident = match kind {
        CheckerKind::Module => e.attr("ident").map(|a| a.value.trim().to_string()).or_else(|| module.clone())?,
        _ => cx.r.req_str(e, "ident", "the resource identifier")?,
    };
    let when = if whens.is_empty() {
        When::Pre
    } else if kind == CheckerKind::Tcp || kind == CheckerKind::Custom {
        cx.r.req(e, "when", &whens.join(", "))?;
        parse_when(cx.r.choice(e, "when", whens)?)
    } else {
        cx.r.choice(e, "when", whens).map_or(default_when(kind), parse_when)
    };
    let action = if actions.is_empty() {
        fixed_action(kind)
    } else {
        match cx.r.choice(e, "action", actions) {
            Some(a) => parse_action(a),
            None => default_action(kind, when),
        }
    };
    if when == When::Pre && !matches!(action, CheckAction::Wait | CheckAction::Noaction) {
        let pos = e.attr("action").map_or(e.pos, |a| a.pos);
        cx.r.d.error(pos, format!("a when=\"pre\" checker can only use action wait or noaction (found {action:?})"));
    }
    let exec = match kind {
        CheckerKind::Custom => Some(cx.r.req_str(e, "exec", "the checker executable")?),
        CheckerKind::Splitbrain => {
            let x = cx.r.opt_str(e, "exec").unwrap_or_else(|| "ping".into());
            if x != "ping" && x != "lease" {
                let pos = e.attr("exec").map_or(e.pos, |a| a.pos);
                cx.r.d.error(pos, format!("splitbrain exec '{x}' is not supported (expected ping, or lease for a safekit witness)"));
            }
            Some(x)
        }
        _ => None,
    };
    let arg = cx.r.opt_str(e, "arg");
    if kind == CheckerKind::Splitbrain && arg.as_deref().is_none_or(|a| a.split_whitespace().next().is_none()) {
        cx.r.d.error(e.pos, "<splitbrain> needs attribute arg with at least one witness address (arg=\"W1 W2\")");
    }
    if kind == CheckerKind::Splitbrain && exec.as_deref() == Some("lease") {
        // One lease authority: two witnesses could each grant a lease.
        let words: Vec<&str> = arg.as_deref().unwrap_or_default().split_whitespace().collect();
        let pos = e.attr("arg").map_or(e.pos, |a| a.pos);
        if words.len() > 1 {
            cx.r.d.error(pos, "a lease witness is one safekit witness (arg=\"host:port\"), not a list");
        } else if let Some(w) = words.first() {
            if w.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
                cx.r.d.error(pos, format!("lease witness '{w}' is not host:port (IPv6: [addr]:port)"));
            }
        }
    }
    let mut targets = Vec::new();
    for t in cx.r.children(e, &["to"]) {
        targets.push(target(t, kind, cx));
    }
    let needs_target = matches!(kind, CheckerKind::Tcp | CheckerKind::Ping | CheckerKind::Intf | CheckerKind::Ip);
    if needs_target && targets.is_empty() {
        cx.r.d.error(e.pos, format!("<{}> needs a <to ...> element", e.name));
    }
    Some(Checker { kind, ident, when, action, targets, exec, arg, module })
}

fn target(t: &Element, kind: CheckerKind, cx: &mut Ctx<'_, '_>) -> CheckTarget {
    let attrs: &[&str] = match kind {
        CheckerKind::Tcp => &["addr", "port", "interval", "timeout"],
        CheckerKind::Ping => &["addr", "interval", "timeout"],
        CheckerKind::Intf => &["local_addr", "interval", "timeout"],
        CheckerKind::Ip => &["addr", "interval"],
        CheckerKind::Module => &["addr", "port", "interval", "timeout", "secure"],
        _ => &["addr", "interval", "timeout"],
    };
    cx.r.known_attrs(t, attrs);
    let addr = match kind {
        CheckerKind::Intf => None,
        CheckerKind::Module => cx.r.opt_str(t, "addr"),
        _ => cx.r.req_str(t, "addr", "an address or name"),
    };
    let port = match kind {
        CheckerKind::Tcp => {
            cx.r.req(t, "port", "a TCP port");
            cx.r.opt_num(t, "port", "a TCP port number")
        }
        CheckerKind::Module => Some(cx.r.num(t, "port", 9010u16, "a TCP port number")),
        _ => None,
    };
    let local_addr = if kind == CheckerKind::Intf { cx.r.req_str(t, "local_addr", "the physical IP address of the NIC") } else { None };
    let interval = cx.r.time(t, "interval", TimeUnit::Secs, Duration::from_secs(10));
    let timeout = cx.r.time(t, "timeout", TimeUnit::Secs, Duration::from_secs(5));
    let secure = cx.r.onoff(t, "secure", false);
    CheckTarget { addr, port, local_addr, interval, timeout, secure }
}

fn parse_when(s: &str) -> When {
    match s {
        "prim" => When::Prim,
        "second" => When::Second,
        "both" => When::Both,
        _ => When::Pre,
    }
}

fn parse_action(s: &str) -> CheckAction {
    match s {
        "wait" => CheckAction::Wait,
        "stop" => CheckAction::Stop,
        "stopstart" => CheckAction::Stopstart,
        "restart" => CheckAction::Restart,
        _ => CheckAction::Noaction,
    }
}

const fn default_when(kind: CheckerKind) -> When {
    match kind {
        CheckerKind::Ip => When::Prim,
        _ => When::Pre,
    }
}

/// Documented defaults: tcp restart (wait when pre), ping wait, custom noaction.
const fn default_action(kind: CheckerKind, when: When) -> CheckAction {
    match (kind, when) {
        (CheckerKind::Tcp, When::Pre) | (CheckerKind::Ping, _) => CheckAction::Wait,
        (CheckerKind::Tcp, _) => CheckAction::Restart,
        _ => CheckAction::Noaction,
    }
}

/// Checkers whose rule is fixed by SafeKit.
const fn fixed_action(kind: CheckerKind) -> CheckAction {
    match kind {
        CheckerKind::Ip => CheckAction::Stopstart,
        _ => CheckAction::Wait,
    }
}

/// Reports an expression that does not compile (POSIX ERE, read with the `regex` crate).
pub(crate) fn check_regex(e: &Element, attr: &str, re: &str, cx: &mut Ctx<'_, '_>) {
    if let Err(err) = regex::Regex::new(re) {
        let pos = e.attr(attr).map_or(e.pos, |a| a.pos);
        let first = err.to_string().lines().last().unwrap_or("").trim().trim_start_matches("error: ").to_string();
        cx.r.d.error(pos, format!("invalid regular expression '{re}' for the attribute {attr}: {first}"));
    }
}
