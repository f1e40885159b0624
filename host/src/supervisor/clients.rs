//! What the mappings of one tenant share at run time, so that hundreds of mappings fit in one
//! process: its Kafka producers and consumers ([`KafkaClients`]), its RabbitMQ connections
//! ([`Connections`]) and its pool of plugin worker threads. Nothing is shared across tenants:
//! each tenant has its own clients and threads, so one tenant's flood, blocked connection or
//! spinning plugin stays its own.

use crate::amqp::Connections;
use crate::kafka::KafkaClients;
use crate::pipeline::WorkerPools;

/// The clients and worker pools of every tenant.
#[derive(Debug, Default)]
pub struct Clients {
    /// Kafka producers and consumer-group members.
    pub kafka: KafkaClients,
    /// RabbitMQ connections.
    pub amqp: Connections,
    /// Each tenant's plugin worker threads.
    pub workers: WorkerPools,
}
