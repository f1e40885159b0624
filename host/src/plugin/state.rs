//! What one plugin instance's store holds, and the `host` import it answers (`log`).

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::LogLevel;
use super::bindings::bridge::plugin::host;
use super::limits::{PluginLimits, StoreLimiter};
use super::log::PluginLog;

/// The data of a plugin instance's `Store`.
pub struct PluginState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: StoreLimiter,
    pub(crate) limits: PluginLimits,
    pub(crate) log: Arc<PluginLog>,
    /// Messages the guest created during the current call.
    pub(crate) created: u32,
    /// Message bytes charged to the tenant's budget.
    pub(crate) charges: super::charges::Charges,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host::Host for PluginState {
    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.log.write(level, &message);
        Ok(())
    }
}
