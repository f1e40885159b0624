//! Errors of the plugin runtime: loading a component, and calling one.

use std::path::PathBuf;

use super::bindings::FailureKind;

/// A plugin could not be loaded or instantiated.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin `{name}` from `{path}`: {source}")]
    Read {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a WebAssembly component.
    #[error("plugin `{name}` (`{path}`) {problem}")]
    NotAComponent {
        name: String,
        path: PathBuf,
        problem: String,
    },
    /// The component failed to compile (truncated or invalid binary).
    #[error("plugin `{name}` (`{path}`) is not a valid component: {detail}")]
    Invalid {
        name: String,
        path: PathBuf,
        detail: String,
    },
    /// The component does not export a compatible `bridge:plugin` interface.
    #[error("plugin `{name}` (`{path}`) {problem}")]
    Exports {
        name: String,
        path: PathBuf,
        problem: String,
    },
    /// The component imports something the host does not provide.
    #[error("plugin `{name}` (`{path}`) imports {detail}")]
    Imports {
        name: String,
        path: PathBuf,
        detail: String,
    },
    /// The plugin's limits are out of range.
    #[error("plugin `{name}`: {source}")]
    Limits {
        name: String,
        #[source]
        source: LimitError,
    },
    /// The plugin's `init` rejected its configuration.
    #[error("plugin `{name}` rejected its configuration: {reason}")]
    InitRejected { name: String, reason: String },
    /// The plugin failed while being instantiated or initialised.
    #[error("plugin `{name}` failed to start: {source}")]
    Start {
        name: String,
        #[source]
        source: Box<CallError>,
    },
    /// The wasmtime engine could not be created.
    #[error("cannot create the WebAssembly engine: {0}")]
    Engine(String),
}

/// A plugin limit out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A limit that must be positive is 0.
    #[error("limit `{0}` must be greater than 0")]
    Zero(&'static str),
    /// A limit above what the host allows.
    #[error("limit `{name}` is {value}, at most {max} is allowed")]
    TooLarge {
        /// The limit's key.
        name: &'static str,
        /// Its value.
        value: u64,
        /// The most allowed.
        max: u64,
    },
}

/// A stage cannot end as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    /// Promote with no candidate staged.
    #[error("nothing is staged: stage a candidate first")]
    NothingStaged,
    /// Roll back with neither a stage nor a promotion to undo.
    #[error("nothing to roll back: no stage and no promotion")]
    NothingToRollBack,
}

/// A call into a plugin failed. The instance that failed has been thrown away; the next
/// call gets a fresh one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin `{plugin}` failed ({kind}): {detail}")]
pub struct CallError {
    /// The plugin's name in the configuration.
    pub plugin: String,
    /// What went wrong, as the dead-letter policy sees it.
    pub kind: FailureKind,
    /// The error text.
    pub detail: String,
}

/// A limit hit while a plugin ran, raised as a trap by the host and recognised afterwards.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LimitHit {
    /// Linear memory would grow past the cap.
    #[error("memory limit of {limit} bytes exceeded (wanted {wanted} bytes)")]
    Memory { limit: u64, wanted: u64 },
    /// A table would grow past the cap.
    #[error("table limit of {limit} elements exceeded (wanted {wanted})")]
    Table { limit: u64, wanted: u64 },
    /// Output larger than allowed.
    #[error("output limit exceeded: {0}")]
    Output(String),
    /// The tenant's plugins would hold more message bytes than its budget.
    #[error(
        "tenant `{tenant}` would hold {wanted} bytes of messages, more than its `held_bytes` = {limit}"
    )]
    Held {
        /// The tenant.
        tenant: String,
        /// Its budget.
        limit: u64,
        /// What it would hold.
        wanted: u64,
    },
}

impl LimitHit {
    /// The failure kind this limit maps to.
    pub fn kind(&self) -> FailureKind {
        match self {
            LimitHit::Memory { .. } | LimitHit::Table { .. } | LimitHit::Held { .. } => {
                FailureKind::PluginMemoryLimit
            }
            LimitHit::Output(_) => FailureKind::PluginOutputLimit,
        }
    }
}
