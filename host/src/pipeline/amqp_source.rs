//! Consuming a mapping's RabbitMQ queue with manual acknowledgements. A delivery is acked only
//! once it is handled (the Kafka delivery report arrived, or it was dead-lettered or dropped);
//! unacked deliveries return to the queue when the channel closes.

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::sync::watch;

use super::processor::Processor;
use super::{PipelineError, Shutdown, stop_or, take_ready};
use crate::config::{AmqpSource, RabbitConnection};
use crate::shared::{Role, Shared};
use crate::telemetry::Event;

/// Runs until shutdown (then drains and acks) or a fatal error, on a channel of its tenant's
/// consuming connection.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    mapping: &str,
    shared: &Shared,
    tenant: &str,
    conn: &RabbitConnection,
    source: &AmqpSource,
    max_in_flight: usize,
    processor: &mut Processor,
    shutdown: &mut watch::Receiver<Shutdown>,
) -> Result<(), PipelineError> {
    let source_err = |what: &str, e: lapin::Error| PipelineError::Source(format!("{what}: {e}"));
    let connection = shared
        .connection(tenant, &source.connection, conn, Role::Consume)
        .await
        .map_err(|e| PipelineError::Source(e.to_string()))?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| source_err("cannot open a channel", e))?;
    channel
        .basic_qos(source.prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| source_err("cannot set the prefetch", e))?;
    let tag = format!("bridge-host/{mapping}");
    let mut consumer = channel
        .basic_consume(
            source.queue.clone().into(),
            tag.clone().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| source_err(&format!("cannot consume queue `{}`", source.queue), e))?;
    tracing::info!(mapping, queue = %source.queue, prefetch = source.prefetch, "RabbitMQ source started.");
    processor.status().set_connected(true);

    let mut inflight = FuturesOrdered::new();
    // Deliveries settle in delivery order, so acking the newest with `multiple` acks every
    // settled one before it: one ack per batch instead of one per message.
    let mut acks = AckBatch::default();
    let mut watchdog = tokio::time::interval(super::CONNECTION_CHECK);
    let result = loop {
        processor
            .status()
            .counters
            .emit(Event::InFlight(inflight.len()));
        tokio::select! {
            biased;
            _ = shutdown.changed() => break Ok(()),
            _ = watchdog.tick() => {
                if let Err(e) = processor.check_sinks() {
                    break Err(PipelineError::Sink(e.0));
                }
                if !channel.status().connected() {
                    break Err(PipelineError::Source("the RabbitMQ channel closed".to_string()));
                }
            }
            Some((acker, sent)) = inflight.next(), if !inflight.is_empty() => {
                if let Err(e) = processor.settle_in_order(sent).await {
                    break stop_or(shutdown, PipelineError::Sink(e.0));
                }
                if let Err(e) = acks.settled(acker, inflight.is_empty()).await {
                    break Err(e);
                }
            }
            delivery = consumer.next(), if inflight.len() < max_in_flight => {
                let mut ready = vec![delivery];
                take_ready(&mut consumer, &mut ready, max_in_flight - inflight.len());
                let mut failure = None;
                let mut ackers = Vec::with_capacity(ready.len());
                let mut batch = Vec::with_capacity(ready.len());
                for delivery in ready {
                    match delivery {
                        Some(Ok(d)) => {
                            batch.push(crate::amqp::to_message(&source.connection, &source.queue, &d));
                            ackers.push(d.acker);
                        }
                        Some(Err(e)) => {
                            failure = Some(source_err("RabbitMQ consumer failed", e));
                            break;
                        }
                        None => {
                            failure = Some(PipelineError::Source(format!("the consumer of queue `{}` was cancelled", source.queue)));
                            break;
                        }
                    }
                }
                match processor.process_batch(batch).await {
                    Ok(flights) => {
                        for (acker, flight) in ackers.into_iter().zip(flights) {
                            inflight.push_back(async move { (acker, flight.await) });
                        }
                    }
                    Err(e) => break stop_or(shutdown, PipelineError::Sink(e.0)),
                }
                if let Some(e) = failure {
                    break Err(e);
                }
            }
        }
    };
    if result.is_ok() {
        let _ = tokio::time::timeout(
            CLOSE_TIMEOUT,
            channel.basic_cancel(tag.into(), BasicCancelOptions::default()),
        )
        .await;
        let deadline = shutdown.borrow().deadline;
        while let Ok(Some((acker, sent))) = tokio::time::timeout_at(deadline, inflight.next()).await
        {
            if processor.settle_in_order(sent).await.is_err()
                || acks.settled(acker, inflight.is_empty()).await.is_err()
            {
                break;
            }
        }
        processor.flush(std::time::Duration::from_secs(5));
    }
    // On every path, graceful or not: acknowledge what was settled, then close the channel
    // (what is unacknowledged returns to the queue; the shared connection closes when its last
    // mapping lets go). Each step is bounded, as a dead connection may never answer.
    if result.is_ok() {
        let _ = acks.flush().await;
    } else {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, acks.flush()).await;
    }
    let (code, why) = match &result {
        Ok(()) => (200, "bridge shutting down"),
        Err(_) => (320, "bridge mapping restarting"),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, channel.close(code, why.into())).await;
    drop(connection);
    tracing::info!(mapping, "RabbitMQ source stopped.");
    result
}

/// Settled deliveries not yet acknowledged.
#[derive(Default)]
struct AckBatch {
    newest: Option<lapin::Acker>,
    count: usize,
}

/// Acknowledge at least every this many deliveries (RabbitMQ's advice: 5–10 % of prefetch
/// or more often; the batch is also flushed whenever nothing else is in flight).
const ACK_EVERY: usize = 50;

/// How long closing a channel or connection may take.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long an ack may take before the connection counts as lost.
const ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl AckBatch {
    async fn settled(&mut self, acker: lapin::Acker, idle: bool) -> Result<(), PipelineError> {
        self.newest = Some(acker);
        self.count += 1;
        if idle || self.count >= ACK_EVERY {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), PipelineError> {
        self.count = 0;
        let Some(acker) = self.newest.take() else {
            return Ok(());
        };
        // An ack on a connection that died without lapin noticing may never complete: give
        // up after a while and let the mapping reconnect (the deliveries come back).
        match tokio::time::timeout(ACK_TIMEOUT, acker.ack(BasicAckOptions { multiple: true })).await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(PipelineError::Source(format!("ack failed: {e}"))),
            Err(_) => Err(PipelineError::Source(format!(
                "no answer to an ack within {} s",
                ACK_TIMEOUT.as_secs()
            ))),
        }
    }
}
