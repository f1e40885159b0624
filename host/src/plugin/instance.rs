//! A live plugin instance: one `Store`, reused across messages, replaced after a failure.

use std::sync::Arc;

use wasmtime::component::{Instance, Resource};
use wasmtime::{Store, Trap};
use wasmtime_wasi::WasiCtxBuilder;

use super::bindings::{
    Decision, Failure, FailureKind, LogLevel, Verdict, dead_letter_policy, transform,
};
use super::error::{CallError, LimitHit, LoadError};
use super::limits::StoreLimiter;
use super::loader::LoadedPlugin;
use super::log::PluginLog;
use super::message::Message;
use super::runtime::EPOCH_TICK;
use super::state::PluginState;

/// What a transform decided, with the messages it produced.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The messages to pass on: one for `forward`, any number for `fan-out`.
    Forward(Vec<Message>),
    /// The message was dropped on purpose.
    Drop,
    /// The message goes to the dead-letter target.
    DeadLetter {
        /// The message as the plugin left it.
        message: Box<Message>,
        /// The plugin's reason.
        reason: String,
    },
}

/// One instance of a plugin. Not shared between threads: each worker owns its own.
pub struct PluginInstance {
    plugin: Arc<LoadedPlugin>,
    log: Arc<PluginLog>,
    live: Option<Live>,
}

impl std::fmt::Debug for PluginInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginInstance")
            .field("plugin", &self.plugin.spec.name)
            .field("running", &self.live.is_some())
            .finish()
    }
}

struct Live {
    store: Store<PluginState>,
    transform: Option<transform::Guest>,
    policy: Option<dead_letter_policy::Guest>,
}

impl LoadedPlugin {
    /// A new instance, initialised with the plugin's configuration.
    pub fn instantiate(self: &Arc<Self>) -> Result<PluginInstance, LoadError> {
        let limits = &self.spec.limits;
        let mut instance = PluginInstance {
            plugin: Arc::clone(self),
            log: PluginLog::new(
                &self.spec.name,
                limits.log_lines_per_second,
                limits.log_line_bytes,
            ),
            live: None,
        };
        instance.start()?;
        Ok(instance)
    }
}

impl PluginInstance {
    /// The plugin this is an instance of.
    pub fn plugin(&self) -> &Arc<LoadedPlugin> {
        &self.plugin
    }

    /// Runs the transform on `msg`.
    pub fn process(&mut self, msg: Message) -> Result<Outcome, CallError> {
        let (guest, res) = self.lend(msg, "transform", |l| l.transform.as_ref())?;
        let rep = res.rep();
        let verdict = self.call(|store| guest.call_process(store, Resource::new_borrow(rep)))?;
        let Some(live) = self.live.as_mut() else {
            return Err(self.host_error(wasmtime::format_err!("instance vanished")));
        };
        let state = live.store.data_mut();
        state.charges.release(rep);
        let table = &mut state.table;
        let msg = match table.delete(res) {
            Ok(m) => m,
            Err(e) => return Err(self.fail(FailureKind::PluginTrap, format!("{e}"))),
        };
        let outcome = match verdict {
            Verdict::Forward => Outcome::Forward(vec![msg]),
            Verdict::Drop => Outcome::Drop,
            Verdict::DeadLetter(reason) => Outcome::DeadLetter {
                message: Box::new(msg),
                reason,
            },
            Verdict::FanOut(list) => {
                let mut out = Vec::with_capacity(list.len());
                for r in list {
                    if r.rep() == rep {
                        out.push(msg.clone());
                        continue;
                    }
                    let out_rep = r.rep();
                    match table.delete(r) {
                        Ok(m) => {
                            state.charges.release(out_rep);
                            out.push(m)
                        }
                        Err(e) => return Err(self.fail(FailureKind::PluginTrap, format!("{e}"))),
                    }
                }
                Outcome::Forward(out)
            }
        };
        self.check_output(&outcome)?;
        Ok(outcome)
    }

    /// Asks the dead-letter policy what to do with a failed message.
    pub fn decide(&mut self, msg: Message, failure: &Failure) -> Result<Decision, CallError> {
        let (guest, res) = self.lend(msg, "dead-letter-policy", |l| l.policy.as_ref())?;
        let rep = res.rep();
        let decision =
            self.call(|store| guest.call_decide(store, Resource::new_borrow(rep), failure))?;
        if let Some(live) = self.live.as_mut() {
            live.store.data_mut().charges.release(rep);
            let _ = live.store.data_mut().table.delete(res);
        }
        Ok(decision)
    }

    /// Creates the store, instantiates and runs `init`.
    fn start(&mut self) -> Result<(), LoadError> {
        let plugin = &self.plugin;
        let limits = &plugin.spec.limits;
        let wasi = WasiCtxBuilder::new()
            .stdout(self.log.stream(LogLevel::Info))
            .stderr(self.log.stream(LogLevel::Warn))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = PluginState {
            wasi,
            table: Default::default(),
            limiter: StoreLimiter::new(limits),
            limits: limits.clone(),
            log: Arc::clone(&self.log),
            created: 0,
            charges: super::budget::Charges::new(plugin.budget.clone()),
        };
        let mut store = Store::new(&plugin.engine.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(deadline_ticks(limits.timeout_ms));
        let start_error = |e: wasmtime::Error| LoadError::Start {
            name: plugin.spec.name.clone(),
            source: Box::new(classify(&plugin.spec.name, e)),
        };
        let instance: Instance = plugin.pre.instantiate(&mut store).map_err(start_error)?;
        let transform = plugin
            .transform
            .as_ref()
            .map(|i| i.load(&mut store, &instance))
            .transpose()
            .map_err(start_error)?;
        let policy = plugin
            .policy
            .as_ref()
            .map(|i| i.load(&mut store, &instance))
            .transpose()
            .map_err(start_error)?;
        let config = plugin.spec.config.clone();
        let rejected = |reason: String| LoadError::InitRejected {
            name: plugin.spec.name.clone(),
            reason,
        };
        if let Some(t) = &transform {
            store.set_epoch_deadline(deadline_ticks(limits.timeout_ms));
            t.call_init(&mut store, &config)
                .map_err(start_error)?
                .map_err(rejected)?;
        }
        if let Some(p) = &policy {
            store.set_epoch_deadline(deadline_ticks(limits.timeout_ms));
            p.call_init(&mut store, &config)
                .map_err(start_error)?
                .map_err(rejected)?;
        }
        self.live = Some(Live {
            store,
            transform,
            policy,
        });
        Ok(())
    }

    /// The live instance, restarting it after a failure.
    fn live(&mut self) -> Result<&mut Live, CallError> {
        if self.live.is_none() {
            self.start().map_err(|e| match e {
                LoadError::Start { source, .. } => *source,
                other => self.fail(FailureKind::PluginError, other.to_string()),
            })?;
        }
        match self.live.as_mut() {
            Some(live) => Ok(live),
            None => Err(CallError {
                plugin: self.plugin.spec.name.clone(),
                kind: FailureKind::PluginError,
                detail: "instance could not be started".into(),
            }),
        }
    }

    /// Calls into the guest with a fresh deadline; on failure throws the instance away.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let timeout_ms = self.plugin.spec.limits.timeout_ms;
        let Some(live) = self.live.as_mut() else {
            return Err(self.fail(FailureKind::PluginError, "instance is not running".into()));
        };
        live.store.data_mut().created = 0;
        live.store.set_epoch_deadline(deadline_ticks(timeout_ms));
        match f(&mut live.store) {
            Ok(r) => Ok(r),
            Err(e) => {
                self.live = None;
                Err(classify(&self.plugin.spec.name, e))
            }
        }
    }

    fn check_output(&mut self, outcome: &Outcome) -> Result<(), CallError> {
        let limits = &self.plugin.spec.limits;
        let messages: &[Message] = match outcome {
            Outcome::Forward(m) => m,
            Outcome::DeadLetter { message, .. } => std::slice::from_ref(message),
            Outcome::Drop => &[],
        };
        if messages.len() > limits.fan_out as usize {
            return Err(self.fail(
                FailureKind::PluginOutputLimit,
                format!(
                    "{} output messages are more than {}",
                    messages.len(),
                    limits.fan_out
                ),
            ));
        }
        for m in messages {
            if m.size() > limits.output_bytes {
                return Err(self.fail(
                    FailureKind::PluginOutputLimit,
                    format!(
                        "an output message of {} bytes is larger than {} bytes",
                        m.size(),
                        limits.output_bytes
                    ),
                ));
            }
            if m.headers.len() > limits.headers as usize {
                return Err(self.fail(
                    FailureKind::PluginOutputLimit,
                    format!(
                        "{} headers are more than {}",
                        m.headers.len(),
                        limits.headers
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The export `pick` chooses (named `what` in errors) and `msg` placed in the store's
    /// resource table for the call, restarting the instance first if it failed before.
    fn lend<G: Clone>(
        &mut self,
        msg: Message,
        what: &str,
        pick: impl Fn(&Live) -> Option<&G>,
    ) -> Result<(G, Resource<Message>), CallError> {
        let live = self.live()?;
        let Some(guest) = pick(live).cloned() else {
            return Err(self.not_exported(what));
        };
        let size = msg.size();
        let state = live.store.data_mut();
        match state.table.push(msg) {
            Ok(res) => {
                state.charges.lent(res.rep(), size);
                Ok((guest, res))
            }
            Err(e) => Err(self.host_error(e.into())),
        }
    }

    fn not_exported(&self, what: &str) -> CallError {
        CallError {
            plugin: self.plugin.spec.name.clone(),
            kind: FailureKind::PluginError,
            detail: format!("the plugin does not export `{what}`"),
        }
    }

    fn host_error(&mut self, e: wasmtime::Error) -> CallError {
        self.fail(FailureKind::PluginError, format!("{e:#}"))
    }

    /// Throws the instance away and builds an error of this kind.
    fn fail(&mut self, kind: FailureKind, detail: String) -> CallError {
        self.live = None;
        CallError {
            plugin: self.plugin.spec.name.clone(),
            kind,
            detail,
        }
    }
}

/// Epoch ticks for a timeout, rounded up, plus one for the tick already under way.
fn deadline_ticks(timeout_ms: u64) -> u64 {
    let tick = EPOCH_TICK.as_millis() as u64;
    timeout_ms.div_ceil(tick) + 1
}

/// Turns a wasmtime error from a call into a typed failure.
fn classify(plugin: &str, e: wasmtime::Error) -> CallError {
    let (kind, detail) = if let Some(hit) = e.downcast_ref::<LimitHit>() {
        (hit.kind(), hit.to_string())
    } else {
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => (
                FailureKind::PluginTimeout,
                "the call ran past its time limit and was interrupted".to_string(),
            ),
            Some(Trap::StackOverflow) => (
                FailureKind::PluginTrap,
                "stack overflow (the call exceeded its WebAssembly stack limit)".to_string(),
            ),
            Some(trap) => (FailureKind::PluginTrap, format!("trap: {trap}")),
            None => (FailureKind::PluginTrap, format!("{e:#}")),
        }
    };
    CallError {
        plugin: plugin.to_string(),
        kind,
        detail,
    }
}
