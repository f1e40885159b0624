//! Reading a dead-letter topic back, for `bridge-host replay`: from the replay group's
//! committed position (or the beginning) to the end each partition had when the replay began.
//! A partition's position moves past a record only once every record before it, and the record
//! itself, was replayed or passed over: a record that could not be replayed holds its
//! partition's position, so the next replay reads it again.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use super::{ClusterContext, client_config};
use crate::config::KafkaCluster;
use crate::plugin::Message;

/// How long a metadata or offsets request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong reading a dead-letter topic.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterTopicError {
    /// The consumer could not be made or the broker did not answer.
    #[error("{context}: {source}")]
    Kafka {
        /// What was being done.
        context: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// The cluster has no such topic.
    #[error("topic `{topic}` does not exist on `{cluster}`")]
    NoTopic {
        /// The cluster name.
        cluster: String,
        /// The topic.
        topic: String,
    },
}

fn kafka(context: impl Into<String>) -> impl FnOnce(KafkaError) -> DeadLetterTopicError {
    let context = context.into();
    move |source| DeadLetterTopicError::Kafka { context, source }
}

/// One partition's progress.
#[derive(Debug)]
struct Partition {
    /// The offset the replay stops at: the partition's end when it began.
    end: i64,
    /// The next offset to read.
    next: i64,
    /// The position to commit: every record before it was replayed or passed over.
    settled: i64,
    /// A record was kept: the position stays where it is.
    held: bool,
}

/// Where a record was read: what [`DeadLetterTopic::settle`] takes.
#[derive(Debug, Clone, Copy)]
pub struct RecordAt {
    partition: i32,
    offset: i64,
}

impl std::fmt::Display for RecordAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.partition, self.offset)
    }
}

/// A dead-letter topic being read by a replay.
pub struct DeadLetterTopic {
    consumer: StreamConsumer<ClusterContext>,
    cluster: String,
    topic: String,
    partitions: BTreeMap<i32, Partition>,
}

impl DeadLetterTopic {
    /// Opens `topic` on `[kafka.NAME]` for consumer group `group`, from its committed
    /// positions, or from the beginning with `from_beginning`.
    pub async fn open(
        name: &str,
        cluster: &KafkaCluster,
        topic: &str,
        group: &str,
        from_beginning: bool,
    ) -> Result<Self, DeadLetterTopicError> {
        let consumer: StreamConsumer<ClusterContext> = client_config(cluster)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .create_with_context(ClusterContext::new(name))
            .map_err(kafka(format!(
                "cannot create a Kafka consumer for `{name}`"
            )))?;
        let (consumer, partitions) = tokio::task::spawn_blocking({
            let (name, topic) = (name.to_string(), topic.to_string());
            move || {
                let partitions = start_positions(&consumer, &name, &topic, from_beginning)?;
                Ok::<_, DeadLetterTopicError>((consumer, partitions))
            }
        })
        .await
        .expect("the offsets lookup does not panic")?;
        let mut assignment = TopicPartitionList::new();
        for (p, progress) in &partitions {
            assignment
                .add_partition_offset(topic, *p, Offset::Offset(progress.next))
                .map_err(kafka("cannot assign the topic's partitions"))?;
        }
        consumer
            .assign(&assignment)
            .map_err(kafka("cannot assign the topic's partitions"))?;
        Ok(DeadLetterTopic {
            consumer,
            cluster: name.to_string(),
            topic: topic.to_string(),
            partitions,
        })
    }

    /// Whether every partition was read to its end.
    fn at_end(&self) -> bool {
        self.partitions.values().all(|p| p.next >= p.end)
    }

    /// The next record, or `None` once every partition was read to the end it had when the
    /// replay began. Records past a partition's end are not handed out.
    pub async fn next(
        &mut self,
        idle: Duration,
    ) -> Result<Option<(Message, RecordAt)>, DeadLetterTopicError> {
        loop {
            if self.at_end() {
                return Ok(None);
            }
            let received = tokio::time::timeout(idle, self.consumer.recv()).await;
            let record = match received {
                Ok(Ok(record)) => record,
                Ok(Err(e)) => return Err(kafka(format!("cannot read `{}`", self.topic))(e)),
                // Transaction markers and compaction leave gaps: the position tells.
                Err(_) => {
                    self.catch_up_positions()?;
                    if self.at_end() {
                        return Ok(None);
                    }
                    return Err(DeadLetterTopicError::Kafka {
                        context: format!(
                            "no record of `{}` arrived for {} s before its end",
                            self.topic,
                            idle.as_secs()
                        ),
                        source: KafkaError::NoMessageReceived,
                    });
                }
            };
            let message = super::to_message(&self.cluster, &record);
            let Some(p) = self.partitions.get_mut(&record.partition()) else {
                continue;
            };
            if record.offset() >= p.end {
                p.next = p.next.max(p.end);
                continue;
            }
            p.next = record.offset() + 1;
            let at = RecordAt {
                partition: record.partition(),
                offset: record.offset(),
            };
            return Ok(Some((message, at)));
        }
    }

    /// Moves each partition's read position to the consumer's, past gaps without records.
    fn catch_up_positions(&mut self) -> Result<(), DeadLetterTopicError> {
        let positions = self
            .consumer
            .position()
            .map_err(kafka("cannot read the consumer's positions"))?;
        for e in positions.elements() {
            if let (Some(p), Offset::Offset(o)) =
                (self.partitions.get_mut(&e.partition()), e.offset())
            {
                p.next = p.next.max(o);
            }
        }
        Ok(())
    }

    /// Records the outcome of a record read by [`DeadLetterTopic::next`], in the order read:
    /// `passed` (replayed, or not selected) moves its partition's position past it unless an
    /// earlier record was kept; otherwise the position stays before it.
    pub fn settle(&mut self, at: RecordAt, passed: bool) {
        let Some(p) = self.partitions.get_mut(&at.partition) else {
            return;
        };
        if !passed {
            p.held = true;
        } else if !p.held {
            p.settled = at.offset + 1;
        }
    }

    /// Commits every partition's settled position for the replay group.
    pub async fn commit(&self) -> Result<(), DeadLetterTopicError> {
        let mut offsets = TopicPartitionList::new();
        for (partition, p) in &self.partitions {
            offsets
                .add_partition_offset(&self.topic, *partition, Offset::Offset(p.settled))
                .map_err(kafka("cannot list the offsets to commit"))?;
        }
        let consumer = &self.consumer;
        tokio::task::block_in_place(|| consumer.commit(&offsets, CommitMode::Sync)).map_err(kafka(
            format!("cannot commit the replay's position in `{}`", self.topic),
        ))
    }
}

/// Each partition of `topic` with where the replay starts and ends.
fn start_positions(
    consumer: &StreamConsumer<ClusterContext>,
    cluster: &str,
    topic: &str,
    from_beginning: bool,
) -> Result<BTreeMap<i32, Partition>, DeadLetterTopicError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(kafka(format!("cannot read the metadata of `{topic}`")))?;
    let ids: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if ids.is_empty() {
        return Err(DeadLetterTopicError::NoTopic {
            cluster: cluster.to_string(),
            topic: topic.to_string(),
        });
    }
    let mut wanted = TopicPartitionList::new();
    for p in &ids {
        wanted.add_partition(topic, *p);
    }
    let committed = consumer
        .committed_offsets(wanted, REQUEST_TIMEOUT)
        .map_err(kafka(format!(
            "cannot read the group's offsets in `{topic}`"
        )))?;
    let mut partitions = BTreeMap::new();
    for p in ids {
        let (low, end) = consumer
            .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            .map_err(kafka(format!("cannot read the offsets of `{topic}`/{p}")))?;
        let stored = committed
            .find_partition(topic, p)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        let start = match stored {
            Some(o) if !from_beginning => o.clamp(low, end),
            _ => low,
        };
        partitions.insert(
            p,
            Partition {
                end,
                next: start,
                settled: start,
                held: false,
            },
        );
    }
    Ok(partitions)
}
