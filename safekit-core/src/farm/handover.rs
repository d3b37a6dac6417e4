//! A change of bucket table applied in two phases: first every node
//! releases the buckets it loses, then, once all have (or once the
//! membership protocol's detection time has passed for a node that does
//! not answer), every node acquires the buckets it gains. Between the
//! phases a moved bucket has no owner, which only delays a client's SYN
//! (it is retransmitted); two owners at once would answer it twice.

use super::assign::BucketTable;

/// What one node does to go from `old` to `new`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Handover {
    /// Buckets to stop accepting now (phase 1).
    pub release: Vec<u8>,
    /// Buckets to accept once every node has released (phase 2).
    pub acquire: Vec<u8>,
    /// Buckets kept.
    pub keep: Vec<u8>,
}

impl Handover {
    /// `node`'s part of the change from `old` to `new`.
    pub fn between(old: &BucketTable, new: &BucketTable, node: &str) -> Self {
        let mut h = Self::default();
        for b in 0..=u8::MAX {
            let (was, will) = (old.owner(b) == Some(node), new.owner(b) == Some(node));
            match (was, will) {
                (true, true) => h.keep.push(b),
                (true, false) => h.release.push(b),
                (false, true) => h.acquire.push(b),
                (false, false) => {}
            }
        }
        h
    }

    /// The buckets owned after phase 1.
    pub fn after_release(&self) -> Vec<u8> {
        self.keep.clone()
    }

    /// The buckets owned after phase 2.
    pub fn after_acquire(&self) -> Vec<u8> {
        let mut v: Vec<u8> = self.keep.iter().chain(&self.acquire).copied().collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::super::assign::{assign, Member};
    use super::*;

    #[test]
    fn no_bucket_has_two_owners_at_any_phase() {
        let names = ["node1", "node2", "node3"];
        let old = assign(&names.iter().map(|n| Member::new(*n, 1)).collect::<Vec<_>>());
        let new = assign(&[Member::new("node1", 1), Member::new("node3", 1)]);
        let plans: Vec<Handover> = names.iter().map(|n| Handover::between(&old, &new, n)).collect();
        // Phase 1 everywhere, then phase 2: count owners per bucket at each instant.
        for phase in [0, 1] {
            let mut owners = [0u8; 256];
            for p in &plans {
                let owned = if phase == 0 { p.after_release() } else { p.after_acquire() };
                for b in owned {
                    owners[usize::from(b)] += 1;
                }
            }
            assert!(owners.iter().all(|&n| n <= 1), "phase {phase}: a bucket with two owners");
            if phase == 1 {
                assert!(owners.iter().all(|&n| n == 1), "every bucket owned after phase 2");
            }
        }
        assert_eq!(plans[1].after_acquire(), Vec::<u8>::new(), "node2 left: it owns nothing");
        assert!(plans[1].acquire.is_empty() && plans[1].keep.is_empty());
    }
}
