//! One consumer-group member shared by a tenant's Kafka-sourced mappings that consume with the
//! same cluster, group and offset-reset rule: one librdkafka consumer (and its threads) for
//! all of them instead of one each, and one member in the group instead of one per mapping.
//!
//! The consumer subscribes to the union of the mappings' topics. A poller task takes every
//! fetched message and hands it to the mapping whose topics claim it, on that mapping's own
//! queue; what the group revokes is handed over on the same queue, in order with the messages.
//! Each mapping still settles, stores and commits its own offsets and pauses its own
//! partitions, so sharing changes no guarantee:
//!
//! - **Backpressure stays per mapping.** When a mapping's queue holds `cap` messages, the
//!   partition of every further message for it is paused (librdkafka drops what it prefetched
//!   for that partition and fetches it again on resume); it resumes once the mapping has taken
//!   half of the queue. Other mappings' partitions keep flowing.
//! - **Nothing is skipped when a mapping stops.** A partition's fetch position runs ahead of
//!   what its mapping settled; when the mapping leaves (removed, restarting, stopping) its
//!   partitions are paused and sought back to the first message it had not settled, and
//!   messages fetched for a topic no mapping claims are held (their partition paused) until
//!   one does. The group revoking a partition ends all of that: its next owner starts from the
//!   last commit.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::ClusterContext;
use super::committer::{Committer, commit_stored};
use crate::config::{KafkaCluster, KafkaSource};
use crate::connector::{SourceError, SourceEvents};
use crate::plugin::Message;

/// Consumer settings the cluster's `properties` may override.
pub(super) const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("auto.commit.interval.ms", "1000"),
    ("fetch.wait.max.ms", "10"),
    ("fetch.queue.backoff.ms", "10"),
    ("session.timeout.ms", "10000"),
    ("heartbeat.interval.ms", "1000"),
    // A fetch on a connection that went silent fails after 10 s (librdkafka: 60 s) and the
    // consumer reconnects.
    ("socket.timeout.ms", "10000"),
    ("partition.assignment.strategy", "cooperative-sticky"),
    // Statistics (consumer lag for `/metrics` and `/status`) every 5 s.
    ("statistics.interval.ms", "5000"),
    // Prefetch at most 16 MiB per consumer (librdkafka's default is 64 MiB): plenty to keep
    // the pipelines busy, and it bounds the bridge's memory.
    ("queued.max.messages.kbytes", "16384"),
];

/// A topic and partition.
pub type Partition = (String, i32);

/// A message fetched for a mapping, with where it sits.
#[derive(Debug)]
pub struct Fetched {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The message, converted.
    pub message: Message,
    /// Its bytes (key, payload, headers), counted once against its mapping's queue.
    weight: usize,
    /// Its number among the messages the poller took (see `Table::rewound`).
    taken: u64,
}

/// What a mapping receives from its group consumer, in order.
#[derive(Debug)]
pub enum Delivery {
    /// A fetched message.
    Message(Box<Fetched>),
    /// The group took these partitions away: what is in flight for them is abandoned.
    Revoked(Vec<Partition>),
}

/// The settings that decide whether two mappings can share a consumer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKey {
    /// The tenant: tenants never share a consumer.
    pub tenant: String,
    /// `[kafka.NAME]`.
    pub cluster: String,
    /// The consumer group.
    pub group: String,
    /// `auto_offset_reset`.
    pub reset: String,
}

impl GroupKey {
    /// The key of a mapping's Kafka source.
    pub fn of(tenant: &str, source: &KafkaSource) -> Self {
        GroupKey {
            tenant: tenant.to_string(),
            cluster: source.cluster.clone(),
            group: source.group.clone(),
            reset: source.auto_offset_reset.clone(),
        }
    }
}

/// The topics a mapping consumes: names, and patterns (`^…`).
#[derive(Debug)]
struct Claim {
    topics: Vec<String>,
    patterns: Vec<regex::Regex>,
}

impl Claim {
    fn new(topics: &[String]) -> Result<Self, regex::Error> {
        let mut claim = Claim {
            topics: Vec::new(),
            patterns: Vec::new(),
        };
        for topic in topics {
            if topic.starts_with('^') {
                claim.patterns.push(regex::Regex::new(topic)?);
            } else {
                claim.topics.push(topic.clone());
            }
        }
        Ok(claim)
    }

    fn claims(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == topic) || self.patterns.iter().any(|p| p.is_match(topic))
    }

    fn subscription(&self) -> impl Iterator<Item = &str> {
        self.topics
            .iter()
            .map(String::as_str)
            .chain(self.patterns.iter().map(regex::Regex::as_str))
    }
}

/// What a mapping's queue holds, shared by the poller (adding) and the mapping (taking): past
/// its limits the mapping's partitions pause, and they resume once it is half empty.
#[derive(Debug)]
struct Backlog {
    messages: AtomicUsize,
    bytes: AtomicUsize,
    max_messages: usize,
    max_bytes: usize,
    /// Whether partitions are paused (or the poller waits) because of it, read without the
    /// table's lock.
    holding: AtomicBool,
    /// Woken once the queue is half empty again.
    room: tokio::sync::Notify,
}

impl Backlog {
    /// Counts a message in; whether the queue is now full.
    fn add(&self, bytes: usize) -> bool {
        let messages = self.messages.fetch_add(1, Ordering::Relaxed) + 1;
        let bytes = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        messages >= self.max_messages || bytes >= self.max_bytes
    }

    fn take(&self, bytes: usize) {
        self.messages.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    fn half_empty(&self) -> bool {
        self.messages.load(Ordering::Relaxed) <= self.max_messages / 2
            && self.bytes.load(Ordering::Relaxed) <= self.max_bytes / 2
    }

    async fn wait_half_empty(&self) {
        loop {
            let room = self.room.notified();
            if self.half_empty() {
                return;
            }
            room.await;
        }
    }
}

/// How long the poller waits for a mapping that is alone on its consumer to take from its
/// full queue before it pauses the partition after all (so that it keeps serving the group's
/// rebalances while a mapping is stuck).
const WAIT_FOR_ROOM: Duration = Duration::from_millis(500);

/// The most bytes of messages a mapping's queue holds before its partitions pause (as
/// `queued.max.messages.kbytes` bounds a consumer's prefetch).
const MAX_QUEUED_BYTES: usize = 16 << 20;

/// A mapping's place in the consumer.
struct Route {
    id: u64,
    mapping: String,
    claim: Claim,
    sender: mpsc::UnboundedSender<Delivery>,
    backlog: Arc<Backlog>,
    events: Arc<dyn SourceEvents>,
    /// Paused because the mapping's queue was full, with the offset the partition's fetching
    /// resumes at (the one after the last message the poller took).
    held: HashMap<Partition, i64>,
    /// Paused because one of its messages waits on a retry.
    retrying: HashSet<Partition>,
}

/// Who gets what: the mappings, the partitions assigned, and what waits for a mapping.
#[derive(Default)]
struct Table {
    routes: Vec<Route>,
    next_id: u64,
    subscription: Vec<String>,
    assigned: HashSet<Partition>,
    /// Paused partitions of topics no mapping claims, with the messages fetched for them.
    orphans: HashMap<Partition, Vec<Fetched>>,
    /// Partitions sought back when a mapping left, with how many messages the poller had
    /// taken then. The seek drops what librdkafka prefetched before it, but a message taken
    /// before the seek may still be on its way to `route`: it is dropped (it is fetched
    /// again), so nothing arrives out of order. One taken after the seek ends the watch.
    rewound: HashMap<Partition, u64>,
    /// Messages taken from librdkafka by the poller, counted as each is returned.
    taken: Arc<AtomicU64>,
    /// Partitions a leaving mapping could not seek back, with the offset to seek them to
    /// before a mapping claims them (until then they stay paused).
    unsought: HashMap<Partition, i64>,
}

impl Table {
    fn route(&mut self, topic: &str) -> Option<&mut Route> {
        self.routes.iter_mut().find(|r| r.claim.claims(topic))
    }

    /// Whether `fetched` was taken before its partition was sought back (see `rewound`).
    fn is_stale(&mut self, fetched: &Fetched) -> bool {
        // Looked up without a key of its own: a rewind may wait long for its partition's
        // next message, and this runs for every message meanwhile.
        let Some(((topic, partition), &sought)) = self
            .rewound
            .iter()
            .find(|((t, p), _)| *p == fetched.partition && *t == fetched.topic)
        else {
            return false;
        };
        if fetched.taken <= sought {
            return true;
        }
        let part = (topic.clone(), *partition);
        self.rewound.remove(&part);
        false
    }

    fn wanted_subscription(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .routes
            .iter()
            .flat_map(|r| r.claim.subscription().map(str::to_string))
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

fn list<'a>(parts: impl IntoIterator<Item = &'a Partition>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in parts {
        tpl.add_partition(topic, *partition);
    }
    tpl
}

/// Pauses or resumes partitions; a failure (the partition was just revoked) changes nothing
/// that matters, as the next owner starts from the commit.
fn pause<C: Consumer<X>, X: ConsumerContext>(consumer: &C, parts: &[&Partition], pause: bool) {
    if parts.is_empty() {
        return;
    }
    let tpl = list(parts.iter().copied());
    let result = if pause {
        consumer.pause(&tpl)
    } else {
        consumer.resume(&tpl)
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, pause, "Pause or resume failed.");
    }
}

/// The consumer's context: logs, statistics and rebalances, routed to the mappings.
struct GroupContext {
    cluster: ClusterContext,
    group: String,
    table: Arc<Mutex<Table>>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        self.cluster.log(level, facility, line);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.cluster.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        let table = lock(&self.table);
        for route in &table.routes {
            route
                .events
                .lag(&known_lag(&statistics, |topic| route.claim.claims(topic)));
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let parts = partitions(tpl);
                let mut table = lock(&self.table);
                for part in &parts {
                    table.assigned.remove(part);
                    table.orphans.remove(part);
                    table.rewound.remove(part);
                    table.unsought.remove(part);
                }
                for route in &mut table.routes {
                    let mine: Vec<Partition> = parts
                        .iter()
                        .filter(|(topic, _)| route.claim.claims(topic))
                        .cloned()
                        .collect();
                    if mine.is_empty() {
                        continue;
                    }
                    for part in &mine {
                        route.held.remove(part);
                        route.retrying.remove(part);
                    }
                    route.events.revoked(&mine);
                    // The mapping abandons them in order with the messages before.
                    let _ = route.sender.send(Delivery::Revoked(mine));
                }
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.group, error = %e, "Kafka rebalance failed.");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts = partitions(tpl);
            // A pause outlives an unassignment in librdkafka: a partition that comes back
            // starts unpaused, as its state here starts afresh.
            pause(consumer, &parts.iter().collect::<Vec<_>>(), false);
            let mut table = lock(&self.table);
            table.assigned.extend(parts.iter().cloned());
            for route in &table.routes {
                let mine: Vec<Partition> = parts
                    .iter()
                    .filter(|(topic, _)| route.claim.claims(topic))
                    .cloned()
                    .collect();
                if !mine.is_empty() {
                    route.events.assigned(&mine);
                }
            }
        }
    }
}

/// The consumer lag of the assigned partitions of the topics `claims` takes whose lag
/// librdkafka knows (it reports -1 until it does).
pub(super) fn known_lag(
    statistics: &Statistics,
    claims: impl Fn(&str) -> bool,
) -> Vec<(String, i32, i64)> {
    statistics
        .topics
        .iter()
        .filter(|(topic, _)| claims(topic))
        .flat_map(|(topic, t)| {
            t.partitions
                .values()
                .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
                .map(move |p| (topic.clone(), p.partition, p.consumer_lag))
        })
        .collect()
}

pub(super) fn partitions(tpl: &TopicPartitionList) -> Vec<Partition> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

type Consumer_ = StreamConsumer<GroupContext>;

/// A consumer-group member shared by mappings; see the module documentation.
pub struct GroupConsumer {
    consumer: Arc<Consumer_>,
    table: Arc<Mutex<Table>>,
    poller: tokio::task::JoinHandle<()>,
    committer: Committer,
    key: GroupKey,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

impl GroupConsumer {
    /// A consumer for `key` on `cluster`, polling in a task of its own.
    pub fn start(key: GroupKey, cluster: &KafkaCluster) -> Result<Arc<Self>, KafkaError> {
        let table = Arc::new(Mutex::new(Table::default()));
        let context = GroupContext {
            cluster: ClusterContext::new(&key.cluster),
            group: key.group.clone(),
            table: Arc::clone(&table),
        };
        // Tunables the cluster's `properties` may override; then what the offset watermark
        // relies on, which they may not.
        let consumer: Consumer_ = super::client_config_with(cluster, CONSUMER_DEFAULTS)
            .set("group.id", &key.group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", &key.reset)
            .set("enable.partition.eof", "false")
            .create_with_context(context)?;
        let consumer = Arc::new(consumer);
        let poller = tokio::spawn(poll(Arc::clone(&consumer), Arc::clone(&table), key.clone()));
        let committer = Committer::start(Arc::downgrade(&consumer), key.group.clone());
        Ok(Arc::new(GroupConsumer {
            consumer,
            table,
            poller,
            committer,
            key,
        }))
    }

    /// Whether the consumer failed for good (it is then not shared again): a fatal client
    /// error, or its poller ended (it panicked).
    pub fn failed(&self) -> bool {
        self.consumer.client().fatal_error().is_some() || self.poller.is_finished()
    }

    /// Adds a mapping consuming `topics`; its queue pauses partitions at `max_messages`
    /// messages (or 16 MiB).
    pub fn join(
        self: &Arc<Self>,
        mapping: &str,
        topics: &[String],
        max_messages: usize,
        events: Arc<dyn SourceEvents>,
    ) -> Result<Lease, SourceError> {
        let claim = Claim::new(topics).map_err(|e| SourceError::new("invalid topic pattern", e))?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let backlog = Arc::new(Backlog {
            messages: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_messages,
            max_bytes: MAX_QUEUED_BYTES,
            holding: AtomicBool::new(false),
            room: tokio::sync::Notify::new(),
        });
        let mut table = lock(&self.table);
        table.next_id += 1;
        let id = table.next_id;
        // Partitions of its topics that are already assigned, and those held for a mapping.
        let assigned: Vec<Partition> = table
            .assigned
            .iter()
            .filter(|(topic, _)| claim.claims(topic))
            .cloned()
            .collect();
        if !assigned.is_empty() {
            events.assigned(&assigned);
        }
        let waiting: Vec<Partition> = table
            .orphans
            .keys()
            .filter(|(topic, _)| claim.claims(topic))
            .cloned()
            .collect();
        // What a leaving mapping could not seek back stays paused until it is.
        let unsought: Vec<(Partition, i64)> = waiting
            .iter()
            .filter_map(|part| Some((part.clone(), *table.unsought.get(part)?)))
            .collect();
        // Counted before the seek: a message taken after it is never taken for a stale one.
        let taken = table.taken.load(Ordering::Acquire);
        let failed = seek(self.consumer.as_ref(), &unsought);
        for (part, _) in unsought {
            if !failed.contains(&part) {
                table.unsought.remove(&part);
                table.rewound.insert(part, taken);
            }
        }
        let waiting: Vec<Partition> = waiting
            .into_iter()
            .filter(|part| !table.unsought.contains_key(part))
            .collect();
        for part in &waiting {
            for fetched in table.orphans.remove(part).unwrap_or_default() {
                backlog.add(fetched.weight);
                let _ = sender.send(Delivery::Message(Box::new(fetched)));
            }
        }
        pause(
            self.consumer.as_ref(),
            &waiting.iter().collect::<Vec<_>>(),
            false,
        );
        table.routes.push(Route {
            id,
            mapping: mapping.to_string(),
            claim,
            sender,
            backlog: Arc::clone(&backlog),
            events,
            held: HashMap::new(),
            retrying: HashSet::new(),
        });
        if let Err(e) = self.resubscribe(&mut table) {
            table.routes.retain(|r| r.id != id);
            return Err(e);
        }
        Ok(Lease {
            group: Arc::clone(self),
            id,
            receiver,
            backlog,
            left: false,
        })
    }

    fn resubscribe(&self, table: &mut Table) -> Result<(), SourceError> {
        let wanted = table.wanted_subscription();
        if wanted == table.subscription {
            return Ok(());
        }
        if wanted.is_empty() {
            self.consumer.unsubscribe();
        } else {
            let topics: Vec<&str> = wanted.iter().map(String::as_str).collect();
            self.consumer
                .subscribe(&topics)
                .map_err(|e| SourceError::new(format!("cannot subscribe to {topics:?}"), e))?;
        }
        tracing::debug!(group = %self.key.group, topics = ?wanted, "Kafka subscription changed.");
        table.subscription = wanted;
        Ok(())
    }
}

/// Takes every fetched message and hands it to the mapping that claims its topic.
async fn poll(consumer: Arc<Consumer_>, table: Arc<Mutex<Table>>, key: GroupKey) {
    let taken = Arc::clone(&lock(&table).taken);
    loop {
        let fetched = match consumer.recv().await {
            Ok(m) => {
                let number = taken.fetch_add(1, Ordering::AcqRel) + 1;
                let message = super::to_message(&key.cluster, &m);
                #[cfg(debug_assertions)]
                if crate::test_hooks::fires(crate::test_hooks::Hook::PollerPanic, Some(&message)) {
                    panic!("test hook: the Kafka poller panics");
                }
                Box::new(Fetched {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    weight: usize::try_from(message.size()).unwrap_or(usize::MAX),
                    message,
                    taken: number,
                })
            }
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) => {
                // Done for good: its mappings see the poller ended and restart on a new one.
                tracing::error!(cluster = %key.cluster, group = %key.group, error = %e, "Kafka consumer failed.");
                return;
            }
            Err(e) => {
                tracing::warn!(cluster = %key.cluster, group = %key.group, error = %e, "Kafka consume error.");
                continue;
            }
        };
        // A mapping alone on the consumer whose queue is full: wait for it, for a while.
        let Some((id, backlog, part, offset)) = route(&consumer, &table, fetched) else {
            continue;
        };
        if tokio::time::timeout(WAIT_FOR_ROOM, backlog.wait_half_empty())
            .await
            .is_err()
        {
            let mut guard = lock(&table);
            if let Some(route) = guard.routes.iter_mut().find(|r| r.id == id) {
                hold(consumer.as_ref(), route, part, offset);
            }
        }
    }
}

/// A mapping to wait for before pausing its partition: its id and queue, the partition, and
/// the offset of the message that filled the queue.
type Wait = (u64, Arc<Backlog>, Partition, i64);

/// Hands a fetched message to the mapping that claims its topic, pausing the partition when
/// the mapping's queue is full and other mappings share the consumer (alone, it is waited
/// for instead: pausing would protect no one and drop librdkafka's prefetch). A message no
/// mapping claims is held, with its partition paused, until one does.
fn route(consumer: &Consumer_, table: &Mutex<Table>, fetched: Box<Fetched>) -> Option<Wait> {
    let mut guard = lock(table);
    if guard.is_stale(&fetched) {
        tracing::debug!(topic = %fetched.topic, partition = fetched.partition, offset = fetched.offset, "Fetched before its partition was sought back; fetched again.");
        return None;
    }
    let alone = guard.routes.len() == 1;
    let fetched = match guard.route(&fetched.topic) {
        Some(route) => {
            let full = route.backlog.add(fetched.weight);
            // The partition is named only when it is to be paused.
            let part = full.then(|| (fetched.topic.clone(), fetched.partition, fetched.offset));
            match route.sender.send(Delivery::Message(fetched)) {
                Ok(()) => {
                    let (topic, partition, offset) = part?;
                    let part = (topic, partition);
                    if route.held.contains_key(&part) {
                        return None;
                    }
                    route.backlog.holding.store(true, Ordering::Release);
                    if alone {
                        return Some((route.id, Arc::clone(&route.backlog), part, offset));
                    }
                    hold(consumer, route, part, offset);
                    return None;
                }
                Err(mpsc::error::SendError(Delivery::Message(fetched))) => {
                    route.backlog.take(fetched.weight);
                    fetched
                }
                Err(_) => return None,
            }
        }
        None => fetched,
    };
    // No mapping takes it now: hold it, and the partition, until one does.
    let part = (fetched.topic.clone(), fetched.partition);
    let held = guard.orphans.entry(part.clone()).or_default();
    if held.is_empty() {
        pause(consumer, &[&part], true);
    }
    held.push(*fetched);
    None
}

/// Seeks each partition to its offset (asynchronously: the seek takes effect before the
/// partition resumes); the partitions whose seek failed. An asynchronous seek under way
/// reports "in progress" (`_IN_PROGRESS`), which is its success.
fn seek(consumer: &Consumer_, to: &[(Partition, i64)]) -> HashSet<Partition> {
    if to.is_empty() {
        return HashSet::new();
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in to {
        if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            tracing::debug!(error = %e, "Seek position not added.");
        }
    }
    match consumer.seek_partitions(tpl, Duration::ZERO) {
        Ok(result) => result
            .elements()
            .iter()
            .filter(|e| {
                !matches!(
                    e.error(),
                    Ok(()) | Err(KafkaError::OffsetFetch(RDKafkaErrorCode::InProgress))
                )
            })
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "Kafka seek failed.");
            to.iter().map(|(part, _)| part.clone()).collect()
        }
    }
}

/// Pauses a partition of a mapping whose queue is full; its fetching resumes at `offset + 1`.
fn hold(consumer: &Consumer_, route: &mut Route, part: Partition, offset: i64) {
    if route.held.contains_key(&part) {
        return;
    }
    route.backlog.holding.store(true, Ordering::Release);
    tracing::debug!(mapping = %route.mapping, topic = %part.0, partition = part.1, "Mapping busy: partition paused.");
    pause(consumer, &[&part], true);
    route.held.insert(part, offset + 1);
}

/// Resumes partitions paused while their mapping's queue was full, each at the offset after
/// the last message the poller took. Resuming alone leaves librdkafka's fetcher asleep for up
/// to a second when every partition it serves was paused (librdkafka 2.12 wakes it when a
/// partition starts fetching, not when one resumes); seeking to the same position wakes it.
fn resume_held(consumer: &Consumer_, parts: &[(&Partition, i64)]) {
    if parts.is_empty() {
        return;
    }
    pause(
        consumer,
        &parts.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        false,
    );
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in parts {
        if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            tracing::debug!(error = %e, "Resume position not added.");
        }
    }
    // Asynchronous (timeout 0), like the rewind when a mapping leaves.
    if let Err(e) = consumer.seek_partitions(tpl, Duration::ZERO) {
        tracing::debug!(error = %e, "Seek on resume failed; fetching resumes on its own.");
    }
}

/// A mapping's membership in a [`GroupConsumer`]: its queue of deliveries, and its partitions'
/// pause, offset store and commit.
pub struct Lease {
    group: Arc<GroupConsumer>,
    id: u64,
    receiver: mpsc::UnboundedReceiver<Delivery>,
    backlog: Arc<Backlog>,
    left: bool,
}

impl Lease {
    /// The next delivery.
    pub async fn recv(&mut self) -> Option<Delivery> {
        let delivery = self.receiver.recv().await;
        self.taken(&delivery);
        delivery
    }

    /// The next delivery if one is queued.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        let delivery = self.receiver.try_recv().ok();
        self.taken(&delivery);
        delivery
    }

    /// Counts a message out of the queue; once half the queue is taken, resumes what was
    /// paused because it was full.
    fn taken(&self, delivery: &Option<Delivery>) {
        let Some(Delivery::Message(fetched)) = delivery else {
            return;
        };
        self.backlog.take(fetched.weight);
        if self.backlog.holding.load(Ordering::Acquire) {
            self.release_held();
        }
    }

    /// Resumes the partitions paused because the queue was full, once it is half empty. Also
    /// called every second by the source, so that nothing stays paused on a missed wake-up.
    pub fn release_held(&self) {
        if !self.backlog.half_empty() {
            return;
        }
        let mut table = lock(&self.group.table);
        self.backlog.holding.store(false, Ordering::Release);
        self.backlog.room.notify_one();
        if let Some(route) = table.routes.iter_mut().find(|r| r.id == self.id)
            && !route.held.is_empty()
        {
            let held = std::mem::take(&mut route.held);
            let resume: Vec<(&Partition, i64)> = held
                .iter()
                .filter(|(p, _)| !route.retrying.contains(p))
                .map(|(p, offset)| (p, *offset))
                .collect();
            resume_held(self.group.consumer.as_ref(), &resume);
        }
    }

    /// Pauses a partition while one of its messages waits on a retry (`true`), or resumes it.
    pub fn pause_for_retry(&self, topic: &str, partition: i32, paused: bool) {
        let part = (topic.to_string(), partition);
        let mut table = lock(&self.group.table);
        let Some(route) = table.routes.iter_mut().find(|r| r.id == self.id) else {
            return;
        };
        let changed = if paused {
            route.retrying.insert(part.clone()) && !route.held.contains_key(&part)
        } else {
            route.retrying.remove(&part) && !route.held.contains_key(&part)
        };
        if changed {
            pause(self.group.consumer.as_ref(), &[&part], paused);
        }
    }

    /// Stores offsets for the next commit.
    pub fn store_offsets(&self, tpl: &TopicPartitionList) -> Result<(), KafkaError> {
        self.group.consumer.store_offsets(tpl)
    }

    /// Commits every stored offset of the consumer (its other mappings' too), waiting for the
    /// answer. Nothing stored is not an error.
    pub fn commit(&self) -> Result<(), KafkaError> {
        commit_stored(self.group.consumer.as_ref())
    }

    /// Asks for a commit of every stored offset of the consumer, sent as soon as the one under
    /// way is answered (see the `committer` module).
    pub fn request_commit(&self) {
        self.group.committer.request();
    }

    /// Whether the shared consumer failed for good: the mapping must restart on a new one.
    pub fn consumer_failed(&self) -> bool {
        self.group.failed()
    }

    /// Leaves the consumer (once; later calls do nothing). `resume_at` gives, per partition,
    /// the first offset the mapping did not settle; those partitions, and those with messages
    /// still queued, are paused and sought back there for the mapping that claims their topic
    /// next (or the group's next owner, after the subscription dropped them).
    pub fn leave(&mut self, resume_at: Vec<(String, i32, i64)>) {
        if std::mem::replace(&mut self.left, true) {
            return;
        }
        let mut table = lock(&self.group.table);
        let Some(i) = table.routes.iter().position(|r| r.id == self.id) else {
            return;
        };
        let route = table.routes.remove(i);
        // The partitions it had are no longer its own (the group may revoke them later).
        let given_up: Vec<Partition> = table
            .assigned
            .iter()
            .filter(|(topic, _)| route.claim.claims(topic))
            .cloned()
            .collect();
        if !given_up.is_empty() {
            route.events.revoked(&given_up);
        }
        let mut rewind: HashMap<Partition, i64> = resume_at
            .into_iter()
            .map(|(topic, partition, offset)| ((topic, partition), offset))
            .collect();
        // What was fetched for it and not taken: no more comes, the route is gone.
        self.receiver.close();
        while let Ok(delivery) = self.receiver.try_recv() {
            match delivery {
                Delivery::Message(f) => {
                    let at = rewind.entry((f.topic, f.partition)).or_insert(f.offset);
                    *at = (*at).min(f.offset);
                }
                Delivery::Revoked(parts) => {
                    for part in parts {
                        rewind.remove(&part);
                    }
                }
            }
        }
        let rewind: Vec<(Partition, i64)> = rewind
            .into_iter()
            .filter(|(part, _)| table.assigned.contains(part))
            .collect();
        if !rewind.is_empty() {
            let parts: Vec<&Partition> = rewind.iter().map(|(p, _)| p).collect();
            pause(self.group.consumer.as_ref(), &parts, true);
            // Counted before the seek, as in `join`.
            let taken = table.taken.load(Ordering::Acquire);
            let failed = seek(self.group.consumer.as_ref(), &rewind);
            for (part, offset) in &rewind {
                if failed.contains(part) {
                    tracing::warn!(group = %self.group.key.group, topic = %part.0, partition = part.1, "Kafka seek failed; sought again before a mapping takes the partition.");
                    table.unsought.insert(part.clone(), *offset);
                } else {
                    table.rewound.insert(part.clone(), taken);
                }
            }
            for (part, _) in rewind {
                // Refetched from the rewound position.
                table.orphans.insert(part, Vec::new());
            }
        }
        // Partitions it had paused stay paused until a mapping claims them.
        for part in route.held.into_keys().chain(route.retrying) {
            if table.assigned.contains(&part) {
                table.orphans.entry(part).or_default();
            }
        }
        if let Err(e) = self.group.resubscribe(&mut table) {
            tracing::warn!(group = %self.group.key.group, error = %e, "Kafka subscription not changed.");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.leave(Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(offset: i64, taken: u64) -> Fetched {
        Fetched {
            topic: "t".to_string(),
            partition: 0,
            offset,
            message: Message::new(None),
            weight: 0,
            taken,
        }
    }

    #[test]
    fn a_message_taken_before_a_leaving_mappings_seek_is_dropped() {
        let part = ("t".to_string(), 0);
        let mut table = Table::default();
        assert!(!table.is_stale(&fetched(3, 1)), "nothing sought back");
        // Sought back to offset 10 when the poller had taken 5 messages.
        table.rewound.insert(part.clone(), 5);
        assert!(
            table.is_stale(&fetched(14, 5)),
            "taken before the seek: fetched again, not delivered out of order"
        );
        assert!(
            !table.is_stale(&fetched(11, 6)),
            "taken after the seek, whatever its offset (a gap after offset 10 is kept)"
        );
        assert!(
            table.rewound.is_empty(),
            "the first message after the seek ends the watch"
        );
        assert!(!table.is_stale(&fetched(12, 7)));
    }
}
