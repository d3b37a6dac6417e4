//! A plan is the ordered list of steps of one transition: scripts, which
//! block until their [`Input::ScriptDone`](super::Input::ScriptDone), and
//! engine-specific marks (set the status, emit an action, persist, ...),
//! which apply at once. Keeping transitions as data makes the exact order of
//! scripts testable and lets a stop preempt what is left of a start.

use std::collections::VecDeque;

use super::{RunId, ScriptAction, ScriptKind, ScriptRun, State};

/// A script to run within a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScriptStep {
    pub(crate) script: ScriptKind,
    pub(crate) force: bool,
    pub(crate) from: State,
    pub(crate) to: State,
    pub(crate) action: ScriptAction,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step<M> {
    /// Run a script and wait for it.
    Script(ScriptStep),
    /// Apply an engine-specific mark immediately.
    Mark(M),
}

/// The running plan and the script it waits for.
#[derive(Debug, Clone)]
pub(crate) struct Sequencer<M> {
    steps: VecDeque<Step<M>>,
    /// The script or witness check the plan waits for.
    pub(crate) awaiting: Option<RunId>,
    next_run: u64,
}

impl<M> Default for Sequencer<M> {
    fn default() -> Self {
        Self { steps: VecDeque::new(), awaiting: None, next_run: 1 }
    }
}

/// What the engine must do next.
pub(crate) enum Next<M> {
    /// Emit this script run and wait.
    Run(ScriptRun),
    /// Apply this mark, then ask again.
    Mark(M),
    /// Nothing left (or waiting for a result).
    Idle,
}

impl<M> Sequencer<M> {
    /// True while steps remain or a result is awaited.
    pub(crate) fn busy(&self) -> bool {
        self.awaiting.is_some() || !self.steps.is_empty()
    }

    /// Appends steps to the plan.
    pub(crate) fn extend(&mut self, steps: impl IntoIterator<Item = Step<M>>) {
        self.steps.extend(steps);
    }

    /// Puts `steps` before the rest of the plan (a lazy step expands in place).
    pub(crate) fn prepend(&mut self, steps: Vec<Step<M>>) {
        for s in steps.into_iter().rev() {
            self.steps.push_front(s);
        }
    }

    /// Drops what is left of the plan (a stop preempts a start). The script
    /// being awaited, if any, still finishes first.
    pub(crate) fn clear_pending(&mut self) {
        self.steps.clear();
    }

    /// A fresh run id (scripts and witness checks share the space).
    pub(crate) fn new_run(&mut self) -> RunId {
        let r = RunId(self.next_run);
        self.next_run += 1;
        r
    }

    /// The next thing to do; `scripts` = false skips script steps (no `<user>`).
    pub(crate) fn next(&mut self, scripts: bool) -> Next<M> {
        if self.awaiting.is_some() {
            return Next::Idle;
        }
        while let Some(step) = self.steps.pop_front() {
            match step {
                Step::Script(s) if scripts => {
                    let run = self.new_run();
                    self.awaiting = Some(run);
                    return Next::Run(ScriptRun { run, script: s.script, force: s.force, from: s.from, to: s.to, action: s.action });
                }
                Step::Script(_) => {}
                Step::Mark(m) => return Next::Mark(m),
            }
        }
        Next::Idle
    }

    /// A result arrived: true if it is the one awaited.
    pub(crate) fn complete(&mut self, run: RunId) -> bool {
        if self.awaiting == Some(run) {
            self.awaiting = None;
            true
        } else {
            false
        }
    }
}

/// Shorthand for a script step.
pub(crate) const fn script<M>(script: ScriptKind, from: State, to: State, action: ScriptAction) -> Step<M> {
    Step::Script(ScriptStep { script, force: false, from, to, action })
}

/// Shorthand for the forced pass of a stop script.
pub(crate) const fn forced<M>(script: ScriptKind, from: State, to: State, action: ScriptAction) -> Step<M> {
    Step::Script(ScriptStep { script, force: true, from, to, action })
}
