//! The partner's entry point: run one module from an engine and the
//! services of your choice, without the daemon, its `/var/safekit` layout
//! or any Linux default you do not ask for.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use safekit_core::engine::{CommandKind, EngineConfig, LightEngine};
//! # use safekit_core::runtime::module::Module;
//! # async fn example(cfg: EngineConfig, vip: Arc<dyn safekit_core::services::VirtualIp>) {
//! let engine = LightEngine::new(cfg, std::time::Instant::now());
//! let module = Module::builder("app", 1, engine, std::path::Path::new("/var/lib/app/ha"))
//!     .vip(vip)
//!     .spawn();
//! module.command(CommandKind::Start).await.unwrap();
//! // ... module.report() shows the state; at the end:
//! module.shutdown().await;
//! # }
//! ```
//!
//! Unset services have harmless defaults: no heartbeats (a light module,
//! or a mirror module that will only ever be ALONE), no VIP, nothing to
//! replicate, and scripts that succeed at once (an embedding application
//! usually starts and stops its own service from its [`ScriptRunner`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};

use super::log::ModuleLog;
use super::store::FileStore;
use super::{drive, CommandMsg, ModuleReport, ModuleServices};
use crate::engine::Automaton;
use crate::engine::{Command, CommandKind, Input, Readiness, ScriptRun, State, Status};
use crate::services::LogSink;
use crate::services::{Heartbeat, NothingToReplicate, Replicator, ScriptEnv, ScriptOutcome, ScriptRunner, VirtualIp};

/// Scripts that all succeed at once: the default of a module whose
/// application is started and stopped by other means.
pub struct NoScripts;

#[async_trait]
impl ScriptRunner for NoScripts {
    async fn run(&self, _run: &ScriptRun) -> ScriptOutcome {
        ScriptOutcome { success: true, detail: String::new() }
    }
}

/// Why a command sent to a running module did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleError {
    /// The engine refused it (one sentence for the CLI).
    #[error(transparent)]
    Refused(#[from] crate::engine::CommandError),
    /// The module's runtime has ended.
    #[error("the module has ended")]
    Ended,
}

/// Namespace of [`Module::builder`].
pub struct Module;

impl Module {
    /// A module named `name` (id `id`, as in SafeKit's module ids) driven by
    /// `engine`, keeping its persistent state and its log in `state_dir`.
    pub fn builder<E: Automaton + 'static>(name: &str, id: u16, engine: E, state_dir: &Path) -> ModuleBuilder<E> {
        Self::with_services(
            name,
            id,
            engine,
            ModuleServices {
                heartbeat: None,
                vip: None,
                scripts: Arc::new(NoScripts),
                replicator: Arc::new(NothingToReplicate),
                witness: None,
                companions: Vec::new(),
                store: Arc::new(FileStore::new(state_dir)),
                log: Arc::new(ModuleLog::new(state_dir, name)),
                errd: None,
                self_commands: None,
                handler_env: ScriptEnv::default(),
                checkers: Vec::new(),
                custom: Vec::new(),
                inputs: None,
                stall_after: None,
            },
        )
    }

    /// A module whose every service the caller assembled (the daemon fills
    /// them with the Linux defaults and the module's configuration).
    pub fn with_services<E: Automaton + 'static>(name: &str, id: u16, engine: E, services: ModuleServices) -> ModuleBuilder<E> {
        ModuleBuilder { engine, name: name.to_string(), id, services }
    }
}

/// Collects a module's services; [`ModuleBuilder::spawn`] runs it.
pub struct ModuleBuilder<E> {
    engine: E,
    name: String,
    id: u16,
    services: ModuleServices,
}

impl<E: Automaton + 'static> ModuleBuilder<E> {
    /// Heartbeats with the peer (mirror modules). The runtime also watches
    /// its own scheduling: waking up later than half of `timeout` after a
    /// deadline counts as a stall (see [`Input::Stalled`]).
    #[must_use]
    pub fn heartbeat(mut self, h: Arc<dyn Heartbeat>, timeout: Duration) -> Self {
        self.services.heartbeat = Some(h);
        self.services.stall_after = Some(timeout / 2);
        self
    }

    /// The virtual IP (or whatever "the address clients use" is here: a
    /// cloud elastic IP, a DNS record, a load balancer's target).
    #[must_use]
    pub fn vip(mut self, v: Arc<dyn VirtualIp>) -> Self {
        self.services.vip = Some(v);
        self
    }

    /// What replicates the application's data.
    #[must_use]
    pub fn replicator(mut self, r: Arc<dyn Replicator>) -> Self {
        self.services.replicator = r;
        self
    }

    /// What runs `prestart`, `start_prim`, `stop_prim`, ...
    #[must_use]
    pub fn scripts(mut self, s: Arc<dyn ScriptRunner>) -> Self {
        self.services.scripts = s;
        self
    }

    /// The split-brain witness asked before this node goes on alone.
    #[must_use]
    pub fn witness(mut self, w: Arc<dyn crate::services::Witness>) -> Self {
        self.services.witness = Some(w);
        self
    }

    /// Process monitoring (`<errd>`); its special handlers run in
    /// `handlers`' directory with its environment.
    #[must_use]
    pub fn errd(mut self, errd: Option<crate::config::Errd>, handlers: ScriptEnv) -> Self {
        self.services.errd = errd;
        self.services.handler_env = handlers;
        self
    }

    /// `<custom>` checkers: programs run in the errd handlers' directory
    /// (see [`ModuleBuilder::errd`]) that set a resource.
    #[must_use]
    pub fn custom_checkers(mut self, c: Vec<super::checkers::CustomSpec>) -> Self {
        self.services.custom = c;
        self
    }

    /// Periodic checkers (resources `<class>.<ident>` the engine's rules read).
    #[must_use]
    pub fn checkers(mut self, c: Vec<super::checkers::CheckerSpec>) -> Self {
        self.services.checkers = c;
        self
    }

    /// Where the module keeps what survives a crash (instead of
    /// `state_dir`'s `state.json`), e.g. a partner's own database.
    #[must_use]
    pub fn store(mut self, store: Arc<dyn crate::services::StateStore>) -> Self {
        self.services.store = store;
        self
    }

    /// A task to run beside the module (see [`super::Companion`]).
    #[must_use]
    pub fn companion(mut self, c: super::Companion) -> Self {
        self.services.companions.push(c);
        self
    }

    /// The module log (instead of `state_dir`'s), e.g. shared with a daemon.
    #[must_use]
    pub fn log(mut self, log: Arc<dyn LogSink>) -> Self {
        self.services.log = log;
        self
    }

    /// Starts the module's runtime on the current tokio runtime. The module
    /// is STOP until a `start` command (as after `safekit boot off`).
    pub fn spawn(self) -> RunningModule {
        let mut services = self.services;
        let (commands, command_rx) = mpsc::channel(16);
        services.self_commands.get_or_insert_with(|| commands.clone());
        let (inputs, input_rx) = match services.inputs.take() {
            Some(pair) => pair,
            None => mpsc::channel(64),
        };
        services.inputs = Some((inputs.clone(), input_rx));
        let first = ModuleReport {
            name: self.name,
            id: self.id,
            status: self.engine.status(),
            peer: None,
            resources: Default::default(),
            data_version: self.engine.data_version(),
            metrics: self.engine.metrics(),
            heartbeats_dropped: 0,
            heartbeat_lans: Vec::new(),
            replication: None,
            farm: None,
        };
        let (report_tx, report) = watch::channel(first);
        let (stop, stop_rx) = watch::channel(false);
        let (log, replicator) = (services.log.clone(), services.replicator.clone());
        let task = tokio::spawn(drive(self.engine, services, command_rx, report_tx, stop_rx));
        RunningModule { handle: ModuleHandle { commands, report, inputs, log, replicator }, stop, task }
    }
}

/// A running module's runtime: its [`ModuleHandle`] (through `Deref`) and
/// how to end it.
pub struct RunningModule {
    handle: ModuleHandle,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// How to reach a running module: send it commands and inputs, read its
/// report and log. Cheap to clone, so a caller (the daemon's control
/// socket) holds no lock while a request waits on the module.
#[derive(Clone)]
pub struct ModuleHandle {
    commands: mpsc::Sender<CommandMsg>,
    report: watch::Receiver<ModuleReport>,
    inputs: mpsc::Sender<Input>,
    log: Arc<dyn LogSink>,
    replicator: Arc<dyn Replicator>,
}

impl ModuleHandle {
    /// An administrator's command (`safekit start`, `prim`, `swap`, ...).
    pub async fn command(&self, kind: CommandKind) -> Result<(), ModuleError> {
        self.send(Command::admin(kind)).await
    }

    /// A command with its caller's identity (for the module log and the
    /// loop guard: "Action stopstart called by myapp").
    pub async fn send(&self, cmd: Command) -> Result<(), ModuleError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send((cmd, tx)).await.map_err(|_| ModuleError::Ended)?;
        Ok(rx.await.map_err(|_| ModuleError::Ended)??)
    }

    /// The module's state, peer and resources now.
    pub fn report(&self) -> ModuleReport {
        self.report.borrow().clone()
    }

    /// The module's status now.
    pub fn status(&self) -> Status {
        self.report.borrow().status
    }

    /// Follows every change of the report.
    pub fn watch(&self) -> watch::Receiver<ModuleReport> {
        self.report.clone()
    }

    /// Feeds the engine an input (e.g. a resource set by the application).
    pub fn inputs(&self) -> mpsc::Sender<Input> {
        self.inputs.clone()
    }

    /// Where the module writes its log.
    pub fn log(&self) -> Arc<dyn LogSink> {
        self.log.clone()
    }

    /// The replicator it runs with (`rfsverify`, `rfsdiff`).
    pub fn replicator(&self) -> Arc<dyn Replicator> {
        self.replicator.clone()
    }

    /// Waits until the module's status is `want`, at most `limit`.
    pub async fn wait_for(&self, want: Status, limit: Duration) -> Result<(), Status> {
        let mut rx = self.report.clone();
        let check = async {
            loop {
                if rx.borrow_and_update().status == want {
                    return;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(limit, check).await.map_err(|_| self.report.borrow().status)
    }

    /// True once the module is STOP NotReady.
    pub fn stopped(&self) -> bool {
        self.status() == Status::new(State::Stop, Readiness::NotReady)
    }

    /// The command queue, for a caller that sends commands from elsewhere
    /// (a boot-time start, a control socket).
    pub fn commands(&self) -> mpsc::Sender<CommandMsg> {
        self.commands.clone()
    }
}

impl std::ops::Deref for RunningModule {
    type Target = ModuleHandle;
    fn deref(&self) -> &ModuleHandle {
        &self.handle
    }
}

impl RunningModule {
    /// How to reach the module (clone it to hand it around).
    pub const fn handle(&self) -> &ModuleHandle {
        &self.handle
    }

    /// Asks the module to stop (stop scripts, VIP removed, "Action shutdown
    /// called by SYSTEM") without waiting: several modules stop together.
    pub fn request_stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits for the runtime to end (after [`RunningModule::request_stop`]).
    pub async fn join(self) {
        let _ = self.task.await;
    }

    /// Stops the module and waits for its runtime to end.
    pub async fn shutdown(self) {
        self.request_stop();
        self.join().await;
    }
}
