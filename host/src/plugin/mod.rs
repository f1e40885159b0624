//! The plugin runtime: WebAssembly components implementing the `bridge:plugin` contract,
//! sandboxed and limited, called once per message.
//!
//! [`PluginRuntime`] compiles and validates components into [`LoadedPlugin`]s; each worker
//! makes its own [`PluginInstance`] from one and calls [`PluginInstance::process`] (transforms)
//! or [`PluginInstance::decide`] (dead-letter policies). A trap, a timeout or a limit hit is a
//! [`CallError`] with a [`FailureKind`]; the failed instance is replaced on the next call.

mod bindings;
mod budget;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod instance;
mod kind;
mod limits;
mod loader;
mod log;
mod message;
mod runtime;
mod state;

pub use bindings::{
    AmqpOrigin, AmqpProperties, AmqpTarget, DeadLetterDecision, DeadLetterTarget, Decision,
    Failure, FailureKind, KafkaOrigin, KafkaTarget, LogLevel, Origin, VERSION as CONTRACT_VERSION,
};
pub use budget::HeldBytes;
pub use error::{CallError, LimitHit, LoadError};
pub use instance::PluginInstance;
pub use kind::{KINDS, Kind, KindInfo, Kinds, Outcome};
pub use limits::{MAX_STACK_KIB, PluginLimits};
pub use loader::{Inspection, LoadedPlugin, PluginSpec};
pub use message::Message;
pub use runtime::{PluginRuntime, RuntimeOptions};
