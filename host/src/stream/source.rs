//! A mapping's RabbitMQ stream source, over the stream protocol. The broker stores the
//! consumer's offset under its name, and only ever up to a settled message: the offset before
//! the first message still in flight, every second and whenever the pipeline is idle. A
//! restarted mapping reads on from there; a consumer name the broker has no offset for starts
//! where `offset` says.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use rabbitmq_stream_client::types::{OffsetSpecification, ResponseCode};
use rabbitmq_stream_client::{Client, Consumer, Environment};
use tokio::time::Instant;

use super::convert;
use crate::config::{RabbitConnection, StreamOffset, StreamSource as SourceConfig};
use crate::connector::{Consumed, Received, Source, SourceError, take_ready};

/// Store the offset at least this often while messages settle.
const STORE_EVERY: Duration = Duration::from_secs(1);

/// How long the broker may take to answer a query or a close.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A mapping's consumer of its stream.
pub struct StreamSource {
    mapping: String,
    /// `[rabbitmq.NAME]` and the stream, for the messages' origin.
    connection_name: String,
    stream: String,
    consumer: Consumer,
    /// The first offset this run reads (the broker may deliver a chunk from before it).
    start: Option<u64>,
    /// Offsets handed out and not yet settled.
    unsettled: BTreeSet<u64>,
    /// The last offset handed out.
    last: Option<u64>,
    /// The offset last stored, and when.
    stored: Option<u64>,
    stored_at: Instant,
    /// A failure met while a batch was taken: reported by the next `recv`.
    failed: Option<SourceError>,
    /// Kept for the consumer's connection.
    _environment: Environment,
}

impl StreamSource {
    /// Subscribes to the stream from the offset stored under the consumer's name, or where the
    /// configuration says for a new name; at most `buffer` deliveries wait to be taken.
    pub async fn open(
        mapping: &str,
        name: &str,
        conn: &RabbitConnection,
        source: &SourceConfig,
        buffer: usize,
    ) -> Result<Self, SourceError> {
        let consumer_name = source
            .consumer
            .clone()
            .unwrap_or_else(|| format!("bridge-host.{mapping}"));
        let options = super::options(name, conn)?;
        let stored =
            stored_offset(name, conn, options.clone(), &consumer_name, &source.stream).await?;
        let environment = Environment::from_client_option(options)
            .await
            .map_err(|e| super::unreachable(name, conn, e))?;
        let (spec, start) = match stored {
            Some(offset) => (OffsetSpecification::Offset(offset + 1), Some(offset + 1)),
            None => (
                match source.offset {
                    StreamOffset::First => OffsetSpecification::First,
                    StreamOffset::Last => OffsetSpecification::Last,
                    StreamOffset::Next => OffsetSpecification::Next,
                    StreamOffset::Timestamp(ms) => OffsetSpecification::Timestamp(ms),
                },
                None,
            ),
        };
        let consumer = environment
            .consumer()
            .name(&consumer_name)
            .offset(spec)
            // What waits to be taken stays within the mapping's window, as a queue's prefetch.
            .buffer(buffer)
            .client_provided_name(&format!("bridge-host {mapping}"))
            .build(&source.stream)
            .await
            .map_err(|e| {
                SourceError::new(format!("cannot consume stream `{}`", source.stream), e)
            })?;
        tracing::info!(mapping, stream = %source.stream, consumer = %consumer_name, from = ?stored.map(|o| o + 1), "RabbitMQ stream source started.");
        Ok(StreamSource {
            mapping: mapping.to_string(),
            connection_name: name.to_string(),
            stream: source.stream.clone(),
            consumer,
            start,
            unsettled: BTreeSet::new(),
            last: None,
            stored,
            stored_at: Instant::now(),
            failed: None,
            _environment: environment,
        })
    }

    /// The offset up to which everything read has settled: before the first one in flight
    /// (what comes before it was settled, or is before where this consumer started).
    fn settled_up_to(&self) -> Option<u64> {
        match self.unsettled.first() {
            Some(first) => first.checked_sub(1),
            None => self.last,
        }
    }

    async fn store(&mut self) -> Result<(), SourceError> {
        let Some(offset) = self.settled_up_to() else {
            return Ok(());
        };
        if self.stored.is_some_and(|s| s >= offset) {
            return Ok(());
        }
        match tokio::time::timeout(ANSWER_TIMEOUT, self.consumer.store_offset(offset)).await {
            Ok(Ok(())) => {
                self.stored = Some(offset);
                self.stored_at = Instant::now();
                Ok(())
            }
            Ok(Err(e)) => Err(SourceError::new(
                format!("cannot store the offset of stream `{}`", self.stream),
                e,
            )),
            Err(_) => Err(SourceError::msg(format!(
                "storing the offset of stream `{}` took more than {} s",
                self.stream,
                ANSWER_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// The offset the broker stored for `consumer` on `stream`, if any.
async fn stored_offset(
    name: &str,
    conn: &RabbitConnection,
    options: rabbitmq_stream_client::ClientOptions,
    consumer: &str,
    stream: &str,
) -> Result<Option<u64>, SourceError> {
    let query = async {
        let client = Client::connect(options)
            .await
            .map_err(|e| SourceError::from(super::unreachable(name, conn, e)))?;
        let answer = client.query_offset(consumer.to_string(), stream).await;
        let _ = client.close().await;
        match answer {
            Ok(offset) => Ok(Some(offset)),
            Err(rabbitmq_stream_client::error::ClientError::RequestError(
                ResponseCode::OffsetNotFound,
            )) => Ok(None),
            Err(e) => Err(SourceError::new(
                format!("cannot read the stored offset of `{consumer}` on stream `{stream}`"),
                e,
            )),
        }
    };
    tokio::time::timeout(ANSWER_TIMEOUT, query)
        .await
        .map_err(|_| {
            SourceError::msg(format!(
                "reading the stored offset of `{consumer}` on stream `{stream}` took more than {} s",
                ANSWER_TIMEOUT.as_secs()
            ))
        })?
}

impl Source for StreamSource {
    type Token = u64;

    async fn recv(&mut self, max: usize) -> Result<Received<u64>, SourceError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let first = self.consumer.next().await;
        let mut ready = vec![first];
        take_ready(&mut self.consumer, &mut ready, max);
        let mut received = Received::default();
        for delivery in ready {
            let failure = match delivery {
                Some(Ok(d)) => {
                    let offset = d.offset();
                    // Before where this run starts, or seen already (a chunk read again).
                    if self.start.is_some_and(|s| offset < s)
                        || self.last.is_some_and(|l| offset <= l)
                    {
                        continue;
                    }
                    let message =
                        convert::from_stream(&self.connection_name, &self.stream, d.message());
                    self.unsettled.insert(offset);
                    self.last = Some(offset);
                    received.messages.push(Consumed {
                        token: offset,
                        message,
                    });
                    continue;
                }
                Some(Err(e)) => {
                    SourceError::new(format!("reading stream `{}` failed", self.stream), e)
                }
                None => {
                    SourceError::msg(format!("the consumer of stream `{}` closed", self.stream))
                }
            };
            if received.messages.is_empty() {
                return Err(failure);
            }
            self.failed = Some(failure);
            break;
        }
        Ok(received)
    }

    fn in_flight(&self) -> usize {
        self.unsettled.len()
    }

    fn room(&self, max_in_flight: usize) -> usize {
        max_in_flight.saturating_sub(self.unsettled.len())
    }

    fn is_current(&self, _: &u64) -> bool {
        true
    }

    fn settled(&mut self, token: u64) {
        self.unsettled.remove(&token);
    }

    /// A stream has no per-message redelivery: the message waits in the pipeline, and the
    /// offset stays before it.
    fn retrying(&mut self, _: &u64, _: bool) {}

    async fn flush(&mut self, idle: bool) -> Result<(), SourceError> {
        if idle || self.stored_at.elapsed() >= STORE_EVERY {
            self.store().await?;
        }
        Ok(())
    }

    fn check(&mut self) -> Result<(), SourceError> {
        if self.consumer.is_closed() {
            Err(SourceError::msg(format!(
                "the consumer of stream `{}` closed",
                self.stream
            )))
        } else {
            Ok(())
        }
    }

    async fn close(mut self, clean: bool, deadline: Instant) -> Result<(), SourceError> {
        let limit = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(100), ANSWER_TIMEOUT);
        let stored = if clean {
            match tokio::time::timeout(limit, self.store()).await {
                Ok(result) => result,
                Err(_) => Err(SourceError::msg("storing the offset timed out")),
            }
        } else {
            Ok(())
        };
        let handle = self.consumer.handle();
        if tokio::time::timeout(limit, handle.close()).await.is_err() {
            tracing::debug!(mapping = %self.mapping, stream = %self.stream, "Closing the stream consumer timed out.");
        }
        stored
    }
}
