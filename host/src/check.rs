//! `bridge-host check --connect`: are the brokers reachable and do the topics, queues and
//! exchanges the mappings use exist?

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::{BridgeConfig, Source, Target};

/// Every broker problem found, each naming the mapping and the key.
pub async fn brokers(config: &BridgeConfig) -> Vec<String> {
    let mut problems = Vec::new();
    let mut kafka_topics: Vec<(String, String, String)> = Vec::new();
    let mut queues: Vec<(String, String, String)> = Vec::new();
    let mut exchanges: Vec<(String, String, String)> = Vec::new();
    for m in &config.mapping {
        match &m.source {
            Source::Kafka(k) => {
                for t in k.topics.iter().filter(|t| !t.starts_with('^')) {
                    kafka_topics.push((
                        k.cluster.clone(),
                        t.clone(),
                        format!("mapping `{}`.source.topics", m.name),
                    ));
                }
            }
            Source::Amqp(a) => queues.push((
                a.connection.clone(),
                a.queue.clone(),
                format!("mapping `{}`.source.queue", m.name),
            )),
        }
        let targets = std::iter::once((&m.target, "target"))
            .chain(m.dead_letter.as_ref().map(|d| (&d.0, "dead_letter")));
        for (target, key) in targets {
            match target {
                Target::Kafka(k) => {
                    if let Some(t) = &k.topic {
                        kafka_topics.push((
                            k.cluster.clone(),
                            t.clone(),
                            format!("mapping `{}`.{key}.topic", m.name),
                        ));
                    }
                }
                Target::Amqp(a) if !a.exchange.is_empty() => {
                    exchanges.push((
                        a.connection.clone(),
                        a.exchange.clone(),
                        format!("mapping `{}`.{key}.exchange", m.name),
                    ));
                }
                Target::Amqp(_) => {}
            }
        }
    }
    for (cluster, topics) in group(kafka_topics) {
        let consumer: Result<BaseConsumer, _> =
            crate::kafka::client_config(&config.kafka[&cluster]).create();
        let metadata = consumer.and_then(|c| c.fetch_metadata(None, Duration::from_secs(10)));
        match metadata {
            Err(e) => problems.push(format!("`kafka.{cluster}`: cannot fetch metadata: {e}")),
            Ok(md) => {
                for (topic, at) in topics {
                    if !md
                        .topics()
                        .iter()
                        .any(|t| t.name() == topic && t.error().is_none())
                    {
                        problems.push(format!(
                            "{at}: topic `{topic}` does not exist on `{cluster}`"
                        ));
                    }
                }
            }
        }
    }
    // Per connection: (queue, key path) and (exchange, key path) to check.
    type Objects = (Vec<(String, String)>, Vec<(String, String)>);
    let mut amqp: std::collections::BTreeMap<String, Objects> = Default::default();
    for (c, q, at) in queues {
        amqp.entry(c).or_default().0.push((q, at));
    }
    for (c, e, at) in exchanges {
        amqp.entry(c).or_default().1.push((e, at));
    }
    for (name, (queues, exchanges)) in amqp {
        let connection = match crate::amqp::connect(&name, &config.rabbitmq[&name]).await {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("`rabbitmq.{name}`: {e}"));
                continue;
            }
        };
        // A passive declare fails (and closes the channel) when the object is missing.
        for (queue, at) in queues {
            let Ok(ch) = connection.create_channel().await else {
                continue;
            };
            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            if let Err(e) = ch
                .queue_declare(queue.clone().into(), passive, FieldTable::default())
                .await
            {
                problems.push(format!(
                    "{at}: queue `{queue}` is not usable on `{name}`: {e}"
                ));
            }
        }
        for (exchange, at) in exchanges {
            let Ok(ch) = connection.create_channel().await else {
                continue;
            };
            let passive = ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            };
            if let Err(e) = ch
                .exchange_declare(
                    exchange.clone().into(),
                    lapin::ExchangeKind::Direct,
                    passive,
                    FieldTable::default(),
                )
                .await
            {
                problems.push(format!(
                    "{at}: exchange `{exchange}` is not usable on `{name}`: {e}"
                ));
            }
        }
        let _ = connection.close(200, "check done".into()).await;
    }
    problems
}

fn group(
    items: Vec<(String, String, String)>,
) -> std::collections::BTreeMap<String, Vec<(String, String)>> {
    let mut out: std::collections::BTreeMap<String, Vec<(String, String)>> = Default::default();
    for (k, a, b) in items {
        out.entry(k).or_default().push((a, b));
    }
    out
}
