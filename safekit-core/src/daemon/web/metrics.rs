//! `GET /metrics`: every running module in the Prometheus text format
//! (prometheus-client), built from the modules' typed reports at each
//! scrape. The names are documented in docs/API.md. No authentication
//! yet, like node_exporter's default: it tells what `state` tells.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Web;
use crate::engine::{Readiness, ResourceState, State as ModuleState};
use crate::runtime::ModuleReport;

pub(crate) fn routes() -> Router<Web> {
    Router::new().route("/metrics", get(metrics))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Module {
    module: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateOf {
    module: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Lan {
    module: String,
    lan: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FarmGroup {
    module: String,
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FarmNode {
    module: String,
    group: String,
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Resource {
    module: String,
    resource: String,
    state: String,
}

const STATES: [ModuleState; 6] =
    [ModuleState::Stop, ModuleState::Wait, ModuleState::Alone, ModuleState::Prim, ModuleState::Second, ModuleState::Up];

/// The text exposition of `reports`.
pub(crate) fn render(reports: &[ModuleReport]) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("safekit");
    let state = Family::<StateOf, Gauge>::default();
    let ready = Family::<Module, Gauge>::default();
    let peer = Family::<StateOf, Gauge>::default();
    let lan_up = Family::<Lan, Gauge>::default();
    let dropped = Family::<Module, Counter>::default();
    let epoch = Family::<Module, Gauge>::default();
    let generation = Family::<Module, Gauge>::default();
    let reint_done = Family::<Module, Gauge>::default();
    let reint_total = Family::<Module, Gauge>::default();
    let reint_eta = Family::<Module, Gauge>::default();
    let loops = Family::<Module, Gauge>::default();
    let failovers = Family::<Module, Counter>::default();
    let resource = Family::<Resource, Gauge>::default();
    let hb_received = Family::<Lan, Counter>::default();
    let hb_lost = Family::<Lan, Counter>::default();
    let rep_bytes = Family::<Module, Counter>::default();
    let rep_ops = Family::<Module, Counter>::default();
    let rep_applied = Family::<Module, Counter>::default();
    let rep_inflight = Family::<Module, Gauge>::default();
    let rep_lag = Family::<Module, Gauge<f64, AtomicU64>>::default();
    let reint_rate = Family::<Module, Gauge>::default();
    let farm_buckets = Family::<FarmGroup, Gauge>::default();
    let farm_members = Family::<Module, Gauge>::default();
    let farm_open = Family::<Module, Gauge>::default();
    let farm_dropped = Family::<Module, Counter>::default();
    let farm_node = Family::<FarmNode, Gauge>::default();
    registry.register("module_state", "1 for the module's current state on this node, 0 for the others", state.clone());
    registry.register("module_ready", "1 while the module's state is Ready (not Transient or NotReady)", ready.clone());
    registry.register("peer_state", "1 for the peer's state as last heard (UNKNOWN: no heartbeat)", peer.clone());
    registry.register("heartbeat_up", "1 while the peer is heard on this heartbeat network", lan_up.clone());
    registry.register("heartbeats_received", "Authentic, fresh heartbeats received from the peer on this network", hb_received.clone());
    registry.register(
        "heartbeats_lost",
        "Heartbeats the peer sent on this network that never arrived (gaps in its sequence)",
        hb_lost.clone(),
    );
    registry.register("heartbeats_dropped", "Heartbeat datagrams dropped (forged, replayed, malformed)", dropped.clone());
    registry.register("data_epoch", "Administrator epoch of the replicated data held here", epoch.clone());
    registry.register("data_generation", "Generation of the replicated data held here", generation.clone());
    registry.register("reintegration_bytes_done", "Bytes copied by the reintegration in progress", reint_done.clone());
    registry.register("reintegration_bytes_total", "Bytes the reintegration in progress copies", reint_total.clone());
    registry.register("reintegration_rate_bytes_per_second", "Mean copy rate of the reintegration in progress", reint_rate.clone());
    registry.register("reintegration_eta_seconds", "Estimated seconds left of the reintegration in progress", reint_eta.clone());
    registry.register("replication_sent_bytes", "Primary: bytes of the replication stream sent to the secondary", rep_bytes.clone());
    registry.register("replication_sent_ops", "Primary: replicated operations and control frames sent to the secondary", rep_ops.clone());
    registry.register("replication_inflight_bytes", "Primary: bytes sent that the secondary has not applied yet", rep_inflight.clone());
    registry.register(
        "replication_lag_seconds",
        "Primary: age of the oldest replicated operation the secondary has not applied yet (0: it is up to date)",
        rep_lag.clone(),
    );
    registry.register(
        "replication_applied_ops",
        "Secondary: replication frames received from the primary and applied",
        rep_applied.clone(),
    );
    registry.register("stopstart_loops", "Error-triggered actions counted against maxloop", loops.clone());
    registry.register("failovers", "Times this node took the application over from its primary (SECOND to ALONE)", failovers.clone());
    registry.register("resource_state", "1 for a checker resource's current state (up, down, init)", resource.clone());
    registry.register("farm_buckets", "Farm: buckets of the 256 this node owns (its load share)", farm_buckets.clone());
    registry.register("farm_members", "Farm: nodes in this node's membership view", farm_members.clone());
    registry.register("farm_traffic_open", "Farm: 1 while this node's traffic is open (rules and VIP in place)", farm_open.clone());
    registry.register("farm_datagrams_dropped", "Farm: membership datagrams dropped (forged, replayed, malformed)", farm_dropped.clone());
    registry.register(
        "farm_node_buckets",
        "Farm: buckets each node claims in its last beat heard here (this node: what it owns)",
        farm_node.clone(),
    );
    for r in reports {
        let m = Module { module: r.name.clone() };
        for s in STATES {
            let on = i64::from(r.status.state == s);
            state.get_or_create(&StateOf { module: r.name.clone(), state: s.to_string() }).set(on);
        }
        ready.get_or_create(&m).set(i64::from(r.status.readiness == Readiness::Ready));
        let heard = r.peer.map_or_else(|| "UNKNOWN".to_string(), |p| p.state.to_string());
        peer.get_or_create(&StateOf { module: r.name.clone(), state: heard }).set(1);
        for (lan, up) in &r.metrics.lans {
            lan_up.get_or_create(&Lan { module: r.name.clone(), lan: lan.clone() }).set(i64::from(*up));
        }
        for ((lan, _), counts) in r.metrics.lans.iter().zip(&r.heartbeat_lans) {
            let labels = Lan { module: r.name.clone(), lan: lan.clone() };
            hb_received.get_or_create(&labels).inc_by(counts.received);
            hb_lost.get_or_create(&labels).inc_by(counts.lost);
        }
        dropped.get_or_create(&m).inc_by(r.heartbeats_dropped);
        if let Some(rep) = r.replication {
            rep_bytes.get_or_create(&m).inc_by(rep.bytes_sent);
            rep_ops.get_or_create(&m).inc_by(rep.ops_sent);
            rep_applied.get_or_create(&m).inc_by(rep.ops_applied);
            rep_inflight.get_or_create(&m).set(i64::try_from(rep.inflight_bytes).unwrap_or(i64::MAX));
            rep_lag.get_or_create(&m).set(Duration::from_micros(rep.lag_micros).as_secs_f64());
        }
        if let Some(rate) = r.metrics.reintegration_rate {
            reint_rate.get_or_create(&m).set(i64::try_from(rate).unwrap_or(i64::MAX));
        }
        if let Some((e, g)) = r.data_version {
            epoch.get_or_create(&m).set(i64::try_from(e).unwrap_or(i64::MAX));
            generation.get_or_create(&m).set(i64::try_from(g).unwrap_or(i64::MAX));
        }
        if let Some((done, total)) = r.metrics.reintegration {
            reint_done.get_or_create(&m).set(i64::try_from(done).unwrap_or(i64::MAX));
            reint_total.get_or_create(&m).set(i64::try_from(total).unwrap_or(i64::MAX));
        }
        if let Some(eta) = r.metrics.reintegration_eta {
            reint_eta.get_or_create(&m).set(i64::try_from(eta).unwrap_or(i64::MAX));
        }
        loops.get_or_create(&m).set(i64::from(r.metrics.loops));
        failovers.get_or_create(&m).inc_by(r.metrics.failovers);
        if let Some(f) = &r.farm {
            farm_members.get_or_create(&m).set(i64::try_from(f.members.len()).unwrap_or(i64::MAX));
            farm_open.get_or_create(&m).set(i64::from(f.open));
            farm_dropped.get_or_create(&m).inc_by(f.datagrams_dropped);
            for g in &f.groups {
                let labels = FarmGroup { module: r.name.clone(), group: g.name.clone() };
                farm_buckets.get_or_create(&labels).set(i64::try_from(g.owned()).unwrap_or(i64::MAX));
                for n in g.nodes.iter().filter(|n| n.live) {
                    let labels = FarmNode { module: r.name.clone(), group: g.name.clone(), node: n.node.clone() };
                    farm_node.get_or_create(&labels).set(i64::try_from(n.buckets.len()).unwrap_or(i64::MAX));
                }
            }
        }
        for (name, st) in &r.metrics.resources {
            for s in [ResourceState::Up, ResourceState::Down, ResourceState::Init] {
                let labels = Resource { module: r.name.clone(), resource: name.clone(), state: s.to_string() };
                resource.get_or_create(&labels).set(i64::from(*st == s));
            }
        }
    }
    let mut out = String::new();
    encode(&mut out, &registry)?;
    Ok(out)
}

#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "Every module in the Prometheus text format (names in docs/API.md)", content_type = "application/openmetrics-text")))]
pub(crate) async fn metrics(State(web): State<Web>) -> impl IntoResponse {
    match render(&web.directory.reports()) {
        Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            String::from("metrics not encoded\n"),
        ),
    }
}
