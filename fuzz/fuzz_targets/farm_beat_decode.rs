//! Any farm membership datagram a peer (or an attacker) sends is decoded or
//! refused, never a panic; what decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use safekit_core::farm::wire::{decode, encode};
use safekit_core::heartbeat::wire::sign;
use safekit_core::key::ClusterKey;

fuzz_target!(|data: &[u8]| {
    let key = ClusterKey::new([7; 32]);
    if let Ok(b) = decode(&key, 1, data) {
        assert_eq!(encode(&key, 1, &b), data);
    }
    // Also with a valid MAC, so the field parsing is reached.
    let signed = sign(&key, data.to_vec());
    if let Ok(b) = decode(&key, 1, &signed) {
        assert_eq!(encode(&key, 1, &b), signed);
    }
});
