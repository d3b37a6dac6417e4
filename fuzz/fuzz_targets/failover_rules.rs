//! Any `<failover>` text is parsed into rules or refused with a position
//! inside the text, never a panic; parsed rules evaluate on any resources.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use safekit_core::engine::rules::{parse, View};
use safekit_core::engine::ResourceState;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse(text) {
        Ok(rules) => {
            let local: BTreeMap<String, ResourceState> =
                [("tcp.a", ResourceState::Down), ("ping.b", ResourceState::Up)].into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            let view = View { local: &local, remote: Some(&local) };
            for r in &rules {
                let _ = view.holds(&r.expr);
                let _ = view.uses_init(&r.expr);
            }
        }
        Err(e) => assert!(e.offset <= text.len(), "error offset {} past the end", e.offset),
    }
});
