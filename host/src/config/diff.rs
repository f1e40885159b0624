//! What a configuration reload changes: which mappings stop, start or restart, and which run
//! on untouched. A mapping restarts when its own table changed or when a Kafka cluster or
//! RabbitMQ connection it uses changed (it needs a new client); plugin changes swap the plugin
//! in place and restart nothing.

use std::collections::BTreeSet;

use serde::Serialize;

use super::{BridgeConfig, Mapping, Source, Target};

/// The mappings a new configuration stops, starts, restarts and keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MappingChanges {
    /// In the old configuration only.
    pub removed: Vec<String>,
    /// In the new configuration only.
    pub added: Vec<String>,
    /// In both, changed (or using a changed cluster or connection).
    pub restarted: Vec<String>,
    /// In both, untouched.
    pub unchanged: Vec<String>,
}

impl MappingChanges {
    /// Whether any mapping stops, starts or restarts.
    pub fn any(&self) -> bool {
        !(self.removed.is_empty() && self.added.is_empty() && self.restarted.is_empty())
    }
}

/// Compares the mappings of `old` and `new`.
pub fn mapping_changes(old: &BridgeConfig, new: &BridgeConfig) -> MappingChanges {
    let mut changes = MappingChanges::default();
    for m in &old.mapping {
        if !new.mapping.iter().any(|n| n.name == m.name) {
            changes.removed.push(m.name.clone());
        }
    }
    for m in &new.mapping {
        match old.mapping.iter().find(|o| o.name == m.name) {
            None => changes.added.push(m.name.clone()),
            Some(o) if o != m || connections_changed(old, new, m) => {
                changes.restarted.push(m.name.clone())
            }
            Some(_) => changes.unchanged.push(m.name.clone()),
        }
    }
    changes
}

/// Whether a Kafka cluster or RabbitMQ connection `m` uses differs between `old` and `new`.
fn connections_changed(old: &BridgeConfig, new: &BridgeConfig, m: &Mapping) -> bool {
    let (clusters, connections) = uses(m);
    clusters
        .iter()
        .any(|c| old.kafka.get(*c) != new.kafka.get(*c))
        || connections
            .iter()
            .any(|c| old.rabbitmq.get(*c) != new.rabbitmq.get(*c))
}

/// The Kafka clusters and RabbitMQ connections a mapping uses.
fn uses(m: &Mapping) -> (BTreeSet<&str>, BTreeSet<&str>) {
    let mut clusters = BTreeSet::new();
    let mut connections = BTreeSet::new();
    match &m.source {
        Source::Kafka(k) => clusters.insert(k.cluster.as_str()),
        Source::Amqp(a) => connections.insert(a.connection.as_str()),
        Source::Stream(s) => connections.insert(s.connection.as_str()),
    };
    for t in std::iter::once(&m.target).chain(m.dead_letter.as_ref().map(|d| &d.0)) {
        match t {
            Target::Kafka(k) => clusters.insert(k.cluster.as_str()),
            Target::Amqp(a) => connections.insert(a.connection.as_str()),
            Target::Stream(s) => connections.insert(s.connection.as_str()),
        };
    }
    (clusters, connections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> BridgeConfig {
        BridgeConfig::parse(Path::new("bridge.toml"), text, &|_| None).unwrap()
    }

    const BASE: &str = r#"
[kafka.k]
bootstrap_servers = "h:9092"
[kafka.other]
bootstrap_servers = "o:9092"
[rabbitmq.r]
url = "amqp://h/%2f"
[[mapping]]
name = "a"
source = { kafka = "k", topics = ["a"] }
target = { rabbitmq = "r", exchange = "e" }
[[mapping]]
name = "b"
source = { rabbitmq = "r", queue = "b" }
target = { kafka = "k", topic = "b" }
[[mapping]]
name = "c"
source = { kafka = "other", topics = ["c"] }
target = { kafka = "other", topic = "c2" }
"#;

    #[test]
    fn adds_removes_restarts_and_keeps() {
        let old = parse(BASE);
        let new = parse(
            &BASE
                .replace("name = \"a\"", "name = \"a2\"")
                .replace("topic = \"b\"", "topic = \"b-new\""),
        );
        let changes = mapping_changes(&old, &new);
        assert_eq!(changes.removed, ["a"]);
        assert_eq!(changes.added, ["a2"]);
        assert_eq!(changes.restarted, ["b"]);
        assert_eq!(changes.unchanged, ["c"]);
    }

    #[test]
    fn a_changed_connection_restarts_only_its_users() {
        let old = parse(BASE);
        let new = parse(&BASE.replace("amqp://h/%2f", "amqp://h2/%2f"));
        let changes = mapping_changes(&old, &new);
        assert_eq!(changes.restarted, ["a", "b"]);
        assert_eq!(changes.unchanged, ["c"]);
        assert!(!mapping_changes(&old, &old).any());
    }
}
