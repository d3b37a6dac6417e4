//! `userconfig.xml` (reference §1): builds the typed [`UserConfig`] from the
//! positioned tree and checks what SafeKit checks at `safekit config` time.

mod check;
mod rfs;
mod vip;

use std::time::Duration;

use super::error::Diagnostics;
use super::model::{
    Boot, ClusterConfig, DefaultPrim, Errd, ErrdAction, FailoverRules, Farm, FarmLan, Heart, HeartbeatLan, Logging, Macro, Mode, Proc,
    Service, User, UserConfig, Var, Vhost, VirtualHostName,
};
use super::read::Reader;
use super::time::TimeUnit;
use super::xml::Element;

/// What the reader knows besides the file itself.
pub(crate) struct Ctx<'a, 'd> {
    pub(crate) r: Reader<'d>,
    /// The cluster, to check lan and node names (absent: those checks are skipped).
    pub(crate) cluster: Option<&'a ClusterConfig>,
    /// `safekit confcheck`: placeholders are errors, not just data.
    pub(crate) confcheck: bool,
}

impl Ctx<'_, '_> {
    fn lan_names(&self) -> String {
        self.cluster.map_or_else(String::new, |c| {
            let names: Vec<&str> = c.lans.iter().map(|l| l.name.as_str()).collect();
            format!("one of the lans of cluster.xml: {}", names.join(", "))
        })
    }
}

pub(crate) fn build(
    root: &Element,
    macros: Vec<Macro>,
    cluster: Option<&ClusterConfig>,
    confcheck: bool,
    d: &mut Diagnostics,
) -> Option<UserConfig> {
    let mut cx = Ctx { r: Reader { d }, cluster, confcheck };
    if root.name != "safe" {
        cx.r.d.error(root.pos, format!("root element is <{}>; userconfig.xml starts with <safe>", root.name));
        return None;
    }
    cx.r.known_attrs(root, &[]);
    let kids = cx.r.children(root, &["macro", "service"]);
    let Some(svc) = cx.r.single(&kids, "service") else {
        cx.r.d.error(root.pos, "<safe> needs exactly one <service> element");
        return None;
    };
    let service = service(svc, &mut cx)?;
    Some(UserConfig { macros, service })
}

fn service(e: &Element, cx: &mut Ctx<'_, '_>) -> Option<Service> {
    cx.r.known_attrs(e, &["mode", "boot", "boot_delay", "failover", "defaultprim", "maxloop", "loop_interval", "automatic_reboot"]);
    let mode = match cx.r.req(e, "mode", "mirror, farm or light").map(|_| ()) {
        Some(()) => match cx.r.choice(e, "mode", &["mirror", "farm", "light"])? {
            "mirror" => Mode::Mirror,
            "farm" => Mode::Farm,
            _ => Mode::Light,
        },
        None => return None,
    };
    let boot = match cx.r.choice(e, "boot", &["off", "on", "auto", "ignore"]) {
        Some("off") => Boot::Off,
        Some("on") => Boot::On,
        Some("auto") => Boot::Auto,
        _ => Boot::Ignore,
    };
    let boot_delay = cx.r.time(e, "boot_delay", TimeUnit::Secs, Duration::ZERO);
    let failover = cx.r.onoff(e, "failover", true);
    let defaultprim = match e.attr("defaultprim").map(|a| (a.value.trim().to_string(), a.pos)) {
        None => DefaultPrim::Alone,
        Some((v, _)) if v == "alone" => DefaultPrim::Alone,
        Some((v, _)) if v == "lastprim" => DefaultPrim::LastPrim,
        Some((v, pos)) => {
            if let Some(c) = cx.cluster {
                if !c.node_names().contains(&v.as_str()) {
                    cx.r.d.error(
                        pos,
                        format!(
                            "defaultprim '{v}' is not a node of cluster.xml (expected alone, lastprim or one of: {})",
                            c.node_names().join(", ")
                        ),
                    );
                }
            }
            DefaultPrim::Node(v)
        }
    };
    let maxloop = cx.r.num(e, "maxloop", 3u32, "a count of actions");
    let loop_interval = cx.r.time(e, "loop_interval", TimeUnit::Hours, Duration::from_secs(24 * 3600));
    let automatic_reboot = cx.r.onoff(e, "automatic_reboot", false);

    let allowed: &[&str] = match mode {
        Mode::Mirror => &["heart", "rfs", "vip", "user", "vhost", "errd", "check", "failover"],
        Mode::Farm => &["farm", "vip", "user", "vhost", "errd", "check", "failover"],
        Mode::Light => &["user", "vhost", "errd", "check", "failover"],
    };
    let all = ["heart", "farm", "rfs", "vip", "user", "vhost", "errd", "check", "failover"];
    for c in &e.children {
        if all.contains(&c.name.as_str()) && !allowed.contains(&c.name.as_str()) {
            cx.r.d.error(c.pos, format!("<{}> is not allowed in a {} module (allowed: {})", c.name, mode_name(mode), allowed.join(", ")));
        }
    }
    let kids = cx.r.children(e, &all);
    let heart = cx.r.single(&kids, "heart").map(|h| heart(h, cx));
    let farm = cx.r.single(&kids, "farm").map(|f| farm(f, cx));
    let vip = cx.r.single(&kids, "vip").map(|v| vip::vip(v, mode, cx));
    let rfs = cx.r.single(&kids, "rfs").map(|r| rfs::rfs(r, cx));
    let user = cx.r.single(&kids, "user").map(|u| user(u, cx));
    let vhost = cx.r.single(&kids, "vhost").map(|v| vhost(v, cx));
    let errd_el = cx.r.single(&kids, "errd");
    let errd = errd_el.map(|x| errd(x, cx));
    let check = cx.r.single(&kids, "check").map(|c| check::check(c, mode, cx));
    let failover_rules = cx.r.single(&kids, "failover").map(|f| failover_rules(f, cx));

    if mode == Mode::Mirror && heart.is_none() {
        cx.r.d.error(e.pos, "a mirror module needs a <heart> element with at least one <heartbeat>");
    }
    if mode == Mode::Farm && farm.is_none() {
        cx.r.d.error(e.pos, "a farm module needs a <farm> element with at least one <lan>");
    }
    if let (Some(x), None) = (errd_el, &user) {
        cx.r.d.error(x.pos, "<errd> needs a <user> element in the same <service> (without it no script runs)");
    }
    if let Some(h) = &heart {
        if h.heartbeats.iter().any(|b| b.ident == "flow") && rfs.is_none() {
            cx.r.d.warning(e.pos, "a heartbeat has ident=\"flow\" but there is no <rfs>: the module would block in WAIT");
        }
    }
    if mode == Mode::Mirror {
        mirror_has_two_nodes(e, heart.as_ref(), cx);
    }
    Some(Service {
        mode,
        boot,
        boot_delay,
        failover,
        defaultprim,
        maxloop,
        loop_interval,
        automatic_reboot,
        heart,
        farm,
        vip,
        rfs,
        user,
        vhost,
        errd,
        check,
        failover_rules,
    })
}

pub(crate) const fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Mirror => "mirror",
        Mode::Farm => "farm",
        Mode::Light => "light",
    }
}

/// A mirror replicates between exactly two nodes: every heartbeat lan must list two.
fn mirror_has_two_nodes(e: &Element, heart: Option<&Heart>, cx: &mut Ctx<'_, '_>) {
    let (Some(c), Some(h)) = (cx.cluster, heart) else {
        return;
    };
    for hb in h.heartbeats.iter().filter(|b| b.legacy_servers.is_empty()) {
        if let Some(lan) = c.lan(&hb.name) {
            if lan.nodes.len() != 2 {
                let names: Vec<&str> = lan.nodes.iter().map(|n| n.name.as_str()).collect();
                cx.r.d.error(
                    e.pos,
                    format!(
                        "a mirror module runs on exactly two nodes, but lan {} of cluster.xml has {} ({})",
                        lan.name,
                        lan.nodes.len(),
                        names.join(", ")
                    ),
                );
            }
        }
    }
}

fn heart(e: &Element, cx: &mut Ctx<'_, '_>) -> Heart {
    cx.r.known_attrs(e, &["port", "pulse", "timeout", "permanent_arp"]);
    let port = cx.r.opt_num(e, "port", "a UDP port number");
    let pulse = cx.r.time(e, "pulse", TimeUnit::Millis, Duration::from_millis(700));
    let timeout = cx.r.time(e, "timeout", TimeUnit::Millis, Duration::from_millis(30_000));
    let permanent_arp = cx.r.onoff(e, "permanent_arp", true);
    let mut heartbeats: Vec<HeartbeatLan> = Vec::new();
    let hint = cx.lan_names();
    for hb in cx.r.children(e, &["heartbeat"]) {
        cx.r.known_attrs(hb, &["name", "ident", "pulse", "timeout"]);
        let servers: Vec<String> =
            cx.r.children(hb, &["server"])
                .into_iter()
                .filter_map(|s| {
                    cx.r.known_attrs(s, &["addr"]);
                    cx.r.req_str(s, "addr", "the address of a node on this network")
                })
                .collect();
        let legacy = !servers.is_empty();
        let name = if legacy {
            hb.attr("name").map_or_else(|| format!("heartbeat{}", heartbeats.len()), |a| a.value.clone())
        } else {
            let Some(a) = cx.r.req(hb, "name", &hint) else {
                continue;
            };
            let v = a.value.trim().to_string();
            if let Some(c) = cx.cluster {
                if c.lan(&v).is_none() {
                    cx.r.d.error(a.pos, format!("heartbeat name '{v}' is not a lan of cluster.xml (expected {hint})"));
                }
            }
            v
        };
        let ident = hb.attr("ident").map_or_else(|| name.clone(), |a| a.value.trim().to_string());
        if heartbeats.iter().any(|b| b.ident == ident) {
            cx.r.d.error(hb.pos, format!("two heartbeats have the ident '{ident}'; resource heartbeat.{ident} must be unique"));
        }
        if let Some(first) = heartbeats.first() {
            if first.legacy_servers.is_empty() == legacy {
                cx.r.d.error(
                    hb.pos,
                    "legacy <server> syntax inside <heartbeat> cannot be mixed with the 7.2+ syntax (name = a cluster.xml lan)",
                );
            }
        }
        let pulse = cx.r.time(hb, "pulse", TimeUnit::Millis, pulse);
        let timeout = cx.r.time(hb, "timeout", TimeUnit::Millis, timeout);
        if timeout <= pulse {
            let pos = hb.attr("timeout").or_else(|| e.attr("timeout")).map_or(hb.pos, |a| a.pos);
            cx.r.d.error(pos, format!("heartbeat timeout ({timeout:?}) must be longer than its pulse ({pulse:?})"));
        }
        heartbeats.push(HeartbeatLan { name, ident, pulse, timeout, legacy_servers: servers });
    }
    if !e.children.iter().any(|c| c.name == "heartbeat") {
        cx.r.d.error(e.pos, format!("<heart> needs at least one <heartbeat name=\"...\"> ({hint})"));
    }
    Heart { port, pulse, timeout, permanent_arp, heartbeats }
}

fn farm(e: &Element, cx: &mut Ctx<'_, '_>) -> Farm {
    cx.r.known_attrs(e, &["port", "pulse", "mlost_count", "slost_count"]);
    let port = cx.r.opt_num(e, "port", "a UDP port number");
    let pulse = cx.r.time(e, "pulse", TimeUnit::Millis, Duration::from_millis(100));
    let mlost_count = cx.r.num(e, "mlost_count", 20u32, "a count of heartbeats");
    let slost_count = cx.r.num(e, "slost_count", 10u32, "a count of heartbeats");
    let hint = cx.lan_names();
    let mut lans = Vec::new();
    for lan in cx.r.children(e, &["lan"]) {
        cx.r.known_attrs(lan, &["name"]);
        let nodes: Vec<String> = cx.r.children(lan, &["node"]).into_iter().filter_map(|n| cx.r.req_str(n, "name", "a node name")).collect();
        let Some(a) = cx.r.req(lan, "name", &hint) else {
            continue;
        };
        let name = a.value.trim().to_string();
        if nodes.is_empty() {
            if let Some(c) = cx.cluster {
                if c.lan(&name).is_none() {
                    cx.r.d.error(a.pos, format!("farm lan '{name}' is not a lan of cluster.xml (expected {hint})"));
                }
            }
        }
        lans.push(FarmLan { name, legacy_nodes: nodes });
    }
    if lans.is_empty() {
        cx.r.d.error(e.pos, format!("<farm> needs at least one <lan name=\"...\"> ({hint})"));
    }
    Farm { port, pulse, mlost_count, slost_count, lans }
}

fn user(e: &Element, cx: &mut Ctx<'_, '_>) -> User {
    cx.r.known_attrs(e, &["nicestoptimeout", "forcestoptimeout", "logging", "userlogsize"]);
    let nicestoptimeout = cx.r.time(e, "nicestoptimeout", TimeUnit::Secs, Duration::from_secs(300));
    let forcestoptimeout = cx.r.time(e, "forcestoptimeout", TimeUnit::Secs, Duration::from_secs(300));
    let logging = match cx.r.choice(e, "logging", &["userlog", "none"]) {
        Some("none") => Logging::None,
        _ => Logging::Userlog,
    };
    let userlogsize = cx.r.num(e, "userlogsize", 2048u64, "a size in KB");
    let mut vars: Vec<Var> = Vec::new();
    for v in cx.r.children(e, &["var"]) {
        cx.r.known_attrs(v, &["name", "value"]);
        let Some(name) = cx.r.req_str(v, "name", "an environment variable name") else {
            continue;
        };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.starts_with(|c: char| c.is_ascii_digit()) {
            let pos = v.attr("name").map_or(v.pos, |a| a.pos);
            cx.r.d.error(pos, format!("invalid variable name '{name}' (expected letters, digits and _)"));
        }
        let value = cx.r.opt_str(v, "value").unwrap_or_default();
        vars.push(Var { name, value });
    }
    User { nicestoptimeout, forcestoptimeout, logging, userlogsize, vars }
}

fn vhost(e: &Element, cx: &mut Ctx<'_, '_>) -> Vhost {
    cx.r.known_attrs(e, &[]);
    let mut names = Vec::new();
    for v in cx.r.children(e, &["virtualhostname"]) {
        cx.r.known_attrs(v, &["name", "envfile", "when"]);
        let name = cx.r.req_str(v, "name", "the virtual host name");
        let envfile = cx.r.req_str(v, "envfile", "the file scripts source");
        let when = cx.r.choice(v, "when", &["prim", "second", "both"]).unwrap_or("prim").to_string();
        if let (Some(name), Some(envfile)) = (name, envfile) {
            names.push(VirtualHostName { name, envfile, when });
        }
    }
    Vhost { names }
}

fn errd(e: &Element, cx: &mut Ctx<'_, '_>) -> Errd {
    cx.r.known_attrs(e, &["polltimer"]);
    let polltimer = cx.r.time(e, "polltimer", TimeUnit::Secs, Duration::from_secs(30));
    let mut procs = Vec::new();
    for p in cx.r.children(e, &["proc"]) {
        cx.r.known_attrs(
            p,
            &["name", "service", "nameregex", "argregex", "atleast", "atmax", "action", "restart_services", "class", "start_after"],
        );
        let Some(name) = cx.r.req_str(p, "name", "a process command name or a resource name") else {
            continue;
        };
        let service = cx.r.onoff(p, "service", false);
        let nameregex = cx.r.opt_str(p, "nameregex");
        let argregex = cx.r.opt_str(p, "argregex");
        for (attr, re) in [("nameregex", &nameregex), ("argregex", &argregex)] {
            if let Some(re) = re {
                check::check_regex(p, attr, re, cx);
            }
        }
        let atleast = cx.r.num(p, "atleast", 1i64, "a count, or -1 to disable");
        let atmax = cx.r.num(p, "atmax", -1i64, "a count, or -1 to disable");
        let action = match p.attr("action").map(|a| a.value.trim()) {
            None | Some("stopstart") => ErrdAction::Stopstart,
            Some("restart") => ErrdAction::Restart,
            Some("stop") => ErrdAction::Stop,
            Some("noaction") => ErrdAction::Noaction,
            Some(h) if !h.is_empty() => ErrdAction::Handler(h.to_string()),
            Some(_) => {
                let pos = p.attr("action").map_or(p.pos, |a| a.pos);
                cx.r.d.error(pos, "empty action (expected restart, stopstart, stop, noaction or a handler executable)");
                ErrdAction::Noaction
            }
        };
        let restart_services =
            cx.r.opt_str(p, "restart_services")
                .map(|s| s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect())
                .unwrap_or_default();
        let class = cx.r.req_str(p, "class", "prim, both, pre, second, sec or a custom class name").unwrap_or_else(|| "prim".into());
        if matches!(action, ErrdAction::Handler(_)) && ["prim", "both", "pre", "second", "sec"].contains(&class.as_str()) {
            cx.r.d.warning(p.pos, format!("a special handler needs its own class; '{class}' is a standard class"));
        }
        let start_after = cx.r.num(p, "start_after", 0u32, "a number of polling cycles");
        procs.push(Proc { name, service, nameregex, argregex, atleast, atmax, action, restart_services, class, start_after });
    }
    Errd { polltimer, procs }
}

fn failover_rules(e: &Element, cx: &mut Ctx<'_, '_>) -> FailoverRules {
    cx.r.known_attrs(e, &["extends", "period", "handle_time"]);
    let extends = cx.r.onoff(e, "extends", true);
    let period = cx.r.time(e, "period", TimeUnit::Millis, Duration::from_millis(5000));
    let handle_time = cx.r.time(e, "handle_time", TimeUnit::Millis, Duration::from_millis(15000));
    cx.r.children(e, &[]);
    if let Err(err) = crate::engine::rules::parse(&e.text) {
        cx.r.d.error(e.text_pos(err.offset), format!("failover rules: {}", err.message));
    }
    FailoverRules { extends, period, handle_time, text: e.text.trim().to_string() }
}

/// Re-exported for `check` and `vip`.
pub(crate) use super::cluster::is_dns_name;
