//! The topics, queues and exchanges the mappings use: checked at startup and by
//! `check --connect`, and created when a mapping asks for it with `declare`.

use std::collections::BTreeMap;
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{BridgeConfig, Declare, Source, Target};
use crate::kafka::ClusterContext;

/// How long a broker may take to answer before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether missing objects may be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only look (`check --connect`): a missing object a mapping would declare is fine.
    Inspect,
    /// Create what is missing where the mapping has `declare` (`run`).
    Declare,
}

/// What [`ensure`] found.
#[derive(Debug, Default)]
pub struct Report {
    /// Missing or unusable objects, each naming the mapping and key.
    pub missing: Vec<String>,
    /// Brokers that could not be reached.
    pub unreachable: Vec<String>,
    /// Objects created.
    pub declared: Vec<String>,
}

/// One object a mapping needs.
#[derive(Debug, Clone)]
struct Need {
    object: Object,
    /// The key path that names it, e.g. ``mapping `orders`.target.exchange``.
    at: String,
    declare: Option<Declare>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Object {
    Topic(String),
    Queue(String),
    Exchange(String),
    /// Queue, exchange, binding key: only ever declared.
    Binding(String, String, String),
}

/// Per Kafka cluster and per RabbitMQ connection, what the mappings need, without repeats.
#[derive(Default)]
struct Needs {
    kafka: BTreeMap<String, Vec<Need>>,
    amqp: BTreeMap<String, Vec<Need>>,
}

impl Needs {
    fn of(config: &BridgeConfig) -> Self {
        let mut needs = Needs::default();
        for m in &config.mapping {
            let at = |key: &str| format!("mapping `{}`.{key}", m.name);
            let declare = m.declare.clone();
            let source_topics: Vec<&String> = match &m.source {
                Source::Kafka(k) => k.topics.iter().filter(|t| !t.starts_with('^')).collect(),
                Source::Amqp(_) => Vec::new(),
            };
            match &m.source {
                Source::Kafka(k) => {
                    for t in &source_topics {
                        needs.add_kafka(
                            &k.cluster,
                            Object::Topic((*t).clone()),
                            at("source.topics"),
                            &declare,
                        );
                    }
                }
                Source::Amqp(a) => {
                    needs.add_amqp(
                        &a.connection,
                        Object::Queue(a.queue.clone()),
                        at("source.queue"),
                        &declare,
                    );
                }
            }
            let targets = std::iter::once((&m.target, "target"))
                .chain(m.dead_letter.as_ref().map(|d| (&d.0, "dead_letter")));
            for (target, key) in targets {
                match target {
                    Target::Kafka(k) => match &k.topic {
                        Some(t) => needs.add_kafka(
                            &k.cluster,
                            Object::Topic(t.clone()),
                            at(&format!("{key}.topic")),
                            &declare,
                        ),
                        // Kafka→Kafka keeping the source topic names.
                        None => {
                            for t in &source_topics {
                                needs.add_kafka(
                                    &k.cluster,
                                    Object::Topic((*t).clone()),
                                    at(&format!("{key}.kafka")),
                                    &declare,
                                );
                            }
                        }
                    },
                    Target::Amqp(a) => {
                        if !a.exchange.is_empty() {
                            needs.add_amqp(
                                &a.connection,
                                Object::Exchange(a.exchange.clone()),
                                at(&format!("{key}.exchange")),
                                &declare,
                            );
                        }
                        let bound = declare.as_ref().and_then(|d| d.queue.clone());
                        if let (Some(queue), "target") = (bound, key) {
                            needs.add_amqp(
                                &a.connection,
                                Object::Queue(queue.clone()),
                                at("declare.queue"),
                                &declare,
                            );
                            let keys: Vec<String> = match &a.routing_key {
                                Some(k) => vec![k.clone()],
                                None => source_topics.iter().map(|t| (*t).clone()).collect(),
                            };
                            for k in keys {
                                needs.add_amqp(
                                    &a.connection,
                                    Object::Binding(queue.clone(), a.exchange.clone(), k),
                                    at("declare.queue"),
                                    &declare,
                                );
                            }
                        }
                    }
                }
            }
        }
        needs
    }

    fn add_kafka(&mut self, cluster: &str, object: Object, at: String, declare: &Option<Declare>) {
        add(
            self.kafka.entry(cluster.to_string()).or_default(),
            object,
            at,
            declare,
        );
    }

    fn add_amqp(&mut self, conn: &str, object: Object, at: String, declare: &Option<Declare>) {
        add(
            self.amqp.entry(conn.to_string()).or_default(),
            object,
            at,
            declare,
        );
    }
}

/// Adds a need once; a later mapping that declares an object lends its settings to an earlier
/// one that does not.
fn add(list: &mut Vec<Need>, object: Object, at: String, declare: &Option<Declare>) {
    match list.iter_mut().find(|n| n.object == object) {
        Some(existing) => {
            if existing.declare.is_none() {
                existing.declare = declare.clone();
            }
        }
        None => list.push(Need {
            object,
            at,
            declare: declare.clone(),
        }),
    }
}

/// Checks every object the mappings use and, in [`Mode::Declare`], creates the missing ones
/// whose mapping has `declare`.
pub async fn ensure(config: &BridgeConfig, mode: Mode) -> Report {
    let needs = Needs::of(config);
    let mut report = Report::default();
    for (cluster, list) in &needs.kafka {
        kafka(config, cluster, list, mode, &mut report).await;
    }
    for (conn, list) in &needs.amqp {
        amqp(config, conn, list, mode, &mut report).await;
    }
    report
}

async fn kafka(
    config: &BridgeConfig,
    cluster: &str,
    needs: &[Need],
    mode: Mode,
    report: &mut Report,
) {
    let client = crate::kafka::client_config(&config.kafka[cluster]);
    // librdkafka's metadata request blocks: keep it off the async workers.
    let probe = client.clone();
    let context = ClusterContext::new(cluster);
    let existing = tokio::task::spawn_blocking(move || {
        let md = probe
            .create_with_context::<_, BaseConsumer<ClusterContext>>(context)?
            .fetch_metadata(None, CONNECT_TIMEOUT)?;
        Ok::<_, rdkafka::error::KafkaError>(
            md.topics()
                .iter()
                .filter(|t| t.error().is_none())
                .map(|t| t.name().to_string())
                .collect::<std::collections::HashSet<_>>(),
        )
    })
    .await;
    let existing = match existing {
        Ok(Ok(names)) => names,
        Ok(Err(e)) => {
            report
                .unreachable
                .push(format!("`kafka.{cluster}`: cannot fetch metadata: {e}"));
            return;
        }
        Err(e) => {
            report
                .unreachable
                .push(format!("`kafka.{cluster}`: metadata request failed: {e}"));
            return;
        }
    };
    let exists = |topic: &str| existing.contains(topic);
    let mut create = Vec::new();
    for need in needs {
        let Object::Topic(topic) = &need.object else {
            continue;
        };
        if exists(topic) {
            continue;
        }
        match (&need.declare, mode) {
            (Some(d), Mode::Declare) => create.push((topic, d, &need.at)),
            (Some(_), Mode::Inspect) => {}
            (None, _) => report.missing.push(format!(
                "{}: topic `{topic}` does not exist on `{cluster}` (create it, or set `declare = true` on the mapping)",
                need.at
            )),
        }
    }
    if create.is_empty() {
        return;
    }
    let admin: AdminClient<ClusterContext> =
        match client.create_with_context(ClusterContext::new(cluster)) {
            Ok(a) => a,
            Err(e) => {
                report.unreachable.push(format!(
                    "`kafka.{cluster}`: cannot create an admin client: {e}"
                ));
                return;
            }
        };
    let topics: Vec<NewTopic<'_>> = create
        .iter()
        .map(|(t, d, _)| {
            NewTopic::new(
                t,
                d.partitions,
                TopicReplication::Fixed(d.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    match admin.create_topics(&topics, &options).await {
        Err(e) => report
            .unreachable
            .push(format!("`kafka.{cluster}`: cannot create topics: {e}")),
        Ok(results) => {
            for (result, (topic, _, at)) in results.into_iter().zip(create) {
                match result {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                        report
                            .declared
                            .push(format!("topic `{topic}` on `{cluster}`"));
                    }
                    Err((_, e)) => report.missing.push(format!(
                        "{at}: cannot create topic `{topic}` on `{cluster}`: {e}"
                    )),
                }
            }
        }
    }
}

async fn amqp(config: &BridgeConfig, name: &str, needs: &[Need], mode: Mode, report: &mut Report) {
    let connecting = crate::amqp::connect(name, &config.rabbitmq[name]);
    let connection = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            report.unreachable.push(format!("`rabbitmq.{name}`: {e}"));
            return;
        }
        Err(_) => {
            report.unreachable.push(format!(
                "`rabbitmq.{name}`: no connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            ));
            return;
        }
    };
    // Queues and exchanges before bindings (the list keeps each mapping's order).
    let (bindings, objects): (Vec<&Need>, Vec<&Need>) = needs
        .iter()
        .partition(|n| matches!(n.object, Object::Binding(..)));
    for need in objects.into_iter().chain(bindings) {
        let declare = need.declare.as_ref().filter(|_| mode == Mode::Declare);
        if matches!(
            (&need.object, declare),
            (Object::Topic(_), _) | (Object::Binding(..), None)
        ) {
            continue;
        }
        // A failed declare closes its channel: one channel per object.
        let channel = match connection.create_channel().await {
            Ok(c) => c,
            Err(e) => {
                report
                    .unreachable
                    .push(format!("`rabbitmq.{name}`: cannot open a channel: {e}"));
                break;
            }
        };
        let (what, result) = match (&need.object, declare) {
            (Object::Binding(queue, exchange, key), Some(_)) => (
                format!("binding of queue `{queue}` to exchange `{exchange}` with `{key}`"),
                channel
                    .queue_bind(
                        queue.as_str().into(),
                        exchange.as_str().into(),
                        key.as_str().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map(|_| true),
            ),
            (Object::Binding(..), None) | (Object::Topic(_), _) => continue,
            (Object::Queue(queue), declare) => (
                format!("queue `{queue}`"),
                declare_queue(&connection, channel.clone(), queue, declare).await,
            ),
            (Object::Exchange(exchange), declare) => (
                format!("exchange `{exchange}`"),
                declare_exchange(&connection, channel.clone(), exchange, declare).await,
            ),
        };
        // Closed before the next one: channels left closing when the connection closes
        // make lapin log a connection error.
        if channel.status().connected() {
            let _ = channel.close(200, "checked".into()).await;
        }
        match result {
            Ok(false) => {}
            Ok(true) => report.declared.push(format!("{what} on `{name}`")),
            Err(e) if need.declare.is_some() && mode == Mode::Inspect => {
                tracing::debug!(at = %need.at, error = %e, "Missing; the mapping declares it at startup.");
            }
            Err(e) => report.missing.push(format!(
                "{}: {what} is not usable on `{name}`: {e}{}",
                need.at,
                if need.declare.is_none() {
                    " (create it, or set `declare = true` on the mapping)"
                } else {
                    ""
                }
            )),
        }
    }
    let _ = connection.close(200, "topology checked".into()).await;
}

/// `Ok(true)` if the queue was created, `Ok(false)` if it existed.
async fn declare_queue(
    connection: &lapin::Connection,
    channel: lapin::Channel,
    queue: &str,
    declare: Option<&Declare>,
) -> Result<bool, lapin::Error> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let Err(missing) = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
    else {
        return Ok(false);
    };
    let Some(d) = declare else {
        return Err(missing);
    };
    let options = QueueDeclareOptions {
        durable: d.durable,
        ..QueueDeclareOptions::default()
    };
    connection
        .create_channel()
        .await?
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
        .map(|_| true)
}

/// `Ok(true)` if the exchange was created, `Ok(false)` if it existed.
async fn declare_exchange(
    connection: &lapin::Connection,
    channel: lapin::Channel,
    exchange: &str,
    declare: Option<&Declare>,
) -> Result<bool, lapin::Error> {
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..ExchangeDeclareOptions::default()
    };
    let Err(missing) = channel
        .exchange_declare(
            exchange.into(),
            lapin::ExchangeKind::Direct,
            passive,
            FieldTable::default(),
        )
        .await
    else {
        return Ok(false);
    };
    let Some(d) = declare else {
        return Err(missing);
    };
    let options = ExchangeDeclareOptions {
        durable: d.durable,
        ..ExchangeDeclareOptions::default()
    };
    let kind = lapin::ExchangeKind::Custom(d.exchange_type.as_str().to_string());
    connection
        .create_channel()
        .await?
        .exchange_declare(exchange.into(), kind, options, FieldTable::default())
        .await
        .map(|_| true)
}
