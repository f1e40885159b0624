//! A mapping's Kafka target: a topic, through its tenant's producer for the cluster
//! (idempotent, `acks=all`). Sending returns at once with a future of the delivery report, so
//! many messages are in flight at a time.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;

use super::pool::{KafkaClients, Producer};
use super::transaction::Transaction;
use super::{ClusterContext, client_config_with};
use crate::config::{KafkaCluster, KafkaTarget, TargetAllowlist};
use crate::connector::{
    BoxFuture, Pending, Refusal, Rejected, Sink, SinkError, refused, source_name,
};
use crate::plugin::{FailureKind, Message, Origin};

/// Producer settings the cluster's `properties` may override.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("linger.ms", "5"),
    ("message.timeout.ms", "30000"),
    // A request on a connection that went silent fails after 10 s (librdkafka: 60 s), and the
    // producer reconnects and retries (idempotent: no duplicates).
    ("socket.timeout.ms", "10000"),
];

/// Produces a mapping's messages to Kafka.
pub struct KafkaSink {
    /// The tenant's producer for the cluster, shared with its other mappings.
    producer: Arc<Producer>,
    /// Topic and partition rules.
    target: KafkaTarget,
    /// The topics its tenant allows, for those a plugin or a header chose.
    allowlist: TargetAllowlist,
    /// Under `delivery = "exactly-once"`: the mapping's transaction, which its producer sends in.
    transaction: Option<Arc<Transaction>>,
}

impl KafkaSink {
    /// A sink for `target` on `tenant`'s producer for `cluster`.
    pub fn open(
        clients: &KafkaClients,
        tenant: &str,
        cluster: &KafkaCluster,
        target: &KafkaTarget,
        allowlist: TargetAllowlist,
    ) -> Result<Self, SinkError> {
        // Tunables the cluster's `properties` may override; then what at-least-once delivery
        // relies on, which they may not.
        let make = || {
            client_config_with(cluster, PRODUCER_DEFAULTS)
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .create_with_context(ClusterContext::new(&target.cluster))
        };
        let producer = clients
            .producer(tenant, &target.cluster, cluster, make)
            .map_err(|e| {
                SinkError::new(
                    format!("cannot create a Kafka producer for `{}`", target.cluster),
                    e,
                )
            })?;
        Ok(KafkaSink {
            producer,
            target: target.clone(),
            allowlist,
            transaction: None,
        })
    }

    /// A sink for `target` that sends in the mapping's `transaction`, on its producer.
    pub fn transactional(
        transaction: &Arc<Transaction>,
        target: &KafkaTarget,
        allowlist: TargetAllowlist,
    ) -> Self {
        KafkaSink {
            producer: transaction.producer(),
            target: target.clone(),
            allowlist,
            transaction: Some(Arc::clone(transaction)),
        }
    }

    async fn produce(&self, msg: &Message) -> Result<Pending, SinkError> {
        #[cfg(debug_assertions)]
        test_fatal_hook(&self.producer, msg);
        let Some(topic) = msg
            .kafka_target
            .topic
            .clone()
            .or_else(|| self.target.topic.clone())
            .or_else(|| source_name(msg))
        else {
            return Ok(refused(FailureKind::TargetRejected, "no target topic"));
        };
        // The configured topic was checked against the tenant's allowlist at load; one a
        // plugin or a header chose is checked here.
        let topic_chosen = self.target.topic.as_deref() != Some(topic.as_str());
        if topic_chosen && let Err(outside) = self.allowlist.topic(&topic) {
            return Ok(Box::pin(async move {
                Err(Rejected::because(Refusal::NotAllowed, outside))
            }));
        }
        let same = match (&msg.origin, self.target.same_partition) {
            (Origin::Kafka(k), true) => Some(k.partition),
            _ => None,
        };
        let partition = msg.kafka_target.partition.or(same);
        // Whether a plugin chose where it goes: then a topic or partition that does not exist
        // is the message's fault, not the mapping's.
        let chosen = topic_chosen || msg.kafka_target.partition.is_some();
        if let Some(transaction) = &self.transaction {
            transaction
                .begin()
                .map_err(|e| SinkError::new("cannot begin a Kafka transaction", e))?;
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&topic).headers(super::headers(msg));
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
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    return Ok(Box::pin(async move {
                        match delivery.await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err((e, _))) => Err(classify(
                                format!("Kafka did not take the message for topic `{topic}`"),
                                e,
                                chosen,
                            )),
                            Err(_) => {
                                Err(Rejected::transient("the Kafka producer was closed", None))
                            }
                        }
                    }));
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => {
                    let detail = format!("Kafka refused the message for topic `{topic}`");
                    let rejected = classify(detail, e, chosen);
                    return Ok(Box::pin(async move { Err(rejected) }));
                }
            }
        }
    }
}

impl Sink for KafkaSink {
    fn send<'a>(&'a self, msg: &'a Message) -> BoxFuture<'a, Result<Pending, SinkError>> {
        Box::pin(self.produce(msg))
    }

    fn blocked(&self) -> Option<String> {
        None
    }

    fn wait_unblocked(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// The producer reconnects on its own; after a fatal error (its idempotence state is
    /// lost) it is done: the mapping restarts with a new one.
    fn is_connected(&self) -> bool {
        rdkafka::producer::Producer::client(self.producer.as_ref())
            .fatal_error()
            .is_none()
    }

    /// Waits until everything sent has been answered (the shared producer's queue, other
    /// mappings' messages included).
    fn flush(&self, timeout: Duration) {
        let _ = rdkafka::producer::Producer::flush(self.producer.as_ref(), timeout);
    }

    /// The shared producer closes when its last mapping lets go.
    fn close(&self, _timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// The producer hit a fatal error (a broker's fatal idempotence error, say): nothing it sends
/// will go through. The mapping restarts, the pool makes a new producer, and the message is
/// consumed and sent again — not dead-lettered, which would fail the same way.
fn fatal(detail: String, e: KafkaError) -> Rejected {
    Rejected::transient(
        format!("{detail} (the producer is replaced)"),
        Some(Box::new(e)),
    )
}

/// A failed delivery: transient when it says nothing about the message — the cluster could not
/// be reached or answered in time (librdkafka has retried until `message.timeout.ms`), or the
/// mapping's own topic is gone: the mapping restarts and sends the message again instead of
/// dead-lettering. A topic or partition a plugin `chosen` that does not exist is the message's
/// fault: refused.
fn classify(detail: String, e: KafkaError, chosen: bool) -> Rejected {
    use RDKafkaErrorCode as C;
    let detail = format!("{detail}: {e}");
    match e.rdkafka_error_code() {
        // After a fatal error librdkafka purges what it held: not sent, not refused.
        Some(C::Fatal | C::PurgeQueue | C::PurgeInflight) => return fatal(detail, e),
        Some(C::UnknownTopicOrPartition | C::UnknownTopic) if chosen => {
            return Rejected {
                source: Some(Box::new(e)),
                ..Rejected::because(Refusal::UnknownTopic, detail)
            };
        }
        Some(C::UnknownPartition) if chosen => {
            return Rejected {
                source: Some(Box::new(e)),
                ..Rejected::because(Refusal::UnknownPartition, detail)
            };
        }
        _ => {}
    }
    let transient = matches!(
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
    );
    if transient {
        Rejected::transient(detail, Some(Box::new(e)))
    } else {
        Rejected {
            source: Some(Box::new(e)),
            ..Rejected::refused(FailureKind::TargetRejected, detail)
        }
    }
}

/// Test hook, in debug builds only: the first message carrying the header named by
/// `BRIDGE_TEST_FATAL_PRODUCER` raises a fatal error in its producer, as a broker's fatal
/// idempotence error would (librdkafka's `rd_kafka_test_fatal_error`).
#[cfg(debug_assertions)]
fn test_fatal_hook(producer: &Producer, msg: &Message) {
    if crate::test_hooks::fires(crate::test_hooks::Hook::FatalProducer, Some(msg)) {
        let client = rdkafka::producer::Producer::client(producer);
        // SAFETY: the client is alive (borrowed from `producer`); the reason is a C string.
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                client.native_ptr(),
                rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                c"test hook: BRIDGE_TEST_FATAL_PRODUCER".as_ptr(),
            );
        }
    }
}
