//! The heartbeat datagram: a fixed binary layout authenticated with
//! HMAC-SHA256 under the cluster key. Pure code (no sockets), fuzzed.
//!
//! ```text
//! "SKHB" | version u8 | module id u16 | node len u8 | node | incarnation u64
//! | seq u64 | state u8 | readiness u8 | flags u16 | epoch u64 | gen u64
//! | last role u8 | heard incarnation u64 | heard seq u64
//! | resource count u8 | (name len u8 | name | state u8)*
//! | HMAC-SHA256 (32 bytes) over everything before it
//! ```
//! The resources are the sender's checker resources (`tcp.app`, ...) that
//! failover rules read as `remote.<class>.<id>`: at most
//! [`MAX_RESOURCES`], names of at most [`MAX_RESOURCE_NAME`] bytes, in
//! strictly increasing order (one encoding per heartbeat).
//! All integers big-endian. Anything else (short, long, forged, unknown
//! values) is refused with a [`WireError`] and counted by the receiver.

use hmac::Mac;

use crate::engine::{DataStatus, Heartbeat, Readiness, ResourceState, Role, State, Status, SwapKind};
use crate::key::ClusterKey;

const MAGIC: &[u8; 4] = b"SKHB";
const VERSION: u8 = 3;
const MAC_LEN: usize = 32;
/// Resources carried per heartbeat (the first ones in name order).
pub const MAX_RESOURCES: usize = 32;
/// Longest resource name carried.
pub const MAX_RESOURCE_NAME: usize = 64;
/// No valid heartbeat is longer (a 255-byte node name and all resources included).
pub const MAX_DATAGRAM: usize =
    4 + 1 + 2 + 1 + 255 + 8 + 8 + 1 + 1 + 2 + 8 + 8 + 1 + 16 + 1 + MAX_RESOURCES * (1 + MAX_RESOURCE_NAME + 1) + MAC_LEN;

/// Why a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than its fields.
    #[error("truncated datagram")]
    Truncated,
    /// Longer than any heartbeat can be.
    #[error("oversized datagram ({0} bytes)")]
    Oversized(usize),
    /// Not a heartbeat.
    #[error("bad magic")]
    BadMagic,
    /// A version this node does not speak.
    #[error("unsupported version {0}")]
    BadVersion(u8),
    /// Forged, corrupted, or made with another cluster key.
    #[error("authentication failed")]
    BadMac,
    /// A field with a value no sender produces.
    #[error("invalid field {0}")]
    BadField(&'static str),
    /// Authentic but for another module.
    #[error("heartbeat of module {0}")]
    OtherModule(u16),
}

fn state_code(s: State) -> u8 {
    match s {
        State::Stop => 0,
        State::Wait => 1,
        State::Alone => 2,
        State::Prim => 3,
        State::Second => 4,
        State::Up => 5,
    }
}

fn state_of(c: u8) -> Option<State> {
    Some(match c {
        0 => State::Stop,
        1 => State::Wait,
        2 => State::Alone,
        3 => State::Prim,
        4 => State::Second,
        5 => State::Up,
        _ => return None,
    })
}

const F_PRIMARY_ACTIVE: u16 = 1;
const F_UPTODATE: u16 = 1 << 1;
const F_PARTIAL: u16 = 1 << 2;
const F_UNCLEAN: u16 = 1 << 3;
const F_FAILOVER: u16 = 1 << 4;
const F_FULL_SYNC: u16 = 1 << 5;
const F_DEGRADED: u16 = 1 << 6;
const F_ALONE_AFTER_FAILOVER: u16 = 1 << 7;
const F_HANDING_OVER: u16 = 1 << 8;
const F_HEARS_PEER: u16 = 1 << 9;
const F_SWAP: u16 = 1 << 10;
const F_SWAP_NOSYNC: u16 = 1 << 11;
const F_WROTE_ALONE: u16 = 1 << 12;
/// The heard (incarnation, seq) pair is meaningful (else both are zero).
const F_HEARD: u16 = 1 << 13;
const F_KNOWN: u16 = (1 << 14) - 1;

/// Encodes `hb` of module `module` and authenticates it.
pub fn encode(key: &ClusterKey, module: u16, hb: &Heartbeat) -> Vec<u8> {
    let node = hb.node.as_bytes();
    let node = &node[..node.len().min(255)];
    let mut b = Vec::with_capacity(MAX_DATAGRAM);
    b.extend_from_slice(MAGIC);
    b.push(VERSION);
    b.extend_from_slice(&module.to_be_bytes());
    b.push(u8::try_from(node.len()).unwrap_or(255));
    b.extend_from_slice(node);
    b.extend_from_slice(&hb.incarnation.to_be_bytes());
    b.extend_from_slice(&hb.seq.to_be_bytes());
    b.push(state_code(hb.status.state));
    b.push(match hb.status.readiness {
        Readiness::NotReady => 0,
        Readiness::Transient => 1,
        Readiness::Ready => 2,
    });
    let d = &hb.data;
    let mut flags = 0u16;
    for (on, bit) in [
        (hb.primary_active, F_PRIMARY_ACTIVE),
        (d.uptodate, F_UPTODATE),
        (d.partial, F_PARTIAL),
        (d.unclean, F_UNCLEAN),
        (hb.failover, F_FAILOVER),
        (hb.full_sync_required, F_FULL_SYNC),
        (hb.degraded, F_DEGRADED),
        (hb.alone_after_failover, F_ALONE_AFTER_FAILOVER),
        (hb.handing_over, F_HANDING_OVER),
        (hb.hears_peer, F_HEARS_PEER),
        (hb.swap_request.is_some(), F_SWAP),
        (hb.swap_request == Some(SwapKind::NoSync), F_SWAP_NOSYNC),
        (d.wrote_alone, F_WROTE_ALONE),
        (hb.heard.is_some(), F_HEARD),
    ] {
        if on {
            flags |= bit;
        }
    }
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&d.epoch.to_be_bytes());
    b.extend_from_slice(&d.gen.to_be_bytes());
    b.push(match d.last_role {
        None => 0,
        Some(Role::Prim) => 1,
        Some(Role::Alone) => 2,
        Some(Role::AloneAfterFailover) => 3,
        Some(Role::Second) => 4,
    });
    let (hi, hs) = hb.heard.unwrap_or((0, 0));
    b.extend_from_slice(&hi.to_be_bytes());
    b.extend_from_slice(&hs.to_be_bytes());
    let carried: Vec<_> = hb.resources.iter().filter(|(k, _)| !k.is_empty() && k.len() <= MAX_RESOURCE_NAME).take(MAX_RESOURCES).collect();
    b.push(u8::try_from(carried.len()).unwrap_or(0));
    for (name, state) in carried {
        b.push(u8::try_from(name.len()).unwrap_or(0));
        b.extend_from_slice(name.as_bytes());
        b.push(resource_code(*state));
    }
    sign(key, b)
}

const fn resource_code(s: ResourceState) -> u8 {
    match s {
        ResourceState::Init => 0,
        ResourceState::Up => 1,
        ResourceState::Down => 2,
        ResourceState::Unknown => 3,
    }
}

/// Appends the HMAC of `body` (exposed so the fuzzer reaches the field parser).
pub fn sign(key: &ClusterKey, mut body: Vec<u8>) -> Vec<u8> {
    let mut mac = key.mac();
    mac.update(&body);
    body.extend_from_slice(&mac.finalize().into_bytes());
    body
}

/// A cursor that refuses to read past the end.
struct Cur<'a>(&'a [u8]);

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }
}

/// Authenticates and decodes a datagram of module `module`.
pub fn decode(key: &ClusterKey, module: u16, data: &[u8]) -> Result<Heartbeat, WireError> {
    if data.len() > MAX_DATAGRAM {
        return Err(WireError::Oversized(data.len()));
    }
    if data.len() < MAC_LEN + 4 {
        return Err(WireError::Truncated);
    }
    let (body, tag) = data.split_at(data.len() - MAC_LEN);
    if &body[..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    let mut mac = key.mac();
    mac.update(body);
    mac.verify_slice(tag).map_err(|_| WireError::BadMac)?;
    let mut c = Cur(&body[4..]);
    let version = c.u8()?;
    if version != VERSION {
        return Err(WireError::BadVersion(version));
    }
    let m = c.u16()?;
    if m != module {
        return Err(WireError::OtherModule(m));
    }
    let n = usize::from(c.u8()?);
    let node = std::str::from_utf8(c.take(n)?).map_err(|_| WireError::BadField("node"))?.to_string();
    let incarnation = c.u64()?;
    let seq = c.u64()?;
    let state = state_of(c.u8()?).ok_or(WireError::BadField("state"))?;
    let readiness = match c.u8()? {
        0 => Readiness::NotReady,
        1 => Readiness::Transient,
        2 => Readiness::Ready,
        _ => return Err(WireError::BadField("readiness")),
    };
    let flags = c.u16()?;
    if flags & !F_KNOWN != 0 || (flags & F_SWAP_NOSYNC != 0 && flags & F_SWAP == 0) {
        return Err(WireError::BadField("flags"));
    }
    let epoch = c.u64()?;
    let gen = c.u64()?;
    let last_role = match c.u8()? {
        0 => None,
        1 => Some(Role::Prim),
        2 => Some(Role::Alone),
        3 => Some(Role::AloneAfterFailover),
        4 => Some(Role::Second),
        _ => return Err(WireError::BadField("last role")),
    };
    let heard = (c.u64()?, c.u64()?);
    if flags & F_HEARD == 0 && heard != (0, 0) {
        return Err(WireError::BadField("heard"));
    }
    let count = usize::from(c.u8()?);
    if count > MAX_RESOURCES {
        return Err(WireError::BadField("resource count"));
    }
    let mut resources = std::collections::BTreeMap::new();
    let mut previous: Option<String> = None;
    for _ in 0..count {
        let n = usize::from(c.u8()?);
        if n == 0 || n > MAX_RESOURCE_NAME {
            return Err(WireError::BadField("resource name"));
        }
        let name = std::str::from_utf8(c.take(n)?).map_err(|_| WireError::BadField("resource name"))?.to_string();
        if previous.as_ref().is_some_and(|p| *p >= name) {
            return Err(WireError::BadField("resource order"));
        }
        let state = match c.u8()? {
            0 => ResourceState::Init,
            1 => ResourceState::Up,
            2 => ResourceState::Down,
            3 => ResourceState::Unknown,
            _ => return Err(WireError::BadField("resource state")),
        };
        previous = Some(name.clone());
        resources.insert(name, state);
    }
    if !c.0.is_empty() {
        return Err(WireError::BadField("trailing bytes"));
    }
    let f = |bit| flags & bit != 0;
    Ok(Heartbeat {
        node,
        incarnation,
        seq,
        status: Status::new(state, readiness),
        primary_active: f(F_PRIMARY_ACTIVE),
        data: DataStatus {
            epoch,
            gen,
            uptodate: f(F_UPTODATE),
            partial: f(F_PARTIAL),
            last_role,
            unclean: f(F_UNCLEAN),
            wrote_alone: f(F_WROTE_ALONE),
        },
        failover: f(F_FAILOVER),
        full_sync_required: f(F_FULL_SYNC),
        degraded: f(F_DEGRADED),
        alone_after_failover: f(F_ALONE_AFTER_FAILOVER),
        swap_request: if f(F_SWAP) { Some(if f(F_SWAP_NOSYNC) { SwapKind::NoSync } else { SwapKind::Sync }) } else { None },
        handing_over: f(F_HANDING_OVER),
        hears_peer: f(F_HEARS_PEER),
        resources,
        heard: f(F_HEARD).then_some(heard),
    })
}

/// Drops replayed heartbeats: on each network, (incarnation, seq) must grow.
/// A replay could otherwise keep a dead peer looking alive and block failover.
#[derive(Debug, Clone, Default)]
pub struct ReplayGuard {
    last: Option<(u64, u64)>,
}

impl ReplayGuard {
    /// `Some(missed)` if `hb` is newer than everything accepted so far (and
    /// records it): `missed` heartbeats of the same incarnation were sent
    /// between the last accepted one and `hb` and never arrived. `None`: a
    /// replay or an older datagram, to drop.
    pub fn accept(&mut self, hb: &Heartbeat) -> Option<u64> {
        let v = (hb.incarnation, hb.seq);
        let missed = match self.last {
            Some(l) if v <= l => return None,
            Some((inc, seq)) if inc == hb.incarnation => hb.seq - seq - 1,
            _ => 0,
        };
        self.last = Some(v);
        Some(missed)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::key::ClusterKey;

    /// A heartbeat with every field set (also for the transport's tests).
    pub(crate) fn hb() -> Heartbeat {
        Heartbeat {
            node: "node1".into(),
            incarnation: 1_700_000_000_000_000,
            seq: 42,
            status: Status::new(State::Second, Readiness::Ready),
            primary_active: false,
            data: DataStatus {
                epoch: 2,
                gen: 9,
                uptodate: true,
                partial: false,
                last_role: Some(Role::Second),
                unclean: true,
                wrote_alone: true,
            },
            failover: true,
            full_sync_required: false,
            degraded: false,
            alone_after_failover: false,
            swap_request: Some(SwapKind::NoSync),
            handing_over: false,
            hears_peer: true,
            resources: Default::default(),
            heard: Some((1_700_000_000_000_001, 41)),
        }
    }

    fn key(b: u8) -> ClusterKey {
        ClusterKey::new([b; 32])
    }

    #[test]
    fn round_trip() {
        let d = encode(&key(1), 3, &hb());
        assert!(d.len() <= MAX_DATAGRAM);
        assert_eq!(decode(&key(1), 3, &d), Ok(hb()));
    }

    #[test]
    fn forged_truncated_oversized_and_foreign_datagrams_are_refused() {
        let d = encode(&key(1), 3, &hb());
        assert_eq!(decode(&key(2), 3, &d), Err(WireError::BadMac), "another cluster key");
        let mut flipped = d.clone();
        flipped[20] ^= 1;
        assert_eq!(decode(&key(1), 3, &flipped), Err(WireError::BadMac), "one bit changed");
        assert_eq!(decode(&key(1), 3, &d[..d.len() - 1]), Err(WireError::BadMac));
        assert_eq!(decode(&key(1), 3, &d[..10]), Err(WireError::Truncated));
        assert_eq!(decode(&key(1), 3, &vec![0u8; MAX_DATAGRAM + 1]), Err(WireError::Oversized(MAX_DATAGRAM + 1)));
        assert_eq!(decode(&key(1), 4, &d), Err(WireError::OtherModule(3)));
        assert_eq!(decode(&key(1), 3, &[b'X'; 60]), Err(WireError::BadMagic));
    }

    #[test]
    fn what_the_sender_heard_travels_and_cannot_be_half_present() {
        let mut h = hb();
        h.heard = None;
        let d = encode(&key(1), 3, &h);
        assert_eq!(decode(&key(1), 3, &d), Ok(h.clone()));
        // A nonzero pair without its flag is no sender's encoding.
        let mut body = d[..d.len() - MAC_LEN].to_vec();
        let at = body.len() - 1 - 16; // heard pair just before the resource count (empty list)
        body[at + 15] = 1;
        assert_eq!(decode(&key(1), 3, &sign(&key(1), body)), Err(WireError::BadField("heard")));
    }

    #[test]
    fn resources_travel_and_malformed_lists_are_refused() {
        let mut h = hb();
        h.resources = [("tcp.app", ResourceState::Down), ("custom.x", ResourceState::Up), ("ping.gw", ResourceState::Unknown)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let d = encode(&key(1), 3, &h);
        assert_eq!(decode(&key(1), 3, &d), Ok(h.clone()));
        // Too many or too long: the first 32 names of at most 64 bytes go.
        h.resources = (0..40).map(|i| (format!("tcp.r{i:02}"), ResourceState::Up)).collect();
        h.resources.insert(format!("custom.{}", "x".repeat(80)), ResourceState::Up);
        let d = encode(&key(1), 3, &h);
        assert!(d.len() <= MAX_DATAGRAM);
        let got = decode(&key(1), 3, &d).unwrap();
        assert_eq!(got.resources.len(), MAX_RESOURCES);
        assert!(got.resources.keys().all(|k| k.len() <= MAX_RESOURCE_NAME));
        // Hand-made bodies: out of order, bad state, bad count.
        let body_with = |list: &[(&str, u8)], count: u8| {
            let mut empty = hb();
            empty.resources.clear();
            let signed = encode(&key(1), 3, &empty);
            let mut body = signed[..signed.len() - 32 - 1].to_vec();
            body.push(count);
            for (n, st) in list {
                body.push(u8::try_from(n.len()).unwrap());
                body.extend_from_slice(n.as_bytes());
                body.push(*st);
            }
            sign(&key(1), body)
        };
        assert!(decode(&key(1), 3, &body_with(&[("a.b", 1), ("a.c", 2)], 2)).is_ok());
        assert_eq!(decode(&key(1), 3, &body_with(&[("a.c", 1), ("a.b", 2)], 2)), Err(WireError::BadField("resource order")));
        assert_eq!(decode(&key(1), 3, &body_with(&[("a.b", 1), ("a.b", 2)], 2)), Err(WireError::BadField("resource order")));
        assert_eq!(decode(&key(1), 3, &body_with(&[("a.b", 9)], 1)), Err(WireError::BadField("resource state")));
        assert_eq!(decode(&key(1), 3, &body_with(&[], 33)), Err(WireError::BadField("resource count")));
        assert_eq!(decode(&key(1), 3, &body_with(&[("", 1)], 1)), Err(WireError::BadField("resource name")));
        assert_eq!(decode(&key(1), 3, &body_with(&[("a.b", 1)], 2)), Err(WireError::Truncated));
    }

    #[test]
    fn replays_are_dropped() {
        let mut g = ReplayGuard::default();
        let mut h = hb();
        assert_eq!(g.accept(&h), Some(0));
        assert_eq!(g.accept(&h), None, "the same datagram twice");
        h.seq = 41;
        assert_eq!(g.accept(&h), None, "an older one");
        h.seq = 43;
        assert_eq!(g.accept(&h), Some(0));
        h.seq = 47;
        assert_eq!(g.accept(&h), Some(3), "44, 45 and 46 were lost");
        h.incarnation += 1;
        h.seq = 1;
        assert_eq!(g.accept(&h), Some(0), "the peer restarted: a new sequence, nothing lost");
    }

    #[test]
    fn key_hex_form() {
        let k = key(0xab);
        assert_eq!(ClusterKey::from_hex(&k.to_hex()).unwrap().to_hex(), k.to_hex());
        assert!(ClusterKey::from_hex("abcd").unwrap_err().to_string().contains("32 bytes"));
        assert!(ClusterKey::from_hex("zz").is_err());
    }
}
