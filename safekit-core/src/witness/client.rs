//! A node's side of the lease witness: the write gate the replicated file
//! system consults, the client that asks the witness, and the keeper task
//! that holds the lease while the module is ALONE.
//!
//! The lease matters only while a node writes without its peer: a PRIM
//! with a connected secondary replicates every write synchronously, so a
//! witness outage does not stop a healthy pair. An unreplicated write (the
//! node is ALONE, or its link just dropped) is admitted only while the node
//! holds a lease that the witness knows is ALONE; otherwise it waits. A
//! keeper that cannot renew sets `splitbrain.lease` down, whose wait rule
//! (`lease_failure`) takes the module out of the primary role.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::{open, seal, Answer, Ask, Request, Verdict, MAX_DATAGRAM};
use crate::engine::{Input, LogLevel, ResourceState, State};
use crate::key::ClusterKey;
use crate::runtime::ModuleReport;

/// The resource the keeper sets and `lease_failure` waits on.
pub const RESOURCE: &str = crate::engine::LEASE_RESOURCE;

#[derive(Debug, Default)]
struct GateState {
    /// The lease ends (by this node's clock, margin taken) at.
    valid_until: Option<Instant>,
    /// The witness knows this node writes alone.
    alone_confirmed: bool,
    /// An unreplicated write waits for that confirmation.
    alone_wanted: bool,
    /// The module is not primary: waiting writes fail.
    closed: bool,
}

/// Admits replicated-directory writes (see the module documentation).
#[derive(Debug, Default)]
pub struct LeaseGate {
    state: Mutex<GateState>,
    cv: Condvar,
}

impl LeaseGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Blocks until a write may proceed: at once if it is `replicated`,
    /// else once the lease is valid and known ALONE. False if the gate
    /// closes meanwhile (the write must fail, unapplied).
    pub fn admit(&self, replicated: bool) -> bool {
        if replicated {
            return true;
        }
        let mut s = self.lock();
        loop {
            if s.closed {
                return false;
            }
            if s.alone_confirmed && s.valid_until.is_some_and(|u| Instant::now() < u) {
                return true;
            }
            s.alone_wanted = true;
            s = self.cv.wait_timeout(s, Duration::from_millis(50)).map_or_else(|e| e.into_inner().0, |(g, _)| g);
        }
    }

    /// The witness granted the lease until `until` (already shortened by
    /// the margin); `alone`: it knows this node writes alone.
    pub fn grant(&self, until: Instant, alone: bool) {
        let mut s = self.lock();
        s.valid_until = Some(until);
        s.alone_confirmed = alone;
        if alone {
            s.alone_wanted = false;
        }
        self.cv.notify_all();
    }

    /// The lease is gone (released or lost).
    pub fn clear(&self) {
        let mut s = self.lock();
        s.valid_until = None;
        s.alone_confirmed = false;
    }

    /// The module stopped being primary: waiting writes fail.
    pub fn close(&self) {
        self.lock().closed = true;
        self.cv.notify_all();
    }

    /// The module is primary again.
    pub fn reopen(&self) {
        self.lock().closed = false;
    }

    fn wants_alone(&self) -> bool {
        let s = self.lock();
        s.alone_wanted && !s.alone_confirmed
    }

    fn valid(&self) -> bool {
        self.lock().valid_until.is_some_and(|u| Instant::now() < u)
    }

    fn holds(&self) -> bool {
        self.lock().valid_until.is_some()
    }
}

/// Talks to one witness for one module of this node.
pub struct LeaseClient {
    /// `host:port`.
    pub witness: String,
    key: ClusterKey,
    module: u16,
    node: String,
    incarnation: u64,
    seq: AtomicU64,
    /// Lease duration asked for.
    pub lease: Duration,
    /// The gate this client's grants open.
    pub gate: Arc<LeaseGate>,
}

impl LeaseClient {
    /// A client of `witness` (`host:port`) for `module` on `node`.
    pub fn new(witness: String, key: ClusterKey, module: u16, node: String, lease: Duration) -> Self {
        let incarnation = u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_micros())
            .unwrap_or(u64::MAX);
        Self { witness, key, module, node, incarnation, seq: AtomicU64::new(0), lease, gate: Arc::new(LeaseGate::default()) }
    }

    /// Margin the holder takes off its lease: clock rate slack and the
    /// time between the check and the write.
    fn margin(&self) -> Duration {
        self.lease / 10 + Duration::from_millis(50)
    }

    /// One request, two tries; the answer and when the request was sent.
    async fn ask(&self, ask: Ask, version: (u64, u64)) -> Option<(Answer, Instant)> {
        let addr: SocketAddr = tokio::net::lookup_host(&self.witness).await.ok()?.next()?;
        let bind: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
        let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
        let wait = (self.lease / 4).clamp(Duration::from_millis(100), Duration::from_millis(500));
        for _ in 0..2 {
            let mut nonce = [0u8; 16];
            getrandom::fill(&mut nonce).ok()?;
            let req = Request {
                module: self.module,
                node: self.node.clone(),
                incarnation: self.incarnation,
                seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
                nonce,
                version,
                ask: ask.clone(),
            };
            let sent = Instant::now();
            sock.send_to(&seal(&self.key, &req), addr).await.ok()?;
            let mut buf = vec![0u8; MAX_DATAGRAM + 1];
            let deadline = tokio::time::Instant::now() + wait;
            while let Ok(Ok((n, from))) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
                if from != addr {
                    continue;
                }
                if let Ok(a) = open::<Answer>(&self.key, &buf[..n]) {
                    if a.nonce == nonce {
                        return Some((a, sent));
                    }
                }
            }
        }
        None
    }

    /// Asks for (or renews) the lease; on a grant the gate opens until the
    /// lease ends by this node's clock.
    pub async fn acquire(&self, alone: bool, version: (u64, u64)) -> Option<Answer> {
        let lease_ms = u32::try_from(self.lease.as_millis()).unwrap_or(u32::MAX);
        let (a, sent) = self.ask(Ask::Acquire { lease_ms, alone }, version).await?;
        if a.verdict == Verdict::Granted {
            self.gate.grant(sent + self.lease.saturating_sub(self.margin()), alone);
        }
        Some(a)
    }

    /// Gives the lease up (the other node may take over at once); also a
    /// probe: true if the witness answered.
    pub async fn release(&self, version: (u64, u64)) -> bool {
        self.gate.clear();
        self.ask(Ask::Release, version).await.is_some()
    }

    /// For a node about to go ALONE without hearing its peer: asks until
    /// granted, for at most one lease duration and a half (a dead holder's
    /// lease ends within one). Ok(()) or why not.
    pub async fn acquire_patiently(&self, version: (u64, u64)) -> Result<(), String> {
        let end = tokio::time::Instant::now() + self.lease + self.lease / 2 + Duration::from_millis(200);
        let mut last = "the lease witness does not answer".to_string();
        while tokio::time::Instant::now() < end {
            match self.acquire(true, version).await {
                Some(a) if a.verdict == Verdict::Granted => return Ok(()),
                Some(a) if a.verdict == Verdict::Stale => {
                    return Err(format!("node {} wrote alone since this node's data: only prim may start this node", a.holder));
                }
                Some(a) => {
                    last = format!("node {} holds the lease", a.holder);
                    let wait = Duration::from_millis(u64::from(a.remaining_ms)).clamp(Duration::from_millis(20), self.lease);
                    tokio::time::sleep(wait.min(end.saturating_duration_since(tokio::time::Instant::now()))).await;
                }
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        Err(last)
    }
}

/// The data version a module reports ((0, 0) for one that replicates nothing).
pub fn version_of(report: &ModuleReport) -> (u64, u64) {
    report.data_version.unwrap_or((0, 0))
}

/// Holds the lease while the module is ALONE, tells the witness when it is
/// paired again (PRIM), gives it up otherwise; sets [`RESOURCE`].
pub fn spawn_keeper(
    client: Arc<LeaseClient>,
    report: watch::Receiver<ModuleReport>,
    inputs: mpsc::Sender<Input>,
    log: Arc<dyn crate::services::LogSink>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let set = |state: ResourceState| {
            let inputs = inputs.clone();
            async move {
                let _ = inputs.send(Input::Resource { name: RESOURCE.into(), state, by: "leasewitness".into() }).await;
            }
        };
        set(ResourceState::Up).await;
        let mut resource = ResourceState::Up;
        let mut next_renew = tokio::time::Instant::now();
        let mut paired_told = false;
        let mut last_branch = State::Stop;
        let mut complaint: Option<String> = None;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (status, version) = {
                let r = report.borrow();
                (r.status, version_of(&r))
            };
            let now = tokio::time::Instant::now();
            // A PRIM whose link just dropped has writes waiting for an ALONE lease too.
            let lone = status.state == State::Alone || (status.state == State::Prim && client.gate.wants_alone());
            // As this loop treats it: a PRIM with writes still waiting for an
            // ALONE lease counts as ALONE, and becomes "paired" only when
            // they are gone (else the witness heard of the pairing a third
            // of a lease late, and a failover meanwhile was refused as stale).
            let branch = if lone { State::Alone } else { status.state };
            let just_paired = branch == State::Prim && last_branch != State::Prim;
            last_branch = branch;
            match branch {
                State::Alone => {
                    paired_told = false;
                    if now < next_renew && !client.gate.wants_alone() {
                        continue;
                    }
                    next_renew = now + client.lease / 3;
                    let why = match client.acquire(true, version).await {
                        Some(a) if a.verdict == Verdict::Granted => None,
                        Some(a) if a.verdict == Verdict::Stale => Some(format!("node {} wrote alone since this node's data", a.holder)),
                        Some(a) => Some(format!("node {} holds it", a.holder)),
                        None => Some(format!("the witness {} does not answer", client.witness)),
                    };
                    match why {
                        None => {
                            if complaint.take().is_some() {
                                log.write("lease", LogLevel::E, "Lease renewed");
                            }
                        }
                        Some(w) => {
                            if complaint.as_ref() != Some(&w) {
                                log.write("lease", LogLevel::E, &format!("Lease not renewed: {w}"));
                                complaint = Some(w);
                            }
                            next_renew = now + Duration::from_millis(100);
                            if !client.gate.valid() && resource != ResourceState::Down {
                                // Writes waiting for the lease fail now, so the
                                // application's stop does not wait for them.
                                client.gate.close();
                                log.write(
                                    "lease",
                                    LogLevel::C,
                                    "Lease lost: writes the secondary does not have fail until this node is primary again",
                                );
                                resource = ResourceState::Down;
                                set(resource).await;
                            }
                        }
                    }
                }
                State::Prim => {
                    // Paired again: the witness must stop counting this node as
                    // a lone writer at once (else a failover right now would be
                    // refused as stale), then retried every third of a lease.
                    if !paired_told && (now >= next_renew || just_paired) {
                        next_renew = now + client.lease / 3;
                        paired_told = client.acquire(false, version).await.is_some_and(|a| a.verdict == Verdict::Granted);
                        if paired_told {
                            log.write("lease", LogLevel::E, "Paired again: the lease witness no longer counts this node as writing alone");
                        }
                    }
                }
                _ => {
                    paired_told = false;
                    if client.gate.holds() {
                        client.release(version).await;
                    }
                    // Out of the primary role: the lease is no reason to wait,
                    // once the witness can be reached again.
                    if resource == ResourceState::Down && now >= next_renew {
                        next_renew = now + client.lease / 3;
                        if client.release(version).await {
                            resource = ResourceState::Up;
                            set(resource).await;
                        }
                    }
                }
            }
        }
    })
}

#[async_trait::async_trait]
impl crate::services::Witness for LeaseClient {
    /// This node may go on alone only holding the lease.
    async fn allow_alone(&self, version: (u64, u64)) -> Result<(), crate::services::ServiceError> {
        self.acquire_patiently(version)
            .await
            .map_err(|why| crate::services::ServiceError::Refused(format!("Lease witness {}: {why}", self.witness)))
    }
}
