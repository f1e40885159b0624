//! Everything the bridge tells its operators, in one place: typed events ([`event`]) that each
//! update one metric and, where an operator should see it, write one fields-first log line;
//! the Prometheus registry they update ([`metrics`]); and logging itself — human-readable
//! lines by default, one JSON object per line with `--log-format json`, the level from
//! `RUST_LOG` (default `info`) — with the summary the bridge logs when it starts.

pub mod event;
pub mod metrics;

pub use event::{BridgeEvent, Counters, Event, PluginTimer};

use tracing_subscriber::EnvFilter;

use crate::config::{BridgeConfig, LogFormat, Source, Target, redact_url};
use crate::plugin::LoadedPlugin;

/// Logs to stderr in `format`, filtered by `RUST_LOG`, else by `level` (an `EnvFilter`
/// directive such as `info` or `info,bridge_host::pipeline=debug`), else at `info`.
pub fn init_logging(format: LogFormat, level: Option<&str>) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level.unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The `log_format` and `log_level` of the `[bridge]` table of the configuration at `path`, read
/// before logging starts (a file that cannot be read or parsed gives none: loading it later
/// reports why).
pub fn configured_logging(path: &std::path::Path) -> (Option<LogFormat>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        bridge: Bridge,
    }
    #[derive(Default, serde::Deserialize)]
    struct Bridge {
        log_format: Option<LogFormat>,
        log_level: Option<String>,
    }
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| toml::from_str::<File>(&text).ok())
        .map(|f| (f.bridge.log_format, f.bridge.log_level))
        .unwrap_or_default()
}

/// One line per broker, plugin and mapping: what this process runs. No secrets: URLs lose
/// their password, SASL shows only the user name.
pub fn log_start(config: &BridgeConfig, plugins: &[&LoadedPlugin]) {
    for (name, k) in &config.kafka {
        tracing::info!(
            cluster = %name,
            bootstrap_servers = %k.bootstrap_servers,
            tls = k.tls.is_some(),
            sasl_user = k.sasl.as_ref().map(|s| s.username.as_str()),
            "Kafka cluster."
        );
    }
    for (name, r) in &config.rabbitmq {
        tracing::info!(connection = %name, url = %redact_url(&r.url), "RabbitMQ connection.");
    }
    for p in plugins {
        tracing::info!(
            plugin = p.name(),
            version = p.version(),
            contract = p.contract_version(),
            digest = p.digest(),
            "Plugin loaded."
        );
    }
    for m in &config.mapping {
        let source = match &m.source {
            Source::Kafka(k) => format!("kafka:{}/{}", k.cluster, k.topics.join(",")),
            Source::Amqp(a) => format!("rabbitmq:{}/{}", a.connection, a.queue),
            Source::Stream(s) => format!("rabbitmq:{}/stream:{}", s.connection, s.stream),
        };
        let destination = match &m.target {
            Target::Kafka(k) => format!(
                "kafka:{}/{}",
                k.cluster,
                k.topic.as_deref().unwrap_or("(source topic)")
            ),
            Target::Amqp(a) => format!("rabbitmq:{}/{}", a.connection, a.exchange),
            Target::Stream(s) => format!("rabbitmq:{}/stream:{}", s.connection, s.stream),
        };
        tracing::info!(
            mapping = %m.name,
            tenant = m.tenant(),
            source,
            destination,
            plugins = %m.plugins.join(","),
            "Mapping."
        );
    }
}
