//! What the mappings of one tenant share at run time, so that hundreds of mappings fit in one
//! process: one Kafka producer per cluster, one Kafka consumer per cluster and consumer group
//! (see [`GroupConsumer`]), one RabbitMQ connection per connection name and
//! role (consuming, publishing) with a channel per mapping, and one pool of plugin worker
//! threads. Nothing is shared across tenants: each tenant has its own clients and threads, so
//! one tenant's flood, blocked connection or spinning plugin stays its own.
//!
//! Sharing changes no guarantee: every message still has its own delivery report or publisher
//! confirm, and a mapping acknowledges or commits only what its own messages settled. A client
//! lives while a mapping uses it; a mapping that restarts after a lost connection gets a fresh
//! one (the others on the dead connection restart too, as they would have on their own).
//!
//! Publishing and consuming use separate RabbitMQ connections, as RabbitMQ advises: a broker
//! under a resource alarm blocks publishing connections, and consumers' acknowledgements must
//! still get through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;

use crate::amqp::ConnectError;
use crate::config::{KafkaCluster, RabbitConnection};
use crate::kafka::ClusterContext;
use crate::pipeline::{GroupConsumer, GroupKey, WorkerPools};

/// A Kafka producer shared by a tenant's mappings.
pub type Producer = FutureProducer<ClusterContext>;

/// What a RabbitMQ connection is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Consuming queues (sources).
    Consume,
    /// Publishing (targets, dead letters).
    Publish,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Consume => "consume",
            Role::Publish => "publish",
        }
    }
}

/// A tenant's producers, by tenant and cluster name, with the settings each was made with.
type Producers = HashMap<(String, String), (KafkaCluster, Weak<Producer>)>;

/// The live connection of one tenant, connection name and role, if any, with its settings.
type ConnectionSlot = Option<(RabbitConnection, Weak<lapin::Connection>)>;

/// A tenant's connections, by tenant, connection name and role.
type Connections = HashMap<(String, String, Role), Arc<tokio::sync::Mutex<ConnectionSlot>>>;

/// A tenant's consumers, by tenant, cluster, group and offset-reset rule.
type Groups = HashMap<GroupKey, (KafkaCluster, Weak<GroupConsumer>)>;

/// The clients and worker pools of every tenant.
#[derive(Debug, Default)]
pub struct Shared {
    producers: Mutex<Producers>,
    connections: Mutex<Connections>,
    groups: Mutex<Groups>,
    /// Each tenant's plugin worker threads.
    pub workers: WorkerPools,
}

impl Shared {
    /// The producer of `tenant` for `[kafka.NAME]`, made with `make` unless a live one with
    /// the same settings exists (a failed idempotent producer is never handed out again).
    pub fn producer(
        &self,
        tenant: &str,
        name: &str,
        cluster: &KafkaCluster,
        make: impl FnOnce() -> Result<Producer, KafkaError>,
    ) -> Result<Arc<Producer>, KafkaError> {
        let mut producers = self.producers.lock().unwrap_or_else(|e| e.into_inner());
        let key = (tenant.to_string(), name.to_string());
        if let Some((settings, producer)) = producers.get(&key)
            && settings == cluster
            && let Some(producer) = producer.upgrade()
            && rdkafka::producer::Producer::client(producer.as_ref())
                .fatal_error()
                .is_none()
        {
            return Ok(producer);
        }
        let producer = Arc::new(make()?);
        producers.retain(|_, (_, p)| p.strong_count() > 0);
        producers.insert(key, (cluster.clone(), Arc::downgrade(&producer)));
        Ok(producer)
    }

    /// The consumer for `key` on `cluster`: the live one with the same settings, or a new one
    /// (it leaves the group when the last mapping using it lets go).
    pub fn group_consumer(
        &self,
        key: GroupKey,
        cluster: &KafkaCluster,
    ) -> Result<Arc<GroupConsumer>, KafkaError> {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((settings, consumer)) = groups.get(&key)
            && settings == cluster
            && let Some(consumer) = consumer.upgrade()
            && !consumer.failed()
        {
            return Ok(consumer);
        }
        let consumer = GroupConsumer::start(key.clone(), cluster)?;
        groups.retain(|_, (_, c)| c.strong_count() > 0);
        groups.insert(key, (cluster.clone(), Arc::downgrade(&consumer)));
        Ok(consumer)
    }

    /// The connection of `tenant` to `[rabbitmq.NAME]` for `role`: the open one, or a new one
    /// (it closes when the last mapping using it lets go).
    pub async fn connection(
        &self,
        tenant: &str,
        name: &str,
        conn: &RabbitConnection,
        role: Role,
    ) -> Result<Arc<lapin::Connection>, ConnectError> {
        let slot = {
            let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
            let key = (tenant.to_string(), name.to_string(), role);
            Arc::clone(connections.entry(key).or_default())
        };
        // Mappings starting together wait for one connect instead of each opening their own.
        let mut slot = slot.lock().await;
        if let Some((settings, connection)) = &*slot
            && settings == conn
            && let Some(connection) = connection.upgrade()
            && connection.status().connected()
        {
            return Ok(connection);
        }
        let label = format!("bridge-host/{name}/{tenant}/{}", role.as_str());
        let connection = Arc::new(crate::amqp::connect_as(name, conn, &label).await?);
        *slot = Some((conn.clone(), Arc::downgrade(&connection)));
        Ok(connection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(bootstrap: &str) -> KafkaCluster {
        KafkaCluster {
            bootstrap_servers: bootstrap.to_string(),
            properties: Default::default(),
            sasl: None,
            tls: None,
        }
    }

    fn get(shared: &Shared, tenant: &str, c: &KafkaCluster) -> Arc<Producer> {
        shared
            .producer(tenant, "main", c, || {
                crate::kafka::client_config(c).create_with_context(ClusterContext::new("main"))
            })
            .unwrap()
    }

    #[test]
    fn a_tenant_shares_one_producer_per_cluster_and_tenants_do_not() {
        let shared = Shared::default();
        let main = cluster("127.0.0.1:1");
        let a = get(&shared, "a", &main);
        assert!(Arc::ptr_eq(&a, &get(&shared, "a", &main)));
        assert!(!Arc::ptr_eq(&a, &get(&shared, "b", &main)));
        // Changed settings (a configuration reload) make a new producer.
        assert!(!Arc::ptr_eq(
            &a,
            &get(&shared, "a", &cluster("127.0.0.1:2"))
        ));
    }
}
