//! The seam between the pipeline and the brokers: what a source hands the pipeline and how the
//! pipeline settles it, what a target takes, and the errors both report, classified once.
//!
//! A source hands out messages, each with a token. The pipeline reports every token exactly
//! once as settled (delivered, dead-lettered or dropped) or leaves it unsettled (a retry not
//! over when the mapping stops, a partition revoked): the source alone turns settled tokens into
//! acknowledgements or committed offsets, and never acknowledges or commits an unsettled one.
//! Everything broker-specific — client settings, conversion, consumer groups, watermarks,
//! confirms, blocked connections — stays behind it, in one folder per broker.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;

use crate::plugin::{FailureKind, Message, Origin};

/// A boxed error with its causes, as brokers' client libraries report them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A boxed future, for the object-safe [`Sink`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A consumed message and the token that settles it.
pub struct Consumed<T> {
    /// Settles the message with its source.
    pub token: T,
    /// The message, converted.
    pub message: Message,
}

/// What a source has for the pipeline.
pub struct Received<T> {
    /// Consumed messages, in order.
    pub messages: Vec<Consumed<T>>,
    /// Kafka partitions the source gave up (revoked): their messages still in the pipeline
    /// will not be settled by this run, and they will be consumed again.
    pub abandoned: Vec<(String, i32)>,
}

impl<T> Default for Received<T> {
    fn default() -> Self {
        Received {
            messages: Vec::new(),
            abandoned: Vec::new(),
        }
    }
}

/// The most messages taken from a source in one go.
pub const MAX_BATCH: usize = 256;

/// Appends to `batch` what `stream` has ready now, without waiting, until `batch` holds
/// `limit` items (at most [`MAX_BATCH`]). Under load the pipelines thus hand the plugin chain
/// many messages per trip; when idle, a message goes alone and at once.
/// The end of the stream is pushed as `None`, last.
pub fn take_ready<S: futures_util::Stream + Unpin>(
    stream: &mut S,
    batch: &mut Vec<Option<S::Item>>,
    limit: usize,
) {
    use futures_util::{FutureExt, StreamExt};
    while batch.len() < limit.min(MAX_BATCH) {
        match stream.next().now_or_never() {
            Some(Some(item)) => batch.push(Some(item)),
            Some(None) => {
                batch.push(None);
                break;
            }
            None => break,
        }
    }
}

/// A broker source, driven by the pipeline (see the module documentation).
pub trait Source: Send {
    /// What settles one consumed message.
    type Token: Send + 'static;

    /// Waits for messages and returns at most `max` of them (at least one), or what was
    /// abandoned. Cancel-safe: it is raced against the pipeline's other work.
    fn recv(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Received<Self::Token>, SourceError>> + Send;

    /// Messages handed out and not yet acknowledged or committed.
    fn in_flight(&self) -> usize;

    /// How many more messages may be taken now, with at most `max_in_flight` unsettled (what
    /// waits behind a retry on a paused Kafka partition does not count). The pipeline adds
    /// up to one batch its plugins work on.
    fn room(&self, max_in_flight: usize) -> usize;

    /// Whether a token still belongs to this source's current assignment (its partition was
    /// not revoked since): a stale one is neither settled nor retried.
    fn is_current(&self, token: &Self::Token) -> bool;

    /// The message was delivered, dead-lettered or dropped. Recorded now; acknowledged or
    /// committed by [`Source::flush`].
    fn settled(&mut self, token: Self::Token);

    /// The message waits on a retry (`true`), or no longer does: a Kafka source pauses its
    /// partition meanwhile.
    fn retrying(&mut self, token: &Self::Token, waiting: bool);

    /// Acknowledges or commits what was settled, when enough settled or the pipeline is idle.
    fn flush(&mut self, idle: bool) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// Called every second: `Err` when the source's connection is gone.
    fn check(&mut self) -> Result<(), SourceError>;

    /// Ends the source: stops consuming. Graceful (`clean`): what was settled is acknowledged or
    /// committed, within `deadline`; what was not is left for redelivery on every path.
    fn close(
        self,
        clean: bool,
        deadline: Instant,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
}

/// What a source reports about itself as it runs: the Kafka partitions the group assigned and
/// revoked, and their lag. The mapping's status implements it.
pub trait SourceEvents: Send + Sync {
    /// Partitions assigned to the mapping.
    fn assigned(&self, partitions: &[(String, i32)]);
    /// Partitions taken away (by the group, or given up when the mapping leaves).
    fn revoked(&self, partitions: &[(String, i32)]);
    /// Consumer lag per assigned partition: topic, partition, messages behind.
    fn lag(&self, lag: &[(String, i32, i64)]);
}

/// The broker's answer for one sent message.
pub type Pending = BoxFuture<'static, Result<(), Rejected>>;

/// A broker target: a RabbitMQ exchange or a Kafka topic.
pub trait Sink: Send + Sync {
    /// Sends one message; the returned future resolves with the broker's answer.
    fn send<'a>(&'a self, msg: &'a Message) -> BoxFuture<'a, Result<Pending, SinkError>>;

    /// Why the target takes nothing now, if it does not (RabbitMQ blocks publishers while one
    /// of its resource alarms is on).
    fn blocked(&self) -> Option<String>;

    /// Waits until the target takes messages again, or its connection closes.
    fn wait_unblocked(&self) -> BoxFuture<'_, ()>;

    /// Whether the sink can still send.
    fn is_connected(&self) -> bool;

    /// Waits (up to `timeout`) until everything sent was answered.
    fn flush(&self, timeout: Duration);

    /// Releases the sink (bounded by `timeout`, as a dead connection may never answer).
    fn close(&self, timeout: Duration) -> BoxFuture<'_, ()>;
}

/// How the pipeline treats a failure, decided once where it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The connection or the cluster failed: the mapping restarts and redelivers.
    Transient,
    /// This message was refused: the dead-letter policy decides.
    Refused(FailureKind),
}

/// A target did not take one message.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct Rejected {
    /// What to do about it.
    pub class: Class,
    /// What the broker said.
    pub detail: String,
    /// The client library's error, if any.
    #[source]
    pub source: Option<BoxError>,
    /// Why, when the bridge itself refused the message's target.
    pub reason: Option<Refusal>,
}

/// Why the bridge refused a message's target: a stable code that starts the dead letter's
/// `x-bridge-reason` and labels `bridge_target_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Outside the tenant's allowlists (a plugin's or a header's choice).
    NotAllowed,
    /// A topic a plugin chose that the cluster does not have.
    UnknownTopic,
    /// A partition a plugin chose that the topic does not have.
    UnknownPartition,
    /// An exchange a plugin chose that the broker does not have.
    NoRoute,
}

impl Refusal {
    /// The code: `target-not-allowed`, `unknown-topic`, `unknown-partition`, `no-route`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "target-not-allowed",
            Refusal::UnknownTopic => "unknown-topic",
            Refusal::UnknownPartition => "unknown-partition",
            Refusal::NoRoute => "no-route",
        }
    }
}

impl Rejected {
    /// A refusal of this message, of `kind`.
    pub fn refused(kind: FailureKind, detail: impl Into<String>) -> Self {
        Rejected {
            class: Class::Refused(kind),
            detail: detail.into(),
            source: None,
            reason: None,
        }
    }

    /// The bridge's own refusal of the message's target (`target-rejected`), the detail
    /// prefixed with the reason's code.
    pub fn because(reason: Refusal, detail: impl std::fmt::Display) -> Self {
        Rejected {
            reason: Some(reason),
            ..Rejected::refused(
                FailureKind::TargetRejected,
                format!("{}: {detail}", reason.as_str()),
            )
        }
    }

    /// A failure of the connection while the message was under way.
    pub fn transient(detail: impl Into<String>, source: Option<BoxError>) -> Self {
        Rejected {
            class: Class::Transient,
            detail: detail.into(),
            source,
            reason: None,
        }
    }

    /// The failure kind the dead-letter policy sees (`target-rejected` for a lost connection).
    pub fn kind(&self) -> FailureKind {
        match self.class {
            Class::Refused(kind) => kind,
            Class::Transient => FailureKind::TargetRejected,
        }
    }
}

/// A target failed as a whole (it cannot be opened, its connection is lost): the mapping
/// restarts.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct SinkError {
    /// What failed, in the bridge's words.
    pub context: String,
    /// The cause.
    #[source]
    pub source: Option<BoxError>,
}

impl SinkError {
    /// A failure described by `context`, with the client library's error.
    pub fn new(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        SinkError {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A failure without a library error.
    pub fn msg(context: impl Into<String>) -> Self {
        SinkError {
            context: context.into(),
            source: None,
        }
    }
}

/// A source failed (its connection was lost, its queue is gone, …): the mapping restarts.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct SourceError {
    /// What failed, in the bridge's words.
    pub context: String,
    /// The cause.
    #[source]
    pub source: Option<BoxError>,
}

impl SourceError {
    /// A failure described by `context`, with the client library's error.
    pub fn new(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        SourceError {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A failure without a library error.
    pub fn msg(context: impl Into<String>) -> Self {
        SourceError {
            context: context.into(),
            source: None,
        }
    }
}

/// A [`Pending`] answered at once: the sink refused `kind` before sending.
pub fn refused(kind: FailureKind, detail: impl Into<String>) -> Pending {
    let rejected = Rejected::refused(kind, detail);
    Box::pin(async move { Err(rejected) })
}

/// The source topic or queue name: a target's default topic or routing key.
pub fn source_name(msg: &Message) -> Option<String> {
    match &msg.origin {
        Origin::Kafka(k) => Some(k.topic.clone()),
        Origin::Amqp(a) => Some(a.queue.clone()),
        Origin::None => None,
    }
}
