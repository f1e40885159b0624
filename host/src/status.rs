//! What the bridge knows about itself: per-mapping connection state and counters, and whether
//! each Kafka cluster answers. Read by the health endpoints ([`crate::health`]) and logged as
//! a periodic stats heartbeat.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};

use crate::config::{BridgeConfig, Source, Target};
use crate::kafka::ClusterContext;

/// Counters of one mapping since the bridge started.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages taken from the source.
    pub consumed: AtomicU64,
    /// Messages the target confirmed.
    pub delivered: AtomicU64,
    /// Messages dropped by a plugin or the policy.
    pub dropped: AtomicU64,
    /// Messages dropped as duplicates.
    pub duplicates: AtomicU64,
    /// Messages sent to the dead-letter target.
    pub dead_lettered: AtomicU64,
    /// Retries decided by the dead-letter policy.
    pub retries: AtomicU64,
    /// Restarts after a broker connection was lost.
    pub restarts: AtomicU64,
}

impl Counters {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn to_json(&self) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "consumed": get(&self.consumed),
            "delivered": get(&self.delivered),
            "dropped": get(&self.dropped),
            "duplicates": get(&self.duplicates),
            "dead_lettered": get(&self.dead_lettered),
            "retries": get(&self.retries),
            "restarts": get(&self.restarts),
        })
    }
}

/// State of one mapping.
#[derive(Debug)]
pub struct MappingStatus {
    /// The mapping name.
    pub name: String,
    /// Source consuming and target open.
    connected: AtomicBool,
    /// Its counters.
    pub counters: Counters,
}

impl MappingStatus {
    /// Records whether the mapping's source and target are connected.
    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    /// Whether the mapping's source and target are connected.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// The bridge's state.
#[derive(Debug)]
pub struct Status {
    mappings: Vec<Arc<MappingStatus>>,
    /// Kafka clusters in use, and whether they answered the last metadata request.
    clusters: BTreeMap<String, AtomicBool>,
}

impl Status {
    /// A status for the mappings and Kafka clusters of `config`, nothing connected yet.
    pub fn new(config: &BridgeConfig) -> Arc<Self> {
        let mut clusters = BTreeMap::new();
        for m in &config.mapping {
            if let Source::Kafka(k) = &m.source {
                clusters.insert(k.cluster.clone(), AtomicBool::new(false));
            }
            for t in std::iter::once(&m.target).chain(m.dead_letter.as_ref().map(|d| &d.0)) {
                if let Target::Kafka(k) = t {
                    clusters.insert(k.cluster.clone(), AtomicBool::new(false));
                }
            }
        }
        Arc::new(Status {
            mappings: config
                .mapping
                .iter()
                .map(|m| {
                    Arc::new(MappingStatus {
                        name: m.name.clone(),
                        connected: AtomicBool::new(false),
                        counters: Counters::default(),
                    })
                })
                .collect(),
            clusters,
        })
    }

    /// The mappings' states, in configuration order.
    pub fn mappings(&self) -> &[Arc<MappingStatus>] {
        &self.mappings
    }

    /// Ready: every mapping is connected and every Kafka cluster answers.
    pub fn is_ready(&self) -> bool {
        self.mappings.iter().all(|m| m.is_connected())
            && self.clusters.values().all(|up| up.load(Ordering::Relaxed))
    }

    /// Readiness, connections and counters as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "ready": self.is_ready(),
            "kafka": self.clusters.iter()
                .map(|(name, up)| (name.clone(), json!({ "reachable": up.load(Ordering::Relaxed) })))
                .collect::<serde_json::Map<_, _>>(),
            "mappings": self.mappings.iter()
                .map(|m| (m.name.clone(), json!({ "connected": m.is_connected(), "counters": m.counters.to_json() })))
                .collect::<serde_json::Map<_, _>>(),
        })
    }

    /// Logs every mapping's counters every `every` (the stats heartbeat).
    pub async fn heartbeat(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            for m in &self.mappings {
                let c = &m.counters;
                let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
                tracing::info!(
                    mapping = %m.name,
                    connected = m.is_connected(),
                    consumed = get(&c.consumed),
                    delivered = get(&c.delivered),
                    dropped = get(&c.dropped),
                    duplicates = get(&c.duplicates),
                    dead_lettered = get(&c.dead_lettered),
                    retries = get(&c.retries),
                    restarts = get(&c.restarts),
                    "Stats."
                );
            }
        }
    }

    /// Asks every Kafka cluster in use for metadata every `every`, recording whether it
    /// answered (librdkafka reconnects on its own; this only observes).
    pub async fn probe_kafka(self: Arc<Self>, config: Arc<BridgeConfig>, every: Duration) {
        let mut clients = Vec::new();
        for name in self.clusters.keys() {
            match crate::kafka::client_config(&config.kafka[name])
                .create_with_context::<_, BaseConsumer<ClusterContext>>(ClusterContext::new(name))
            {
                Ok(c) => clients.push((name.clone(), Arc::new(c))),
                Err(e) => {
                    tracing::error!(cluster = %name, error = %e, "Cannot create a Kafka client for the readiness probe.")
                }
            }
        }
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            for (name, client) in &clients {
                let client = Arc::clone(client);
                let up = tokio::task::spawn_blocking(move || {
                    client.fetch_metadata(None, Duration::from_secs(2)).is_ok()
                })
                .await
                .unwrap_or(false);
                let was = self.clusters[name].swap(up, Ordering::Relaxed);
                if was != up {
                    if up {
                        tracing::info!(cluster = %name, "Kafka cluster reachable.");
                    } else {
                        tracing::warn!(cluster = %name, "Kafka cluster unreachable.");
                    }
                }
            }
        }
    }
}
