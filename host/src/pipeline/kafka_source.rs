//! Consuming a mapping's Kafka topics in a consumer group. An offset is stored only once its
//! message is handled (confirmed by the target, dead-lettered or dropped), in consumption
//! order, so commits advance as a contiguous watermark and a crash never skips a message.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::processor::Processor;
use super::{PipelineError, Shutdown, take_ready};
use crate::config::{KafkaCluster, KafkaSource};

/// Consumer settings the cluster's `properties` may override.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("auto.commit.interval.ms", "1000"),
    ("fetch.wait.max.ms", "10"),
    ("fetch.queue.backoff.ms", "10"),
    ("session.timeout.ms", "10000"),
];

/// Runs until shutdown (then drains and commits) or a fatal error.
pub async fn run(
    mapping: &str,
    cluster: &KafkaCluster,
    source: &KafkaSource,
    max_in_flight: usize,
    processor: &mut Processor,
    shutdown: &mut watch::Receiver<Shutdown>,
) -> Result<(), PipelineError> {
    // Tunables the cluster's `properties` may override; then what the offset watermark relies
    // on, which they may not.
    let consumer: StreamConsumer = crate::kafka::client_config_with(cluster, CONSUMER_DEFAULTS)
        .set("group.id", &source.group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", &source.auto_offset_reset)
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| {
            PipelineError::Source(format!(
                "cannot create a Kafka consumer for `{}`: {e}",
                source.cluster
            ))
        })?;
    let topics: Vec<&str> = source.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| PipelineError::Source(format!("cannot subscribe to {topics:?}: {e}")))?;
    tracing::info!(mapping, topics = ?topics, group = %source.group, "Kafka source started.");
    processor.status().set_connected(true);

    let mut stream = consumer.stream();
    let mut inflight = FuturesOrdered::new();
    let mut watchdog = tokio::time::interval(super::CONNECTION_CHECK);
    let result = loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break Ok(()),
            _ = watchdog.tick() => {
                if let Err(e) = processor.check_sinks() {
                    break Err(PipelineError::Sink(e.0));
                }
            }
            Some(((topic, partition, offset), sent)) = inflight.next(), if !inflight.is_empty() => {
                let topic: String = topic;
                if let Err(e) = processor.settle(sent).await {
                    break Err(PipelineError::Sink(e.0));
                }
                store(&consumer, topic.as_str(), partition, offset);
            }
            received = stream.next(), if inflight.len() < max_in_flight => {
                let mut ready = vec![received];
                take_ready(&mut stream, &mut ready, max_in_flight - inflight.len());
                let mut coordinates = Vec::with_capacity(ready.len());
                let mut batch = Vec::with_capacity(ready.len());
                for received in ready.into_iter().flatten() {
                    match received {
                        Ok(m) => {
                            coordinates.push((m.topic().to_string(), m.partition(), m.offset()));
                            batch.push(crate::kafka::to_message(&source.cluster, &m));
                        }
                        Err(e) => tracing::warn!(mapping, error = %e, "Kafka consume error."),
                    }
                }
                match processor.process_batch(batch).await {
                    Ok(flights) => {
                        for (at, flight) in coordinates.into_iter().zip(flights) {
                            inflight.push_back(async move { (at, flight.await) });
                        }
                    }
                    Err(e) => break Err(PipelineError::Sink(e.0)),
                }
            }
        }
    };
    if result.is_ok() {
        // Graceful: drain what is in flight, then commit.
        let deadline = shutdown.borrow().deadline;
        while let Ok(Some(((topic, partition, offset), sent))) =
            tokio::time::timeout_at(deadline, inflight.next()).await
        {
            if processor.settle(sent).await.is_err() {
                break;
            }
            store(&consumer, topic.as_str(), partition, offset);
        }
        processor.flush(Duration::from_secs(5));
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::warn!(mapping, error = %e, "Final offset commit failed.");
        }
        tracing::info!(mapping, "Kafka source stopped.");
    }
    result
}

use rdkafka::message::Message as _;

/// Stores `offset + 1` (the next to consume) for commit.
fn store(consumer: &StreamConsumer, topic: &str, partition: i32, offset: i64) {
    let mut tpl = TopicPartitionList::new();
    if tpl
        .add_partition_offset(topic, partition, Offset::Offset(offset + 1))
        .is_ok()
        && let Err(e) = consumer.store_offsets(&tpl)
    {
        // The partition was revoked: its new owner re-reads from the last commit.
        tracing::debug!(topic, partition, offset, error = %e, "Offset not stored.");
    }
}
