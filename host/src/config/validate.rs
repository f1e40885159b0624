//! Checks that need the whole file: references between sections, unique names, ranges.

use std::collections::{HashMap, HashSet};

use super::{BridgeConfig, Source, Target};

/// The longest drain a stop may take.
const MAX_SHUTDOWN_TIMEOUT_SECS: u64 = 3600;

/// Every problem found, each naming its key path.
pub(super) fn check(config: &BridgeConfig) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    // Topics by cluster and consumer group, with the mapping consuming them.
    let mut consumed: HashMap<(&str, &str, &str), &str> = HashMap::new();
    if config.mapping.is_empty() {
        problems.push("no `[[mapping]]`: nothing to bridge".to_string());
    }
    if let Some(token) = &config.bridge.admin_token {
        if token.trim().is_empty() {
            problems.push("`bridge.admin_token` is empty".to_string());
        }
        if config.bridge.health_listen.is_none() {
            problems.push(
                "`bridge.admin_token` needs `bridge.health_listen`, where the admin endpoints are served"
                    .to_string(),
            );
        }
    }
    if config.bridge.shutdown_timeout_secs > MAX_SHUTDOWN_TIMEOUT_SECS {
        problems.push(format!(
            "`bridge.shutdown_timeout_secs` = {}: at most {MAX_SHUTDOWN_TIMEOUT_SECS} (an hour)",
            config.bridge.shutdown_timeout_secs
        ));
    }
    problems.extend(super::tenant::check(config));
    if let Some(level) = &config.bridge.log_level
        && let Err(e) = tracing_subscriber::EnvFilter::try_new(level)
    {
        problems.push(format!("`bridge.log_level` = {level:?}: {e}"));
    }
    for (name, plugin) in &config.plugins {
        if let Err(e) = plugin.limits.validate() {
            problems.push(format!("`plugins.{name}.limits`: {e}"));
        }
    }
    for (name, conn) in &config.rabbitmq {
        if let Some(tls) = &conn.tls {
            if !conn.url.starts_with("amqps://") {
                problems.push(format!("`rabbitmq.{name}.tls` needs an `amqps://` URL"));
            }
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                problems.push(format!(
                    "`rabbitmq.{name}.tls`: a client certificate needs both `cert_file` and `key_file`"
                ));
            }
        }
        if !(conn.url.starts_with("amqp://") || conn.url.starts_with("amqps://")) {
            problems.push(format!(
                "`rabbitmq.{name}.url` must start with `amqp://` or `amqps://`"
            ));
        } else if let Err(e) = conn.uri() {
            problems.push(format!(
                "`rabbitmq.{name}.url` is not a valid AMQP URL: {e}"
            ));
        }
    }
    for (name, cluster) in &config.kafka {
        if cluster.bootstrap_servers.trim().is_empty() {
            problems.push(format!("`kafka.{name}.bootstrap_servers` is empty"));
        }
    }
    for (i, m) in config.mapping.iter().enumerate() {
        let at = if m.name.is_empty() {
            format!("mapping #{}", i + 1)
        } else {
            format!("mapping `{}`", m.name)
        };
        if m.name.is_empty() {
            problems.push(format!("{at}: `name` is empty"));
        } else if !names.insert(m.name.as_str()) {
            problems.push(format!("{at}: the name is used by another mapping"));
        }
        if let Some(b) = &m.breaker {
            if b.failures == 0 || b.window_secs == 0 {
                problems.push(format!(
                    "{at}.breaker: `failures` and `window_secs` must be at least 1"
                ));
            }
            if b.action == super::BreakerAction::DeadLetter && m.dead_letter.is_none() {
                problems.push(format!(
                    "{at}.breaker: `action = \"dead-letter\"` needs the mapping's `dead_letter` target"
                ));
            }
        }
        match &m.source {
            Source::Kafka(k) if !config.kafka.contains_key(&k.cluster) => {
                problems.push(format!(
                    "{at}.source.kafka: no `[kafka.{}]` cluster is defined",
                    k.cluster
                ));
            }
            Source::Kafka(k) => {
                for topic in &k.topics {
                    if topic.starts_with('^')
                        && let Err(e) = regex::Regex::new(topic)
                    {
                        problems.push(format!(
                            "{at}.source.topic_regex: {topic:?} is not a valid regex: {e}"
                        ));
                    }
                    let key = (k.cluster.as_str(), k.group.as_str(), topic.as_str());
                    if let Some(other) = consumed.insert(key, &m.name) {
                        problems.push(format!(
                            "{at}.source: `{topic}` is consumed by mapping `{other}` too, in the same group `{}`: the group would split its partitions between them, so each message would reach only one; give one of them its own `group`",
                            k.group
                        ));
                    }
                }
            }
            Source::Amqp(a) if !config.rabbitmq.contains_key(&a.connection) => {
                problems.push(format!(
                    "{at}.source.rabbitmq: no `[rabbitmq.{}]` connection is defined",
                    a.connection
                ));
            }
            Source::Amqp(a) if a.prefetch == 0 => {
                problems.push(format!("{at}.source.prefetch must be at least 1"))
            }
            Source::Amqp(a) => short_name(&format!("{at}.source.queue"), &a.queue, &mut problems),
            Source::Stream(s) if !config.rabbitmq.contains_key(&s.connection) => {
                problems.push(format!(
                    "{at}.source.rabbitmq: no `[rabbitmq.{}]` connection is defined",
                    s.connection
                ));
            }
            Source::Stream(s) => {
                short_name(&format!("{at}.source.stream"), &s.stream, &mut problems)
            }
        }
        check_target(config, &m.target, &format!("{at}.target"), &mut problems);
        if let Some(dl) = &m.dead_letter {
            check_target(config, &dl.0, &format!("{at}.dead_letter"), &mut problems);
        }
        for p in &m.plugins {
            if !config.plugins.contains_key(p) {
                problems.push(format!("{at}.plugins: no `[plugins.{p}]` is defined"));
            }
        }
        if let Some(p) = &m.dead_letter_policy
            && !config.plugins.contains_key(p)
        {
            problems.push(format!(
                "{at}.dead_letter_policy: no `[plugins.{p}]` is defined"
            ));
        }
        if m.max_in_flight == 0 {
            problems.push(format!("{at}.max_in_flight must be at least 1"));
        }
        if let (Source::Amqp(_), Target::Kafka(k)) = (&m.source, &m.target)
            && k.topic.is_none()
        {
            problems.push(format!(
                "{at}.target.topic is required when the source is a RabbitMQ queue"
            ));
        }
        if m.delivery == super::Delivery::ExactlyOnce {
            check_exactly_once(config, m, &at, &mut problems);
        }
        if let Some(d) = &m.declare {
            if d.partitions < 1 {
                problems.push(format!("{at}.declare.partitions must be at least 1"));
            }
            if d.replication_factor < 1 {
                problems.push(format!(
                    "{at}.declare.replication_factor must be at least 1"
                ));
            }
            if let Some(q) = &d.queue {
                short_name(&format!("{at}.declare.queue"), q, &mut problems);
            }
            problems.extend(d.queue_problems(&format!("{at}.declare")));
            if d.queue.is_some() && !matches!(m.target, Target::Amqp(_)) {
                problems.push(format!(
                    "{at}.declare.queue: only a RabbitMQ target binds a queue"
                ));
            }
            if let (Some(_), Target::Amqp(a)) = (&d.queue, &m.target)
                && a.routing_key.is_none()
                && matches!(&m.source, Source::Kafka(k) if k.topics.iter().any(|t| t.starts_with('^')))
            {
                problems.push(format!(
                    "{at}.declare.queue: needs `target.routing_key` when the source topics are a regex"
                ));
            }
        }
    }
    problems
}

/// `delivery = "exactly-once"` holds from a Kafka source either into a RabbitMQ stream (the
/// broker drops what a named producer sent before), or where one Kafka transaction covers both
/// the output and the consumed offsets: a Kafka target (and Kafka dead letters) on the same
/// cluster, with a consumer group no other mapping uses.
fn check_exactly_once(
    config: &BridgeConfig,
    m: &super::Mapping,
    at: &str,
    problems: &mut Vec<String>,
) {
    let refuse = |why: String| format!("{at}.delivery = \"exactly-once\": {why}");
    let Source::Kafka(source) = &m.source else {
        problems.push(refuse(
            "needs a Kafka source (a RabbitMQ queue cannot take part in a Kafka transaction)"
                .to_string(),
        ));
        return;
    };
    if matches!(m.target, Target::Stream(_)) {
        // Deduplicated by the stream; dead letters, wherever they go, are at-least-once.
        return;
    }
    let same_cluster = |what: &str, target: &Target| match target {
        Target::Kafka(k) if k.cluster == source.cluster => None,
        Target::Kafka(k) => Some(refuse(format!(
            "{what} is on cluster `{}` and the source on `{}`: a transaction spans one cluster",
            k.cluster, source.cluster
        ))),
        Target::Amqp(_) => Some(refuse(format!(
            "{what} is a RabbitMQ exchange, which cannot take part in a Kafka transaction (a RabbitMQ stream target, `stream = \"…\"`, deduplicates instead)"
        ))),
        Target::Stream(_) => Some(refuse(format!(
            "{what} is a RabbitMQ stream, which cannot take part in the target's Kafka transaction"
        ))),
    };
    problems.extend(same_cluster("the target", &m.target));
    if m.dedup.is_some() {
        problems.push(refuse(
            "`dedup` cannot be combined with it (a transaction that is aborted would leave its messages remembered as seen); exactly-once needs no dedup".to_string(),
        ));
    }
    if let Some(dl) = &m.dead_letter {
        problems.extend(same_cluster("the dead-letter target", &dl.0));
    }
    let shared = config.mapping.iter().find(|other| {
        other.name != m.name
            && matches!(&other.source, Source::Kafka(k)
                if k.cluster == source.cluster && k.group == source.group && other.tenant() == m.tenant())
    });
    if let Some(other) = shared {
        problems.push(refuse(format!(
            "consumer group `{}` is used by mapping `{}` too; an exactly-once mapping needs a group of its own",
            source.group, other.name
        )));
    }
}

fn check_target(config: &BridgeConfig, target: &Target, at: &str, problems: &mut Vec<String>) {
    match target {
        Target::Kafka(k) if !config.kafka.contains_key(&k.cluster) => {
            problems.push(format!(
                "{at}.kafka: no `[kafka.{}]` cluster is defined",
                k.cluster
            ));
        }
        Target::Amqp(a) if !config.rabbitmq.contains_key(&a.connection) => {
            problems.push(format!(
                "{at}.rabbitmq: no `[rabbitmq.{}]` connection is defined",
                a.connection
            ));
        }
        Target::Amqp(a) => {
            short_name(&format!("{at}.exchange"), &a.exchange, problems);
            if let Some(key) = &a.routing_key {
                short_name(&format!("{at}.routing_key"), key, problems);
            }
        }
        Target::Stream(s) if !config.rabbitmq.contains_key(&s.connection) => {
            problems.push(format!(
                "{at}.rabbitmq: no `[rabbitmq.{}]` connection is defined",
                s.connection
            ));
        }
        Target::Stream(s) => short_name(&format!("{at}.stream"), &s.stream, problems),
        _ => {}
    }
}

/// AMQP names (queues, exchanges, routing keys) are short strings: at most 255 bytes.
fn short_name(at: &str, value: &str, problems: &mut Vec<String>) {
    if value.len() > 255 {
        problems.push(format!(
            "{at} is {} bytes long; AMQP names are at most 255 bytes",
            value.len()
        ));
    }
}
