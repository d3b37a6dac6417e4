//! Drives one mirror engine by hand, without tokio or sockets, to show the
//! sans-IO contract: time and events go in, actions come out.
//!
//! Run: `cargo run -p safekit-examples --example engine_by_hand`

use std::time::{Duration, Instant};

use safekit_core::engine::{Action, Automaton, Command, CommandKind, Input, MirrorEngine, Persistent};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = safekit_examples::engine_config("node1");
    let start = Instant::now();
    let mut now = start;
    // A node that was ALONE before a clean stop: it may start alone.
    let persisted = Persistent { gen: 1, uptodate: true, last_role: Some(safekit_core::engine::Role::Alone), ..Persistent::default() };
    let mut engine = MirrorEngine::new(cfg, persisted, 1, now);
    engine.command(now, Command::admin(CommandKind::Start))?;
    for _ in 0..100 {
        let mut scripts = Vec::new();
        let mut effects = Vec::new();
        while let Some(action) = engine.poll_action() {
            match &action {
                Action::SendHeartbeat(_) | Action::Persist(_) => {}
                Action::RunScript(run) => {
                    println!("{:>6?}  run {} {}", now - start, run.script.file_name(), run.args().join(" "));
                    scripts.push(run.run);
                }
                Action::SetVip(run) | Action::RemoveVip(run) => {
                    println!("{:>6?}  {action:?}", now - start);
                    effects.push(*run);
                }
                other => println!("{:>6?}  {other:?}", now - start),
            }
        }
        // Our "runtime": every script and every VIP change succeeds at once.
        for run in scripts {
            engine.handle_input(now, Input::ScriptDone { run, success: true });
        }
        for run in effects {
            engine.handle_input(now, Input::EffectDone { run, result: Ok(()) });
        }
        if engine.status().to_string() == "ALONE Ready" {
            println!("status: {}", engine.status());
            return Ok(());
        }
        now = engine.poll_timeout().unwrap_or(now + Duration::from_millis(100));
        engine.handle_timeout(now);
    }
    Err("the engine did not settle".into())
}
