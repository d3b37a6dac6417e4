use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::*;

fn map(pairs: &[(&str, ResourceState)]) -> BTreeMap<String, ResourceState> {
    pairs.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
}

fn holds(rule: &str, local: &[(&str, ResourceState)], remote: Option<&[(&str, ResourceState)]>) -> bool {
    let rules = parse(rule).unwrap();
    let (l, r) = (map(local), remote.map(map));
    View { local: &l, remote: r.as_ref() }.holds(&rules[0].expr)
}

use ResourceState::{Down, Init, Unknown, Up};

#[test]
fn the_documented_rules_parse() {
    let text = "interface_failure: if (intf.? == down) then wait();\n\
                c_app : if (custom.app == down) then stopstart();\n\
                both: if ((local.tcp.* == down) && !(remote.tcp.* != up) || ping.gw != up) then swap();\n\
                ipv6: if (ip.fd00::1 == down) then restart;";
    let rules = parse(text).unwrap();
    assert_eq!(rules.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(), ["interface_failure", "c_app", "both", "ipv6"]);
    assert_eq!(
        rules.iter().map(|r| r.action).collect::<Vec<_>>(),
        [RuleVerb::Wait, RuleVerb::Stopstart, RuleVerb::Swap, RuleVerb::Restart]
    );
}

#[test]
fn errors_say_where_and_what_was_expected() {
    let err = |t: &str| parse(t).unwrap_err();
    assert_eq!(
        err("r: if (tcp.app == down) then reboot();"),
        RuleError { offset: 29, message: "expected an action (stop, stopstart, wait, restart, swap), found 'reboot'".into() }
    );
    assert_eq!(err("r: if (tcp.app == down then stop();").message, "expected ')' or an operator ('&&', '||', '==', '!='), found 'then'");
    assert_eq!(err("r: if (tcp.app == down) then stop()").message, "expected ';' at the end of the rule, found the end of the rules");
    assert_eq!(err("r if (x.y == up) then stop();").message, "expected ':' after the rule label 'r', found 'if'");
    let e = err("r: if (tcpapp == down) then stop();");
    assert_eq!((e.offset, e.message.starts_with("expected a resource (class.id")), (7, true));
    assert_eq!(err("r: if (tcp.a* == down) then stop();").message, "'tcp.a*': '*' and '?' stand for the whole id, not part of it");
    assert_eq!(err("r: if (down) then stop();").message, "'down' alone is not a condition (compare a resource with it)");
    assert_eq!(err("r: if (x.y == up) then stop();\nr: if (x.y == down) then stop();").message, "two rules are labelled 'r'");
    assert_eq!(err("r: if (x.y == up) then stop(); $").message, "unexpected character '$'");
    let lua = err("--Lua Rules\nRules = Rules + { x=if_then(\"tcp.a\",\"down\",Action.stop) }");
    assert_eq!(lua.offset, 0);
    assert!(lua.message.starts_with("Lua failover rules are not supported"), "{}", lua.message);
}

#[test]
fn wildcards_sides_and_operators() {
    let down_up = [("tcp.a", Down), ("tcp.b", Up)];
    assert!(holds("r: if (tcp.? == down) then stop();", &down_up, None), "? = any");
    assert!(!holds("r: if (tcp.* == down) then stop();", &down_up, None), "* = all");
    assert!(holds("r: if (tcp.* == down) then stop();", &[("tcp.a", Down), ("tcp.b", Down)], None));
    assert!(!holds("r: if (tcp.* == down) then stop();", &[("ping.a", Down)], None), "no resource: never true");
    assert!(!holds("r: if (tcp.? == down) then stop();", &[], None));
    assert!(holds("r: if (tcp.a != up) then stop();", &down_up, None));
    assert!(holds("r: if (tcp.c == init) then stop();", &down_up, None), "an unreported local resource is init");
    assert!(holds("r: if (remote.tcp.a == unknown) then stop();", &down_up, None), "an unheard peer's resources are unknown");
    assert!(holds("r: if (remote.tcp.a == down && tcp.a == up) then swap();", &[("tcp.a", Up)], Some(&[("tcp.a", Down)])));
    assert!(holds("r: if (!(tcp.b == down) || tcp.a == up) then stop();", &down_up, None));
    assert!(!holds("r: if (tcp.b == down && tcp.a == down) then stop();", &down_up, None));
    assert!(holds("r: if (tcp.b) then stop();", &down_up, None), "a bare resource means up");
    assert!(holds("r: if (tcp.a == remote.tcp.a) then stop();", &down_up, Some(&[("tcp.a", Down)])));
    assert!(!holds("r: if (tcp.a == remote.tcp.z) then stop();", &down_up, Some(&[])), "down vs init");
    assert!(holds("r: if (remote.tcp.z == init) then stop();", &down_up, Some(&[])), "a heard peer's unreported resource is init");
    let _ = (Init, Unknown);
}

fn machine(rules: &str, timing: Timing) -> RuleMachine {
    RuleMachine::new(&[], &parse(rules).unwrap(), timing)
}

#[test]
fn handle_time_holds_a_flapping_condition_and_fires_once_when_stable() {
    let t0 = Instant::now();
    let secs = |s: u64| t0 + Duration::from_secs(s);
    let timing = Timing { period: Duration::from_secs(1), handle_time: Duration::from_secs(5) };
    let mut m = machine("c: if (custom.app == down) then stopstart();", timing);
    let none = BTreeSet::new();
    let down = map(&[("custom.app", Down)]);
    let up = map(&[("custom.app", Up)]);
    // Flapping every 2 s: never stable for 5 s.
    for s in 0..20u64 {
        let res = if (s / 2) % 2 == 0 { &down } else { &up };
        assert!(m.evaluate(secs(s), &View { local: res, remote: None }, &none, true).is_empty(), "fired at {s} s");
    }
    // Down for good: fires once, 5 s after it went down.
    let mut fired = Vec::new();
    for s in 20..40u64 {
        for (label, verb) in m.evaluate(secs(s), &View { local: &down, remote: None }, &none, true) {
            fired.push((s, label, verb));
        }
    }
    assert_eq!(fired, [(25, "c".to_string(), RuleVerb::Stopstart)]);
    // Up again, then down: re-armed.
    assert!(m.evaluate(secs(40), &View { local: &up, remote: None }, &none, true).is_empty());
    assert!(m.evaluate(secs(41), &View { local: &down, remote: None }, &none, true).is_empty());
    assert_eq!(m.evaluate(secs(46), &View { local: &down, remote: None }, &none, false).len(), 1);
}

#[test]
fn periodic_evaluation_and_due_times() {
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let timing = Timing { period: Duration::from_millis(500), handle_time: Duration::ZERO };
    let mut m = machine("p: if (ping.gw == down) then wait();", timing);
    let none = BTreeSet::new();
    let down = map(&[("ping.gw", Down)]);
    let up = map(&[("ping.gw", Up)]);
    assert!(m.evaluate(ms(0), &View { local: &up, remote: None }, &none, true).is_empty());
    assert_eq!(m.due(), Some(ms(500)));
    // A change between ticks waits for the next tick.
    assert!(m.evaluate(ms(100), &View { local: &down, remote: None }, &none, true).is_empty());
    assert_eq!(m.evaluate(ms(500), &View { local: &down, remote: None }, &none, false), [("p".to_string(), RuleVerb::Wait)]);
    // Without a period, a change acts at once.
    let mut m = machine("p: if (ping.gw == down) then wait();", Timing::default());
    assert_eq!(m.evaluate(ms(0), &View { local: &down, remote: None }, &none, true).len(), 1);
    assert_eq!(m.due(), None);
}

#[test]
fn generated_rules_act_only_while_their_class_runs_and_wait_rules_hold_on_init() {
    let gen = [ResourceRule { resource: "tcp.app".into(), label: "t_app".into(), action: RuleAction::Restart, class: CheckerClass::Prim }];
    let mut m = RuleMachine::new(&gen, &[], Timing::default());
    let down = map(&[("tcp.app", Down)]);
    let now = Instant::now();
    assert!(m.evaluate(now, &View { local: &down, remote: None }, &BTreeSet::new(), true).is_empty());
    let prim: BTreeSet<_> = [CheckerClass::Prim].into();
    assert_eq!(m.evaluate(now, &View { local: &down, remote: None }, &prim, true), [("t_app".to_string(), RuleVerb::Restart)]);

    let gen = [ResourceRule { resource: "ping.gw".into(), label: "p_gw".into(), action: RuleAction::Wait, class: CheckerClass::Pre }];
    let m = RuleMachine::new(&gen, &parse("mine: if (custom.x == down && ping.gw == up) then wait();").unwrap(), Timing::default());
    let pre: BTreeSet<_> = [CheckerClass::Pre].into();
    assert_eq!(m.waiting(&View { local: &map(&[]), remote: None }, &pre), (true, None));
    assert_eq!(m.waiting(&View { local: &map(&[("ping.gw", Down)]), remote: None }, &pre), (false, Some("p_gw".into())));
    assert_eq!(m.waiting(&View { local: &map(&[("ping.gw", Up), ("custom.x", Down)]), remote: None }, &pre), (false, Some("mine".into())));
    assert_eq!(m.waiting(&View { local: &map(&[("ping.gw", Up), ("custom.x", Up)]), remote: None }, &pre), (false, None));
}
