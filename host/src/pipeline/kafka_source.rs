//! Consuming a mapping's Kafka topics in a consumer group, through the consumer it shares with
//! the tenant's other mappings of that cluster and group ([`super::kafka_group`]). An offset is stored for commit only
//! once its message and every message before it in its partition is handled (confirmed by the
//! target, dead-lettered or dropped), so commits advance as a contiguous watermark per
//! partition and a crash never skips a message. A message waiting on a retry pauses only its
//! own partition; the others keep flowing. Rebalances are logged, and a revoked partition's
//! in-flight messages are abandoned explicitly (its next owner re-reads them).

use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use rdkafka::consumer::CommitMode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::kafka_group::{Delivery, GroupKey, Lease, Partition};
use super::processor::{Processor, Retry, Sent, Settlement};
use super::watermark::{Coordinates, Watermarks};
use super::{MAX_BATCH, PipelineError, Shutdown, stop_or};
use crate::config::{KafkaCluster, KafkaSource};
use crate::shared::Shared;
use crate::telemetry::Event;

/// Runs until shutdown (then drains and commits) or a fatal error.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    mapping: &str,
    shared: &Shared,
    tenant: &str,
    cluster: &KafkaCluster,
    source: &KafkaSource,
    max_in_flight: usize,
    processor: &mut Processor,
    shutdown: &mut watch::Receiver<Shutdown>,
) -> Result<(), PipelineError> {
    let group = shared
        .group_consumer(GroupKey::of(tenant, source), cluster)
        .map_err(|e| {
            PipelineError::Source(format!(
                "cannot create a Kafka consumer for `{}`: {e}",
                source.cluster
            ))
        })?;
    let lease = group
        .join(
            mapping,
            &source.topics,
            // Four windows' worth (bounded in bytes too): enough that pausing is rare for a
            // mapping that keeps up.
            max_in_flight.max(MAX_BATCH) * 4,
            processor.shared_status(),
        )
        .map_err(PipelineError::Source)?;
    tracing::info!(mapping, topics = ?source.topics, group = %source.group, "Kafka source started.");
    processor.status().set_connected(true);

    let mut state = SourceState {
        mapping,
        lease,
        watermarks: Watermarks::default(),
        flights: FuturesUnordered::new(),
        retries: FuturesUnordered::new(),
        uncommitted: 0,
        commit_every: (max_in_flight / 2).max(1),
    };
    let mut watchdog = tokio::time::interval(super::CONNECTION_CHECK);
    let result = loop {
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
                state.lease.release_held();
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
            Some(first) = state.lease.recv(), if room > 0 => {
                let mut coordinates = Vec::new();
                let mut batch = Vec::new();
                let mut next = Some(first);
                while let Some(delivery) = next {
                    match delivery {
                        Delivery::Message(f) => {
                            coordinates.push(state.watermarks.consumed(&f.topic, f.partition, f.offset));
                            batch.push(f.message);
                        }
                        Delivery::Revoked(parts) => state.abandon(parts),
                    }
                    next = if batch.len() < room.min(MAX_BATCH) {
                        state.lease.try_recv()
                    } else {
                        None
                    };
                }
                if batch.is_empty() {
                    continue;
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
        state.store_moved();
        if let Err(e) = state.lease.commit(CommitMode::Sync) {
            tracing::warn!(mapping, error = %e, "Final offset commit failed.");
        }
        tracing::info!(mapping, "Kafka source stopped.");
    } else {
        state.store_moved();
        if let Err(e) = state.lease.commit(CommitMode::Async) {
            tracing::debug!(mapping, error = %e, "Offset commit not sent.");
        }
    }
    // What it did not settle is consumed again: by this mapping when it restarts, by another
    // claiming its topics, or by the partitions' next owner.
    let resume_at = state.watermarks.resume_points();
    state.lease.leave(resume_at);
    result
}

type FlightFuture = futures_util::future::BoxFuture<'static, (Coordinates, Sent)>;
type RetryFuture = futures_util::future::BoxFuture<'static, (Coordinates, Box<Retry>)>;

/// What the source loop tracks besides the consumer stream.
struct SourceState<'a> {
    mapping: &'a str,
    lease: Lease,
    watermarks: Watermarks,
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
        self.lease.pause_for_retry(&at.topic, at.partition, pause);
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
        if let Err(e) = self.lease.store_offsets(&tpl) {
            // A partition was revoked: its new owner re-reads from the last commit.
            tracing::debug!(mapping = self.mapping, error = %e, "Offsets not stored.");
        }
        // Besides the periodic commit (`auto.commit.interval.ms`), commit as soon as half the
        // window settled, so that a crash redelivers at most about `max_in_flight` messages.
        if self.uncommitted >= self.commit_every {
            self.uncommitted = 0;
            if let Err(e) = self.lease.commit(CommitMode::Async) {
                tracing::debug!(mapping = self.mapping, error = %e, "Offset commit not sent.");
            }
        }
    }

    /// Drops the state of partitions the group took away, logging what was in flight.
    fn abandon(&mut self, revoked: Vec<Partition>) {
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
