//! What the bridge knows about itself: per-mapping connection state and counters, and whether
//! each Kafka cluster answers. Read by the health endpoints ([`crate::health`]) and logged as
//! a periodic stats heartbeat.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};

use crate::config::{BridgeConfig, Source, Target};
use crate::kafka::ClusterContext;
use crate::metrics::{
    ClusterLabel, FailureLabel, Metrics, PartitionLabel, PluginCallLabel, PluginLabel,
};

/// Counters of one mapping since the bridge started: handles into the bridge's metrics
/// registry ([`Metrics`]), so `/metrics`, `/status` and the heartbeat read the same values.
#[derive(Debug)]
pub struct Counters {
    mapping: String,
    /// Messages taken from the source.
    pub consumed: Counter,
    /// Messages the target confirmed.
    pub delivered: Counter,
    /// Messages dropped by a plugin or the policy.
    pub dropped: Counter,
    /// Messages dropped as duplicates.
    pub duplicates: Counter,
    /// Messages sent to the dead-letter target.
    pub dead_lettered: Counter,
    /// Retries decided by the dead-letter policy.
    pub retries: Counter,
    /// Restarts after a broker connection was lost.
    pub restarts: Counter,
    failures: Family<FailureLabel, Counter>,
    in_flight: Gauge,
    latency: Histogram,
    lag: Family<PartitionLabel, Gauge>,
    lag_total: AtomicI64,
    plugin_calls: Family<PluginCallLabel, Histogram, fn() -> Histogram>,
}

impl Counters {
    fn new(metrics: &Metrics, mapping: &str) -> Self {
        let label = Metrics::mapping(mapping);
        Counters {
            mapping: mapping.to_string(),
            consumed: metrics.consumed.get_or_create(&label).clone(),
            delivered: metrics.delivered.get_or_create(&label).clone(),
            dropped: metrics.dropped.get_or_create(&label).clone(),
            duplicates: metrics.duplicates.get_or_create(&label).clone(),
            dead_lettered: metrics.dead_lettered.get_or_create(&label).clone(),
            retries: metrics.retries.get_or_create(&label).clone(),
            restarts: metrics.restarts.get_or_create(&label).clone(),
            failures: metrics.failures.clone(),
            in_flight: metrics.in_flight.get_or_create(&label).clone(),
            latency: metrics.latency.get_or_create(&label).clone(),
            lag: metrics.consumer_lag.clone(),
            lag_total: AtomicI64::new(0),
            plugin_calls: metrics.plugin_call.clone(),
        }
    }

    /// Adds `n` to `counter`.
    pub fn add(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    /// Counts a failure of `kind` handed to the dead-letter policy.
    pub fn failure(&self, kind: &str) {
        self.failures
            .get_or_create(&FailureLabel {
                mapping: self.mapping.clone(),
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Records how many messages are consumed and not yet settled.
    pub fn set_in_flight(&self, n: usize) {
        self.in_flight.set(n as i64);
    }

    /// The histogram of plugin `plugin`'s call times in this mapping.
    pub fn plugin_timer(&self, plugin: &str) -> Histogram {
        self.plugin_calls
            .get_or_create(&PluginCallLabel {
                mapping: self.mapping.clone(),
                plugin: plugin.to_string(),
            })
            .clone()
    }

    /// Records the consumer lag of the mapping's partitions (`(topic, partition, lag)`), as
    /// librdkafka's statistics report it.
    pub fn set_lag(&self, partitions: &[(String, i32, i64)]) {
        for (topic, partition, lag) in partitions {
            self.lag
                .get_or_create(&PartitionLabel {
                    mapping: self.mapping.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                })
                .set(*lag);
        }
        let total = partitions.iter().map(|(_, _, lag)| lag).sum();
        self.lag_total.store(total, Ordering::Relaxed);
    }

    /// Records a confirmed message's end-to-end latency from its source timestamp (ms since
    /// the epoch).
    pub fn delivered_since(&self, timestamp_ms: i64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        if now >= timestamp_ms {
            self.latency.observe((now - timestamp_ms) as f64 / 1000.0);
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "consumed": self.consumed.get(),
            "delivered": self.delivered.get(),
            "dropped": self.dropped.get(),
            "duplicates": self.duplicates.get(),
            "dead_lettered": self.dead_lettered.get(),
            "retries": self.retries.get(),
            "restarts": self.restarts.get(),
            "in_flight": self.in_flight.get(),
            "lag": self.lag_total.load(Ordering::Relaxed),
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
    connected_gauge: Gauge,
    /// Its counters.
    pub counters: Counters,
    /// Its plugins, `name@version` (in chain order, then the policy).
    plugins: Mutex<Vec<String>>,
}

impl MappingStatus {
    /// Records whether the mapping's source and target are connected.
    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        self.connected_gauge.set(i64::from(connected));
    }

    /// Records the mapping's plugins, `name@version`.
    pub fn set_plugins(&self, plugins: Vec<String>) {
        if let Ok(mut p) = self.plugins.lock() {
            *p = plugins;
        }
    }

    fn plugins(&self) -> Vec<String> {
        self.plugins.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Logs the mapping's counters in one fields-first line (the heartbeat, the stop summary).
    pub fn log_counters(&self, message: &str) {
        let c = &self.counters;
        tracing::info!(
            mapping = %self.name,
            connected = self.is_connected(),
            consumed = c.consumed.get(),
            delivered = c.delivered.get(),
            dropped = c.dropped.get(),
            duplicates = c.duplicates.get(),
            dead_lettered = c.dead_lettered.get(),
            retries = c.retries.get(),
            restarts = c.restarts.get(),
            in_flight = c.in_flight.get(),
            lag = c.lag_total.load(Ordering::Relaxed),
            "{message}"
        );
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
    metrics: Arc<Metrics>,
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
        let metrics = Arc::new(Metrics::new());
        for name in clusters.keys() {
            // Each cluster's series exists (at 0) before its first probe.
            metrics
                .cluster_reachable
                .get_or_create(&ClusterLabel {
                    cluster: name.clone(),
                })
                .set(0);
        }
        Arc::new(Status {
            mappings: config
                .mapping
                .iter()
                .map(|m| {
                    Arc::new(MappingStatus {
                        name: m.name.clone(),
                        connected: AtomicBool::new(false),
                        connected_gauge: metrics
                            .connected
                            .get_or_create(&Metrics::mapping(&m.name))
                            .clone(),
                        counters: Counters::new(&metrics, &m.name),
                        plugins: Mutex::new(Vec::new()),
                    })
                })
                .collect(),
            clusters,
            metrics,
        })
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Records a loaded plugin (the `bridge_plugin` info metric).
    pub fn plugin_loaded(&self, plugin: &str, version: &str, digest: &str) {
        self.metrics
            .plugin_info
            .get_or_create(&PluginLabel {
                plugin: plugin.to_string(),
                version: version.to_string(),
                digest: digest.to_string(),
            })
            .set(1);
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
                .map(|m| (m.name.clone(), json!({ "connected": m.is_connected(), "plugins": m.plugins(), "counters": m.counters.to_json() })))
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
                m.log_counters("Stats.");
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
                self.metrics
                    .cluster_reachable
                    .get_or_create(&ClusterLabel {
                        cluster: name.clone(),
                    })
                    .set(i64::from(up));
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
