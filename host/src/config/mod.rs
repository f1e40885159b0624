//! `bridge.toml`: brokers, plugins and mappings.
//!
//! Parsing is strict (`deny_unknown_fields`); syntax and type errors carry the file, line and
//! column from the `toml` crate; checks that need the whole file name the key path, such as
//! ``mapping `orders`.target.exchange``. `${ENV_VAR}` in broker settings is replaced from the
//! environment after parsing, so secrets never appear in error messages.

mod declare;
mod diff;
mod env;
pub use env::USERINFO;
mod mapping;
mod needs;
mod redact;
mod tenant;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use declare::{Declare, ExchangeType, QueueArgument, QueueType};
pub use diff::{MappingChanges, mapping_changes};
pub use mapping::{
    AmqpSource, AmqpTarget, BreakerAction, BreakerConfig, DeadLetterTarget, DedupBy, DedupConfig,
    Delivery, KafkaSource, KafkaTarget, Mapping, Source, StreamOffset, StreamSource, StreamTarget,
    Target,
};
pub use needs::{Mode, Need, Needs, Object, Report};
pub use redact::redact_url;
pub use tenant::{
    Allow, BadGlob, OutsideAllowlist, TargetAllowlist, TenantConfig, default_workers,
};

pub use crate::plugin::DEFAULT_TENANT;
use crate::plugin::{PluginLimits, PluginSpec};

/// A configuration error. The text names the file and where in it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, or a value of the wrong type (the message has line and column).
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// Problems found after parsing, one per line, each naming its key path.
    #[error("{path}: {}", .problems.join("; "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Named Kafka clusters: `[kafka.main]`.
    #[serde(default)]
    pub kafka: BTreeMap<String, KafkaCluster>,
    /// Named RabbitMQ connections: `[rabbitmq.local]`.
    #[serde(default)]
    pub rabbitmq: BTreeMap<String, RabbitConnection>,
    /// Named plugins: `[plugins.headers]`.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    /// Mappings: `[[mapping]]`.
    #[serde(default)]
    pub mapping: Vec<Mapping>,
    /// Process-wide settings: `[bridge]`.
    #[serde(default)]
    pub bridge: BridgeSettings,
    /// Tenants: `[tenants.payments]`.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
    /// Where the file was read from; relative plugin paths are resolved against its directory.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// A Kafka cluster.
///
/// ```toml
/// [kafka.main]
/// bootstrap_servers = "127.0.0.1:9092"
/// properties = { "security.protocol" = "SASL_SSL", "sasl.mechanism" = "PLAIN" }
/// sasl = { username = "bridge", password = "${KAFKA_PASSWORD}" }
/// tls = { ca_file = "/etc/ssl/ca.pem" }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaCluster {
    /// `bootstrap_servers = "host:9092,host2:9092"`.
    pub bootstrap_servers: String,
    /// librdkafka client properties passed through: `properties = { "linger.ms" = "5" }`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// SASL credentials (mechanism and protocol go in `properties`).
    #[serde(default)]
    pub sasl: Option<KafkaSasl>,
    /// TLS files.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
}

/// SASL credentials: `sasl = { username = "u", password = "${PW}", mechanism = "SCRAM-SHA-512" }`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSasl {
    /// `username = "bridge"`.
    pub username: String,
    /// `password = "${KAFKA_PASSWORD}"`.
    pub password: String,
    /// `mechanism = "PLAIN"` (default), `SCRAM-SHA-256`, `SCRAM-SHA-512`.
    #[serde(default)]
    pub mechanism: Option<String>,
}

impl std::fmt::Debug for KafkaSasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSasl")
            .field("username", &self.username)
            .field("password", &"***")
            .field("mechanism", &self.mechanism)
            .finish()
    }
}

/// TLS files: `tls = { ca_file = "ca.pem", cert_file = "client.pem", key_file = "client.key" }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// CA certificate (PEM).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// A RabbitMQ connection.
///
/// ```toml
/// [rabbitmq.local]
/// url = "amqp://guest:${RABBITMQ_PASSWORD}@127.0.0.1:5672/%2f"
/// heartbeat_secs = 30
/// ```
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitConnection {
    /// `url = "amqp://user:pass@host:5672/vhost"` (or `amqps://`).
    pub url: String,
    /// Overrides the URL's vhost: `vhost = "/"`.
    #[serde(default)]
    pub vhost: Option<String>,
    /// `heartbeat_secs = 30`.
    #[serde(default)]
    pub heartbeat_secs: Option<u16>,
    /// TLS for `amqps://`: a CA to verify the broker (default: the system trust store) and a
    /// client certificate: `tls = { ca_file = "ca.pem", cert_file = "client.pem", key_file = "client.key" }`.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// The port of RabbitMQ's stream protocol, for stream targets: `stream_port = 5552`
    /// (the default; 5551 is usual with TLS). Host, credentials and vhost come from `url`.
    #[serde(default = "default_stream_port")]
    pub stream_port: u16,
}

fn default_stream_port() -> u16 {
    5552
}

/// A RabbitMQ URL that is not an AMQP URI, with what the parser says (it has only text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadAmqpUrl(pub String);

impl RabbitConnection {
    /// The URL with the `vhost` and `heartbeat_secs` overrides applied, parsed as an AMQP URI
    /// so that its query parameters (`frame_max`, `connection_timeout`, …) are kept.
    pub fn uri(&self) -> Result<lapin::uri::AMQPUri, BadAmqpUrl> {
        let mut uri: lapin::uri::AMQPUri = self.url.parse().map_err(BadAmqpUrl)?;
        if let Some(vhost) = &self.vhost {
            uri.vhost = vhost.clone();
        }
        if let Some(hb) = self.heartbeat_secs {
            uri.query.heartbeat = Some(hb);
        }
        Ok(uri)
    }
}

impl std::fmt::Debug for RabbitConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitConnection")
            .field("url", &redact_url(&self.url))
            .field("vhost", &self.vhost)
            .field("heartbeat_secs", &self.heartbeat_secs)
            .field("tls", &self.tls)
            .field("stream_port", &self.stream_port)
            .finish()
    }
}

/// A plugin.
///
/// ```toml
/// [plugins.route]
/// path = "plugins/routing_key.wasm"
/// config = { routing_key = "order.{json:type}" }
/// limits = { timeout_ms = 50 }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The component file, relative to the configuration file's directory.
    pub path: PathBuf,
    /// The plugin's own settings, passed to its `init`.
    #[serde(default)]
    pub config: toml::Table,
    /// Resource limits.
    #[serde(default)]
    pub limits: PluginLimits,
    /// The tenant it belongs to: `tenant = "payments"` (default: `default`).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Canary messages (message JSON files, relative to this file) every new version must
    /// handle without a trap, a timeout or a limit hit before it replaces the running one:
    /// `canary = ["canaries/order.json"]`.
    #[serde(default)]
    pub canary: Vec<PathBuf>,
}

impl PluginConfig {
    /// The tenant it belongs to.
    pub fn tenant(&self) -> &str {
        self.tenant.as_deref().unwrap_or(DEFAULT_TENANT)
    }

    /// The config table flattened to ordered key/value strings (`a.b`, `list.0`).
    pub fn flat_config(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        flatten("", &toml::Value::Table(self.config.clone()), &mut out);
        out
    }
}

/// A plugin's `config` table as the key/value list `init` receives: nested tables and lists
/// flattened with dots (`a.b`, `list.0`), scalars as text.
pub fn flatten_plugin_config(table: &toml::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    flatten("", table, &mut out);
    out
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        toml::Value::Table(t) => t.iter().for_each(|(k, v)| flatten(&key(k), v, out)),
        toml::Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| flatten(&key(&i.to_string()), v, out)),
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Process-wide settings.
///
/// ```toml
/// [bridge]
/// shutdown_timeout_secs = 30
/// plugin_cache_dir = "/var/cache/bridge"
/// health_listen = "0.0.0.0:8080"
/// stats_interval_secs = 60
/// ```
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeSettings {
    /// How long a graceful shutdown may drain in-flight messages: `shutdown_timeout_secs = 30`.
    pub shutdown_timeout_secs: u64,
    /// Compiled-plugin cache directory: `plugin_cache_dir = "/var/cache/bridge"`.
    pub plugin_cache_dir: Option<PathBuf>,
    /// Serve `/livez`, `/readyz`, `/status`, `/metrics` and the admin endpoints on this address:
    /// `health_listen = "0.0.0.0:8080"`.
    pub health_listen: Option<std::net::SocketAddr>,
    /// Log every mapping's counters this often; 0 turns the heartbeat off:
    /// `stats_interval_secs = 60`.
    pub stats_interval_secs: u64,
    /// The bearer token the admin endpoints (`POST /admin/…`) require; without one they are
    /// off: `admin_token = "${BRIDGE_ADMIN_TOKEN}"`.
    pub admin_token: Option<String>,
    /// `/status` and `/metrics` require the admin token too (the probes stay open):
    /// `protect_status = true`.
    pub protect_status: bool,
    /// Differences a staged rollout samples on `/status` show header values, not only their
    /// sizes: `stage_sample_values = true`.
    pub stage_sample_values: bool,
    /// Reload a plugin when its file changes (SIGHUP and `POST /admin/reload` always do):
    /// `watch_plugins = true`.
    pub watch_plugins: bool,
    /// `text` or `json` (`--log-format` and `BRIDGE_LOG_FORMAT` win): `log_format = "json"`.
    pub log_format: Option<LogFormat>,
    /// The log level or filter (`RUST_LOG` wins): `log_level = "info,bridge_host=debug"`.
    pub log_level: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (fields first-class), for log pipelines.
    Json,
}

impl std::fmt::Debug for BridgeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeSettings")
            .field("shutdown_timeout_secs", &self.shutdown_timeout_secs)
            .field("plugin_cache_dir", &self.plugin_cache_dir)
            .field("health_listen", &self.health_listen)
            .field("stats_interval_secs", &self.stats_interval_secs)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field("protect_status", &self.protect_status)
            .field("stage_sample_values", &self.stage_sample_values)
            .field("watch_plugins", &self.watch_plugins)
            .field("log_format", &self.log_format)
            .field("log_level", &self.log_level)
            .finish()
    }
}

impl Default for BridgeSettings {
    fn default() -> Self {
        BridgeSettings {
            shutdown_timeout_secs: 30,
            plugin_cache_dir: None,
            health_listen: None,
            stats_interval_secs: 60,
            admin_token: None,
            protect_status: false,
            stage_sample_values: false,
            watch_plugins: true,
            log_format: None,
            log_level: None,
        }
    }
}

impl BridgeConfig {
    /// Reads, parses, substitutes `${ENV}` and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text, &|name| std::env::var(name).ok())
    }

    /// Parses configuration text; `env` looks up `${NAME}` substitutions.
    pub fn parse(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config: BridgeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: redact::mask_secrets(&e.to_string())
                .trim_end()
                .replace('\n', "\n  "),
        })?;
        config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut problems = env::substitute(&mut config, env);
        problems.extend(validate::check(&config));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// What to load for plugin `name`: its file, config, and limits capped by its tenant's.
    pub fn plugin_spec(&self, name: &str, plugin: &PluginConfig) -> PluginSpec {
        let tenant = self.tenants.get(plugin.tenant());
        let limits = match tenant.and_then(|t| t.limits.as_ref()) {
            Some(ceiling) => plugin.limits.capped_by(ceiling),
            None => plugin.limits.clone(),
        };
        PluginSpec {
            name: name.to_string(),
            path: self.plugin_path(plugin),
            config: plugin.flat_config(),
            limits,
            tenant: plugin.tenant().to_string(),
            held_bytes: tenant.and_then(|t| t.held_bytes),
            canaries: plugin
                .canary
                .iter()
                .map(|c| {
                    if c.is_absolute() {
                        c.clone()
                    } else {
                        self.base_dir.join(c)
                    }
                })
                .collect(),
        }
    }

    /// What runs but should not be left so: SASL credentials that would cross the network
    /// unencrypted.
    pub fn warnings(&self) -> Vec<String> {
        self.kafka
            .iter()
            .filter(|(_, c)| c.sasl.is_some() && c.tls.is_none())
            .filter(|(_, c)| {
                c.properties
                    .get("security.protocol")
                    .is_none_or(|p| !p.eq_ignore_ascii_case("SASL_SSL"))
            })
            .map(|(name, _)| {
                format!(
                    "`kafka.{name}.sasl` without `tls`: the SASL credentials cross the network unencrypted; add `tls` (or `properties.\"security.protocol\" = \"SASL_SSL\"`)"
                )
            })
            .collect()
    }

    /// A plugin's file, resolved against the configuration's directory.
    pub fn plugin_path(&self, plugin: &PluginConfig) -> PathBuf {
        if plugin.path.is_absolute() {
            plugin.path.clone()
        } else {
            self.base_dir.join(&plugin.path)
        }
    }
}

#[cfg(test)]
mod tests;
