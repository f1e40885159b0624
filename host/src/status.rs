//! What the bridge knows about itself: per-mapping connection state and counters, whether
//! each Kafka cluster answers, and what the reloads did ([`ReloadReport`]). Read by the health
//! endpoints ([`crate::health`]) and logged as a periodic stats heartbeat and a summary at stop.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{BridgeConfig, MappingChanges, Source, Target};
use crate::connector::{Sink, SourceEvents};
use crate::plugin::{PluginSet, Rejection, Swap};
use crate::telemetry::metrics::{ClusterLabel, Metrics};
use crate::telemetry::{BridgeEvent, Counters, Event};

/// State of one mapping.
#[derive(Debug)]
pub struct MappingStatus {
    /// The mapping name.
    pub name: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// Source consuming and target open.
    connected: AtomicBool,
    connected_gauge: Gauge,
    /// Its counters.
    pub counters: Counters,
    /// Its plugins, `name@version` (in chain order, then the policy).
    plugins: Mutex<Vec<String>>,
    /// Why it moves nothing now (a RabbitMQ resource alarm, a message it cannot deliver and
    /// has nowhere to dead-letter), if so.
    stalled: Mutex<Option<String>>,
    /// Whether `stalled` holds a reason (checked without the lock on every delivery).
    is_stalled: AtomicBool,
    /// Why the mapping last stopped and restarted, if it did.
    last_error: Mutex<Option<String>>,
    /// The target it sends to, to tell when the broker blocks it.
    publisher: Mutex<Option<std::sync::Weak<dyn Sink>>>,
}

impl SourceEvents for MappingStatus {
    fn assigned(&self, partitions: &[(String, i32)]) {
        self.counters.emit(Event::PartitionsAssigned(partitions));
    }

    fn revoked(&self, partitions: &[(String, i32)]) {
        self.counters.emit(Event::PartitionsRevoked(partitions));
    }

    fn lag(&self, lag: &[(String, i32, i64)]) {
        self.counters.emit(Event::Lag(lag));
    }
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

    /// Records why the mapping moves nothing now, or (`None`) that it moves messages again.
    pub fn set_stalled(&self, why: Option<String>) {
        if why.is_none() && !self.is_stalled.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut s) = self.stalled.lock() {
            self.is_stalled.store(why.is_some(), Ordering::Relaxed);
            *s = why;
        }
    }

    /// Records why the mapping stopped (it restarts).
    pub fn set_last_error(&self, error: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error);
        }
    }

    /// Records the target the mapping sends to.
    pub fn set_publisher(&self, sink: &Arc<dyn Sink>) {
        if let Ok(mut p) = self.publisher.lock() {
            *p = Some(Arc::downgrade(sink));
        }
    }

    /// Why the target takes nothing from the mapping now, if the broker blocked it.
    pub fn blocked(&self) -> Option<String> {
        let publisher = self.publisher.lock().ok()?;
        publisher.as_ref()?.upgrade()?.blocked()
    }

    /// Why the mapping last stopped, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Why the mapping moves nothing now, if so.
    pub fn stalled(&self) -> Option<String> {
        if !self.is_stalled.load(Ordering::Relaxed) {
            return None;
        }
        self.stalled.lock().ok().and_then(|s| s.clone())
    }

    fn plugins(&self) -> Vec<String> {
        self.plugins.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Logs the mapping's counters in one fields-first line (the heartbeat, the stop summary).
    pub fn log_counters(&self, message: &str) {
        self.counters.log(self.is_connected(), message);
    }

    /// Whether the mapping's source and target are connected.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// What one reload did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadReport {
    /// The configuration file: `unchanged`, `applied` or `rejected`.
    pub config: &'static str,
    /// Why the configuration was rejected (it names the file, line and key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    /// The mappings the configuration reload stopped, started and restarted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mappings: Option<MappingChanges>,
    /// Plugins swapped to a new version: `name@sha256:…`.
    pub applied: Vec<String>,
    /// Plugins whose new version was rejected, with the reason; the old version keeps running.
    pub rejected: Vec<Rejection>,
    /// Plugins whose file did not change.
    pub unchanged: usize,
}

/// Rejections `/status` keeps.
const RECENT_REJECTIONS: usize = 5;

/// Plugin and configuration reloads since the start.
#[derive(Debug, Default, Serialize)]
struct Reloads {
    applied: u64,
    rejected: u64,
    /// The latest rejections, oldest first.
    recent_rejections: Vec<Rejection>,
    config: ConfigReloads,
}

/// Configuration reloads since the start.
#[derive(Debug, Default, Serialize)]
struct ConfigReloads {
    applied: u64,
    rejected: u64,
    /// Why the last rejected configuration was rejected.
    last_rejection: Option<String>,
    /// What the last applied configuration changed.
    last_changes: Option<MappingChanges>,
}

/// The bridge's state.
#[derive(Debug)]
pub struct Status {
    reloads: Mutex<Reloads>,
    /// The running plugins, for the stage on `/status`.
    plugins: std::sync::OnceLock<Arc<PluginSet>>,
    /// The running mappings, in configuration order (a configuration reload changes them).
    mappings: RwLock<Vec<Arc<MappingStatus>>>,
    /// Kafka clusters in use, and whether they answered the last metadata request.
    clusters: RwLock<BTreeMap<String, Arc<AtomicBool>>>,
    metrics: Arc<Metrics>,
}

impl Status {
    /// A status for the mappings and Kafka clusters of `config`, nothing connected yet.
    pub fn new(config: &BridgeConfig) -> Arc<Self> {
        let status = Status {
            reloads: Mutex::default(),
            plugins: std::sync::OnceLock::new(),
            mappings: RwLock::default(),
            clusters: RwLock::default(),
            metrics: Arc::new(Metrics::new()),
        };
        status.configure(config);
        Arc::new(status)
    }

    /// Follows a new configuration: a mapping keeps its state and counters under the same
    /// name, new ones start disconnected, removed ones disappear (their connection gauge too);
    /// the same for Kafka clusters.
    pub fn configure(&self, config: &BridgeConfig) {
        let Ok(mut mappings) = self.mappings.write() else {
            return;
        };
        let mut next = Vec::with_capacity(config.mapping.len());
        for m in &config.mapping {
            let existing = mappings.iter().find(|s| s.name == m.name).cloned();
            next.push(existing.unwrap_or_else(|| {
                Arc::new(MappingStatus {
                    name: m.name.clone(),
                    connected: AtomicBool::new(false),
                    connected_gauge: self
                        .metrics
                        .connected
                        .get_or_create(&Metrics::mapping(&m.name, m.tenant()))
                        .clone(),
                    counters: Counters::new(&self.metrics, &m.name, m.tenant()),
                    tenant: m.tenant().to_string(),
                    plugins: Mutex::new(Vec::new()),
                    stalled: Mutex::new(None),
                    is_stalled: AtomicBool::new(false),
                    last_error: Mutex::new(None),
                    publisher: Mutex::new(None),
                })
            }));
        }
        for gone in mappings
            .iter()
            .filter(|s| !next.iter().any(|n| n.name == s.name))
        {
            self.metrics
                .connected
                .remove(&Metrics::mapping(&gone.name, &gone.tenant));
        }
        *mappings = next;
        drop(mappings);

        let mut wanted = BTreeSet::new();
        for m in &config.mapping {
            if let Source::Kafka(k) = &m.source {
                wanted.insert(k.cluster.clone());
            }
            for t in std::iter::once(&m.target).chain(m.dead_letter.as_ref().map(|d| &d.0)) {
                if let Target::Kafka(k) = t {
                    wanted.insert(k.cluster.clone());
                }
            }
        }
        let Ok(mut clusters) = self.clusters.write() else {
            return;
        };
        clusters.retain(|name, _| {
            let keep = wanted.contains(name);
            if !keep {
                self.metrics.cluster_reachable.remove(&cluster_label(name));
            }
            keep
        });
        for name in wanted {
            clusters.entry(name.clone()).or_insert_with(|| {
                // Each cluster's series exists (at 0) before its first probe.
                self.metrics
                    .cluster_reachable
                    .get_or_create(&cluster_label(&name))
                    .set(0);
                Arc::new(AtomicBool::new(false))
            });
        }
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Records an applied configuration reload.
    pub fn config_applied(&self, changes: &MappingChanges, trigger: &str) {
        self.metrics
            .emit(BridgeEvent::ConfigReloaded { changes, trigger });
        if let Ok(mut r) = self.reloads.lock() {
            r.config.applied += 1;
            r.config.last_changes = Some(changes.clone());
        }
    }

    /// Records a rejected configuration reload; the running configuration stays.
    pub fn config_rejected(&self, reason: &str, trigger: &str) {
        self.metrics
            .emit(BridgeEvent::ConfigRejected { reason, trigger });
        if let Ok(mut r) = self.reloads.lock() {
            r.config.rejected += 1;
            r.config.last_rejection = Some(reason.to_string());
        }
    }

    /// Records the plugins loaded at startup and which of them each mapping runs.
    pub fn plugins_loaded(&self, config: &BridgeConfig, plugins: &Arc<PluginSet>) {
        let _ = self.plugins.set(Arc::clone(plugins));
        for p in plugins.all() {
            self.metrics.emit(BridgeEvent::PluginLoaded(&p));
        }
        self.show_plugins(config, plugins);
    }

    fn show_plugins(&self, config: &BridgeConfig, plugins: &PluginSet) {
        for (mapping, state) in config.mapping.iter().zip(self.mappings()) {
            let names = mapping.plugins.iter().chain(&mapping.dead_letter_policy);
            state.set_plugins(
                names
                    .filter_map(|n| plugins.get(n))
                    .map(|p| p.describe())
                    .collect(),
            );
        }
    }

    /// Records what a reload did: metrics, log lines, the mappings' plugin lists, and the
    /// latest rejections for `/status`.
    pub fn reloaded(
        &self,
        config: &BridgeConfig,
        trigger: &str,
        report: &ReloadReport,
        swapped: &[Swap],
        plugins: &PluginSet,
    ) {
        for (old, new) in swapped {
            self.metrics.emit(BridgeEvent::PluginReloaded {
                old: old.as_deref(),
                new,
                trigger,
            });
        }
        let new_rejections = report.rejected.iter().filter(|r| !r.repeated);
        for r in new_rejections.clone() {
            self.metrics.emit(BridgeEvent::PluginRejected {
                plugin: &r.plugin,
                reason: &r.reason,
                trigger,
            });
        }
        self.show_plugins(config, plugins);
        if let Ok(mut reloads) = self.reloads.lock() {
            reloads.applied += report.applied.len() as u64;
            for r in new_rejections {
                reloads.rejected += 1;
                if reloads.recent_rejections.len() == RECENT_REJECTIONS {
                    reloads.recent_rejections.remove(0);
                }
                reloads.recent_rejections.push(r.clone());
            }
        }
    }

    /// The mappings' states, in configuration order.
    pub fn mappings(&self) -> Vec<Arc<MappingStatus>> {
        self.mappings.read().map(|m| m.clone()).unwrap_or_default()
    }

    /// The state of mapping `name`.
    pub fn mapping(&self, name: &str) -> Option<Arc<MappingStatus>> {
        self.mappings().into_iter().find(|m| m.name == name)
    }

    fn clusters(&self) -> Vec<(String, Arc<AtomicBool>)> {
        self.clusters
            .read()
            .map(|c| c.iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect())
            .unwrap_or_default()
    }

    /// Ready: every mapping is connected and moving, and every Kafka cluster answers.
    pub fn is_ready(&self) -> bool {
        self.not_ready_because().is_empty()
    }

    /// Why the bridge is not ready, one line per reason (empty when ready).
    pub fn not_ready_because(&self) -> Vec<String> {
        let mut why = Vec::new();
        for m in self.mappings() {
            if !m.is_connected() {
                why.push(match m.last_error() {
                    Some(e) => format!("mapping `{}`: not connected (last error: {e})", m.name),
                    None => format!("mapping `{}`: not connected", m.name),
                });
            }
            if let Some(blocked) = m.blocked() {
                why.push(format!("mapping `{}`: {blocked}", m.name));
            }
            if let Some(stalled) = m.stalled() {
                why.push(format!("mapping `{}`: {stalled}", m.name));
            }
        }
        for (name, up) in self.clusters() {
            if !up.load(Ordering::Relaxed) {
                why.push(format!("Kafka cluster `{name}` does not answer"));
            }
        }
        why
    }

    /// Readiness, connections and counters as JSON.
    pub fn to_json(&self) -> Value {
        let why = self.not_ready_because();
        json!({
            "ready": why.is_empty(),
            "not_ready_because": why,
            "kafka": self.clusters().iter()
                .map(|(name, up)| (name.clone(), json!({ "reachable": up.load(Ordering::Relaxed) })))
                .collect::<serde_json::Map<_, _>>(),
            "mappings": self.mappings().iter()
                .map(|m| (m.name.clone(), json!({ "tenant": m.tenant, "connected": m.is_connected(), "blocked": m.blocked(), "stalled": m.stalled(), "last_error": m.last_error(), "plugins": m.plugins(), "counters": m.counters.to_json() })))
                .collect::<serde_json::Map<_, _>>(),
            "reloads": self.reloads.lock().ok().and_then(|r| serde_json::to_value(&*r).ok()),
            "stage": self.plugins.get().and_then(|p| serde_json::to_value(p.stage_view()).ok()),
            "plugins": self.plugins.get().map(|set| set.all().iter()
                .map(|p| (p.name().to_string(), json!({ "version": p.version(), "digest": p.digest(), "contract": p.contract_version(), "tenant": p.spec().tenant })))
                .collect::<serde_json::Map<_, _>>()),
        })
    }

    /// Logs one line per mapping with what it did since the start (when the bridge stops).
    pub fn log_stop(&self) {
        for m in self.mappings() {
            m.log_counters("Mapping summary.");
        }
    }

    /// Logs every mapping's counters every `every` (the stats heartbeat).
    pub async fn heartbeat(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            for m in self.mappings() {
                m.log_counters("Stats.");
            }
        }
    }

    /// The Kafka clusters readiness watches.
    pub fn watched_clusters(&self) -> Vec<String> {
        self.clusters().into_iter().map(|(name, _)| name).collect()
    }

    /// Records whether a Kafka cluster answered its readiness probe.
    pub fn cluster_reachable(&self, name: &str, up: bool) {
        let Some((_, flag)) = self.clusters().into_iter().find(|(n, _)| n == name) else {
            return;
        };
        let was = flag.swap(up, Ordering::Relaxed);
        self.metrics
            .cluster_reachable
            .get_or_create(&cluster_label(name))
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

fn cluster_label(name: &str) -> ClusterLabel {
    ClusterLabel {
        cluster: name.to_string(),
    }
}
