//! The effect lane: one task that carries out, in the engine's order, every
//! action that can take time (scripts are spawned from it, the VIP, the
//! replication's start, stop and drop, the quarantine, persistence, witness
//! checks, checker classes). The runtime's main loop only queues them here
//! and goes back to its heartbeats, timers and commands at once: a VIP that
//! takes seconds to configure or an unmount that waits for a busy file no
//! longer silences this node, so the peer never declares it dead for being
//! slow. Effects the engine waits for are answered with
//! [`Input::EffectDone`]; a script with [`Input::ScriptDone`].

use crate::services::{LogSink, StateStore};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::ModuleReport;
use crate::engine::{Action, CheckerClass, Input, LogLevel, ReplicationEvent, RunId};
use crate::services::{Replicator, ScriptRunner, VirtualIp, Witness};

/// What the lane needs to carry the actions out.
pub(super) struct Lane {
    pub(super) vip: Option<Arc<dyn VirtualIp>>,
    pub(super) scripts: Arc<dyn ScriptRunner>,
    pub(super) replicator: Arc<dyn Replicator>,
    pub(super) witness: Option<Arc<dyn Witness>>,
    pub(super) store: Arc<dyn StateStore>,
    pub(super) log: Arc<dyn LogSink>,
    /// Enabled checker classes, read by the checker tasks.
    pub(super) classes: Arc<Mutex<BTreeSet<CheckerClass>>>,
    /// Answers to the engine.
    pub(super) inputs: mpsc::Sender<Input>,
    pub(super) report: watch::Receiver<ModuleReport>,
}

/// True for the actions the main loop carries out itself: they only touch
/// a socket or memory and never wait.
pub(super) const fn is_immediate(a: &Action) -> bool {
    matches!(a, Action::SendHeartbeat(_) | Action::Log { .. } | Action::StateChanged { .. })
}

impl Lane {
    /// Runs until the queue's sender is dropped and every queued action is
    /// done (scripts still running are left to finish or be cancelled by
    /// the engine; the module's end aborts them).
    pub(super) fn spawn(self, mut queue: mpsc::UnboundedReceiver<Action>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut running: HashMap<RunId, JoinHandle<()>> = HashMap::new();
            while let Some(a) = queue.recv().await {
                running.retain(|_, h| !h.is_finished());
                self.carry_out(a, &mut running).await;
            }
            for (_, h) in running {
                h.abort();
            }
        })
    }

    async fn answer(&self, input: Input) {
        let _ = self.inputs.send(input).await;
    }

    async fn carry_out(&self, a: Action, running: &mut HashMap<RunId, JoinHandle<()>>) {
        match a {
            Action::RunScript(r) => {
                let (tx, runner, log) = (self.inputs.clone(), self.scripts.clone(), self.log.clone());
                let run = r.run;
                running.insert(
                    run,
                    tokio::spawn(async move {
                        let out = runner.run(&r).await;
                        if !out.success {
                            log.write("userplug", LogLevel::E, &out.detail);
                        }
                        let _ = tx.send(Input::ScriptDone { run, success: out.success }).await;
                    }),
                );
            }
            Action::CancelScript(run) => {
                if let Some(h) = running.remove(&run) {
                    h.abort();
                }
            }
            Action::SetVip(run) => self.change_vip(run, true).await,
            Action::RemoveVip(run) => self.change_vip(run, false).await,
            Action::StartReplication(role) => {
                if let Err(e) = self.replicator.start(role).await {
                    self.log.write("rfs", LogLevel::C, &format!("replication not started: {e}"));
                    self.answer(Input::Replication(ReplicationEvent::Degraded { reason: e.to_string() })).await;
                }
            }
            Action::DropSecondary => self.replicator.drop_secondary().await,
            Action::UnreplicatedWrites(word) => self.replicator.unreplicated_writes(word),
            Action::StopReplication => self.replicator.stop().await,
            Action::StartReintegration(mode) => {
                let (tx, repl) = (self.inputs.clone(), self.replicator.clone());
                tokio::spawn(async move {
                    let ev = match repl.reintegrate(mode).await {
                        Ok(()) => ReplicationEvent::ReintegrationDone,
                        Err(e) => ReplicationEvent::ReintegrationFailed { reason: e.to_string() },
                    };
                    let _ = tx.send(Input::Replication(ev)).await;
                });
            }
            Action::CheckWitness(run) => self.check_witness(run),
            Action::QuarantineLocalChanges(run) => {
                let result = match self.replicator.quarantine().await {
                    Ok(lines) => {
                        for l in lines {
                            self.log.write("rfs", LogLevel::E, &l);
                        }
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                };
                self.answer(Input::EffectDone { run, result }).await;
            }
            Action::EnableCheckers(c) => {
                if let Ok(mut set) = self.classes.lock() {
                    set.insert(c);
                }
            }
            Action::DisableCheckers(c) => {
                if let Ok(mut set) = self.classes.lock() {
                    set.remove(&c);
                }
            }
            Action::Persist(p) => {
                if let Err(e) = self.store.save(&p) {
                    self.answer(Input::PersistFailed { reason: e.to_string() }).await;
                }
            }
            // Carried out by the main loop (see `is_immediate`).
            Action::SendHeartbeat(_) | Action::Log { .. } | Action::StateChanged { .. } => {}
        }
    }

    /// Sets or removes the VIP (a module without `<vip>` has nothing to
    /// change) and tells the engine how it went.
    async fn change_vip(&self, run: RunId, on: bool) {
        let result = match &self.vip {
            Some(v) => {
                let r = if on { v.set().await } else { v.remove().await };
                r.map(|()| {
                    for ip in v.addresses() {
                        self.log.write("vip", LogLevel::E, &format!("Virtual IP {ip} {}", if on { "set" } else { "removed" }));
                    }
                })
            }
            None => Ok(()),
        };
        self.answer(Input::EffectDone { run, result: result.map_err(|e| e.to_string()) }).await;
    }

    fn check_witness(&self, run: RunId) {
        let (tx, witness, log) = (self.inputs.clone(), self.witness.clone(), self.log.clone());
        let version = self.report.borrow().data_version.unwrap_or((0, 0));
        tokio::spawn(async move {
            let reachable = match witness {
                Some(w) => match w.allow_alone(version).await {
                    Ok(()) => true,
                    Err(why) => {
                        log.write("witness", LogLevel::E, &why.to_string());
                        false
                    }
                },
                // The engine asks only when `<splitbrain>` is configured:
                // without a witness to answer, going on alone is refused.
                None => {
                    log.write("witness", LogLevel::E, "Split-brain witness: none configured (no address in <splitbrain arg>)");
                    false
                }
            };
            let _ = tx.send(Input::WitnessResult { run, reachable }).await;
        });
    }
}
