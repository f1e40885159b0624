//! Tenants: the teams sharing one deployment. Every mapping and plugin belongs to one (the
//! `default` tenant when none is named). A tenant caps its plugins' limits, bounds the message
//! bytes its plugins may make the host hold, and allows its mappings only the Kafka clusters
//! and topics and the RabbitMQ connections, vhosts, exchanges and queues its allowlists match.
//!
//! ```toml
//! [tenants.payments]
//! limits = { timeout_ms = 50, memory_mib = 32, instances = 8 }
//! held_bytes = 67108864
//! workers = 2
//! allow = { kafka_clusters = ["main"], topics = ["payments-*"], exchanges = ["payments.*"] }
//! ```

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use super::{BridgeConfig, Mapping, Source, Target};
use crate::plugin::{DEFAULT_TENANT, PluginLimits};

/// A tenant.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Ceilings of its plugins' limits: each plugin runs with the lower of its own and these.
    #[serde(default)]
    pub limits: Option<PluginLimits>,
    /// Bytes of messages its plugins may make the host hold at once (copies, duplicates,
    /// fan-out, headers, payloads), counted across all its plugin instances.
    #[serde(default)]
    pub held_bytes: Option<u64>,
    /// What its mappings may use.
    #[serde(default)]
    pub allow: Allow,
    /// Threads its plugin chains run on, shared by all its mappings (default: one per core).
    #[serde(default)]
    pub workers: Option<usize>,
}

/// The most worker threads a tenant may ask for.
pub const MAX_WORKERS: usize = 64;

/// The worker threads of a tenant that names no `workers`: one per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

impl BridgeConfig {
    /// How many plugin worker threads `tenant` runs.
    pub fn workers(&self, tenant: &str) -> usize {
        self.tenants
            .get(tenant)
            .and_then(|t| t.workers)
            .unwrap_or_else(default_workers)
    }
}

/// Allowlists, as globs (`*`, `?`, `[ab]`, `{a,b}`); an absent list allows anything.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// `[kafka.NAME]` clusters.
    pub kafka_clusters: Option<Vec<String>>,
    /// Kafka topics (sources, targets, dead letters).
    pub topics: Option<Vec<String>>,
    /// `[rabbitmq.NAME]` connections.
    pub rabbitmq_connections: Option<Vec<String>>,
    /// RabbitMQ vhosts of those connections.
    pub vhosts: Option<Vec<String>>,
    /// RabbitMQ exchanges (targets, dead letters).
    pub exchanges: Option<Vec<String>>,
    /// RabbitMQ queues (sources, declared queues, streams).
    pub queues: Option<Vec<String>>,
}

impl PluginLimits {
    /// The lower of these limits and `ceiling`, field by field.
    pub fn capped_by(&self, ceiling: &PluginLimits) -> PluginLimits {
        PluginLimits {
            timeout_ms: self.timeout_ms.min(ceiling.timeout_ms),
            memory_mib: self.memory_mib.min(ceiling.memory_mib),
            table_elements: self.table_elements.min(ceiling.table_elements),
            instances: self.instances.min(ceiling.instances),
            stack_kib: self.stack_kib.min(ceiling.stack_kib),
            output_bytes: self.output_bytes.min(ceiling.output_bytes),
            headers: self.headers.min(ceiling.headers),
            fan_out: self.fan_out.min(ceiling.fan_out),
            log_lines_per_second: self.log_lines_per_second.min(ceiling.log_lines_per_second),
            log_line_bytes: self.log_line_bytes.min(ceiling.log_line_bytes),
        }
    }
}

/// A tenant's allowlists of the targets a message may be sent to, compiled: checked at send
/// time, where a plugin or a header may have chosen the topic or exchange.
#[derive(Debug, Clone, Default)]
pub struct TargetAllowlist {
    tenant: String,
    topics: Option<(GlobSet, String)>,
    exchanges: Option<(GlobSet, String)>,
}

/// A target a message chose (by a plugin or a header) outside its tenant's allowlist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} `{value}` is outside tenant `{tenant}`'s {list}")]
pub struct OutsideAllowlist {
    /// `topic` or `exchange`.
    pub what: &'static str,
    /// The topic or exchange chosen.
    pub value: String,
    /// The tenant.
    pub tenant: String,
    /// The list as written: `` `allow.topics = ["pay-*"]` ``.
    pub list: String,
}

impl TargetAllowlist {
    /// `Err` naming the tenant's list when `topic` is outside `allow.topics`.
    pub fn topic(&self, topic: &str) -> Result<(), OutsideAllowlist> {
        self.check("topic", &self.topics, topic)
    }

    /// `Err` naming the tenant's list when `exchange` is outside `allow.exchanges`.
    pub fn exchange(&self, exchange: &str) -> Result<(), OutsideAllowlist> {
        self.check("exchange", &self.exchanges, exchange)
    }

    fn check(
        &self,
        what: &'static str,
        list: &Option<(GlobSet, String)>,
        value: &str,
    ) -> Result<(), OutsideAllowlist> {
        match list {
            Some((set, named)) if !set.is_match(value) => Err(OutsideAllowlist {
                what,
                value: value.to_string(),
                tenant: self.tenant.clone(),
                list: named.clone(),
            }),
            _ => Ok(()),
        }
    }
}

/// An allowlist glob that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("`allow.{key}`: {source}")]
pub struct BadGlob {
    /// The list's key under `allow`.
    pub key: &'static str,
    /// What the glob compiler says (it names the pattern).
    #[source]
    pub source: globset::Error,
}

impl TargetAllowlist {
    /// `tenant`'s lists of topic and exchange globs compiled (`None`: anything goes); `Err`
    /// names a glob that does not compile.
    pub fn new(
        tenant: &str,
        topics: &Option<Vec<String>>,
        exchanges: &Option<Vec<String>>,
    ) -> Result<Self, BadGlob> {
        let compile = |key: &'static str, patterns: &Option<Vec<String>>| {
            List::new(key, patterns).map(|list| {
                list.map(|l| {
                    let named = l.named();
                    (l.set, named)
                })
            })
        };
        Ok(TargetAllowlist {
            tenant: tenant.to_string(),
            topics: compile("topics", topics)?,
            exchanges: compile("exchanges", exchanges)?,
        })
    }
}

impl BridgeConfig {
    /// `tenant`'s target allowlists. They compiled when the configuration was checked; one
    /// that did not would allow nothing.
    pub fn target_allowlist(&self, tenant: &str) -> TargetAllowlist {
        let none = None;
        let (topics, exchanges) = match self.tenants.get(tenant) {
            Some(t) => (&t.allow.topics, &t.allow.exchanges),
            None => (&none, &none),
        };
        TargetAllowlist::new(tenant, topics, exchanges).unwrap_or_else(|_| TargetAllowlist {
            tenant: tenant.to_string(),
            topics: Some((GlobSet::empty(), "`allow.topics`".into())),
            exchanges: Some((GlobSet::empty(), "`allow.exchanges`".into())),
        })
    }
}

/// One allowlist, compiled.
struct List<'a> {
    key: &'static str,
    patterns: &'a [String],
    set: GlobSet,
}

impl<'a> List<'a> {
    fn new(key: &'static str, patterns: &'a Option<Vec<String>>) -> Result<Option<Self>, BadGlob> {
        let Some(patterns) = patterns else {
            return Ok(None);
        };
        let bad = |source| BadGlob { key, source };
        let mut builder = GlobSetBuilder::new();
        for p in patterns {
            builder.add(Glob::new(p).map_err(bad)?);
        }
        let set = builder.build().map_err(bad)?;
        Ok(Some(List { key, patterns, set }))
    }

    /// Whether `value` matches one of its globs.
    fn allows(&self, value: &str) -> bool {
        self.set.is_match(value)
    }

    /// The list as written: `` `allow.KEY = ["…", …]` ``.
    fn named(&self) -> String {
        format!(
            "`allow.{} = [{}]`",
            self.key,
            self.patterns
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Every problem with tenants: unknown tenants, plugins of another tenant, allowlists that do
/// not compile, and everything a mapping uses outside its tenant's allowlists — each naming the
/// mapping's key and the tenant's list.
pub(super) fn check(config: &BridgeConfig) -> Vec<String> {
    let mut problems = Vec::new();
    let known = |t: &str| t == DEFAULT_TENANT || config.tenants.contains_key(t);
    for (name, t) in &config.tenants {
        if let Some(w) = t.workers
            && !(1..=MAX_WORKERS).contains(&w)
        {
            problems.push(format!(
                "`tenants.{name}.workers = {w}`: must be between 1 and {MAX_WORKERS}"
            ));
        }
    }
    for (name, p) in &config.plugins {
        if !known(p.tenant()) {
            problems.push(format!(
                "`plugins.{name}.tenant`: no `[tenants.{}]` is defined",
                p.tenant()
            ));
        }
    }
    for m in &config.mapping {
        let tenant = m.tenant();
        if !known(tenant) {
            problems.push(format!(
                "mapping `{}`.tenant: no `[tenants.{tenant}]` is defined",
                m.name
            ));
            continue;
        }
        for p in m.plugins.iter().chain(&m.dead_letter_policy) {
            if let Some(plugin) = config.plugins.get(p)
                && plugin.tenant() != tenant
            {
                problems.push(format!(
                    "mapping `{}` (tenant `{tenant}`) uses plugin `{p}` of tenant `{}`: tenants share no plugins",
                    m.name,
                    plugin.tenant()
                ));
            }
        }
        if let Some(t) = config.tenants.get(tenant) {
            problems.extend(check_mapping(config, m, tenant, &t.allow));
        }
    }
    problems
}

fn check_mapping(config: &BridgeConfig, m: &Mapping, tenant: &str, allow: &Allow) -> Vec<String> {
    let lists = (|| {
        Ok::<_, BadGlob>((
            List::new("kafka_clusters", &allow.kafka_clusters)?,
            List::new("topics", &allow.topics)?,
            List::new("rabbitmq_connections", &allow.rabbitmq_connections)?,
            List::new("vhosts", &allow.vhosts)?,
            List::new("exchanges", &allow.exchanges)?,
            List::new("queues", &allow.queues)?,
        ))
    })();
    let (clusters, topics, connections, vhosts, exchanges, queues) = match lists {
        Ok(l) => l,
        Err(e) => return vec![format!("`tenants.{tenant}.allow.{}`: {}", e.key, e.source)],
    };
    let mut problems = Vec::new();
    let mut patterns = Vec::new();
    let mut outside = |at: String, what: String, list: &Option<List<'_>>, value: &str| {
        if let Some(list) = list
            && !list.allows(value)
        {
            problems.push(format!(
                "mapping `{}`.{at}: {what} `{value}` is outside tenant `{tenant}`'s {}",
                m.name,
                list.named()
            ));
        }
    };
    let vhost_of = |connection: &str| {
        config
            .rabbitmq
            .get(connection)
            .and_then(|c| c.uri().ok())
            .map(|u| u.vhost)
    };
    match &m.source {
        Source::Kafka(k) => {
            outside(
                "source.kafka".into(),
                "cluster".into(),
                &clusters,
                &k.cluster,
            );
            for t in &k.topics {
                if t.starts_with('^') && topics.is_some() {
                    patterns.push(format!(
                        "mapping `{}`.source.topic_regex: a topic pattern cannot be checked against tenant `{tenant}`'s `allow.topics`; list the topics",
                        m.name
                    ));
                } else {
                    outside("source.topics".into(), "topic".into(), &topics, t);
                }
            }
        }
        Source::Amqp(a) => {
            outside(
                "source.rabbitmq".into(),
                "connection".into(),
                &connections,
                &a.connection,
            );
            if let Some(v) = vhost_of(&a.connection) {
                outside("source.rabbitmq".into(), "vhost".into(), &vhosts, &v);
            }
            outside("source.queue".into(), "queue".into(), &queues, &a.queue);
        }
        Source::Stream(s) => {
            outside(
                "source.rabbitmq".into(),
                "connection".into(),
                &connections,
                &s.connection,
            );
            if let Some(v) = vhost_of(&s.connection) {
                outside("source.rabbitmq".into(), "vhost".into(), &vhosts, &v);
            }
            outside("source.stream".into(), "queue".into(), &queues, &s.stream);
        }
    }
    let targets = std::iter::once(("target", &m.target))
        .chain(m.dead_letter.as_ref().map(|d| ("dead_letter", &d.0)));
    for (key, target) in targets {
        match target {
            Target::Kafka(k) => {
                outside(
                    format!("{key}.kafka"),
                    "cluster".into(),
                    &clusters,
                    &k.cluster,
                );
                if let Some(t) = &k.topic {
                    outside(format!("{key}.topic"), "topic".into(), &topics, t);
                }
            }
            Target::Amqp(a) => {
                outside(
                    format!("{key}.rabbitmq"),
                    "connection".into(),
                    &connections,
                    &a.connection,
                );
                if let Some(v) = vhost_of(&a.connection) {
                    outside(format!("{key}.rabbitmq"), "vhost".into(), &vhosts, &v);
                }
                outside(
                    format!("{key}.exchange"),
                    "exchange".into(),
                    &exchanges,
                    &a.exchange,
                );
            }
            Target::Stream(s) => {
                outside(
                    format!("{key}.rabbitmq"),
                    "connection".into(),
                    &connections,
                    &s.connection,
                );
                if let Some(v) = vhost_of(&s.connection) {
                    outside(format!("{key}.rabbitmq"), "vhost".into(), &vhosts, &v);
                }
                outside(format!("{key}.stream"), "queue".into(), &queues, &s.stream);
            }
        }
    }
    if let Some(q) = m.declare.as_ref().and_then(|d| d.queue.as_ref()) {
        outside("declare.queue".into(), "queue".into(), &queues, q);
    }
    problems.extend(patterns);
    problems
}
