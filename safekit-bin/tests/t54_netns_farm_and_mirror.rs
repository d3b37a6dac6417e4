//! A farm module and a mirror module on the same nodes, as SafeKit users
//! run a web front (farm on n1..n3) beside its database (mirror on n1 and
//! n2): both run side by side without disturbing each other — the farm
//! answers every client as its bucket table says while the mirror's own
//! VIP answers from its primary — and the mirror's `<module>` checker
//! sees the farm module: when the farm stops on the mirror's primary, the
//! mirror fails over to the other node (module checker → wait), and comes
//! back as SECOND when the farm runs there again.

mod common;
mod farmnet;

use std::time::Duration;

use farmnet::daemons::{started_with, table, tail, until_served, Install};
use farmnet::{in_ns, request, Farm, Vip, NODES};
use safekit_core::engine::{Readiness, State, Status};

/// The farm's cluster with a second network for the mirror's pair.
fn cluster() -> String {
    let pair =
        "    <lan name=\"pair\">\n      <node name=\"n1\" addr=\"10.82.0.1\"/>\n      <node name=\"n2\" addr=\"10.82.0.2\"/>\n    </lan>\n";
    farmnet::daemons::CLUSTER.replace("  </lans>", &format!("{pair}  </lans>"))
}

/// The database's VIP.
const DB_VIP: &str = "10.82.0.200";

const MIRROR: &str = r#"<!DOCTYPE safe>
<safe>
<service mode="mirror" failover="on">
  <heart pulse="100ms" timeout="1000ms">
    <heartbeat name="pair"/>
  </heart>
  <vip>
    <interface_list>
      <interface check="off">
        <real_interface>
          <virtual_addr addr="10.82.0.200" where="one_side_alias" check="off"/>
        </real_interface>
      </interface>
    </interface_list>
  </vip>
  <check>
    <module ident="farm" name="farm"><to addr="127.0.0.1" interval="1" timeout="1"/></module>
  </check>
  <user nicestoptimeout="10s" forcestoptimeout="10s"/>
</service>
</safe>
"#;

/// Who answers a connection to the database's VIP (port 80: every node's demo application).
fn db_answer() -> Result<String, String> {
    in_ns("cl", || {
        let to = std::net::SocketAddr::new(DB_VIP.parse().unwrap(), 80);
        let s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
        request(s)
    })
}

/// Waits (20 s at most) until the database's VIP is answered by `node`.
fn db_served_by(node: &str) {
    let end = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match db_answer() {
            Ok(n) if n == node => return,
            got => assert!(std::time::Instant::now() < end, "{DB_VIP} answered {got:?}, not by {node}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_farm_and_a_mirror_share_the_nodes_and_the_mirror_follows_the_farm() {
    let _serial = common::serial();
    if !common::privileged("farm test needs root, iproute2 and nftables (apt-get install iproute2 nftables)", &["ip", "nft"], false) {
        return;
    }
    let _net = Farm::setup("skf54", Vip::No).unwrap();
    farmnet::wait_apps();
    let d = started_with(
        &cluster(),
        &[
            Install { name: "farm", id: 1, config: farmnet::daemons::MODULE, scripts: &[], on: &[0, 1, 2] },
            Install { name: "db", id: 2, config: MIRROR, scripts: &[], on: &[0, 1] },
        ],
    );
    until_served("farm UP on 3 nodes beside the mirror", &table(&NODES), Duration::from_secs(20), &d);

    // The mirror: n1 primary, n2 secondary; its VIP answers from n1.
    println!("mirror: n1 prim: {}", d.cli(0, &["prim", "-m", "db"]).trim());
    d.wait(0, "db", Status::new(State::Alone, Readiness::Ready), Duration::from_secs(30));
    println!("mirror: n2 second: {}", d.cli(1, &["second", "-m", "db"]).trim());
    d.wait(1, "db", Status::new(State::Second, Readiness::Ready), Duration::from_secs(30));
    d.wait(0, "db", Status::new(State::Prim, Readiness::Ready), Duration::from_secs(30));
    db_served_by("n1");
    until_served("farm with the mirror PRIM/SECOND on n1/n2", &table(&NODES), Duration::from_secs(20), &d);
    println!("farm and mirror: the farm VIP answered as predicted, {DB_VIP} by n1");

    // The farm stops on n1: its buckets go to n2 and n3, and the mirror's
    // module checker on n1 sees it: the database fails over to n2.
    println!("farm: n1 stop: {}", d.cli(0, &["stop", "-m", "farm"]).trim());
    until_served("farm stopped on n1", &table(&["n2", "n3"]), Duration::from_secs(20), &d);
    d.wait(1, "db", Status::new(State::Alone, Readiness::Ready), Duration::from_secs(30));
    d.wait(0, "db", Status::new(State::Wait, Readiness::NotReady), Duration::from_secs(30));
    db_served_by("n2");
    let log = d.log_of(0, "db");
    assert!(log.contains("module.farm"), "the module checker named the cause: {}", tail(&log, 30));
    println!("farm and mirror: farm stopped on n1 → {DB_VIP} served by n2 (ALONE), n1's mirror WAIT");

    // The farm back on n1: the mirror there wakes and rejoins as SECOND.
    println!("farm: n1 start: {}", d.cli(0, &["start", "-m", "farm"]).trim());
    d.wait(0, "farm", Status::new(State::Up, Readiness::Ready), Duration::from_secs(30));
    until_served("farm back on n1", &table(&NODES), Duration::from_secs(20), &d);
    d.wait(0, "db", Status::new(State::Second, Readiness::Ready), Duration::from_secs(30));
    d.wait(1, "db", Status::new(State::Prim, Readiness::Ready), Duration::from_secs(30));
    db_served_by("n2");
    println!("farm and mirror: farm back on n1 → rebalanced; the mirror PRIM on n2, SECOND on n1");
}
