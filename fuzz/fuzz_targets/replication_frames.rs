//! What a replication peer sends (after authentication: a buggy or hostile
//! node holding the key) is decoded or refused, never a panic; a decoded
//! operation is applied to a scratch tree without escaping it; a peer's
//! dirty map merges or is refused.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use safekit_core::replication::fuzzing::Scratch;

fn scratch() -> &'static Scratch {
    static S: OnceLock<Scratch> = OnceLock::new();
    S.get_or_init(|| Scratch::new(&std::env::temp_dir().join(format!("skfuzz-{}", std::process::id()))).unwrap())
}

fuzz_target!(|data: &[u8]| {
    scratch().feed(data);
});
