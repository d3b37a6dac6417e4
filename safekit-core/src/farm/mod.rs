//! Farm load sharing, the pure part (no I/O): which node owns which of the
//! 256 buckets a client's hash falls in, and how a node's kernel predicts
//! that hash.
//!
//! Every node computes the same [`BucketTable`] from the same membership
//! view, without a leader ([`assign`]); a change of view is applied in two
//! phases, buckets released everywhere before they are acquired anywhere
//! ([`Handover`]), so no bucket has two owners at any instant. The data
//! path (nf_tables, `crate::linux::farm`) matches a new connection's
//! `jhash(source) mod 256` against the buckets this node owns; [`jhash`]
//! is the kernel's function, so tests and `safekit -r vip_if_ctrl -l` can
//! say which node answers a given client.
//!
//! Membership ([`Membership`]) is leaderless and sans I/O: beats in, beats
//! and owned-bucket changes out.
//!
//! Design and measurements: `docs/FARM.md`, after the prototype in
//! `shared/reference/farm-nftables.md`.

mod assign;
mod handover;
mod jhash;
mod membership;
mod report;
#[cfg(test)]
mod sim;
pub mod wire;

pub use assign::{assign, BucketTable, Member, BUCKETS, CHAIN_FACTOR};
pub use handover::Handover;
pub use jhash::{bucket_of, jhash, seed_of, FlowKey};
pub use membership::{view_digest, Event, Membership};
pub use report::{FarmGroup, FarmReport, NodeBuckets};
