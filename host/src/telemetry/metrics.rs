//! The bridge's metrics, in one Prometheus registry (`prometheus-client`): served as text on
//! `GET /metrics`, and read by `/status` and the stats heartbeat through the same handles.
//! A new metric is a field here and its registration in [`Metrics::new`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `mapping="…",tenant="…"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MappingLabel {
    /// The mapping's name.
    pub mapping: String,
    /// The tenant the mapping belongs to.
    pub tenant: String,
}

/// `mapping="…",kind="…"`: a failure kind (`plugin-trap`, `target-rejected`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabel {
    /// The mapping's name.
    pub mapping: String,
    /// The tenant the mapping belongs to.
    pub tenant: String,
    /// The failure kind.
    pub kind: String,
}

/// `mapping="…",reason="…"`: why the bridge refused a message's target
/// (`target-not-allowed`, `unknown-topic`, `unknown-partition`, `no-route`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabel {
    /// The mapping's name.
    pub mapping: String,
    /// The tenant the mapping belongs to.
    pub tenant: String,
    /// The reason.
    pub reason: String,
}

/// `mapping="…",topic="…",partition="…"`: a partition a mapping consumes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    /// The mapping's name.
    pub mapping: String,
    /// The tenant the mapping belongs to.
    pub tenant: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

/// `mapping="…",plugin="…"`: a plugin in a mapping's chain.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginCallLabel {
    /// The mapping's name.
    pub mapping: String,
    /// The tenant the mapping belongs to.
    pub tenant: String,
    /// The plugin's name in the config.
    pub plugin: String,
}

/// `mapping="…",change="assigned|revoked"`: a consumer-group rebalance.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RebalanceLabel {
    /// The mapping's name.
    pub mapping: String,
    /// The tenant the mapping belongs to.
    pub tenant: String,
    /// `assigned` or `revoked`.
    pub change: String,
}

/// `cluster="…"`: a `[kafka.NAME]` cluster.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabel {
    /// The cluster's name in the config.
    pub cluster: String,
}

/// `plugin="…",result="applied|rejected"`: a plugin reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabel {
    /// The plugin's name in the config.
    pub plugin: String,
    /// `applied` or `rejected`.
    pub result: String,
}

/// `result="applied|rejected"`: a configuration reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `applied` or `rejected`.
    pub result: String,
}

/// `plugin="…",version="…",contract="…",digest="…"`: a loaded plugin.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabel {
    /// The plugin's name in the config.
    pub plugin: String,
    /// The version the plugin declares (empty if none).
    pub version: String,
    /// The `bridge:plugin` contract version it was built against.
    pub contract: String,
    /// The SHA-256 of the component, in hex.
    pub digest: String,
}

type Histograms = Family<MappingLabel, Histogram, fn() -> Histogram>;
type CallHistograms = Family<PluginCallLabel, Histogram, fn() -> Histogram>;

fn call_histogram() -> Histogram {
    // 1 µs … ≈ 65 ms.
    Histogram::new(exponential_buckets(0.000_001, 2.0, 17))
}

fn latency_histogram() -> Histogram {
    // 1 ms … ≈ 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric the bridge exposes, labelled by mapping (or cluster, or plugin).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Messages taken from a mapping's source.
    pub consumed: Family<MappingLabel, Counter>,
    /// Messages the target confirmed.
    pub delivered: Family<MappingLabel, Counter>,
    /// Messages dropped by a plugin or the policy.
    pub dropped: Family<MappingLabel, Counter>,
    /// Messages dropped as duplicates.
    pub duplicates: Family<MappingLabel, Counter>,
    /// Messages sent to the dead-letter target.
    pub dead_lettered: Family<MappingLabel, Counter>,
    /// Retries the dead-letter policy decided.
    pub retries: Family<MappingLabel, Counter>,
    /// Failures handed to the dead-letter policy, by kind.
    pub failures: Family<FailureLabel, Counter>,
    /// Targets the bridge refused (a plugin's or a header's choice), by reason.
    pub target_refusals: Family<RefusalLabel, Counter>,
    /// Outputs whose `x-bridge-hops` a plugin changed (the host's count was put back).
    pub hop_rewrites: Family<MappingLabel, Counter>,
    /// Mapping restarts after a lost connection.
    pub restarts: Family<MappingLabel, Counter>,
    /// 1 while the mapping's source and target are connected.
    pub connected: Family<MappingLabel, Gauge>,
    /// Messages consumed and not yet settled.
    pub in_flight: Family<MappingLabel, Gauge>,
    /// Messages in a partition beyond the mapping's consumer position (librdkafka statistics).
    pub consumer_lag: Family<PartitionLabel, Gauge>,
    /// Kafka partitions the mapping's consumer holds.
    pub partitions: Family<MappingLabel, Gauge>,
    /// Partitions assigned to or revoked from the mapping, counted per partition.
    pub rebalances: Family<RebalanceLabel, Counter>,
    /// The mapping's circuit breaker: 0 closed, 1 open, 2 half-open.
    pub breaker: Family<MappingLabel, Gauge>,
    /// Seconds from the source message's timestamp to the target's confirmation.
    pub latency: Histograms,
    /// Seconds per plugin call (`process`), by mapping and plugin.
    pub plugin_call: CallHistograms,
    /// 1 while the Kafka cluster answers metadata requests.
    pub cluster_reachable: Family<ClusterLabel, Gauge>,
    /// 1 for every running plugin version, with its contract version and digest.
    pub plugin_info: Family<PluginLabel, Gauge>,
    /// Plugin reloads, applied or rejected.
    pub plugin_reloads: Family<ReloadLabel, Counter>,
    /// Configuration reloads, applied or rejected.
    pub config_reloads: Family<ResultLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `bridge_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bridge");
        let m = Metrics {
            consumed: Family::default(),
            delivered: Family::default(),
            dropped: Family::default(),
            duplicates: Family::default(),
            dead_lettered: Family::default(),
            retries: Family::default(),
            failures: Family::default(),
            target_refusals: Family::default(),
            hop_rewrites: Family::default(),
            restarts: Family::default(),
            connected: Family::default(),
            in_flight: Family::default(),
            consumer_lag: Family::default(),
            partitions: Family::default(),
            rebalances: Family::default(),
            breaker: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            plugin_call: Family::new_with_constructor(call_histogram),
            cluster_reachable: Family::default(),
            plugin_info: Family::default(),
            plugin_reloads: Family::default(),
            config_reloads: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "messages_consumed",
            "Messages taken from the mapping's source",
            m.consumed.clone(),
        );
        r.register(
            "messages_delivered",
            "Messages the mapping's target confirmed",
            m.delivered.clone(),
        );
        r.register(
            "messages_dropped",
            "Messages dropped by a plugin or the dead-letter policy",
            m.dropped.clone(),
        );
        r.register(
            "messages_duplicates",
            "Messages dropped as duplicates (dedup)",
            m.duplicates.clone(),
        );
        r.register(
            "messages_dead_lettered",
            "Messages sent to the dead-letter target",
            m.dead_lettered.clone(),
        );
        r.register(
            "messages_retried",
            "Retries decided by the dead-letter policy",
            m.retries.clone(),
        );
        r.register(
            "failures",
            "Failures handed to the dead-letter policy, by failure kind",
            m.failures.clone(),
        );
        r.register(
            "target_refusals",
            "Messages whose target the bridge refused (outside the tenant's allowlists, a topic, partition or exchange that does not exist), by reason",
            m.target_refusals.clone(),
        );
        r.register(
            "hop_rewrites",
            "Outputs whose x-bridge-hops a plugin changed; the host's count was put back",
            m.hop_rewrites.clone(),
        );
        r.register(
            "mapping_restarts",
            "Mapping restarts after a lost broker connection",
            m.restarts.clone(),
        );
        r.register(
            "mapping_connected",
            "1 while the mapping's source and target are connected",
            m.connected.clone(),
        );
        r.register(
            "messages_in_flight",
            "Messages consumed and not yet settled",
            m.in_flight.clone(),
        );
        r.register(
            "consumer_lag",
            "Messages in a partition beyond the mapping's consumer position",
            m.consumer_lag.clone(),
        );
        r.register(
            "partitions_assigned",
            "Kafka partitions the mapping's consumer holds",
            m.partitions.clone(),
        );
        r.register(
            "rebalanced_partitions",
            "Partitions assigned to or revoked from the mapping by its consumer group",
            m.rebalances.clone(),
        );
        r.register(
            "breaker_state",
            "The mapping's circuit breaker: 0 closed, 1 open, 2 half-open",
            m.breaker.clone(),
        );
        r.register(
            "end_to_end_latency_seconds",
            "From the source message's timestamp to the target's confirmation",
            m.latency.clone(),
        );
        r.register(
            "plugin_call_seconds",
            "Time per plugin call, by mapping and plugin",
            m.plugin_call.clone(),
        );
        r.register(
            "kafka_cluster_reachable",
            "1 while the Kafka cluster answers metadata requests",
            m.cluster_reachable.clone(),
        );
        r.register(
            "plugin_info",
            "A running plugin version, with its contract version and digest (always 1)",
            m.plugin_info.clone(),
        );
        r.register(
            "plugin_reloads",
            "Plugin reloads, by result (applied, rejected)",
            m.plugin_reloads.clone(),
        );
        r.register(
            "config_reloads",
            "Configuration reloads, by result (applied, rejected)",
            m.config_reloads.clone(),
        );
        // Counted from 0, so that rates and dashboards see the series before a reload.
        for result in ["applied", "rejected"] {
            let _ = m.config_reloads.get_or_create(&ResultLabel {
                result: result.to_string(),
            });
        }
        Metrics { registry, ..m }
    }

    /// The registry in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "Cannot encode the metrics.");
        }
        out
    }

    /// The label of mapping `name` of tenant `tenant`.
    pub fn mapping(name: &str, tenant: &str) -> MappingLabel {
        MappingLabel {
            mapping: name.to_string(),
            tenant: tenant.to_string(),
        }
    }
}
