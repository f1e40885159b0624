//! A bridge for a test, written in Rust rather than as a TOML literal: [`Scenario`] builds the
//! `bridge.toml` (brokers, `[bridge]` settings, plugins and [`Mapping`]s) and starts it;
//! [`Running`] is the process with its health endpoints.
//!
//! ```text
//! let mut bridge = Scenario::new()
//!     .health()
//!     .plugin("route", artifacts::ROUTING_KEY, r#"routing_key = "order.{json:kind}""#)
//!     .mapping(
//!         Mapping::kafka_to_rabbitmq("orders", &[&topic], &unique("group"), &exchange)
//!             .plugins(&["route"])
//!             .dead_letter_kafka(&dead_letters),
//!     )
//!     .start();
//! bridge.ready().await;
//! bridge.wait_for("a delivery", Duration::from_secs(30), || {
//!     bridge.status()["mappings"]["orders"]["counters"]["delivered"] == 1
//! })
//! .await;
//! bridge.stop_clean();
//! ```

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::bridge::{BridgeProcess, free_port, http_get};
use crate::brokers;

/// A value in `bridge.toml`: text is quoted, numbers and booleans are written as they are, and
/// [`Raw`] is written verbatim.
pub trait TomlValue {
    /// The value in TOML syntax.
    fn toml(&self) -> String;
}

impl TomlValue for str {
    fn toml(&self) -> String {
        quote(self)
    }
}

impl TomlValue for String {
    fn toml(&self) -> String {
        quote(self)
    }
}

impl<T: TomlValue + ?Sized> TomlValue for &T {
    fn toml(&self) -> String {
        (**self).toml()
    }
}

macro_rules! bare_toml_value {
    ($($t:ty),*) => {
        $(impl TomlValue for $t {
            fn toml(&self) -> String {
                self.to_string()
            }
        })*
    };
}

bare_toml_value!(bool, i32, i64, u16, u32, u64, usize);

/// A value written verbatim: an inline table or an array, e.g.
/// `Raw(r#"{ failures = 3, action = "pause" }"#)`.
#[derive(Debug, Clone, Copy)]
pub struct Raw<'a>(pub &'a str);

impl TomlValue for Raw<'_> {
    fn toml(&self) -> String {
        self.0.to_string()
    }
}

/// `text` as a TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `["a", "b"]`.
fn array<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<String> = items.iter().map(|s| quote(s.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// `{ k = v, … }`.
fn inline_table(pairs: &[(String, String)]) -> String {
    let pairs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("{{ {} }}", pairs.join(", "))
}

/// Sets `key` in `pairs`, in place if it is there already.
fn set_pair(pairs: &mut Vec<(String, String)>, key: &str, value: String) {
    match pairs.iter_mut().find(|(k, _)| k == key) {
        Some(pair) => pair.1 = value,
        None => pairs.push((key.to_string(), value)),
    }
}

/// One `[[mapping]]` of a [`Scenario`]: a name, a source, a target, and other keys.
///
/// The constructors use the test brokers' names, Kafka cluster `main` and RabbitMQ connection
/// `local`; [`Mapping::source`] and [`Mapping::target`] change or add any key of those tables.
#[derive(Debug, Clone)]
pub struct Mapping {
    name: String,
    source: Vec<(String, String)>,
    target: Vec<(String, String)>,
    /// Other keys, as `key = value` lines.
    lines: Vec<String>,
}

impl Mapping {
    fn new(name: &str, source: Vec<(String, String)>, target: Vec<(String, String)>) -> Self {
        Mapping {
            name: name.to_string(),
            source,
            target,
            lines: Vec::new(),
        }
    }

    /// Kafka → RabbitMQ: `source = { kafka = "main", topics = [..], group = ".." }`,
    /// `target = { rabbitmq = "local", exchange = ".." }` (no routing key: see
    /// [`Mapping::routing_key`]).
    pub fn kafka_to_rabbitmq<S: AsRef<str>>(
        name: &str,
        topics: &[S],
        group: &str,
        exchange: &str,
    ) -> Self {
        Self::new(
            name,
            kafka_source(topics, group),
            vec![
                ("rabbitmq".to_string(), quote("local")),
                ("exchange".to_string(), quote(exchange)),
            ],
        )
    }

    /// RabbitMQ → Kafka: `source = { rabbitmq = "local", queue = ".." }`,
    /// `target = { kafka = "main", topic = ".." }`.
    pub fn rabbitmq_to_kafka(name: &str, queue: &str, topic: &str) -> Self {
        Self::new(
            name,
            vec![
                ("rabbitmq".to_string(), quote("local")),
                ("queue".to_string(), quote(queue)),
            ],
            kafka_target(topic),
        )
    }

    /// RabbitMQ stream → Kafka: `source = { rabbitmq = "local", stream = ".." }`,
    /// `target = { kafka = "main", topic = ".." }`.
    pub fn stream_to_kafka(name: &str, stream: &str, topic: &str) -> Self {
        Self::new(
            name,
            vec![
                ("rabbitmq".to_string(), quote("local")),
                ("stream".to_string(), quote(stream)),
            ],
            kafka_target(topic),
        )
    }

    /// Kafka → Kafka: `source = { kafka = "main", topics = [..], group = ".." }`,
    /// `target = { kafka = "main", topic = ".." }`.
    pub fn kafka_to_kafka<S: AsRef<str>>(
        name: &str,
        topics: &[S],
        group: &str,
        topic: &str,
    ) -> Self {
        Self::new(name, kafka_source(topics, group), kafka_target(topic))
    }

    /// Kafka → RabbitMQ stream: `source = { kafka = "main", topics = [..], group = ".." }`,
    /// `target = { rabbitmq = "local", stream = ".." }`.
    pub fn kafka_to_stream<S: AsRef<str>>(
        name: &str,
        topics: &[S],
        group: &str,
        stream: &str,
    ) -> Self {
        Self::new(
            name,
            kafka_source(topics, group),
            vec![
                ("rabbitmq".to_string(), quote("local")),
                ("stream".to_string(), quote(stream)),
            ],
        )
    }

    /// Sets `key` of the source table (`.source("prefetch", 200)`, `.source("kafka", "a")`).
    pub fn source(mut self, key: &str, value: impl TomlValue) -> Self {
        set_pair(&mut self.source, key, value.toml());
        self
    }

    /// Sets `key` of the target table (`.target("same_partition", true)`).
    pub fn target(mut self, key: &str, value: impl TomlValue) -> Self {
        set_pair(&mut self.target, key, value.toml());
        self
    }

    /// The RabbitMQ target's `routing_key`.
    pub fn routing_key(self, routing_key: &str) -> Self {
        self.target("routing_key", routing_key)
    }

    /// `plugins = [..]`: the chain, by plugin name.
    pub fn plugins(self, names: &[&str]) -> Self {
        self.set("plugins", Raw(&array(names)))
    }

    /// `dead_letter = { kafka = "main", topic = ".." }`.
    pub fn dead_letter_kafka(self, topic: &str) -> Self {
        let table = format!("{{ kafka = \"main\", topic = {} }}", quote(topic));
        self.set("dead_letter", Raw(&table))
    }

    /// `dead_letter = { rabbitmq = "local", exchange = "..", routing_key = ".." }`.
    pub fn dead_letter_rabbitmq(self, exchange: &str, routing_key: &str) -> Self {
        let table = format!(
            "{{ rabbitmq = \"local\", exchange = {}, routing_key = {} }}",
            quote(exchange),
            quote(routing_key)
        );
        self.set("dead_letter", Raw(&table))
    }

    /// `dedup = { by = "..", window_secs = .. }` (`by` is `message-id`, …).
    pub fn dedup(self, by: &str, window_secs: u64) -> Self {
        let table = format!("{{ by = {}, window_secs = {window_secs} }}", quote(by));
        self.set("dedup", Raw(&table))
    }

    /// `max_in_flight = n`.
    pub fn max_in_flight(self, n: usize) -> Self {
        self.set("max_in_flight", n)
    }

    /// Any other key of the mapping: `.set("hop_limit", 3)`, `.set("tenant", "a")`,
    /// `.set("breaker", Raw("{ failures = 3 }"))`.
    pub fn set(mut self, key: &str, value: impl TomlValue) -> Self {
        self.lines.push(format!("{key} = {}", value.toml()));
        self
    }

    /// A raw line appended to the mapping's table, for anything else.
    pub fn extra(mut self, line: &str) -> Self {
        self.lines.push(line.to_string());
        self
    }

    /// The `[[mapping]]` table.
    pub fn to_toml(&self) -> String {
        let mut lines = vec![
            "[[mapping]]".to_string(),
            format!("name = {}", quote(&self.name)),
            format!("source = {}", inline_table(&self.source)),
            format!("target = {}", inline_table(&self.target)),
        ];
        lines.extend(self.lines.iter().cloned());
        lines.join("\n") + "\n"
    }
}

fn kafka_source<S: AsRef<str>>(topics: &[S], group: &str) -> Vec<(String, String)> {
    vec![
        ("kafka".to_string(), quote("main")),
        ("topics".to_string(), array(topics)),
        ("group".to_string(), quote(group)),
    ]
}

fn kafka_target(topic: &str) -> Vec<(String, String)> {
    vec![
        ("kafka".to_string(), quote("main")),
        ("topic".to_string(), quote(topic)),
    ]
}

/// A `bridge.toml` under construction: broker sections, `[bridge]` settings, other raw
/// sections, plugins and mappings, plus environment variables for the process.
#[derive(Debug, Clone)]
pub struct Scenario {
    brokers: String,
    bridge: Vec<String>,
    sections: Vec<String>,
    /// Each plugin's name and the lines of its table.
    plugins: Vec<(String, Vec<String>)>,
    mappings: Vec<Mapping>,
    env: Vec<(String, String)>,
    health: Option<u16>,
}

impl Default for Scenario {
    fn default() -> Self {
        Self::new()
    }
}

impl Scenario {
    /// The test brokers ([`brokers::brokers_toml`]: Kafka cluster `main`, RabbitMQ connection
    /// `local`), and nothing else yet.
    pub fn new() -> Self {
        Self::with_brokers(&brokers::brokers_toml())
    }

    /// Other broker sections (a private node's, say), written as given.
    pub fn with_brokers(sections: &str) -> Self {
        Scenario {
            brokers: sections.to_string(),
            bridge: Vec::new(),
            sections: Vec::new(),
            plugins: Vec::new(),
            mappings: Vec::new(),
            env: Vec::new(),
            health: None,
        }
    }

    /// A `[bridge]` setting: `.bridge("shutdown_timeout_secs", 20)`,
    /// `.bridge("admin_token", "secret")`.
    pub fn bridge(mut self, key: &str, value: impl TomlValue) -> Self {
        self.bridge.push(format!("{key} = {}", value.toml()));
        self
    }

    /// A health listener on a free loopback port (`health_listen`), which
    /// [`Scenario::health_port`] and the [`Running`] bridge remember.
    pub fn health(mut self) -> Self {
        let port = free_port();
        self.health = Some(port);
        self.bridge("health_listen", format!("127.0.0.1:{port}"))
    }

    /// The health port [`Scenario::health`] picked, if any.
    pub fn health_port(&self) -> Option<u16> {
        self.health
    }

    /// `[plugins.NAME]` with `path` and, unless `config` is empty, `config = { CONFIG }`
    /// (`config` is the inside of the inline table: `r#"mode = "trap""#`).
    pub fn plugin(mut self, name: &str, path: impl AsRef<Path>, config: &str) -> Self {
        let mut lines = vec![format!(
            "path = {}",
            quote(&path.as_ref().display().to_string())
        )];
        if !config.is_empty() {
            lines.push(format!("config = {{ {config} }}"));
        }
        self.plugins.push((name.to_string(), lines));
        self
    }

    /// A raw line added to the table of plugin `name`, declared before with
    /// [`Scenario::plugin`]: `r#"tenant = "a""#`, `"limits = { output_bytes = 4194304 }"`.
    pub fn plugin_extra(mut self, name: &str, line: &str) -> Self {
        let (_, lines) = self
            .plugins
            .iter_mut()
            .find(|(n, _)| n == name)
            .expect("plugin_extra names a plugin declared with `plugin`");
        lines.push(line.to_string());
        self
    }

    /// A raw TOML section, written as given (`[tenants.a]` with its keys, say).
    pub fn section(mut self, text: &str) -> Self {
        self.sections.push(text.to_string());
        self
    }

    /// A `[[mapping]]`.
    pub fn mapping(mut self, mapping: Mapping) -> Self {
        self.mappings.push(mapping);
        self
    }

    /// An environment variable for the bridge process (not this one).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The `bridge.toml` text.
    pub fn to_toml(&self) -> String {
        let mut parts = vec![self.brokers.trim_end().to_string()];
        if !self.bridge.is_empty() {
            parts.push(format!("[bridge]\n{}", self.bridge.join("\n")));
        }
        parts.extend(self.sections.iter().map(|s| s.trim_end().to_string()));
        for (name, lines) in &self.plugins {
            parts.push(format!("[plugins.{name}]\n{}", lines.join("\n")));
        }
        parts.extend(
            self.mappings
                .iter()
                .map(|m| m.to_toml().trim_end().to_string()),
        );
        parts.join("\n\n") + "\n"
    }

    /// Starts `bridge-host run` on the configuration, in a temporary directory.
    pub fn start(self) -> Running {
        let env = self.env_refs();
        let process = BridgeProcess::start_with_env(&self.to_toml(), &env);
        Running {
            process,
            health: self.health,
        }
    }

    /// Writes the configuration to `path` and starts `bridge-host run` on it (relative plugin
    /// paths resolve against its directory; the test may rewrite the file to reload it).
    pub fn start_at(self, path: &Path) -> Running {
        std::fs::write(path, self.to_toml()).expect("the configuration is written");
        let env = self.env_refs();
        let process = BridgeProcess::start_at(path, &env);
        Running {
            process,
            health: self.health,
        }
    }

    fn env_refs(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// A bridge started from a [`Scenario`]: the [`BridgeProcess`] (it dereferences to it:
/// `log_text`, `spawn`, `kill9`, [`BridgeProcess::stop_clean`], …) with its health port.
pub struct Running {
    process: BridgeProcess,
    health: Option<u16>,
}

impl Deref for Running {
    type Target = BridgeProcess;

    fn deref(&self) -> &BridgeProcess {
        &self.process
    }
}

impl DerefMut for Running {
    fn deref_mut(&mut self) -> &mut BridgeProcess {
        &mut self.process
    }
}

impl Running {
    /// The health port; panics unless the scenario had [`Scenario::health`].
    #[track_caller]
    pub fn health_port(&self) -> u16 {
        self.health
            .expect("the bridge has no health listener: build its scenario with `.health()`")
    }

    /// Waits (up to a minute) until `/readyz` answers 200; fails the test with the log
    /// otherwise.
    pub async fn ready(&self) {
        self.process.assert_ready(self.health_port()).await;
    }

    /// `GET /status`, parsed.
    #[track_caller]
    pub fn status(&self) -> serde_json::Value {
        let (_, body) = http_get(self.health_port(), "/status").expect("/status answers");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"))
    }

    /// `GET /metrics`: the Prometheus text.
    #[track_caller]
    pub fn metrics(&self) -> String {
        http_get(self.health_port(), "/metrics")
            .expect("/metrics answers")
            .1
    }

    /// The value of the first `/metrics` line starting with `line_start` (a metric name with
    /// its labels, e.g. `bridge_breaker_state{mapping="m",tenant="default"}`), if any.
    #[track_caller]
    pub fn metric(&self, line_start: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Waits until `done` holds, checking every 100 ms; fails the test, naming `what` and with
    /// the bridge's log, if it does not within `limit`.
    pub async fn wait_for(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
