//! The cluster key: 32 secret bytes every node of a cluster shares
//! (`SAFEVAR/cluster/cluster.key`, made by `safekit cluster genkey`). It
//! authenticates heartbeats, the replication link's handshake and frames,
//! and the lease witness's messages, so it lives apart from any of them.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a cluster key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not hexadecimal.
    #[error("the cluster key is not hexadecimal: {0}")]
    NotHex(String),
    /// Not 32 bytes.
    #[error("the cluster key must be 32 bytes (64 hex digits), not {0}")]
    Length(usize),
}

/// The cluster key heartbeats are authenticated with.
#[derive(Clone)]
pub struct ClusterKey([u8; 32]);

impl ClusterKey {
    /// A key from its 32 bytes.
    pub const fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Reads the hexadecimal form kept in `SAFEVAR/cluster/cluster.key`.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(s.trim()).map_err(|e| KeyError::NotHex(e.to_string()))?;
        let len = bytes.len();
        let arr: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Length(len))?;
        Ok(Self(arr))
    }

    /// Hexadecimal form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub(crate) fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length: this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}
