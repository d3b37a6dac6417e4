//! What a farm module shows of itself: its view, its share and every
//! node's buckets as this node hears them (`safekit state`, the metrics,
//! `safekit -r vip_if_ctrl -l`).

use serde::{Deserialize, Serialize};

/// One node's buckets as this node knows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBuckets {
    /// Node name.
    pub node: String,
    /// This node itself.
    #[serde(default)]
    pub local: bool,
    /// Heard within the loss timeout (always true for this node).
    pub live: bool,
    /// Says it is UP (serves traffic).
    pub up: bool,
    /// The buckets it claims (its last beat; this node's own set for itself).
    pub buckets: Vec<u8>,
}

/// One load-balancing group's buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FarmGroup {
    /// The `<group>` name.
    pub name: String,
    /// Every node heard and this one, by name.
    pub nodes: Vec<NodeBuckets>,
}

impl FarmGroup {
    /// The buckets this node owns.
    pub fn owned(&self) -> usize {
        self.nodes.iter().find(|n| n.local).map_or(0, |n| n.buckets.len())
    }
}

/// A farm module's membership and traffic on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FarmReport {
    /// The members of the current view.
    pub members: Vec<String>,
    /// Whether this node's traffic is open (rules and VIP in place).
    pub open: bool,
    /// Each `<group>`, in the configuration's order.
    pub groups: Vec<FarmGroup>,
    /// Membership datagrams dropped (forged, replayed, malformed).
    pub datagrams_dropped: u64,
}

impl FarmReport {
    /// A node's buckets as SafeKit's `vip_if_ctrl -l` prints them: 8
    /// words of 32 bits, bucket 0 the lowest bit of the first word.
    pub fn bitmap(buckets: &[u8]) -> String {
        let mut words = [0u32; 8];
        for b in buckets {
            words[usize::from(b / 32)] |= 1 << (b % 32);
        }
        words.iter().map(|w| format!("{w:08x}")).collect::<Vec<_>>().join(":")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bitmap_is_eight_words_lowest_bucket_lowest_bit() {
        assert_eq!(FarmReport::bitmap(&[]), "00000000:00000000:00000000:00000000:00000000:00000000:00000000:00000000");
        let upper: Vec<u8> = (128..=255).collect();
        assert_eq!(FarmReport::bitmap(&upper), "00000000:00000000:00000000:00000000:ffffffff:ffffffff:ffffffff:ffffffff");
        assert_eq!(FarmReport::bitmap(&[0, 33, 255]), "00000001:00000002:00000000:00000000:00000000:00000000:00000000:80000000");
    }
}
