//! Periodic checkers (reference §1.9, §6): each tests something every
//! `interval` and sets its resource `<kind>.<ident>` to up or down through
//! the engine's input queue, only while its class is enabled and checkers
//! are on (`safekit checker off` and a disabled class put it back to init).
//! The engine's failover rules decide what a down resource triggers.
//!
//! Generated ones: `<interface check="on">` gives `intf.<network>` and
//! `<virtual_addr check="on">` gives `ip.<vip>`. Configured ones: `<tcp>`,
//! `<ping>`, `<intf>`, `<ip>`, `<module>`; `<custom>` is a user process
//! supervised by [`spawn_custom`] that reports through `safekit set`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::engine::{CheckerClass, Command, CommandKind, Input, Readiness, ResourceState, State};

use super::{CommandMsg, ModuleReport};

/// What a checker tests.
#[derive(Debug, Clone)]
pub enum Probe {
    /// The interface is up and holds a local address in `net`/`prefix`.
    Interface {
        /// Interface name.
        ifname: String,
        /// Network address of the VIP's subnet.
        net: IpAddr,
        /// Prefix length.
        prefix: u8,
    },
    /// `<intf><to local_addr>`: the NIC holding `local` exists and has carrier.
    Nic {
        /// The NIC's physical address.
        local: IpAddr,
    },
    /// `ip` is configured on a local interface.
    Address {
        /// The virtual address.
        ip: IpAddr,
    },
    /// A TCP connection to `host`:`port` opens within `timeout`.
    Tcp {
        /// Address or name.
        host: String,
        /// Port.
        port: u16,
        /// Connect timeout.
        timeout: Duration,
    },
    /// `host` answers an ICMP echo within `timeout`.
    Ping {
        /// Address or name.
        host: String,
        /// Answer timeout.
        timeout: Duration,
    },
    /// Another module of this node is ready (ALONE/PRIM or UP, Ready);
    /// asked through the node's control socket.
    Module {
        /// The node's control socket.
        socket: PathBuf,
        /// The other module.
        module: String,
    },
    /// A module of another node is ready, asked through that node's API.
    RemoteModule {
        /// The node's address or name.
        host: String,
        /// Its API port.
        port: u16,
        /// The module.
        module: String,
        /// Its answers are authenticated with this cluster key.
        key: crate::key::ClusterKey,
        /// Answer timeout.
        timeout: Duration,
    },
}

/// One checker: its resource, test, class and period.
#[derive(Debug, Clone)]
pub struct CheckerSpec {
    /// `<kind>.<ident>`.
    pub resource: String,
    /// The test.
    pub probe: Probe,
    /// Runs while this class is enabled.
    pub class: CheckerClass,
    /// Test period.
    pub period: Duration,
}

/// `<custom>`: the user's executable, started while its class is enabled.
#[derive(Debug, Clone)]
pub struct CustomSpec {
    /// `custom.<ident>`.
    pub resource: String,
    /// The executable (relative paths are in SAFEUSERBIN).
    pub exec: PathBuf,
    /// Extra arguments after `<module> <resource>`.
    pub args: Vec<String>,
    /// Runs while this class is enabled.
    pub class: CheckerClass,
}

fn in_subnet(a: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
            u32::from(a) & m == u32::from(n) & m
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0);
            u128::from(a) & m == u128::from(n) & m
        }
        _ => false,
    }
}

/// The network address of `ip`/`prefix` (the `intf.` resource's identifier).
pub fn network(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            IpAddr::V4(std::net::Ipv4Addr::from(u32::from(a) & u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0)))
        }
        IpAddr::V6(a) => {
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a) & u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0)))
        }
    }
}

async fn lookup(host: &str, port: u16) -> Option<std::net::SocketAddr> {
    tokio::net::lookup_host((host, port)).await.ok()?.next()
}

fn carrier(ifname: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/carrier")).is_ok_and(|c| c.trim() == "1")
}

impl Probe {
    /// Who sets the resource, in SafeKit's log wording.
    pub const fn component(&self) -> &'static str {
        match self {
            Self::Interface { .. } | Self::Nic { .. } => "intfcheck",
            Self::Address { .. } => "ipcheck",
            Self::Tcp { .. } => "tcpcheck",
            Self::Ping { .. } => "pingcheck",
            Self::Module { .. } | Self::RemoteModule { .. } => "modulecheck",
        }
    }

    /// One test: true if the resource is up.
    pub async fn test(&self) -> bool {
        match self {
            Self::Interface { ifname, net, prefix } => {
                let addrs = if_addrs::get_if_addrs().unwrap_or_default();
                carrier(ifname) && addrs.iter().any(|i| i.name == *ifname && in_subnet(i.ip(), *net, *prefix))
            }
            Self::Nic { local } => {
                let addrs = if_addrs::get_if_addrs().unwrap_or_default();
                addrs.iter().find(|i| i.ip() == *local).is_some_and(|i| carrier(&i.name))
            }
            Self::Address { ip } => if_addrs::get_if_addrs().unwrap_or_default().iter().any(|i| i.ip() == *ip),
            Self::Tcp { host, port, timeout } => {
                let Some(addr) = lookup(host, *port).await else { return false };
                matches!(tokio::time::timeout(*timeout, tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)))
            }
            Self::Ping { host, timeout } => {
                let Some(addr) = lookup(host, 0).await else { return false };
                crate::linux::icmp::echo(addr.ip(), *timeout).await
            }
            Self::Module { .. } | Self::RemoteModule { .. } => self.module_status().await.is_some_and(module_ready),
        }
    }

    async fn module_status(&self) -> Option<crate::engine::Status> {
        match self {
            Self::Module { socket, module } => {
                let req = crate::daemon::control::Request::State { module: Some(module.clone()) };
                match crate::daemon::control::call(socket, &req).await {
                    Ok(crate::daemon::control::Response::States(s)) => s.first().map(|r| r.status),
                    _ => None,
                }
            }
            Self::RemoteModule { host, port, module, key, timeout } => {
                let addr = lookup(host, *port).await?;
                crate::daemon::api::ask(addr, key, module, *timeout).await.ok().flatten()
            }
            _ => None,
        }
    }
}

/// Ready in SafeKit's sense for the module checker: ALONE/PRIM (mirror) or UP (farm, light), Ready.
fn module_ready(s: crate::engine::Status) -> bool {
    matches!(s.state, State::Alone | State::Prim | State::Up) && s.readiness == Readiness::Ready
}

fn enabled(class: CheckerClass, classes: &Mutex<BTreeSet<CheckerClass>>, report: &watch::Receiver<ModuleReport>) -> bool {
    let on = classes.lock().is_ok_and(|c| c.contains(&class));
    let off = report.borrow().resources.get("usersetting.checker").is_some_and(|v| v == "off");
    on && !off
}

/// Runs `spec` until the returned task is aborted. A module checker also
/// stopstarts this module when it sees the other module restart (its
/// status Transient between two Ready ones).
pub fn spawn(
    spec: CheckerSpec,
    classes: Arc<Mutex<BTreeSet<CheckerClass>>>,
    report: watch::Receiver<ModuleReport>,
    inputs: mpsc::Sender<Input>,
    commands: Option<mpsc::Sender<CommandMsg>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Looks at the class often, tests every period: a checker whose
        // class was just enabled tests at once rather than a period later.
        let period = spec.period.max(Duration::from_millis(100));
        let mut tick = tokio::time::interval(period.min(Duration::from_millis(250)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let by = spec.probe.component().to_string();
        let mut last = None;
        let mut restarting = false;
        let mut next_test = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            if !enabled(spec.class, &classes, &report) {
                restarting = false;
                if last.take().is_some() {
                    let _ = inputs.send(Input::Resource { name: spec.resource.clone(), state: ResourceState::Init, by: by.clone() }).await;
                }
                continue;
            }
            if last.is_some() && tokio::time::Instant::now() < next_test {
                continue;
            }
            next_test = tokio::time::Instant::now() + period;
            let up = if matches!(spec.probe, Probe::Module { .. } | Probe::RemoteModule { .. }) {
                let status = spec.probe.module_status().await;
                let transient = status
                    .is_some_and(|s| matches!(s.state, State::Alone | State::Prim | State::Up) && s.readiness == Readiness::Transient);
                let up = status.is_some_and(module_ready);
                if last == Some(true) && transient {
                    restarting = true;
                } else if !up && !transient {
                    // Stopped rather than restarting: the wait rule handles it.
                    restarting = false;
                }
                if restarting && up {
                    restarting = false;
                    if let Some(c) = &commands {
                        let (tx, _rx) = tokio::sync::oneshot::channel();
                        let _ = c.send((Command::by(CommandKind::Stopstart, "modulecheck"), tx)).await;
                    }
                }
                up || (restarting && last == Some(true))
            } else {
                spec.probe.test().await
            };
            if last != Some(up) {
                last = Some(up);
                let state = if up { ResourceState::Up } else { ResourceState::Down };
                if inputs.send(Input::Resource { name: spec.resource.clone(), state, by: by.clone() }).await.is_err() {
                    return;
                }
            }
        }
    })
}

/// Supervises a `<custom>` checker: started with `<module> <resource>
/// [arg…]` in a process group of its own when its class is enabled,
/// restarted a second after it exits, killed (with its group) and its
/// resource put back to init when the class is disabled or the runtime ends.
pub fn spawn_custom(
    spec: CustomSpec,
    module: String,
    env: crate::services::ScriptEnv,
    classes: Arc<Mutex<BTreeSet<CheckerClass>>>,
    report: watch::Receiver<ModuleReport>,
    inputs: mpsc::Sender<Input>,
    log: Arc<super::log::ModuleLog>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let exe = if spec.exec.is_absolute() { spec.exec.clone() } else { env.bin.join(&spec.exec) };
        let mut child: Option<tokio::process::Child> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Kills the group when the runtime aborts this task.
        struct Group(Option<i32>);
        impl Drop for Group {
            fn drop(&mut self) {
                if let Some(pid) = self.0 {
                    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        let mut group = Group(None);
        loop {
            tick.tick().await;
            let on = enabled(spec.class, &classes, &report);
            if let Some(c) = child.as_mut() {
                if !on {
                    if let Some(pid) = group.0.take() {
                        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                    }
                    let _ = c.wait().await;
                    child = None;
                    let _ = inputs
                        .send(Input::Resource { name: spec.resource.clone(), state: ResourceState::Init, by: "customscript".into() })
                        .await;
                    continue;
                }
                if let Ok(Some(st)) = c.try_wait() {
                    log.write("check", crate::engine::LogLevel::E, &format!("Custom checker {} exited ({st}); restarted", exe.display()));
                    group.0 = None;
                    child = None;
                }
            }
            if on && child.is_none() {
                let mut cmd = tokio::process::Command::new(&exe);
                cmd.arg(&module).arg(&spec.resource).args(&spec.args).envs(&env.vars).process_group(0).kill_on_drop(true);
                cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
                match cmd.spawn() {
                    Ok(c) => {
                        group.0 = c.id().and_then(|p| i32::try_from(p).ok());
                        child = Some(c);
                    }
                    Err(e) => log.write("check", crate::engine::LogLevel::E, &format!("Custom checker {} not started: {e}", exe.display())),
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_subnets() {
        let ip: IpAddr = "192.168.1.77".parse().unwrap();
        assert_eq!(network(ip, 24), "192.168.1.0".parse::<IpAddr>().unwrap());
        assert!(in_subnet(ip, "192.168.1.0".parse().unwrap(), 24));
        assert!(!in_subnet(ip, "192.168.2.0".parse().unwrap(), 24));
        assert_eq!(network("fd00::1:2".parse().unwrap(), 64), "fd00::".parse::<IpAddr>().unwrap());
    }

    #[tokio::test]
    async fn probes_see_loopback() {
        assert!(Probe::Address { ip: "127.0.0.1".parse().unwrap() }.test().await, "loopback is configured");
        assert!(!Probe::Address { ip: "192.0.2.77".parse().unwrap() }.test().await, "TEST-NET-1 is not configured here");
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let tcp = |port| Probe::Tcp { host: "127.0.0.1".into(), port, timeout: Duration::from_secs(2) };
        assert!(tcp(port).test().await, "a listening port answers");
        drop(l);
        assert!(!tcp(port).test().await, "a closed port does not");
    }
}
