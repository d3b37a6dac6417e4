//! A partner's own `VirtualIp`: what a product running in a cloud does
//! instead of adding an address to an interface (there is no layer-2 VIP in
//! a cloud network: the provider moves an "elastic" or "floating" IP to
//! the node's NIC through its API).
//!
//! What you learn: the `VirtualIp` trait is two async calls; the engine
//! waits for `set` before it runs `start_prim` and for `remove` before the
//! stop scripts, so the address never points at a node that does not serve;
//! a `set` that fails is a failure the module acts on (stop and start again,
//! then STOP after maxloop), not a log line; and `Module::builder` runs a
//! module from your services with no daemon and no `/var/safekit`.
//!
//! The "cloud" here is a file standing for the provider's association
//! table, so the example runs anywhere:
//! `cargo run -p safekit-examples --example custom_vip`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use safekit_core::engine::{CommandKind, MirrorEngine, Persistent, Readiness, Role, State, Status};
use safekit_core::runtime::module::Module;
use safekit_core::services::{ServiceError, VirtualIp};

/// Moves the elastic IP `eip` to instance `me` by rewriting the provider's
/// association (here a file; in a product, one authenticated HTTPS call).
struct ElasticIp {
    eip: String,
    me: String,
    association: PathBuf,
}

impl ElasticIp {
    fn associate(&self, instance: &str) -> Result<(), ServiceError> {
        // Write then rename: the provider's table is never half-written.
        let tmp = self.association.with_extension("tmp");
        std::fs::write(&tmp, format!("{} -> {instance}\n", self.eip)).map_err(|e| ServiceError::io("cloud API", e))?;
        std::fs::rename(&tmp, &self.association).map_err(|e| ServiceError::io("cloud API", e))
    }
}

#[async_trait]
impl VirtualIp for ElasticIp {
    async fn set(&self) -> Result<(), ServiceError> {
        self.associate(&self.me)
    }
    async fn remove(&self) -> Result<(), ServiceError> {
        // Only release the address if it is still ours: the other node may
        // already have taken it over.
        let now = std::fs::read_to_string(&self.association).unwrap_or_default();
        if now.trim_end().ends_with(&format!("-> {}", self.me)) {
            self.associate("(none)")?;
        }
        Ok(())
    }
    fn addresses(&self) -> Vec<std::net::IpAddr> {
        self.eip.parse().into_iter().collect()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("safekit-custom-vip-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let association = dir.join("cloud-association.txt");
    let vip = Arc::new(ElasticIp { eip: "203.0.113.10".into(), me: "i-node1".into(), association: association.clone() });

    // One node of a mirror module, whose data were up to date when it last
    // stopped: it may start ALONE without its peer.
    let cfg = safekit_examples::engine_config("node1");
    let persisted = Persistent { gen: 1, uptodate: true, last_role: Some(Role::Alone), ..Persistent::default() };
    let engine = MirrorEngine::new(cfg, persisted, 1, Instant::now());
    let module = Module::builder("webapp", 1, engine, &dir).vip(vip).spawn();

    module.command(CommandKind::Start).await?;
    let ready = Status::new(State::Alone, Readiness::Ready);
    module.wait_for(ready, Duration::from_secs(30)).await.map_err(|s| format!("still {s}"))?;
    println!("{}: {}", module.report().status, show(&association));

    module.command(CommandKind::Stop).await?;
    module.wait_for(Status::new(State::Stop, Readiness::NotReady), Duration::from_secs(30)).await.map_err(|s| format!("still {s}"))?;
    println!("{}: {}", module.report().status, show(&association));
    for line in module.log().tail(100, false) {
        println!("  log {line}");
    }
    module.shutdown().await;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn show(association: &Path) -> String {
    std::fs::read_to_string(association).unwrap_or_else(|_| "(no association)".into()).trim_end().to_string()
}
