//! What the example programs share (see the `[[example]]` entries; each
//! runs with `cargo run -p safekit-examples --example NAME`).

use safekit_core::config::{parse_cluster, parse_userconfig, UserConfigOptions};
use safekit_core::engine::EngineConfig;

/// A two-node cluster.xml on the demo's private addresses.
pub const CLUSTER: &str = r#"<cluster><lans>
  <lan name="default"><node name="node1" addr="10.77.0.1"/><node name="node2" addr="10.77.0.2"/></lan>
</lans></cluster>"#;

/// A mirror module without replicated directories (the examples replicate
/// nothing; their point is the engine and the services).
pub const MIRROR: &str = r#"<safe><service mode="mirror">
  <heart pulse="100ms" timeout="1000ms"><heartbeat name="default"/></heart>
  <user/>
</service></safe>"#;

/// The engine configuration of `node` (its peer is the other node) for [`MIRROR`] in [`CLUSTER`], read
/// by the same configuration reader as the daemon's (these texts are
/// fixed, so a failure is a bug of the example).
pub fn engine_config(node: &str) -> EngineConfig {
    let cluster = parse_cluster(CLUSTER, "cluster.xml").expect("the example's cluster.xml").value;
    let module = parse_userconfig(MIRROR, UserConfigOptions { cluster: Some(&cluster), ..UserConfigOptions::new() })
        .expect("the example's userconfig.xml")
        .value;
    safekit_core::convert::engine_config(&module, &cluster, node, &[])
}
