//! Typed telemetry events of one mapping. Every event updates its metric in the bridge's
//! registry ([`Metrics`]) and, where an operator should see it, writes one fields-first log
//! line — in [`Counters::emit`], the only place either happens. `/metrics`, `/status` and the
//! stats heartbeat read the same handles.

use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use serde_json::{Value, json};

use super::metrics::{
    FailureLabel, Metrics, PartitionLabel, PluginCallLabel, PluginLabel, RebalanceLabel,
    RefusalLabel, ReloadLabel, ResultLabel,
};
use crate::config::MappingChanges;
use crate::plugin::LoadedPlugin;

/// Circuit breaker states, by their `bridge_breaker_state` value.
const BREAKER_STATES: [&str; 3] = ["closed", "open", "half-open"];

/// Where a retried failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// In the plugin chain (or before it: the hop limit).
    Processing,
    /// At the target, which refused a message.
    Delivery,
}

/// Something that happened in a mapping.
#[derive(Debug)]
pub enum Event<'a> {
    /// Messages taken from the source.
    Consumed(u64),
    /// Messages the target confirmed, for one source message (its timestamp, ms since the
    /// epoch, gives the end-to-end latency).
    Delivered {
        /// Confirmed outputs.
        messages: u64,
        /// The source message's timestamp.
        source_timestamp_ms: Option<i64>,
    },
    /// A message dropped as a duplicate.
    Duplicate,
    /// A message dropped by a plugin or the policy.
    Dropped,
    /// A failure handed to the dead-letter policy.
    Failed {
        /// The failure kind (`plugin-trap`, `target-rejected`, …).
        kind: &'a str,
    },
    /// The policy asked for a retry.
    Retried {
        /// The failure kind.
        kind: &'a str,
        /// Where the failure happened.
        stage: Stage,
        /// The attempt that failed.
        attempt: u32,
        /// The delay before the next attempt.
        delay: Duration,
        /// What failed.
        error: &'a str,
    },
    /// A plugin changed an output's `x-bridge-hops`; the host's count was put back.
    HopsRewritten,
    /// The bridge refused a message's target (`target-not-allowed`, `unknown-topic`, …).
    TargetRefused(&'a str),
    /// A message sent to the dead-letter target.
    DeadLettered {
        /// The failure kind.
        kind: &'a str,
        /// The policy's reason.
        reason: &'a str,
    },
    /// The mapping stopped on an error and restarts after `retry_in`.
    Restarted {
        /// Why it stopped.
        error: &'a str,
        /// The back-off before the restart.
        retry_in: Duration,
    },
    /// The consumer group gave the mapping these partitions.
    PartitionsAssigned(&'a [(String, i32)]),
    /// The consumer group took these partitions away.
    PartitionsRevoked(&'a [(String, i32)]),
    /// Messages consumed and not yet settled.
    InFlight(usize),
    /// Consumer lag per partition (`(topic, partition, lag)`), from librdkafka's statistics.
    Lag(&'a [(String, i32, i64)]),
    /// The circuit breaker moved to `closed`, `open` or `half-open`.
    Breaker(&'static str),
}

/// The telemetry of one mapping: handles into the bridge's metrics registry.
#[derive(Debug)]
pub struct Counters {
    mapping: String,
    tenant: String,
    consumed: Counter,
    delivered: Counter,
    dropped: Counter,
    duplicates: Counter,
    dead_lettered: Counter,
    retries: Counter,
    restarts: Counter,
    failures: Family<FailureLabel, Counter>,
    target_refusals: Family<RefusalLabel, Counter>,
    hop_rewrites: Counter,
    in_flight: Gauge,
    latency: Histogram,
    lag: Family<PartitionLabel, Gauge>,
    lag_total: AtomicI64,
    partitions: Gauge,
    rebalances: Family<RebalanceLabel, Counter>,
    breaker: Gauge,
    plugin_calls: Family<PluginCallLabel, Histogram, fn() -> Histogram>,
    timers: RwLock<Vec<PluginTimer>>,
}

/// Times one plugin's calls in one mapping (the `plugin_call_seconds` histogram); held by the
/// chain so a call costs no lookup.
#[derive(Debug, Clone)]
pub struct PluginTimer {
    plugin: String,
    histogram: Histogram,
}

impl PluginTimer {
    /// Records one call that took `elapsed`.
    pub fn called(&self, elapsed: Duration) {
        self.histogram.observe(elapsed.as_secs_f64());
    }
}

impl Counters {
    /// The handles of mapping `mapping` (its series exist, at 0, from now on).
    pub fn new(metrics: &Metrics, mapping: &str, tenant: &str) -> Self {
        let label = Metrics::mapping(mapping, tenant);
        Counters {
            mapping: mapping.to_string(),
            tenant: tenant.to_string(),
            consumed: metrics.consumed.get_or_create(&label).clone(),
            delivered: metrics.delivered.get_or_create(&label).clone(),
            dropped: metrics.dropped.get_or_create(&label).clone(),
            duplicates: metrics.duplicates.get_or_create(&label).clone(),
            dead_lettered: metrics.dead_lettered.get_or_create(&label).clone(),
            retries: metrics.retries.get_or_create(&label).clone(),
            restarts: metrics.restarts.get_or_create(&label).clone(),
            failures: metrics.failures.clone(),
            target_refusals: metrics.target_refusals.clone(),
            hop_rewrites: metrics.hop_rewrites.get_or_create(&label).clone(),
            in_flight: metrics.in_flight.get_or_create(&label).clone(),
            latency: metrics.latency.get_or_create(&label).clone(),
            lag: metrics.consumer_lag.clone(),
            lag_total: AtomicI64::new(0),
            partitions: metrics.partitions.get_or_create(&label).clone(),
            rebalances: metrics.rebalances.clone(),
            breaker: metrics.breaker.get_or_create(&label).clone(),
            plugin_calls: metrics.plugin_call.clone(),
            timers: RwLock::new(Vec::new()),
        }
    }

    /// Records `event`: its metric, and its log line where it has one.
    pub fn emit(&self, event: Event<'_>) {
        let mapping = self.mapping.as_str();
        match event {
            Event::Consumed(n) => {
                self.consumed.inc_by(n);
            }
            Event::Delivered {
                messages,
                source_timestamp_ms,
            } => {
                self.delivered.inc_by(messages);
                if messages > 0
                    && let Some(ts) = source_timestamp_ms
                {
                    self.observe_latency(ts);
                }
            }
            Event::Duplicate => {
                self.duplicates.inc();
                tracing::debug!(mapping, "Duplicate dropped.");
            }
            Event::Dropped => {
                self.dropped.inc();
            }
            Event::HopsRewritten => {
                self.hop_rewrites.inc();
                tracing::debug!(
                    mapping,
                    "A plugin changed x-bridge-hops; the host's count stands."
                );
            }
            Event::TargetRefused(reason) => {
                self.target_refusals
                    .get_or_create(&RefusalLabel {
                        mapping: mapping.to_string(),
                        tenant: self.tenant.clone(),
                        reason: reason.to_string(),
                    })
                    .inc();
            }
            Event::Failed { kind } => {
                self.failures
                    .get_or_create(&FailureLabel {
                        mapping: mapping.to_string(),
                        tenant: self.tenant.clone(),
                        kind: kind.to_string(),
                    })
                    .inc();
            }
            Event::Retried {
                kind,
                stage,
                attempt,
                delay,
                error,
            } => {
                self.retries.inc();
                let retry_ms = delay.as_millis() as u64;
                match stage {
                    Stage::Processing => {
                        tracing::warn!(
                            mapping,
                            kind,
                            attempt,
                            retry_ms,
                            error,
                            "Processing failed; retrying."
                        )
                    }
                    Stage::Delivery => {
                        tracing::warn!(
                            mapping,
                            kind,
                            attempt,
                            retry_ms,
                            error,
                            "Delivery failed; retrying."
                        )
                    }
                }
            }
            Event::DeadLettered { kind, reason } => {
                self.dead_lettered.inc();
                tracing::warn!(mapping, kind, reason, "Message dead-lettered.");
            }
            Event::Restarted { error, retry_in } => {
                self.restarts.inc();
                self.partitions.set(0);
                self.in_flight.set(0);
                let retry_in_ms = retry_in.as_millis() as u64;
                tracing::error!(mapping, error, retry_in_ms, "Mapping stopped; restarting.");
            }
            Event::PartitionsAssigned(parts) => {
                self.partitions.inc_by(parts.len() as i64);
                self.rebalance("assigned", parts.len());
                let partitions = describe(parts);
                tracing::info!(mapping, partitions, "Kafka partitions assigned.");
            }
            Event::PartitionsRevoked(parts) => {
                self.partitions.dec_by(parts.len() as i64);
                self.rebalance("revoked", parts.len());
                let partitions = describe(parts);
                tracing::info!(mapping, partitions, "Kafka partitions revoked.");
            }
            Event::Breaker(state) => {
                let code = BREAKER_STATES.iter().position(|s| *s == state).unwrap_or(0);
                self.breaker.set(code as i64);
                match state {
                    "open" => tracing::warn!(
                        mapping,
                        state,
                        "Circuit breaker open: plugin failures reached the limit."
                    ),
                    _ => tracing::info!(mapping, state, "Circuit breaker {state}."),
                }
            }
            Event::InFlight(n) => {
                self.in_flight.set(n as i64);
            }
            Event::Lag(parts) => {
                for (topic, partition, lag) in parts {
                    self.lag
                        .get_or_create(&PartitionLabel {
                            mapping: mapping.to_string(),
                            tenant: self.tenant.clone(),
                            topic: topic.clone(),
                            partition: *partition,
                        })
                        .set(*lag);
                }
                let total = parts.iter().map(|(_, _, lag)| lag).sum();
                self.lag_total.store(total, Ordering::Relaxed);
            }
        }
    }

    fn rebalance(&self, change: &str, partitions: usize) {
        self.rebalances
            .get_or_create(&RebalanceLabel {
                mapping: self.mapping.clone(),
                tenant: self.tenant.clone(),
                change: change.to_string(),
            })
            .inc_by(partitions as u64);
    }

    fn observe_latency(&self, timestamp_ms: i64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        if now >= timestamp_ms {
            self.latency.observe((now - timestamp_ms) as f64 / 1000.0);
        }
    }

    /// The timer of plugin `plugin`'s calls in this mapping.
    pub fn plugin_timer(&self, plugin: &str) -> PluginTimer {
        if let Ok(timers) = self.timers.read()
            && let Some(t) = timers.iter().find(|t| t.plugin == plugin)
        {
            return t.clone();
        }
        let timer = PluginTimer {
            plugin: plugin.to_string(),
            histogram: self
                .plugin_calls
                .get_or_create(&PluginCallLabel {
                    mapping: self.mapping.clone(),
                    tenant: self.tenant.clone(),
                    plugin: plugin.to_string(),
                })
                .clone(),
        };
        if let Ok(mut timers) = self.timers.write() {
            timers.push(timer.clone());
        }
        timer
    }

    /// The counters as `/status` shows them.
    pub fn to_json(&self) -> Value {
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
            "partitions": self.partitions.get(),
            "breaker": BREAKER_STATES.get(self.breaker.get() as usize).copied().unwrap_or("closed"),
        })
    }

    /// Logs the counters in one fields-first line (the heartbeat, the stop summary).
    pub fn log(&self, connected: bool, message: &str) {
        tracing::info!(
            mapping = %self.mapping,
            connected,
            consumed = self.consumed.get(),
            delivered = self.delivered.get(),
            dropped = self.dropped.get(),
            duplicates = self.duplicates.get(),
            dead_lettered = self.dead_lettered.get(),
            retries = self.retries.get(),
            restarts = self.restarts.get(),
            in_flight = self.in_flight.get(),
            lag = self.lag_total.load(Ordering::Relaxed),
            "{message}"
        );
    }
}

/// Something that happened to the bridge as a whole.
#[derive(Debug)]
pub enum BridgeEvent<'a> {
    /// A plugin was loaded at startup.
    PluginLoaded(&'a LoadedPlugin),
    /// A new version of a plugin replaced the running one.
    PluginReloaded {
        /// The version it replaced.
        old: Option<&'a LoadedPlugin>,
        /// The new version.
        new: &'a LoadedPlugin,
        /// `file`, `signal` or `admin`.
        trigger: &'a str,
    },
    /// A new configuration was applied.
    ConfigReloaded {
        /// The mappings it stopped, started and restarted.
        changes: &'a MappingChanges,
        /// `file`, `signal` or `admin`.
        trigger: &'a str,
    },
    /// A new configuration was rejected whole; the running one stays.
    ConfigRejected {
        /// Why (file, line and key).
        reason: &'a str,
        /// `file`, `signal` or `admin`.
        trigger: &'a str,
    },
    /// A new version of a plugin was rejected; the running one stays.
    PluginRejected {
        /// The plugin's name.
        plugin: &'a str,
        /// Why.
        reason: &'a str,
        /// `file`, `signal` or `admin`.
        trigger: &'a str,
    },
}

impl Metrics {
    /// Records `event`: its metric, and its log line where it has one.
    pub fn emit(&self, event: BridgeEvent<'_>) {
        match event {
            BridgeEvent::PluginLoaded(p) => {
                self.plugin_info.get_or_create(&plugin_label(p)).set(1);
                // Counted from 0, so that rates and dashboards see the series before a reload.
                for result in ["applied", "rejected"] {
                    let _ = self.plugin_reloads.get_or_create(&ReloadLabel {
                        plugin: p.name().to_string(),
                        result: result.to_string(),
                    });
                }
            }
            BridgeEvent::PluginReloaded { old, new, trigger } => {
                if let Some(old) = old {
                    self.plugin_info.remove(&plugin_label(old));
                }
                self.plugin_info.get_or_create(&plugin_label(new)).set(1);
                self.reloads(new.name(), "applied");
                tracing::info!(
                    plugin = new.name(),
                    from = old.map(|o| o.digest()),
                    to = new.digest(),
                    version = new.version(),
                    trigger,
                    "Plugin reloaded."
                );
            }
            BridgeEvent::ConfigReloaded { changes, trigger } => {
                self.config_reloads("applied");
                tracing::info!(
                    added = %changes.added.join(","),
                    removed = %changes.removed.join(","),
                    restarted = %changes.restarted.join(","),
                    unchanged = changes.unchanged.len(),
                    trigger,
                    "Configuration reloaded."
                );
            }
            BridgeEvent::ConfigRejected { reason, trigger } => {
                self.config_reloads("rejected");
                tracing::error!(
                    reason,
                    trigger,
                    "Configuration reload rejected; the running configuration stays."
                );
            }
            BridgeEvent::PluginRejected {
                plugin,
                reason,
                trigger,
            } => {
                self.reloads(plugin, "rejected");
                tracing::error!(
                    plugin,
                    reason,
                    trigger,
                    "Plugin reload rejected; the running version stays."
                );
            }
        }
    }

    fn config_reloads(&self, result: &str) {
        self.config_reloads
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
    }

    fn reloads(&self, plugin: &str, result: &str) {
        self.plugin_reloads
            .get_or_create(&ReloadLabel {
                plugin: plugin.to_string(),
                result: result.to_string(),
            })
            .inc();
    }
}

fn plugin_label(p: &LoadedPlugin) -> PluginLabel {
    PluginLabel {
        plugin: p.name().to_string(),
        version: p.version().unwrap_or_default().to_string(),
        contract: p.contract_version().to_string(),
        digest: p.digest().to_string(),
    }
}

fn describe(parts: &[(String, i32)]) -> String {
    parts
        .iter()
        .map(|(t, p)| format!("{t}/{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_moves_its_metric() {
        let metrics = Metrics::new();
        let c = Counters::new(&metrics, "m", "t");
        c.emit(Event::Consumed(3));
        c.emit(Event::Delivered {
            messages: 2,
            source_timestamp_ms: Some(0),
        });
        c.emit(Event::Failed {
            kind: "plugin-trap",
        });
        c.emit(Event::Retried {
            kind: "plugin-trap",
            stage: Stage::Processing,
            attempt: 1,
            delay: Duration::from_millis(5),
            error: "boom",
        });
        let parts = vec![("t".to_string(), 0), ("t".to_string(), 1)];
        c.emit(Event::PartitionsAssigned(&parts));
        c.emit(Event::PartitionsRevoked(&parts[..1]));
        c.plugin_timer("p").called(Duration::from_micros(3));
        let text = metrics.encode();
        for line in [
            "bridge_messages_consumed_total{mapping=\"m\",tenant=\"t\"} 3",
            "bridge_messages_delivered_total{mapping=\"m\",tenant=\"t\"} 2",
            "bridge_failures_total{mapping=\"m\",tenant=\"t\",kind=\"plugin-trap\"} 1",
            "bridge_messages_retried_total{mapping=\"m\",tenant=\"t\"} 1",
            "bridge_partitions_assigned{mapping=\"m\",tenant=\"t\"} 1",
            "bridge_rebalanced_partitions_total{mapping=\"m\",tenant=\"t\",change=\"assigned\"} 2",
            "bridge_plugin_call_seconds_count{mapping=\"m\",tenant=\"t\",plugin=\"p\"} 1",
            "bridge_end_to_end_latency_seconds_count{mapping=\"m\",tenant=\"t\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert_eq!(c.to_json()["partitions"], 1);
    }
}
