//! Reading a dead-letter queue back, for `bridge-host replay`: the messages it held when the
//! replay began, with manual acknowledgements. A message is acknowledged (removed) only once
//! its target confirmed it; every other one stays unacknowledged until the replay ends and
//! closes its channel, and RabbitMQ puts them back in the queue.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;

use super::ConnectError;
use crate::config::RabbitConnection;
use crate::plugin::Message;

/// The most messages a replay leaves unacknowledged in one run: RabbitMQ stops delivering
/// past it, and the replay ends there.
pub const HOLD: u16 = 10_000;

/// What went wrong reading a dead-letter queue.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterQueueError {
    /// No connection.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The broker refused an operation.
    #[error("{context}: {source}")]
    Broker {
        /// What was being done.
        context: String,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },
}

fn broker(context: impl Into<String>) -> impl FnOnce(lapin::Error) -> DeadLetterQueueError {
    let context = context.into();
    move |source| DeadLetterQueueError::Broker { context, source }
}

/// A delivery: what [`DeadLetterQueue::ack`] takes.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryAt(u64);

impl std::fmt::Display for DeliveryAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "delivery {}", self.0)
    }
}

/// A dead-letter queue being read by a replay.
pub struct DeadLetterQueue {
    connection: lapin::Connection,
    channel: lapin::Channel,
    consumer: lapin::Consumer,
    name: String,
    queue: String,
    /// Messages the queue held at the start and not read yet.
    remaining: u32,
}

impl DeadLetterQueue {
    /// Opens `queue` on `[rabbitmq.NAME]`.
    pub async fn open(
        name: &str,
        conn: &RabbitConnection,
        queue: &str,
    ) -> Result<Self, DeadLetterQueueError> {
        let connection =
            super::connect_as(name, conn, &format!("bridge-host/{name}/replay")).await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(broker("cannot open a channel"))?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
            .map_err(broker(format!("queue `{queue}` is not usable on `{name}`")))?;
        channel
            .basic_qos(HOLD, BasicQosOptions::default())
            .await
            .map_err(broker("cannot set the prefetch"))?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                "bridge-host-replay".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker(format!("cannot consume `{queue}`")))?;
        Ok(DeadLetterQueue {
            connection,
            channel,
            consumer,
            name: name.to_string(),
            queue: queue.to_string(),
            remaining: declared.message_count(),
        })
    }

    /// The next message, or `None` once the messages the queue held at the start were read
    /// (or none came for `idle`: another consumer took them, or [`HOLD`] are unacknowledged).
    pub async fn next(
        &mut self,
        idle: Duration,
    ) -> Result<Option<(Message, DeliveryAt)>, DeadLetterQueueError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let delivery = match tokio::time::timeout(idle, self.consumer.next()).await {
            Ok(Some(delivery)) => {
                delivery.map_err(broker(format!("cannot read `{}`", self.queue)))?
            }
            Ok(None) | Err(_) => return Ok(None),
        };
        self.remaining -= 1;
        let message = super::to_message(&self.name, &self.queue, &delivery, false);
        Ok(Some((message, DeliveryAt(delivery.delivery_tag))))
    }

    /// Removes a replayed message from the queue.
    pub async fn ack(&self, at: DeliveryAt) -> Result<(), DeadLetterQueueError> {
        self.channel
            .basic_ack(at.0, BasicAckOptions::default())
            .await
            .map_err(broker(format!(
                "cannot acknowledge a message of `{}`",
                self.queue
            )))
    }

    /// Ends the replay: the messages not acknowledged go back to the queue.
    pub async fn close(self) {
        let _ = self.channel.close(200, "replay done".into()).await;
        let _ = self.connection.close(200, "replay done".into()).await;
    }
}
