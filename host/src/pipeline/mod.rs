//! Mappings at work: a source (Kafka consumer group or RabbitMQ queue), the plugin chain, and
//! a target, at-least-once. Each mapping runs in its own task and restarts with backoff when
//! a broker connection is lost; unhandled messages are then redelivered, never skipped.

mod amqp_source;
mod chain;
mod dedup;
mod headers;
mod kafka_source;
mod processor;
mod sink;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

pub use chain::{Chain, default_decision};
pub use headers::{HOPS, add_provenance};
pub use processor::{Processor, ProcessorSettings};
pub use sink::Sink;

use crate::config::{BridgeConfig, Mapping, Source};
use crate::plugin::LoadedPlugin;

/// Why a mapping stopped running.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The source failed (connection lost, queue missing, …).
    #[error("source: {0}")]
    Source(String),
    /// The target failed as a whole.
    #[error("target: {0}")]
    Sink(String),
    /// A plugin could not be started.
    #[error("{0}")]
    Plugin(String),
}

/// The shutdown signal: `stopping` flips once; in-flight messages may drain until `deadline`.
#[derive(Debug, Clone, Copy)]
pub struct Shutdown {
    /// Set when the bridge is stopping.
    pub stopping: bool,
    /// When draining must end.
    pub deadline: Instant,
}

/// Runs one mapping until shutdown, restarting it with backoff after failures.
pub async fn run_mapping(
    config: Arc<BridgeConfig>,
    mapping: Mapping,
    plugins: Arc<HashMap<String, Arc<LoadedPlugin>>>,
    mut shutdown: watch::Receiver<Shutdown>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        if shutdown.borrow().stopping {
            return;
        }
        let started = Instant::now();
        match run_once(&config, &mapping, &plugins, &mut shutdown).await {
            Ok(()) => return,
            Err(e) => {
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_secs(1);
                }
                tracing::error!(mapping = %mapping.name, error = %e, retry_in_ms = backoff.as_millis() as u64, "Mapping stopped; restarting.");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn run_once(
    config: &BridgeConfig,
    mapping: &Mapping,
    plugins: &HashMap<String, Arc<LoadedPlugin>>,
    shutdown: &mut watch::Receiver<Shutdown>,
) -> Result<(), PipelineError> {
    let transforms: Vec<_> = mapping
        .plugins
        .iter()
        .map(|p| Arc::clone(&plugins[p]))
        .collect();
    let policy = mapping.dead_letter_policy.as_ref().map(|p| &plugins[p]);
    let chain = Chain::new(&mapping.name, &transforms, policy)
        .map_err(|e| PipelineError::Plugin(e.to_string()))?;
    let sink = Sink::open(config, &mapping.target)
        .await
        .map_err(|e| PipelineError::Sink(e.0))?;
    let dead_letter = match &mapping.dead_letter {
        Some(dl) => Some(
            Sink::open(config, &dl.0)
                .await
                .map_err(|e| PipelineError::Sink(format!("dead-letter target: {}", e.0)))?,
        ),
        None => None,
    };
    let settings = ProcessorSettings {
        mapping: mapping.name.clone(),
        provenance: mapping.provenance_headers,
        hop_limit: mapping.hop_limit,
        dedup: mapping.dedup.as_ref().map(dedup::Dedup::new),
    };
    let mut processor = Processor::new(settings, chain, sink, dead_letter);
    match &mapping.source {
        Source::Kafka(k) => {
            kafka_source::run(
                &mapping.name,
                &config.kafka[&k.cluster],
                k,
                mapping.max_in_flight,
                &mut processor,
                shutdown,
            )
            .await
        }
        Source::Amqp(a) => {
            amqp_source::run(
                &mapping.name,
                &config.rabbitmq[&a.connection],
                a,
                mapping.max_in_flight,
                &mut processor,
                shutdown,
            )
            .await
        }
    }
}
