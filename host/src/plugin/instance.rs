//! A live plugin instance: one `Store`, reused across messages, replaced after a failure.

use std::sync::Arc;

use wasmtime::component::{Instance, Resource};
use wasmtime::{Store, Trap};
use wasmtime_wasi::WasiCtxBuilder;

use super::bindings::{FailureKind, LogLevel, Message, dead_letter_policy, transform};
use super::error::{CallError, LimitHit, LoadError};
use super::limits::StoreLimiter;
use super::loader::LoadedPlugin;
use super::log::PluginLog;
use super::runtime::EPOCH_TICK;
use super::state::PluginState;

/// One instance of a plugin. Not shared between threads: each worker owns its own.
pub struct PluginInstance {
    plugin: Arc<LoadedPlugin>,
    log: Arc<PluginLog>,
    pub(in crate::plugin) live: Option<Live>,
}

impl std::fmt::Debug for PluginInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginInstance")
            .field("plugin", &self.plugin.spec.name)
            .field("running", &self.live.is_some())
            .finish()
    }
}

pub(in crate::plugin) struct Live {
    pub(in crate::plugin) store: Store<PluginState>,
    pub(in crate::plugin) transform: Option<transform::Guest>,
    pub(in crate::plugin) policy: Option<dead_letter_policy::Guest>,
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
            charges: super::charges::Charges::new(plugin.budget.clone()),
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
    pub(in crate::plugin) fn call<R>(
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

    /// The export `pick` chooses (named `what` in errors) and `msg` placed in the store's
    /// resource table for the call, restarting the instance first if it failed before.
    pub(in crate::plugin) fn lend<G: Clone>(
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

    pub(in crate::plugin) fn host_error(&mut self, e: wasmtime::Error) -> CallError {
        self.fail(FailureKind::PluginError, format!("{e:#}"))
    }

    /// Throws the instance away and builds an error of this kind.
    pub(in crate::plugin) fn fail(&mut self, kind: FailureKind, detail: String) -> CallError {
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
