//! Any bytes given to the userconfig reader give a value or positioned errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use safekit_core::config::{parse_userconfig, UserConfigOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = |n: &str| (n.len() == 3).then(|| format!("<{n}>"));
    for confcheck in [false, true] {
        let opts = UserConfigOptions { env: &env, confcheck, ..UserConfigOptions::new() };
        if let Err(e) = parse_userconfig(text, opts) {
            assert!(!e.diagnostics.is_empty());
            let _ = e.to_string();
        }
    }
});
