//! What a replication peer sends (after authentication: a buggy or hostile
//! node holding the key) is decoded or refused, never a panic; a decoded
//! operation is applied to a scratch tree without escaping it; a peer's
//! dirty map merges or is refused.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use safekit_core::replication::dirty::DirtyMap;
use safekit_core::replication::tree::Tree;
use safekit_core::replication::wire::{decode_to_primary, decode_to_secondary, ToSecondary};

fn scratch() -> &'static (Tree, std::sync::Mutex<DirtyMap>) {
    static S: OnceLock<(Tree, std::sync::Mutex<DirtyMap>)> = OnceLock::new();
    S.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("skfuzz-{}", std::process::id()));
        let tree_dir: PathBuf = base.join("tree");
        std::fs::create_dir_all(&tree_dir).unwrap();
        let dm = DirtyMap::open(&base.join("map"), 4096).unwrap();
        (Tree::open(&tree_dir).unwrap(), std::sync::Mutex::new(dm))
    })
}

fuzz_target!(|data: &[u8]| {
    let (tree, dm) = scratch();
    if let Ok(ToSecondary::Op(op)) = decode_to_secondary(data) {
        let _ = tree.apply(&op);
    }
    let _ = decode_to_primary(data);
    let _ = dm.lock().unwrap().merge(data, 1);
});
