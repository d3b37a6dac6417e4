//! The command line's arguments, in SafeKit's syntax (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// SafeKit-compatible high-availability cluster: mirror (replication +
/// failover), farm and light modules. `SAFE` and `SAFEVAR` select the
/// node's directories (default /opt/safekit and /var/safekit).
#[derive(Parser)]
#[command(name = "safekit", version)]
pub(crate) struct Cli {
    /// Run the command on these nodes of cluster.xml through their web
    /// services (`*` for all, or `node1,node2`), one after the other, each
    /// answer under the node's name; works for the commands the daemon
    /// answers (state, start, stop, swap, log, config, ...).
    #[arg(short = 'H', value_name = "NODES")]
    pub(crate) hosts: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Cmd,
}

/// The module argument: `-m AM`, or `SAFEMODULE` inside scripts.
#[derive(clap::Args, Clone)]
pub(crate) struct Module {
    /// Module name.
    #[arg(short = 'm', env = "SAFEMODULE")]
    pub(crate) module: String,
}

/// `-i identity`: a command issued by a detector or a script (counts for maxloop).
#[derive(clap::Args, Clone)]
pub(crate) struct Identity {
    /// Identity of the issuer; without it the command is an administrator's
    /// and resets the maxloop counter.
    #[arg(short = 'i')]
    pub(crate) identity: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum FailureArg {
    /// kill -9 of the primary's daemon and application.
    Kill9,
    /// The primary's cable is cut.
    Cut,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum BootArg {
    On,
    Off,
    Status,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum AddDel {
    Add,
    Del,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum OnOff {
    On,
    Off,
}

#[derive(Subcommand, Clone)]
pub(crate) enum Cmd {
    /// Run the node daemon (normally started by systemd).
    Daemon {
        /// This node's name in cluster.xml (default: SAFEKIT_NODE, else the host name).
        #[arg(long)]
        node: Option<String>,
    },
    /// Set the password of a web-service user (SafeKit's `webservercfg
    /// -passwd PWD [-user NAME]`): an argon2 hash in SAFE/web/conf/user.conf,
    /// readable by root only. `-passwd -` reads it from the standard input
    /// (not shown by ps). Roles come from SAFE/web/conf/group.conf
    /// (`Admin : admin`, `Control : …`, `Monitor : …`); without it every
    /// user is Admin.
    Webservercfg {
        /// The password, or `-` to read one line from the standard input.
        #[arg(long = "passwd")]
        passwd: String,
        /// The user (default admin).
        #[arg(long = "user", default_value = "admin")]
        user: String,
    },
    /// HTTPS for the web service: `initssl ca` makes the cluster's CA and
    /// this node's certificate; `initssl req --ca NODE` on each other node
    /// gets its certificate from NODE (its key never leaves it). Restart
    /// the daemons: HTTPS on 9453, and 9010 redirects (but the health check,
    /// metrics and node endpoints). Certificates in SAFE/web/conf/ssl.
    #[command(subcommand)]
    Initssl(InitsslCmd),
    /// Remove this node's certificates: HTTP on 9010 again once the daemon restarts.
    Rmcerts,
    /// Write one zip with what support needs about a module on this node:
    /// its configuration and scripts, logs, state, userlogs, cluster.xml,
    /// its state and resources, and system facts (never the cluster key
    /// or the web service's users and API keys).
    Snapshot {
        #[command(flatten)]
        m: Module,
        /// The zip file to write.
        file: PathBuf,
    },
    /// Remove every module's virtual IP from this node when no daemon runs
    /// (the systemd unit runs it after the daemon died, even by SIGKILL).
    Release,
    /// Run a lease witness for the clusters that share this cluster key
    /// (on a third machine; modules use it with
    /// `<splitbrain ident="witness" exec="lease" arg="host:port"/>`).
    Witness {
        /// Address and UDP port to answer on.
        #[arg(long, default_value = "0.0.0.0:9455")]
        listen: std::net::SocketAddr,
        /// The cluster key file (default: SAFEVAR/cluster/cluster.key).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Start the module; the role is chosen automatically.
    Start {
        #[command(flatten)]
        m: Module,
        #[command(flatten)]
        i: Identity,
    },
    /// Stop the module (on the primary: failover to the secondary).
    Stop {
        #[command(flatten)]
        m: Module,
        #[command(flatten)]
        i: Identity,
    },
    /// Stop at once when a stop is stuck (kills the running script).
    Forcestop {
        #[command(flatten)]
        m: Module,
    },
    /// Run stop_xx then start_xx of the current state (no failover).
    Restart {
        #[command(flatten)]
        m: Module,
        #[command(flatten)]
        i: Identity,
    },
    /// Stop then start again (on the primary: failover).
    Stopstart {
        #[command(flatten)]
        m: Module,
        #[command(flatten)]
        i: Identity,
    },
    /// Force start as primary (refused if the other node is primary).
    Prim {
        #[command(flatten)]
        m: Module,
        /// Fully resynchronise the secondary when it joins.
        #[arg(value_parser = ["fullsync"])]
        fullsync: Option<String>,
    },
    /// Force start as secondary (refused if the other node is not primary;
    /// right after the daemon started, waits a few heartbeats for it).
    Second {
        #[command(flatten)]
        m: Module,
        /// Copy every file.
        #[arg(value_parser = ["fullsync"])]
        fullsync: Option<String>,
    },
    /// Start as primary even after an interrupted reintegration.
    Primforce {
        #[command(flatten)]
        m: Module,
    },
    /// Exchange the primary and secondary roles.
    Swap {
        #[command(flatten)]
        m: Module,
        /// Swap without synchronising the replicated directories.
        #[arg(value_parser = ["nosync"])]
        nosync: Option<String>,
        #[command(flatten)]
        i: Identity,
    },
    /// Turn automatic failover on or off (persisted).
    Failover {
        /// on or off.
        value: OnOff,
        #[command(flatten)]
        m: Module,
    },
    /// Turn process monitoring (errd) on or off (persisted maintenance switch).
    Errd {
        /// on or off.
        value: OnOff,
        #[command(flatten)]
        m: Module,
    },
    /// Turn checkers on or off (persisted maintenance switch).
    Checker {
        /// on or off.
        value: OnOff,
        #[command(flatten)]
        m: Module,
    },
    /// Start the module when the daemon starts (at the machine's boot) on
    /// this node: `boot on|off -m AM`, `boot status [-m AM]`. It decides
    /// when userconfig.xml's `<service boot>` is `ignore` (the default).
    Boot {
        /// on, off or status.
        value: BootArg,
        /// Module (status: default all).
        #[arg(short = 'm', env = "SAFEMODULE")]
        module: Option<String>,
    },
    /// Show module states; -q: exit code STOP 0, WAIT 1, ALONE/UP 2, PRIM 3, SECOND 4.
    State {
        /// One module (default: all).
        #[arg(short = 'm', env = "SAFEMODULE")]
        module: Option<String>,
        /// List resources.
        #[arg(short = 'v')]
        verbose: bool,
        /// Local state only (with -q).
        #[arg(short = 'l')]
        local: bool,
        /// Quiet: the state is the exit code.
        #[arg(short = 'q')]
        quiet: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Wait until the module reaches STATE (STOP, WAIT, ALONE, UP, PRIM, SECOND) and is Ready.
    Waitstate {
        #[command(flatten)]
        m: Module,
        /// The state to wait for.
        state: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Wait until a start is over: a Ready state (exit 0) or WAIT NotReady (exit 1).
    Waitstart {
        #[command(flatten)]
        m: Module,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Wait until the module is stopped.
    Waitstop {
        #[command(flatten)]
        m: Module,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Show the module log.
    Log {
        #[command(flatten)]
        m: Module,
        /// Number of lines.
        #[arg(short = 's', default_value_t = 300)]
        lines: usize,
        /// Verbose: include I and D messages.
        #[arg(short = 'A')]
        all: bool,
    },
    /// Follow the module log in real time (Ctrl-C to quit).
    Logview {
        #[command(flatten)]
        m: Module,
        /// Number of past lines shown first.
        #[arg(short = 's', default_value_t = 300)]
        lines: usize,
        /// Verbose: include I and D messages.
        #[arg(short = 'A')]
        all: bool,
    },
    /// Set a resource (a custom checker reports with it: `safekit set -r
    /// custom.<id> -v up|down -m AM`); the failover rules see it at once.
    Set {
        #[command(flatten)]
        m: Module,
        /// Resource, `class.ident`.
        #[arg(short = 'r')]
        resource: String,
        /// init, up, down or unknown.
        #[arg(short = 'v')]
        value: String,
        #[command(flatten)]
        i: Identity,
    },
    /// Print a module's resources (`name=value`), or one of them.
    Get {
        #[command(flatten)]
        m: Module,
        /// One resource, `class.ident`.
        #[arg(short = 'r')]
        resource: Option<String>,
    },
    /// From a script: write an information message into the module log.
    Printi {
        #[command(flatten)]
        m: Module,
        #[command(flatten)]
        msg: Message,
    },
    /// From a script: write a warning into the module log.
    Printw {
        #[command(flatten)]
        m: Module,
        #[command(flatten)]
        msg: Message,
    },
    /// From a script: write an error message into the module log.
    Printe {
        #[command(flatten)]
        m: Module,
        #[command(flatten)]
        msg: Message,
    },
    /// On the secondary: list the replicated files that differ from the primary's.
    Rfsverify {
        #[command(flatten)]
        m: Module,
    },
    /// On the primary: what a reintegration would copy now (modified entries, bytes).
    Rfsdiff {
        #[command(flatten)]
        m: Module,
    },
    /// Check a module's configuration without applying it (placeholders refused).
    Confcheck {
        #[command(flatten)]
        m: Module,
    },
    /// Check a module's configuration and apply it: the daemon restarts the
    /// (stopped) module's runtime with it; a changed `<rfs>` makes the next
    /// reintegration full. Apply the same configuration on every node.
    Config {
        #[command(flatten)]
        m: Module,
        /// Only show the configuration as the daemon reads it (JSON).
        #[arg(long)]
        show: bool,
    },
    /// Cluster configuration commands.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Module packages: install, uninstall, list.
    #[command(subcommand)]
    Module(ModuleCmd),
    /// Open (add) or close (del) in this node's firewall (firewalld, ufw, or
    /// an nftables input chain that drops by default) the ports of module AM,
    /// or of the node and every module; idempotent.
    Firewallcfg {
        /// add or del.
        #[arg(value_enum)]
        action: AddDel,
        /// One module (default: the node's web service and every module).
        module: Option<String>,
    },
    /// SafeKit's special commands, spelled `safekit -r COMMAND …`:
    /// `saferpc_send vipd SETGROUPS all all all` / `none none none` (a farm
    /// script under `scriptcontrol="on"` opens / closes its traffic;
    /// module from SAFEMODULE) and `vip_if_ctrl -l [-m AM]` (each farm
    /// node's bucket map).
    #[command(name = "special", hide = true)]
    Special {
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 1..)]
        args: Vec<String>,
    },
    /// Two-node cluster and a client on this machine in network namespaces:
    /// start, data replicated, failover after a kill -9 of the primary,
    /// measured outage, every acknowledged write on the survivor, the old
    /// primary back copying only what changed (root).
    Demo {
        /// Benchmark instead: repeat the failover RUNS times and print the
        /// client's outage per run, median and max.
        #[arg(long)]
        runs: Option<usize>,
        /// With --runs: how the primary fails.
        #[arg(long, value_enum, default_value = "kill9")]
        failure: FailureArg,
        /// Leave the cluster running after the demo (console on
        /// http://127.0.0.1:9010/console/) until `safekit demo --clean`.
        #[arg(long, conflicts_with = "runs")]
        keep: bool,
        /// End a cluster left running by `--keep`.
        #[arg(long, conflicts_with_all = ["runs", "keep"])]
        clean: bool,
    },
    /// The kept demo's forwarder: loopback to node1's web service.
    #[command(hide = true)]
    DemoForward {
        /// Loopback address to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Address inside the namespace.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// Network namespace to connect from.
        #[arg(long)]
        netns: String,
    },
    /// The demo's application (started by the demo module's start_prim).
    #[command(hide = true)]
    DemoApp {
        /// TCP port.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Test tool: writes fsynced records, printing each acknowledged one.
    #[command(hide = true)]
    DemoWriter {
        /// File to write.
        #[arg(long)]
        file: PathBuf,
        /// Number of records.
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
    },
    /// Benchmark tool: GET requests on keep-alive connections for a time;
    /// prints requests/s and p50/p99 latency (bench/api-latency.sh).
    #[command(hide = true)]
    DemoHttpload {
        /// Address of the web service (loopback or a namespace's).
        #[arg(long)]
        addr: std::net::SocketAddr,
        /// Path to GET.
        #[arg(long)]
        path: String,
        /// API key sent as a bearer token.
        #[arg(long)]
        bearer: Option<String>,
        /// How long.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Connections (one thread each).
        #[arg(long, default_value_t = 4)]
        conns: usize,
        /// HTTPS, trusting this node's cluster CA (SAFE/web/conf/ssl/ca.crt).
        #[arg(long)]
        https: bool,
    },
    /// Test tool: random file operations (fsx-like) under a directory.
    #[command(hide = true)]
    DemoFsx {
        /// Directory.
        #[arg(long)]
        dir: PathBuf,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Number of operations.
        #[arg(long, default_value_t = 200)]
        ops: u64,
        /// The secondary's real directory: compare after every operation.
        #[arg(long)]
        mirror: Option<PathBuf>,
    },
}

#[derive(clap::Args, Clone)]
pub(crate) struct Message {
    /// The message.
    pub(crate) message: String,
}

#[derive(Subcommand, Clone)]
pub(crate) enum ModuleCmd {
    /// Install a module from a .safe (zip) file or a directory into SAFE/modules.
    Install {
        /// Module name (default: the file name without extension).
        #[arg(short = 'm')]
        module: Option<String>,
        /// Fixed module id (the same on every node; ports derive from it).
        #[arg(short = 'M')]
        id: Option<u16>,
        /// Reinstall over an installed module.
        #[arg(short = 'r')]
        replace: bool,
        /// The .safe file or directory.
        path: PathBuf,
    },
    /// Remove an installed, stopped module (the daemon lets it go).
    Uninstall {
        #[command(flatten)]
        m: Module,
    },
    /// Write the module templates this version carries into
    /// SAFE/Application_Modules/generic/ (those missing; the daemon does it
    /// at start too) and list them.
    Templates,
    /// The ports the module and the node use (for firewalls and security groups).
    Getports {
        #[command(flatten)]
        m: Module,
    },
    /// Write an installed module back as a .safe package.
    Package {
        #[command(flatten)]
        m: Module,
        /// The .safe file to write.
        file: PathBuf,
    },
    /// List installed modules.
    List,
}

#[derive(Subcommand, Clone)]
pub(crate) enum InitsslCmd {
    /// Make the cluster's CA here, and this node's certificate.
    Ca,
    /// Get this node's certificate from the CA node (its daemon must run).
    Req {
        /// The CA node's name in cluster.xml.
        #[arg(long)]
        ca: String,
    },
}

#[derive(Subcommand, Clone)]
pub(crate) enum ClusterCmd {
    /// Check a cluster.xml file (default: SAFEVAR/cluster/cluster.xml).
    Confcheck {
        /// The file to check.
        file: Option<PathBuf>,
    },
    /// Check a cluster.xml and install it as SAFEVAR/cluster/cluster.xml
    /// (restart the daemon to apply; copy the same file to every node).
    Config {
        /// The new cluster.xml.
        file: PathBuf,
    },
    /// Make a new cluster key in SAFEVAR/cluster/cluster.key (copy it to every node).
    Genkey,
}
