//! Everything about Kafka (rdkafka): client configuration from `[kafka.NAME]`, message
//! conversion, the mappings' source (a shared consumer-group member per tenant, cluster and
//! group, with per-partition commit watermarks) and sink (a shared idempotent producer), and
//! the tenants' client pools.

mod committer;
mod convert;
pub mod dead_letters;
mod exactly_once;
mod group;
mod pool;
pub mod probe;
mod sink;
mod source;
pub mod topology;
mod transaction;
mod watermark;

pub use convert::{RawHeader, carry_headers, escape_name, headers, to_message};
pub use exactly_once::TransactionalSource;
pub use group::{GroupConsumer, GroupKey};
pub use pool::{KafkaClients, Producer};
pub use sink::KafkaSink;
pub use source::KafkaSource;
pub use transaction::{Transaction, transactional_id};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

use crate::config::KafkaCluster;

/// Base client configuration for a cluster: bootstrap servers, pass-through properties, SASL and TLS.
pub fn client_config(cluster: &KafkaCluster) -> ClientConfig {
    client_config_with(cluster, &[])
}

/// [`client_config`] over `defaults`, which the cluster's `properties` may override.
pub fn client_config_with(cluster: &KafkaCluster, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in defaults {
        config.set(*k, *v);
    }
    config.set("bootstrap.servers", &cluster.bootstrap_servers);
    if let Some(sasl) = &cluster.sasl {
        config
            .set("sasl.username", &sasl.username)
            .set("sasl.password", &sasl.password)
            .set(
                "sasl.mechanism",
                sasl.mechanism.as_deref().unwrap_or("PLAIN"),
            );
        if !cluster.properties.contains_key("security.protocol") {
            config.set(
                "security.protocol",
                if cluster.tls.is_some() {
                    "SASL_SSL"
                } else {
                    "SASL_PLAINTEXT"
                },
            );
        }
    } else if cluster.tls.is_some() && !cluster.properties.contains_key("security.protocol") {
        config.set("security.protocol", "SSL");
    }
    if let Some(tls) = &cluster.tls {
        let mut set = |key: &str, path: &Option<std::path::PathBuf>| {
            if let Some(p) = path {
                config.set(key, p.display().to_string());
            }
        };
        set("ssl.ca.location", &tls.ca_file);
        set("ssl.certificate.location", &tls.cert_file);
        set("ssl.key.location", &tls.key_file);
    }
    for (k, v) in &cluster.properties {
        config.set(k, v);
    }
    // librdkafka's `debug` contexts log at debug level: pass them on (to the log target
    // `bridge_host::kafka`) instead of dropping them.
    if cluster.properties.contains_key("debug") {
        config.set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    }
    config
}

/// The context of every Kafka client the bridge makes: librdkafka's log lines and errors
/// (a refused TLS handshake, a failed SASL authentication, an unreachable broker) go to the
/// bridge's log, naming the cluster as configured. librdkafka never logs the SASL password.
#[derive(Debug, Clone)]
pub struct ClusterContext {
    cluster: String,
}

impl ClusterContext {
    /// The context for `[kafka.CLUSTER]`.
    pub fn new(cluster: &str) -> Self {
        ClusterContext {
            cluster: format!("kafka.{cluster}"),
        }
    }

    /// `kafka.NAME`, as in the config.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }
}

impl ClientContext for ClusterContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        let cluster = self.cluster.as_str();
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(cluster, facility, "librdkafka: {line}"),
            RDKafkaLogLevel::Warning => tracing::warn!(cluster, facility, "librdkafka: {line}"),
            RDKafkaLogLevel::Notice => tracing::info!(cluster, facility, "librdkafka: {line}"),
            RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug => {
                tracing::debug!(cluster, facility, "librdkafka: {line}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(cluster = %self.cluster, error = %error, "Kafka client error: {reason}");
    }
}

impl ConsumerContext for ClusterContext {}
