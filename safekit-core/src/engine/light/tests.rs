//! Table tests of the light and farm automaton: the scripts and traffic
//! actions each command produces, in order.

use std::time::{Duration, Instant};

use super::*;
use crate::engine::DefaultPrim;
use crate::engine::{ResourceRule, RuleAction};

fn cfg(rules: Vec<ResourceRule>) -> EngineConfig {
    EngineConfig {
        node: "node1".into(),
        peer: String::new(),
        lans: vec![],
        failover: true,
        defaultprim: DefaultPrim::Alone,
        maxloop: 3,
        loop_interval: Duration::from_secs(86_400),
        splitbrain: false,
        scripts: true,
        rules,
        failover_rules: crate::engine::FailoverSpec::default(),
    }
}

/// Runs every requested script to completion; returns "script args" lines and states.
fn settle(e: &mut LightEngine, now: Instant) -> Vec<String> {
    settle_opening(e, now, Ok(()))
}

/// [`settle`], the traffic opening with `open` (closing always succeeds).
fn settle_opening(e: &mut LightEngine, now: Instant, open: Result<(), String>) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..100 {
        let mut runs: Vec<RunId> = Vec::new();
        let mut effects: Vec<(RunId, Result<(), String>)> = Vec::new();
        while let Some(a) = e.poll_action() {
            match a {
                Action::RunScript(r) => {
                    out.push(format!("{} {}", r.script.file_name(), r.args().join(" ")));
                    runs.push(r.run);
                }
                Action::StateChanged { to, .. } => out.push(format!("= {to}")),
                Action::SetVip(r) => {
                    out.push("traffic open".into());
                    effects.push((r, open.clone()));
                }
                Action::RemoveVip(r) => {
                    out.push("traffic close".into());
                    effects.push((r, Ok(())));
                }
                _ => {}
            }
        }
        if runs.is_empty() && effects.is_empty() {
            return out;
        }
        for run in runs {
            e.handle_input(now, Input::ScriptDone { run, success: true });
        }
        for (run, result) in effects {
            e.handle_input(now, Input::EffectDone { run, result });
        }
    }
    out
}

#[test]
fn a_farm_opens_its_traffic_before_start_both_and_closes_it_after_stop_both() {
    let now = Instant::now();
    let mut e = LightEngine::farm(cfg(vec![]), false, now);
    e.command(now, Command::admin(CommandKind::Start)).unwrap();
    assert_eq!(
        settle(&mut e, now),
        [
            "= WAIT Transient",
            "transition STOP WAIT start",
            "prestart STOP WAIT start",
            "= UP Transient",
            "traffic open",
            "start_both WAIT UP start",
            "= UP Ready"
        ]
    );
    e.command(now, Command::admin(CommandKind::Restart)).unwrap();
    assert_eq!(
        settle(&mut e, now),
        ["= UP Transient", "stop_both UP UP restart", "start_both UP UP restart", "= UP Ready"],
        "a restart keeps the traffic open"
    );
    e.command(now, Command::admin(CommandKind::Stop)).unwrap();
    assert_eq!(
        settle(&mut e, now),
        [
            "= WAIT Transient",
            "stop_both UP WAIT stop",
            "transition UP WAIT stop",
            "stop_both force UP WAIT stop",
            "traffic close",
            "poststop WAIT STOP stop",
            "transition WAIT STOP stop",
            "= STOP NotReady",
        ]
    );
    // scriptcontrol: the scripts open and close it; the engine does not.
    let mut s = LightEngine::farm(cfg(vec![]), true, now);
    s.command(now, Command::admin(CommandKind::Start)).unwrap();
    assert!(!settle(&mut s, now).iter().any(|l| l.starts_with("traffic")));
    assert_eq!(s.status(), Status::new(State::Up, Readiness::Ready));
}

#[test]
fn under_scriptcontrol_the_scripts_open_and_close_the_traffic() {
    let now = Instant::now();
    let open = Command::by(CommandKind::Traffic(true), "start_both");
    let mut s = LightEngine::farm(cfg(vec![]), true, now);
    assert_eq!(s.command(now, open.clone()), Err(CommandError::NotStarted), "a stopped module has no traffic to open");
    s.command(now, Command::admin(CommandKind::Start)).unwrap();
    settle(&mut s, now);
    s.command(now, open.clone()).unwrap();
    assert_eq!(settle(&mut s, now), ["traffic open"]);
    s.command(now, open).unwrap();
    assert!(settle(&mut s, now).is_empty(), "already open: nothing to do");
    s.command(now, Command::by(CommandKind::Traffic(false), "stop_both")).unwrap();
    assert_eq!(settle(&mut s, now), ["traffic close"]);
    // Opened again, then the module stops: the engine closes what the scripts left open.
    s.command(now, Command::by(CommandKind::Traffic(true), "start_both")).unwrap();
    settle(&mut s, now);
    s.command(now, Command::admin(CommandKind::Stop)).unwrap();
    assert!(settle(&mut s, now).contains(&"traffic close".to_string()));
    // Without scriptcontrol, or on a plain light module, the command is refused.
    let mut e = LightEngine::farm(cfg(vec![]), false, now);
    e.command(now, Command::admin(CommandKind::Start)).unwrap();
    settle(&mut e, now);
    assert_eq!(e.command(now, Command::admin(CommandKind::Traffic(false))), Err(CommandError::NotScriptControlled));
    let mut l = LightEngine::new(cfg(vec![]), now);
    assert_eq!(l.command(now, Command::admin(CommandKind::Traffic(true))), Err(CommandError::NotScriptControlled));
}

#[test]
fn a_farm_whose_traffic_cannot_open_stops_without_start_both() {
    let now = Instant::now();
    let mut e = LightEngine::farm(cfg(vec![]), false, now);
    e.command(now, Command::admin(CommandKind::Start)).unwrap();
    let out = settle_opening(&mut e, now, Err("nft refused the change".into()));
    assert!(!out.iter().any(|l| l.starts_with("start_both")), "{out:?}");
    assert!(out.contains(&"traffic close".to_string()), "what a failed open left is closed: {out:?}");
    assert_eq!(e.status(), Status::new(State::Stop, Readiness::NotReady), "{out:?}");
}

#[test]
fn start_stop_and_restart_run_the_farm_scripts() {
    let now = Instant::now();
    let mut e = LightEngine::new(cfg(vec![]), now);
    e.command(now, Command::admin(CommandKind::Start)).unwrap();
    assert_eq!(
        settle(&mut e, now),
        [
            "= WAIT Transient",
            "transition STOP WAIT start",
            "prestart STOP WAIT start",
            "= UP Transient",
            "start_both WAIT UP start",
            "= UP Ready"
        ]
    );
    e.command(now, Command::admin(CommandKind::Restart)).unwrap();
    assert_eq!(settle(&mut e, now), ["= UP Transient", "stop_both UP UP restart", "start_both UP UP restart", "= UP Ready"]);
    e.command(now, Command::admin(CommandKind::Stop)).unwrap();
    assert_eq!(
        settle(&mut e, now),
        [
            "= WAIT Transient",
            "stop_both UP WAIT stop",
            "transition UP WAIT stop",
            "stop_both force UP WAIT stop",
            "poststop WAIT STOP stop",
            "transition WAIT STOP stop",
            "= STOP NotReady",
        ]
    );
}

#[test]
fn mirror_commands_are_refused() {
    let now = Instant::now();
    let mut e = LightEngine::new(cfg(vec![]), now);
    let err = e.command(now, Command::admin(CommandKind::Prim { fullsync: false })).unwrap_err();
    assert_eq!(err.to_string(), "prim applies to mirror modules only");
    assert_eq!(e.command(now, Command::admin(CommandKind::Stop)), Err(CommandError::NotStarted));
}

#[test]
fn a_wait_rule_parks_and_wakes_up_and_maxloop_stops() {
    let now = Instant::now();
    let rules = vec![
        ResourceRule { resource: "ping.gw".into(), label: "p_gw".into(), action: RuleAction::Wait, class: CheckerClass::Pre },
        ResourceRule { resource: "tcp.app".into(), label: "t_app".into(), action: RuleAction::Restart, class: CheckerClass::Both },
    ];
    let mut e = LightEngine::new(cfg(rules), now);
    e.command(now, Command::admin(CommandKind::Start)).unwrap();
    settle(&mut e, now);
    assert_eq!(e.status(), Status::new(State::Wait, Readiness::Transient), "ping.gw is still init");
    e.handle_input(now, Input::Resource { name: "ping.gw".into(), state: ResourceState::Up, by: "test".into() });
    settle(&mut e, now);
    assert_eq!(e.status(), Status::new(State::Up, Readiness::Ready));
    e.handle_input(now, Input::Resource { name: "ping.gw".into(), state: ResourceState::Down, by: "test".into() });
    let out = settle(&mut e, now);
    assert!(out.contains(&"stop_both UP WAIT stopwait".to_string()), "{out:?}");
    assert_eq!(e.status(), Status::new(State::Wait, Readiness::NotReady));
    e.handle_input(now, Input::Resource { name: "ping.gw".into(), state: ResourceState::Up, by: "test".into() });
    settle(&mut e, now);
    assert_eq!(e.status(), Status::new(State::Up, Readiness::Ready));
    for _ in 0..4 {
        e.handle_input(now, Input::Resource { name: "tcp.app".into(), state: ResourceState::Down, by: "test".into() });
        settle(&mut e, now);
        e.handle_input(now, Input::Resource { name: "tcp.app".into(), state: ResourceState::Up, by: "test".into() });
        settle(&mut e, now);
    }
    assert_eq!(
        e.status(),
        Status::new(State::Stop, Readiness::NotReady),
        "error-triggered actions beyond maxloop (one wait, then restarts) stop the module"
    );
}
