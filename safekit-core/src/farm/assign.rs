//! The bucket table: computed by every node from the same membership view,
//! identical everywhere without a leader.
//!
//! 1. Only the top tier of powers gets traffic: members whose power is
//!    within a factor of 64 of the largest ([`CHAIN_FACTOR`]). So powers
//!    1/64/4096 form SafeKit's chain (the 4096 node takes everything; if it
//!    leaves, the 64 node does), while 2:1:1 shares in proportion. Power 0
//!    gets nothing.
//! 2. Each member of that tier gets a quota of `256 × power / Σpower`,
//!    floored, the rest given by largest remainder (ties by name).
//! 3. Every (bucket, member) pair gets a rendezvous score (the first 8
//!    bytes of SHA-256 over "safekit farm bucket", the bucket and the
//!    name); pairs are taken in descending score and a bucket goes to the
//!    first member that still has quota. A member joining or leaving moves
//!    about its share and little more (measured in the prototype: 2–8 of
//!    256 buckets beyond the minimum).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The number of buckets a client's hash falls in.
pub const BUCKETS: usize = 256;

/// A member whose power is at least this many times another's takes all
/// the traffic from it (SafeKit's chain / cascade of powers of 64).
pub const CHAIN_FACTOR: u64 = 64;

/// A node of the membership view, with its power in the group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    /// The node's name in cluster.xml.
    pub name: String,
    /// `<host power>`: relative share; 0 = no traffic.
    pub power: u32,
}

impl Member {
    /// A member.
    pub fn new(name: impl Into<String>, power: u32) -> Self {
        Self { name: name.into(), power }
    }
}

/// Which member owns each bucket (`None`: no member can take traffic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketTable {
    owners: Vec<Option<String>>,
}

impl BucketTable {
    /// No bucket owned.
    pub fn empty() -> Self {
        Self { owners: vec![None; BUCKETS] }
    }

    /// The owner of `bucket`.
    pub fn owner(&self, bucket: u8) -> Option<&str> {
        self.owners[usize::from(bucket)].as_deref()
    }

    /// The buckets `node` owns, ascending.
    pub fn owned_by(&self, node: &str) -> Vec<u8> {
        (0..=u8::MAX).filter(|b| self.owner(*b) == Some(node)).collect()
    }

    /// How many buckets each owner has.
    pub fn load(&self) -> BTreeMap<&str, usize> {
        let mut out = BTreeMap::new();
        for o in self.owners.iter().flatten() {
            *out.entry(o.as_str()).or_insert(0) += 1;
        }
        out
    }

    /// The buckets whose owner differs between `self` and `other`.
    pub fn moved(&self, other: &Self) -> usize {
        self.owners.iter().zip(&other.owners).filter(|(a, b)| a != b).count()
    }
}

fn score(bucket: usize, name: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(b"safekit farm bucket\0");
    h.update(u16::try_from(bucket).unwrap_or(u16::MAX).to_be_bytes());
    h.update(name.as_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first)
}

/// The bucket table of `view` (members in any order; a name given twice
/// counts once, with its largest power).
pub fn assign(view: &[Member]) -> BucketTable {
    let mut members: BTreeMap<&str, u64> = BTreeMap::new();
    for m in view {
        let p = members.entry(m.name.as_str()).or_insert(0);
        *p = (*p).max(u64::from(m.power));
    }
    let top = members.values().copied().max().unwrap_or(0);
    if top == 0 {
        return BucketTable::empty();
    }
    let tier: Vec<(&str, u64)> = members.into_iter().filter(|(_, p)| *p > 0 && p * CHAIN_FACTOR > top).collect();
    let total: u64 = tier.iter().map(|(_, p)| p).sum();
    let n = BUCKETS as u64;
    let mut quota: BTreeMap<&str, u64> = tier.iter().map(|(name, p)| (*name, n * p / total)).collect();
    let given: u64 = quota.values().sum();
    let mut by_remainder: Vec<(u64, &str)> = tier.iter().map(|(name, p)| ((n * p) % total, *name)).collect();
    by_remainder.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    for (_, name) in by_remainder.into_iter().take(usize::try_from(n - given).unwrap_or(0)) {
        *quota.entry(name).or_insert(0) += 1;
    }
    let mut pairs: Vec<(u64, usize, &str)> =
        (0..BUCKETS).flat_map(|b| tier.iter().map(move |(name, _)| (score(b, name), b, *name))).collect();
    pairs.sort_by(|a, b| b.cmp(a));
    let mut table = BucketTable::empty();
    for (_, b, name) in pairs {
        if table.owners[b].is_none() {
            if let Some(q) = quota.get_mut(name).filter(|q| **q > 0) {
                *q -= 1;
                table.owners[b] = Some(name.to_string());
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn view(ms: &[(&str, u32)]) -> Vec<Member> {
        ms.iter().map(|(n, p)| Member::new(*n, *p)).collect()
    }

    #[test]
    fn equal_powers_share_within_one_bucket() {
        let t = assign(&view(&[("node1", 1), ("node2", 1), ("node3", 1)]));
        let load = t.load();
        assert_eq!(load.values().sum::<usize>(), 256);
        assert!(load.values().all(|&n| n == 85 || n == 86), "{load:?}");
    }

    #[test]
    fn powers_share_in_proportion_and_zero_gets_nothing() {
        let t = assign(&view(&[("a", 2), ("b", 1), ("c", 1), ("d", 0)]));
        assert_eq!(t.load().into_iter().collect::<Vec<_>>(), [("a", 128), ("b", 64), ("c", 64)]);
        assert!(t.owned_by("d").is_empty());
        assert_eq!(assign(&view(&[("d", 0)])), BucketTable::empty(), "only power 0: no owner");
    }

    #[test]
    fn powers_of_64_form_a_chain() {
        let all = view(&[("n1", 1), ("n2", 64), ("n3", 4096)]);
        assert_eq!(assign(&all).owned_by("n3").len(), 256);
        assert_eq!(assign(&all[..2]).owned_by("n2").len(), 256, "n3 gone: the next in the chain takes all");
        assert_eq!(assign(&all[..1]).owned_by("n1").len(), 256);
    }

    #[test]
    fn a_leaving_member_moves_little_more_than_its_share() {
        let three = assign(&view(&[("node1", 1), ("node2", 1), ("node3", 1)]));
        let two = assign(&view(&[("node1", 1), ("node3", 1)]));
        let need = three.owned_by("node2").len();
        let moved = three.moved(&two);
        assert!(moved >= need && moved <= need + 16, "moved {moved}, needed {need}");
    }

    proptest! {
        #[test]
        fn same_view_same_table_and_every_bucket_owned_once(
            powers in proptest::collection::vec(0u32..5000, 1..8),
            shuffle in any::<u64>(),
        ) {
            let members: Vec<Member> = powers.iter().enumerate().map(|(i, p)| Member::new(format!("node{i}"), *p)).collect();
            let mut other = members.clone();
            let len = other.len();
            other.rotate_left(usize::try_from(shuffle % len as u64).unwrap_or(0));
            let t = assign(&members);
            prop_assert_eq!(&t, &assign(&other), "the order of the view does not matter");
            let owned: usize = t.load().values().sum();
            if powers.iter().any(|p| *p > 0) {
                prop_assert_eq!(owned, 256);
            } else {
                prop_assert_eq!(owned, 0);
            }
            for m in &members {
                if m.power == 0 {
                    prop_assert!(t.owned_by(&m.name).is_empty());
                }
            }
        }
    }
}
