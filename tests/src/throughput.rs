//! The throughput harness of the `bridge_throughput` benchmark and the `tripwire` test: 1 KiB
//! messages with a key and 5 headers, produced to fresh topics and queues ([`Lane`]), moved by
//! the bridge or the plain relay (`crate::relay`) in one [`Direction`], and counted where they
//! arrive ([`throughput`]). The bridge runs through `header-map` + `routing-key` with
//! provenance headers on ([`chain_config`]).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use crate::artifacts;
use crate::bridge::BridgeProcess;
use crate::brokers::{self, unique};
use crate::mirror_maker::{self, MirrorMaker};
use crate::relay;

/// Partitions of every topic the harness creates.
pub const PARTITIONS: i32 = 4;

/// The headers every benchmark message carries besides the bridge's own.
const HEADERS: [(&str, &str); 5] = [
    ("region", "eu"),
    ("trace-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
    ("tenant", "acme"),
    ("content-type", "application/json"),
    ("schema", "order-damage-v3"),
];

/// Microseconds since the Unix epoch.
pub fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros()
}

/// A 1 KiB JSON payload carrying its send time.
fn payload() -> Vec<u8> {
    let mut p = format!(r#"{{"type":"damage","sent_us":{},"pad":""#, now_us()).into_bytes();
    p.resize(1022, b'x');
    p.extend_from_slice(b"\"}");
    p
}

fn kafka_headers() -> OwnedHeaders {
    HEADERS.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
        h.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        })
    })
}

fn amqp_properties() -> BasicProperties {
    let mut table = FieldTable::default();
    for (k, v) in HEADERS {
        table.insert(k.into(), AMQPValue::LongString(LongString::from(v)));
    }
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(table)
}

/// `n` messages over `d`, in messages per second.
pub fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-6)
}

/// Produces `n` messages to `topic`, at most `per_s` a second (`None`: as fast as the client
/// goes), through an idempotent producer with `acks=all`; returns the rate.
pub async fn kafka_produce(topic: &str, n: usize, per_s: Option<f64>) -> f64 {
    let producer = brokers::producer(&brokers::kafka_bootstrap());
    if per_s.is_some() {
        // A paced run measures latency: learn the new topic's leaders before the clock starts
        // (a payload that is not JSON carries no send time and is not counted).
        let warm = FutureRecord::<str, str>::to(topic)
            .payload("warm-up")
            .key("warm-up");
        let _ = brokers::send(&producer, warm).await.await;
    }
    let start = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..n {
        if let Some(r) = per_s {
            let due = start + Duration::from_secs_f64(i as f64 / r);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        let body = payload();
        let key = format!("k{}", i % 64);
        let rec = FutureRecord::<str, [u8]>::to(topic)
            .payload(&body)
            .key(&key)
            .headers(kafka_headers());
        pending.push_back(brokers::send(&producer, rec).await);
        while pending.len() > 10_000 {
            let _ = pending.pop_front().expect("pending").await;
        }
    }
    for p in pending {
        p.await.expect("delivery").expect("delivered");
    }
    rate(n, start.elapsed())
}

/// Publishes `n` persistent messages to `queue` with confirms (1 000 in flight), at most
/// `per_s` a second; returns the rate.
pub async fn amqp_publish(conn: &Connection, queue: &str, n: usize, per_s: Option<f64>) -> f64 {
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let props = amqp_properties();
    let start = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..n {
        if let Some(r) = per_s {
            let due = start + Duration::from_secs_f64(i as f64 / r);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        let c = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &payload(),
                props.clone(),
            )
            .await
            .expect("publish");
        pending.push_back(c);
        if pending.len() >= 1000 {
            pending
                .pop_front()
                .expect("pending")
                .await
                .expect("confirm");
        }
    }
    for c in pending {
        c.await.expect("confirm");
    }
    rate(n, start.elapsed())
}

/// Messages written to `topic` so far (sum of its partitions' high watermarks).
fn topic_count(client: &BaseConsumer, topic: &str) -> usize {
    (0..PARTITIONS)
        .map(|p| {
            client
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .map_or(0, |w| w.1)
        })
        .sum::<i64>() as usize
}

/// Counts what arrives in Kafka `topic` until it reaches `n`: a [`measure`] of the process
/// `pid` moving it.
async fn count_topic(pid: Option<u32>, n: usize, topic: &str) -> Run {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers::kafka_bootstrap())
        .create()
        .expect("client");
    measure(pid, n, || topic_count(&client, topic)).await
}

/// Throughput of MirrorMaker 2 (its jars in `libs`) Kafka → Kafka over `n` messages waiting
/// in the source, on a fresh [`Lane`], with its CPU time, peak RSS and log.
pub async fn mirror_maker_throughput(conn: &Connection, n: usize, libs: &Path) -> Run {
    let lane = Lane::new(conn).await;
    kafka_produce(&lane.topic, n, None).await;
    let mirror = MirrorMaker::start(libs, &lane.topic, PARTITIONS);
    let mut run = count_topic(
        Some(mirror.pid()),
        n,
        &mirror_maker::target_topic(&lane.topic),
    )
    .await;
    run.log = Some(mirror.stop());
    run
}

/// CPU time (user + system) and peak RSS of a process, from `/proc`.
fn process_usage(pid: u32) -> Option<(Duration, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hwm_kib = crate::bridge::proc_status(pid, "VmHWM:")?;
    // Linux reports CPU time in clock ticks of 1/100 s.
    Some((Duration::from_millis(ticks * 10), hwm_kib))
}

/// A throughput run: messages per second from the first arrival to the `n`-th, and for a
/// bridge process its CPU time per 100 000 messages over the same span, its peak RSS and its
/// log.
pub struct Run {
    /// Messages per second from the first arrival to the last one counted.
    pub rate: f64,
    /// The bridge's CPU time (user + system) per 100 000 messages, in seconds.
    pub cpu_per_100k: Option<f64>,
    /// The bridge's peak resident memory, in MiB.
    pub peak_rss_mib: Option<f64>,
    /// The bridge's log, shutdown included.
    pub log: Option<String>,
}

/// Polls `count` until it reaches `n` (or 5 minutes pass). The clock starts at the last poll
/// that saw nothing: a mover fast enough to deliver everything between two polls (a count
/// can take a while) is still measured, a little pessimistically.
async fn measure(pid: Option<u32>, n: usize, mut count: impl FnMut() -> usize) -> Run {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut first = None;
    let mut empty = (Instant::now(), 0, pid.and_then(process_usage));
    let (mut last, mut seen) = (Instant::now(), 0);
    while seen < n && Instant::now() < deadline {
        let before = (Instant::now(), pid.and_then(process_usage));
        seen = count();
        if seen == 0 {
            empty = (before.0, 0, before.1);
        } else if first.is_none() {
            first = Some(empty);
        }
        last = Instant::now();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Some((t0, n0, usage0)) = first else {
        return Run {
            rate: 0.0,
            cpu_per_100k: None,
            peak_rss_mib: None,
            log: None,
        };
    };
    let moved = seen.saturating_sub(n0);
    let usage1 = pid.and_then(process_usage);
    Run {
        rate: rate(moved, last - t0),
        cpu_per_100k: match (usage0, usage1) {
            (Some((c0, _)), Some((c1, _))) if moved > 0 => {
                Some((c1 - c0).as_secs_f64() * 100_000.0 / moved as f64)
            }
            _ => None,
        },
        peak_rss_mib: usage1.map(|(_, kib)| kib as f64 / 1024.0),
        log: None,
    }
}

/// Where the bridge keeps compiled plugins between runs, as a deployment would.
fn plugin_cache() -> std::path::PathBuf {
    std::env::temp_dir().join("bridge-bench-plugin-cache")
}

/// The bridge's configuration for `mapping` (its `source` and `target` lines): the test
/// brokers, the compiled-plugin cache, and mapping `bench` through `header-map` (a rename and
/// a templated provenance header) and `routing-key`, `max_in_flight` as the relay's.
pub fn chain_config(mapping: &str) -> String {
    format!(
        r#"
{}
[bridge]
plugin_cache_dir = "{}"

[plugins.headers]
path = "{}"
config = {{ rename = {{ kafka_key = "message_key" }}, set = {{ x-source = "{{source}}" }} }}
[plugins.route]
path = "{}"
config = {{ routing_key = "{{header:region|eu}}.bench" }}

[[mapping]]
name = "bench"
plugins = [{}]
max_in_flight = {}
{mapping}"#,
        brokers::brokers_toml(),
        plugin_cache().display(),
        artifacts::HEADER_MAP,
        artifacts::ROUTING_KEY,
        // `BENCH_PLUGINS=""` measures the bridge without plugins.
        std::env::var("BENCH_PLUGINS")
            .map(|names| plugin_list(&names))
            .unwrap_or_else(|_| "\"headers\", \"route\"".to_string()),
        relay::IN_FLIGHT,
    )
}

/// `a,b` as a TOML list of strings.
fn plugin_list(names: &str) -> String {
    names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compiles the plugins of [`chain_config`] into the compiled-plugin cache once
/// (`bridge-host check` loads them), so that no run pays for it.
pub fn warm_plugin_cache(bin: &Path) {
    let config = tempfile::NamedTempFile::new().expect("temp file");
    let warm = chain_config(
        "source = { kafka = \"main\", topics = [\"warm-up\"], group = \"warm-up\" }\ntarget = { kafka = \"main\", topic = \"warm-up\" }\n",
    );
    std::fs::write(config.path(), warm).expect("config");
    let status = std::process::Command::new(bin)
        .args(["check", "--config"])
        .arg(config.path())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("bridge-host check");
    assert!(status.success(), "the benchmark's plugins load");
}

/// What sits between the source and the target in a run.
pub enum Mover {
    /// A `bridge-host` process.
    Bridge(BridgeProcess),
    /// A plain relay task, its stop flag and its handle (the messages it relayed).
    Relay(Arc<AtomicBool>, tokio::task::JoinHandle<usize>),
}

impl Mover {
    /// Whether the bridge is still running (the relay always is, until stopped).
    pub fn running(&mut self) -> bool {
        match self {
            Mover::Bridge(b) => b.running(),
            Mover::Relay(..) => true,
        }
    }

    /// The bridge's process id; `None` for the relay, which runs in this process.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Mover::Bridge(b) => Some(b.pid()),
            Mover::Relay(..) => None,
        }
    }

    /// Stops the bridge (SIGTERM, up to 30 s) or the relay (after what it has in flight); for
    /// the bridge, its log.
    pub async fn stop(self) -> Option<String> {
        match self {
            Mover::Bridge(mut b) => {
                b.terminate(Duration::from_secs(30));
                Some(b.log_text())
            }
            Mover::Relay(stop, task) => {
                stop.store(true, Ordering::Relaxed);
                let _ = task.await;
                None
            }
        }
    }
}

/// Which way messages move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From a Kafka topic to a RabbitMQ exchange.
    KafkaToRabbitmq,
    /// From a RabbitMQ queue to a Kafka topic.
    RabbitmqToKafka,
    /// From a Kafka topic to another.
    KafkaToKafka,
    /// From a Kafka topic to another, the bridge with `delivery = "exactly-once"` (the relay
    /// is the same as [`Direction::KafkaToKafka`]'s).
    KafkaToKafkaExactlyOnce,
    /// From a Kafka topic to a RabbitMQ stream, over the stream protocol.
    KafkaToStream,
    /// From a Kafka topic to a RabbitMQ stream, the bridge with `delivery = "exactly-once"`
    /// (the relay is the same as [`Direction::KafkaToStream`]'s).
    KafkaToStreamExactlyOnce,
}

impl Direction {
    /// Every direction, in the benchmark's order.
    pub const ALL: [Direction; 6] = [
        Direction::KafkaToRabbitmq,
        Direction::RabbitmqToKafka,
        Direction::KafkaToKafka,
        Direction::KafkaToKafkaExactlyOnce,
        Direction::KafkaToStream,
        Direction::KafkaToStreamExactlyOnce,
    ];

    /// `kafka_to_rabbitmq`, `rabbitmq_to_kafka`, `kafka_to_kafka`,
    /// `kafka_to_kafka_exactly_once`, `kafka_to_stream` or `kafka_to_stream_exactly_once`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::KafkaToRabbitmq => "kafka_to_rabbitmq",
            Direction::RabbitmqToKafka => "rabbitmq_to_kafka",
            Direction::KafkaToKafka => "kafka_to_kafka",
            Direction::KafkaToKafkaExactlyOnce => "kafka_to_kafka_exactly_once",
            Direction::KafkaToStream => "kafka_to_stream",
            Direction::KafkaToStreamExactlyOnce => "kafka_to_stream_exactly_once",
        }
    }

    /// Whether the target is a RabbitMQ stream.
    pub fn to_stream(self) -> bool {
        matches!(
            self,
            Direction::KafkaToStream | Direction::KafkaToStreamExactlyOnce
        )
    }
}

/// A source and a target of one direction, fresh for each run.
pub struct Lane {
    /// The Kafka source topic.
    pub topic: String,
    /// The RabbitMQ queue: the source, or bound to [`Lane::exchange`] with `eu.bench`.
    pub queue: String,
    /// The Kafka target topic.
    pub out_topic: String,
    /// The RabbitMQ target exchange.
    pub exchange: String,
    /// The RabbitMQ target stream.
    pub stream: String,
}

impl Lane {
    /// Creates the topics (of [`PARTITIONS`] partitions), the exchange and the queue.
    pub async fn new(conn: &Connection) -> Self {
        let lane = Lane {
            topic: unique("bench-in"),
            queue: unique("bench-q"),
            out_topic: unique("bench-out"),
            exchange: unique("bench-ex"),
            stream: unique("bench-stream"),
        };
        brokers::create_topic(&lane.topic, PARTITIONS).await;
        brokers::declare_stream(conn, &lane.stream).await;
        brokers::create_topic(&lane.out_topic, PARTITIONS).await;
        brokers::declare_bound_queue(conn, &lane.exchange, &lane.queue, "eu.bench").await;
        lane
    }

    /// The bridge (the `bridge-host` executable `bridge`) or, with `None`, the relay moving this
    /// lane's messages in `dir`.
    pub async fn start(&self, dir: Direction, bridge: Option<&Path>) -> Mover {
        if let Some(bin) = bridge {
            let mapping = match dir {
                Direction::KafkaToRabbitmq => format!(
                    "source = {{ kafka = \"main\", topics = [\"{}\"], group = \"{}\" }}\ntarget = {{ rabbitmq = \"local\", exchange = \"{}\" }}\n",
                    self.topic,
                    unique("bench"),
                    self.exchange
                ),
                Direction::RabbitmqToKafka => format!(
                    "source = {{ rabbitmq = \"local\", queue = \"{}\", prefetch = 1000 }}\ntarget = {{ kafka = \"main\", topic = \"{}\" }}\n",
                    self.queue, self.out_topic
                ),
                Direction::KafkaToKafka | Direction::KafkaToKafkaExactlyOnce => format!(
                    "source = {{ kafka = \"main\", topics = [\"{}\"], group = \"{}\" }}\ntarget = {{ kafka = \"main\", topic = \"{}\" }}\n{}",
                    self.topic,
                    unique("bench"),
                    self.out_topic,
                    if dir == Direction::KafkaToKafkaExactlyOnce {
                        "delivery = \"exactly-once\"\n"
                    } else {
                        ""
                    }
                ),
                Direction::KafkaToStream | Direction::KafkaToStreamExactlyOnce => format!(
                    "source = {{ kafka = \"main\", topics = [\"{}\"], group = \"{}\" }}\ntarget = {{ rabbitmq = \"local\", stream = \"{}\" }}\n{}",
                    self.topic,
                    unique("bench"),
                    self.stream,
                    if dir == Direction::KafkaToStreamExactlyOnce {
                        "delivery = \"exactly-once\"\n"
                    } else {
                        ""
                    }
                ),
            };
            return Mover::Bridge(BridgeProcess::start_binary(
                bin.to_path_buf(),
                &chain_config(&mapping),
            ));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (bootstrap, s) = (brokers::kafka_bootstrap(), Arc::clone(&stop));
        let task = match dir {
            Direction::KafkaToRabbitmq => tokio::spawn(relay::kafka_to_rabbitmq(
                bootstrap,
                self.topic.clone(),
                "earliest",
                brokers::amqp().await,
                self.exchange.clone(),
                "eu.bench".to_string(),
                s,
            )),
            Direction::RabbitmqToKafka => tokio::spawn(relay::rabbitmq_to_kafka(
                brokers::amqp().await,
                self.queue.clone(),
                bootstrap,
                self.out_topic.clone(),
                s,
            )),
            Direction::KafkaToKafka | Direction::KafkaToKafkaExactlyOnce => tokio::spawn(
                relay::kafka_to_kafka(bootstrap, self.topic.clone(), self.out_topic.clone(), s),
            ),
            Direction::KafkaToStream | Direction::KafkaToStreamExactlyOnce => tokio::spawn(
                relay::kafka_to_stream(bootstrap, self.topic.clone(), self.stream.clone(), s),
            ),
        };
        Mover::Relay(stop, task)
    }
}

/// Throughput of the bridge or the relay in `dir` over `n` messages waiting in the source, on
/// a fresh [`Lane`].
pub async fn throughput(conn: &Connection, dir: Direction, n: usize, bridge: Option<&Path>) -> Run {
    let lane = Lane::new(conn).await;
    // Fill the source, then count what reaches the target: a queue consumer or Kafka's
    // watermarks.
    if dir == Direction::RabbitmqToKafka {
        amqp_publish(conn, &lane.queue, n, None).await;
    } else {
        kafka_produce(&lane.topic, n, None).await;
    }
    let collector = match dir {
        Direction::KafkaToRabbitmq => Some(brokers::collect_queue(&lane.queue).await),
        _ => None,
    };
    let mover = lane.start(dir, bridge).await;
    let mut run = match &collector {
        Some((arrived, _)) => measure(mover.pid(), n, || arrived.lock().expect("lock").len()).await,
        None if dir.to_stream() => {
            let counter = brokers::StreamCounter::new(&lane.stream).await;
            measure(mover.pid(), n, || counter.count()).await
        }
        None => count_topic(mover.pid(), n, &lane.out_topic).await,
    };
    run.log = mover.stop().await;
    if let Some((_, task)) = collector {
        task.abort();
    }
    run
}

/// What the bridge does per message, counted by callgrind ([`counted_per_message`]).
#[derive(Debug, Clone, Copy)]
pub struct PerMessage {
    /// Instructions executed.
    pub instructions: f64,
    /// Heap allocations: the host's (mimalloc) and librdkafka's (the C library's `malloc`,
    /// `calloc`, `realloc`); a plugin's own, inside its WebAssembly memory, are not counted.
    pub allocations: f64,
}

/// What the bridge `bin` does per message in `dir` (a Kafka source: Kafka → Kafka or Kafka →
/// RabbitMQ), counted by valgrind's callgrind: the bridge runs under it, moves a warm-up
/// batch, then its counts are zeroed, it moves `n` more messages, and the counts are dumped.
/// Start-up, the group join and shutdown are not counted; what is counted is repeatable from
/// run to run, unlike time on a shared machine. `None` when valgrind is missing or failed.
pub async fn counted_per_message(
    conn: &Connection,
    dir: Direction,
    n: usize,
    bin: &Path,
) -> Option<PerMessage> {
    const WARM_UP: usize = 1000;
    let found = |tool: &str| {
        std::process::Command::new(tool)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !found("valgrind") || !found("callgrind_control") {
        eprintln!("valgrind is not installed (scripts/setup.sh installs it)");
        return None;
    }
    let dir_out = tempfile::tempdir().expect("temp dir");
    let out = dir_out.path().join("callgrind.out");
    let wrapper = dir_out.path().join("bridge-host");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file='{}' '{}' \"$@\"\n",
            out.display(),
            bin.display()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("wrapper mode");
    let lane = Lane::new(conn).await;
    let collector = match dir {
        Direction::KafkaToRabbitmq => Some(brokers::collect_queue(&lane.queue).await),
        Direction::KafkaToKafka => None,
        _ => panic!("instructions are counted Kafka → Kafka and Kafka → RabbitMQ"),
    };
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers::kafka_bootstrap())
        .create()
        .expect("client");
    let count = || match &collector {
        Some((arrived, _)) => arrived.lock().expect("lock").len(),
        None => topic_count(&client, &lane.out_topic),
    };
    let mut mover = lane.start(dir, Some(&wrapper)).await;
    let pid = mover.pid().expect("a bridge process");
    // Waits for `want` arrivals while the bridge runs, 10 minutes at most.
    let mut arrive = async |want: usize| {
        let deadline = Instant::now() + Duration::from_secs(600);
        while count() < want && Instant::now() < deadline && mover.running() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        count() >= want
    };
    // A request the bridge never answers must not hold the run: `timeout` ends it.
    let callgrind = |command: &str| {
        std::process::Command::new("timeout")
            .args(["60", "callgrind_control", command, &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    kafka_produce(&lane.topic, WARM_UP, None).await;
    let counted = arrive(WARM_UP).await
        && callgrind("--zero")
        && {
            kafka_produce(&lane.topic, n, None).await;
            arrive(WARM_UP + n).await
        }
        && callgrind("--dump");
    let log = mover.stop().await.unwrap_or_default();
    if let Some((_, task)) = collector {
        task.abort();
    }
    // The dump is the file's first part (`callgrind.out.1`); the whole run's is at exit.
    let dump = out.with_extension("out.1");
    let text = std::fs::read_to_string(&dump).ok();
    // `BENCH_CALLGRIND_OUT=DIR` keeps each dump for `callgrind_annotate`.
    if let Some(keep) = std::env::var_os("BENCH_CALLGRIND_OUT") {
        let kept = Path::new(&keep).join(format!("callgrind.{}.out", dir.name()));
        let _ = std::fs::create_dir_all(&keep);
        let _ = std::fs::copy(&dump, kept);
    }
    let total = text.as_deref().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("summary: ").or(l.strip_prefix("totals: ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    match (counted, total, text) {
        (true, Some(total), Some(text)) => Some(PerMessage {
            instructions: total / n as f64,
            allocations: allocation_calls(&text) as f64 / n as f64,
        }),
        _ => {
            eprintln!("callgrind counted nothing; the bridge's log ends:\n{log}");
            None
        }
    }
}

/// Calls to the allocators' entry points in a callgrind dump. Its names are compressed: a
/// function is named once, as `fn=(ID) NAME` or `cfn=(ID) NAME`, and by `(ID)` after that;
/// each `calls=COUNT …` line counts the calls to the `cfn` before it.
fn allocation_calls(dump: &str) -> u64 {
    const ALLOCATORS: [&str; 6] = [
        "mi_malloc_aligned",
        "mi_zalloc_aligned",
        "mi_realloc_aligned",
        "malloc",
        "calloc",
        "realloc",
    ];
    // The ids named after an allocator, and whether the last `cfn` was one of them.
    let mut allocators = std::collections::HashSet::new();
    let (mut to_allocator, mut calls) = (false, 0);
    for line in dump.lines() {
        let (is_callee, rest) = match (line.strip_prefix("cfn=("), line.strip_prefix("fn=(")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => {
                if let Some(count) = line.strip_prefix("calls=").filter(|_| to_allocator) {
                    calls += count
                        .split_whitespace()
                        .next()
                        .and_then(|c| c.parse::<u64>().ok())
                        .unwrap_or(0);
                }
                continue;
            }
        };
        let (id, name) = rest.split_once(')').unwrap_or((rest, ""));
        if name
            .strip_prefix(' ')
            .is_some_and(|n| ALLOCATORS.contains(&n))
        {
            allocators.insert(id);
        }
        if is_callee {
            to_allocator = allocators.contains(id);
        }
    }
    calls
}

#[cfg(test)]
mod tests {
    #[test]
    fn allocation_calls_follow_the_compressed_names() {
        let dump = "fn=(1) main\ncfn=(2) malloc\ncalls=3 0\n0 9\ncfn=(3) work\ncalls=1 0\n0 5\n\nfn=(3)\ncfn=(2)\ncalls=4 0\n0 2\ncfn=(4) mi_malloc_aligned\ncalls=10 0\n0 1\n";
        assert_eq!(super::allocation_calls(dump), 17);
    }
}
