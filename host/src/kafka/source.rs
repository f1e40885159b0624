//! A mapping's Kafka source: its topics in a consumer group, through the consumer it shares
//! with the tenant's other mappings of that cluster and group ([`super::group`]). An offset is
//! stored for commit only once its message and every message before it in its partition is
//! settled, so commits advance as a contiguous watermark per partition
//! ([`super::watermark`]) and a crash never skips a message. A message waiting on a retry
//! pauses only its own partition; the others keep flowing. A revoked partition's messages still
//! in the pipeline are abandoned (its next owner consumes them again).

use std::sync::Arc;

use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use super::group::{Delivery, GroupKey, Lease, Partition};
use super::pool::KafkaClients;
use super::watermark::{Coordinates, Watermarks};
use crate::config::{KafkaCluster, KafkaSource as SourceConfig};
use crate::connector::{Consumed, Received, Source, SourceError, SourceEvents};

/// A mapping's lease on its group consumer, and the settlement state of its partitions.
pub struct KafkaSource {
    mapping: String,
    lease: Lease,
    watermarks: Watermarks,
    /// Messages passed by the watermarks since the last commit (a crash would consume them
    /// again): past `commit_every` they are committed at once.
    uncommitted: usize,
    /// Commit once this many messages settled (half of `max_in_flight`).
    commit_every: usize,
}

impl KafkaSource {
    /// Joins the tenant's consumer for the source's cluster and group.
    pub fn open(
        mapping: &str,
        clients: &KafkaClients,
        tenant: &str,
        cluster: &KafkaCluster,
        source: &SourceConfig,
        max_in_flight: usize,
        events: Arc<dyn SourceEvents>,
    ) -> Result<Self, SourceError> {
        let group = clients
            .group_consumer(GroupKey::of(tenant, source), cluster)
            .map_err(|e| {
                SourceError::new(
                    format!("cannot create a Kafka consumer for `{}`", source.cluster),
                    e,
                )
            })?;
        // Four windows' worth (bounded in bytes too): enough that pausing is rare for a
        // mapping that keeps up.
        let queue = max_in_flight.max(crate::connector::MAX_BATCH) * 4;
        let lease = group.join(mapping, &source.topics, queue, events)?;
        tracing::info!(mapping, topics = ?source.topics, group = %source.group, "Kafka source started.");
        Ok(KafkaSource {
            mapping: mapping.to_string(),
            lease,
            watermarks: Watermarks::default(),
            uncommitted: 0,
            commit_every: (max_in_flight / 2).max(1),
        })
    }

    /// Stores the next offset of every partition whose watermark moved, in one call, and
    /// commits once half the window settled.
    fn store_moved(&mut self) {
        self.uncommitted += self.watermarks.take_passed();
        let moved = self.watermarks.take_moved();
        if moved.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::with_capacity(moved.len());
        for (topic, partition, next) in &moved {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                tracing::debug!(mapping = %self.mapping, error = %e, "Offset not stored.");
            }
        }
        if let Err(e) = self.lease.store_offsets(&tpl) {
            // A partition was revoked: its new owner re-reads from the last commit.
            tracing::debug!(mapping = %self.mapping, error = %e, "Offsets not stored.");
        }
        self.commit_when_due();
    }

    /// Besides the periodic commit (`auto.commit.interval.ms`), asks for a commit as soon as
    /// half the window settled, so that a crash redelivers at most about one and a half windows
    /// (what is unsettled, and what settled since the last commit) and the commit under way.
    fn commit_when_due(&mut self) {
        if self.uncommitted >= self.commit_every {
            self.lease.request_commit();
            self.uncommitted = 0;
        }
    }

    /// Drops the state of partitions the group took away, logging what was in flight.
    fn abandon(&mut self, revoked: &[Partition]) {
        self.store_moved();
        for (topic, partition) in revoked {
            let abandoned = self.watermarks.revoke(topic, *partition);
            if abandoned.in_flight > 0 {
                tracing::warn!(
                    mapping = %self.mapping,
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

impl Source for KafkaSource {
    type Token = Coordinates;

    async fn recv(&mut self, max: usize) -> Result<Received<Coordinates>, SourceError> {
        let Some(first) = self.lease.recv().await else {
            return Err(SourceError::msg("the shared Kafka consumer stopped"));
        };
        let mut received = Received::default();
        let mut next = Some(first);
        while let Some(delivery) = next {
            match delivery {
                Delivery::Message(f) => {
                    match self.watermarks.consumed(&f.topic, f.partition, f.offset) {
                        Some(token) => received.messages.push(Consumed {
                            token,
                            message: f.message,
                        }),
                        None => {
                            tracing::debug!(mapping = %self.mapping, topic = %f.topic, partition = f.partition, offset = f.offset, "Fetched again; already handed out.")
                        }
                    }
                }
                Delivery::Revoked(parts) => {
                    self.abandon(&parts);
                    received.abandoned.extend(parts);
                }
            }
            next = if received.messages.len() < max {
                self.lease.try_recv()
            } else {
                None
            };
        }
        if !received.abandoned.is_empty() {
            // Consumed before their partition was revoked in the same batch: stale already.
            let watermarks = &self.watermarks;
            received
                .messages
                .retain(|c| watermarks.is_current(&c.token));
        }
        Ok(received)
    }

    fn in_flight(&self) -> usize {
        self.watermarks.in_flight()
    }

    fn room(&self, max_in_flight: usize) -> usize {
        // What waits behind a retry does not count: that partition is paused, and what it
        // fetched before must not keep the other partitions from being read.
        let unsettled = self
            .watermarks
            .in_flight()
            .saturating_sub(self.watermarks.held_by_retries());
        max_in_flight.saturating_sub(unsettled)
    }

    fn is_current(&self, token: &Coordinates) -> bool {
        self.watermarks.is_current(token)
    }

    fn settled(&mut self, token: Coordinates) {
        self.watermarks.settled(&token);
    }

    fn retrying(&mut self, token: &Coordinates, waiting: bool) {
        // While a message waits on a retry its partition is paused: the others keep flowing,
        // and the partition does not run ahead of it.
        let count = self.watermarks.retrying(token, waiting);
        if (waiting && count == 1) || (!waiting && count == 0) {
            self.lease
                .pause_for_retry(&token.topic, token.partition, waiting);
        }
    }

    async fn flush(&mut self, _idle: bool) -> Result<(), SourceError> {
        self.store_moved();
        Ok(())
    }

    fn check(&mut self) -> Result<(), SourceError> {
        if self.lease.consumer_failed() {
            return Err(SourceError::msg("the shared Kafka consumer stopped"));
        }
        self.lease.release_held();
        Ok(())
    }

    async fn close(mut self, clean: bool, deadline: Instant) -> Result<(), SourceError> {
        self.store_moved();
        let committed = if clean && Instant::now() < deadline {
            self.lease.commit()
        } else {
            self.lease.request_commit();
            Ok(())
        };
        if clean {
            tracing::info!(mapping = %self.mapping, "Kafka source stopped.");
        }
        // Dropping the source leaves the consumer.
        committed.map_err(|e| SourceError::new("final offset commit failed", e))
    }
}

impl Drop for KafkaSource {
    /// What the mapping did not settle is consumed again: by this mapping when it restarts, by
    /// another claiming its topics, or by the partitions' next owner. On every way out, a panic
    /// included.
    fn drop(&mut self) {
        let resume_at = self.watermarks.resume_points();
        self.lease.leave(resume_at);
    }
}
