//! Mappings at work: a source (Kafka consumer group or RabbitMQ queue), the plugin chain, and
//! a target, at-least-once. Each mapping runs in its own task and restarts with backoff when
//! a broker connection is lost; unhandled messages are then redelivered, never skipped.

mod amqp_source;
mod breaker;
mod chain;
mod dedup;
mod headers;
mod kafka_group;
mod kafka_source;
mod processor;
mod sink;
mod watermark;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, Stream, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;

pub use chain::{Chain, ChainOutcome, ChainSpec, VERSIONS_HEADER, default_decision};
pub use headers::{HOPS, add_provenance};
pub use kafka_group::{GroupConsumer, GroupKey};
pub use processor::{Processor, ProcessorSettings, Retry, Settlement};
pub use sink::Sink;
pub use workers::{WorkerPool, WorkerPools, default_size as default_workers};

use crate::config::{BridgeConfig, Mapping, Source};
use crate::reload::PluginSet;
use crate::shared::Shared;
use crate::status::MappingStatus;
use crate::telemetry::Event;

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

/// Appends to `batch` what `stream` has ready now, without waiting, until `batch` holds
/// `limit` items (at most [`MAX_BATCH`]). Under load the pipelines thus hand the plugin chain
/// many messages per trip; when idle, a message goes alone and at once.
/// The end of the stream is pushed as `None`, last.
fn take_ready<S: Stream + Unpin>(stream: &mut S, batch: &mut Vec<Option<S::Item>>, limit: usize) {
    while batch.len() < limit.min(MAX_BATCH) {
        match stream.next().now_or_never() {
            Some(Some(item)) => batch.push(Some(item)),
            Some(None) => {
                batch.push(None);
                break;
            }
            None => break,
        }
    }
}

/// Ends a source loop after `e`: while the bridge is stopping, as a graceful stop (what is
/// settled is still committed or acked; the rest is redelivered after the restart).
fn stop_or(shutdown: &watch::Receiver<Shutdown>, e: PipelineError) -> Result<(), PipelineError> {
    if shutdown.borrow().stopping {
        tracing::debug!(error = %e, "Stopping with a message unsettled.");
        Ok(())
    } else {
        Err(e)
    }
}

/// How often an idle mapping checks that its RabbitMQ connections are still open.
const CONNECTION_CHECK: Duration = Duration::from_secs(1);

/// The most messages taken from a source in one go.
const MAX_BATCH: usize = 256;

/// Exponential back-off from `first`, doubling to at most 30 s, with jitter so that mappings
/// (and replicas) that failed together do not retry in lock-step.
pub(crate) fn backoff(first: Duration) -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::new()
        .with_min_delay(first)
        .with_max_delay(Duration::from_secs(30))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Runs one mapping until shutdown, restarting it with backoff after failures.
pub async fn run_mapping(
    config: Arc<BridgeConfig>,
    mapping: Mapping,
    plugins: Arc<PluginSet>,
    shared: Arc<Shared>,
    status: Arc<MappingStatus>,
    mut shutdown: watch::Receiver<Shutdown>,
) {
    let mut backoff = self::backoff(Duration::from_secs(1));
    loop {
        if shutdown.borrow().stopping {
            return;
        }
        let started = Instant::now();
        let result = run_once(&config, &mapping, &plugins, &shared, &status, &mut shutdown).await;
        status.set_connected(false);
        match result {
            Ok(()) => return,
            Err(e) => {
                if shutdown.borrow().stopping {
                    tracing::warn!(mapping = %mapping.name, error = %e, "Mapping stopped while shutting down.");
                    return;
                }
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = self::backoff(Duration::from_secs(1));
                }
                let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                status.set_last_error(e.to_string());
                status.counters.emit(Event::Restarted {
                    error: &e.to_string(),
                    retry_in: delay,
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

async fn run_once(
    config: &BridgeConfig,
    mapping: &Mapping,
    plugins: &Arc<PluginSet>,
    shared: &Shared,
    status: &Arc<MappingStatus>,
    shutdown: &mut watch::Receiver<Shutdown>,
) -> Result<(), PipelineError> {
    let tenant = mapping.tenant();
    let workers = shared
        .workers
        .get(tenant, config.workers(tenant))
        .map_err(|e| PipelineError::Plugin(format!("cannot start plugin workers: {e}")))?;
    let chain = Chain::new(
        ChainSpec {
            mapping: mapping.name.clone(),
            tenant: mapping.tenant().to_string(),
            plugins: Arc::clone(plugins),
            transforms: mapping.plugins.clone(),
            policy: mapping.dead_letter_policy.clone(),
            timers: mapping
                .plugins
                .iter()
                .map(|p| Some(status.counters.plugin_timer(p)))
                .collect(),
            tag_versions: mapping.plugin_versions_header,
        },
        workers,
    )
    .await
    .map_err(|e| PipelineError::Plugin(e.to_string()))?;
    let sink = Sink::open(config, shared, tenant, &mapping.target)
        .await
        .map_err(|e| PipelineError::Sink(e.0))?;
    if let Some((name, connection)) = sink.amqp_connection() {
        status.set_publisher(name, connection);
    }
    let dead_letter = match &mapping.dead_letter {
        Some(dl) => Some(
            Sink::open(config, shared, tenant, &dl.0)
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
        status: Arc::clone(status),
        shutdown: shutdown.clone(),
        breaker: mapping.breaker.map(breaker::Breaker::new),
    };
    let mut processor = Processor::new(settings, chain, sink, dead_letter);
    let result = match &mapping.source {
        Source::Kafka(k) => {
            kafka_source::run(
                &mapping.name,
                shared,
                tenant,
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
                shared,
                tenant,
                &config.rabbitmq[&a.connection],
                a,
                mapping.max_in_flight,
                &mut processor,
                shutdown,
            )
            .await
        }
    };
    processor.close().await;
    result
}
