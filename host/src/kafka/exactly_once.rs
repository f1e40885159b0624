//! A mapping's Kafka source under `delivery = "exactly-once"`: a consumer of its own
//! (`read_committed`, nothing committed by itself) whose offsets commit inside the mapping's
//! transaction ([`super::transaction`]), together with everything the mapping produced from
//! the messages before them.
//!
//! A transaction commits when everything consumed in it has settled — so that what it holds
//! and the offsets it commits cover the same messages — and at the latest once
//! `max_in_flight` messages or [`COMMIT_INTERVAL`] have gone into it: then the source takes
//! nothing more until the messages in flight settle and the commit is done. When the group
//! takes a partition away, the open transaction is aborted and every partition is read again
//! from where the transaction began (what the pipeline still holds of it is abandoned).
//! A failed commit or abort restarts the mapping; the next producer with the same
//! `transactional.id` fences this one and aborts what it left open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use super::group::{CONSUMER_DEFAULTS, Partition, known_lag, partitions};
use super::transaction::Transaction;
use super::watermark::{Coordinates, Watermarks};
use super::{ClusterContext, client_config_with};
use crate::config::{KafkaCluster, KafkaSource as SourceConfig};
use crate::connector::{Consumed, Received, Source, SourceError, SourceEvents};

/// The longest a transaction stays open while messages flow.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(200);

/// Rebalance events, for the source to act on between messages.
struct Context {
    cluster: ClusterContext,
    events: Arc<dyn SourceEvents>,
    revoked: Mutex<Vec<Partition>>,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        self.cluster.log(level, facility, line);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.cluster.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        self.events.lag(&known_lag(&statistics, |_| true));
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts = partitions(tpl);
            self.events.revoked(&parts);
            self.revoked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(parts);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.events.assigned(&partitions(tpl));
        }
    }
}

/// A mapping's exactly-once Kafka source.
pub struct TransactionalSource {
    mapping: String,
    cluster: String,
    consumer: StreamConsumer<Context>,
    transaction: Arc<Transaction>,
    watermarks: Watermarks,
    /// The offsets the open transaction commits: the next offset of each partition.
    offsets: HashMap<(Arc<str>, i32), i64>,
    /// The first offset of each partition consumed in the open transaction: where reading
    /// starts again when it is aborted.
    began_at: HashMap<(Arc<str>, i32), i64>,
    /// Messages settled in the open transaction.
    settled: usize,
    /// When the open transaction took its first message.
    since: Option<Instant>,
    /// Commit once this many messages went into the open transaction.
    commit_every: usize,
    /// Partitions abandoned by an abort outside `recv`, for the next `recv` to hand over.
    abandoned: Vec<(String, i32)>,
}

impl TransactionalSource {
    /// Subscribes a consumer of its own to the source's topics, in its group.
    pub fn open(
        mapping: &str,
        cluster: &KafkaCluster,
        source: &SourceConfig,
        max_in_flight: usize,
        events: Arc<dyn SourceEvents>,
        transaction: Arc<Transaction>,
    ) -> Result<Self, SourceError> {
        let context = Context {
            cluster: ClusterContext::new(&source.cluster),
            events,
            revoked: Mutex::new(Vec::new()),
        };
        let consumer: StreamConsumer<Context> = client_config_with(cluster, CONSUMER_DEFAULTS)
            .set("group.id", &source.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", &source.auto_offset_reset)
            .set("enable.partition.eof", "false")
            .create_with_context(context)
            .map_err(|e| {
                SourceError::new(
                    format!("cannot create a Kafka consumer for `{}`", source.cluster),
                    e,
                )
            })?;
        let topics: Vec<&str> = source.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| SourceError::new("cannot subscribe to the source topics", e))?;
        tracing::info!(mapping, topics = ?source.topics, group = %source.group, "Kafka source started (exactly-once).");
        Ok(TransactionalSource {
            mapping: mapping.to_string(),
            cluster: source.cluster.clone(),
            consumer,
            transaction,
            watermarks: Watermarks::default(),
            offsets: HashMap::new(),
            began_at: HashMap::new(),
            settled: 0,
            since: None,
            commit_every: max_in_flight.max(1),
            abandoned: Vec::new(),
        })
    }

    /// Whether the open transaction should commit now: nothing more is taken until it has.
    fn due(&self) -> bool {
        self.settled + self.watermarks.in_flight() >= self.commit_every
            || self.since.is_some_and(|t| t.elapsed() >= COMMIT_INTERVAL)
    }

    /// Whether the group took partitions away since the source last looked (the rebalance
    /// is served while reading; a read cut short by the pipeline leaves it unhandled).
    fn revocation_pending(&self) -> bool {
        !self
            .consumer
            .context()
            .revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Aborts now for a pending revocation; the next `recv` hands the abandoned partitions
    /// to the pipeline.
    fn abort_for_revocation(&mut self) -> Result<(), SourceError> {
        let revoked = self.take_revoked();
        let abandoned = self.abort(&revoked)?;
        self.abandoned.extend(abandoned);
        Ok(())
    }

    fn take_revoked(&self) -> Vec<Partition> {
        std::mem::take(
            &mut *self
                .consumer
                .context()
                .revoked
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Aborts the open transaction and reads every partition again from where it began (but
    /// those in `revoked`, now another member's): everything consumed in it is abandoned.
    fn abort(&mut self, revoked: &[Partition]) -> Result<Vec<(String, i32)>, SourceError> {
        self.transaction
            .abort()
            .map_err(|e| SourceError::new("cannot abort the Kafka transaction", e))?;
        let mut abandoned = Vec::new();
        for (topic, partition) in self.watermarks.partitions() {
            let gone = self.watermarks.revoke(&topic, partition);
            if gone.in_flight > 0 {
                tracing::info!(mapping = %self.mapping, %topic, partition, in_flight = gone.in_flight, "Kafka transaction aborted; its messages are read again.");
            }
            abandoned.push((topic.to_string(), partition));
        }
        // Every partition still (or again) assigned is read again from where the transaction
        // began in it: one revoked and assigned back in the same rebalance too.
        let assigned = self
            .consumer
            .assignment()
            .map_err(|e| SourceError::new("cannot read the consumer's assignment", e))?;
        let mut rewind = TopicPartitionList::new();
        for ((topic, partition), offset) in self.began_at.drain() {
            if assigned.find_partition(&topic, partition).is_some()
                && let Err(e) =
                    rewind.add_partition_offset(&topic, partition, Offset::Offset(offset))
            {
                tracing::debug!(error = %e, "Partition not rewound.");
            }
        }
        if rewind.count() > 0 {
            let consumer = &self.consumer;
            let sought = tokio::task::block_in_place(|| {
                consumer.seek_partitions(rewind, Duration::from_secs(10))
            })
            .map_err(|e| SourceError::new("cannot read the aborted messages again", e))?;
            if let Some(e) = sought.elements().iter().find_map(|e| e.error().err()) {
                return Err(SourceError::new(
                    "cannot read the aborted messages again",
                    e,
                ));
            }
        }
        self.offsets.clear();
        self.settled = 0;
        self.since = None;
        abandoned.extend(revoked.iter().cloned());
        Ok(abandoned)
    }

    /// Adds what the watermarks passed to the open transaction's offsets.
    fn absorb(&mut self) {
        self.settled += self.watermarks.take_passed();
        for (topic, partition, next) in self.watermarks.take_moved() {
            self.offsets.insert((topic, partition), next);
        }
    }

    /// Commits the open transaction with its offsets.
    async fn commit(&mut self) -> Result<(), SourceError> {
        let mut tpl = TopicPartitionList::with_capacity(self.offsets.len());
        for ((topic, partition), next) in &self.offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(|e| SourceError::new("cannot list the offsets to commit", e))?;
        }
        let group = self
            .consumer
            .group_metadata()
            .ok_or_else(|| SourceError::msg("the consumer has no group metadata"))?;
        self.transaction
            .commit(tpl, group)
            .await
            .map_err(|e| SourceError::new("cannot commit the Kafka transaction", e))?;
        self.offsets.clear();
        self.began_at.clear();
        self.settled = 0;
        self.since = None;
        Ok(())
    }
}

impl Source for TransactionalSource {
    type Token = Coordinates;

    async fn recv(&mut self, max: usize) -> Result<Received<Coordinates>, SourceError> {
        if !self.abandoned.is_empty() {
            return Ok(Received {
                messages: Vec::new(),
                abandoned: std::mem::take(&mut self.abandoned),
            });
        }
        let revoked = self.take_revoked();
        if !revoked.is_empty() {
            return Ok(Received {
                messages: Vec::new(),
                abandoned: self.abort(&revoked)?,
            });
        }
        let first = self
            .consumer
            .recv()
            .await
            .map_err(|e| SourceError::new("cannot read the source topics", e))?;
        let mut batch = vec![super::to_message(&self.cluster, &first)];
        drop(first);
        while batch.len() < max {
            match self.consumer.recv().now_or_never() {
                Some(Ok(m)) => batch.push(super::to_message(&self.cluster, &m)),
                Some(Err(e)) => return Err(SourceError::new("cannot read the source topics", e)),
                None => break,
            }
        }
        // Read in this transaction: an abort reads it again.
        for message in &batch {
            if let crate::plugin::Origin::Kafka(k) = &message.origin {
                let at = self
                    .began_at
                    .entry((Arc::from(k.topic.as_str()), k.partition))
                    .or_insert(k.offset);
                *at = (*at).min(k.offset);
            }
        }
        // A revocation seen while reading: what was read goes with the aborted transaction.
        let revoked = self.take_revoked();
        if !revoked.is_empty() {
            return Ok(Received {
                messages: Vec::new(),
                abandoned: self.abort(&revoked)?,
            });
        }
        let mut received = Received::default();
        for message in batch {
            let crate::plugin::Origin::Kafka(k) = &message.origin else {
                continue;
            };
            let Some(token) = self.watermarks.consumed(&k.topic, k.partition, k.offset) else {
                continue;
            };
            self.since.get_or_insert_with(Instant::now);
            received.messages.push(Consumed { token, message });
        }
        Ok(received)
    }

    fn in_flight(&self) -> usize {
        self.watermarks.in_flight()
    }

    fn room(&self, max_in_flight: usize) -> usize {
        // Abandoned partitions are handed over, and revocations handled, by `recv`.
        if !self.abandoned.is_empty() || self.revocation_pending() {
            return 1;
        }
        if self.due() {
            return 0;
        }
        let in_flight = self.watermarks.in_flight();
        let window = max_in_flight.saturating_sub(in_flight);
        window.min(self.commit_every.saturating_sub(self.settled + in_flight))
    }

    fn is_current(&self, token: &Coordinates) -> bool {
        self.watermarks.is_current(token)
    }

    fn settled(&mut self, token: Coordinates) {
        self.watermarks.settled(&token);
    }

    fn retrying(&mut self, _token: &Coordinates, _waiting: bool) {
        // The transaction waits for it: nothing is committed past it.
    }

    async fn flush(&mut self, _idle: bool) -> Result<(), SourceError> {
        self.absorb();
        // Never commit a transaction that holds messages of partitions taken away.
        if self.revocation_pending() {
            return self.abort_for_revocation();
        }
        // Everything consumed in the transaction settled: what it produced and the offsets
        // it commits cover the same messages.
        if self.watermarks.in_flight() == 0 && !self.offsets.is_empty() {
            self.commit().await?;
        }
        Ok(())
    }

    fn check(&mut self) -> Result<(), SourceError> {
        if self.transaction.failed() {
            return Err(SourceError::msg(
                "the transactional producer failed (fenced by another with its id?)",
            ));
        }
        Ok(())
    }

    async fn close(mut self, clean: bool, _deadline: Instant) -> Result<(), SourceError> {
        self.absorb();
        let committable = !self.revocation_pending()
            && self.watermarks.in_flight() == 0
            && !self.offsets.is_empty();
        let result = if clean && committable {
            self.commit().await
        } else {
            self.transaction
                .abort()
                .map_err(|e| SourceError::new("cannot abort the Kafka transaction", e))
        };
        if clean {
            tracing::info!(mapping = %self.mapping, "Kafka source stopped.");
        }
        result
    }
}
