//! A mapping's RabbitMQ source: its queue, consumed with manual acknowledgements on a channel of
//! its tenant's consuming connection. A delivery is acked only once it is settled, and an ack
//! never covers a delivery that is not: the settled run at the front is acked with `multiple`
//! (in batches), a delivery settled behind an unsettled one (waiting on a retry) on its own.
//! Unacked deliveries return to the queue when the channel closes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::time::Instant;

use super::pool::{Connections, Pooled, Role};
use crate::config::{AmqpSource as SourceConfig, RabbitConnection};
use crate::connector::{Consumed, Received, Source, SourceError, take_ready};

/// Acknowledge at least every this many deliveries (RabbitMQ's advice: 5–10 % of prefetch
/// or more often; the batch is also flushed whenever nothing else is in flight).
const ACK_EVERY: usize = 50;

/// How long closing a channel or cancelling a consumer may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an ack may take before the connection counts as lost.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// A mapping's consumer of its queue.
pub struct AmqpSource {
    mapping: String,
    /// `[rabbitmq.NAME]` and the queue, for the messages' origin.
    connection_name: String,
    queue: String,
    /// The tenant's consuming connection, shared with its other mappings.
    connection: Arc<Pooled>,
    channel: lapin::Channel,
    consumer: lapin::Consumer,
    tag: String,
    acks: Acks,
    /// A failure met while a batch was taken: reported by the next `recv`.
    failed: Option<SourceError>,
    /// AMQP properties are also carried as `amqp_*` headers.
    properties_as_headers: bool,
}

impl AmqpSource {
    /// Opens a channel on the tenant's consuming connection and starts consuming the queue.
    pub async fn open(
        mapping: &str,
        connections: &Connections,
        tenant: &str,
        conn: &RabbitConnection,
        source: &SourceConfig,
        properties_as_headers: bool,
    ) -> Result<Self, SourceError> {
        let connection = connections
            .connection(tenant, &source.connection, conn, Role::Consume)
            .await
            .map_err(|e| SourceError::new("cannot connect", e))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| SourceError::new("cannot open a channel", e))?;
        channel
            .basic_qos(source.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| SourceError::new("cannot set the prefetch", e))?;
        let tag = format!("bridge-host/{mapping}");
        let consumer = channel
            .basic_consume(
                source.queue.clone().into(),
                tag.clone().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| SourceError::new(format!("cannot consume queue `{}`", source.queue), e))?;
        tracing::info!(mapping, queue = %source.queue, prefetch = source.prefetch, "RabbitMQ source started.");
        Ok(AmqpSource {
            mapping: mapping.to_string(),
            connection_name: source.connection.clone(),
            queue: source.queue.clone(),
            connection,
            channel,
            consumer,
            tag,
            acks: Acks::default(),
            failed: None,
            properties_as_headers,
        })
    }
}

impl Source for AmqpSource {
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
            match delivery {
                Some(Ok(d)) => {
                    let message = super::to_message(
                        &self.connection_name,
                        &self.queue,
                        &d,
                        self.properties_as_headers,
                    );
                    self.acks.delivered(d.delivery_tag, d.acker);
                    received.messages.push(Consumed {
                        token: d.delivery_tag,
                        message,
                    });
                }
                Some(Err(e)) => {
                    self.failed = Some(SourceError::new("RabbitMQ consumer failed", e));
                    break;
                }
                None => {
                    self.failed = Some(SourceError::msg(format!(
                        "the consumer of queue `{}` was cancelled",
                        self.queue
                    )));
                    break;
                }
            }
        }
        match (received.messages.is_empty(), self.failed.take()) {
            (true, Some(e)) => Err(e),
            (_, failed) => {
                self.failed = failed;
                Ok(received)
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.acks.unsettled
    }

    fn room(&self, max_in_flight: usize) -> usize {
        max_in_flight.saturating_sub(self.acks.unsettled)
    }

    fn is_current(&self, _: &u64) -> bool {
        true
    }

    fn settled(&mut self, token: u64) {
        self.acks.settled(token);
    }

    fn retrying(&mut self, _: &u64, _: bool) {}

    async fn flush(&mut self, idle: bool) -> Result<(), SourceError> {
        self.acks.flush(idle).await
    }

    fn check(&mut self) -> Result<(), SourceError> {
        if self.channel.status().connected() {
            Ok(())
        } else {
            Err(SourceError::msg("the RabbitMQ channel closed"))
        }
    }

    async fn close(mut self, clean: bool, deadline: Instant) -> Result<(), SourceError> {
        // Each step is bounded, as a dead connection may never answer; on a stop, by the
        // deadline too.
        let limit = || {
            deadline
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(100), CLOSE_TIMEOUT)
        };
        if clean {
            let _ = tokio::time::timeout(
                limit(),
                self.channel
                    .basic_cancel(self.tag.clone().into(), BasicCancelOptions::default()),
            )
            .await;
        }
        // Acknowledge what was settled, then close the channel: what is unacknowledged returns
        // to the queue. The shared connection closes when its last mapping lets go.
        let acked = tokio::time::timeout(limit(), self.acks.flush(true)).await;
        let (code, why) = if clean {
            (200, "bridge shutting down")
        } else {
            (320, "bridge mapping restarting")
        };
        let _ = tokio::time::timeout(limit(), self.channel.close(code, why.into())).await;
        drop(self.connection);
        tracing::info!(mapping = %self.mapping, "RabbitMQ source stopped.");
        match acked {
            Ok(result) => result,
            Err(_) => Err(SourceError::msg("the last acks were not sent in time")),
        }
    }
}

/// The deliveries of a channel not yet acknowledged, in delivery order (see the module
/// documentation).
#[derive(Default)]
struct Acks {
    pending: VecDeque<Pending>,
    /// The newest delivery of the settled front not yet acknowledged, and how many it covers.
    front: Option<lapin::Acker>,
    batched: usize,
    /// Settled behind an unsettled delivery: acknowledged one by one at the next flush.
    single: Vec<lapin::Acker>,
    unsettled: usize,
}

/// A delivery not yet passed by the settled front: its acker until it is acknowledged.
struct Pending {
    tag: u64,
    acker: Option<lapin::Acker>,
    settled: bool,
}

impl Acks {
    /// A delivery handed to the pipeline.
    fn delivered(&mut self, tag: u64, acker: lapin::Acker) {
        self.pending.push_back(Pending {
            tag,
            acker: Some(acker),
            settled: false,
        });
        self.unsettled += 1;
    }

    /// A delivery is settled (delivered, dead-lettered or dropped).
    fn settled(&mut self, tag: u64) {
        let Ok(i) = self.pending.binary_search_by_key(&tag, |p| p.tag) else {
            return;
        };
        if std::mem::replace(&mut self.pending[i].settled, true) {
            return;
        }
        self.unsettled -= 1;
        if i > 0 {
            // Behind an unsettled delivery: on its own, never `multiple` across the other.
            self.single.extend(self.pending[i].acker.take());
            return;
        }
        while self.pending.front().is_some_and(|p| p.settled) {
            if let Some(acker) = self.pending.pop_front().and_then(|p| p.acker) {
                self.front = Some(acker);
                self.batched += 1;
            }
        }
    }

    /// Acknowledges what settled behind an unsettled delivery, and the settled front when it
    /// is large enough or nothing else is in flight (`idle`).
    async fn flush(&mut self, idle: bool) -> Result<(), SourceError> {
        for acker in std::mem::take(&mut self.single) {
            ack(acker, false).await?;
        }
        if idle || self.batched >= ACK_EVERY {
            self.batched = 0;
            if let Some(acker) = self.front.take() {
                ack(acker, true).await?;
            }
        }
        Ok(())
    }
}

/// An ack on a connection that died without lapin noticing may never complete: give up after a
/// while and let the mapping reconnect (the deliveries come back).
async fn ack(acker: lapin::Acker, multiple: bool) -> Result<(), SourceError> {
    match tokio::time::timeout(ACK_TIMEOUT, acker.ack(BasicAckOptions { multiple })).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(SourceError::new("ack failed", e)),
        Err(_) => Err(SourceError::msg(format!(
            "no answer to an ack within {} s",
            ACK_TIMEOUT.as_secs()
        ))),
    }
}
