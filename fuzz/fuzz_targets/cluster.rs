//! Any bytes given to the cluster.xml reader give a value or positioned errors,
//! and a value reads back from what the writer makes of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use safekit_core::config::{parse_cluster, write::cluster_to_xml};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = parse_cluster(text, "cluster.xml") {
        let again = parse_cluster(&cluster_to_xml(&parsed.value), "cluster.xml").expect("written cluster.xml reads back");
        assert_eq!(again.value, parsed.value);
    }
});
