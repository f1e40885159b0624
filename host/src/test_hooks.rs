//! Fault hooks for the end-to-end tests, compiled into debug builds only. Each fires once per
//! process: on the first message that carries the header its environment variable names
//! (`BRIDGE_TEST_POLLER_PANIC=crash`), or, for a hook that sees no message, on its first check
//! once the variable is set.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::plugin::Message;

/// A fault a test can raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `BRIDGE_TEST_POLLER_PANIC`: the poller of a shared Kafka consumer panics.
    PollerPanic,
    /// `BRIDGE_TEST_PANIC_ONCE`: the host panics inside a chain call.
    ChainPanic,
    /// `BRIDGE_TEST_FATAL_PRODUCER`: the Kafka producer raises a fatal error.
    FatalProducer,
    /// `BRIDGE_TEST_MAPPING_PANIC`: the mapping's own task panics as it sends.
    MappingPanic,
    /// `BRIDGE_TEST_PROBE_PANIC`: the Kafka readiness probe panics.
    ProbePanic,
}

impl Hook {
    fn variable(self) -> &'static str {
        match self {
            Hook::PollerPanic => "BRIDGE_TEST_POLLER_PANIC",
            Hook::ChainPanic => "BRIDGE_TEST_PANIC_ONCE",
            Hook::FatalProducer => "BRIDGE_TEST_FATAL_PRODUCER",
            Hook::MappingPanic => "BRIDGE_TEST_MAPPING_PANIC",
            Hook::ProbePanic => "BRIDGE_TEST_PROBE_PANIC",
        }
    }
}

/// Per hook: the header its variable names (read once), and whether it fired.
type State = HashMap<Hook, (Option<String>, bool)>;

/// Whether `hook` fires now: its variable is set, it has not fired yet, and `msg`, if given,
/// carries the header the variable names.
pub fn fires(hook: Hook, msg: Option<&Message>) -> bool {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    let mut state = STATE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let (header, fired) = state
        .entry(hook)
        .or_insert_with(|| (std::env::var(hook.variable()).ok(), false));
    let Some(header) = header else {
        return false;
    };
    if *fired || msg.is_some_and(|m| !m.headers.iter().any(|(k, _)| k == header)) {
        return false;
    }
    *fired = true;
    true
}
