//! Property tests of the configuration reader: any configuration written by
//! `config::write` reads back equal, and no input makes the readers panic.

use std::time::Duration;

use proptest::prelude::*;
use safekit_core::config::write::{cluster_to_xml, userconfig_to_xml};
use safekit_core::config::*;

fn dur(unit_ms: u64, max: u64) -> impl Strategy<Value = Duration> {
    (0..max).prop_map(move |n| Duration::from_millis(n * unit_ms))
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,8}"
}

fn text() -> impl Strategy<Value = String> {
    // Printable text including XML's special characters and some non-ASCII,
    // but no `%`: SafeKit has no escape for it, `%NAME%` is always a macro.
    "[ -$&-~éü<>\"']{0,20}".prop_map(|s| s.trim().to_string())
}

fn ipv4() -> impl Strategy<Value = std::net::IpAddr> {
    any::<[u8; 4]>().prop_map(|b| std::net::IpAddr::from(b))
}

fn heart() -> impl Strategy<Value = Heart> {
    (dur(1, 2000), proptest::option::of(1024u16..60000), any::<bool>(), prop::sample::subsequence(vec!["default", "repli"], 1..=2))
        .prop_flat_map(|(pulse, port, arp, lans)| {
            let pulse = pulse + Duration::from_millis(1);
            let hbs: Vec<_> = lans.into_iter().map(|l| (Just(l.to_string()), name(), dur(1, 1000), dur(1, 60_000))).collect();
            hbs.prop_map(move |v| Heart {
                port,
                pulse,
                timeout: pulse * 3,
                permanent_arp: arp,
                heartbeats: v
                    .into_iter()
                    .enumerate()
                    .map(|(i, (n, ident, p, t))| {
                        let p = p + Duration::from_millis(1);
                        HeartbeatLan {
                            name: n,
                            ident: format!("{ident}{i}"),
                            pulse: p,
                            timeout: p + t + Duration::from_millis(1),
                            legacy_servers: vec![],
                        }
                    })
                    .collect(),
            })
        })
}

fn vaddr() -> impl Strategy<Value = VirtualAddr> {
    (ipv4(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(ip, side, check, conn)| VirtualAddr {
        addr: VipAddr::Ip(ip),
        placement: if side { Placement::OneSide } else { Placement::OneSideAlias },
        check,
        connections: conn,
        netmask: None,
    })
}

fn vip() -> impl Strategy<Value = Vip> {
    (any::<bool>(), prop::collection::vec(vaddr(), 1..3), any::<bool>(), dur(1000, 100), proptest::option::of(name())).prop_map(
        |(tcpreset, real, arp, iv, nic)| Vip {
            tcpreset,
            scriptcontrol: false,
            interfaces: vec![VipInterface {
                check: tcpreset,
                arpreroute: arp,
                arpinterval: iv,
                arpelapse: iv * 10,
                name: nic,
                real,
                virtual_interface: None,
            }],
            loadbalancing: vec![],
        },
    )
}

fn notrep() -> impl Strategy<Value = NotReplicated> {
    prop_oneof![
        name().prop_map(NotReplicated::Path),
        ("[a-z.]{1,6}", any::<bool>()).prop_map(|(p, only)| NotReplicated::Regex { pattern: format!("^{p}$"), only }),
    ]
}

fn rfs() -> impl Strategy<Value = Rfs> {
    (
        prop::collection::btree_set(name(), 1..4),
        prop::collection::vec(notrep(), 0..3),
        any::<bool>(),
        1u32..12,
        proptest::option::of(1u64..1000),
        dur(1000, 500),
        proptest::option::of("[0-9 *]{5,12}"),
    )
        .prop_map(|(dirs, nr, ro, nbrei, bw, lock, syncat)| Rfs {
            acl: ro,
            async_mode: if ro { AsyncMode::None } else { AsyncMode::Second },
            iotimeout: Duration::from_secs(300),
            roflags: None,
            locktimeout: lock,
            sendtimeout: Duration::from_secs(30),
            nbrei,
            ruzone_blocksize: Some(1 << 20),
            reipacketsize: Some(1 << 20),
            packetsize: None,
            namespacepolicy: 4,
            reitimeout: Duration::from_secs(150),
            reicommit: 0,
            reidetail: ro,
            allocthreshold: 0,
            nbremconn: 1,
            checktime: Duration::from_millis(220_000),
            checkintv: Duration::from_secs(120),
            nfsbox_options: None,
            scripts: false,
            reiallowedbw: bw,
            syncdelta: Duration::from_secs(600),
            syncat,
            mountoversuffix: "_For_SafeKit_Replication".into(),
            mountover: None,
            flow: None,
            replicated: dirs
                .into_iter()
                .map(|d| Replicated { dir: format!("/srv/{d}"), read_only: ro, tocheck: vec!["marker".into()], notreplicated: nr.clone() })
                .collect(),
        })
}

fn user() -> impl Strategy<Value = User> {
    (dur(1000, 600), prop::collection::vec(("[A-Z][A-Z0-9_]{0,6}", text()), 0..4), any::<bool>()).prop_map(|(t, vars, log)| User {
        nicestoptimeout: t,
        forcestoptimeout: t,
        logging: if log { Logging::Userlog } else { Logging::None },
        userlogsize: 2048,
        vars: vars.into_iter().map(|(name, value)| Var { name, value }).collect(),
    })
}

fn errd() -> impl Strategy<Value = Errd> {
    (
        dur(1000, 60),
        prop::collection::vec(
            (
                name(),
                -1i64..5,
                prop_oneof![Just(ErrdAction::Restart), Just(ErrdAction::Stopstart), Just(ErrdAction::Stop), Just(ErrdAction::Noaction)],
                prop::sample::select(vec!["prim", "both", "second", "pre"]),
            ),
            0..3,
        ),
    )
        .prop_map(|(poll, procs)| Errd {
            polltimer: poll,
            procs: procs
                .into_iter()
                .map(|(n, atleast, action, class)| Proc {
                    name: n,
                    service: false,
                    nameregex: None,
                    argregex: Some("^--serve".into()),
                    atleast,
                    atmax: -1,
                    action,
                    restart_services: vec![],
                    class: class.into(),
                    start_after: 0,
                })
                .collect(),
        })
}

fn checks() -> impl Strategy<Value = Check> {
    (any::<bool>(), any::<bool>(), dur(1000, 30)).prop_map(|(sb, when_pre, iv)| {
        let target = |addr: &str, port: Option<u16>| CheckTarget {
            addr: Some(addr.into()),
            port,
            local_addr: None,
            interval: iv,
            timeout: Duration::from_secs(5),
            secure: false,
        };
        let mut checkers = vec![
            Checker {
                kind: CheckerKind::Tcp,
                ident: "db".into(),
                when: if when_pre { When::Pre } else { When::Prim },
                action: if when_pre { CheckAction::Wait } else { CheckAction::Restart },
                targets: vec![target("10.1.2.3", Some(3306))],
                exec: None,
                arg: None,
                module: None,
            },
            Checker {
                kind: CheckerKind::Ping,
                ident: "gw".into(),
                when: When::Pre,
                action: CheckAction::Wait,
                targets: vec![target("10.1.2.254", None)],
                exec: None,
                arg: None,
                module: None,
            },
        ];
        if sb {
            checkers.push(Checker {
                kind: CheckerKind::Splitbrain,
                ident: "witness".into(),
                when: When::Pre,
                action: CheckAction::Wait,
                targets: vec![],
                exec: Some("ping".into()),
                arg: Some("10.1.2.254 10.1.2.253".into()),
                module: None,
            });
        }
        Check { checkers }
    })
}

/// Valid rules in the legacy language (invalid ones are refused with their position).
fn failover_text() -> impl Strategy<Value = String> {
    let cond = prop_oneof![
        Just("tcp.app == down"),
        Just("local.ping.? != up && remote.ping.* == up"),
        Just("!(custom.x == init) || intf.10.0.0.0 == down"),
        Just("(module.m == unknown)"),
    ];
    let action = prop_oneof![Just("stop()"), Just("stopstart()"), Just("wait()"), Just("restart()"), Just("swap()")];
    prop::collection::vec(("[a-z][a-z_0-9]{0,8}", cond, action), 0..4).prop_map(|rules| {
        let mut seen = std::collections::BTreeSet::new();
        rules
            .into_iter()
            .filter(|(l, ..)| seen.insert(l.clone()))
            .map(|(l, c, a)| format!("{l}: if ({c}) then {a};"))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

fn userconfig() -> impl Strategy<Value = UserConfig> {
    (
        heart(),
        proptest::option::of(vip()),
        rfs(),
        proptest::option::of(user()),
        proptest::option::of(checks()),
        dur(1000, 100),
        0u32..10,
        prop_oneof![Just(DefaultPrim::Alone), Just(DefaultPrim::LastPrim), Just(DefaultPrim::Node("node2".into()))],
        proptest::option::of((failover_text(), any::<bool>())),
        any::<bool>(),
    )
        .prop_flat_map(|(heart, vip, rfs, user, check, delay, maxloop, dp, rules, failover)| {
            let errd_s = if user.is_some() { proptest::option::of(errd()).boxed() } else { Just(None).boxed() };
            errd_s.prop_map(move |errd| UserConfig {
                macros: vec![],
                service: Service {
                    mode: Mode::Mirror,
                    boot: Boot::Auto,
                    boot_delay: delay,
                    failover,
                    defaultprim: dp.clone(),
                    maxloop,
                    loop_interval: Duration::from_secs(3600 * u64::from(maxloop + 1)),
                    automatic_reboot: false,
                    heart: Some(heart.clone()),
                    farm: None,
                    vip: vip.clone(),
                    rfs: Some(rfs.clone()),
                    user: user.clone(),
                    vhost: None,
                    errd,
                    check: check.clone(),
                    failover_rules: rules.clone().map(|(t, ext)| FailoverRules {
                        extends: ext,
                        period: Duration::from_millis(5000),
                        handle_time: Duration::from_millis(15000),
                        text: t.trim().to_string(),
                    }),
                },
            })
        })
}

fn cluster() -> ClusterConfig {
    parse_cluster(include_str!("../fixtures/cluster-two-nodes.xml"), "cluster.xml").unwrap().value
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn userconfig_round_trips(cfg in userconfig()) {
        let c = cluster();
        let xml = userconfig_to_xml(&cfg);
        let back = parse_userconfig(&xml, UserConfigOptions { cluster: Some(&c), confcheck: true, ..UserConfigOptions::new() })
            .map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        prop_assert_eq!(&back.value, &cfg, "{}", xml);
        prop_assert!(back.warnings.is_empty(), "{:?}", back.warnings);
    }

    #[test]
    fn cluster_round_trips(
        lans in prop::collection::btree_map("[a-z]{1,6}", (prop::collection::btree_set("[a-z][a-z0-9]{0,5}", 1..4), any::<bool>()), 1..3),
        port in 1u16..65535,
        pulse in 1u64..5000,
        v6 in any::<bool>(),
    ) {
        let mut i = 0u8;
        let lans: Vec<Lan> = lans.into_iter().enumerate().map(|(li, (name, (nodes, _)))| Lan {
            name,
            command: li == 0,
            nodes: nodes.into_iter().map(|n| {
                i = i.wrapping_add(1);
                let addr = if v6 { HostAddr::Ip(format!("fd00::{i:x}").parse().unwrap()) } else { HostAddr::Ip([10, 9, li as u8, i].into()) };
                NodeAddr { name: n, addr, laddr: Some(HostAddr::Dns(format!("h{i}.example"))) }
            }).collect(),
        }).collect();
        let c = ClusterConfig { port, pulse: Duration::from_millis(pulse), mlost_count: 20, slost_count: 10, lans };
        let xml = cluster_to_xml(&c);
        let back = parse_cluster(&xml, "cluster.xml").map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        prop_assert_eq!(back.value, c);
    }

    /// Whatever the bytes, the readers answer with a value or positioned
    /// errors, never a panic.
    #[test]
    fn arbitrary_text_never_panics(s in "(<[a-z_/!?]{0,8}( [a-z_]{1,8}=\"[^\"]{0,8}\")*/?>|[^<]{0,10}|%[A-Z]{0,4}%?|<!\\[CDATA\\[.{0,5}\\]\\]>){0,40}") {
        if let Err(e) = parse_userconfig(&s, UserConfigOptions::new()) {
            for d in &e.diagnostics {
                prop_assert!(d.pos.line >= 1 && d.pos.column >= 1);
            }
        }
        let _ = parse_cluster(&s, "cluster.xml");
    }

    /// Mutating a valid file (truncation, byte replacement) never panics either.
    #[test]
    fn mutated_seed_never_panics(cut in 0usize..1500, at in 0usize..1500, with in "[<>\"&%/= a-z]") {
        let base = include_str!("../fixtures/seeds/mariadb-linux.userconfig.xml");
        let mut s: String = base.chars().take(cut).collect();
        if at < s.len() && s.is_char_boundary(at) && s.is_char_boundary(at + 1) {
            s.replace_range(at..at + 1, &with);
        }
        let _ = parse_userconfig(&s, UserConfigOptions::new());
    }
}
