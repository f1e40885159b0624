//! A tenant's Kafka clients, shared by its mappings so that hundreds of mappings fit in one
//! process: one producer per cluster, and one consumer per cluster, consumer group and
//! offset-reset rule ([`super::group::GroupConsumer`]). Nothing is shared across tenants.
//! Sharing changes no guarantee: every message still has its own delivery report, and a
//! mapping commits only what its own messages settled. A client lives while a mapping uses
//! it; a failed one is never handed out again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;

use super::ClusterContext;
use super::group::{GroupConsumer, GroupKey};
use crate::config::KafkaCluster;

/// A Kafka producer shared by a tenant's mappings.
pub type Producer = FutureProducer<ClusterContext>;

/// Producers by tenant and cluster name, with the settings each was made with.
type Producers = HashMap<(String, String), (KafkaCluster, Weak<Producer>)>;

/// Consumers by tenant, cluster, group and offset-reset rule.
type Groups = HashMap<GroupKey, (KafkaCluster, Weak<GroupConsumer>)>;

/// Every tenant's live Kafka clients.
#[derive(Debug, Default)]
pub struct KafkaClients {
    producers: Mutex<Producers>,
    groups: Mutex<Groups>,
}

impl KafkaClients {
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

    fn get(clients: &KafkaClients, tenant: &str, c: &KafkaCluster) -> Arc<Producer> {
        clients
            .producer(tenant, "main", c, || {
                super::super::client_config(c).create_with_context(ClusterContext::new("main"))
            })
            .unwrap()
    }

    #[test]
    fn a_tenant_shares_one_producer_per_cluster_and_tenants_do_not() {
        let clients = KafkaClients::default();
        let main = cluster("127.0.0.1:1");
        let a = get(&clients, "a", &main);
        assert!(Arc::ptr_eq(&a, &get(&clients, "a", &main)));
        assert!(!Arc::ptr_eq(&a, &get(&clients, "b", &main)));
        // Changed settings (a configuration reload) make a new producer.
        assert!(!Arc::ptr_eq(
            &a,
            &get(&clients, "a", &cluster("127.0.0.1:2"))
        ));
    }
}
