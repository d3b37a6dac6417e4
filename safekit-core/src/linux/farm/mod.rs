//! The farm on Linux: the nf_tables data path ([`FarmRules`]) and the
//! service that opens a farm module's traffic and runs its membership
//! over UDP ([`FarmTraffic`]).

mod nft;
mod rules;
mod service;

pub(crate) use nft::nft_json;
pub use nft::{counters, nft};
pub use rules::{default_vmac, nd_checksum_word, Buckets, Delivery, FarmRules, Rule};
pub use service::{powers, FarmTraffic, MembershipNet};
