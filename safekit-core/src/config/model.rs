//! Typed SafeKit 8.2 configuration (`userconfig.xml`, `cluster.xml`).
//!
//! Defaults are SafeKit's documented ones; durations are stored already
//! converted from the attribute's implicit unit. Each type maps one element
//! of the reference's §1 (userconfig) and §2 (cluster).

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `userconfig.xml`: the macros and the one `<service>` of a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserConfig {
    /// `<macro name value>` in document order (already applied to the rest).
    pub macros: Vec<Macro>,
    /// The `<service>` element.
    pub service: Service,
}

/// `<macro name="ID" value="V"/>`: `%ID%` anywhere in the file becomes `V`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Macro {
    /// Macro identifier.
    pub name: String,
    /// Replacement text.
    pub value: String,
}

/// Module type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Two nodes, active/passive, replication and failover.
    Mirror,
    /// 2..N nodes, active/active behind one load-balanced VIP.
    Farm,
    /// One node: start/stop, checkers, local restart.
    Light,
}

/// `service/@boot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Boot {
    /// Never start at boot.
    Off,
    /// Always start at boot.
    On,
    /// Start at boot iff it was started before the reboot.
    Auto,
    /// Legacy: governed by `safekit boot on|off`.
    Ignore,
}

pub use crate::engine::DefaultPrim;

/// `<service>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// mirror, farm or light.
    pub mode: Mode,
    /// Start at boot policy.
    pub boot: Boot,
    /// Delay before a boot start (implicit unit s).
    pub boot_delay: Duration,
    /// Automatic failover (mirror).
    pub failover: bool,
    /// Default primary (mirror).
    pub defaultprim: DefaultPrim,
    /// Error-triggered actions allowed within `loop_interval` before a local stop.
    pub maxloop: u32,
    /// Window of `maxloop` (implicit unit h); zero disables the counter.
    pub loop_interval: Duration,
    /// A stopstart reboots the host instead.
    pub automatic_reboot: bool,
    /// `<heart>` (mirror).
    pub heart: Option<Heart>,
    /// `<farm>` (farm).
    pub farm: Option<Farm>,
    /// `<vip>`.
    pub vip: Option<Vip>,
    /// `<rfs>` (mirror).
    pub rfs: Option<Rfs>,
    /// `<user>`: without it no script runs.
    pub user: Option<User>,
    /// `<vhost>`.
    pub vhost: Option<Vhost>,
    /// `<errd>`.
    pub errd: Option<Errd>,
    /// `<check>`.
    pub check: Option<Check>,
    /// `<failover>`.
    pub failover_rules: Option<FailoverRules>,
}

/// `<heart>`: heartbeats of a mirror module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heart {
    /// UDP port; `None` = derived from the module id (8888 + id - 1).
    pub port: Option<u16>,
    /// Default interval between heartbeats (implicit unit ms).
    pub pulse: Duration,
    /// Default loss-detection timeout (implicit unit ms).
    pub timeout: Duration,
    /// Keep a permanent ARP entry for the peer's heartbeat addresses.
    pub permanent_arp: bool,
    /// One per network.
    pub heartbeats: Vec<HeartbeatLan>,
}

/// `<heartbeat>`: one network used for heartbeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatLan {
    /// A lan of cluster.xml (legacy syntax: a free label).
    pub name: String,
    /// Resource label (`heartbeat.<ident>`); `flow` carries replication.
    pub ident: String,
    /// Interval between heartbeats on this network.
    pub pulse: Duration,
    /// Loss-detection timeout on this network.
    pub timeout: Duration,
    /// Legacy (pre-7.2) `<server addr>` children; empty in 7.2+ syntax.
    pub legacy_servers: Vec<String>,
}

/// `<farm>`: membership of a farm module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Farm {
    /// UDP port; `None` = derived from the module id.
    pub port: Option<u16>,
    /// Membership heartbeat interval (implicit unit ms).
    pub pulse: Duration,
    /// Lost heartbeats before a new leader is elected.
    pub mlost_count: u32,
    /// Lost heartbeats before a follower is declared offline.
    pub slost_count: u32,
    /// `<lan name>` networks.
    pub lans: Vec<FarmLan>,
}

/// `<farm><lan>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FarmLan {
    /// Cluster lan name.
    pub name: String,
    /// Legacy (pre-7.2) `<node name>` children.
    pub legacy_nodes: Vec<String>,
}

/// `<vip>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vip {
    /// Reset connections sourced from the VIP before removing it.
    pub tcpreset: bool,
    /// Farm: traffic opened/closed by scripts.
    pub scriptcontrol: bool,
    /// `<interface_list>`.
    pub interfaces: Vec<VipInterface>,
    /// `<loadbalancing_list>` (farm).
    pub loadbalancing: Vec<LbGroup>,
}

/// `<interface>` of a VIP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipInterface {
    /// Generate the interface checker `intf.<network>`.
    pub check: bool,
    /// Periodic gratuitous ARP.
    pub arpreroute: bool,
    /// Gratuitous ARP period (implicit unit s).
    pub arpinterval: Duration,
    /// Gratuitous ARP duration (implicit unit s).
    pub arpelapse: Duration,
    /// NIC name; `None` = the NIC of the VIP's subnet.
    pub name: Option<String>,
    /// `<real_interface>` addresses (mirror).
    pub real: Vec<VirtualAddr>,
    /// `<virtual_interface>` (farm).
    pub virtual_interface: Option<VirtualInterface>,
}

/// `<virtual_interface>` (farm).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualInterface {
    /// `vmac_directed` or `vmac_invisible`.
    pub kind: VmacKind,
    /// Explicit virtual MAC (vmac_invisible).
    pub mac: Option<String>,
    /// The load-balanced addresses.
    pub addrs: Vec<VirtualAddr>,
}

/// How a farm VIP reaches every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmacKind {
    /// Each node answers ARP with its own MAC; packets are forwarded.
    Directed,
    /// A virtual unicast MAC makes switches flood to all nodes.
    Invisible,
}

/// `<virtual_addr>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualAddr {
    /// The address as written.
    pub addr: VipAddr,
    /// How the address is placed on the NIC.
    pub placement: Placement,
    /// Generate the IP checker `ip.<addr>`.
    pub check: bool,
    /// Count connections into `connections.<addr>`.
    pub connections: bool,
    /// Netmask when the NIC has several.
    pub netmask: Option<String>,
}

/// A VIP as written: an address, or a name resolved when the node runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VipAddr {
    /// IPv4 or IPv6 literal.
    Ip(IpAddr),
    /// DNS name (or a placeholder such as `VIRTUAL_TO_BE_DEFINED`, which `confcheck` refuses).
    Name(String),
}

impl std::fmt::Display for VipAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Name(n) => f.write_str(n),
        }
    }
}

/// `virtual_addr/@where`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placement {
    /// Mirror: alias on the primary.
    OneSideAlias,
    /// Mirror: primary address of the NIC on the primary.
    OneSide,
    /// Farm: alias on every node.
    Alias,
}

/// `<group>` of the farm load-balancing list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbGroup {
    /// Group name (resource `<name>_0`).
    pub name: String,
    /// `<cluster><host name power>`; empty = every node with power 1.
    pub hosts: Vec<LbHost>,
    /// `<rule>` entries.
    pub rules: Vec<LbRule>,
}

/// `<host name power>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbHost {
    /// Cluster node name.
    pub name: String,
    /// Relative weight; 0 = no traffic.
    pub power: u32,
}

/// `<rule>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbRule {
    /// VIP scope (`*` = all).
    pub virtual_addr: String,
    /// Destination port; `None` = `*`.
    pub port: Option<u16>,
    /// tcp, udp or arp.
    pub proto: LbProto,
    /// Hash criterion.
    pub filter: LbFilter,
}

/// `rule/@proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LbProto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ARP / IPv6 ND answers.
    Arp,
}

/// `rule/@filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LbFilter {
    /// Client address (affinity).
    OnAddr,
    /// Client source port.
    OnPort,
    /// IP identification field.
    OnIpid,
}

/// `rfs/@async`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AsyncMode {
    /// The secondary acknowledges on receipt.
    Second,
    /// The secondary acknowledges after writing to disk.
    None,
}

/// `<rfs>`: file replication of a mirror module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rfs {
    /// Replicate ACLs.
    pub acl: bool,
    /// When the secondary acknowledges.
    pub async_mode: AsyncMode,
    /// I/O timeout (Windows; implicit unit s).
    pub iotimeout: Duration,
    /// Foreign-write policy (Windows), as written.
    pub roflags: Option<String>,
    /// Replication request timeout (implicit unit s).
    pub locktimeout: Duration,
    /// Send timeout (implicit unit s).
    pub sendtimeout: Duration,
    /// Parallel reintegration workers.
    pub nbrei: u32,
    /// Zone size of the modification map, bytes.
    pub ruzone_blocksize: Option<u64>,
    /// Reintegration packet size, bytes.
    pub reipacketsize: Option<u64>,
    /// Replication packet size, bytes.
    pub packetsize: Option<u64>,
    /// Zone reintegration policy (0 disables zones).
    pub namespacepolicy: u32,
    /// Reintegration request timeout (implicit unit s).
    pub reitimeout: Duration,
    /// Commit every N packets during a file copy.
    pub reicommit: u32,
    /// Verbose reintegration log.
    pub reidetail: bool,
    /// Pre-allocation threshold in GB (Windows).
    pub allocthreshold: u64,
    /// TCP connections between primary and secondary.
    pub nbremconn: u32,
    /// Local file system check timeout (implicit unit ms).
    pub checktime: Duration,
    /// Local file system check interval (implicit unit s).
    pub checkintv: Duration,
    /// Junction policy (Windows), as written.
    pub nfsbox_options: Option<String>,
    /// Run `_rfs_*` callback scripts.
    pub scripts: bool,
    /// Reintegration bandwidth cap in KB/s.
    pub reiallowedbw: Option<u64>,
    /// Stale-but-recent start window (implicit unit m).
    pub syncdelta: Duration,
    /// Scheduled synchronisation (cron or schtasks syntax).
    pub syncat: Option<String>,
    /// Suffix of the directory under the mount.
    pub mountoversuffix: String,
    /// Legacy `mountover` attribute of older templates.
    pub mountover: Option<bool>,
    /// Legacy `<flow name>`: replication network.
    pub flow: Option<String>,
    /// Replicated directories.
    pub replicated: Vec<Replicated>,
}

/// `<replicated>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicated {
    /// Absolute path, same on both nodes.
    pub dir: String,
    /// Read-only on the secondary.
    pub read_only: bool,
    /// Relative paths that must exist before replication starts.
    pub tocheck: Vec<String>,
    /// Exclusions.
    pub notreplicated: Vec<NotReplicated>,
}

/// `<notreplicated>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotReplicated {
    /// A relative file or directory.
    Path(String),
    /// A POSIX ERE on relative paths; `only` = the leading `!` (replicate only matches).
    Regex {
        /// The expression without the `!`.
        pattern: String,
        /// Replicate only what matches.
        only: bool,
    },
}

/// `user/@logging`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Logging {
    /// One userlog file per script run.
    Userlog,
    /// No script output kept.
    None,
}

/// `<user>`: scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Graceful stop script timeout (implicit unit s).
    pub nicestoptimeout: Duration,
    /// Forced stop script timeout (implicit unit s).
    pub forcestoptimeout: Duration,
    /// Script output policy.
    pub logging: Logging,
    /// Userlog size limit in KB.
    pub userlogsize: u64,
    /// `<var>` exported to scripts.
    pub vars: Vec<Var>,
}

/// `<var name value>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Var {
    /// Environment variable name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// `<vhost>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vhost {
    /// `<virtualhostname>` entries.
    pub names: Vec<VirtualHostName>,
}

/// `<virtualhostname>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualHostName {
    /// Virtual host name.
    pub name: String,
    /// Env file scripts source.
    pub envfile: String,
    /// prim, second or both.
    pub when: String,
}

/// `<errd>`: process monitoring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errd {
    /// Poll period (implicit unit s).
    pub polltimer: Duration,
    /// Monitored processes.
    pub procs: Vec<Proc>,
}

/// What errd does when a process condition fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrdAction {
    /// Local stop_xx + start_xx.
    Restart,
    /// Module stop + start (failover if primary).
    Stopstart,
    /// Module stop.
    Stop,
    /// Log only.
    Noaction,
    /// A handler executable (relative to the module's bin/).
    Handler(String),
}

/// `<proc>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    /// Command name or resource name.
    pub name: String,
    /// Monitor a service instead of a process.
    pub service: bool,
    /// ERE on the command name.
    pub nameregex: Option<String>,
    /// ERE on the argument list.
    pub argregex: Option<String>,
    /// Minimum number of processes (-1 disables).
    pub atleast: i64,
    /// Maximum number of processes (-1 disables).
    pub atmax: i64,
    /// Action on failure.
    pub action: ErrdAction,
    /// Services passed to scripts with `-Services`.
    pub restart_services: Vec<String>,
    /// Class: prim, both, pre, second, sec or a custom name.
    pub class: String,
    /// Delay monitoring by (n-1) poll cycles.
    pub start_after: u32,
}

/// `<check>`: all checkers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Check {
    /// Checkers in document order.
    pub checkers: Vec<Checker>,
}

/// When a checker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// From prestart to poststop.
    Pre,
    /// While primary.
    Prim,
    /// While secondary.
    Second,
    /// While started (start_both..stop_both).
    Both,
}

/// What a checker's failure triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckAction {
    /// Hold in WAIT until the resource is up again.
    Wait,
    /// Stop the module.
    Stop,
    /// Stop and start the module.
    Stopstart,
    /// Restart the application locally.
    Restart,
    /// Nothing (the resource is only reported).
    Noaction,
}

/// A checker target `<to>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckTarget {
    /// Address (tcp, ping, ip, module).
    pub addr: Option<String>,
    /// Port (tcp, module).
    pub port: Option<u16>,
    /// Local address (intf).
    pub local_addr: Option<String>,
    /// Test period (implicit unit s).
    pub interval: Duration,
    /// Test timeout (implicit unit s).
    pub timeout: Duration,
    /// HTTPS (module checker).
    pub secure: bool,
}

/// One checker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checker {
    /// tcp, ping, intf, ip, custom, module or splitbrain.
    pub kind: CheckerKind,
    /// Resource identifier: the resource is `<kind>.<ident>`.
    pub ident: String,
    /// When it runs.
    pub when: When,
    /// What a failure triggers.
    pub action: CheckAction,
    /// Targets (`<to>` children).
    pub targets: Vec<CheckTarget>,
    /// custom: executable; splitbrain: `ping`.
    pub exec: Option<String>,
    /// custom: extra arguments; splitbrain: witness addresses.
    pub arg: Option<String>,
    /// module: the other module's name.
    pub module: Option<String>,
}

/// Checker kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckerKind {
    /// TCP connect.
    Tcp,
    /// ICMP echo.
    Ping,
    /// NIC link and local address.
    Intf,
    /// VIP still configured locally.
    Ip,
    /// User executable reporting through `safekit set`.
    Custom,
    /// State of another module.
    Module,
    /// Witness consulted when all heartbeats are lost.
    Splitbrain,
}

impl CheckerKind {
    /// Element name and resource class.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Ping => "ping",
            Self::Intf => "intf",
            Self::Ip => "ip",
            Self::Custom => "custom",
            Self::Module => "module",
            Self::Splitbrain => "splitbrain",
        }
    }
}

/// `<failover>`: the failover machine's rules (interpreted by the checker layer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRules {
    /// Add to (true) or replace (false) the default rules.
    pub extends: bool,
    /// Evaluation period (implicit unit ms).
    pub period: Duration,
    /// Stability time before an action runs (implicit unit ms).
    pub handle_time: Duration,
    /// Rules in the legacy language, as written.
    pub text: String,
}

/// `cluster.xml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Membership protocol UDP port.
    pub port: u16,
    /// Membership heartbeat interval (implicit unit ms).
    pub pulse: Duration,
    /// Lost heartbeats before a new leader.
    pub mlost_count: u32,
    /// Lost heartbeats before a follower is offline.
    pub slost_count: u32,
    /// Networks.
    pub lans: Vec<Lan>,
}

impl ClusterConfig {
    /// Node names, in order of first appearance.
    pub fn node_names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for n in self.lans.iter().flat_map(|l| &l.nodes) {
            if !out.contains(&n.name.as_str()) {
                out.push(&n.name);
            }
        }
        out
    }

    /// The lan called `name`.
    pub fn lan(&self, name: &str) -> Option<&Lan> {
        self.lans.iter().find(|l| l.name == name)
    }

    /// The lan used for distributed commands: the one with `command="on"`, else the first.
    pub fn command_lan(&self) -> Option<&Lan> {
        self.lans.iter().find(|l| l.command).or_else(|| self.lans.first())
    }
}

/// `<lan>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lan {
    /// Logical network name.
    pub name: String,
    /// Used for distributed commands.
    pub command: bool,
    /// Nodes on this network.
    pub nodes: Vec<NodeAddr>,
}

/// `<node name addr laddr>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// Logical node name.
    pub name: String,
    /// Address seen by the other nodes.
    pub addr: HostAddr,
    /// Local address under NAT.
    pub laddr: Option<HostAddr>,
}

/// A node address: literal or DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostAddr {
    /// IPv4 or IPv6 (written `[...]` for IPv6).
    Ip(IpAddr),
    /// DNS name, resolved when the node runs.
    Dns(String),
}

impl std::fmt::Display for HostAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Self::Ip(a) => write!(f, "{a}"),
            Self::Dns(n) => f.write_str(n),
        }
    }
}
