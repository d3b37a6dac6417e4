//! Replication without root: two [`LinuxReplicator`]s in this process,
//! each over its own temporary directory (no FUSE mount), joined by the
//! real protocol over loopback TCP. The primary's "application" writes
//! through [`Replica::mutate`] and [`Replica::sync_point`], the calls the
//! FUSE layer makes, so the dirty map, the link, the secondary and the
//! reintegration are the daemon's own code. Faults are scripted: the link
//! dropped, the secondary restarted, a reintegration interrupted. Each
//! scenario ends with both trees identical (compared directly and through
//! `rfsverify`) and the primary's dirty map empty once the secondary made
//! everything durable.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::filter::Filter;
use super::reint::ReintOptions;
use super::replica::Mark;
use super::replica::Replica;
use super::service::{LinuxReplicator, Settings};
use super::tree::split;
use super::verify::digests;
use super::wire::Op;
use crate::config::Replicated;
use crate::engine::{ReplicaRole, SyncMode, UnreplicatedWrites};
use crate::key::ClusterKey;
use crate::services::Replicator;

const MTIME: (i64, u32) = (1_700_000_000, 0);

/// One node: its directory, its state directory and its replicator.
struct Node {
    dir: PathBuf,
    rep: LinuxReplicator,
}

struct Pair {
    root: PathBuf,
    port: u16,
    primary: Node,
    secondary: Node,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

fn settings(root: &Path, name: &str, listen: SocketAddr, peer: SocketAddr, bandwidth: Option<u64>) -> Settings {
    let dir = root.join(name).join("data");
    std::fs::create_dir_all(&dir).expect("data directory");
    Settings {
        module: 1,
        node: name.into(),
        key: ClusterKey::new([7; 32]),
        listen,
        peer,
        disk_ack: false,
        zone: 4096,
        lock_timeout: Duration::from_secs(10),
        send_timeout: Duration::from_secs(10),
        reint: ReintOptions { workers: 2, bandwidth, timeout: Duration::from_secs(10) },
        state_dir: root.join(name).join("var"),
        dirs: vec![Replicated {
            dir: dir.to_string_lossy().into_owned(),
            read_only: false,
            tocheck: Vec::new(),
            notreplicated: Vec::new(),
        }],
        lease_gate: None,
    }
}

impl Pair {
    /// `bandwidth`: the primary's reintegration cap (reiallowedbw).
    fn new(test: &str, bandwidth: Option<u64>) -> Self {
        let root = std::env::temp_dir().join(format!("safekit-harness-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let port = free_port();
        let primary = Self::node(&root, "node1", port, bandwidth);
        let secondary = Self::node(&root, "node2", port, None);
        Self { root, port, primary, secondary }
    }

    fn node(root: &Path, name: &str, port: u16, bandwidth: Option<u64>) -> Node {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let s = settings(root, name, addr, addr, bandwidth);
        let dir = PathBuf::from(&s.dirs[0].dir);
        Node { dir, rep: LinuxReplicator::unmounted(s, Arc::new(|_, _| {})) }
    }

    /// The secondary's process ends and a new one starts on the same
    /// directories (its dirty map is on disk).
    async fn restart_secondary(&mut self) {
        self.secondary.rep.stop().await;
        self.secondary = Self::node(&self.root, "node2", self.port, None);
        self.secondary.rep.start(ReplicaRole::Secondary).await.expect("secondary starts");
    }

    async fn start(&self) {
        self.primary.rep.start(ReplicaRole::Primary).await.expect("primary starts");
        // The engine's word for this test: ALONE, writes without the
        // secondary are acknowledged.
        self.primary.rep.unreplicated_writes(UnreplicatedWrites::Admit);
        self.secondary.rep.start(ReplicaRole::Secondary).await.expect("secondary starts");
    }

    fn app(&self) -> Arc<Replica> {
        self.primary.rep.replicas().remove(0)
    }

    /// The secondary copies what changed and follows the stream.
    async fn reintegrate(&self, mode: SyncMode) {
        tokio::time::timeout(Duration::from_secs(60), self.secondary.rep.reintegrate(mode))
            .await
            .expect("the reintegration ends within 60 s")
            .expect("the reintegration succeeds");
    }

    /// Both trees hold the same entries with the same content and
    /// attributes, `rfsverify` agrees, and the primary's dirty map empties.
    async fn assert_in_sync(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let app = self.app();
        loop {
            let p = digests(&app.tree, &Filter::new(&[]).unwrap()).unwrap();
            let s = digests(&self.secondary.rep.replicas()[0].tree, &Filter::new(&[]).unwrap()).unwrap();
            let dirty = app.dirty.lock().unwrap().len();
            if p == s && dirty == 0 {
                break;
            }
            let differ: Vec<String> = p
                .iter()
                .filter(|e| !s.contains(e))
                .chain(s.iter().filter(|e| !p.contains(e)))
                .map(|e| format!("{} {:?}", String::from_utf8_lossy(&e.0), e.1))
                .collect();
            assert!(Instant::now() < deadline, "{what}: not in sync after 30 s: dirty map holds {dirty}, differing: {differ:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let diffs = Replicator::verify(&self.secondary.rep).await.expect("rfsverify runs");
        assert!(diffs.is_empty(), "{what}: rfsverify finds differences: {diffs:?}");
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn ids() -> (u32, u32) {
    (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw())
}

/// What the FUSE layer does for each call: mark, apply here, send the
/// change and, after a change of names, the times it left on the
/// directories and entries involved (`touched`).
fn act(r: &Replica, marks: &[Mark<'_>], op: Op, touched: &[&[u8]]) {
    r.mutate(marks, || {
        r.tree.apply(&op)?;
        Ok(((), std::iter::once(op.clone()).chain(touched.iter().filter_map(|p| r.tree.times(p))).collect::<Vec<_>>()))
    })
    .expect("the write is accepted");
}

fn mkdir(r: &Replica, path: &str) {
    let (uid, gid) = ids();
    let p = path.as_bytes();
    act(r, &[Mark::Dir(split(p).0), Mark::Meta(p)], Op::Mkdir { path: p.to_vec(), mode: 0o755, uid, gid }, &[split(p).0, p]);
}

fn write(r: &Replica, path: &str, off: u64, data: &[u8]) {
    let (uid, gid) = ids();
    let p = path.as_bytes();
    if r.tree.stat(p).is_err() {
        let create = Op::Create { path: p.to_vec(), mode: 0o100_644, uid, gid };
        act(r, &[Mark::Dir(split(p).0), Mark::Meta(p), Mark::Whole(p)], create, &[split(p).0, p]);
    }
    act(r, &[Mark::Zones(p, off, data.len() as u64)], Op::Write { path: p.to_vec(), off, data: data.to_vec(), mtime: MTIME }, &[]);
}

fn unlink(r: &Replica, path: &str) {
    let p = path.as_bytes();
    act(r, &[Mark::Dir(split(p).0)], Op::Unlink { path: p.to_vec() }, &[split(p).0]);
}

fn rename(r: &Replica, from: &str, to: &str) {
    let (f, t) = (from.as_bytes(), to.as_bytes());
    let op = Op::Rename { from: f.to_vec(), to: t.to_vec(), flags: 0 };
    act(r, &[Mark::Dir(split(f).0), Mark::Dir(split(t).0), Mark::Meta(t), Mark::Whole(t)], op, &[split(f).0, split(t).0, t]);
}

/// A mix of the application's work: files written in several places, a
/// directory, a rename and a removal; `round` varies the content.
fn workload(r: &Replica, round: u8) {
    mkdir_if_missing(r, "db");
    for i in 0..20u8 {
        let data = vec![round.wrapping_mul(31).wrapping_add(i); 6000];
        write(r, &format!("db/table{i}"), u64::from(i) * 1000, &data);
    }
    write(r, "db/log", 0, format!("round {round}\n").as_bytes());
    rename(r, "db/log", &format!("db/log.{round}"));
    if round > 0 {
        unlink(r, &format!("db/log.{}", round - 1));
    }
}

fn mkdir_if_missing(r: &Replica, path: &str) {
    if r.tree.stat(path.as_bytes()).is_err() {
        mkdir(r, path);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

#[test]
fn writes_reach_the_secondary_and_a_sync_point_waits_for_it() {
    runtime().block_on(async {
        let pair = Pair::new("sync", None);
        pair.start().await;
        let app = pair.app();
        workload(&app, 0);
        pair.reintegrate(SyncMode::Zones).await;
        assert!(app.link.connected(), "the secondary follows the stream after its reintegration");
        workload(&app, 1);
        write(&app, "db/acked", 0, b"acknowledged");
        assert!(app.sync_point(Some(b"db/acked")), "fsync returns once the secondary holds the write");
        let on_secondary = std::fs::read(pair.secondary.dir.join("db/acked")).expect("the acknowledged file is on the secondary");
        assert_eq!(on_secondary, b"acknowledged", "what fsync acknowledged is on the secondary when it returns");
        pair.assert_in_sync("after live replication").await;
        // The counters the metrics show: the primary sent at least the
        // acknowledged bytes, and after the sync point nothing it sent
        // before is waiting; the secondary applied what it received.
        let sent = Replicator::stats(&pair.primary.rep).expect("a replicating module has counters");
        assert!(sent.bytes_sent >= 12 && sent.ops_sent > 0, "{sent:?}");
        let applied = Replicator::stats(&pair.secondary.rep).expect("counters on the secondary too");
        assert!(applied.ops_applied > 0, "{applied:?}");
        assert_eq!((applied.bytes_sent, applied.ops_sent), (0, 0), "a secondary sends no stream: {applied:?}");
    });
}

#[test]
fn a_dropped_link_is_caught_up_by_the_next_reintegration() {
    runtime().block_on(async {
        let pair = Pair::new("drop", None);
        pair.start().await;
        let app = pair.app();
        workload(&app, 0);
        pair.reintegrate(SyncMode::Zones).await;
        app.link.drop_current("test: cable cut");
        assert!(!app.link.connected());
        // The primary goes on alone; the dirty map names what changed.
        workload(&app, 1);
        workload(&app, 2);
        assert!(!app.dirty.lock().unwrap().is_empty(), "changes made alone are recorded");
        pair.reintegrate(SyncMode::Zones).await;
        pair.assert_in_sync("after the link came back").await;
    });
}

#[test]
fn a_restarted_secondary_catches_up() {
    runtime().block_on(async {
        let mut pair = Pair::new("restart", None);
        pair.start().await;
        let app = pair.app();
        workload(&app, 0);
        pair.reintegrate(SyncMode::Zones).await;
        workload(&app, 1);
        pair.restart_secondary().await;
        workload(&app, 2);
        pair.reintegrate(SyncMode::Zones).await;
        pair.assert_in_sync("after the secondary restarted").await;
    });
}

#[test]
fn an_interrupted_reintegration_is_finished_by_the_next_one() {
    runtime().block_on(async {
        // 8 MB/s: the 16 MB written alone take two seconds to copy.
        let pair = Pair::new("interrupt", Some(8 << 20));
        pair.start().await;
        let app = pair.app();
        workload(&app, 0);
        pair.reintegrate(SyncMode::Zones).await;
        app.link.drop_current("test: cable cut");
        mkdir(&app, "big");
        for i in 0..64u8 {
            write(&app, &format!("big/f{i}"), 0, &vec![i; 256 * 1024]);
        }
        let reint = pair.secondary.rep.reintegrate(SyncMode::Zones);
        let cut = async {
            // Once the copy has begun, cut the secondary off.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !app.link.connected() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            app.link.drop_current("test: cut during the reintegration");
        };
        let (first, ()) = tokio::join!(reint, cut);
        assert!(first.is_err(), "the reintegration was cut off, so it must report a failure");
        assert!(!app.dirty.lock().unwrap().is_empty(), "what was not copied yet stays in the dirty map");
        workload(&app, 1);
        pair.reintegrate(SyncMode::Zones).await;
        pair.assert_in_sync("after an interrupted reintegration").await;
    });
}
