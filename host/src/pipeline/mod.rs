//! One mapping's messages at work, whatever the brokers: a [`Source`](crate::connector::Source)
//! driven by one loop ([`drive`]), the processor (dedup, hop limit, circuit breaker, plugin
//! chain, dead-letter policy) and a [`Sink`](crate::connector::Sink), at-least-once. Nothing
//! here knows a broker: they sit behind the seam in [`crate::connector`].

mod breaker;
mod chain;
mod dead_letter;
mod dedup;
mod drive;
mod processor;
mod workers;

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

pub use breaker::Breaker;
pub use chain::{
    Chain, ChainBroken, ChainOutcome, ChainSpec, HOPS, VERSIONS_HEADER, add_provenance,
    default_decision, hops, set_hops,
};
pub use dead_letter::{DEAD_LETTER_CONTEXT, origin_from_coordinates};
pub use dedup::Dedup;
pub use drive::drive;
pub use processor::{Processor, ProcessorSettings, Retry, Settlement};
pub use workers::{WorkerPool, WorkerPools, panic_message};

use crate::connector::{Rejected, SinkError, SourceError};

/// Why a mapping's run ended.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The source failed (connection lost, queue missing, …).
    #[error("source: {0}")]
    Source(#[from] SourceError),
    /// The target failed as a whole.
    #[error("target: {0}")]
    Sink(#[from] SinkError),
    /// The target's connection failed with a message under way.
    #[error("target: {0}")]
    Lost(#[source] Rejected),
    /// The tenant's plugin worker threads could not be started.
    #[error("cannot start plugin workers")]
    Workers(#[source] std::io::Error),
    /// A plugin could not be started.
    #[error("{0}")]
    Plugin(#[from] crate::plugin::LoadError),
    /// The plugin chain broke (a host panic): fresh instances are needed.
    #[error("plugin chain: {0}")]
    Chain(#[from] ChainBroken),
    /// The mapping panicked.
    #[error("the mapping panicked: {0}")]
    Panicked(String),
    /// The bridge is stopping: what was being waited on is left unsettled, for redelivery.
    #[error("the bridge is stopping; the message is left for redelivery")]
    Stopping,
}

/// An error and its causes on one line, as the status and the log show them.
pub fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// The shutdown signal: `stopping` flips once; in-flight messages may drain until `deadline`.
#[derive(Debug, Clone, Copy)]
pub struct Shutdown {
    /// Set when the bridge is stopping.
    pub stopping: bool,
    /// When draining must end.
    pub deadline: Instant,
}

/// Ends a run after `e`: while the bridge is stopping, as a graceful stop (what is settled is
/// still committed or acked; the rest is redelivered after the restart).
fn stop_or(shutdown: &watch::Receiver<Shutdown>, e: PipelineError) -> Result<(), PipelineError> {
    if shutdown.borrow().stopping {
        tracing::debug!(error = %e, "Stopping with a message unsettled.");
        Ok(())
    } else {
        Err(e)
    }
}

/// How long a step after the drain may take: at most `most`, and while the bridge is stopping
/// only what is left until its deadline (and a moment to close).
pub fn time_left(deadline: Instant, most: Duration) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100))
        .min(most)
}

/// How often an idle mapping checks that its source and targets are still connected.
const CONNECTION_CHECK: Duration = Duration::from_secs(1);

/// How long closing a source may take after a failed run.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Exponential back-off from `first`, doubling to at most 30 s, with jitter so that mappings
/// (and replicas) that failed together do not retry in lock-step.
pub fn backoff(first: Duration) -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::new()
        .with_min_delay(first)
        .with_max_delay(Duration::from_secs(30))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}
