//! The farm on Linux: the nf_tables data path ([`FarmRules`]) and the
//! service that opens a farm module's traffic and runs its membership
//! over UDP ([`FarmTraffic`]).

mod rules;
mod service;

pub use rules::{counters, default_vmac, nd_checksum_word, nft, Delivery, FarmRules, Forward, Rule};
pub use service::{powers, FarmTraffic, MembershipNet};
