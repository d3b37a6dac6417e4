//! Stopping, forcestop, stopstart and restart: scripts in SafeKit's order.

use super::*;

// ---- stop ---------------------------------------------------------------------

#[test]
fn t22_stop_on_prim_runs_graceful_then_forced_pass_then_poststop() {
    let mut h = prim();
    h.cmd(CommandKind::Stop).unwrap();
    assert_eq!(
        h.take(),
        v(&[
            "= WAIT Transient",
            "-prim",
            "stop_prim PRIM WAIT stop",
            "-both",
            "stop_both PRIM WAIT stop",
            "transition PRIM WAIT stop",
            "stop_prim force PRIM WAIT stop",
            "stop_both force PRIM WAIT stop",
            "vip-",
            "repl stop",
            "-pre",
            "poststop WAIT STOP stop",
            "transition WAIT STOP stop",
            "= STOP NotReady",
        ])
    );
    assert!(!h.e.persistent().uptodate, "the secondary takes over: this copy becomes stale");
    assert!(!h.e.persistent().running);
}

#[test]
fn t23_stop_on_alone_stops_sec_prim_both() {
    let mut h = alone();
    h.cmd(CommandKind::Stop).unwrap();
    let out = h.take();
    let scripts: Vec<&String> =
        out.iter().filter(|s| s.starts_with("stop_") || s.starts_with("transition") || s.starts_with("poststop")).collect();
    assert_eq!(
        scripts,
        [
            "stop_sec ALONE WAIT stop",
            "stop_prim ALONE WAIT stop",
            "stop_both ALONE WAIT stop",
            "transition ALONE WAIT stop",
            "stop_sec force ALONE WAIT stop",
            "stop_prim force ALONE WAIT stop",
            "stop_both force ALONE WAIT stop",
            "poststop WAIT STOP stop",
            "transition WAIT STOP stop",
        ]
    );
    assert!(h.e.persistent().uptodate, "ALONE keeps the newest data");
}

#[test]
fn t24_stop_on_second_stops_sec_second_both() {
    let mut h = second();
    h.cmd(CommandKind::Stop).unwrap();
    let out = h.take();
    assert_eq!(
        out[..8],
        v(&[
            "= WAIT Transient",
            "-sec",
            "stop_sec SECOND WAIT stop",
            "-second",
            "stop_second SECOND WAIT stop",
            "-both",
            "stop_both SECOND WAIT stop",
            "transition SECOND WAIT stop",
        ])[..]
    );
    assert!(!h.e.persistent().uptodate, "the primary goes on: this copy becomes stale");
}

#[test]
fn t25_stop_from_wait_only_runs_poststop() {
    let mut h = H::new(cfg(), Persistent::default());
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    h.take();
    h.cmd(CommandKind::Stop).unwrap();
    assert_eq!(
        h.take(),
        v(&[
            "= WAIT Transient",
            "transition WAIT WAIT stop",
            "-pre",
            "poststop WAIT STOP stop",
            "transition WAIT STOP stop",
            "= STOP NotReady"
        ])
    );
}

#[test]
fn t26_stop_when_stopped_is_refused() {
    let mut h = H::new(cfg(), Persistent::default());
    assert_eq!(h.cmd(CommandKind::Stop), Err(CommandError::NotStarted));
}

#[test]
fn t27_forcestop_kills_the_stuck_script_and_runs_the_forced_pass() {
    let mut h = alone();
    h.e.command(h.now, Command::admin(CommandKind::Stop)).unwrap();
    h.pump();
    // stop_sec hangs; the administrator forces.
    h.e.command(h.now, Command::admin(CommandKind::Forcestop)).unwrap();
    h.scripts();
    let out = h.take();
    assert_eq!(out[0], "= WAIT Transient");
    assert_eq!(out[2], "stop_sec ALONE WAIT stop");
    assert_eq!(out[3], "cancel");
    let after: Vec<&str> = out[4..].iter().map(String::as_str).filter(|s| !s.starts_with('-') && !s.starts_with('=')).collect();
    assert_eq!(
        after,
        [
            "transition WAIT WAIT stop",
            "stop_sec force WAIT WAIT stop",
            "stop_prim force WAIT WAIT stop",
            "stop_both force WAIT WAIT stop",
            "vip-",
            "repl stop",
            "poststop WAIT STOP stop",
            "transition WAIT STOP stop",
        ]
    );
    assert_eq!(h.status(), st(State::Stop, Readiness::NotReady));
}

#[test]
fn t28_stopstart_on_alone_comes_back_alone() {
    let mut h = alone();
    h.cmd(CommandKind::Stopstart).unwrap();
    h.advance(Duration::from_millis(400));
    let out = h.take();
    assert!(out.contains(&"poststop WAIT STOP stopstart".to_string()));
    assert!(out.contains(&"prestart STOP WAIT start".to_string()));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert!(h.logs().iter().any(|l| l == "Action start called automatically"));
}

// ---- restart and swap -------------------------------------------------------

#[test]
fn t29_restart_on_prim_runs_stop_prim_then_start_prim() {
    let mut h = prim();
    h.cmd(CommandKind::Restart).unwrap();
    assert_eq!(
        h.take(),
        v(&["= PRIM Transient", "-prim", "stop_prim PRIM PRIM restart", "start_prim PRIM PRIM restart", "+prim", "= PRIM Ready"])
    );
}

#[test]
fn t30_restart_on_second_runs_stop_second_then_start_second() {
    let mut h = second();
    h.cmd(CommandKind::Restart).unwrap();
    assert_eq!(
        h.take(),
        v(&[
            "= SECOND Transient",
            "-second",
            "stop_second SECOND SECOND restart",
            "start_second SECOND SECOND restart",
            "+second",
            "= SECOND Ready"
        ])
    );
}

#[test]
fn t31_restart_outside_a_ready_state_is_refused() {
    let mut h = H::new(cfg(), Persistent::default());
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    assert!(matches!(h.cmd(CommandKind::Restart), Err(CommandError::NotReady { .. })));
}
