//! Effects the engine waits for (the VIP): the plan goes on only once the
//! runtime says the change is done, and a VIP that cannot be set is a
//! failure the engine acts on, never a log line next to a Ready status.

use super::*;

#[test]
fn e01_a_vip_that_cannot_be_set_restarts_the_module_then_stops_it_never_ready() {
    let mut h = H::new(cfg(), data(3, true, Some(Role::Alone)));
    h.vip_fails = Some("no such interface".into());
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_secs(10));
    let logs = h.logs();
    let count = |line: &str| logs.iter().filter(|l| *l == line).count();
    // The first start and maxloop (3) restarts; the fourth failure stops.
    assert_eq!(count("Virtual IP not set: no such interface"), 4, "{logs:?}");
    assert_eq!(count("Action stopstart called by vip"), 4, "{logs:?}");
    assert_eq!(count("Action stop called by maxloop"), 1, "{logs:?}");
    assert_eq!(h.status(), st(State::Stop, Readiness::NotReady));
    assert_eq!(count("Local state ALONE Ready"), 0, "{logs:?}");
    // What a failed set may have left configured is removed by the stop.
    assert!(!h.e.holds_vip());
}

#[test]
fn e02_start_prim_runs_only_once_the_vip_is_set() {
    let mut h = H::new(cfg(), data(3, true, Some(Role::Alone)));
    h.e.command(h.now, Command::admin(CommandKind::Start)).unwrap();
    let mut vip_run = None;
    for _ in 0..100 {
        h.pump();
        let scripts: Vec<_> = h.out.iter().filter_map(|a| if let Action::RunScript(r) = a { Some(r.clone()) } else { None }).collect();
        assert!(
            vip_run.is_none() || scripts.iter().all(|r| r.script != crate::engine::ScriptKind::StartPrim),
            "start_prim before the VIP was set: {:?}",
            h.take()
        );
        if let Some(run) = h.out.iter().find_map(|a| if let Action::SetVip(r) = a { Some(*r) } else { None }) {
            vip_run = Some(run);
            break;
        }
        for r in scripts {
            if !h.done_runs().contains(&r.run) {
                h.out.push(Action::Log { level: crate::engine::LogLevel::D, message: format!("done {}", r.run.0) });
                h.e.handle_input(h.now, Input::ScriptDone { run: r.run, success: true });
            }
        }
        h.now += Duration::from_millis(50);
        h.e.handle_timeout(h.now);
    }
    let run = vip_run.expect("the start never asked for the VIP");
    // Time passes, heartbeats go out, the plan waits.
    h.now += Duration::from_secs(3);
    h.e.handle_timeout(h.now);
    h.pump();
    assert!(h.out.iter().any(|a| matches!(a, Action::SendHeartbeat(_))));
    assert_eq!(h.status(), st(State::Alone, Readiness::Transient));
    assert!(!h.out.iter().any(|a| matches!(a, Action::RunScript(r) if r.script == crate::engine::ScriptKind::StartPrim)));
    h.input(Input::EffectDone { run, result: Ok(()) });
    h.advance(Duration::from_millis(100));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert!(h.take().iter().any(|l| l.starts_with("start_prim")));
}
