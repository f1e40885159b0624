//! `bridge-host migrate`: the Helm values of the Python replicators this bridge replaces —
//! the Kafka⇄RabbitMQ replicator and the Kafka→Kafka replicator — as an equivalent, commented
//! `bridge.toml`. Several values files merge as Helm merges them (later files win, maps merge
//! key by key). Passwords become `${ENV}` references, never literals.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// Why values could not be migrated; names the file or the key.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A values file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A values file is not YAML.
    #[error("`{path}` is not valid YAML: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// The merged values do not have the shape of either chart.
    #[error("values: {0}")]
    Shape(String),
}

/// The environment variable the RabbitMQ password is read from.
pub const RABBITMQ_PASSWORD_ENV: &str = "RABBITMQ_PASSWORD";

/// Reads and merges `files`, and writes the equivalent `bridge.toml`.
pub fn migrate(files: &[PathBuf]) -> Result<String, MigrateError> {
    let mut merged = Value::Object(Default::default());
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|source| MigrateError::Read {
            path: path.clone(),
            source,
        })?;
        let value: Value = serde_saphyr::from_str(&text).map_err(|e| MigrateError::Yaml {
            path: path.clone(),
            message: e.to_string(),
        })?;
        merge(&mut merged, value);
    }
    let sources: Vec<String> = files.iter().map(|p| display(p)).collect();
    let k2k = ["sourceKafka", "targetKafka"]
        .iter()
        .any(|k| merged.get(k).is_some())
        || [
            "replication.sourceToTarget",
            "replication.targetToSource",
            "consumerGroup.sourceToTarget",
        ]
        .iter()
        .any(|p| field::<Value>(&merged, p).ok().flatten().is_some());
    if k2k {
        kafka_to_kafka(&merged, &sources)
    } else if merged.get("rabbitmq").is_some() || merged.get("kafka").is_some() {
        kafka_rabbitmq(&merged, &sources)
    } else {
        Err(MigrateError::Shape(
            "neither the Kafka⇄RabbitMQ chart (`kafka`, `rabbitmq`) nor the Kafka→Kafka chart \
             (`sourceKafka`, `targetKafka`)"
                .to_string(),
        ))
    }
}

fn display(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Helm's merge: maps merge key by key, anything else is replaced.
fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, other) => *slot = other,
    }
}

fn field<T: for<'de> Deserialize<'de>>(
    values: &Value,
    path: &str,
) -> Result<Option<T>, MigrateError> {
    let mut at = values;
    for key in path.split('.') {
        match at.get(key) {
            Some(v) if !v.is_null() => at = v,
            _ => return Ok(None),
        }
    }
    serde_json::from_value(at.clone())
        .map(Some)
        .map_err(|e| MigrateError::Shape(format!("`{path}`: {e}")))
}

fn required<T: for<'de> Deserialize<'de>>(values: &Value, path: &str) -> Result<T, MigrateError> {
    field(values, path)?.ok_or_else(|| MigrateError::Shape(format!("`{path}` is missing")))
}

/// The fields of a consumer group given as a table (the production shape).
const GROUP_FIELDS: &[&str] = &[
    "groupId",
    "sessionTimeoutMs",
    "heartbeatIntervalMs",
    "maxPollIntervalMs",
    "autoCommitIntervalMs",
    "autoOffsetReset",
    "maxPollRecords",
    "enableAutoCommit",
];

/// The keys of the Kafka⇄RabbitMQ chart that `migrate` carries over or explains; `[]` is any
/// list index, and a key ending in `.*` covers everything below it.
const KAFKA_RABBITMQ_KEYS: &[&str] = &[
    "replicaCount",
    "resources.*",
    "healthCheck.enabled",
    "healthCheck.initialDelaySeconds",
    "healthCheck.periodSeconds",
    "kafka.bootstrapServers",
    "rabbitmq.host",
    "rabbitmq.port",
    "rabbitmq.username",
    "rabbitmq.password",
    "rabbitmq.vhost",
    "consumer.autoOffsetReset",
    "replication.kafkaToRabbitmq.enabled",
    "replication.kafkaToRabbitmq.mappings[].kafkaTopic",
    "replication.kafkaToRabbitmq.mappings[].rabbitmqQueue",
    "replication.kafkaToRabbitmq.mappings[].rabbitmqExchange",
    "replication.kafkaToRabbitmq.mappings[].rabbitmqRoutingKey",
    "replication.rabbitmqToKafka.enabled",
    "replication.rabbitmqToKafka.mappings[].rabbitmqQueue",
    "replication.rabbitmqToKafka.mappings[].kafkaTopic",
];
/// Its consumer groups: a name, or a table of [`GROUP_FIELDS`].
const KAFKA_RABBITMQ_GROUPS: &[&str] = &[
    "consumerGroup.kafkaToRabbitmq",
    "consumerGroup.rabbitmqToKafka",
];

/// The keys of the Kafka→Kafka chart that `migrate` carries over or explains.
const KAFKA_KAFKA_KEYS: &[&str] = &[
    "replicaCount",
    "resources.*",
    "healthCheck.enabled",
    "healthCheck.initialDelaySeconds",
    "healthCheck.periodSeconds",
    "sourceKafka.bootstrapServers",
    "targetKafka.bootstrapServers",
    "consumer.autoOffsetReset",
    "replication.sourceToTarget.enabled",
    "replication.sourceToTarget.topics[].sourceTopicName",
    "replication.sourceToTarget.topics[].targetTopicName",
    "replication.targetToSource.enabled",
    "replication.targetToSource.topics[].sourceTopicName",
    "replication.targetToSource.topics[].targetTopicName",
];
/// Its consumer groups.
const KAFKA_KAFKA_GROUPS: &[&str] = &[
    "consumerGroup.sourceToTarget",
    "consumerGroup.targetToSource",
];

/// Whether `path` (list indices as `[]`) is one of `keys`, or a consumer group of `groups`
/// (a name, or a table of [`GROUP_FIELDS`]).
fn is_known(path: &str, keys: &[&str], groups: &[&str]) -> bool {
    keys.iter().any(|k| match k.strip_suffix(".*") {
        Some(above) => path == above || path.starts_with(&format!("{above}.")),
        // An empty table or list (or a null) above a key is a leaf too.
        None => {
            path == *k
                || k.strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        }
    }) || groups.iter().any(|g| {
        path == *g
            || path
                .strip_prefix(g)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|field| GROUP_FIELDS.contains(&field))
    })
}

/// Every leaf key of `values` (dotted, list indices as `[]`), each once, in order.
fn leaf_keys(values: &Value, at: &str, out: &mut Vec<String>) {
    let join = |key: &str| {
        if at.is_empty() {
            key.to_string()
        } else {
            format!("{at}.{key}")
        }
    };
    match values {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                leaf_keys(v, &join(k), out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                leaf_keys(item, &format!("{at}[]"), out);
            }
        }
        _ => {
            if !out.iter().any(|k| k == at) {
                out.push(at.to_string());
            }
        }
    }
}

/// A note for every key of `values` this chart does not know: it is not carried over, and
/// the reader is told so rather than left to find out.
fn unknown_keys(values: &Value, keys: &[&str], groups: &[&str]) -> Vec<String> {
    let mut leaves = Vec::new();
    leaf_keys(values, "", &mut leaves);
    leaves
        .into_iter()
        .filter(|path| !is_known(path, keys, groups))
        .map(|path| {
            format!(
                "`{path}`: not a key of this chart that `migrate` knows; not carried over — set \
                 its equivalent by hand if it mattered."
            )
        })
        .collect()
}

/// A TOML string literal.
fn s(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// A consumer group: a plain name, or the production shape with client settings.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Group {
    group_id: Option<String>,
    session_timeout_ms: Option<u64>,
    heartbeat_interval_ms: Option<u64>,
    max_poll_interval_ms: Option<u64>,
    auto_commit_interval_ms: Option<u64>,
    auto_offset_reset: Option<String>,
    max_poll_records: Option<u64>,
    enable_auto_commit: Option<bool>,
}

fn group(values: &Value, path: &str, default: &str) -> Result<Group, MigrateError> {
    match field::<Value>(values, path)? {
        None => Ok(Group {
            group_id: Some(default.to_string()),
            ..Group::default()
        }),
        Some(Value::String(name)) => Ok(Group {
            group_id: Some(name),
            ..Group::default()
        }),
        Some(v) => {
            let mut g: Group = serde_json::from_value(v)
                .map_err(|e| MigrateError::Shape(format!("`{path}`: {e}")))?;
            g.group_id.get_or_insert_with(|| default.to_string());
            Ok(g)
        }
    }
}

impl Group {
    /// librdkafka properties for the consumer's cluster, and comments on what has no
    /// equivalent.
    fn properties(&self, path: &str, out: &mut Vec<String>, notes: &mut Vec<String>) {
        for (key, value) in [
            ("session.timeout.ms", self.session_timeout_ms),
            ("heartbeat.interval.ms", self.heartbeat_interval_ms),
            ("max.poll.interval.ms", self.max_poll_interval_ms),
            ("auto.commit.interval.ms", self.auto_commit_interval_ms),
        ] {
            if let Some(v) = value {
                out.push(format!("{} = {}", s(key), s(&v.to_string())));
            }
        }
        if self.max_poll_records.is_some() {
            notes.push(format!(
                "`{path}.maxPollRecords`: no equivalent; the bridge takes what is ready, up to `max_in_flight`."
            ));
        }
        if self.enable_auto_commit.is_some() {
            notes.push(format!(
                "`{path}.enableAutoCommit`: the bridge commits only what the target confirmed, always."
            ));
        }
    }
}

fn header(out: &mut String, sources: &[String], chart: &str) {
    let _ = writeln!(
        out,
        "# bridge.toml migrated by `bridge-host migrate` from {} ({chart} replicator values).\n\
         # Review it, then: bridge-host check --connect --config bridge.toml\n",
        sources.join(" + ")
    );
}

fn notes_and_bridge(
    out: &mut String,
    values: &Value,
    notes: &[String],
) -> Result<(), MigrateError> {
    let health: bool = field(values, "healthCheck.enabled")?.unwrap_or(false);
    out.push_str("[bridge]\n");
    if health {
        out.push_str(
            "health_listen = \"0.0.0.0:8080\"   # healthCheck.enabled: probes on /livez and /readyz, metrics on /metrics\n",
        );
    }
    out.push_str("stats_interval_secs = 60          # the replicator's 60 s stats heartbeat\n\n");
    if !notes.is_empty()
        || ["replicaCount", "resources", "healthCheck"]
            .iter()
            .any(|k| values.get(k).is_some())
    {
        out.push_str("# Not carried over:\n");
        out.push_str(
            "# - `replicaCount`, `resources`, `healthCheck` timings: Kubernetes settings; set them in the\n\
             #   bridge's Helm chart (replicas share partitions through the same consumer groups).\n",
        );
        for n in notes {
            let _ = writeln!(out, "# - {n}");
        }
        out.push('\n');
    }
    Ok(())
}

fn mapping_name(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-to-")
}

/// RFC 3986 percent-encoding of everything but unreserved characters (user and vhost).
fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, crate::config::USERINFO).to_string()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct K2rMapping {
    kafka_topic: String,
    rabbitmq_queue: Option<String>,
    rabbitmq_exchange: Option<String>,
    rabbitmq_routing_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct R2kMapping {
    rabbitmq_queue: String,
    kafka_topic: String,
}

fn kafka_rabbitmq(values: &Value, sources: &[String]) -> Result<String, MigrateError> {
    let bootstrap: String = required(values, "kafka.bootstrapServers")?;
    let host: String = field(values, "rabbitmq.host")?.unwrap_or_else(|| "localhost".into());
    let port: u16 = field(values, "rabbitmq.port")?.unwrap_or(5672);
    let user: String = field(values, "rabbitmq.username")?.unwrap_or_else(|| "guest".into());
    let vhost: String = field(values, "rabbitmq.vhost")?.unwrap_or_else(|| "/".into());
    let reset: String =
        field(values, "consumer.autoOffsetReset")?.unwrap_or_else(|| "earliest".into());
    let k2r_group = group(values, "consumerGroup.kafkaToRabbitmq", "bridge-k2r")?;
    let mut notes = unknown_keys(values, KAFKA_RABBITMQ_KEYS, KAFKA_RABBITMQ_GROUPS);
    let mut properties = Vec::new();
    k2r_group.properties("consumerGroup.kafkaToRabbitmq", &mut properties, &mut notes);
    if field::<Value>(values, "consumerGroup.rabbitmqToKafka")?.is_some() {
        let r2k_group = group(values, "consumerGroup.rabbitmqToKafka", "")?;
        notes.push(format!(
            "`consumerGroup.rabbitmqToKafka` (`{}`): a RabbitMQ → Kafka mapping reads a queue, so it \
             joins no Kafka consumer group; watch it in `/status`, `bridge_consumer_lag` does not \
             apply, the queue's depth does.",
            r2k_group.group_id.unwrap_or_default()
        ));
    }

    let mut out = String::new();
    header(&mut out, sources, "Kafka⇄RabbitMQ");
    let _ = writeln!(out, "[kafka.main]\nbootstrap_servers = {}", s(&bootstrap));
    if !properties.is_empty() {
        let _ = writeln!(out, "properties = {{ {} }}", properties.join(", "));
    }
    let _ = writeln!(
        out,
        "\n[rabbitmq.main]\n# `rabbitmq.password` is read from the environment: set {RABBITMQ_PASSWORD_ENV}.\nurl = {}\n",
        s(&format!(
            "amqp://{}:${{{RABBITMQ_PASSWORD_ENV}}}@{host}:{port}/{}",
            percent_encode(&user),
            percent_encode(&vhost)
        ))
    );
    notes_and_bridge(&mut out, values, &notes)?;

    let enabled =
        |path: &str| -> Result<bool, MigrateError> { Ok(field(values, path)?.unwrap_or(true)) };
    if enabled("replication.kafkaToRabbitmq.enabled")? {
        let maps: Vec<K2rMapping> =
            field(values, "replication.kafkaToRabbitmq.mappings")?.unwrap_or_default();
        let group_id = k2r_group.group_id.clone().unwrap_or_default();
        let reset = k2r_group.auto_offset_reset.clone().unwrap_or(reset.clone());
        for (i, m) in maps.iter().enumerate() {
            let exchange = m.rabbitmq_exchange.clone().unwrap_or_default();
            let queue = m.rabbitmq_queue.clone().unwrap_or_default();
            // Without an exchange the replicator published to the queue by name.
            let routing_key = match (&m.rabbitmq_routing_key, exchange.is_empty()) {
                (Some(k), _) if !k.is_empty() => k.clone(),
                _ => queue.clone(),
            };
            let _ = writeln!(
                out,
                "# replication.kafkaToRabbitmq.mappings[{i}]\n[[mapping]]\nname = {}\n\
                 source = {{ kafka = \"main\", topics = [{}], group = {}, auto_offset_reset = {} }}\n\
                 target = {{ rabbitmq = \"main\", exchange = {}, routing_key = {} }}\n\
                 dedup = {{ by = \"coordinates\", window_secs = 300 }}   # the replicator's deduplication\n\
                 amqp_properties = false   # the replicator carried no AMQP properties across Kafka",
                s(&mapping_name(&[&m.kafka_topic, &queue])),
                s(&m.kafka_topic),
                s(&group_id),
                s(&reset),
                s(&exchange),
                s(&routing_key),
            );
            if !queue.is_empty() && !exchange.is_empty() {
                let _ = writeln!(
                    out,
                    "declare = {{ queue = {} }}   # the queue bound to the exchange with the routing key",
                    s(&queue)
                );
            }
            out.push('\n');
        }
    }
    if enabled("replication.rabbitmqToKafka.enabled")? {
        let maps: Vec<R2kMapping> =
            field(values, "replication.rabbitmqToKafka.mappings")?.unwrap_or_default();
        for (i, m) in maps.iter().enumerate() {
            let _ = writeln!(
                out,
                "# replication.rabbitmqToKafka.mappings[{i}]\n[[mapping]]\nname = {}\n\
                 source = {{ rabbitmq = \"main\", queue = {} }}\n\
                 target = {{ kafka = \"main\", topic = {} }}\n\
                 dedup = {{ by = \"message-id\", window_secs = 300 }}   # the replicator's deduplication\n\
                 amqp_properties = false   # the replicator carried no AMQP properties across Kafka\n",
                s(&mapping_name(&[&m.rabbitmq_queue, &m.kafka_topic])),
                s(&m.rabbitmq_queue),
                s(&m.kafka_topic),
            );
        }
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TopicPair {
    source_topic_name: String,
    target_topic_name: Option<String>,
}

fn kafka_to_kafka(values: &Value, sources: &[String]) -> Result<String, MigrateError> {
    let source: String = required(values, "sourceKafka.bootstrapServers")?;
    let target: String = required(values, "targetKafka.bootstrapServers")?;
    let reset: String =
        field(values, "consumer.autoOffsetReset")?.unwrap_or_else(|| "earliest".into());
    let s2t = group(values, "consumerGroup.sourceToTarget", "bridge-s2t")?;
    let t2s = group(values, "consumerGroup.targetToSource", "bridge-t2s")?;
    let mut notes = unknown_keys(values, KAFKA_KAFKA_KEYS, KAFKA_KAFKA_GROUPS);
    let (mut source_props, mut target_props) = (Vec::new(), Vec::new());
    // Consumer settings belong to the cluster each direction consumes from.
    s2t.properties(
        "consumerGroup.sourceToTarget",
        &mut source_props,
        &mut notes,
    );
    t2s.properties(
        "consumerGroup.targetToSource",
        &mut target_props,
        &mut notes,
    );

    let mut out = String::new();
    header(&mut out, sources, "Kafka→Kafka");
    for (name, servers, props) in [
        ("source", &source, &source_props),
        ("target", &target, &target_props),
    ] {
        let _ = writeln!(out, "[kafka.{name}]\nbootstrap_servers = {}", s(servers));
        if !props.is_empty() {
            let _ = writeln!(out, "properties = {{ {} }}", props.join(", "));
        }
        out.push('\n');
    }
    notes_and_bridge(&mut out, values, &notes)?;
    for (path, from, to, g) in [
        ("replication.sourceToTarget", "source", "target", &s2t),
        ("replication.targetToSource", "target", "source", &t2s),
    ] {
        if !field(values, &format!("{path}.enabled"))?.unwrap_or(true) {
            continue;
        }
        let topics: Vec<TopicPair> = field(values, &format!("{path}.topics"))?.unwrap_or_default();
        let reset = g.auto_offset_reset.clone().unwrap_or(reset.clone());
        for (i, t) in topics.iter().enumerate() {
            let target_topic = t
                .target_topic_name
                .clone()
                .unwrap_or(t.source_topic_name.clone());
            let _ = writeln!(
                out,
                "# {path}.topics[{i}]\n[[mapping]]\nname = {}\n\
                 source = {{ kafka = {}, topics = [{}], group = {}, auto_offset_reset = {} }}\n\
                 target = {{ kafka = {}, topic = {} }}\n",
                s(&mapping_name(&[
                    &format!("{from}-{}", t.source_topic_name),
                    &format!("{to}-{target_topic}"),
                ])),
                s(from),
                s(&t.source_topic_name),
                s(g.group_id.as_deref().unwrap_or_default()),
                s(&reset),
                s(to),
                s(&target_topic),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helm_merge_replaces_scalars_and_merges_maps() {
        let mut a = serde_json::json!({ "a": { "x": 1, "y": 2 }, "b": [1] });
        merge(&mut a, serde_json::json!({ "a": { "y": 3 }, "b": [2] }));
        assert_eq!(a, serde_json::json!({ "a": { "x": 1, "y": 3 }, "b": [2] }));
    }

    #[test]
    fn the_rabbitmq_to_kafka_group_is_named_in_the_notes() {
        let values = serde_json::json!({
            "kafka": { "bootstrapServers": "kafka:9092" },
            "consumerGroup": { "kafkaToRabbitmq": "k2r", "rabbitmqToKafka": "r2k-v2" },
        });
        let out = kafka_rabbitmq(&values, &["values.yaml".to_string()]).unwrap();
        assert!(
            out.contains("# - `consumerGroup.rabbitmqToKafka` (`r2k-v2`): a RabbitMQ → Kafka mapping reads a queue"),
            "{out}"
        );
    }

    #[test]
    fn a_key_the_chart_does_not_have_is_named_in_the_notes() {
        let values = serde_json::json!({
            "sourceKafka": { "bootstrapServers": "a:9092", "tls": { "enabled": true } },
            "targetKafka": { "bootstrapServers": "b:9092" },
            "consumerGroup": { "sourceToTarget": { "groupId": "g", "fetchMinBytes": 1 } },
            "replication": { "sourceToTarget": { "topics": [{ "sourceTopicName": "t", "rename": "u" }] } },
            "resources": { "limits": { "cpu": "1" } },
        });
        let out = kafka_to_kafka(&values, &["values.yaml".to_string()]).unwrap();
        for key in [
            "sourceKafka.tls.enabled",
            "consumerGroup.sourceToTarget.fetchMinBytes",
            "replication.sourceToTarget.topics[].rename",
        ] {
            assert!(
                out.contains(&format!("# - `{key}`: not a key of this chart")),
                "{key}: {out}"
            );
        }
        assert!(!out.contains("`resources.limits.cpu`: not a key"), "{out}");
        // Empty where the chart has keys: known, nothing to carry.
        let values = serde_json::json!({
            "sourceKafka": { "bootstrapServers": "a:9092" },
            "targetKafka": { "bootstrapServers": "b:9092" },
            "replication": { "sourceToTarget": { "topics": [] }, "targetToSource": {} },
            "healthCheck": { "periodSeconds": 5, "enable": true },
        });
        let out = kafka_to_kafka(&values, &["values.yaml".to_string()]).unwrap();
        assert!(
            !out.contains("`replication.sourceToTarget.topics`: not a key"),
            "{out}"
        );
        assert!(
            !out.contains("`replication.targetToSource`: not a key"),
            "{out}"
        );
        assert!(out.contains("`healthCheck.enable`: not a key"), "{out}");
        assert!(out.contains("`healthCheck` timings"), "{out}");
        assert!(
            !out.contains("`consumerGroup.sourceToTarget.groupId`: not a key"),
            "{out}"
        );
    }

    /// A user and a password with URL delimiters, and a vhost `/`: the written URL, with the
    /// password substituted from the environment, reads back as exactly them.
    #[test]
    fn a_user_and_password_with_url_delimiters_survive_the_written_url() {
        let values = serde_json::json!({
            "kafka": { "bootstrapServers": "kafka:9092" },
            "rabbitmq": { "host": "rmq", "username": "ops@team:a/b", "vhost": "/" },
            "replication": { "kafkaToRabbitmq": { "mappings": [
                { "kafkaTopic": "orders", "rabbitmqExchange": "orders" }
            ] } },
        });
        let out = kafka_rabbitmq(&values, &["values.yaml".to_string()]).unwrap();
        let password = "p@ss%w/rd#?:x";
        let env = |name: &str| (name == RABBITMQ_PASSWORD_ENV).then(|| password.to_string());
        let config =
            crate::config::BridgeConfig::parse(std::path::Path::new("bridge.toml"), &out, &env)
                .unwrap_or_else(|e| panic!("{e}\n{out}"));
        let uri = config.rabbitmq["main"].uri().unwrap();
        assert_eq!(uri.authority.userinfo.username, "ops@team:a/b");
        assert_eq!(uri.authority.userinfo.password, password);
        assert_eq!(
            (uri.authority.host.as_str(), uri.vhost.as_str()),
            ("rmq", "/")
        );
    }

    /// The replicators carried no AMQP properties across Kafka: every migrated mapping turns
    /// the carrying off, in both directions, and the config reads back that way.
    #[test]
    fn migrated_mappings_carry_no_amqp_properties() {
        let values = serde_json::json!({
            "kafka": { "bootstrapServers": "kafka:9092" },
            "rabbitmq": { "host": "rmq" },
            "replication": {
                "kafkaToRabbitmq": { "enabled": true, "mappings": [
                    { "kafkaTopic": "orders", "rabbitmqExchange": "orders" }
                ] },
                "rabbitmqToKafka": { "enabled": true, "mappings": [
                    { "rabbitmqQueue": "payments", "kafkaTopic": "payments" }
                ] },
            },
        });
        let out = kafka_rabbitmq(&values, &["values.yaml".to_string()]).unwrap();
        let env = |name: &str| (name == RABBITMQ_PASSWORD_ENV).then(|| "secret".to_string());
        let config =
            crate::config::BridgeConfig::parse(std::path::Path::new("bridge.toml"), &out, &env)
                .unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(config.mapping.len(), 2, "{out}");
        for mapping in &config.mapping {
            assert!(!mapping.amqp_properties, "{}: {out}", mapping.name);
        }
    }

    #[test]
    fn vhosts_are_percent_encoded() {
        assert_eq!(percent_encode("/"), "%2F");
        assert_eq!(percent_encode("prod-1"), "prod-1");
    }
}
