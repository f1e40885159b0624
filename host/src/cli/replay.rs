//! `bridge-host replay`: sends dead letters back once their cause is fixed. It reads a
//! dead-letter topic or queue, picks the dead letters its filters select, and sends each to its
//! mapping's target, back into its source, or to a target given on the command line. Like the
//! bridge, at least once: a dead letter leaves its topic (the replay group's position moves past
//! it) or its queue (it is acknowledged) only after its target confirmed it; one that could not
//! be sent stays where it was.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tokio::time::Instant;

use crate::amqp::dead_letters::{DeadLetterQueue, DeliveryAt};
use crate::amqp::{add_property_headers, carries_properties};
use crate::config::{
    AmqpTarget, BridgeConfig, DEFAULT_TENANT, KafkaTarget, Source, Target, TargetAllowlist,
};
use crate::connector::{Pending, Sink};
use crate::kafka::dead_letters::{DeadLetterTopic, RecordAt};
use crate::pipeline::{
    DEAD_LETTER_CONTEXT, add_provenance, hops, origin_from_coordinates, set_hops,
};
use crate::plugin::{Message, Origin};
use crate::supervisor::{Clients, open_target};

/// Sends awaiting their target's confirmation at a time.
const WINDOW: usize = 256;
/// How often a long replay prints its progress (and commits a topic's position).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long a dead-letter topic may send nothing before its end.
const TOPIC_IDLE: Duration = Duration::from_secs(30);
/// How long a dead-letter queue may send nothing before the replay takes it as read.
const QUEUE_IDLE: Duration = Duration::from_secs(3);
/// The failures the summary lists one by one.
const LISTED_FAILURES: usize = 20;

/// `bridge-host replay` arguments.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The bridge configuration: its brokers, credentials and mappings.
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    /// The dead letters: `kafka:CLUSTER/TOPIC` or `rabbitmq:CONNECTION/QUEUE`.
    #[arg(long)]
    pub from: String,
    /// Where to send them: `source` (back into the source each was consumed from, so its
    /// mapping runs it again, plugins included), `kafka:CLUSTER/TOPIC` or
    /// `rabbitmq:CONNECTION/EXCHANGE[/ROUTING_KEY]`. Default: each one's mapping's target.
    #[arg(long)]
    pub to: Option<String>,
    /// Only dead letters of this mapping (repeatable).
    #[arg(long)]
    pub mapping: Vec<String>,
    /// Only dead letters whose reason or failure kind starts with this (repeatable).
    #[arg(long)]
    pub reason: Vec<String>,
    /// Only dead letters made at or after this time (RFC 3339, or milliseconds since 1970).
    #[arg(long)]
    pub since: Option<String>,
    /// Only dead letters made before this time (RFC 3339, or milliseconds since 1970).
    #[arg(long)]
    pub until: Option<String>,
    /// Replay at most this many; the rest stay for another run.
    #[arg(long)]
    pub count: Option<u64>,
    /// List what would be sent where; send, acknowledge and commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep the `x-bridge-*` context headers on the replayed messages.
    #[arg(long)]
    pub keep_context: bool,
    /// The consumer group whose position in a dead-letter topic a replay starts from and
    /// moves; use one per filter.
    #[arg(long, default_value = "bridge-replay")]
    pub group: String,
    /// Read a dead-letter topic from its beginning instead of the group's position.
    #[arg(long)]
    pub from_beginning: bool,
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Dead letters read.
    pub read: u64,
    /// Sent and confirmed (or, in a dry run, selected).
    pub replayed: u64,
    /// Left where they were: not selected by the filters.
    pub passed_over: u64,
    /// Selected but not sent or not confirmed: left where they were.
    pub failed: u64,
    /// The first failures, one line each.
    pub failures: Vec<String>,
    /// Mappings whose plugins did not run on what was sent to their target.
    pub plugins_skipped: Vec<String>,
    /// Whether nothing was sent.
    pub dry_run: bool,
}

impl Summary {
    /// The closing report.
    pub fn report(&self, from: &str) -> String {
        let mut out = String::new();
        let verb = if self.dry_run {
            "would replay"
        } else {
            "replayed"
        };
        let _ = writeln!(
            out,
            "read {} dead letters from {from}: {verb} {}, failed {}, passed over {} (not selected)",
            self.read, self.replayed, self.failed, self.passed_over
        );
        for f in &self.failures {
            let _ = writeln!(out, "  failed: {f}");
        }
        if self.failed as usize > self.failures.len() {
            let _ = writeln!(
                out,
                "  … and {} more",
                self.failed as usize - self.failures.len()
            );
        }
        for m in &self.plugins_skipped {
            let _ = writeln!(
                out,
                "note: mapping `{m}` has plugins: its dead letters go to its target as they were \
                 consumed, without them (`--to source` runs them again)"
            );
        }
        out
    }

    fn fail(&mut self, what: String) {
        self.failed += 1;
        if self.failures.len() < LISTED_FAILURES {
            self.failures.push(what);
        }
    }
}

/// A dead letter's `x-bridge-*` context.
struct Context {
    mapping: Option<String>,
    reason: String,
    kind: String,
    time_ms: Option<u64>,
    source: Option<String>,
}

impl Context {
    fn of(msg: &Message) -> Self {
        let text = |name: &str| {
            msg.header(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        Context {
            mapping: text("x-bridge-mapping"),
            reason: text("x-bridge-reason").unwrap_or_default(),
            kind: text("x-bridge-failure-kind").unwrap_or_default(),
            time_ms: text("x-bridge-time").and_then(|t| t.trim().parse().ok()),
            source: text("x-bridge-source"),
        }
    }

    fn describe(&self) -> String {
        format!(
            "mapping `{}`, reason `{}`",
            self.mapping.as_deref().unwrap_or("?"),
            self.reason
        )
    }
}

/// What selects a dead letter.
struct Filters {
    mappings: Vec<String>,
    reasons: Vec<String>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
}

impl Filters {
    fn from_args(args: &ReplayArgs) -> anyhow::Result<Self> {
        Ok(Filters {
            mappings: args.mapping.clone(),
            reasons: args.reason.clone(),
            since_ms: args
                .since
                .as_deref()
                .map(|t| parse_time("--since", t))
                .transpose()?,
            until_ms: args
                .until
                .as_deref()
                .map(|t| parse_time("--until", t))
                .transpose()?,
        })
    }

    fn select(&self, c: &Context) -> bool {
        let mapping = self.mappings.is_empty()
            || c.mapping
                .as_ref()
                .is_some_and(|m| self.mappings.contains(m));
        let reason = self.reasons.is_empty()
            || self
                .reasons
                .iter()
                .any(|r| c.reason.starts_with(r.as_str()) || c.kind.starts_with(r.as_str()));
        let timed = self.since_ms.is_some() || self.until_ms.is_some();
        let time = !timed
            || c.time_ms.is_some_and(|t| {
                self.since_ms.is_none_or(|s| t >= s) && self.until_ms.is_none_or(|u| t < u)
            });
        mapping && reason && time
    }
}

/// A time given on the command line, in milliseconds since 1970.
fn parse_time(flag: &str, text: &str) -> anyhow::Result<u64> {
    if let Ok(ms) = text.trim().parse::<u64>() {
        return Ok(ms);
    }
    let t = time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            anyhow!("{flag} `{text}` is neither an RFC 3339 time (2026-12-07T10:00:00Z) nor milliseconds: {e}")
        })?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| anyhow!("{flag} `{text}` is before 1970"))
}

/// Where `--to` sends.
enum Destination {
    /// Each dead letter's mapping's target.
    Mapping,
    /// Back into each dead letter's source.
    Source,
    /// One target for all.
    Fixed(Target),
}

/// `kafka:CLUSTER/REST` or `rabbitmq:CONNECTION/REST`: (is Kafka, name, rest).
fn split_address<'a>(flag: &str, text: &'a str) -> anyhow::Result<(bool, &'a str, &'a str)> {
    let (kafka, rest) = if let Some(rest) = text.strip_prefix("kafka:") {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix("rabbitmq:") {
        (false, rest)
    } else {
        bail!("{flag} `{text}` must start with `kafka:` or `rabbitmq:`");
    };
    match rest.split_once('/') {
        Some((name, rest)) if !name.is_empty() && !rest.is_empty() => Ok((kafka, name, rest)),
        _ => bail!(
            "{flag} `{text}` must be `kafka:CLUSTER/TOPIC` or `rabbitmq:CONNECTION/{}`",
            if flag == "--from" {
                "QUEUE"
            } else {
                "EXCHANGE[/ROUTING_KEY]"
            }
        ),
    }
}

fn parse_destination(config: &BridgeConfig, to: Option<&str>) -> anyhow::Result<Destination> {
    let Some(to) = to else {
        return Ok(Destination::Mapping);
    };
    if to == "source" {
        return Ok(Destination::Source);
    }
    let (kafka, name, rest) = split_address("--to", to)?;
    Ok(Destination::Fixed(if kafka {
        known_cluster(config, "--to", name)?;
        Target::Kafka(KafkaTarget {
            cluster: name.to_string(),
            topic: Some(rest.to_string()),
            same_partition: false,
        })
    } else {
        known_connection(config, "--to", name)?;
        let (exchange, routing_key) = match rest.split_once('/') {
            Some((e, k)) => (e, Some(k.to_string())),
            None => (rest, None),
        };
        Target::Amqp(AmqpTarget {
            connection: name.to_string(),
            exchange: exchange.to_string(),
            routing_key,
            persistent: true,
        })
    }))
}

fn known_cluster(config: &BridgeConfig, flag: &str, name: &str) -> anyhow::Result<()> {
    if config.kafka.contains_key(name) {
        return Ok(());
    }
    bail!("{flag}: the configuration has no `[kafka.{name}]`")
}

fn known_connection(config: &BridgeConfig, flag: &str, name: &str) -> anyhow::Result<()> {
    if config.rabbitmq.contains_key(name) {
        return Ok(());
    }
    bail!("{flag}: the configuration has no `[rabbitmq.{name}]`")
}

/// The dead-letter topic or queue being read.
enum Reader {
    Kafka(DeadLetterTopic),
    Amqp(Box<DeadLetterQueue>),
}

/// Where a dead letter was read.
#[derive(Clone, Copy)]
enum At {
    Kafka(RecordAt),
    Amqp(DeliveryAt),
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Kafka(r) => r.fmt(f),
            At::Amqp(d) => d.fmt(f),
        }
    }
}

impl Reader {
    async fn open(config: &BridgeConfig, args: &ReplayArgs) -> anyhow::Result<Self> {
        let (kafka, name, rest) = split_address("--from", &args.from)?;
        if kafka {
            known_cluster(config, "--from", name)?;
            let topic = DeadLetterTopic::open(
                name,
                &config.kafka[name],
                rest,
                &args.group,
                args.from_beginning,
            );
            Ok(Reader::Kafka(topic.await?))
        } else {
            known_connection(config, "--from", name)?;
            let queue = DeadLetterQueue::open(name, &config.rabbitmq[name], rest);
            Ok(Reader::Amqp(Box::new(queue.await?)))
        }
    }

    async fn next(&mut self) -> anyhow::Result<Option<(Message, At)>> {
        Ok(match self {
            Reader::Kafka(t) => t.next(TOPIC_IDLE).await?.map(|(m, at)| (m, At::Kafka(at))),
            Reader::Amqp(q) => q.next(QUEUE_IDLE).await?.map(|(m, at)| (m, At::Amqp(at))),
        })
    }

    /// A dead letter's outcome, in the order read: `replayed` (its target confirmed it) or
    /// `passed` over (not selected); anything else is kept.
    async fn settle(&mut self, at: At, replayed: bool, passed: bool) -> anyhow::Result<()> {
        match (self, at) {
            (Reader::Kafka(t), At::Kafka(at)) => t.settle(at, replayed || passed),
            (Reader::Amqp(q), At::Amqp(at)) if replayed => q.ack(at).await?,
            _ => {}
        }
        Ok(())
    }

    async fn checkpoint(&self) -> anyhow::Result<()> {
        if let Reader::Kafka(t) = self {
            t.commit().await?;
        }
        Ok(())
    }

    async fn close(self) {
        if let Reader::Amqp(q) = self {
            q.close().await;
        }
    }
}

/// A dead letter on its way to its target.
struct Flight {
    at: At,
    what: String,
    answer: Pending,
}

/// The replay's sinks, one per tenant and target.
struct Targets<'a> {
    config: &'a BridgeConfig,
    clients: Clients,
    open: HashMap<String, Arc<dyn Sink>>,
}

impl Targets<'_> {
    async fn sink(&mut self, how: &SendTo) -> anyhow::Result<Arc<dyn Sink>> {
        let key = format!("{}\u{0}{:?}", how.tenant, how.target);
        if let Some(sink) = self.open.get(&key) {
            return Ok(Arc::clone(sink));
        }
        let sink = open_target(
            self.config,
            &self.clients,
            &how.tenant,
            how.allowlist.clone(),
            how.amqp_properties,
            &how.target,
        )
        .await
        .with_context(|| format!("cannot open {}", describe(&how.target)))?;
        self.open.insert(key, Arc::clone(&sink));
        Ok(sink)
    }

    async fn close(&self) {
        for sink in self.open.values() {
            sink.flush(Duration::from_secs(10));
            sink.close(Duration::from_secs(5)).await;
        }
    }
}

/// Where and how one dead letter is sent.
struct SendTo {
    target: Target,
    tenant: String,
    allowlist: TargetAllowlist,
    amqp_properties: bool,
}

/// A target for people: `kafka:main/orders` or `rabbitmq:local/events (routing key k)`.
fn describe(target: &Target) -> String {
    match target {
        Target::Kafka(k) => format!(
            "kafka:{}/{}",
            k.cluster,
            k.topic.as_deref().unwrap_or("(source topic)")
        ),
        Target::Amqp(a) => {
            let exchange = match a.exchange.as_str() {
                "" => "(default exchange)",
                e => e,
            };
            match &a.routing_key {
                Some(key) => format!("rabbitmq:{}/{exchange} (routing key `{key}`)", a.connection),
                None => format!("rabbitmq:{}/{exchange}", a.connection),
            }
        }
        Target::Stream(s) => format!("rabbitmq:{}/stream:{}", s.connection, s.stream),
    }
}

/// The message to send for a dead letter, and where: its origin restored from
/// `x-bridge-source`, its context removed (unless kept), and for its mapping's target the
/// headers the mapping adds (provenance, the hop count).
fn prepare(
    config: &BridgeConfig,
    destination: &Destination,
    keep_context: bool,
    mut msg: Message,
    context: &Context,
    summary: &mut Summary,
) -> Result<(Message, SendTo), String> {
    let origin = context.source.as_deref().and_then(origin_from_coordinates);
    if let Some(origin) = origin.clone() {
        msg.origin = origin;
    }
    if !keep_context {
        msg.headers
            .retain(|(n, _)| !DEAD_LETTER_CONTEXT.contains(&n.as_str()));
    }
    let anyone = |target: Target| SendTo {
        target,
        tenant: DEFAULT_TENANT.to_string(),
        allowlist: TargetAllowlist::default(),
        amqp_properties: true,
    };
    match destination {
        Destination::Fixed(target) => Ok((msg, anyone(target.clone()))),
        Destination::Source => {
            let target = match origin {
                Some(Origin::Kafka(k)) => Target::Kafka(KafkaTarget {
                    cluster: k.cluster,
                    topic: Some(k.topic),
                    same_partition: true,
                }),
                Some(Origin::Amqp(a)) => Target::Amqp(AmqpTarget {
                    connection: a.connection,
                    exchange: String::new(),
                    routing_key: Some(a.queue),
                    persistent: true,
                }),
                _ => return Err("no `x-bridge-source` to send it back to".to_string()),
            };
            Ok((msg, anyone(target)))
        }
        Destination::Mapping => {
            let name = context
                .mapping
                .as_deref()
                .ok_or("no `x-bridge-mapping` (give `--to`)")?;
            let mapping = config
                .mapping
                .iter()
                .find(|m| m.name == name)
                .ok_or_else(|| {
                    format!("mapping `{name}` is not in the configuration (give `--to`)")
                })?;
            if origin.is_none() && !matches!(msg.origin, Origin::None) {
                return Err("no `x-bridge-source` to restore its origin from".to_string());
            }
            if !mapping.plugins.is_empty() && !summary.plugins_skipped.contains(&mapping.name) {
                summary.plugins_skipped.push(mapping.name.clone());
            }
            // What the mapping's source and chain add to every message.
            if matches!(mapping.source, Source::Amqp(_))
                && mapping.amqp_properties
                && !carries_properties(&msg.headers)
            {
                let seconds = msg.timestamp.map(|ms| (ms / 1000) as u64);
                add_property_headers(&mut msg, seconds);
            }
            if mapping.provenance_headers {
                add_provenance(&mut msg);
            }
            let next = hops(&msg) + 1;
            set_hops(&mut msg, next);
            let tenant = mapping.tenant();
            Ok((
                msg,
                SendTo {
                    target: mapping.target.clone(),
                    tenant: tenant.to_string(),
                    allowlist: config.target_allowlist(tenant),
                    amqp_properties: mapping.amqp_properties,
                },
            ))
        }
    }
}

/// Runs a replay; the summary says what it did (the caller fails when any failed).
pub async fn run(args: &ReplayArgs) -> anyhow::Result<Summary> {
    let config = BridgeConfig::load(&args.config)?;
    let destination = parse_destination(&config, args.to.as_deref())?;
    let filters = Filters::from_args(args)?;
    let mut reader = Reader::open(&config, args).await?;
    let mut targets = Targets {
        config: &config,
        clients: Clients::default(),
        open: HashMap::new(),
    };
    let mut summary = Summary {
        dry_run: args.dry_run,
        ..Summary::default()
    };
    let result = replay(
        args,
        &config,
        &destination,
        &filters,
        &mut reader,
        &mut targets,
        &mut summary,
    )
    .await;
    targets.close().await;
    let committed = if args.dry_run {
        Ok(())
    } else {
        reader.checkpoint().await
    };
    reader.close().await;
    result.and(committed)?;
    Ok(summary)
}

async fn replay(
    args: &ReplayArgs,
    config: &BridgeConfig,
    destination: &Destination,
    filters: &Filters,
    reader: &mut Reader,
    targets: &mut Targets<'_>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let mut flights: VecDeque<Flight> = VecDeque::new();
    let mut progress_at = Instant::now() + PROGRESS_EVERY;
    let mut selected = 0u64;
    while args.count.is_none_or(|n| selected < n) {
        let Some((msg, at)) = reader.next().await? else {
            break;
        };
        summary.read += 1;
        let context = Context::of(&msg);
        if !filters.select(&context) {
            summary.passed_over += 1;
            if !args.dry_run {
                // In order: a topic's position moves past it only behind everything before.
                settle_all(reader, &mut flights, summary).await?;
                reader.settle(at, false, true).await?;
            }
            continue;
        }
        selected += 1;
        let what = format!("{} at {at} ({})", args.from, context.describe());
        let prepared = prepare(
            config,
            destination,
            args.keep_context,
            msg,
            &context,
            summary,
        );
        let (msg, how) = match prepared {
            Ok(p) => p,
            Err(why) => {
                summary.fail(format!("{what}: {why}"));
                if !args.dry_run {
                    settle_all(reader, &mut flights, summary).await?;
                    reader.settle(at, false, false).await?;
                }
                continue;
            }
        };
        if args.dry_run {
            println!("would replay {what} to {}", describe(&how.target));
            summary.replayed += 1;
            continue;
        }
        let answer = match targets.sink(&how).await {
            Ok(sink) => sink.send(&msg).await.map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match answer {
            Ok(answer) => flights.push_back(Flight { at, what, answer }),
            Err(e) => {
                settle_all(reader, &mut flights, summary).await?;
                summary.fail(format!("{what}: {e:#}"));
                reader.settle(at, false, false).await?;
            }
        }
        if flights.len() >= WINDOW {
            settle_one(reader, &mut flights, summary).await?;
        }
        if Instant::now() >= progress_at {
            progress_at = Instant::now() + PROGRESS_EVERY;
            eprintln!(
                "replay: read {}, replayed {}, failed {}, passed over {}",
                summary.read, summary.replayed, summary.failed, summary.passed_over
            );
            settle_all(reader, &mut flights, summary).await?;
            reader.checkpoint().await?;
        }
    }
    settle_all(reader, &mut flights, summary).await
}

/// Waits for the oldest send's answer and settles its dead letter.
async fn settle_one(
    reader: &mut Reader,
    flights: &mut VecDeque<Flight>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let Some(flight) = flights.pop_front() else {
        return Ok(());
    };
    let confirmed = match flight.answer.await {
        Ok(()) => {
            summary.replayed += 1;
            true
        }
        Err(rejected) => {
            summary.fail(format!("{}: {rejected}", flight.what));
            false
        }
    };
    reader.settle(flight.at, confirmed, false).await
}

async fn settle_all(
    reader: &mut Reader,
    flights: &mut VecDeque<Flight>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    while !flights.is_empty() {
        settle_one(reader, flights, summary).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(mapping: &str, reason: &str, kind: &str, time_ms: u64) -> Context {
        Context {
            mapping: Some(mapping.into()),
            reason: reason.into(),
            kind: kind.into(),
            time_ms: Some(time_ms),
            source: None,
        }
    }

    #[test]
    fn filters_select_by_mapping_reason_and_time() {
        let f = Filters {
            mappings: vec!["orders".into()],
            reasons: vec!["target".into()],
            since_ms: Some(1_000),
            until_ms: Some(2_000),
        };
        assert!(f.select(&context("orders", "target-rejected", "x", 1_000)));
        assert!(f.select(&context("orders", "policy", "target-rejected", 1_999)));
        assert!(!f.select(&context("other", "target-rejected", "x", 1_500)));
        assert!(!f.select(&context("orders", "plugin-trap", "plugin-trap", 1_500)));
        assert!(!f.select(&context("orders", "target-rejected", "x", 2_000)));
        assert!(!f.select(&context("orders", "target-rejected", "x", 999)));
        let all = Filters {
            mappings: vec![],
            reasons: vec![],
            since_ms: None,
            until_ms: None,
        };
        assert!(all.select(&Context {
            mapping: None,
            reason: String::new(),
            kind: String::new(),
            time_ms: None,
            source: None,
        }));
    }

    #[test]
    fn times_are_rfc3339_or_milliseconds() {
        assert_eq!(
            parse_time("--since", "1700000000000").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("--since", "2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        let e = parse_time("--until", "yesterday").unwrap_err().to_string();
        assert!(e.starts_with("--until `yesterday` is neither"), "{e}");
    }

    #[test]
    fn addresses_name_the_flag_when_wrong() {
        let e = split_address("--from", "kafka:main")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--from `kafka:main` must be `kafka:CLUSTER/TOPIC` or `rabbitmq:CONNECTION/QUEUE`"
        );
        let e = split_address("--to", "s3:bucket/x")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--to `s3:bucket/x` must start with `kafka:` or `rabbitmq:`"
        );
        assert_eq!(
            split_address("--from", "rabbitmq:local/a/b").unwrap(),
            (false, "local", "a/b")
        );
    }
}
