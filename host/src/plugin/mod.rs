//! The plugin runtime: WebAssembly components implementing the `bridge:plugin` contract,
//! sandboxed and limited, called once per message.
//!
//! [`PluginRuntime`] compiles and validates components into [`LoadedPlugin`]s; each worker
//! makes its own [`PluginInstance`] from one and calls [`PluginInstance::process`] (transforms)
//! or [`PluginInstance::decide`] (dead-letter policies). A trap, a timeout or a limit hit is a
//! [`CallError`] with a [`FailureKind`]; the failed instance is replaced on the next call.
//!
//! The bridge's plugins live in a [`PluginSet`]: the running versions, which each mapping's
//! chain picks up between two batches, and the candidates staged in shadow beside them
//! ([`StageStats`]).

mod bindings;
mod budget;
mod charges;
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
mod set;
mod stage;
mod state;

pub use bindings::{
    AmqpOrigin, AmqpProperties, AmqpTarget, DeadLetterDecision, DeadLetterTarget, Decision,
    Failure, FailureKind, KafkaOrigin, KafkaTarget, LogLevel, Message, Origin,
    VERSION as CONTRACT_VERSION,
};
pub use budget::HeldBytes;
pub use error::{CallError, LimitError, LimitHit, LoadError, StageError};
pub use instance::PluginInstance;
pub use kind::{KINDS, Kind, KindInfo, Kinds, Outcome};
pub use limits::{MAX_STACK_KIB, PluginLimits};
pub use loader::{DEFAULT_TENANT, Inspection, LoadedPlugin, PluginSpec};
pub use runtime::{PluginRuntime, RuntimeOptions};
pub use set::{PluginSet, Prepared, Rejection, Swap};
pub use stage::{Comparison, Difference, StageCounts, StageStats, StageView, Staged};
