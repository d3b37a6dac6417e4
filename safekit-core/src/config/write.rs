//! Writes configurations back as XML: `safekit config` shows the expanded
//! `safeconf.xml` with it, and the property tests round-trip every value
//! through the reader. Every attribute is written explicitly, durations in
//! the attribute's implicit unit.

use std::fmt::Write as _;
use std::time::Duration;

use super::model::{
    AsyncMode, Boot, CheckAction, ClusterConfig, DefaultPrim, ErrdAction, LbFilter, LbProto, Logging, Mode, NotReplicated, Placement,
    UserConfig, VirtualAddr, VmacKind, When,
};
use super::time::{format_time, TimeUnit};

/// A small element builder: attributes in order, children, optional text.
struct El {
    name: &'static str,
    attrs: Vec<(&'static str, String)>,
    kids: Vec<El>,
    cdata: Option<String>,
}

impl El {
    fn new(name: &'static str) -> Self {
        Self { name, attrs: Vec::new(), kids: Vec::new(), cdata: None }
    }
    fn a(mut self, k: &'static str, v: impl ToString) -> Self {
        self.attrs.push((k, v.to_string()));
        self
    }
    fn opt(self, k: &'static str, v: Option<impl ToString>) -> Self {
        match v {
            Some(v) => self.a(k, v),
            None => self,
        }
    }
    fn t(self, k: &'static str, d: Duration, unit: TimeUnit) -> Self {
        self.a(k, format_time(d, unit))
    }
    fn kid(mut self, k: El) -> Self {
        self.kids.push(k);
        self
    }
    fn kids(mut self, k: impl IntoIterator<Item = El>) -> Self {
        self.kids.extend(k);
        self
    }
    fn write(&self, out: &mut String, depth: usize) {
        let pad = "  ".repeat(depth);
        let _ = write!(out, "{pad}<{}", self.name);
        for (k, v) in &self.attrs {
            let _ = write!(out, " {k}=\"{}\"", quick_xml::escape::escape(v.as_str()));
        }
        if self.kids.is_empty() && self.cdata.is_none() {
            out.push_str("/>\n");
            return;
        }
        out.push_str(">\n");
        if let Some(c) = &self.cdata {
            // A CDATA section cannot contain "]]>": split it where it occurs.
            let _ = writeln!(out, "<![CDATA[{}]]>", c.replace("]]>", "]]]]><![CDATA[>"));
        }
        for k in &self.kids {
            k.write(out, depth + 1);
        }
        let _ = writeln!(out, "{pad}</{}>", self.name);
    }
}

const fn onoff(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn vaddr(v: &VirtualAddr) -> El {
    El::new("virtual_addr")
        .a("addr", &v.addr)
        .a(
            "where",
            match v.placement {
                Placement::OneSideAlias => "one_side_alias",
                Placement::OneSide => "one_side",
                Placement::Alias => "alias",
            },
        )
        .a("check", onoff(v.check))
        .a("connections", onoff(v.connections))
        .opt("netmask", v.netmask.as_ref())
}

/// `userconfig.xml` text for `cfg` (macros already applied are not re-created).
pub fn userconfig_to_xml(cfg: &UserConfig) -> String {
    let s = &cfg.service;
    let mut svc = El::new("service")
        .a(
            "mode",
            match s.mode {
                Mode::Mirror => "mirror",
                Mode::Farm => "farm",
                Mode::Light => "light",
            },
        )
        .a(
            "boot",
            match s.boot {
                Boot::Off => "off",
                Boot::On => "on",
                Boot::Auto => "auto",
                Boot::Ignore => "ignore",
            },
        )
        .t("boot_delay", s.boot_delay, TimeUnit::Secs)
        .a("maxloop", s.maxloop)
        .t("loop_interval", s.loop_interval, TimeUnit::Hours)
        .a("automatic_reboot", onoff(s.automatic_reboot));
    if s.mode == Mode::Mirror {
        svc = svc.a("failover", onoff(s.failover)).a(
            "defaultprim",
            match &s.defaultprim {
                DefaultPrim::Alone => "alone",
                DefaultPrim::LastPrim => "lastprim",
                DefaultPrim::Node(n) => n.as_str(),
            },
        );
    }
    if let Some(h) = &s.heart {
        let hb = h.heartbeats.iter().map(|b| {
            El::new("heartbeat")
                .a("name", &b.name)
                .a("ident", &b.ident)
                .t("pulse", b.pulse, TimeUnit::Millis)
                .t("timeout", b.timeout, TimeUnit::Millis)
                .kids(b.legacy_servers.iter().map(|a| El::new("server").a("addr", a)))
        });
        svc = svc.kid(
            El::new("heart")
                .opt("port", h.port)
                .t("pulse", h.pulse, TimeUnit::Millis)
                .t("timeout", h.timeout, TimeUnit::Millis)
                .a("permanent_arp", onoff(h.permanent_arp))
                .kids(hb),
        );
    }
    if let Some(f) = &s.farm {
        svc = svc.kid(
            El::new("farm")
                .opt("port", f.port)
                .t("pulse", f.pulse, TimeUnit::Millis)
                .a("mlost_count", f.mlost_count)
                .a("slost_count", f.slost_count)
                .kids(
                    f.lans
                        .iter()
                        .map(|l| El::new("lan").a("name", &l.name).kids(l.legacy_nodes.iter().map(|n| El::new("node").a("name", n)))),
                ),
        );
    }
    if let Some(v) = &s.vip {
        let ifaces = v.interfaces.iter().map(|i| {
            let mut e = El::new("interface")
                .a("check", onoff(i.check))
                .a("arpreroute", onoff(i.arpreroute))
                .t("arpinterval", i.arpinterval, TimeUnit::Secs)
                .t("arpelapse", i.arpelapse, TimeUnit::Secs)
                .opt("name", i.name.as_ref());
            if !i.real.is_empty() {
                e = e.kid(El::new("real_interface").kids(i.real.iter().map(vaddr)));
            }
            if let Some(vi) = &i.virtual_interface {
                e = e.kid(
                    El::new("virtual_interface")
                        .a("type", if vi.kind == VmacKind::Directed { "vmac_directed" } else { "vmac_invisible" })
                        .opt("addr", vi.mac.as_ref())
                        .kids(vi.addrs.iter().map(vaddr)),
                );
            }
            e
        });
        let mut vip = El::new("vip").a("tcpreset", onoff(v.tcpreset)).kid(El::new("interface_list").kids(ifaces));
        if s.mode == Mode::Farm {
            vip = vip.a("scriptcontrol", onoff(v.scriptcontrol));
        }
        if !v.loadbalancing.is_empty() {
            let groups = v.loadbalancing.iter().map(|g| {
                let mut e = El::new("group").a("name", &g.name);
                if !g.hosts.is_empty() {
                    e = e.kid(El::new("cluster").kids(g.hosts.iter().map(|h| El::new("host").a("name", &h.name).a("power", h.power))));
                }
                e.kids(g.rules.iter().map(|r| {
                    El::new("rule")
                        .a("virtual_addr", &r.virtual_addr)
                        .a("port", r.port.map_or_else(|| "*".to_string(), |p| p.to_string()))
                        .a(
                            "proto",
                            match r.proto {
                                LbProto::Tcp => "tcp",
                                LbProto::Udp => "udp",
                                LbProto::Arp => "arp",
                            },
                        )
                        .a(
                            "filter",
                            match r.filter {
                                LbFilter::OnAddr => "on_addr",
                                LbFilter::OnPort => "on_port",
                                LbFilter::OnIpid => "on_ipid",
                            },
                        )
                }))
            });
            vip = vip.kid(El::new("loadbalancing_list").kids(groups));
        }
        svc = svc.kid(vip);
    }
    if let Some(r) = &s.rfs {
        let dirs = r.replicated.iter().map(|d| {
            let mut e = El::new("replicated").a("dir", &d.dir);
            if d.read_only {
                e = e.a("mode", "read_only");
            }
            e.kids(d.tocheck.iter().map(|p| El::new("tocheck").a("path", p))).kids(d.notreplicated.iter().map(|n| match n {
                NotReplicated::Path(p) => El::new("notreplicated").a("path", p),
                NotReplicated::Regex { pattern, only } => {
                    El::new("notreplicated").a("regexpath", format!("{}{pattern}", if *only { "!" } else { "" }))
                }
            }))
        });
        let mut e = El::new("rfs")
            .a("acl", onoff(r.acl))
            .a("async", if r.async_mode == AsyncMode::None { "none" } else { "second" })
            .t("iotimeout", r.iotimeout, TimeUnit::Secs)
            .opt("roflags", r.roflags.as_ref())
            .t("locktimeout", r.locktimeout, TimeUnit::Secs)
            .t("sendtimeout", r.sendtimeout, TimeUnit::Secs)
            .a("nbrei", r.nbrei)
            .opt("ruzone_blocksize", r.ruzone_blocksize)
            .opt("reipacketsize", r.reipacketsize)
            .opt("packetsize", r.packetsize)
            .a("namespacepolicy", r.namespacepolicy)
            .t("reitimeout", r.reitimeout, TimeUnit::Secs)
            .a("reicommit", r.reicommit)
            .a("reidetail", onoff(r.reidetail))
            .a("allocthreshold", r.allocthreshold)
            .a("nbremconn", r.nbremconn)
            .t("checktime", r.checktime, TimeUnit::Millis)
            .t("checkintv", r.checkintv, TimeUnit::Secs)
            .opt("nfsbox_options", r.nfsbox_options.as_ref())
            .a("scripts", onoff(r.scripts))
            .opt("reiallowedbw", r.reiallowedbw)
            .t("syncdelta", r.syncdelta, TimeUnit::Mins)
            .opt("syncat", r.syncat.as_ref())
            .a("mountoversuffix", &r.mountoversuffix)
            .opt("mountover", r.mountover.map(onoff));
        if let Some(f) = &r.flow {
            e = e.kid(El::new("flow").a("name", f));
        }
        svc = svc.kid(e.kids(dirs));
    }
    if let Some(u) = &s.user {
        svc = svc.kid(
            El::new("user")
                .t("nicestoptimeout", u.nicestoptimeout, TimeUnit::Secs)
                .t("forcestoptimeout", u.forcestoptimeout, TimeUnit::Secs)
                .a("logging", if u.logging == Logging::None { "none" } else { "userlog" })
                .a("userlogsize", u.userlogsize)
                .kids(u.vars.iter().map(|v| El::new("var").a("name", &v.name).a("value", &v.value))),
        );
    }
    if let Some(v) = &s.vhost {
        svc = svc.kid(
            El::new("vhost")
                .kids(v.names.iter().map(|n| El::new("virtualhostname").a("name", &n.name).a("envfile", &n.envfile).a("when", &n.when))),
        );
    }
    if let Some(e) = &s.errd {
        let procs = e.procs.iter().map(|p| {
            El::new("proc")
                .a("name", &p.name)
                .a("service", onoff(p.service))
                .opt("nameregex", p.nameregex.as_ref())
                .opt("argregex", p.argregex.as_ref())
                .a("atleast", p.atleast)
                .a("atmax", p.atmax)
                .a(
                    "action",
                    match &p.action {
                        ErrdAction::Restart => "restart",
                        ErrdAction::Stopstart => "stopstart",
                        ErrdAction::Stop => "stop",
                        ErrdAction::Noaction => "noaction",
                        ErrdAction::Handler(h) => h.as_str(),
                    },
                )
                .opt("restart_services", (!p.restart_services.is_empty()).then(|| p.restart_services.join(", ")))
                .a("class", &p.class)
                .a("start_after", p.start_after)
        });
        svc = svc.kid(El::new("errd").t("polltimer", e.polltimer, TimeUnit::Secs).kids(procs));
    }
    if let Some(c) = &s.check {
        let kids = c.checkers.iter().map(|ch| {
            use super::model::CheckerKind as K;
            let mut e = El::new(ch.kind.as_str());
            e = match ch.kind {
                K::Module => e.a("ident", &ch.ident).opt("name", ch.module.as_ref()),
                _ => e.a("ident", &ch.ident),
            };
            let when = match ch.when {
                When::Pre => "pre",
                When::Prim => "prim",
                When::Second => "second",
                When::Both => "both",
            };
            if !matches!(ch.kind, K::Module) {
                e = e.a("when", when);
            }
            if matches!(ch.kind, K::Tcp | K::Ping | K::Custom) {
                e = e.a(
                    "action",
                    match ch.action {
                        CheckAction::Wait => "wait",
                        CheckAction::Stop => "stop",
                        CheckAction::Stopstart => "stopstart",
                        CheckAction::Restart => "restart",
                        CheckAction::Noaction => "noaction",
                    },
                );
            }
            e = e.opt("exec", ch.exec.as_ref()).opt("arg", ch.arg.as_ref());
            e.kids(ch.targets.iter().map(|t| {
                let mut te = El::new("to").opt("addr", t.addr.as_ref()).opt("port", t.port).opt("local_addr", t.local_addr.as_ref());
                te = te.t("interval", t.interval, TimeUnit::Secs);
                if !matches!(ch.kind, K::Ip) {
                    te = te.t("timeout", t.timeout, TimeUnit::Secs);
                }
                if matches!(ch.kind, K::Module) {
                    te = te.a("secure", onoff(t.secure));
                }
                te
            }))
        });
        svc = svc.kid(El::new("check").kids(kids));
    }
    if let Some(f) = &s.failover_rules {
        let mut e = El::new("failover").a("extends", if f.extends { "yes" } else { "no" }).t("period", f.period, TimeUnit::Millis).t(
            "handle_time",
            f.handle_time,
            TimeUnit::Millis,
        );
        e.cdata = Some(f.text.clone());
        svc = svc.kid(e);
    }
    let root = El::new("safe").kids(cfg.macros.iter().map(|m| El::new("macro").a("name", &m.name).a("value", &m.value))).kid(svc);
    let mut out = String::from("<!DOCTYPE safe>\n");
    root.write(&mut out, 0);
    out
}

/// `cluster.xml` text for `c`.
pub fn cluster_to_xml(c: &ClusterConfig) -> String {
    let lans = c.lans.iter().map(|l| {
        El::new("lan")
            .a("name", &l.name)
            .a("command", onoff(l.command))
            .kids(l.nodes.iter().map(|n| El::new("node").a("name", &n.name).a("addr", &n.addr).opt("laddr", n.laddr.as_ref())))
    });
    let root = El::new("cluster").kid(
        El::new("lans")
            .a("port", c.port)
            .t("pulse", c.pulse, TimeUnit::Millis)
            .a("mlost_count", c.mlost_count)
            .a("slost_count", c.slost_count)
            .kids(lans),
    );
    let mut out = String::new();
    root.write(&mut out, 0);
    out
}
