//! The plugin runtime: wasmtime engines, the epoch ticker that bounds call time, the linker
//! with the sandboxed WASI and the `bridge:plugin` imports, and the compiled-code cache.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Cache, CacheConfig, Config, Engine};

use super::bindings::TransformerAndPolicy;
use super::error::LoadError;
use super::state::PluginState;

/// How often the epoch advances; call deadlines are counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Options of the whole plugin runtime.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Directory for compiled code, keyed by content hash; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
}

/// One engine and its linker. Engines differ only by their WebAssembly stack cap, which
/// wasmtime fixes per engine.
#[derive(Clone)]
pub(crate) struct EngineHandle {
    pub(crate) engine: Engine,
    pub(crate) linker: Arc<Linker<PluginState>>,
    /// Keeps the epoch ticker running while any plugin of this engine is alive.
    _ticker: Arc<Mutex<Vec<Engine>>>,
}

/// Compiles, validates and instantiates plugins. Cheap to clone.
#[derive(Clone)]
pub struct PluginRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    options: RuntimeOptions,
    cache: Option<Cache>,
    engines: Mutex<HashMap<u32, EngineHandle>>,
    ticker: Arc<Mutex<Vec<Engine>>>,
    /// Each tenant's budget of held message bytes, shared by all its plugins.
    budgets: Mutex<HashMap<String, Arc<super::budget::HeldBytes>>>,
}

impl PluginRuntime {
    /// A runtime with these options. Starts the epoch ticker thread.
    pub fn new(options: RuntimeOptions) -> Result<Self, LoadError> {
        let cache = match &options.cache_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    LoadError::Engine(format!(
                        "cannot create cache directory `{}`: {e}",
                        dir.display()
                    ))
                })?;
                let mut config = CacheConfig::new();
                config.with_directory(dir);
                Some(Cache::new(config).map_err(|e| LoadError::Engine(format!("{e:#}")))?)
            }
            None => None,
        };
        let ticker: Arc<Mutex<Vec<Engine>>> = Arc::default();
        let weak = Arc::downgrade(&ticker);
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || tick(weak))
            .map_err(|e| LoadError::Engine(format!("cannot start the epoch thread: {e}")))?;
        Ok(PluginRuntime {
            inner: Arc::new(Inner {
                options,
                cache,
                engines: Mutex::default(),
                ticker,
                budgets: Mutex::default(),
            }),
        })
    }

    /// The runtime's options.
    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.options
    }

    /// The held-bytes budget of `tenant` with `limit`, shared by all its plugins (a new limit
    /// starts a new budget).
    pub fn budget(&self, tenant: &str, limit: u64) -> Arc<super::budget::HeldBytes> {
        let Ok(mut budgets) = self.inner.budgets.lock() else {
            return Arc::new(super::budget::HeldBytes::new(tenant, limit));
        };
        let entry = budgets
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(super::budget::HeldBytes::new(tenant, limit)));
        if entry.limit() != limit {
            *entry = Arc::new(super::budget::HeldBytes::new(tenant, limit));
        }
        Arc::clone(entry)
    }

    /// Compiled-code cache hits so far (0 without a cache).
    pub fn cache_hits(&self) -> usize {
        self.inner.cache.as_ref().map_or(0, Cache::cache_hits)
    }

    /// The engine for plugins with this stack cap, created on first use.
    pub(crate) fn engine(&self, stack_kib: u32) -> Result<EngineHandle, LoadError> {
        let mut engines = self.inner.engines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(handle) = engines.get(&stack_kib) {
            return Ok(handle.clone());
        }
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .concurrency_support(false)
            .max_wasm_stack(stack_kib as usize * 1024)
            .cache(self.inner.cache.clone());
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        TransformerAndPolicy::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let handle = EngineHandle {
            engine: engine.clone(),
            linker: Arc::new(linker),
            _ticker: Arc::clone(&self.inner.ticker),
        };
        self.inner
            .ticker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(engine);
        engines.insert(stack_kib, handle.clone());
        Ok(handle)
    }
}

/// Advances every engine's epoch each tick until the runtime and all its plugins are dropped.
fn tick(engines: Weak<Mutex<Vec<Engine>>>) {
    while let Some(engines) = engines.upgrade() {
        for engine in engines.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            engine.increment_epoch();
        }
        drop(engines);
        std::thread::sleep(EPOCH_TICK);
    }
}
