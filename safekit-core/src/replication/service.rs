//! The default [`Replicator`]: mounts each replicated directory over itself,
//! serves secondaries on the primary, connects to the primary on the
//! secondary, and recovers a mount left behind by a crashed daemon.

use std::io::BufReader;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::dirty::DirtyMap;
use super::filter::Filter;
use super::fs::{CacheWish, ReadStats, ReplicatedFs};
use super::link::Link;
use super::reint::{self, ReintOptions};
use super::replica::{LocalRole, Replica};
use super::secondary::{self, Upstream};
use super::tree::Tree;
use super::wire::{server_handshake, ToPrimary, ToSecondary};
use super::Hooks;
use crate::config::Replicated;
use crate::engine::{LogLevel, ReplicaRole, ReplicationEvent, SyncMode, UnreplicatedWrites};
use crate::key::ClusterKey;
use crate::services::{Replicator, ServiceError};

/// Everything the replicator needs from the configuration.
#[derive(Clone)]
pub struct Settings {
    /// Module id.
    pub module: u16,
    /// This node's name.
    pub node: String,
    /// Cluster key.
    pub key: ClusterKey,
    /// Where the primary listens (this node's address on the flow LAN).
    pub listen: SocketAddr,
    /// The peer's replication address.
    pub peer: SocketAddr,
    /// async="none".
    pub disk_ack: bool,
    /// ruzone_blocksize.
    pub zone: u64,
    /// locktimeout.
    pub lock_timeout: Duration,
    /// sendtimeout.
    pub send_timeout: Duration,
    /// nbrei, reiallowedbw, reitimeout.
    pub reint: ReintOptions,
    /// Where the dirty maps live.
    pub state_dir: PathBuf,
    /// The replicated directories.
    pub dirs: Vec<Replicated>,
    /// With a lease witness: unreplicated writes wait for an ALONE lease.
    pub lease_gate: Option<Arc<crate::witness::client::LeaseGate>>,
}

struct Mounted {
    replica: Arc<Replica>,
    stats: Arc<ReadStats>,
    session: Option<fuser::BackgroundSession>,
    dir: PathBuf,
    ticker: Arc<AtomicBool>,
}

#[derive(Default)]
struct Inner {
    mounts: Vec<Mounted>,
    listener: Option<Arc<AtomicBool>>,
    upstream: Vec<TcpStream>,
}

/// See the module documentation.
pub struct LinuxReplicator {
    h: Handle,
    events: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<ReplicationEvent>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a mount asks the kernel for. By default neither FUSE passthrough
/// nor the writeback cache: every open goes through this daemon, so no
/// reader can ever make a writer of the same file fail (the kernel refuses
/// a normal open of a file held by a passthrough reader). Opt-ins for
/// read-mostly trees and for measuring: `SAFEKIT_PASSTHROUGH=1` (read-only
/// opens of files not written since the mount read the real file at native
/// speed; a reader that opened such a file first can then make a writer
/// wait, and fail after 5 s) or, on a node mounting as primary,
/// `SAFEKIT_WRITEBACK=1` (the kernel refuses the two together).
/// docs/DESIGN.md and docs/PERFORMANCE.md give the measured costs.
fn cache_wish(primary: bool) -> CacheWish {
    let on = |var: &str| std::env::var(var).is_ok_and(|v| v == "1");
    CacheWish { passthrough: on("SAFEKIT_PASSTHROUGH"), writeback: primary && on("SAFEKIT_WRITEBACK") }
}

/// Detaches anything mounted at `dir` by a previous safekit daemon (after
/// a crash its FUSE mount is left "transport endpoint not connected").
pub fn detach_stale(dir: &Path) -> usize {
    let mut n = 0;
    for _ in 0..8 {
        let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return n };
        let want = dir.to_string_lossy().replace(' ', "\\040");
        let stale = info.lines().any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let fstype = l.split(" - ").nth(1).and_then(|r| r.split(' ').next()).unwrap_or("");
            f.get(4) == Some(&want.as_str()) && fstype.starts_with("fuse") && l.contains("safekit")
        });
        if !stale || nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH).is_err() {
            return n;
        }
        n += 1;
    }
    n
}

impl LinuxReplicator {
    /// A replicator for `s`; `log` writes module log lines.
    pub fn new(s: Settings, log: Arc<dyn Fn(LogLevel, String) + Send + Sync>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let hooks = Hooks {
            log,
            event: Arc::new(move |e| {
                let _ = tx.send(e);
            }),
        };
        let h =
            Handle { s, hooks, inner: Arc::new(Mutex::new(Inner::default())), gate: Arc::default(), refused: Arc::default(), mount: true };
        Self { h, events: tokio::sync::Mutex::new(rx) }
    }

    /// The same replicator without FUSE mounts (no root needed): the
    /// caller writes through the replicas (see `replication::harness`).
    #[cfg(test)]
    pub(crate) fn unmounted(s: Settings, log: Arc<dyn Fn(LogLevel, String) + Send + Sync>) -> Self {
        let mut me = Self::new(s, log);
        me.h.mount = false;
        me
    }

    /// The replicas of the replicated directories, in `<rfs>` order.
    #[cfg(test)]
    pub(crate) fn replicas(&self) -> Vec<Arc<Replica>> {
        lock(&self.h.inner).mounts.iter().map(|m| m.replica.clone()).collect()
    }

    /// (files, bytes) that a reintegration would copy now (`safekit rfsdiff`).
    pub fn estimate(&self) -> Vec<(String, usize, u64)> {
        self.h.estimate()
    }

    /// Differences between this secondary and the primary (`safekit rfsverify`).
    pub fn verify(&self) -> Result<Vec<String>, String> {
        self.h.verify()
    }
}

impl Handle {
    fn mount_all(&self, primary: bool) -> Result<(), String> {
        let mut inner = lock(&self.inner);
        if !inner.mounts.is_empty() {
            return Ok(());
        }
        for (i, d) in self.s.dirs.iter().enumerate() {
            let dir = PathBuf::from(&d.dir);
            if self.mount && detach_stale(&dir) > 0 {
                (self.hooks.log)(LogLevel::E, format!("Stale replication mount on {} detached", d.dir));
            }
            for t in &d.tocheck {
                if !dir.join(t).exists() {
                    return Err(format!("{}: {t} is missing (tocheck): refusing to replicate a directory that may not be mounted", d.dir));
                }
            }
            let tree = Tree::open(&dir).map_err(|e| format!("{}: {e}", d.dir))?;
            let dm =
                DirtyMap::open(&self.s.state_dir.join(format!("rfs-{i}.dirty")), self.s.zone).map_err(|e| format!("dirty map: {e}"))?;
            let dm = Arc::new(Mutex::new(dm));
            let link = Arc::new(Link::new(dm.clone(), self.hooks.clone(), self.s.lock_timeout, self.s.send_timeout));
            let filter = Filter::new(&d.notreplicated)?;
            let mut replica = Replica::new(tree, dm, link, filter, self.s.disk_ack, self.hooks.clone());
            replica.lease = self.s.lease_gate.clone();
            replica.gate = self.gate.clone();
            let replica = Arc::new(replica);
            let mut cfg = fuser::Config::default();
            cfg.mount_options = vec![
                fuser::MountOption::FSName("safekit".into()),
                fuser::MountOption::Subtype("safekit".into()),
                fuser::MountOption::DefaultPermissions,
            ];
            cfg.acl = fuser::SessionACL::All;
            cfg.n_threads = Some(4);
            cfg.clone_fd = true;
            let fs = ReplicatedFs::new(replica.clone(), cache_wish(primary));
            let stats = fs.stats();
            let session =
                if self.mount { Some(fuser::spawn_mount(fs, &dir, &cfg).map_err(|e| format!("mount over {}: {e}", d.dir))?) } else { None };
            let ticker = Arc::new(AtomicBool::new(true));
            {
                let (r, on) = (replica.clone(), ticker.clone());
                let _ = std::thread::Builder::new().name("rfs-checkpoint".into()).spawn(move || {
                    while on.load(Ordering::Acquire) {
                        std::thread::sleep(Duration::from_millis(500));
                        if r.link.connected() {
                            r.link.send(&ToSecondary::Checkpoint);
                        }
                    }
                });
            }
            (self.hooks.log)(LogLevel::I, format!("Replicated directory {} mounted", d.dir));
            inner.mounts.push(Mounted { replica, stats, session, dir, ticker });
        }
        Ok(())
    }

    fn listen(&self) -> Result<(), String> {
        let mut inner = lock(&self.inner);
        if inner.listener.is_some() {
            return Ok(());
        }
        let sock =
            socket2::Socket::new(socket2::Domain::for_address(self.s.listen), socket2::Type::STREAM, None).map_err(|e| e.to_string())?;
        sock.set_reuse_address(true).map_err(|e| e.to_string())?;
        sock.bind(&self.s.listen.into()).map_err(|e| format!("replication port {}: {e}", self.s.listen))?;
        sock.listen(8).map_err(|e| e.to_string())?;
        let l: TcpListener = sock.into();
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        let on = Arc::new(AtomicBool::new(true));
        inner.listener = Some(on.clone());
        let replicas: Vec<Arc<Replica>> = inner.mounts.iter().map(|m| m.replica.clone()).collect();
        let (s, hooks, refused) = (self.s.clone(), self.hooks.clone(), self.refused.clone());
        // Connections still proving who they are: a handful at most, so
        // that a flood of unauthenticated connections costs no threads.
        let handshaking = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        std::thread::Builder::new()
            .name("rfs-listen".into())
            .spawn(move || {
                while on.load(Ordering::Acquire) {
                    match l.accept() {
                        Ok((stream, from)) => {
                            // Only the peer replicates with us; anything else is
                            // dropped (and counted: rfs.refused_connections).
                            let busy = handshaking.load(Ordering::Acquire) >= MAX_HANDSHAKES;
                            if from.ip() != s.peer.ip() || busy {
                                let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
                                if n.is_power_of_two() {
                                    let why =
                                        if busy { "too many connections proving who they are" } else { "not the other node's address" };
                                    (hooks.log)(LogLevel::E, format!("Replication connection from {from} refused: {why} ({n} so far)"));
                                }
                                drop(stream);
                                continue;
                            }
                            handshaking.fetch_add(1, Ordering::AcqRel);
                            let (replicas, s, hooks, hs) = (replicas.clone(), s.clone(), hooks.clone(), handshaking.clone());
                            let spawned = std::thread::Builder::new().name("rfs-serve".into()).spawn(move || {
                                if let Err(e) = serve_secondary(stream, &replicas, &s, &hooks, &hs) {
                                    (hooks.log)(LogLevel::E, format!("Replication connection from {from}: {e}"));
                                }
                            });
                            if spawned.is_err() {
                                handshaking.fetch_sub(1, Ordering::AcqRel);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    fn stop_listening(&self) {
        if let Some(on) = lock(&self.inner).listener.take() {
            on.store(false, Ordering::Release);
        }
    }

    fn unmount_all(&self) {
        let mounts = std::mem::take(&mut lock(&self.inner).mounts);
        for mut m in mounts {
            m.ticker.store(false, Ordering::Release);
            m.replica.link.drop_current("replication stopped");
            if let Some(s) = m.session.take() {
                if s.umount_and_join().is_err() {
                    // Busy (a process still has a file open there): detach
                    // lazily so the directory is usable again at once.
                    let _ = nix::mount::umount2(&m.dir, nix::mount::MntFlags::MNT_DETACH);
                }
            }
            (self.hooks.log)(LogLevel::I, format!("Replicated directory {} unmounted", m.dir.display()));
        }
    }

    fn estimate(&self) -> Vec<(String, usize, u64)> {
        lock(&self.inner)
            .mounts
            .iter()
            .map(|m| {
                let dm = lock(&m.replica.dirty);
                let (n, b) = dm.estimate(|p| m.replica.tree.stat(p).ok().map(|s| u64::try_from(s.st_size).unwrap_or(0)));
                (m.dir.display().to_string(), n, b)
            })
            .collect()
    }

    fn verify(&self) -> Result<Vec<String>, String> {
        let mounts: Vec<(usize, Arc<Replica>)> = lock(&self.inner).mounts.iter().enumerate().map(|(i, m)| (i, m.replica.clone())).collect();
        if mounts.is_empty() {
            return Err("the module's replicated directories are not mounted".into());
        }
        let mut out = Vec::new();
        for (i, r) in mounts {
            let up = self.upstream(i);
            let (mut stream, (mut tx, mut rx)) = secondary::connect(&up, Duration::from_secs(5))?;
            let mut buf = Vec::new();
            tx.seal(&ToPrimary::Verify, &mut buf);
            std::io::Write::write_all(&mut stream, &buf).map_err(|e| e.to_string())?;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(600)));
            let mut reader = BufReader::new(stream);
            let mut theirs = Vec::new();
            loop {
                match rx.open::<ToSecondary>(&mut reader).map_err(|e| e.to_string())? {
                    ToSecondary::Digests { list, last } => {
                        theirs.extend(list);
                        if last {
                            break;
                        }
                    }
                    _ => return Err("unexpected answer from the primary".into()),
                }
            }
            let mine = super::verify::digests(&r.tree, &r.filter)?;
            out.extend(super::verify::differences(&mine, &theirs));
        }
        Ok(out)
    }

    fn upstream(&self, i: usize) -> Upstream {
        Upstream {
            addr: self.s.peer,
            key: self.s.key.clone(),
            channel: self.s.module.saturating_mul(32).saturating_add(u16::try_from(i).unwrap_or(0)),
            node: self.s.node.clone(),
        }
    }
}

/// Connections accepted but not yet authenticated, at most.
const MAX_HANDSHAKES: usize = 4;
/// How long a connection has to authenticate and say what it wants.
const HANDSHAKE_TIME: Duration = Duration::from_secs(5);

/// Decrements the handshake count once, when the connection has proved
/// itself or failed to.
struct Handshaking<'a>(Option<&'a std::sync::atomic::AtomicUsize>);

impl Handshaking<'_> {
    fn done(&mut self) {
        if let Some(c) = self.0.take() {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Handshaking<'_> {
    fn drop(&mut self) {
        self.done();
    }
}

fn serve_secondary(
    mut stream: TcpStream,
    replicas: &[Arc<Replica>],
    s: &Settings,
    hooks: &Hooks,
    handshaking: &std::sync::atomic::AtomicUsize,
) -> Result<(), String> {
    let mut pending = Handshaking(Some(handshaking));
    let _ = stream.set_nodelay(true);
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(HANDSHAKE_TIME));
    let _ = stream.set_write_timeout(Some(HANDSHAKE_TIME));
    // The channel says which module and directory; try each directory's channel.
    let (session, idx) = {
        let mut peek = [0u8; 8];
        let n = stream.peek(&mut peek).map_err(|e| e.to_string())?;
        let ch = if n >= 8 { u16::from_le_bytes([peek[6], peek[7]]) } else { 0 };
        let idx = usize::from(ch.wrapping_sub(s.module.saturating_mul(32)));
        if idx >= replicas.len() {
            return Err("not a replication client of this module".into());
        }
        (server_handshake(&mut stream, &s.key, ch).map_err(|e| e.to_string())?, idx)
    };
    let r = &replicas[idx];
    let (mut tx, mut rx) = session;
    let mut reader = BufReader::with_capacity(1 << 20, stream.try_clone().map_err(|e| e.to_string())?);
    let first = rx.open::<ToPrimary>(&mut reader).map_err(|e| e.to_string())?;
    pending.done();
    let _ = stream.set_read_timeout(None);
    let _ = stream.set_write_timeout(None);
    let (node, full, dirty) = match first {
        ToPrimary::Hello { node, full, dirty } => (node, full, dirty),
        ToPrimary::Verify => {
            // In frames of at most 10,000 entries (a frame is capped at 8 MiB).
            let list = super::verify::digests(&r.tree, &r.filter)?;
            let chunks: Vec<&[_]> = if list.is_empty() { vec![&[][..]] } else { list.chunks(10_000).collect() };
            let n = chunks.len();
            for (i, chunk) in chunks.into_iter().enumerate() {
                let mut buf = Vec::new();
                tx.seal(&ToSecondary::Digests { list: chunk.to_vec(), last: i + 1 == n }, &mut buf);
                std::io::Write::write_all(&mut stream, &buf).map_err(|e| e.to_string())?;
            }
            return Ok(());
        }
        _ => return Err("the secondary did not start with Hello".into()),
    };
    if r.role() != LocalRole::Primary {
        return Err(format!("{node} asked for a reintegration but this node is not primary"));
    }
    let merged = lock(&r.dirty).merge(&dirty, r.link.next_seq()).map_err(|e| format!("dirty map: {e}"))?;
    let epoch = r.ordered(|| -> Result<u64, String> {
        let epoch = r.link.install(stream, (tx, rx), reader).map_err(|e| e.to_string())?;
        r.link.send(&ToSecondary::Welcome);
        Ok(epoch)
    })?;
    (hooks.log)(
        LogLevel::E,
        format!(
            "Secondary {node} connected: {} reintegration{}",
            if full { "full" } else { "zone" },
            if merged > 0 { format!(" (+{merged} entries it may hold differently)") } else { String::new() }
        ),
    );
    match reint::run(r, epoch, full, s.reint, &node) {
        Ok(stats) => {
            r.link.set_mirror(epoch);
            r.link.send(&ToSecondary::Reintegrated { stats: stats.clone() });
            (hooks.log)(LogLevel::E, stats);
            Ok(())
        }
        Err(reason) => {
            r.link.send(&ToSecondary::ReintegrationFailed { reason: reason.clone() });
            Err(format!("reintegration failed: {reason}"))
        }
    }
}

/// A blocking task that panicked or was cancelled.
fn joined(e: tokio::task::JoinError) -> ServiceError {
    ServiceError::Failed(format!("replication task ended abnormally: {e}"))
}

#[async_trait]
impl Replicator for LinuxReplicator {
    async fn start(&self, role: ReplicaRole) -> Result<(), ServiceError> {
        let me = self.clone_handle();
        Ok(tokio::task::spawn_blocking(move || me.start_blocking(role)).await.map_err(joined)??)
    }

    async fn drop_secondary(&self) {
        let replicas: Vec<Arc<Replica>> = lock(&self.h.inner).mounts.iter().map(|m| m.replica.clone()).collect();
        for r in replicas {
            r.link.drop_current("dropped: the secondary is not heard");
        }
    }

    async fn stop(&self) {
        // Writes waiting for a lease or for the engine fail now: this node
        // stops being primary.
        if let Some(g) = &self.h.s.lease_gate {
            g.close();
        }
        self.h.gate.set_closed(true);
        let me = self.clone_handle();
        let _ = tokio::task::spawn_blocking(move || {
            me.stop_listening();
            for c in std::mem::take(&mut lock(&me.inner).upstream) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
            me.unmount_all();
        })
        .await;
    }

    async fn reintegrate(&self, mode: SyncMode) -> Result<(), ServiceError> {
        let me = self.clone_handle();
        Ok(tokio::task::spawn_blocking(move || me.reintegrate_blocking(mode)).await.map_err(joined)??)
    }

    async fn verify(&self) -> Result<Vec<String>, ServiceError> {
        let h = self.clone_handle();
        Ok(tokio::task::spawn_blocking(move || h.verify()).await.map_err(joined)??)
    }

    async fn quarantine(&self) -> Result<Vec<String>, ServiceError> {
        let h = self.clone_handle();
        Ok(tokio::task::spawn_blocking(move || {
            let stamp = crate::clock::file_stamp(std::time::SystemTime::now());
            let mounts: Vec<(Arc<Replica>, PathBuf)> = lock(&h.inner).mounts.iter().map(|m| (m.replica.clone(), m.dir.clone())).collect();
            let mut lines = Vec::new();
            for (r, dir) in mounts {
                lines.extend(super::quarantine::keep_aside(&r, &dir, &stamp)?);
            }
            Ok::<_, String>(lines)
        })
        .await
        .map_err(joined)??)
    }

    fn resources(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let refused = self.h.refused.load(Ordering::Relaxed);
        if refused > 0 {
            out.push(("rfs.refused_connections".into(), refused.to_string()));
        }
        let notes: Vec<String> = self.h.s.dirs.iter().filter_map(|d| super::quarantine::describe(Path::new(&d.dir))).collect();
        if !notes.is_empty() {
            out.push(("rfs.quarantine".into(), notes.join("; ")));
        }
        let reads: Vec<String> =
            lock(&self.h.inner).mounts.iter().map(|m| format!("{}: {}", m.dir.display(), m.stats.describe())).collect();
        if !reads.is_empty() {
            out.push(("rfs.reads".into(), reads.join("; ")));
        }
        out
    }

    fn stats(&self) -> Option<crate::services::ReplicationStats> {
        let inner = lock(&self.h.inner);
        if inner.mounts.is_empty() {
            return None;
        }
        let mut out = crate::services::ReplicationStats::default();
        for m in &inner.mounts {
            let s = m.replica.link.stats();
            out.bytes_sent += s.bytes;
            out.ops_sent += s.frames;
            out.inflight_bytes += s.in_flight;
            out.lag_micros = out.lag_micros.max(u64::try_from(s.lag.as_micros()).unwrap_or(u64::MAX));
            out.ops_applied += m.replica.applied_frames.load(Ordering::Relaxed);
        }
        Some(out)
    }

    fn estimate(&self) -> Vec<String> {
        self.h.estimate().into_iter().map(|(dir, n, bytes)| format!("{dir}: {n} modified entries, at most {bytes} bytes to copy")).collect()
    }

    fn unreplicated_writes(&self, word: UnreplicatedWrites) {
        self.h.gate.set(word);
    }

    async fn next_event(&self) -> ReplicationEvent {
        match self.events.lock().await.recv().await {
            Some(e) => e,
            None => std::future::pending().await,
        }
    }
}

/// The parts of a [`LinuxReplicator`] blocking code needs (shared handles).
#[derive(Clone)]
struct Handle {
    s: Settings,
    hooks: Hooks,
    inner: Arc<Mutex<Inner>>,
    gate: Arc<super::gate::WriteGate>,
    /// Connections to the replication port refused (not the peer, or too
    /// many unauthenticated at once).
    refused: Arc<std::sync::atomic::AtomicU64>,
    /// Mount the FUSE file system over each directory. Off only in the
    /// rootless tests, which write through [`Replica::mutate`] themselves.
    mount: bool,
}

impl LinuxReplicator {
    fn clone_handle(&self) -> Handle {
        self.h.clone()
    }
}

impl Handle {
    fn start_blocking(&self, role: ReplicaRole) -> Result<(), String> {
        self.mount_all(role == ReplicaRole::Primary)?;
        let replicas: Vec<(Arc<Replica>, bool)> = {
            let inner = lock(&self.inner);
            inner.mounts.iter().zip(&self.s.dirs).map(|(m, d)| (m.replica.clone(), d.read_only)).collect()
        };
        for (r, ro) in &replicas {
            match role {
                ReplicaRole::Primary => {
                    if let Some(g) = &self.s.lease_gate {
                        g.reopen();
                    }
                    self.gate.set_closed(false);
                    r.set_role(LocalRole::Primary);
                    if !r.link.connected() {
                        lock(&r.dirty).secondary_gone();
                    }
                }
                ReplicaRole::Secondary => {
                    r.link.drop_current("this node is now secondary");
                    r.set_role(if *ro { LocalRole::ReadOnly } else { LocalRole::Unreplicated });
                }
            }
        }
        match role {
            ReplicaRole::Primary => self.listen(),
            ReplicaRole::Secondary => {
                self.stop_listening();
                Ok(())
            }
        }
    }

    fn reintegrate_blocking(&self, mode: SyncMode) -> Result<(), String> {
        let replicas: Vec<Arc<Replica>> = lock(&self.inner).mounts.iter().map(|m| m.replica.clone()).collect();
        if replicas.is_empty() {
            return Err("the replicated directories are not mounted".into());
        }
        for c in std::mem::take(&mut lock(&self.inner).upstream) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        (self.hooks.log)(LogLevel::E, format!("Updating directory tree from {}", self.s.peer));
        let mut waits = Vec::new();
        for (i, r) in replicas.iter().enumerate() {
            let (done_tx, done_rx) = mpsc::channel();
            let (r, up, patience) = (r.clone(), self.upstream(i), self.s.reint.timeout);
            let full = mode == SyncMode::Full;
            let inner = self.inner.clone();
            std::thread::Builder::new()
                .name("rfs-secondary".into())
                .spawn(move || secondary::serve(r, up, full, patience, done_tx, move |c| lock(&inner).upstream.push(c)))
                .map_err(|e| e.to_string())?;
            waits.push(done_rx);
        }
        let mut result = Ok(());
        for done in waits {
            let outcome = done.recv().unwrap_or_else(|_| Err("the replication thread ended".into()));
            match outcome {
                Ok(stats) => (self.hooks.log)(LogLevel::E, stats),
                Err(e) => result = Err(e),
            }
        }
        result
    }
}
