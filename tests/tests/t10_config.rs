//! Reading userconfig.xml / cluster.xml: the seeds parse, errors name
//! file:line:column and what was expected.

use std::time::Duration;

use safekit_core::config::{
    parse_cluster, parse_userconfig, AsyncMode, ClusterConfig, ErrdAction, HostAddr, Mode, Placement, Severity, UserConfigOptions, VipAddr,
};

const MARIADB_LINUX: &str = include_str!("../fixtures/seeds/mariadb-linux.userconfig.xml");
const MARIADB_WINDOWS: &str = include_str!("../fixtures/seeds/mariadb-windows.userconfig.xml");
const MILESTONE_WINDOWS: &str = include_str!("../fixtures/seeds/milestone-windows.userconfig.xml");
const CLUSTER: &str = include_str!("../fixtures/cluster-two-nodes.xml");

fn cluster() -> ClusterConfig {
    parse_cluster(CLUSTER, "cluster.xml").expect("fixture cluster parses").value
}

fn errors_of(text: &str, cluster: Option<&ClusterConfig>) -> Vec<String> {
    let opts = UserConfigOptions { cluster, ..UserConfigOptions::new() };
    match parse_userconfig(text, opts) {
        Ok(p) => panic!("expected an error, got {:#?}", p.value.service.mode),
        Err(e) => e.errors().map(ToString::to_string).collect(),
    }
}

#[test]
fn every_seed_module_parses_with_the_cluster() {
    let c = cluster();
    for (name, text) in [("mariadb-linux", MARIADB_LINUX), ("mariadb-windows", MARIADB_WINDOWS), ("milestone", MILESTONE_WINDOWS)] {
        let opts = UserConfigOptions { cluster: Some(&c), ..UserConfigOptions::new() };
        let parsed = parse_userconfig(text, opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        let s = &parsed.value.service;
        assert_eq!(s.mode, Mode::Mirror, "{name}");
        assert_eq!(s.maxloop, 3);
        assert_eq!(s.loop_interval, Duration::from_secs(24 * 3600), "{name}: loop_interval=\"24\" is hours");
        let heart = s.heart.as_ref().unwrap();
        assert_eq!(heart.pulse, Duration::from_millis(700));
        assert_eq!(heart.timeout, Duration::from_secs(30));
        assert_eq!(heart.heartbeats[0].name, "default");
        assert_eq!(heart.heartbeats[0].ident, "flow");
        let vip = s.vip.as_ref().unwrap();
        assert!(vip.interfaces[0].arpreroute && vip.interfaces[0].check);
        assert_eq!(vip.interfaces[0].real[0].addr, VipAddr::Name("VIRTUAL_TO_BE_DEFINED".into()));
        assert_eq!(vip.interfaces[0].real[0].placement, Placement::OneSideAlias);
        let errd = s.errd.as_ref().unwrap();
        assert_eq!(errd.polltimer, Duration::from_secs(10));
        assert_eq!(errd.procs[0].action, ErrdAction::Restart);
        assert_eq!(errd.procs[0].class, "prim");
        let rfs = s.rfs.as_ref().unwrap();
        assert_eq!(rfs.async_mode, AsyncMode::Second);
        assert_eq!(rfs.nbrei, 3);
        assert!(rfs.replicated.iter().all(|r| r.read_only));
        let user = s.user.as_ref().unwrap();
        assert_eq!(user.nicestoptimeout, Duration::from_secs(300));
        assert!(parsed.warnings.is_empty(), "{name}: {:?}", parsed.warnings);
    }
}

#[test]
fn the_windows_seeds_keep_their_paths_as_data() {
    let p = parse_userconfig(MILESTONE_WINDOWS, UserConfigOptions::new()).unwrap();
    let dirs: Vec<&str> = p.value.service.rfs.as_ref().unwrap().replicated.iter().map(|r| r.dir.as_str()).collect();
    assert_eq!(dirs.len(), 2);
    assert!(dirs[0].starts_with("C:\\Program Files\\Microsoft SQL Server"));
    let linux = parse_userconfig(MARIADB_LINUX, UserConfigOptions::new()).unwrap();
    let rfs = linux.value.service.rfs.unwrap();
    assert_eq!(rfs.replicated[0].dir, "/var/lib/mysql");
    assert_eq!(rfs.mountover, Some(false), "the legacy mountover attribute is kept");
}

#[test]
fn confcheck_refuses_the_vip_placeholder_with_its_position() {
    let c = cluster();
    let opts = UserConfigOptions { cluster: Some(&c), confcheck: true, ..UserConfigOptions::new() };
    let e = parse_userconfig(MARIADB_LINUX, opts).unwrap_err();
    let msgs: Vec<String> = e.errors().map(ToString::to_string).collect();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].starts_with("userconfig.xml:18:15: virtual address 'VIRTUAL_TO_BE_DEFINED' is a placeholder"), "{}", msgs[0]);
}

#[test]
fn heartbeat_without_name_lists_the_cluster_lans() {
    let text = "<safe>\n<service mode=\"mirror\">\n  <heart>\n    <heartbeat ident=\"x\"/>\n  </heart>\n</service>\n</safe>\n";
    let c = cluster();
    let errs = errors_of(text, Some(&c));
    assert_eq!(
        errs,
        vec!["userconfig.xml:4:5: <heartbeat> needs attribute name (one of the lans of cluster.xml: default, repli)".to_string()]
    );
}

#[test]
fn heartbeat_on_an_unknown_lan_is_refused() {
    let text = "<safe><service mode=\"mirror\"><heart><heartbeat name=\"wifi\"/></heart></service></safe>";
    let c = cluster();
    let errs = errors_of(text, Some(&c));
    assert_eq!(errs, vec!["userconfig.xml:1:48: heartbeat name 'wifi' is not a lan of cluster.xml (expected one of the lans of cluster.xml: default, repli)".to_string()]);
}

#[test]
fn unknown_elements_are_errors_and_unknown_attributes_warnings() {
    let text = "<safe>\n<service mode=\"light\" colour=\"blue\">\n<user/>\n<frobnicate/>\n</service>\n</safe>";
    let err = parse_userconfig(text, UserConfigOptions::new()).unwrap_err();
    let all: Vec<String> = err.diagnostics.iter().map(ToString::to_string).collect();
    assert!(all.contains(&"userconfig.xml:2:23: warning: unknown attribute colour on <service> is ignored (known: mode, boot, boot_delay, failover, defaultprim, maxloop, loop_interval, automatic_reboot)".to_string()), "{all:?}");
    assert!(all.contains(&"userconfig.xml:4:1: unknown element <frobnicate> inside <service> (expected one of: heart, farm, rfs, vip, user, vhost, errd, check, failover)".to_string()), "{all:?}");
    // Without the unknown element the same file parses, and the warning survives.
    let ok = parse_userconfig("<safe><service mode=\"light\" colour=\"blue\"><user/></service></safe>", UserConfigOptions::new()).unwrap();
    assert_eq!(ok.warnings.len(), 1);
    assert_eq!(ok.warnings[0].severity, Severity::Warning);
}

#[test]
fn failover_rule_errors_name_their_line_and_column_and_lua_is_refused() {
    let text = "<safe>\n<service mode=\"light\">\n<user/>\n<failover handle_time=\"2s\">\n  <![CDATA[ ok: if (custom.a == down) then restart();\n  bad: if (custom.b = down) then stop(); ]]>\n</failover>\n</service>\n</safe>";
    assert_eq!(errors_of(text, None), vec!["userconfig.xml:6:21: failover rules: unexpected character '='".to_string()]);
    let text =
        "<safe><service mode=\"light\"><user/><failover><![CDATA[--Lua Rules\nRules.disable(\"ip_failure\")]]></failover></service></safe>";
    let errs = errors_of(text, None);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("userconfig.xml:1:55: failover rules: Lua failover rules are not supported"), "{errs:?}");
    // A valid set parses and reaches the engine configuration.
    let text = "<safe><service mode=\"light\"><user/><failover extends=\"no\" period=\"1000ms\"><![CDATA[\n r1: if (custom.a == down && !(ping.gw != up)) then stopstart();\n]]></failover></service></safe>";
    let ok = parse_userconfig(text, UserConfigOptions::new()).unwrap();
    let spec = safekit_core::convert::failover_spec(ok.value.service.failover_rules.as_ref());
    assert_eq!((spec.user.len(), spec.extends, spec.timing.period), (1, false, Duration::from_secs(1)));
    assert_eq!(spec.timing.handle_time, Duration::from_secs(15), "SafeKit's default handle_time");
}

#[test]
fn time_values_name_the_attribute_and_the_unit() {
    let text = "<safe>\n  <service mode=\"light\" boot_delay=\"500ms\"/>\n</safe>";
    let errs = errors_of(text, None);
    assert_eq!(errs, vec!["userconfig.xml:2:25: invalid value '500ms' for the attribute boot_delay (expected time unit: 's')".to_string()]);
}

#[test]
fn macros_then_environment_are_expanded_everywhere() {
    let text = r#"<safe>
<macro name="VIP" value="10.77.0.100"/>
<macro name="DIR" value="%DATA_ROOT%/db"/>
<service mode="mirror">
  <heart><heartbeat name="default"/></heart>
  <vip><interface_list><interface><real_interface>
    <virtual_addr addr="%VIP%" where="one_side_alias"/>
  </real_interface></interface></interface_list></vip>
  <rfs><replicated dir="%DIR%"/></rfs>
  <user><var name="PORT" value="%APP_PORT%"/></user>
</service>
</safe>"#;
    let env = |n: &str| match n {
        "DATA_ROOT" => Some("/srv".to_string()),
        "APP_PORT" => Some("3306".to_string()),
        "VIP" => Some("1.1.1.1".to_string()),
        _ => None,
    };
    let c = cluster();
    let opts = UserConfigOptions { cluster: Some(&c), env: &env, confcheck: true, ..UserConfigOptions::new() };
    let p = parse_userconfig(text, opts).unwrap();
    let s = p.value.service;
    assert_eq!(s.vip.unwrap().interfaces[0].real[0].addr, VipAddr::Ip("10.77.0.100".parse().unwrap()), "the macro wins");
    assert_eq!(s.rfs.unwrap().replicated[0].dir, "/srv/db");
    assert_eq!(s.user.unwrap().vars[0].value, "3306");
}

#[test]
fn semantic_checks_report_every_problem_at_once() {
    let text = r#"<safe>
<service mode="mirror" defaultprim="node9">
  <heart><heartbeat name="default" pulse="1s" timeout="500ms"/></heart>
  <rfs>
    <replicated dir="data"/>
    <replicated dir="/srv/a"/>
    <replicated dir="/srv/a/b"/>
    <replicated dir="/srv/c"><notreplicated regexpath="!(unclosed"/></replicated>
  </rfs>
  <check>
    <splitbrain ident="w1" exec="ping" arg="10.77.0.254"/>
    <splitbrain ident="w2" exec="ping" arg="10.77.0.253"/>
  </check>
  <errd><proc name="x" class="prim"/></errd>
</service>
</safe>"#;
    let c = cluster();
    let errs = errors_of(text, Some(&c));
    let expect = [
        "userconfig.xml:2:24: defaultprim 'node9' is not a node of cluster.xml",
        "userconfig.xml:3:47: heartbeat timeout (500ms) must be longer than its pulse (1s)",
        "userconfig.xml:5:17: replicated dir 'data' is not an absolute path",
        "userconfig.xml:7:17: replicated dirs '/srv/a/b' and '/srv/a' are nested",
        "userconfig.xml:8:45: invalid regular expression '(unclosed' for the attribute regexpath: unclosed group",
        "userconfig.xml:12:5: only one <splitbrain> checker is allowed (first at 11:5)",
        "userconfig.xml:14:3: <errd> needs a <user> element",
    ];
    for (want, got) in expect.iter().zip(&errs) {
        assert!(got.starts_with(want), "want {want}\n got {got}\n all {errs:#?}");
    }
    assert_eq!(errs.len(), expect.len(), "{errs:#?}");
}

#[test]
fn a_mirror_needs_exactly_two_nodes() {
    let three = r#"<cluster><lans><lan name="default">
      <node name="a" addr="10.77.0.1"/><node name="b" addr="10.77.0.2"/><node name="c" addr="10.77.0.3"/>
    </lan></lans></cluster>"#;
    let c = parse_cluster(three, "cluster.xml").unwrap().value;
    let errs = errors_of(r#"<safe><service mode="mirror"><heart><heartbeat name="default"/></heart></service></safe>"#, Some(&c));
    assert_eq!(
        errs,
        vec!["userconfig.xml:1:7: a mirror module runs on exactly two nodes, but lan default of cluster.xml has 3 (a, b, c)".to_string()]
    );
}

#[test]
fn legacy_heartbeat_syntax_is_accepted_but_not_mixed() {
    let legacy = r#"<safe><service mode="mirror"><heart>
      <heartbeat name="net1"><server addr="10.0.0.1"/><server addr="10.0.0.2"/></heartbeat>
    </heart></service></safe>"#;
    let c = cluster();
    let p = parse_userconfig(legacy, UserConfigOptions { cluster: Some(&c), ..UserConfigOptions::new() }).unwrap();
    assert_eq!(p.value.service.heart.unwrap().heartbeats[0].legacy_servers.len(), 2);
    let mixed = r#"<safe><service mode="mirror"><heart>
      <heartbeat name="net1"><server addr="10.0.0.1"/></heartbeat>
      <heartbeat name="default"/>
    </heart></service></safe>"#;
    let errs = errors_of(mixed, Some(&c));
    assert!(errs[0].contains("cannot be mixed"), "{errs:?}");
}

#[test]
fn farm_vip_and_load_balancing_parse() {
    let text = r#"<safe><service mode="farm">
  <farm><lan name="default"/></farm>
  <vip><interface_list><interface check="on" arpreroute="on">
    <virtual_interface type="vmac_directed">
      <virtual_addr addr="10.77.0.50" where="alias"/>
    </virtual_interface></interface></interface_list>
    <loadbalancing_list><group name="FarmProto">
      <cluster><host name="node1" power="1"/><host name="node2" power="64"/></cluster>
      <rule port="80" proto="tcp" filter="on_addr"/>
    </group></loadbalancing_list>
  </vip>
</service></safe>"#;
    let c = cluster();
    let p = parse_userconfig(text, UserConfigOptions { cluster: Some(&c), ..UserConfigOptions::new() }).unwrap();
    let vip = p.value.service.vip.unwrap();
    assert_eq!(vip.loadbalancing[0].hosts[1].power, 64);
    assert_eq!(vip.loadbalancing[0].rules[0].port, Some(80));
    assert_eq!(vip.interfaces[0].virtual_interface.as_ref().unwrap().addrs[0].placement, Placement::Alias);
}

#[test]
fn cluster_addresses_ipv4_ipv6_and_dns() {
    let c = cluster();
    assert_eq!(c.lans.len(), 2);
    assert!(c.lans[0].command);
    assert!(matches!(c.lans[1].nodes[0].addr, HostAddr::Ip(std::net::IpAddr::V6(_))));
    assert_eq!(c.lans[1].nodes[1].addr, HostAddr::Dns("node2-repli.example".into()));
    assert_eq!(c.node_names(), vec!["node1", "node2"]);
    assert_eq!(c.pulse, Duration::from_millis(100));
}

#[test]
fn cluster_errors_name_the_place() {
    let text = "<cluster>\n<lans>\n<lan name=\"default\">\n<node name=\"a\" addr=\"10.0.0.1\"/>\n<node name=\"b\" addr=\"not an address\"/>\n<node name=\"c\" addr=\"[zz::1]\"/>\n</lan>\n</lans>\n</cluster>";
    let e = parse_cluster(text, "cluster.xml").unwrap_err();
    let msgs: Vec<String> = e.errors().map(ToString::to_string).collect();
    assert_eq!(msgs, vec![
        "cluster.xml:5:16: invalid value 'not an address' for the attribute addr (expected an IPv4 address, an IPv6 address in [brackets], or a DNS name)".to_string(),
        "cluster.xml:6:16: invalid IPv6 address '[zz::1]' for the attribute addr".to_string(),
    ]);
}

#[test]
fn malformed_xml_reports_where() {
    let e = parse_userconfig("<safe>\n<service mode=\"light\">\n</safe>", UserConfigOptions::new()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("userconfig.xml:3:"), "{msg}");
    assert!(msg.contains("malformed XML"), "{msg}");
}

#[test]
fn the_bundled_modules_parse_and_confcheck_names_the_macro_to_set() {
    let c = cluster();
    let mariadb = include_str!("../../modules/mariadb/conf/userconfig.xml");
    // A template: its blank macro is all there is to say, and it is named.
    let e = parse_userconfig(mariadb, UserConfigOptions { cluster: Some(&c), ..UserConfigOptions::new() }).unwrap_err();
    assert_eq!(e.blanks, ["VIRTUAL_IP"]);
    let env = |n: &str| (n == "VIRTUAL_IP").then(|| "10.77.0.100".to_string());
    let set = parse_userconfig(mariadb, UserConfigOptions { cluster: Some(&c), env: &env, confcheck: true, ..UserConfigOptions::new() });
    assert!(set.is_err(), "the macro wins over the environment: still blank");
    let fixed = mariadb.replace(r#"name="VIRTUAL_IP" value="""#, r#"name="VIRTUAL_IP" value="10.77.0.100""#);
    let p = parse_userconfig(&fixed, UserConfigOptions { cluster: Some(&c), confcheck: true, ..UserConfigOptions::new() }).unwrap();
    assert_eq!(p.value.macros[0].name, "VIRTUAL_IP");
    parse_userconfig(
        include_str!("../../modules/milestone/conf/userconfig.xml"),
        UserConfigOptions { cluster: Some(&c), ..UserConfigOptions::new() },
    )
    .unwrap();
}

fn cluster_errors(text: &str) -> Vec<String> {
    match parse_cluster(text, "cluster.xml") {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.errors().map(ToString::to_string).collect(),
    }
}

#[test]
fn deeply_nested_xml_is_an_error_with_its_position_not_a_crash() {
    // 100,000 levels used to overflow the stack when the tree was dropped.
    let depth = 100_000;
    let text = format!("<safe>{}{}</safe>", "<x>".repeat(depth), "</x>".repeat(depth));
    let errs = errors_of(&text, None);
    assert!(errs.iter().any(|e| e.contains("1:") && e.contains("nested more than 64 levels deep")), "{errs:?}");
    let errs = cluster_errors(&format!("<cluster>{}", "<lans>".repeat(depth)));
    assert!(errs.iter().any(|e| e.contains("nested more than 64 levels deep")), "{errs:?}");
}

#[test]
fn names_with_control_characters_are_refused_with_their_position() {
    let text = CLUSTER.replacen(r#"name="node1""#, "name=\"no\u{0}de1\"", 1);
    let errs = cluster_errors(&text);
    assert!(errs.iter().any(|e| e.contains("control character U+0000") && e.contains("cluster.xml:")), "{errs:?}");
    let long = CLUSTER.replacen(r#"name="node1""#, &format!(r#"name="{}""#, "n".repeat(300)), 1);
    let errs = cluster_errors(&long);
    assert!(errs.iter().any(|e| e.contains("300 bytes long")), "{errs:?}");
}

#[test]
fn a_cluster_with_many_nodes_on_one_line_parses_and_names_a_duplicate() {
    // Each lookup used to rescan the nodes and the line (quadratic): this
    // file took minutes. Only correctness is asserted here.
    let n = 50_000;
    let nodes: String = (0..n).map(|i| format!(r#"<node name="n{i}" addr="10.{}.{}.{}"/>"#, i / 65536, (i / 256) % 256, i % 256)).collect();
    let text = format!(r#"<cluster><lans><lan name="default">{nodes}<node name="n7" addr="192.0.2.1"/></lan></lans></cluster>"#);
    let errs = cluster_errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("node n7 appears twice in lan default") && errs[0].contains(":1:"), "{errs:?}");
}
