//! `<rfs>` and `<replicated>`: every documented attribute, plus the legacy
//! `mountover` attribute and `<flow>` element that older templates use.

use std::time::Duration;

use super::super::model::{AsyncMode, NotReplicated, Replicated, Rfs};
use super::super::time::TimeUnit;
use super::super::xml::Element;
use super::check::check_regex;
use super::Ctx;

const ATTRS: &[&str] = &[
    "acl",
    "async",
    "iotimeout",
    "roflags",
    "locktimeout",
    "sendtimeout",
    "nbrei",
    "ruzone_blocksize",
    "reipacketsize",
    "packetsize",
    "namespacepolicy",
    "reitimeout",
    "reicommit",
    "reidetail",
    "allocthreshold",
    "nbremconn",
    "checktime",
    "checkintv",
    "nfsbox_options",
    "scripts",
    "reiallowedbw",
    "syncdelta",
    "syncat",
    "mountoversuffix",
    "mountover",
];

pub(super) fn rfs(e: &Element, cx: &mut Ctx<'_, '_>) -> Rfs {
    cx.r.known_attrs(e, ATTRS);
    let r = &mut cx.r;
    let acl = r.onoff(e, "acl", false);
    let async_mode = match r.choice(e, "async", &["second", "none"]) {
        Some("none") => AsyncMode::None,
        _ => AsyncMode::Second,
    };
    let iotimeout = r.time(e, "iotimeout", TimeUnit::Secs, Duration::from_secs(300));
    let roflags = r.choice(e, "roflags", &["0x10", "0x10000"]).map(str::to_string);
    let locktimeout = r.time(e, "locktimeout", TimeUnit::Secs, Duration::from_secs(100));
    let sendtimeout = r.time(e, "sendtimeout", TimeUnit::Secs, Duration::from_secs(30));
    let nbrei = r.num(e, "nbrei", 6u32, "a number of workers");
    let ruzone_blocksize: Option<u64> = r.opt_num(e, "ruzone_blocksize", "a size in bytes");
    let reipacketsize: Option<u64> = r.opt_num(e, "reipacketsize", "a size in bytes");
    let packetsize = r.opt_num(e, "packetsize", "a size in bytes");
    let namespacepolicy = r.num(e, "namespacepolicy", 4u32, "0, 1, 3 or 4");
    let reitimeout = r.time(e, "reitimeout", TimeUnit::Secs, Duration::from_secs(150));
    let reicommit = r.num(e, "reicommit", 0u32, "a number of packets");
    let reidetail = r.onoff(e, "reidetail", false);
    let allocthreshold = r.num(e, "allocthreshold", 0u64, "a size in GB");
    let nbremconn = r.num(e, "nbremconn", 1u32, "a number of connections");
    let checktime = r.time(e, "checktime", TimeUnit::Millis, Duration::from_millis(220_000));
    let checkintv = r.time(e, "checkintv", TimeUnit::Secs, Duration::from_secs(120));
    let nfsbox_options = r.choice(e, "nfsbox_options", &["cross", "nocross"]).map(str::to_string);
    let scripts = r.onoff(e, "scripts", false);
    let reiallowedbw = r.opt_num(e, "reiallowedbw", "a bandwidth in KB/s");
    let syncdelta = r.time(e, "syncdelta", TimeUnit::Mins, Duration::ZERO);
    let syncat = r.opt_str(e, "syncat");
    let mountoversuffix = r.opt_str(e, "mountoversuffix").unwrap_or_else(|| "_For_SafeKit_Replication".into());
    let mountover = e.attr("mountover").map(|_| r.onoff(e, "mountover", true));
    if nbrei == 0 {
        let pos = e.attr("nbrei").map_or(e.pos, |a| a.pos);
        r.d.error(pos, "nbrei must be at least 1");
    }
    if let (Some(z), Some(p)) = (ruzone_blocksize, reipacketsize) {
        if p == 0 || z % p != 0 {
            let pos = e.attr("ruzone_blocksize").map_or(e.pos, |a| a.pos);
            r.d.error(pos, format!("ruzone_blocksize ({z}) must be a multiple of reipacketsize ({p})"));
        }
    }
    if ruzone_blocksize == Some(0) {
        let pos = e.attr("ruzone_blocksize").map_or(e.pos, |a| a.pos);
        r.d.error(pos, "ruzone_blocksize must be greater than 0");
    }
    let kids = r.children(e, &["replicated", "flow"]);
    let flow = r.single(&kids, "flow").and_then(|f| {
        r.known_attrs(f, &["name"]);
        let servers = r.children(f, &["server"]);
        if servers.is_empty() {
            r.req_str(f, "name", "a cluster lan name")
        } else {
            f.attr("name").map(|a| a.value.clone()).or_else(|| Some("flow".into()))
        }
    });
    let mut replicated: Vec<Replicated> = Vec::new();
    for rep in kids.iter().filter(|k| k.name == "replicated") {
        if let Some(x) = replicated_dir(rep, &replicated, cx) {
            replicated.push(x);
        }
    }
    if replicated.is_empty() {
        cx.r.d.error(e.pos, "<rfs> needs at least one <replicated dir=\"/absolute/path\">");
    }
    Rfs {
        acl,
        async_mode,
        iotimeout,
        roflags,
        locktimeout,
        sendtimeout,
        nbrei,
        ruzone_blocksize,
        reipacketsize,
        packetsize,
        namespacepolicy,
        reitimeout,
        reicommit,
        reidetail,
        allocthreshold,
        nbremconn,
        checktime,
        checkintv,
        nfsbox_options,
        scripts,
        reiallowedbw,
        syncdelta,
        syncat,
        mountoversuffix,
        mountover,
        flow,
        replicated,
    }
}

/// Windows (`C:\x`, `\\server\share`) or POSIX absolute path. Paths are data
/// until a node runs them, so a Windows module parses on Linux too.
pub(crate) fn is_absolute(p: &str) -> bool {
    let b = p.as_bytes();
    p.starts_with('/')
        || p.starts_with("\\\\")
        || (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b[2] == b'\\' || b[2] == b'/'))
}

fn normalize(p: &str) -> String {
    let s = p.replace('\\', "/");
    let t = s.trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        t.to_string()
    }
}

fn replicated_dir(e: &Element, earlier: &[Replicated], cx: &mut Ctx<'_, '_>) -> Option<Replicated> {
    cx.r.known_attrs(e, &["dir", "mode"]);
    let a = cx.r.req(e, "dir", "an absolute path")?;
    let dir = a.value.trim().to_string();
    if !is_absolute(&dir) {
        cx.r.d.error(a.pos, format!("replicated dir '{dir}' is not an absolute path"));
    } else if normalize(&dir) == "/" || (dir.len() <= 3 && dir.as_bytes().get(1) == Some(&b':')) {
        cx.r.d.error(a.pos, format!("replicated dir '{dir}' is a file system root, which cannot be replicated"));
    }
    let n = normalize(&dir);
    for other in earlier {
        let o = normalize(&other.dir);
        if o == n {
            cx.r.d.error(a.pos, format!("replicated dir '{dir}' is listed twice"));
        } else if n.starts_with(&format!("{o}/")) || o.starts_with(&format!("{n}/")) {
            cx.r.d.error(a.pos, format!("replicated dirs '{dir}' and '{}' are nested; they must be distinct trees", other.dir));
        }
    }
    let read_only = match cx.r.choice(e, "mode", &["read_only", "read_write"]) {
        Some("read_only") => true,
        _ => false,
    };
    let mut tocheck = Vec::new();
    let mut notreplicated = Vec::new();
    for c in cx.r.children(e, &["tocheck", "notreplicated"]) {
        if c.name == "tocheck" {
            cx.r.known_attrs(c, &["path"]);
            if let Some(p) = cx.r.req_str(c, "path", "a path relative to the replicated dir") {
                relative(c, &p, cx);
                tocheck.push(p);
            }
            continue;
        }
        cx.r.known_attrs(c, &["path", "regexpath"]);
        match (c.attr("path"), c.attr("regexpath")) {
            (Some(p), None) => {
                let v = p.value.trim().to_string();
                relative(c, &v, cx);
                notreplicated.push(NotReplicated::Path(v));
            }
            (None, Some(re)) => {
                let (only, pattern) = match re.value.strip_prefix('!') {
                    Some(rest) => (true, rest.to_string()),
                    None => (false, re.value.clone()),
                };
                check_regex(c, "regexpath", &pattern, cx);
                notreplicated.push(NotReplicated::Regex { pattern, only });
            }
            (Some(_), Some(_)) => cx.r.d.error(c.pos, "<notreplicated> takes either path or regexpath, not both"),
            (None, None) => cx.r.d.error(c.pos, "<notreplicated> needs attribute path (relative path) or regexpath (POSIX ERE)"),
        }
    }
    Some(Replicated { dir, read_only, tocheck, notreplicated })
}

fn relative(e: &Element, p: &str, cx: &mut Ctx<'_, '_>) {
    if is_absolute(p) || p.split(['/', '\\']).any(|c| c == "..") || p.is_empty() {
        let pos = e.attr("path").map_or(e.pos, |a| a.pos);
        cx.r.d.error(pos, format!("path '{p}' must be relative to the replicated dir (no leading / and no ..)"));
    }
}
