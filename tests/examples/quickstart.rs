//! The quickstart's client (run by `scripts/demo.sh`): sends sample orders to Kafka and
//! warehouse events to RabbitMQ, then shows them arriving on the other side, transformed by
//! the bridge, with a progress line.

use std::collections::HashSet;
use std::io::Write as _;
use std::time::{Duration, Instant};

use bridge_tests::brokers::{self, Record};
use futures_util::StreamExt;
use lapin::options::BasicAckOptions;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message as _};

const N: usize = 10;

#[tokio::main]
async fn main() {
    let run = std::process::id();
    let conn = brokers::amqp().await;
    let orders: Vec<Record> = (0..N)
        .map(|i| Record {
            key: Some(format!("order-{run}-{i}").into_bytes()),
            payload: Some(
                format!(
                    r#"{{"type":"created","run":{run},"order":{i},"amount":{}}}"#,
                    10 * i + 5
                )
                .into_bytes(),
            ),
            headers: vec![("region".to_string(), b"eu".to_vec())],
            partition: 0,
            timestamp: None,
        })
        .collect();
    brokers::produce("quickstart-orders", &orders, None).await;
    let events: Vec<_> = (0..N)
        .map(|i| {
            (
                format!(r#"{{"run":{run},"event":{i},"item":"pallet-{i}"}}"#).into_bytes(),
                lapin::BasicProperties::default(),
            )
        })
        .collect();
    brokers::publish_to_queue(&conn, "quickstart-warehouse", &events).await;
    println!(
        "sent {N} orders to Kafka `quickstart-orders` and {N} events to RabbitMQ `quickstart-warehouse`\n"
    );

    let (_ch, mut queue) = brokers::queue_consumer(&conn, "quickstart-orders", 100, false).await;
    let topic: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers::kafka_bootstrap())
        .set("group.id", format!("quickstart-reader-{run}"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    topic
        .subscribe(&["quickstart-warehouse"])
        .expect("subscribe");
    let marker = format!(r#""run":{run},"#);
    let (mut to_rabbit, mut to_kafka) = (HashSet::new(), HashSet::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while (to_rabbit.len() < N || to_kafka.len() < N) && Instant::now() < deadline {
        if let Ok(Some(Ok(d))) =
            tokio::time::timeout(Duration::from_millis(100), queue.next()).await
        {
            let _ = d.acker.ack(BasicAckOptions::default()).await;
            let body = String::from_utf8_lossy(&d.data).into_owned();
            if body.contains(&marker) && to_rabbit.insert(body.clone()) {
                let headers = d
                    .properties
                    .headers()
                    .as_ref()
                    .map(bridge_host::amqp::from_field_table)
                    .unwrap_or_default();
                let shown: Vec<String> = headers
                    .iter()
                    .filter(|(k, _)| {
                        ["order_id", "x-bridged-by", "kafka_topic"].contains(&k.as_str())
                    })
                    .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
                    .collect();
                println!(
                    "\r\x1b[2K→ RabbitMQ  routing key {:<14} {body}  [{}]",
                    d.routing_key,
                    shown.join(" ")
                );
            }
        }
        if let Some(Ok(m)) = topic.poll(Duration::from_millis(50)) {
            let body = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            if body.contains(&marker) && to_kafka.insert(body.clone()) {
                let shown: Vec<String> = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .filter(|h| ["rabbitmq_queue", "x-bridged-by"].contains(&h.key))
                            .map(|h| {
                                format!(
                                    "{}={}",
                                    h.key,
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                println!(
                    "\r\x1b[2K→ Kafka     partition {:<15} {body}  [{}]",
                    m.partition(),
                    shown.join(" ")
                );
            }
        }
        print!(
            "\rprogress: orders {}/{N} → RabbitMQ, events {}/{N} → Kafka ",
            to_rabbit.len(),
            to_kafka.len()
        );
        let _ = std::io::stdout().flush();
    }
    println!();
    if to_rabbit.len() < N || to_kafka.len() < N {
        eprintln!("not everything arrived within 60 s: is bridge-host running?");
        std::process::exit(1);
    }
}
