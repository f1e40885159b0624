//! The topics, queues, exchanges and bindings the mappings use, per broker, each named by the
//! key that names it: what `run` checks (and creates where a mapping has `declare`) at
//! startup, and `check --connect` looks for.

use std::collections::BTreeMap;

use super::{BridgeConfig, Declare, Source, Target};

/// Whether missing objects may be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only look (`check --connect`): a missing object a mapping would declare is fine.
    Inspect,
    /// Create what is missing where the mapping has `declare` (`run`).
    Declare,
}

/// What checking the brokers found.
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
pub struct Need {
    pub object: Object,
    /// The key path that names it, e.g. ``mapping `orders`.target.exchange``.
    pub at: String,
    /// How to create it, if the mapping declares it.
    pub declare: Option<Declare>,
}

/// A topic, queue, exchange or binding a mapping uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A Kafka topic.
    Topic(String),
    /// A RabbitMQ queue.
    Queue(String),
    /// A RabbitMQ exchange.
    Exchange(String),
    /// Queue, exchange, binding key: only ever declared.
    Binding(String, String, String),
}

/// Per Kafka cluster and per RabbitMQ connection, what the mappings need, without repeats.
#[derive(Default)]
pub struct Needs {
    /// By `[kafka.NAME]`.
    pub kafka: BTreeMap<String, Vec<Need>>,
    /// By `[rabbitmq.NAME]`.
    pub amqp: BTreeMap<String, Vec<Need>>,
}

impl Needs {
    /// What the mappings of `config` use.
    pub fn of(config: &BridgeConfig) -> Self {
        let mut needs = Needs::default();
        for m in &config.mapping {
            let at = |key: &str| format!("mapping `{}`.{key}", m.name);
            let declare = m.declare.clone();
            let source_topics: Vec<&String> = match &m.source {
                Source::Kafka(k) => k.topics.iter().filter(|t| !t.starts_with('^')).collect(),
                Source::Amqp(_) | Source::Stream(_) => Vec::new(),
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
                Source::Stream(s) => needs.add_amqp(
                    &s.connection,
                    Object::Queue(s.stream.clone()),
                    at("source.stream"),
                    &as_stream(&declare),
                ),
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
                    Target::Stream(s) => needs.add_amqp(
                        &s.connection,
                        Object::Queue(s.stream.clone()),
                        at(&format!("{key}.stream")),
                        &as_stream(&declare),
                    ),
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

/// How a mapping's stream is declared: as a stream, whatever `queue_type` says, with no
/// bound queue.
fn as_stream(declare: &Option<Declare>) -> Option<Declare> {
    declare.as_ref().map(|d| Declare {
        queue_type: super::QueueType::Stream,
        queue: None,
        ..d.clone()
    })
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
