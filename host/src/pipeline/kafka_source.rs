//! Consuming a mapping's Kafka topics in a consumer group. An offset is stored for commit only
//! once its message and every message before it in its partition is handled (confirmed by the
//! target, dead-lettered or dropped), so commits advance as a contiguous watermark per
//! partition and a crash never skips a message. A message waiting on a retry pauses only its
//! own partition; the others keep flowing. Rebalances are logged, and a revoked partition's
//! in-flight messages are abandoned explicitly (its next owner re-reads them).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::processor::{Processor, Retry, Sent, Settlement};
use super::watermark::{Coordinates, Watermarks};
use super::{PipelineError, Shutdown, stop_or, take_ready};
use crate::config::{KafkaCluster, KafkaSource};
use crate::kafka::ClusterContext;
use crate::status::MappingStatus;
use crate::telemetry::Event;

/// Consumer settings the cluster's `properties` may override.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("auto.commit.interval.ms", "1000"),
    ("fetch.wait.max.ms", "10"),
    ("fetch.queue.backoff.ms", "10"),
    ("session.timeout.ms", "10000"),
    ("heartbeat.interval.ms", "1000"),
    // A fetch on a connection that went silent fails after 10 s (librdkafka: 60 s) and the
    // consumer reconnects.
    ("socket.timeout.ms", "10000"),
    ("partition.assignment.strategy", "cooperative-sticky"),
    // Statistics (consumer lag for `/metrics` and `/status`) every 5 s.
    ("statistics.interval.ms", "5000"),
    // Prefetch at most 16 MiB per consumer (librdkafka's default is 64 MiB): plenty to keep
    // the pipeline busy, and it bounds the bridge's memory.
    ("queued.max.messages.kbytes", "16384"),
];

/// The consumer's context: logs the group's rebalances and hands revoked partitions to the
/// source loop, which abandons their in-flight messages.
struct GroupContext {
    cluster: ClusterContext,
    mapping: String,
    revoked: Arc<Mutex<Vec<(String, i32)>>>,
    status: Arc<MappingStatus>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        self.cluster.log(level, facility, line);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.cluster.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        // Assigned partitions with a known lag (librdkafka reports -1 until it knows).
        let lag: Vec<(String, i32, i64)> = statistics
            .topics
            .iter()
            .flat_map(|(topic, t)| {
                t.partitions
                    .values()
                    .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
                    .map(move |p| (topic.clone(), p.partition, p.consumer_lag))
            })
            .collect();
        self.status.counters.emit(Event::Lag(&lag));
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let parts = partitions(tpl);
                self.status.counters.emit(Event::PartitionsRevoked(&parts));
                if let Ok(mut revoked) = self.revoked.lock() {
                    revoked.extend(parts);
                }
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(mapping = %self.mapping, error = %e, "Kafka rebalance failed.");
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts = partitions(tpl);
            self.status.counters.emit(Event::PartitionsAssigned(&parts));
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

type Consumer_ = StreamConsumer<GroupContext>;

/// Runs until shutdown (then drains and commits) or a fatal error.
pub async fn run(
    mapping: &str,
    cluster: &KafkaCluster,
    source: &KafkaSource,
    max_in_flight: usize,
    processor: &mut Processor,
    shutdown: &mut watch::Receiver<Shutdown>,
) -> Result<(), PipelineError> {
    let revoked = Arc::new(Mutex::new(Vec::new()));
    let context = GroupContext {
        cluster: ClusterContext::new(&source.cluster),
        mapping: mapping.to_string(),
        revoked: Arc::clone(&revoked),
        status: processor.shared_status(),
    };
    // Tunables the cluster's `properties` may override; then what the offset watermark relies
    // on, which they may not.
    let consumer: Consumer_ = crate::kafka::client_config_with(cluster, CONSUMER_DEFAULTS)
        .set("group.id", &source.group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", &source.auto_offset_reset)
        .set("enable.partition.eof", "false")
        .create_with_context(context)
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

    let mut state = SourceState {
        mapping,
        consumer: &consumer,
        watermarks: Watermarks::default(),
        revoked,
        flights: FuturesUnordered::new(),
        retries: FuturesUnordered::new(),
        uncommitted: 0,
        commit_every: (max_in_flight / 2).max(1),
    };
    let mut stream = consumer.stream();
    let mut watchdog = tokio::time::interval(super::CONNECTION_CHECK);
    let result = loop {
        state.abandon_revoked();
        processor
            .status()
            .counters
            .emit(Event::InFlight(state.watermarks.in_flight()));
        // What a crash now would consume again stays within `max_in_flight`: the unsettled
        // messages and the settled ones not yet committed.
        let room = max_in_flight.saturating_sub(state.watermarks.in_flight() + state.uncommitted);
        tokio::select! {
            biased;
            _ = shutdown.changed() => break Ok(()),
            _ = watchdog.tick() => {
                if let Err(e) = processor.check_sinks() {
                    break Err(PipelineError::Sink(e.0));
                }
            }
            Some(first) = state.flights.next(), if !state.flights.is_empty() => {
                if let Err(e) = state.settle_ready(processor, first).await {
                    break stop_or(shutdown, e);
                }
            }
            Some((at, retry)) = state.retries.next(), if !state.retries.is_empty() => {
                if let Err(e) = state.resend(processor, at, retry).await {
                    break stop_or(shutdown, e);
                }
            }
            received = stream.next(), if room > 0 => {
                let mut ready = vec![received];
                take_ready(&mut stream, &mut ready, room);
                let mut coordinates = Vec::with_capacity(ready.len());
                let mut batch = Vec::with_capacity(ready.len());
                for received in ready.into_iter().flatten() {
                    match received {
                        Ok(m) => {
                            coordinates.push(state.watermarks.consumed(m.topic(), m.partition(), m.offset()));
                            batch.push(crate::kafka::to_message(&source.cluster, &m));
                        }
                        Err(e) => tracing::warn!(mapping, error = %e, "Kafka consume error."),
                    }
                }
                match processor.process_batch(batch).await {
                    Ok(flights) => {
                        for (at, flight) in coordinates.into_iter().zip(flights) {
                            state.flights.push(async move { (at, flight.await) }.boxed());
                        }
                    }
                    Err(e) => break stop_or(shutdown, PipelineError::Sink(e.0)),
                }
            }
        }
    };
    if result.is_ok() {
        // Graceful: drain what is in flight (retries still waiting are left for the next
        // owner), then commit.
        let deadline = shutdown.borrow().deadline;
        while let Ok(Some(first)) = tokio::time::timeout_at(deadline, state.flights.next()).await {
            // A message that would need a retry stays unsettled; the others still settle.
            if let Err(e) = state.settle_ready(processor, first).await {
                tracing::debug!(mapping, error = %e, "Left unsettled at shutdown.");
            }
        }
        processor.flush(Duration::from_secs(5));
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::warn!(mapping, error = %e, "Final offset commit failed.");
        }
        tracing::info!(mapping, "Kafka source stopped.");
    }
    result
}

type FlightFuture = futures_util::future::BoxFuture<'static, (Coordinates, Sent)>;
type RetryFuture = futures_util::future::BoxFuture<'static, (Coordinates, Box<Retry>)>;

/// What the source loop tracks besides the consumer stream.
struct SourceState<'a> {
    mapping: &'a str,
    consumer: &'a Consumer_,
    watermarks: Watermarks,
    revoked: Arc<Mutex<Vec<(String, i32)>>>,
    flights: FuturesUnordered<FlightFuture>,
    retries: FuturesUnordered<RetryFuture>,
    /// Messages settled since the last commit: a crash would consume them again, so they
    /// count against `max_in_flight` with the unsettled ones.
    uncommitted: usize,
    /// Commit once this many messages settled (half of `max_in_flight`).
    commit_every: usize,
}

impl SourceState<'_> {
    /// Settles `first` and every other flight already answered, then stores each moved
    /// partition's watermark once.
    async fn settle_ready(
        &mut self,
        processor: &mut Processor,
        first: (Coordinates, Sent),
    ) -> Result<(), PipelineError> {
        let mut next = Some(first);
        let mut result = Ok(());
        while let Some((at, sent)) = next {
            result = self.settle_one(processor, at, sent).await;
            if result.is_err() {
                break;
            }
            next = self.flights.next().now_or_never().flatten();
        }
        self.store_moved();
        result
    }

    async fn settle_one(
        &mut self,
        processor: &mut Processor,
        at: Coordinates,
        sent: Sent,
    ) -> Result<(), PipelineError> {
        if !self.watermarks.is_current(&at) {
            // Revoked meanwhile: the partition's new owner consumes it again.
            return Ok(());
        }
        let was_retry = sent.attempt() > 1;
        let settlement = processor
            .settle(sent)
            .await
            .map_err(|e| PipelineError::Sink(e.0))?;
        match settlement {
            Settlement::Done => {
                self.watermarks.settled(&at);
                self.uncommitted += 1;
                if was_retry && self.watermarks.retrying(&at, false) == 0 {
                    self.pause(&at, false);
                }
            }
            Settlement::RetryAfter(delay, retry) => {
                if !was_retry && self.watermarks.retrying(&at, true) == 1 {
                    self.pause(&at, true);
                }
                self.retries.push(
                    async move {
                        tokio::time::sleep(delay).await;
                        (at, retry)
                    }
                    .boxed(),
                );
            }
        }
        Ok(())
    }

    /// A retry's delay is over: send the refused outputs again.
    async fn resend(
        &mut self,
        processor: &mut Processor,
        at: Coordinates,
        retry: Box<Retry>,
    ) -> Result<(), PipelineError> {
        if !self.watermarks.is_current(&at) {
            return Ok(());
        }
        let flight = processor
            .retry(retry)
            .await
            .map_err(|e| PipelineError::Sink(e.0))?;
        self.flights.push(async move { (at, flight.await) }.boxed());
        Ok(())
    }

    /// While a message waits on a retry its partition is paused: the others keep flowing,
    /// and the partition does not run ahead of it.
    fn pause(&self, at: &Coordinates, pause: bool) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&at.topic, at.partition);
        let result = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        if let Err(e) = result {
            tracing::debug!(mapping = self.mapping, topic = %at.topic, partition = at.partition, error = %e, "Pause or resume failed.");
        }
    }

    /// Stores the next offset of every partition whose watermark moved, in one call.
    fn store_moved(&mut self) {
        let moved = self.watermarks.take_moved();
        if moved.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::with_capacity(moved.len());
        for (topic, partition, next) in &moved {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                tracing::debug!(mapping = self.mapping, error = %e, "Offset not stored.");
            }
        }
        if let Err(e) = self.consumer.store_offsets(&tpl) {
            // A partition was revoked: its new owner re-reads from the last commit.
            tracing::debug!(mapping = self.mapping, error = %e, "Offsets not stored.");
        }
        // Besides the periodic commit (`auto.commit.interval.ms`), commit as soon as half the
        // window settled, so that a crash redelivers at most about `max_in_flight` messages.
        if self.uncommitted >= self.commit_every {
            self.uncommitted = 0;
            if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Async) {
                tracing::debug!(mapping = self.mapping, error = %e, "Offset commit not sent.");
            }
        }
    }

    /// Drops the state of partitions the group took away, logging what was in flight.
    fn abandon_revoked(&mut self) {
        let revoked = match self.revoked.lock() {
            Ok(mut r) if !r.is_empty() => std::mem::take(&mut *r),
            _ => return,
        };
        self.store_moved();
        for (topic, partition) in revoked {
            let abandoned = self.watermarks.revoke(&topic, partition);
            if abandoned.in_flight > 0 {
                tracing::warn!(
                    mapping = self.mapping,
                    topic,
                    partition,
                    in_flight = abandoned.in_flight,
                    committed_up_to = abandoned.next,
                    "Partition revoked with messages in flight; its next owner redelivers them (possible duplicates)."
                );
            }
        }
    }
}
