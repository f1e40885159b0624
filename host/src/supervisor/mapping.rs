//! One mapping at work: its plugin chain, target and source opened for a run, driven by the
//! pipeline, and restarted with back-off when a run fails (a lost connection, a panic):
//! what it had not settled is then consumed again, never skipped. This is the one place that
//! knows both the brokers and the pipeline.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::clients::Clients;
use crate::amqp::{AmqpSink, AmqpSource};
use crate::config::{
    BridgeConfig, Delivery, Mapping, RabbitConnection, Source, Target, TargetAllowlist,
};
use crate::connector::{Sink, SinkError, SourceEvents};
use crate::kafka::{KafkaSink, KafkaSource, Transaction, TransactionalSource, transactional_id};
use crate::pipeline::{
    self, Chain, ChainSpec, PipelineError, Processor, ProcessorSettings, Shutdown,
};
use crate::plugin::PluginSet;
use crate::status::MappingStatus;
use crate::stream::{StreamSink, StreamSource};
use crate::telemetry::Event;

/// Runs one mapping until shutdown, restarting it with backoff after failures.
pub async fn run_mapping(
    config: Arc<BridgeConfig>,
    mapping: Mapping,
    plugins: Arc<PluginSet>,
    clients: Arc<Clients>,
    status: Arc<MappingStatus>,
    mut shutdown: watch::Receiver<Shutdown>,
) {
    let mut backoff = pipeline::backoff(Duration::from_secs(1));
    loop {
        if shutdown.borrow().stopping {
            return;
        }
        let started = Instant::now();
        // A panic anywhere in the run restarts the mapping like any other failure.
        let once = run_once(
            &config,
            &mapping,
            &plugins,
            &clients,
            &status,
            &mut shutdown,
        );
        let result = std::panic::AssertUnwindSafe(once)
            .catch_unwind()
            .await
            .unwrap_or_else(|p| {
                Err(PipelineError::Panicked(
                    pipeline::panic_message(p.as_ref()).to_string(),
                ))
            });
        status.set_connected(false);
        let Err(e) = result else {
            return;
        };
        let error = pipeline::error_text(&e);
        if shutdown.borrow().stopping {
            tracing::warn!(mapping = %mapping.name, error, "Mapping stopped while shutting down.");
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = pipeline::backoff(Duration::from_secs(1));
        }
        let delay = backoff.next().unwrap_or(Duration::from_secs(30));
        status.set_last_error(error.clone());
        status.counters.emit(Event::Restarted {
            error: &error,
            retry_in: delay,
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn run_once(
    config: &BridgeConfig,
    mapping: &Mapping,
    plugins: &Arc<PluginSet>,
    clients: &Clients,
    status: &Arc<MappingStatus>,
    shutdown: &mut watch::Receiver<Shutdown>,
) -> Result<(), PipelineError> {
    let tenant = mapping.tenant();
    let workers = clients
        .workers
        .get(tenant, config.workers(tenant))
        .map_err(PipelineError::Workers)?;
    let chain = Chain::new(
        ChainSpec {
            mapping: mapping.name.clone(),
            tenant: tenant.to_string(),
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
    .await?;
    // Exactly-once: one transaction for the outputs, the dead letters and the offsets.
    let transaction = match (&mapping.delivery, &mapping.source) {
        (Delivery::ExactlyOnce, Source::Kafka(k)) => {
            let id = transactional_id(&mapping.name, &k.group);
            let started = Transaction::start(&k.cluster, &config.kafka[&k.cluster], &id).await;
            Some(Arc::new(started.map_err(|e| {
                SinkError::new(format!("cannot start Kafka transactions as `{id}`"), e)
            })?))
        }
        _ => None,
    };
    let tx = transaction.as_ref();
    let sink = open_sink(config, clients, mapping, tx, &mapping.target).await?;
    status.set_publisher(&sink);
    let dead_letter = match &mapping.dead_letter {
        Some(dl) => Some(
            open_sink(config, clients, mapping, tx, &dl.0)
                .await
                .map_err(|e| SinkError {
                    context: format!("dead-letter target: {}", e.context),
                    source: e.source,
                })?,
        ),
        None => None,
    };
    let settings = ProcessorSettings {
        mapping: mapping.name.clone(),
        provenance: mapping.provenance_headers,
        hop_limit: mapping.hop_limit,
        dedup: mapping.dedup.as_ref().map(pipeline::Dedup::new),
        status: Arc::clone(status),
        shutdown: shutdown.clone(),
        breaker: mapping.breaker.map(pipeline::Breaker::new),
    };
    let mut processor = Processor::new(settings, chain, sink, dead_letter);
    let max_in_flight = mapping.max_in_flight;
    let result = match &mapping.source {
        Source::Kafka(k) if let Some(transaction) = transaction => {
            let events: Arc<dyn SourceEvents> = Arc::clone(status) as _;
            let source = TransactionalSource::open(
                &mapping.name,
                &config.kafka[&k.cluster],
                k,
                max_in_flight,
                events,
                transaction,
            );
            match source {
                Ok(source) => {
                    pipeline::drive(source, &mut processor, max_in_flight, shutdown).await
                }
                Err(e) => Err(e.into()),
            }
        }
        Source::Kafka(k) => {
            let events: Arc<dyn SourceEvents> = Arc::clone(status) as _;
            let source = KafkaSource::open(
                &mapping.name,
                &clients.kafka,
                tenant,
                &config.kafka[&k.cluster],
                k,
                max_in_flight,
                events,
            );
            match source {
                Ok(source) => {
                    pipeline::drive(source, &mut processor, max_in_flight, shutdown).await
                }
                Err(e) => Err(e.into()),
            }
        }
        Source::Amqp(a) => {
            let conn = &config.rabbitmq[&a.connection];
            let opened = AmqpSource::open(
                &mapping.name,
                &clients.amqp,
                tenant,
                conn,
                a,
                mapping.amqp_properties,
            );
            match opened.await {
                Ok(source) => {
                    pipeline::drive(source, &mut processor, max_in_flight, shutdown).await
                }
                Err(e) => Err(e.into()),
            }
        }
        Source::Stream(s) => {
            let conn = connection(config, &s.connection)?;
            match StreamSource::open(&mapping.name, &s.connection, conn, s, max_in_flight).await {
                Ok(source) => {
                    pipeline::drive(source, &mut processor, max_in_flight, shutdown).await
                }
                Err(e) => Err(e.into()),
            }
        }
    };
    let stop = *shutdown.borrow();
    let limit = match stop.stopping {
        true => pipeline::time_left(stop.deadline, Duration::from_secs(2)),
        false => Duration::from_secs(2),
    };
    processor.close(limit).await;
    result
}

/// Opens `target` of `mapping`: in its `transaction` under exactly-once (a Kafka target),
/// deduplicated under exactly-once (a RabbitMQ stream), else on its tenant's shared clients.
async fn open_sink(
    config: &BridgeConfig,
    clients: &Clients,
    mapping: &Mapping,
    transaction: Option<&Arc<Transaction>>,
    target: &Target,
) -> Result<Arc<dyn Sink>, SinkError> {
    let tenant = mapping.tenant();
    let allowlist = config.target_allowlist(tenant);
    if let (Some(transaction), Target::Kafka(k)) = (transaction, target) {
        return Ok(Arc::new(KafkaSink::transactional(
            transaction,
            k,
            allowlist,
        )));
    }
    if let (Delivery::ExactlyOnce, Target::Stream(s)) = (&mapping.delivery, target) {
        let conn = connection(config, &s.connection)?;
        let sink = StreamSink::open(&s.connection, conn, s, Some(&mapping.name));
        return Ok(Arc::new(sink.await?));
    }
    open_target(
        config,
        clients,
        tenant,
        allowlist,
        mapping.amqp_properties,
        target,
    )
    .await
}

/// Opens `target` on `tenant`'s shared clients: what a plugin or a header chooses is checked
/// against `allowlist`; with `amqp_properties`, carried `amqp_*` headers become AMQP
/// properties again. The target's cluster or connection must be in `config`.
pub async fn open_target(
    config: &BridgeConfig,
    clients: &Clients,
    tenant: &str,
    allowlist: TargetAllowlist,
    amqp_properties: bool,
    target: &Target,
) -> Result<Arc<dyn Sink>, SinkError> {
    Ok(match target {
        Target::Amqp(t) => {
            let conn = connection(config, &t.connection)?;
            let sink = AmqpSink::open(&clients.amqp, tenant, conn, t, allowlist, amqp_properties);
            Arc::new(sink.await?)
        }
        Target::Stream(t) => {
            let conn = connection(config, &t.connection)?;
            Arc::new(StreamSink::open(&t.connection, conn, t, None).await?)
        }
        Target::Kafka(t) => {
            let cluster = config
                .kafka
                .get(&t.cluster)
                .ok_or_else(|| SinkError::msg(format!("no cluster `[kafka.{}]`", t.cluster)))?;
            Arc::new(KafkaSink::open(
                &clients.kafka,
                tenant,
                cluster,
                t,
                allowlist,
            )?)
        }
    })
}

/// `[rabbitmq.NAME]` of `config`.
fn connection<'a>(config: &'a BridgeConfig, name: &str) -> Result<&'a RabbitConnection, SinkError> {
    config
        .rabbitmq
        .get(name)
        .ok_or_else(|| SinkError::msg(format!("no connection `[rabbitmq.{name}]`")))
}
