//! A mapping's RabbitMQ stream target, over the stream protocol. Every message is confirmed
//! by the broker before it counts as delivered.
//!
//! Under `delivery = "exactly-once"` (a Kafka source), each source partition publishes through
//! a producer of its own named `bridge-host.MAPPING.TOPIC.PARTITION`, with the publishing id
//! `offset × 65 536 + i` for the `i`-th message made from the record at `offset`. The broker
//! keeps the last id it stored per producer name and drops a message whose id is not above
//! it: what a crashed or replaced bridge had already written, and is consumed and sent again,
//! is stored once. Ids go out in order: while a record of a partition waits on a retry, the
//! records after it go through the mapping's plain producer, delivered at least once, so that
//! the broker never holds an id above one it has not stored.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rabbitmq_stream_client::error::ProducerPublishError;
use rabbitmq_stream_client::types::Message as StreamMessage;
use rabbitmq_stream_client::{ConfirmationStatus, Dedup, Environment, NoDedup, OnClosed, Producer};
use tokio::sync::{Mutex, oneshot};

use super::convert;
use crate::config::{RabbitConnection, StreamTarget};
use crate::connector::{BoxFuture, Pending, Rejected, Sink, SinkError, refused};
use crate::plugin::{FailureKind, Message, Origin};

/// How long the broker may take to confirm a message before the connection counts as lost.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Messages made from one record that can be deduplicated (the low 16 bits of the id).
const PER_RECORD: u64 = 1 << 16;

/// Publishes a mapping's messages to a RabbitMQ stream.
pub struct StreamSink {
    environment: Environment,
    target: StreamTarget,
    /// The mapping, when its source partitions publish deduplicated (exactly-once).
    dedup_as: Option<String>,
    /// Sends without deduplication.
    plain: Producer<NoDedup>,
    /// Each source partition's named producer.
    named: Mutex<HashMap<(String, i32), Named>>,
    /// A producer's connection closed: the mapping restarts.
    lost: Arc<AtomicBool>,
    /// The largest publish frame the broker takes (0: no limit).
    max_frame: u32,
}

/// Marks the sink lost when a producer's connection closes (what it had not confirmed is
/// sent again after the restart).
struct Lost(Arc<AtomicBool>);

impl OnClosed for Lost {
    fn on_closed<'a, 'b>(
        &'a self,
        _unconfirmed: Vec<StreamMessage>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        self.0.store(true, Ordering::SeqCst);
        Box::pin(std::future::ready(()))
    }
}

/// A source partition's producer and the last message it sent.
struct Named {
    producer: Producer<Dedup>,
    /// The offset of the last record sent, and how many messages it made so far.
    offset: i64,
    made: u64,
    /// The last publishing id sent.
    last: Option<u64>,
}

impl StreamSink {
    /// Connects to `[rabbitmq.NAME]`'s stream port; `dedup_as` names the mapping when it is
    /// exactly-once.
    pub async fn open(
        name: &str,
        conn: &RabbitConnection,
        target: &StreamTarget,
        dedup_as: Option<&str>,
    ) -> Result<Self, SinkError> {
        let environment = super::environment(name, conn).await?;
        let lost = Arc::new(AtomicBool::new(false));
        let plain = environment
            .producer()
            .on_closed(Box::new(Lost(Arc::clone(&lost))))
            .client_provided_name(&format!("bridge-host {}", target.stream))
            .build(&target.stream)
            .await
            .map_err(|e| {
                SinkError::new(format!("cannot publish to stream `{}`", target.stream), e)
            })?;
        let max_frame = plain.max_frame_size().await;
        Ok(StreamSink {
            environment,
            target: target.clone(),
            dedup_as: dedup_as.map(str::to_string),
            plain,
            named: Mutex::new(HashMap::new()),
            lost,
            max_frame,
        })
    }

    /// The producer name of a source partition.
    fn producer_name(mapping: &str, topic: &str, partition: i32) -> String {
        format!("bridge-host.{mapping}.{topic}.{partition}")
    }

    async fn named(
        &self,
        mapping: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Producer<Dedup>, SinkError> {
        let name = Self::producer_name(mapping, topic, partition);
        self.environment
            .producer()
            .name(&name)
            .on_closed(Box::new(Lost(Arc::clone(&self.lost))))
            .client_provided_name(&name)
            .build(&self.target.stream)
            .await
            .map_err(|e| {
                SinkError::new(
                    format!(
                        "cannot publish to stream `{}` as `{name}`",
                        self.target.stream
                    ),
                    e,
                )
            })
    }

    /// A refusal of `message` when no publish frame can hold it: the broker would close the
    /// connection, and the message would be sent again after every restart.
    fn too_large(&self, message: &StreamMessage) -> Option<Pending> {
        let size = rabbitmq_stream_client::publish_frame_size(message);
        (self.max_frame > 0 && size > self.max_frame).then(|| {
            refused(
                FailureKind::TargetRejected,
                format!(
                    "the message takes {size} bytes, more than the {} bytes of a frame of stream `{}` (the broker's `stream.frame_max`)",
                    self.max_frame, self.target.stream
                ),
            )
        })
    }

    /// The broker's answer for one message, as a [`Pending`].
    fn answer(&self) -> (Callback, Pending) {
        let (tx, rx) = oneshot::channel();
        let stream = self.target.stream.clone();
        let pending: Pending = Box::pin(async move {
            match tokio::time::timeout(CONFIRM_TIMEOUT, rx).await {
                Ok(Ok(status)) => status,
                Ok(Err(_)) => Err(Rejected::transient(
                    format!("the connection to stream `{stream}` closed before the confirm"),
                    None,
                )),
                Err(_) => Err(Rejected::transient(
                    format!(
                        "stream `{stream}` did not confirm within {} s",
                        CONFIRM_TIMEOUT.as_secs()
                    ),
                    None,
                )),
            }
        });
        let stream = self.target.stream.clone();
        let callback = move |status: Result<ConfirmationStatus, ProducerPublishError>| {
            let _ = tx.send(confirmed(&stream, status));
            std::future::ready(())
        };
        (Box::new(callback), pending)
    }
}

type Callback = Box<
    dyn FnOnce(Result<ConfirmationStatus, ProducerPublishError>) -> std::future::Ready<()>
        + Send
        + Sync,
>;

/// A confirm as the pipeline sees it. A message the broker dropped as a duplicate is
/// confirmed too: it was stored before.
fn confirmed(
    stream: &str,
    status: Result<ConfirmationStatus, ProducerPublishError>,
) -> Result<(), Rejected> {
    match status {
        Ok(s) if s.confirmed() => Ok(()),
        Ok(s) => Err(Rejected::refused(
            FailureKind::TargetRejected,
            format!("stream `{stream}` refused the message: {:?}", s.status()),
        )),
        Err(e) => Err(Rejected::transient(
            format!("publishing to stream `{stream}` failed"),
            Some(Box::new(e)),
        )),
    }
}

fn send_failed(stream: &str, e: ProducerPublishError) -> SinkError {
    SinkError::new(format!("cannot publish to stream `{stream}`"), e)
}

impl Sink for StreamSink {
    fn send<'a>(&'a self, msg: &'a Message) -> BoxFuture<'a, Result<Pending, SinkError>> {
        Box::pin(async move {
            let stream = &self.target.stream;
            let in_order = !msg.behind_a_retry;
            if let (Some(mapping), Origin::Kafka(k), true) = (&self.dedup_as, &msg.origin, in_order)
            {
                let mut named = self.named.lock().await;
                let key = (k.topic.clone(), k.partition);
                if !named.contains_key(&key) {
                    let producer = self.named(mapping, &k.topic, k.partition).await?;
                    named.insert(
                        key.clone(),
                        Named {
                            producer,
                            offset: -1,
                            made: 0,
                            last: None,
                        },
                    );
                }
                if let Some(entry) = named.get_mut(&key) {
                    let made = if entry.offset == k.offset {
                        entry.made
                    } else {
                        0
                    };
                    let id = u64::try_from(k.offset)
                        .ok()
                        .filter(|_| made < PER_RECORD)
                        .and_then(|o| o.checked_mul(PER_RECORD))
                        .map(|base| base + made)
                        .filter(|id| entry.last.is_none_or(|last| *id > last));
                    if let Some(id) = id {
                        let message = match convert::to_stream(msg, Some(id)) {
                            Ok(m) => m,
                            Err(e) => {
                                return Ok(refused(FailureKind::ConversionError, e.to_string()));
                            }
                        };
                        if let Some(refusal) = self.too_large(&message) {
                            return Ok(refusal);
                        }
                        entry.offset = k.offset;
                        entry.made = made + 1;
                        entry.last = Some(id);
                        let (callback, pending) = self.answer();
                        entry
                            .producer
                            .send(message, callback)
                            .await
                            .map_err(|e| send_failed(stream, e))?;
                        return Ok(pending);
                    }
                    tracing::debug!(stream, topic = %k.topic, partition = k.partition, offset = k.offset, "Out of order for deduplication (a retry): sent at least once.");
                }
            }
            let message = match convert::to_stream(msg, None) {
                Ok(m) => m,
                Err(e) => return Ok(refused(FailureKind::ConversionError, e.to_string())),
            };
            if let Some(refusal) = self.too_large(&message) {
                return Ok(refusal);
            }
            let (callback, pending) = self.answer();
            self.plain
                .send(message, callback)
                .await
                .map_err(|e| send_failed(stream, e))?;
            Ok(pending)
        })
    }

    /// Streams have no publisher flow control the bridge could wait on.
    fn blocked(&self) -> Option<String> {
        None
    }

    fn wait_unblocked(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    fn is_connected(&self) -> bool {
        !self.lost.load(Ordering::SeqCst)
            && !self.plain.is_closed()
            && self.named.try_lock().map_or(true, |named| {
                named.values().all(|n| !n.producer.is_closed())
            })
    }

    /// Confirms are awaited through their futures.
    fn flush(&self, _timeout: Duration) {}

    /// Closes every producer at once (each has its own connection), within `timeout`. Each
    /// is marked closed as its close starts, so none left behind blocks when it is dropped.
    fn close(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let named: Vec<Named> = self.named.lock().await.drain().map(|(_, n)| n).collect();
            let closing = futures_util::future::join_all(
                named
                    .into_iter()
                    .map(|n| Box::pin(n.producer.close()) as BoxFuture<'static, _>)
                    .chain(std::iter::once(
                        Box::pin(self.plain.clone().close()) as BoxFuture<'static, _>
                    )),
            );
            match tokio::time::timeout(timeout, closing).await {
                Ok(results) => {
                    for e in results.into_iter().filter_map(Result::err) {
                        tracing::debug!(error = %e, "Closing a stream producer failed.");
                    }
                }
                Err(_) => {
                    tracing::warn!(stream = %self.target.stream, "Closing the stream producers timed out.");
                }
            }
        })
    }
}

impl std::fmt::Debug for StreamSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSink")
            .field("stream", &self.target.stream)
            .field("dedup_as", &self.dedup_as)
            .finish()
    }
}
