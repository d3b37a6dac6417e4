//! Loading the node's modules and building their services.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use crate::config::{CheckerKind, ClusterConfig, HostAddr, Mode, Placement, UserConfig, VipAddr};
use crate::convert::{self, VipSubnet};
use crate::engine::{Automaton, LightEngine, MirrorEngine, Readiness, State, Status};
use crate::key::ClusterKey;
use crate::layout::Layout;
use crate::linux::heartbeat::{LanEndpoints, UdpHeartbeat};
use crate::linux::scripts::ProcessScripts;
use crate::linux::vip::{resolve, NetlinkVip, VipRequest};
use crate::runtime::log::ModuleLog;
use crate::runtime::module::{Module, ModuleBuilder};
use crate::runtime::store::FileStore;
use crate::runtime::{CompanionContext, ModuleReport};
use crate::services::StateStore as _;
use crate::services::{LogSink, Replicator, ScriptEnv, VirtualIp};
use std::time::Duration;

pub(super) struct Loaded {
    /// The module's runtime, filled with the Linux services.
    pub(super) module: ModuleBuilder<Box<dyn Automaton>>,
    pub(super) log: Arc<dyn LogSink>,
    pub(super) report: ModuleReport,
    /// Start the module this long after the daemon starts (`boot="on"`,
    /// or `boot="auto"` when it was running when the daemon last ended).
    pub(super) boot_start: Option<Duration>,
}

pub(super) struct Node {
    pub(super) node: String,
    pub(super) cluster: ClusterConfig,
    pub(super) key: ClusterKey,
    /// Each module with the `<rfs>` it was loaded with.
    pub(super) modules: Vec<(Loaded, Option<crate::config::Rfs>)>,
    /// Modules that could not be loaded, with why: the others run anyway.
    pub(super) broken: BTreeMap<String, String>,
}

/// The cluster key: `SAFEVAR/cluster/cluster.key` (hex), made by `safekit cluster genkey`.
pub fn load_key(layout: &Layout) -> Result<ClusterKey, String> {
    let path = layout.safevar.join("cluster").join("cluster.key");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e} (run safekit cluster genkey, then copy the key to every node)", path.display()))?;
    ClusterKey::from_hex(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// This node's name in cluster.xml: `node`, else `SAFEKIT_NODE`, else the host name.
pub fn node_name(cluster: &ClusterConfig, node: Option<String>) -> Result<String, String> {
    let names = cluster.node_names();
    let candidate =
        node.or_else(|| std::env::var("SAFEKIT_NODE").ok()).or_else(|| nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()));
    match candidate {
        Some(n) if names.contains(&n.as_str()) => Ok(n),
        Some(n) => Err(format!("this node ({n}) is not a node of cluster.xml ({}); set SAFEKIT_NODE", names.join(", "))),
        None => Err("cannot tell which node of cluster.xml this is; set SAFEKIT_NODE".into()),
    }
}

pub(crate) async fn resolve_host(h: &HostAddr) -> Result<IpAddr, String> {
    match h {
        HostAddr::Ip(ip) => Ok(*ip),
        HostAddr::Dns(name) => tokio::net::lookup_host((name.as_str(), 0))
            .await
            .map_err(|e| format!("cannot resolve {name}: {e}"))?
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| format!("{name} resolves to no address")),
    }
}

/// Module ids: `SAFE/modules/AM/id` if present, else the rank of the name.
pub(super) fn module_ids(layout: &Layout) -> Result<BTreeMap<String, u16>, String> {
    crate::modules::ids(layout)
}

fn script_env(layout: &Layout, name: &str, cfg: &UserConfig) -> ScriptEnv {
    let user = cfg.service.user.as_ref();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
    let path = std::env::var("PATH").unwrap_or_default();
    for (k, v) in [
        ("SAFE", layout.safe.display().to_string()),
        ("SAFEBIN", exe_dir.display().to_string()),
        ("SAFEVAR", layout.safevar.display().to_string()),
        ("SAFEMODULE", name.to_string()),
        ("SAFEUSERBIN", layout.module_dir(name).join("bin").display().to_string()),
        ("SAFEUSERCONF", layout.module_dir(name).join("conf").display().to_string()),
        ("SAFEUSERVAR", layout.module_var(name).display().to_string()),
        ("PATH", format!("{}:{path}", exe_dir.display())),
    ] {
        vars.insert(k.to_string(), v);
    }
    for v in user.map(|u| u.vars.as_slice()).unwrap_or_default() {
        vars.insert(v.name.clone(), v.value.clone());
    }
    ScriptEnv {
        bin: layout.module_dir(name).join("bin"),
        userlog_dir: user.filter(|u| u.logging == crate::config::Logging::Userlog).map(|_| layout.module_var(name)),
        vars,
        nicestop: user.map_or(Duration::from_secs(300), |u| u.nicestoptimeout),
        forcestop: user.map_or(Duration::from_secs(300), |u| u.forcestoptimeout),
    }
}

pub(super) async fn load(layout: &Layout, node: Option<String>, directory: &Arc<super::Directory>) -> Result<Node, String> {
    let cluster = layout.load_cluster().map_err(|e| e.to_string())?.value;
    let node = node_name(&cluster, node)?;
    let key = load_key(layout)?;
    // Scripts call "$SAFE/safekit": make it this binary.
    let link = layout.safe.join("safekit");
    if !link.exists() {
        if let Ok(exe) = std::env::current_exe() {
            let _ = std::os::unix::fs::symlink(exe, &link);
        }
    }
    let mut modules = Vec::new();
    let mut broken = BTreeMap::new();
    for (name, id) in module_ids(layout)? {
        // One bad module must not keep the others from running.
        let loaded = match layout.load_module(&name, &cluster, false) {
            Ok(cfg) => {
                let site = Site { layout, cluster: &cluster, node: &node, key: &key, directory };
                load_module(&site, name.clone(), id, false).await.map(|m| (m, cfg.value.service.rfs))
            }
            Err(e) => Err(e.to_string()),
        };
        match loaded {
            Ok(m) => modules.push(m),
            Err(e) => {
                tracing::error!(module = %name, error = %e, "module not started: its configuration is invalid");
                broken.insert(name, e);
            }
        }
    }
    Ok(Node { node, cluster, key, modules, broken })
}

/// What loading a module needs from the node.
#[derive(Clone, Copy)]
pub(super) struct Site<'a> {
    pub(super) layout: &'a Layout,
    pub(super) cluster: &'a ClusterConfig,
    pub(super) node: &'a str,
    pub(super) key: &'a ClusterKey,
    /// The running modules, for `<module>` checkers of this node.
    pub(super) directory: &'a Arc<super::Directory>,
}

/// Loads one module (at daemon start, or again for `safekit config`).
/// `full_sync`: the configuration changed what is replicated, so the next
/// reintegration copies everything (SafeKit's rfssyncmode=full after config).
pub(super) async fn load_module(site: &Site<'_>, name: String, id: u16, full_sync: bool) -> Result<Loaded, String> {
    let Site { layout, cluster, node, key, directory } = *site;
    let cfg = layout.load_module(&name, cluster, false).map_err(|e| e.to_string())?.value;
    let var = layout.module_var(&name);
    let log = Arc::new(ModuleLog::new(&var, &name));
    let store = FileStore::new(&var);
    let handler_env = script_env(layout, &name, &cfg);
    let scripts = Arc::new(ProcessScripts::new(handler_env.clone()));
    let specs = vip_specs(&name, &cfg).await?;
    let subnets: Vec<VipSubnet> = specs.iter().map(|v| VipSubnet { ip: v.ip, prefix: v.prefix }).collect();
    let engine_cfg = convert::engine_config(&cfg, cluster, node, &subnets);
    let (checkers, custom) = super::checks::build(directory, key, &name, &cfg, &specs).map_err(|e| format!("module {name}: {e}"))?;
    let vip: Option<Arc<dyn VirtualIp>> =
        if specs.is_empty() { None } else { Some(Arc::new(NetlinkVip::new(specs, cfg.service.vip.as_ref().is_some_and(|v| v.tcpreset)))) };
    let splitbrain = cfg.service.check.iter().flat_map(|c| &c.checkers).find(|c| c.kind == CheckerKind::Splitbrain);
    let lease_witness = splitbrain.filter(|c| c.exec.as_deref() == Some("lease")).and_then(|c| c.arg.clone());
    let witnesses: Vec<IpAddr> = splitbrain
        .filter(|_| lease_witness.is_none())
        .map(|c| c.arg.clone().unwrap_or_default().split_whitespace().filter_map(|w| w.parse().ok()).collect())
        .unwrap_or_default();
    // A lease lasts one heartbeat timeout: a dead holder's lease ends about
    // when its peer stops hearing it.
    let lease = lease_witness.map(|w| {
        let timeout = cfg.service.heart.iter().flat_map(|h| &h.heartbeats).map(|h| h.timeout).max().unwrap_or(Duration::from_secs(30));
        Arc::new(crate::witness::client::LeaseClient::new(w.trim().to_string(), key.clone(), id, node.to_string(), timeout))
    });
    let witness: Option<Arc<dyn crate::services::Witness>> = match &lease {
        Some(l) => Some(l.clone()),
        None if !witnesses.is_empty() => Some(Arc::new(crate::linux::icmp::PingWitness { targets: witnesses })),
        None => None,
    };
    let report = ModuleReport {
        name: name.clone(),
        id,
        status: Status::new(State::Stop, Readiness::NotReady),
        peer: None,
        resources: BTreeMap::new(),
        data_version: None,
        metrics: Default::default(),
        heartbeats_dropped: 0,
        heartbeat_lans: Vec::new(),
        replication: None,
        farm: None,
    };
    let mut persisted = store.load().map_err(|e| format!("module {name}: {e}"))?;
    // `auto`: "started before", i.e. still marked running: the daemon or
    // the machine ended without stopping it (a crash, a power loss).
    let switch = crate::modules::boot::switch(layout, &name);
    let boot_start = crate::modules::boot::starts(cfg.service.boot, switch, persisted.running).then_some(cfg.service.boot_delay);
    // A module that never ran (generation 0) synchronises in full at its
    // first reintegration anyway; flagging it would also make the first
    // reintegration of its first primary full, long after it has a mirror.
    if full_sync && persisted.gen > 0 {
        persisted.need_full_sync = true;
        persisted.full_sync_required = true;
        store.save(&persisted).map_err(|e| format!("module {name}: {e}"))?;
    }
    let incarnation = u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_micros())
        .unwrap_or(u64::MAX);
    let now = tokio::time::Instant::now().into_std();
    let mut replicator: Arc<dyn Replicator> = Arc::new(crate::services::NothingToReplicate);
    let mut farm = None;
    let (engine, heartbeat) = match cfg.service.mode {
        Mode::Mirror => {
            let heart = cfg.service.heart.as_ref().ok_or_else(|| format!("module {name}: no <heart>"))?;
            let port = heart.port.unwrap_or_else(|| crate::modules::ports::heartbeat(id));
            let mut lans = Vec::new();
            for hb in &heart.heartbeats {
                let lan = cluster.lan(&hb.name).ok_or_else(|| format!("module {name}: lan {} is not in cluster.xml", hb.name))?;
                let me = lan
                    .nodes
                    .iter()
                    .find(|n| n.name == node)
                    .ok_or_else(|| format!("module {name}: node {node} is not on lan {}", lan.name))?;
                let peer = lan
                    .nodes
                    .iter()
                    .find(|n| n.name != node)
                    .ok_or_else(|| format!("module {name}: lan {} has no other node", lan.name))?;
                let local = resolve_host(me.laddr.as_ref().unwrap_or(&me.addr)).await?;
                let remote = resolve_host(&peer.addr).await?;
                lans.push(LanEndpoints { local: SocketAddr::new(local, port), peer: SocketAddr::new(remote, port) });
            }
            if let Some(rfs) = &cfg.service.rfs {
                // Replication runs on the LAN named by <flow>, else the heartbeat with ident="flow", else the first.
                let flow = rfs
                    .flow
                    .as_ref()
                    .and_then(|f| heart.heartbeats.iter().position(|h| &h.name == f))
                    .or_else(|| heart.heartbeats.iter().position(|h| h.ident == "flow"))
                    .unwrap_or(0);
                let lan = lans.get(flow).ok_or_else(|| format!("module {name}: <rfs> needs a heartbeat network"))?;
                let rport = crate::replication::port(id);
                let settings = crate::replication::service::Settings {
                    module: id,
                    node: node.to_string(),
                    key: key.clone(),
                    listen: SocketAddr::new(lan.local.ip(), rport),
                    peer: SocketAddr::new(lan.peer.ip(), rport),
                    disk_ack: rfs.async_mode == crate::config::AsyncMode::None,
                    zone: rfs.ruzone_blocksize.unwrap_or(8 << 20),
                    lock_timeout: rfs.locktimeout,
                    send_timeout: rfs.sendtimeout,
                    reint: crate::replication::reint::ReintOptions {
                        workers: rfs.nbrei,
                        bandwidth: rfs.reiallowedbw.map(|k| k * 1024),
                        timeout: rfs.reitimeout,
                    },
                    state_dir: layout.module_var(&name),
                    dirs: rfs.replicated.clone(),
                    lease_gate: lease.as_ref().map(|l| l.gate.clone()),
                };
                let rlog = log.clone();
                replicator = Arc::new(crate::replication::service::LinuxReplicator::new(
                    settings,
                    Arc::new(move |level, msg: String| rlog.write("rfs", level, &msg)),
                ));
            }
            let hb = UdpHeartbeat::bind(key.clone(), id, &engine_cfg.peer, &lans)
                .await
                .map_err(|e| format!("module {name}: heartbeat socket: {e}"))?;
            let hb: Arc<dyn crate::services::Heartbeat> = Arc::new(hb);
            let engine: Box<dyn Automaton> = Box::new(MirrorEngine::new(engine_cfg, persisted, incarnation, now));
            (engine, Some(hb))
        }
        Mode::Light => (Box::new(LightEngine::new(engine_cfg, now)) as Box<dyn Automaton>, None),
        Mode::Farm => {
            let scriptcontrol = cfg.service.vip.as_ref().is_some_and(|v| v.scriptcontrol);
            let (traffic, membership) = super::farm::build(&name, id, &cfg, cluster, node, key).await?;
            farm = Some((traffic, membership));
            (Box::new(LightEngine::farm(engine_cfg, scriptcontrol, now)) as Box<dyn Automaton>, None)
        }
    };
    let log: Arc<dyn LogSink> = log;
    let mut module = Module::builder(&name, id, engine, &layout.module_var(&name))
        .scripts(scripts)
        .replicator(replicator)
        .store(Arc::new(store))
        .log(log.clone())
        .errd(cfg.service.errd.clone(), handler_env)
        .checkers(checkers)
        .custom_checkers(custom);
    if let Some(hb) = heartbeat {
        // The runtime counts a wake-up later than half the shortest timeout as a stall.
        let timeout = cfg.service.heart.iter().flat_map(|h| &h.heartbeats).map(|h| h.timeout).min().unwrap_or(Duration::from_secs(30));
        module = module.heartbeat(hb, timeout);
    }
    if let Some(v) = vip {
        module = module.vip(v);
    }
    if let Some((traffic, membership)) = farm {
        module = module.vip(traffic).companion(membership);
    }
    if let Some(w) = witness {
        module = module.witness(w);
    }
    if let Some(l) = lease {
        module =
            module.companion(Box::new(move |cx: CompanionContext| crate::witness::client::spawn_keeper(l, cx.report, cx.inputs, cx.log)));
    }
    Ok(Loaded { module, log, report, boot_start })
}

/// The module's virtual IPs, resolved to interfaces (none without `<vip>`).
pub(super) async fn vip_specs(name: &str, cfg: &UserConfig) -> Result<Vec<crate::linux::vip::VipSpec>, String> {
    let mut vip_addrs = Vec::new();
    for i in cfg.service.vip.iter().flat_map(|v| &v.interfaces) {
        for a in &i.real {
            let ip = match &a.addr {
                VipAddr::Ip(ip) => *ip,
                VipAddr::Name(n) => resolve_host(&HostAddr::Dns(n.clone())).await.map_err(|e| format!("module {name}: {e}"))?,
            };
            vip_addrs.push(VipRequest {
                ip,
                ifname: i.name.clone(),
                reroute: i.arpreroute.then_some((i.arpinterval, i.arpelapse)),
                one_side: a.placement == Placement::OneSide,
            });
        }
    }
    Ok(if vip_addrs.is_empty() { Vec::new() } else { resolve(&vip_addrs).map_err(|e| format!("module {name}: {e}"))? })
}
