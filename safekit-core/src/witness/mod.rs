//! The lease witness (`safekit witness`): a tiny service on a third machine
//! that grants one node at a time a time-bounded lease to be primary of a
//! module. Beyond SafeKit's ping witness, which only tells each node
//! whether it can reach a third address (so an asymmetric partition can
//! still leave two primaries), a lease is exclusive:
//!
//! * the primary renews its lease every third of its duration; a node may
//!   go ALONE without its peer only once it holds the lease;
//! * the holder counts its lease from the moment it *sent* the request, the
//!   witness from the moment it *received* it, minus/plus a margin: the
//!   holder always believes its lease ends before the witness does, so the
//!   witness grants the other node only after the holder stopped writing;
//! * a holder writing ALONE says so (with its data generation) before its
//!   first unreplicated write is acknowledged; the witness then refuses the
//!   lease to the other node, whose data is older, even after the holder
//!   died: an automatic failover never loses what the lone primary
//!   acknowledged (an administrator's `prim` starts a newer epoch and wins).
//!
//! Datagrams are UDP, postcard-encoded and authenticated with HMAC-SHA256
//! under the cluster key; each node's requests carry (incarnation, seq),
//! which must grow, so a replayed request cannot extend a dead node's lease.
//! This module is pure (no sockets, no clock): [`LeaseBook`] decides;
//! [`server`] and [`client`] do the I/O.

pub mod client;
pub mod server;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hmac::Mac;
use serde::{Deserialize, Serialize};

use crate::key::ClusterKey;

const MAGIC: &[u8; 4] = b"SKLW";
const MAC_LEN: usize = 32;
/// No valid datagram is longer.
pub const MAX_DATAGRAM: usize = 512;

/// What a node asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ask {
    /// Grant or renew my lease for `lease`.
    Acquire {
        /// How long.
        lease_ms: u32,
        /// I write without a secondary (ALONE).
        alone: bool,
    },
    /// I stopped being primary: the other node may take over at once.
    Release,
}

/// A node's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Module id.
    pub module: u16,
    /// Node name.
    pub node: String,
    /// Grows at each daemon start.
    pub incarnation: u64,
    /// Grows with each request.
    pub seq: u64,
    /// Echoed in the answer.
    pub nonce: [u8; 16],
    /// The node's data currency (administrator epoch, generation).
    pub version: (u64, u64),
    /// What.
    pub ask: Ask,
}

/// The witness's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The lease is the requester's for the asked duration from now.
    Granted,
    /// Another node holds it for `remaining_ms` more.
    Held,
    /// The last holder wrote alone data newer than the requester's: only an
    /// administrator (`prim`, a new epoch) may start the requester.
    Stale,
    /// Released (answer to [`Ask::Release`]).
    Released,
}

/// The witness's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The request's nonce.
    pub nonce: [u8; 16],
    /// Verdict.
    pub verdict: Verdict,
    /// Until the current holder's lease ends (Held).
    pub remaining_ms: u32,
    /// The holder (Held, Stale).
    pub holder: String,
}

/// Why a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// Not ours, too short or too long.
    #[error("malformed datagram")]
    Malformed,
    /// Forged, corrupted or made with another cluster key.
    #[error("authentication failed")]
    BadMac,
}

/// Encodes and authenticates `msg`.
pub fn seal<T: Serialize>(key: &ClusterKey, msg: &T) -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    // Plain data with bounded strings: postcard cannot fail on it.
    b.extend(postcard::to_allocvec(msg).unwrap_or_default());
    let mut mac = key.mac();
    mac.update(&b);
    b.extend_from_slice(&mac.finalize().into_bytes());
    b
}

/// Authenticates and decodes a datagram.
pub fn open<T: for<'de> Deserialize<'de>>(key: &ClusterKey, data: &[u8]) -> Result<T, WitnessError> {
    if data.len() > MAX_DATAGRAM || data.len() < MAGIC.len() + MAC_LEN || &data[..4] != MAGIC {
        return Err(WitnessError::Malformed);
    }
    let (body, tag) = data.split_at(data.len() - MAC_LEN);
    let mut mac = key.mac();
    mac.update(body);
    mac.verify_slice(tag).map_err(|_| WitnessError::BadMac)?;
    postcard::from_bytes(&body[4..]).map_err(|_| WitnessError::Malformed)
}

/// One module's lease as the witness knows it.
#[derive(Debug, Clone)]
struct Lease {
    holder: String,
    until: Instant,
    /// The holder said it writes alone.
    alone: bool,
    /// The holder's newest reported data version.
    version: (u64, u64),
}

/// The witness's decisions, over time given by the caller.
#[derive(Debug, Default)]
pub struct LeaseBook {
    leases: HashMap<u16, Lease>,
    /// Last (incarnation, seq) accepted per (module, node).
    seen: HashMap<(u16, String), (u64, u64)>,
    /// The witness adds this to every lease it grants (the holder subtracts
    /// its own margin): slack for clock rate differences.
    pub margin: Duration,
}

impl LeaseBook {
    /// An empty book with `margin`.
    pub fn new(margin: Duration) -> Self {
        Self { margin, ..Self::default() }
    }

    /// Decides on `req` received at `now`; `None` for a replayed or old request.
    pub fn decide(&mut self, now: Instant, req: &Request) -> Option<Answer> {
        let key = (req.module, req.node.clone());
        let v = (req.incarnation, req.seq);
        if self.seen.get(&key).is_some_and(|last| v <= *last) {
            return None;
        }
        self.seen.insert(key, v);
        let answer = |verdict, remaining: Duration, holder: &str| Answer {
            nonce: req.nonce,
            verdict,
            remaining_ms: u32::try_from(remaining.as_millis()).unwrap_or(u32::MAX),
            holder: holder.to_string(),
        };
        let current = self.leases.get(&req.module).cloned();
        match &req.ask {
            Ask::Release => {
                if let Some(l) = self.leases.get_mut(&req.module).filter(|l| l.holder == req.node) {
                    // Kept (expired) so that what it wrote alone still counts.
                    l.until = now;
                }
                Some(answer(Verdict::Released, Duration::ZERO, &req.node))
            }
            Ask::Acquire { lease_ms, alone } => {
                if let Some(l) = current.as_ref().filter(|l| l.holder != req.node) {
                    if now < l.until {
                        return Some(answer(Verdict::Held, l.until - now, &l.holder));
                    }
                    if l.alone && req.version <= l.version {
                        return Some(answer(Verdict::Stale, Duration::ZERO, &l.holder));
                    }
                }
                let version = current.filter(|l| l.holder == req.node).map_or(req.version, |l| l.version.max(req.version));
                let until = now + Duration::from_millis(u64::from(*lease_ms)) + self.margin;
                self.leases.insert(req.module, Lease { holder: req.node.clone(), until, alone: *alone, version });
                Some(answer(Verdict::Granted, Duration::ZERO, &req.node))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(node: &str, seq: u64, version: (u64, u64), ask: Ask) -> Request {
        Request { module: 1, node: node.into(), incarnation: 5, seq, nonce: [seq as u8; 16], version, ask }
    }

    fn acquire(alone: bool) -> Ask {
        Ask::Acquire { lease_ms: 1000, alone }
    }

    #[test]
    fn one_holder_at_a_time_until_its_lease_ends() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut b = LeaseBook::new(Duration::from_millis(100));
        assert_eq!(b.decide(ms(0), &req("n1", 1, (1, 4), acquire(false))).unwrap().verdict, Verdict::Granted);
        let a = b.decide(ms(300), &req("n2", 1, (1, 4), acquire(true))).unwrap();
        assert_eq!((a.verdict, a.remaining_ms, a.holder.as_str()), (Verdict::Held, 800, "n1"));
        assert_eq!(b.decide(ms(400), &req("n1", 2, (1, 4), acquire(false))).unwrap().verdict, Verdict::Granted, "renewal");
        assert_eq!(b.decide(ms(1400), &req("n2", 2, (1, 4), acquire(true))).unwrap().verdict, Verdict::Held, "renewed until 1500");
        // n1 stops renewing (it died): n2's data is as new, n1 was not alone.
        assert_eq!(b.decide(ms(1500), &req("n2", 3, (1, 4), acquire(true))).unwrap().verdict, Verdict::Granted);
    }

    #[test]
    fn a_node_behind_a_lone_writer_is_stale_until_an_administrator_epoch() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut b = LeaseBook::new(Duration::ZERO);
        assert_eq!(b.decide(ms(0), &req("n1", 1, (1, 4), acquire(true))).unwrap().verdict, Verdict::Granted);
        // n1 wrote alone and died; n2 still has generation 4.
        let a = b.decide(ms(5000), &req("n2", 1, (1, 4), acquire(true))).unwrap();
        assert_eq!((a.verdict, a.holder.as_str()), (Verdict::Stale, "n1"));
        // An administrator's prim on n2 starts epoch 2.
        assert_eq!(b.decide(ms(5100), &req("n2", 2, (2, 0), acquire(true))).unwrap().verdict, Verdict::Granted);
        // A released lease keeps what the holder wrote alone.
        assert_eq!(b.decide(ms(5200), &req("n2", 3, (2, 0), Ask::Release)).unwrap().verdict, Verdict::Released);
        assert_eq!(b.decide(ms(5300), &req("n1", 2, (1, 9), acquire(false))).unwrap().verdict, Verdict::Stale);
    }

    #[test]
    fn replays_and_forgeries_are_refused() {
        let mut b = LeaseBook::new(Duration::ZERO);
        let now = Instant::now();
        let r = req("n1", 7, (1, 1), acquire(false));
        assert!(b.decide(now, &r).is_some());
        assert!(b.decide(now, &r).is_none(), "the same request twice");
        assert!(b.decide(now, &req("n1", 6, (1, 1), acquire(false))).is_none(), "an older one");
        let key = ClusterKey::new([3; 32]);
        let sealed = seal(&key, &r);
        assert_eq!(open::<Request>(&key, &sealed), Ok(r));
        assert_eq!(open::<Request>(&ClusterKey::new([4; 32]), &sealed), Err(WitnessError::BadMac));
        let mut flipped = sealed.clone();
        flipped[6] ^= 1;
        assert_eq!(open::<Request>(&key, &flipped), Err(WitnessError::BadMac));
        assert_eq!(open::<Request>(&key, &sealed[..20]), Err(WitnessError::Malformed));
        assert_eq!(open::<Answer>(&key, &vec![0; 600]), Err(WitnessError::Malformed));
    }
}
