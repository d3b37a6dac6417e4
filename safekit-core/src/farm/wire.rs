//! The farm membership datagram, authenticated with the cluster key like
//! the mirror heartbeats (pure code, no sockets).
//!
//! ```text
//! "SKFM" | version u8 (2) | module id u16 | node len u8 | node
//! | incarnation u64 | seq u64 | up u8 | view u64 | groups u8 (1..=16)
//! | per group, its owned buckets (256-bit map, 32 bytes)
//! | HMAC-SHA256 (32 bytes) over everything before it
//! ```
//! All integers big-endian; anything else is refused and counted. The MAC
//! is appended by [`crate::heartbeat::wire::sign`] (also what the fuzzer
//! uses to reach the field parser).

use hmac::Mac;

use crate::key::ClusterKey;

const MAGIC: &[u8; 4] = b"SKFM";
const VERSION: u8 = 2;
const MAC_LEN: usize = 32;
/// Load-balancing groups a module may have (`<group>` elements).
pub const MAX_GROUPS: usize = 16;
/// No valid datagram is longer.
pub const MAX_DATAGRAM: usize = 4 + 1 + 2 + 1 + 255 + 8 + 8 + 1 + 8 + 1 + 32 * MAX_GROUPS + MAC_LEN;
const MIN_DATAGRAM: usize = 4 + 1 + 2 + 1 + 1 + 8 + 8 + 1 + 8 + 1 + 32 + MAC_LEN;

/// What one node tells the others, every `pulse` and at each change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    /// The sender's name.
    pub node: String,
    /// Changes when its daemon restarts (a new sequence starts).
    pub incarnation: u64,
    /// Grows with each beat of an incarnation.
    pub seq: u64,
    /// Its module is UP and takes traffic.
    pub up: bool,
    /// The digest of the membership view its buckets follow.
    pub view: u64,
    /// The buckets it owns now, per load-balancing group (1 to [`MAX_GROUPS`]).
    pub owned: Vec<[u8; 32]>,
}

/// Why a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BeatError {
    /// Shorter than its fields, or longer than any beat.
    #[error("malformed datagram ({0} bytes)")]
    Size(usize),
    /// Not a farm beat, or a version this node does not speak.
    #[error("not a farm membership datagram")]
    Magic,
    /// Forged, corrupted, or made with another cluster key.
    #[error("authentication failed")]
    BadMac,
    /// A field with a value no sender produces.
    #[error("invalid field {0}")]
    BadField(&'static str),
    /// Authentic but for another module.
    #[error("beat of module {0}")]
    OtherModule(u16),
}

/// A 256-bit map of the buckets in `owned`.
pub fn bucket_map(owned: &[u8]) -> [u8; 32] {
    let mut m = [0u8; 32];
    for b in owned {
        m[usize::from(b / 8)] |= 1 << (b % 8);
    }
    m
}

/// Whether `map` has bucket `b`.
pub fn has_bucket(map: &[u8; 32], b: u8) -> bool {
    map[usize::from(b / 8)] & (1 << (b % 8)) != 0
}

/// Encodes and authenticates `beat` of module `module`.
pub fn encode(key: &ClusterKey, module: u16, beat: &Beat) -> Vec<u8> {
    let node = &beat.node.as_bytes()[..beat.node.len().min(255)];
    let mut b = Vec::with_capacity(MAX_DATAGRAM);
    b.extend_from_slice(MAGIC);
    b.push(VERSION);
    b.extend_from_slice(&module.to_be_bytes());
    b.push(u8::try_from(node.len()).unwrap_or(255));
    b.extend_from_slice(node);
    b.extend_from_slice(&beat.incarnation.to_be_bytes());
    b.extend_from_slice(&beat.seq.to_be_bytes());
    b.push(u8::from(beat.up));
    b.extend_from_slice(&beat.view.to_be_bytes());
    let groups = &beat.owned[..beat.owned.len().min(MAX_GROUPS)];
    b.push(u8::try_from(groups.len()).unwrap_or(0));
    for g in groups {
        b.extend_from_slice(g);
    }
    crate::heartbeat::wire::sign(key, b)
}

/// Authenticates and decodes a datagram of module `module`.
pub fn decode(key: &ClusterKey, module: u16, data: &[u8]) -> Result<Beat, BeatError> {
    if data.len() > MAX_DATAGRAM || data.len() < MIN_DATAGRAM {
        return Err(BeatError::Size(data.len()));
    }
    let (body, tag) = data.split_at(data.len() - MAC_LEN);
    if &body[..4] != MAGIC || body[4] != VERSION {
        return Err(BeatError::Magic);
    }
    let mut mac = key.mac();
    mac.update(body);
    mac.verify_slice(tag).map_err(|_| BeatError::BadMac)?;
    let m = u16::from_be_bytes([body[5], body[6]]);
    if m != module {
        return Err(BeatError::OtherModule(m));
    }
    let n = usize::from(body[7]);
    let rest = &body[8..];
    let groups = rest.get(n + 25).map_or(0, |g| usize::from(*g));
    if groups == 0 || groups > MAX_GROUPS {
        return Err(BeatError::BadField("groups"));
    }
    if rest.len() != n + 8 + 8 + 1 + 8 + 1 + 32 * groups {
        return Err(BeatError::Size(data.len()));
    }
    let node = std::str::from_utf8(&rest[..n]).map_err(|_| BeatError::BadField("node"))?.to_string();
    if node.is_empty() {
        return Err(BeatError::BadField("node"));
    }
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&rest[i..i + 8]);
        u64::from_be_bytes(a)
    };
    let up = match rest[n + 16] {
        0 => false,
        1 => true,
        _ => return Err(BeatError::BadField("up")),
    };
    let owned = rest[n + 26..]
        .chunks_exact(32)
        .map(|c| {
            let mut m = [0u8; 32];
            m.copy_from_slice(c);
            m
        })
        .collect();
    Ok(Beat { node, incarnation: u64_at(n), seq: u64_at(n + 8), up, view: u64_at(n + 17), owned })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat() -> Beat {
        Beat {
            node: "node2".into(),
            incarnation: 7,
            seq: 42,
            up: true,
            view: 0xfeed,
            owned: vec![bucket_map(&[0, 9, 255]), bucket_map(&[3])],
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let key = ClusterKey::new([3; 32]);
        let d = encode(&key, 5, &beat());
        assert_eq!(decode(&key, 5, &d), Ok(beat()));
        assert!(has_bucket(&beat().owned[0], 255) && !has_bucket(&beat().owned[0], 1));
        let mut none = beat();
        none.owned.clear();
        assert!(matches!(decode(&key, 5, &encode(&key, 5, &none)), Err(BeatError::Size(_))), "at least one group");
        assert_eq!(decode(&ClusterKey::new([4; 32]), 5, &d), Err(BeatError::BadMac), "another key");
        assert_eq!(decode(&key, 6, &d), Err(BeatError::OtherModule(5)));
        let mut flipped = d.clone();
        flipped[20] ^= 1;
        assert_eq!(decode(&key, 5, &flipped), Err(BeatError::BadMac), "a changed bit");
        assert!(matches!(decode(&key, 5, &d[..d.len() - 1]), Err(BeatError::Size(_) | BeatError::BadMac)));
        assert!(decode(&key, 5, &[]).is_err());
        assert!(decode(&key, 5, &vec![0u8; MAX_DATAGRAM + 1]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_refused_without_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = decode(&ClusterKey::new([3; 32]), 5, &data);
        }
    }
}
