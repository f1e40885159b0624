//! The source-independent part of a mapping: hop check, provenance, plugin chain, sending,
//! and settling failures through the dead-letter policy.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::join_all;
use tokio::sync::watch;

use super::breaker::{Admit, Breaker};
use super::chain::{self, Chain, ChainBroken, ChainOutcome, ProcessingFailure, no_outcome};
use super::dead_letter::{self, DeadLetterContext};
use super::{PipelineError, Shutdown};
use crate::connector::{Class, Rejected, Sink, SinkError};
use crate::plugin::{DeadLetterTarget, Decision, FailureKind, Message, Origin};
use crate::status::MappingStatus;
use crate::telemetry::event::Stage;
use crate::telemetry::{Counters, Event};

/// A consumed message on its way: resolves when every output has been answered.
pub type Flight = Pin<Box<dyn Future<Output = Sent> + Send>>;

/// A consumed message and the broker's answers for what was sent for it.
pub struct Sent {
    original: Message,
    outputs: Vec<Message>,
    results: Vec<Result<(), Rejected>>,
    /// Delivery attempts so far (1 for the first send).
    attempt: u32,
    /// A retry the policy already asked for (a plugin failure): settling hands it on.
    retry: Option<(Duration, Box<Retry>)>,
    /// Dropped as a duplicate: its key belongs to the message it repeats.
    duplicate: bool,
}

impl Sent {
    /// Delivery attempts so far (1 for the first send).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// A batch admitted to its chain: the plugins work on it while the mapping goes on.
pub struct Admitted {
    originals: Vec<Message>,
    steps: Vec<Step>,
    outcomes: Pin<Box<dyn Future<Output = Result<Vec<ChainOutcome>, ChainBroken>> + Send>>,
}

impl Admitted {
    /// Waits for the chain's answer; hand it to [`Processor::finish`].
    pub async fn answered(self) -> Answered {
        Answered {
            outcomes: self.outcomes.await,
            originals: self.originals,
            steps: self.steps,
        }
    }
}

/// An admitted batch with what its chain made of it.
pub struct Answered {
    originals: Vec<Message>,
    steps: Vec<Step>,
    outcomes: Result<Vec<ChainOutcome>, ChainBroken>,
}

/// What settling a flight leads to.
pub enum Settlement {
    /// Handled: the consumed message may be acknowledged or committed.
    Done,
    /// The policy wants the refused outputs sent again after a delay; until then the consumed
    /// message is not handled. Hand the retry to [`Processor::retry`] when the delay is over.
    RetryAfter(Duration, Box<Retry>),
}

/// A consumed message waiting to be tried again.
pub struct Retry {
    original: Message,
    again: Again,
    attempt: u32,
}

/// What a retry does again.
enum Again {
    /// Sends the outputs the target refused.
    Resend(Vec<Message>),
    /// Runs the plugin chain again (it failed on the message), then sends.
    Rerun {
        /// The message's hop count as consumed.
        hops: u32,
    },
}

/// Mapping settings the processor needs.
pub struct ProcessorSettings {
    /// The mapping name.
    pub mapping: String,
    /// Add provenance headers.
    pub provenance: bool,
    /// Hop limit.
    pub hop_limit: u32,
    /// Deduplication, if configured.
    pub dedup: Option<super::dedup::Dedup>,
    /// Where the mapping's state and counters go.
    pub status: Arc<MappingStatus>,
    /// The bridge's shutdown signal: retry and back-off waits end when it fires.
    pub shutdown: watch::Receiver<Shutdown>,
    /// The mapping's circuit breaker, if configured.
    pub breaker: Option<Breaker>,
}

/// Processes the messages of one mapping.
pub struct Processor {
    settings: ProcessorSettings,
    chain: Chain,
    sink: Arc<dyn Sink>,
    dead_letter: Option<Arc<dyn Sink>>,
    /// The plugin generation the breaker last saw: a reload closes it.
    generation: u64,
    /// Offsets of consumed Kafka messages waiting on a retry, per topic and partition: what is
    /// sent from a partition meanwhile goes out [`Message::behind_a_retry`].
    waiting: HashMap<(String, i32), BTreeSet<i64>>,
}

/// Pause before retrying when a message should be dead-lettered but the mapping has no
/// dead-letter target, or the target refused the letter: the message is kept, never lost.
const NO_TARGET_RETRY: Duration = Duration::from_secs(5);

/// The longest retry delay a dead-letter policy may ask for.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

impl Processor {
    /// A processor over an opened chain and sinks.
    pub fn new(
        settings: ProcessorSettings,
        chain: Chain,
        sink: Arc<dyn Sink>,
        dead_letter: Option<Arc<dyn Sink>>,
    ) -> Self {
        let generation = chain.generation();
        Processor {
            settings,
            chain,
            sink,
            dead_letter,
            generation,
            waiting: HashMap::new(),
        }
    }

    /// Admits consumed messages (dedup, hop limit, breaker, provenance) and queues the ones that
    /// pass on the chain, which sees them in one call on a worker thread. The mapping goes on
    /// meanwhile; [`Processor::finish`] sends what the chain answered.
    pub fn admit_batch(&mut self, originals: Vec<Message>) -> Admitted {
        self.counters()
            .emit(Event::Consumed(originals.len() as u64));
        let mut steps = Vec::with_capacity(originals.len());
        let mut prepared = Vec::with_capacity(originals.len());
        for original in &originals {
            steps.push(self.admit(original, &mut prepared));
        }
        Admitted {
            originals,
            steps,
            outcomes: Box::pin(self.chain.run_batch(prepared)),
        }
    }

    /// Sends what the chain made of an admitted batch, one flight per message in the same
    /// order. Chain failures are settled here (retry, dead-letter, drop) in order, so a retried
    /// message still goes out before the ones after it. Broker answers come with the flights.
    /// `current` says, per message, whether it still belongs to its source: one whose
    /// partition was taken away (or whose transaction was aborted) meanwhile is not sent, as
    /// it will be consumed again.
    pub async fn finish(
        &mut self,
        answered: Answered,
        current: impl Fn(usize) -> bool,
    ) -> Result<Vec<Flight>, PipelineError> {
        let Answered {
            originals,
            steps,
            outcomes,
        } = answered;
        let mut outcomes = outcomes?.into_iter();
        // A message whose chain failed is settled by the policy without waiting here: a retry
        // comes back through its flight, so the messages after it are not held up.
        let mut flights = Vec::with_capacity(originals.len());
        for (i, (original, step)) in originals.into_iter().zip(steps).enumerate() {
            if !current(i) {
                if matches!(step, Step::Chain(_)) {
                    outcomes.next();
                }
                flights.push(Box::pin(std::future::ready(sent(original))) as Flight);
                continue;
            }
            let flight = match step {
                Step::Duplicate => Box::pin(std::future::ready(Sent {
                    duplicate: true,
                    ..sent(original)
                })),
                Step::Refused(hops, failure) => self.failed(original, failure, hops, 1).await?,
                Step::Wait(hops, delay) => self.later(original, Again::Rerun { hops }, 1, delay),
                Step::Broken(hops) => self.broken(original, hops, 1).await?,
                Step::Chain(hops) => {
                    let outcome = outcomes.next().unwrap_or_else(no_outcome);
                    self.observe(&outcome);
                    match outcome {
                        ChainOutcome::Send(outputs) => self.send(original, outputs).await?,
                        ChainOutcome::Dropped => self.dropped(original),
                        ChainOutcome::Failed(f) => self.failed(original, f, hops, 1).await?,
                    }
                }
            };
            flights.push(flight);
        }
        Ok(flights)
    }

    /// Decides what happens to a consumed message before the chain: dropped as a duplicate,
    /// stopped by the hop limit, or prepared for the chain (pushed to `prepared`).
    fn admit(&mut self, original: &Message, prepared: &mut Vec<Message>) -> Step {
        if let Some(dedup) = &mut self.settings.dedup
            && dedup.is_duplicate(original)
        {
            self.counters().emit(Event::Duplicate);
            return Step::Duplicate;
        }
        let hops = chain::hops(original);
        if let Some(failure) = self.refusal(original, hops) {
            return Step::Refused(hops, failure);
        }
        match self.gate() {
            Admit::Pass => {
                prepared.push(self.prepare(original, hops));
                Step::Chain(hops)
            }
            Admit::Wait(delay) => Step::Wait(hops, delay),
            Admit::DeadLetter => Step::Broken(hops),
        }
    }

    /// Whether the circuit breaker lets a message reach the plugins (a reload closes it).
    fn gate(&mut self) -> Admit {
        let generation = self.chain.generation();
        let Some(breaker) = &mut self.settings.breaker else {
            return Admit::Pass;
        };
        let mut changed = None;
        if generation != self.generation {
            self.generation = generation;
            changed = breaker.reset();
        }
        let before = breaker.state();
        let admit = breaker.admit(std::time::Instant::now());
        let state = breaker.state();
        if changed.is_some() || state != before {
            self.counters().emit(Event::Breaker(state.as_str()));
        }
        admit
    }

    /// Feeds a chain outcome to the circuit breaker.
    fn observe(&mut self, outcome: &ChainOutcome) {
        let Some(breaker) = &mut self.settings.breaker else {
            return;
        };
        let changed = match outcome {
            ChainOutcome::Failed(f) if f.plugin.is_some() => {
                breaker.failed(std::time::Instant::now())
            }
            ChainOutcome::Failed(_) => None,
            ChainOutcome::Send(_) | ChainOutcome::Dropped => breaker.succeeded(),
        };
        if let Some(state) = changed {
            self.settings
                .status
                .counters
                .emit(Event::Breaker(state.as_str()));
        }
    }

    /// Dead-letters a message the open breaker keeps from the plugins.
    async fn broken(
        &mut self,
        original: Message,
        hops: u32,
        attempt: u32,
    ) -> Result<Flight, PipelineError> {
        let failure = ProcessingFailure {
            kind: FailureKind::PluginError,
            plugin: None,
            detail: "the mapping's circuit breaker is open; the plugins were not called"
                .to_string(),
            version: None,
        };
        self.failed(original, failure, hops, attempt).await
    }

    /// Why `original` cannot reach the plugins at all: its source could not read it whole,
    /// or it has crossed `hop_limit` bridges.
    fn refusal(&self, original: &Message, hops: u32) -> Option<ProcessingFailure> {
        if let Some(problem) = &original.unreadable {
            return Some(ProcessingFailure {
                kind: FailureKind::ConversionError,
                plugin: None,
                detail: problem.clone(),
                version: None,
            });
        }
        (hops >= self.settings.hop_limit).then(|| self.hop_failure(hops))
    }

    fn hop_failure(&self, hops: u32) -> ProcessingFailure {
        ProcessingFailure {
            kind: FailureKind::HopLimit,
            plugin: None,
            detail: format!(
                "the message crossed {hops} bridges (hop_limit = {})",
                self.settings.hop_limit
            ),
            version: None,
        }
    }

    /// Settles a message the chain failed on (attempt `attempt`): the policy drops it,
    /// dead-letters it, or asks for a retry, which the returned flight carries.
    async fn failed(
        &mut self,
        original: Message,
        failure: ProcessingFailure,
        hops: u32,
        attempt: u32,
    ) -> Result<Flight, PipelineError> {
        match self.decide(&original, &failure, attempt).await? {
            Decision::Retry(ms) => {
                self.retried(&failure, Stage::Processing, attempt, ms);
                Ok(self.later(
                    original,
                    Again::Rerun { hops },
                    attempt + 1,
                    Duration::from_millis(ms),
                ))
            }
            Decision::Drop => Ok(self.dropped(original)),
            Decision::DeadLetter(d) => {
                if self
                    .send_dead_letter(&original, &d.reason, &failure, attempt, d.target)
                    .await?
                {
                    Ok(done(original))
                } else {
                    Ok(self.later(
                        original,
                        Again::Rerun { hops },
                        attempt + 1,
                        NO_TARGET_RETRY,
                    ))
                }
            }
        }
    }

    /// The message as the chain sees it: a copy of the original with provenance headers and the
    /// next hop count. Made per attempt, so the original stays as consumed for dead letters.
    fn prepare(&self, original: &Message, hops: u32) -> Message {
        let mut prepared = original.clone();
        if self.settings.provenance {
            chain::add_provenance(&mut prepared);
        }
        chain::set_hops(&mut prepared, hops + 1);
        prepared
    }

    /// Settles a flight without waiting: counts what was delivered, and asks the policy about
    /// what the target refused (retry, dead-letter, drop). `Err` means the target's connection
    /// is lost (or the bridge is stopping) and the message stays unhandled.
    pub async fn settle(&mut self, sent: Sent) -> Result<Settlement, PipelineError> {
        let duplicate = sent.duplicate;
        let Some(dedup) = &mut self.settings.dedup else {
            return self.settle_flight(sent).await;
        };
        if duplicate {
            return Ok(Settlement::Done);
        }
        // The key is remembered only once its message is handled: one abandoned before that
        // is not a duplicate when it comes back.
        let key = dedup.key(&sent.original);
        let settlement = self.settle_flight(sent).await?;
        if let (Settlement::Done, Some(key), Some(dedup)) =
            (&settlement, key, &mut self.settings.dedup)
        {
            dedup.settled(key);
        }
        Ok(settlement)
    }

    /// Forgets the deduplication state of a partition whose messages were abandoned (revoked):
    /// they are not duplicates when they are consumed again.
    pub fn abandon_partition(&mut self, topic: &str, partition: i32) {
        self.waiting.remove(&(topic.to_string(), partition));
        if let Some(dedup) = &mut self.settings.dedup {
            dedup.abandon_partition(topic, partition);
        }
    }

    async fn settle_flight(&mut self, sent: Sent) -> Result<Settlement, PipelineError> {
        let Sent {
            original,
            outputs,
            results,
            attempt,
            retry,
            duplicate: _,
        } = sent;
        if let Some((delay, retry)) = retry {
            return Ok(Settlement::RetryAfter(delay, retry));
        }
        let mut failed: Vec<Message> = Vec::new();
        let mut first: Option<Rejected> = None;
        let confirmed = results.iter().filter(|r| r.is_ok()).count();
        self.counters().emit(Event::Delivered {
            messages: confirmed as u64,
            source_timestamp_ms: original.timestamp,
        });
        if confirmed > 0 && attempt > 1 {
            // A retried message got through: whatever held it is over.
            self.settings.status.set_stalled(None);
        }
        for (msg, result) in outputs.into_iter().zip(results) {
            if let Err(rejected) = result {
                if rejected.class == Class::Transient {
                    return Err(PipelineError::Lost(rejected));
                }
                first.get_or_insert(rejected);
                failed.push(msg);
            }
        }
        let Some(first) = first else {
            return Ok(Settlement::Done);
        };
        // Counted once a message, not once an attempt.
        if let Some(reason) = first.reason
            && attempt == 1
        {
            self.counters().emit(Event::TargetRefused(reason.as_str()));
        }
        let failure = ProcessingFailure {
            kind: first.kind(),
            plugin: None,
            detail: first.detail,
            version: None,
        };
        match self.decide(&original, &failure, attempt).await? {
            Decision::Retry(ms) => {
                self.retried(&failure, Stage::Delivery, attempt, ms);
                self.waits(&original);
                let retry = Box::new(Retry {
                    original,
                    again: Again::Resend(failed),
                    attempt: attempt + 1,
                });
                Ok(Settlement::RetryAfter(Duration::from_millis(ms), retry))
            }
            Decision::Drop => {
                self.counters().emit(Event::Dropped);
                Ok(Settlement::Done)
            }
            Decision::DeadLetter(d) => {
                if self
                    .send_dead_letter(&original, &d.reason, &failure, attempt, d.target)
                    .await?
                {
                    return Ok(Settlement::Done);
                }
                self.waits(&original);
                let retry = Box::new(Retry {
                    original,
                    again: Again::Resend(failed),
                    attempt: attempt + 1,
                });
                Ok(Settlement::RetryAfter(NO_TARGET_RETRY, retry))
            }
        }
    }

    /// Tries a message again: sends the refused outputs, or runs the chain again and sends
    /// what it makes. The flight settles like the first one.
    pub async fn retry(&mut self, retry: Box<Retry>) -> Result<Flight, PipelineError> {
        let Retry {
            original,
            again,
            attempt,
        } = *retry;
        self.no_longer_waiting(&original);
        let flight = match again {
            Again::Resend(failed) => self.send(original, failed).await?,
            Again::Rerun { hops } => match self.refusal(&original, hops) {
                Some(failure) => self.failed(original, failure, hops, attempt).await?,
                None => match self.gate() {
                    Admit::Wait(delay) => {
                        self.later(original, Again::Rerun { hops }, attempt, delay)
                    }
                    Admit::DeadLetter => self.broken(original, hops, attempt).await?,
                    Admit::Pass => {
                        let outcome = self.chain.run(self.prepare(&original, hops)).await?;
                        self.observe(&outcome);
                        match outcome {
                            ChainOutcome::Send(outputs) => self.send(original, outputs).await?,
                            ChainOutcome::Dropped => self.dropped(original),
                            ChainOutcome::Failed(f) => {
                                self.failed(original, f, hops, attempt).await?
                            }
                        }
                    }
                },
            },
        };
        // Whatever came of it, the flight belongs to a retry (sources track that by attempt).
        Ok(Box::pin(async move {
            let mut sent = flight.await;
            sent.attempt = attempt;
            sent
        }))
    }

    /// Waits `delay`, unless the bridge is stopping: then at once `Err`, leaving the message
    /// unhandled, so that a message under retry never holds up a shutdown.
    pub async fn wait(&self, delay: Duration) -> Result<(), PipelineError> {
        let mut shutdown = self.settings.shutdown.clone();
        if shutdown.borrow().stopping {
            return Err(PipelineError::Stopping);
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = shutdown.wait_for(|s| s.stopping) => Err(PipelineError::Stopping),
        }
    }

    /// Runs `work` until the stop's deadline, if the bridge is stopping: then `Err(Stopping)`.
    /// (A dead letter under way still completes during the drain.)
    async fn until_deadline<T>(
        &self,
        work: impl Future<Output = Result<T, PipelineError>>,
    ) -> Result<T, PipelineError> {
        let mut shutdown = self.settings.shutdown.clone();
        let deadline = async {
            let stopping = shutdown.wait_for(|s| s.stopping).await.map(|s| s.deadline);
            let Ok(deadline) = stopping else {
                return std::future::pending().await;
            };
            tokio::time::sleep_until(deadline).await;
        };
        tokio::select! {
            result = work => result,
            () = deadline => Err(PipelineError::Stopping),
        }
    }

    /// Runs `work` unless the bridge starts stopping first: then `Err(Stopping)`.
    async fn until_stopping<T>(
        &self,
        work: impl Future<Output = Result<T, PipelineError>>,
    ) -> Result<T, PipelineError> {
        let mut shutdown = self.settings.shutdown.clone();
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| s.stopping) => Err(PipelineError::Stopping),
            result = work => result,
        }
    }

    /// The mapping's state: sources report their connection there.
    pub fn status(&self) -> &MappingStatus {
        &self.settings.status
    }

    /// The mapping's state, shared (for callbacks that outlive a borrow).
    pub fn shared_status(&self) -> Arc<MappingStatus> {
        Arc::clone(&self.settings.status)
    }

    fn counters(&self) -> &Counters {
        &self.settings.status.counters
    }

    fn retried(&self, failure: &ProcessingFailure, stage: Stage, attempt: u32, delay_ms: u64) {
        self.counters().emit(Event::Retried {
            kind: failure.kind.as_str(),
            stage,
            attempt,
            delay: Duration::from_millis(delay_ms),
            error: &failure.detail,
        });
    }

    fn dropped(&self, original: Message) -> Flight {
        self.counters().emit(Event::Dropped);
        done(original)
    }

    /// `Err` once a target's connection is gone, so an idle mapping notices an outage (and
    /// reports it through readiness) without waiting for the next message.
    pub fn check_sinks(&self) -> Result<(), PipelineError> {
        let dead_letter_ok = self.dead_letter.as_ref().is_none_or(|s| s.is_connected());
        if self.sink.is_connected() && dead_letter_ok {
            Ok(())
        } else {
            Err(SinkError::msg("the RabbitMQ connection of a target closed").into())
        }
    }

    /// Closes the sinks' RabbitMQ channels and connections, on every way out of a mapping.
    pub async fn close(&self, timeout: Duration) {
        self.sink.close(timeout).await;
        if let Some(dl) = &self.dead_letter {
            dl.close(timeout).await;
        }
    }

    /// A flight that asks for `again` after `delay`; until then `original` waits on a retry.
    fn later(&mut self, original: Message, again: Again, attempt: u32, delay: Duration) -> Flight {
        self.waits(&original);
        retry_flight(original, again, attempt, delay)
    }

    /// `original` (a Kafka message) waits on a retry.
    fn waits(&mut self, original: &Message) {
        if let Origin::Kafka(k) = &original.origin {
            self.waiting
                .entry((k.topic.clone(), k.partition))
                .or_default()
                .insert(k.offset);
        }
    }

    /// `original` is being tried again: it no longer waits.
    fn no_longer_waiting(&mut self, original: &Message) {
        if let Origin::Kafka(k) = &original.origin {
            let key = (k.topic.clone(), k.partition);
            if let Some(offsets) = self.waiting.get_mut(&key) {
                offsets.remove(&k.offset);
                if offsets.is_empty() {
                    self.waiting.remove(&key);
                }
            }
        }
    }

    /// Whether a message consumed before `original` from its Kafka partition waits on a retry.
    fn behind_a_retry(&self, original: &Message) -> bool {
        let Origin::Kafka(k) = &original.origin else {
            return false;
        };
        if self.waiting.is_empty() {
            return false;
        }
        self.waiting
            .get(&(k.topic.clone(), k.partition))
            .and_then(BTreeSet::first)
            .is_some_and(|first| *first < k.offset)
    }

    /// Closes the sinks after draining (Kafka producers flush).
    pub fn flush(&self, timeout: Duration) {
        self.sink.flush(timeout);
        if let Some(dl) = &self.dead_letter {
            dl.flush(timeout);
        }
    }

    async fn send(
        &mut self,
        original: Message,
        mut outputs: Vec<Message>,
    ) -> Result<Flight, PipelineError> {
        // The hop count is the host's: a plugin's change to it is undone (and counted), so a
        // loop is always caught.
        let hops = chain::hops(&original) + 1;
        let behind = self.behind_a_retry(&original);
        for msg in &mut outputs {
            if chain::keep_hops(msg, hops) {
                self.counters().emit(Event::HopsRewritten);
            }
            msg.behind_a_retry = behind;
        }
        let mut pending = Vec::with_capacity(outputs.len());
        #[cfg(debug_assertions)]
        if crate::test_hooks::fires(crate::test_hooks::Hook::MappingPanic, Some(&original)) {
            panic!("test hook: the mapping's task panics");
        }
        for msg in &outputs {
            // A blocked target holds the message here: nothing more is taken from the source
            // until RabbitMQ lifts its alarm (backpressure); readiness watches the connection.
            // A stop ends the wait, leaving the message unsettled.
            if let Some(why) = self.sink.blocked() {
                tracing::warn!(mapping = %self.settings.mapping, "{why}; waiting.");
                self.until_stopping(async {
                    self.sink.wait_unblocked().await;
                    Ok(())
                })
                .await?;
                tracing::info!(mapping = %self.settings.mapping, "The target takes messages again.");
            }
            // Most sends are taken at once; one that waits (a full producer queue) waits until
            // the stop's deadline at most, so what the chain answered before a stop still goes
            // out during the drain.
            let mut send = std::pin::pin!(self.sink.send(msg));
            let sent = match (&mut send).now_or_never() {
                Some(sent) => sent?,
                None => self.until_deadline(async { Ok(send.await?) }).await?,
            };
            pending.push(sent);
        }
        Ok(Box::pin(async move {
            let results = join_all(pending).await;
            Sent {
                original,
                outputs,
                results,
                attempt: 1,
                retry: None,
                duplicate: false,
            }
        }))
    }

    /// The policy's decision; without a dead-letter target a dead-letter decision becomes a
    /// delayed retry, so the message is never lost.
    async fn decide(
        &mut self,
        original: &Message,
        failure: &ProcessingFailure,
        attempt: u32,
    ) -> Result<Decision, PipelineError> {
        self.counters().emit(Event::Failed {
            kind: failure.kind.as_str(),
        });
        // Queued behind the batches in the chain; a stop's deadline ends the wait.
        let decision = self
            .until_deadline(async { Ok(self.chain.decide(original, failure, attempt).await?) })
            .await?;
        if matches!(decision, Decision::DeadLetter(_)) && self.dead_letter.is_none() {
            tracing::error!(
                mapping = %self.settings.mapping, kind = %failure.kind, error = %failure.detail,
                "Message should be dead-lettered but the mapping has no `dead_letter` target; keeping it and retrying."
            );
            self.settings.status.set_stalled(Some(format!(
                "a message fails with {} ({}) and there is no `dead_letter` target: kept, retried every {} s",
                failure.kind,
                failure.detail,
                NO_TARGET_RETRY.as_secs()
            )));
            return Ok(Decision::Retry(NO_TARGET_RETRY.as_millis() as u64));
        }
        Ok(match decision {
            Decision::Retry(ms) if ms > MAX_RETRY_DELAY.as_millis() as u64 => {
                Decision::Retry(MAX_RETRY_DELAY.as_millis() as u64)
            }
            other => other,
        })
    }

    /// Sends a dead letter for `original`; `false` when the dead-letter target refused it (the
    /// caller keeps the message and tries again after [`NO_TARGET_RETRY`]).
    async fn send_dead_letter(
        &mut self,
        original: &Message,
        reason: &str,
        failure: &ProcessingFailure,
        attempts: u32,
        target: Option<DeadLetterTarget>,
    ) -> Result<bool, PipelineError> {
        let plugin = match (&failure.version, &failure.plugin) {
            (Some(version), _) => Some(version.clone()),
            (None, Some(p)) => Some(
                self.chain
                    .describe_plugin(p)
                    .await
                    .unwrap_or_else(|| p.clone()),
            ),
            (None, None) => None,
        };
        let ctx = DeadLetterContext {
            mapping: &self.settings.mapping,
            reason,
            kind: failure.kind.as_str(),
            plugin,
            attempts,
        };
        let mut letter = dead_letter::dead_letter(original, &ctx);
        match target {
            Some(DeadLetterTarget::Kafka(topic)) => letter.kafka_target.topic = Some(topic),
            Some(DeadLetterTarget::Amqp(t)) => letter.amqp_target = t,
            None => {}
        }
        let Some(sink) = &self.dead_letter else {
            return Err(SinkError::msg("no dead-letter target").into());
        };
        let sent = self.until_deadline(async { Ok(sink.send(&letter).await?.await) });
        match sent.await? {
            Ok(()) => {
                self.counters().emit(Event::DeadLettered {
                    kind: failure.kind.as_str(),
                    reason,
                });
                if attempts > 1 {
                    self.settings.status.set_stalled(None);
                }
                Ok(true)
            }
            Err(r) if r.class == Class::Transient => Err(PipelineError::Lost(r)),
            Err(r) => {
                // Kept, and tried again later like a retry: only its partition waits.
                tracing::error!(
                    mapping = %self.settings.mapping, error = %r.detail,
                    "The dead-letter target refused the message; keeping it and retrying."
                );
                if let Some(refusal) = r.reason {
                    self.counters().emit(Event::TargetRefused(refusal.as_str()));
                }
                self.settings.status.set_stalled(Some(format!(
                    "the dead-letter target refuses a message ({}): kept, retried every {} s",
                    r.detail,
                    NO_TARGET_RETRY.as_secs()
                )));
                Ok(false)
            }
        }
    }
}

/// A flight that asks for `again` after `delay` (attempt `attempt` then).
fn retry_flight(original: Message, again: Again, attempt: u32, delay: Duration) -> Flight {
    let retry = Box::new(Retry {
        original,
        again,
        attempt,
    });
    Box::pin(std::future::ready(Sent {
        original: Message::new(None),
        outputs: Vec::new(),
        results: Vec::new(),
        attempt: attempt.saturating_sub(1).max(1),
        retry: Some((delay, retry)),
        duplicate: false,
    }))
}

/// What happens to a consumed message before the chain.
enum Step {
    /// Already bridged within the dedup window.
    Duplicate,
    /// Refused before the chain: unreadable, or over the hop limit (the message's hop count).
    Refused(u32, ProcessingFailure),
    /// Goes through the chain (the message's hop count).
    Chain(u32),
    /// Held back by the open circuit breaker: tried again after the delay.
    Wait(u32, Duration),
    /// Dead-lettered by the open circuit breaker without calling the plugins.
    Broken(u32),
}

fn done(original: Message) -> Flight {
    Box::pin(std::future::ready(sent(original)))
}

/// A consumed message settled without sending anything.
fn sent(original: Message) -> Sent {
    Sent {
        original,
        outputs: Vec::new(),
        results: Vec::new(),
        attempt: 1,
        retry: None,
        duplicate: false,
    }
}
