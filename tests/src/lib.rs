//! Shared helpers of the bridge's end-to-end tests and benchmarks.

pub mod bridge;
pub mod brokers;
pub mod fault_proxy;
pub mod kafka_node;
pub mod mirror_maker;
pub mod rabbit_node;
pub mod relay;
pub mod scenario;
pub mod throughput;

/// Paths of the plugin components built by `build.rs`.
pub mod artifacts {
    /// The built-in `header-map` plugin.
    pub const HEADER_MAP: &str = env!("PLUGIN_HEADER_MAP");
    /// The built-in `routing-key` plugin.
    pub const ROUTING_KEY: &str = env!("PLUGIN_ROUTING_KEY");
    /// The built-in `dlq-policy` plugin.
    pub const DLQ_POLICY: &str = env!("PLUGIN_DLQ_POLICY");
    /// The misbehaving test plugin (`mode = …`).
    pub const HOSTILE: &str = env!("PLUGIN_HOSTILE");
    /// A component importing an interface no host provides.
    pub const BAD_IMPORT: &str = env!("PLUGIN_BAD_IMPORT");
    /// The record-shaped benchmark plugin (`tests/plugins/shape-record/shape.wit`).
    pub const SHAPE_RECORD: &str = env!("PLUGIN_SHAPE_RECORD");
    /// A candidate that marks every tenth message (staged-rollout tests).
    pub const TENTH: &str = env!("PLUGIN_TENTH");
    /// A dead-letter policy choosing the Kafka topic its `topic` setting names.
    pub const CHOSEN_DEAD_LETTER: &str = env!("PLUGIN_CHOSEN_DEAD_LETTER");
    /// The PII-masking example plugin, in Rust.
    pub const PII_MASK: &str = env!("PLUGIN_PII_MASK");
}

use bridge_host::plugin::{Message, PluginRuntime, RuntimeOptions};

/// A runtime without a compiled-code cache.
pub fn runtime() -> PluginRuntime {
    PluginRuntime::new(RuntimeOptions::default()).expect("the plugin runtime starts")
}

/// A message with a 1 KiB JSON payload, a key and five headers, as the benchmarks use.
pub fn sample_message() -> Message {
    let mut body = String::from(r#"{"type":"damage","region":"eu","pad":""#);
    while body.len() < 1022 {
        body.push('x');
    }
    body.push_str("\"}");
    let mut msg = Message::new(Some(body.into_bytes()));
    msg.key = Some(b"order-42".to_vec());
    for (n, v) in [
        ("kafka_topic", "events-order-damage"),
        ("kafka_partition", "3"),
        ("kafka_offset", "1234567"),
        ("region", "eu"),
        ("trace-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
    ] {
        msg.headers.push((n.to_string(), v.as_bytes().to_vec()));
    }
    msg
}

/// Rounds of a benchmark measurement; the median counts.
const ROUNDS: usize = 7;

/// Median nanoseconds per call of `f` over seven rounds of `iters` calls, after a warm-up of
/// a tenth as many.
pub fn median_ns(iters: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 {
        f();
    }
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = std::time::Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iters)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}
