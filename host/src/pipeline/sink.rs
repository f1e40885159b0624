//! Where messages go: a RabbitMQ exchange (publisher confirms, `mandatory`) or a Kafka topic
//! (idempotent producer, `acks=all`). Sending returns at once with a future of the broker's
//! answer, so many messages are in flight at a time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;

use crate::config::{AmqpTarget, KafkaTarget, Target};
use crate::kafka::ClusterContext;
use crate::plugin::{FailureKind, Message, Origin};
use crate::shared::{Producer, Role, Shared};

/// How long writing a publish may take before the connection counts as lost.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Producer settings the cluster's `properties` may override.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("linger.ms", "5"),
    ("message.timeout.ms", "30000"),
    // A request on a connection that went silent fails after 10 s (librdkafka: 60 s), and the
    // producer reconnects and retries (idempotent: no duplicates).
    ("socket.timeout.ms", "10000"),
];

/// The broker's answer for one sent message.
pub type Pending = Pin<Box<dyn Future<Output = Result<(), Rejected>> + Send>>;

/// The target did not take a message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct Rejected {
    /// `target-rejected` or `unroutable`.
    pub kind: FailureKind,
    /// What the broker said.
    pub detail: String,
    /// The connection or channel died: the mapping restarts and redelivers instead of
    /// consulting the dead-letter policy.
    pub connection_lost: bool,
}

/// The sink failed as a whole (connection lost); the mapping restarts.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// A RabbitMQ publisher.
pub struct AmqpSink {
    /// A channel in confirm mode, the mapping's own.
    channel: lapin::Channel,
    /// The tenant's publishing connection, shared with its other mappings.
    connection: Arc<lapin::Connection>,
    /// Exchange, default routing key, persistence.
    target: AmqpTarget,
}

/// A RabbitMQ or Kafka sink.
pub enum Sink {
    /// Publishes to RabbitMQ.
    Amqp(Box<AmqpSink>),
    /// Produces to Kafka.
    Kafka {
        /// The tenant's producer for the cluster, shared with its other mappings.
        producer: Arc<Producer>,
        /// Topic and partition rules.
        target: KafkaTarget,
    },
}

impl Sink {
    /// Opens a sink for `target` on `tenant`'s shared clients.
    pub async fn open(
        config: &crate::config::BridgeConfig,
        shared: &Shared,
        tenant: &str,
        target: &Target,
    ) -> Result<Sink, SinkError> {
        match target {
            Target::Amqp(t) => {
                let conn = &config.rabbitmq[&t.connection];
                let connection = shared
                    .connection(tenant, &t.connection, conn, Role::Publish)
                    .await
                    .map_err(|e| SinkError(e.to_string()))?;
                let channel = connection
                    .create_channel()
                    .await
                    .map_err(|e| SinkError(format!("cannot open a channel: {e}")))?;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(|e| SinkError(format!("cannot enable publisher confirms: {e}")))?;
                Ok(Sink::Amqp(Box::new(AmqpSink {
                    channel,
                    connection,
                    target: t.clone(),
                })))
            }
            Target::Kafka(t) => {
                let cluster = &config.kafka[&t.cluster];
                // Tunables the cluster's `properties` may override; then what at-least-once
                // delivery relies on, which they may not.
                let make = || {
                    crate::kafka::client_config_with(cluster, PRODUCER_DEFAULTS)
                        .set("enable.idempotence", "true")
                        .set("acks", "all")
                        .create_with_context(ClusterContext::new(&t.cluster))
                };
                let producer = shared
                    .producer(tenant, &t.cluster, cluster, make)
                    .map_err(|e| {
                        SinkError(format!(
                            "cannot create a Kafka producer for `{}`: {e}",
                            t.cluster
                        ))
                    })?;
                Ok(Sink::Kafka {
                    producer,
                    target: t.clone(),
                })
            }
        }
    }

    /// Sends one message; the returned future resolves with the broker's answer.
    pub async fn send(&self, msg: &Message) -> Result<Pending, SinkError> {
        match self {
            Sink::Amqp(amqp) => {
                let AmqpSink {
                    channel, target, ..
                } = amqp.as_ref();
                let exchange = msg
                    .amqp_target
                    .exchange
                    .clone()
                    .unwrap_or_else(|| target.exchange.clone());
                let routing_key = msg
                    .amqp_target
                    .routing_key
                    .clone()
                    .or_else(|| target.routing_key.clone())
                    .or_else(|| source_name(msg))
                    .unwrap_or_default();
                if routing_key.len() > 255 || exchange.len() > 255 {
                    let detail = format!(
                        "routing key or exchange longer than 255 bytes (`{exchange}` / {} bytes)",
                        routing_key.len()
                    );
                    return Ok(rejected(FailureKind::TargetRejected, detail));
                }
                let props = match crate::amqp::properties_from_message(msg, target.persistent) {
                    Ok(props) => props,
                    Err(e) => return Ok(rejected(FailureKind::ConversionError, e.to_string())),
                };
                let payload = msg.payload.as_deref().unwrap_or_default();
                let publish = channel.basic_publish(
                    exchange.clone().into(),
                    routing_key.clone().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    payload,
                    props,
                );
                // A write on a connection that died without lapin noticing may never
                // complete: treat a stuck publish as a lost connection, unless the broker
                // blocked publishing (a resource alarm): then wait for it.
                let mut publish = std::pin::pin!(publish);
                let confirm = loop {
                    match tokio::time::timeout(WRITE_TIMEOUT, &mut publish).await {
                        Ok(written) => break written,
                        Err(_) if amqp.connection.status().blocked() => continue,
                        Err(_) => {
                            return Err(SinkError(format!(
                                "publish to exchange `{exchange}` not written within {} s",
                                WRITE_TIMEOUT.as_secs()
                            )));
                        }
                    }
                }
                .map_err(|e| SinkError(format!("publish to exchange `{exchange}` failed: {e}")))?;
                Ok(Box::pin(async move {
                    match confirm.await {
                        Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => Ok(()),
                        Ok(Confirmation::Ack(Some(returned))) => Err(Rejected {
                            kind: FailureKind::Unroutable,
                            detail: format!(
                                "exchange `{exchange}` returned the message with routing key `{routing_key}`: {} {}",
                                returned.reply_code, returned.reply_text
                            ),
                            connection_lost: false,
                        }),
                        Ok(Confirmation::Nack(_)) => Err(Rejected {
                            kind: FailureKind::TargetRejected,
                            detail: format!("RabbitMQ nacked the publish to exchange `{exchange}`"),
                            connection_lost: false,
                        }),
                        Err(e) => Err(Rejected {
                            kind: FailureKind::TargetRejected,
                            detail: format!("lost the publisher confirm: {e}"),
                            connection_lost: true,
                        }),
                    }
                }))
            }
            Sink::Kafka { producer, target } => {
                let Some(topic) = msg
                    .kafka_target
                    .topic
                    .clone()
                    .or_else(|| target.topic.clone())
                    .or_else(|| source_name(msg))
                else {
                    return Ok(rejected(
                        FailureKind::TargetRejected,
                        "no target topic".to_string(),
                    ));
                };
                let same = match (&msg.origin, target.same_partition) {
                    (Origin::Kafka(k), true) => Some(k.partition),
                    _ => None,
                };
                let partition = msg.kafka_target.partition.or(same);
                let mut record =
                    FutureRecord::<[u8], [u8]>::to(&topic).headers(crate::kafka::headers(msg));
                if let Some(k) = &msg.key {
                    record = record.key(k.as_slice());
                }
                if let Some(p) = &msg.payload {
                    record = record.payload(p.as_ref());
                }
                if let Some(p) = partition {
                    record = record.partition(p);
                }
                if let Some(ts) = msg.timestamp {
                    record = record.timestamp(ts);
                }
                // librdkafka hands the record back when its queue is full: wait and retry it.
                loop {
                    match producer.send_result(record) {
                        Ok(delivery) => {
                            return Ok(Box::pin(async move {
                                match delivery.await {
                                    Ok(Ok(_)) => Ok(()),
                                    Ok(Err((e, _))) => Err(Rejected {
                                        kind: FailureKind::TargetRejected,
                                        detail: format!(
                                            "Kafka did not take the message for topic `{topic}`: {e}"
                                        ),
                                        connection_lost: transient(&e),
                                    }),
                                    Err(_) => Err(Rejected {
                                        kind: FailureKind::TargetRejected,
                                        detail: "the Kafka producer was closed".to_string(),
                                        connection_lost: true,
                                    }),
                                }
                            }));
                        }
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            record = back;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err((e, _)) => {
                            return Ok(rejected(
                                FailureKind::TargetRejected,
                                format!("Kafka refused the message for topic `{topic}`: {e}"),
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Why the target takes nothing now, if it does not: RabbitMQ blocks publishers while one
    /// of its resource alarms (memory, disk) is on.
    pub fn blocked(&self) -> Option<String> {
        let (name, connection) = self.amqp_connection()?;
        crate::amqp::blocked_reason(name, connection)
    }

    /// The RabbitMQ connection this sink publishes on, with its name in the config.
    pub fn amqp_connection(&self) -> Option<(&str, &Arc<lapin::Connection>)> {
        match self {
            Sink::Amqp(amqp) => Some((amqp.target.connection.as_str(), &amqp.connection)),
            Sink::Kafka { .. } => None,
        }
    }

    /// Waits until the target takes messages again (see [`Sink::blocked`]), or its connection
    /// closes.
    pub async fn wait_unblocked(&self) {
        if let Sink::Amqp(amqp) = self {
            while amqp.connection.status().blocked() && amqp.connection.status().connected() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Whether the sink can still send: a RabbitMQ channel closes with its connection; the
    /// Kafka producer reconnects on its own.
    pub fn is_connected(&self) -> bool {
        match self {
            Sink::Amqp(amqp) => amqp.channel.status().connected(),
            Sink::Kafka { .. } => true,
        }
    }

    /// Closes a RabbitMQ sink's channel (bounded by `timeout`, as a dead connection may never
    /// answer). The shared connection and producer close when their last mapping lets go.
    pub async fn close(&self, timeout: Duration) {
        if let Sink::Amqp(amqp) = self {
            let _ = tokio::time::timeout(
                timeout,
                amqp.channel.close(200, "bridge mapping stopping".into()),
            )
            .await;
        }
    }

    /// Waits until everything sent has been answered (Kafka flush: the shared producer's
    /// queue, other mappings' messages included); RabbitMQ answers are awaited through their
    /// futures.
    pub fn flush(&self, timeout: Duration) {
        if let Sink::Kafka { producer, .. } = self {
            let _ = rdkafka::producer::Producer::flush(producer.as_ref(), timeout);
        }
    }
}

/// A Kafka delivery failure that says nothing about the message: the cluster could not be
/// reached or answered in time (librdkafka has retried until `message.timeout.ms`), or the
/// topic is gone. The mapping restarts and sends the message again instead of dead-lettering.
fn transient(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageTimedOut
                | C::RequestTimedOut
                | C::OperationTimedOut
                | C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::NetworkException
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::NotEnoughReplicas
                | C::NotEnoughReplicasAfterAppend
                | C::UnknownTopicOrPartition
                | C::UnknownTopic
                | C::UnknownPartition
        )
    )
}

fn rejected(kind: FailureKind, detail: String) -> Pending {
    Box::pin(async move {
        Err(Rejected {
            kind,
            detail,
            connection_lost: false,
        })
    })
}

/// The source topic or queue name, the default routing key or topic.
fn source_name(msg: &Message) -> Option<String> {
    match &msg.origin {
        Origin::Kafka(k) => Some(k.topic.clone()),
        Origin::Amqp(a) => Some(a.queue.clone()),
        Origin::None => None,
    }
}
