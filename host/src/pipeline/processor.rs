//! The source-independent part of a mapping: hop check, provenance, plugin chain, sending,
//! and settling failures through the dead-letter policy.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::future::join_all;

use super::chain::{Chain, ChainOutcome, ProcessingFailure};
use super::headers::{self, DeadLetterContext};
use super::sink::{Rejected, Sink, SinkError};
use crate::plugin::{DeadLetterTarget, Decision, FailureKind, Message};

/// A consumed message on its way: resolves when every output has been answered.
pub type Flight = Pin<Box<dyn Future<Output = Sent> + Send>>;

/// A consumed message and the broker's answers for what was sent for it.
pub struct Sent {
    original: Message,
    outputs: Vec<Message>,
    results: Vec<Result<(), Rejected>>,
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
}

/// Processes the messages of one mapping.
pub struct Processor {
    settings: ProcessorSettings,
    chain: Chain,
    sink: Sink,
    dead_letter: Option<Sink>,
}

/// Pause before retrying when a message should be dead-lettered but the mapping has no
/// dead-letter target: the message is kept, never lost.
const NO_TARGET_RETRY: Duration = Duration::from_secs(5);

impl Processor {
    /// A processor over an opened chain and sinks.
    pub fn new(
        settings: ProcessorSettings,
        chain: Chain,
        sink: Sink,
        dead_letter: Option<Sink>,
    ) -> Self {
        Processor {
            settings,
            chain,
            sink,
            dead_letter,
        }
    }

    /// Runs the chain on a consumed message and sends the result. Chain failures are settled
    /// here (retry, dead-letter, drop); broker answers come with the returned flight.
    pub async fn process(&mut self, original: Message) -> Result<Flight, SinkError> {
        if let Some(dedup) = &mut self.settings.dedup
            && dedup.is_duplicate(&original)
        {
            tracing::debug!(mapping = %self.settings.mapping, "Duplicate dropped.");
            return Ok(done(original));
        }
        let hops = headers::hops(&original);
        let mut attempt = 1;
        loop {
            let failure = if hops >= self.settings.hop_limit {
                ProcessingFailure {
                    kind: FailureKind::HopLimit,
                    plugin: None,
                    detail: format!(
                        "the message crossed {hops} bridges (hop_limit = {})",
                        self.settings.hop_limit
                    ),
                }
            } else {
                match self.chain.run(self.prepare(&original, hops)).await {
                    ChainOutcome::Send(outputs) => return self.send(original, outputs).await,
                    ChainOutcome::Dropped => return Ok(done(original)),
                    ChainOutcome::Failed(f) => f,
                }
            };
            match self.decide(&original, &failure, attempt).await {
                Decision::Retry(ms) => {
                    tracing::warn!(mapping = %self.settings.mapping, kind = %failure.kind, attempt, retry_ms = ms, error = %failure.detail, "Processing failed; retrying.");
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    attempt += 1;
                }
                Decision::Drop => return Ok(done(original)),
                Decision::DeadLetter(d) => {
                    self.send_dead_letter(&original, &d.reason, &failure, attempt, d.target)
                        .await?;
                    return Ok(done(original));
                }
            }
        }
    }

    /// The message as the chain sees it: a copy of the original with provenance headers and the
    /// next hop count. Made per attempt, so the original stays as consumed for dead letters.
    fn prepare(&self, original: &Message, hops: u32) -> Message {
        let mut prepared = original.clone();
        if self.settings.provenance {
            headers::add_provenance(&mut prepared);
        }
        headers::set_hops(&mut prepared, hops + 1);
        prepared
    }

    /// Settles a flight: retries or dead-letters what the target refused. `Ok` means the
    /// consumed message is handled and may be acknowledged or committed.
    pub async fn settle(&mut self, sent: Sent) -> Result<(), SinkError> {
        let Sent {
            original,
            outputs,
            results,
        } = sent;
        let mut failed: Vec<(Message, Rejected)> = Vec::new();
        for (msg, result) in outputs.into_iter().zip(results) {
            if let Err(rejected) = result {
                if rejected.connection_lost {
                    return Err(SinkError(rejected.detail));
                }
                failed.push((msg, rejected));
            }
        }
        let mut attempt = 1;
        while let Some((_, first)) = failed.first() {
            let failure = ProcessingFailure {
                kind: first.kind,
                plugin: None,
                detail: first.detail.clone(),
            };
            match self.decide(&original, &failure, attempt).await {
                Decision::Retry(ms) => {
                    tracing::warn!(mapping = %self.settings.mapping, kind = %failure.kind, attempt, retry_ms = ms, error = %failure.detail, "Delivery failed; retrying.");
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    attempt += 1;
                    let mut again = Vec::new();
                    for (msg, _) in failed {
                        let pending = self.sink.send(&msg).await?;
                        again.push((msg, pending));
                    }
                    failed = Vec::new();
                    for (msg, pending) in again {
                        if let Err(r) = pending.await {
                            if r.connection_lost {
                                return Err(SinkError(r.detail));
                            }
                            failed.push((msg, r));
                        }
                    }
                }
                Decision::Drop => return Ok(()),
                Decision::DeadLetter(d) => {
                    return self
                        .send_dead_letter(&original, &d.reason, &failure, attempt, d.target)
                        .await;
                }
            }
        }
        Ok(())
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
        outputs: Vec<Message>,
    ) -> Result<Flight, SinkError> {
        let mut pending = Vec::with_capacity(outputs.len());
        for msg in &outputs {
            pending.push(self.sink.send(msg).await?);
        }
        Ok(Box::pin(async move {
            let results = join_all(pending).await;
            Sent {
                original,
                outputs,
                results,
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
    ) -> Decision {
        let decision = self.chain.decide(original, failure, attempt).await;
        if matches!(decision, Decision::DeadLetter(_)) && self.dead_letter.is_none() {
            tracing::error!(
                mapping = %self.settings.mapping, kind = %failure.kind, error = %failure.detail,
                "Message should be dead-lettered but the mapping has no `dead_letter` target; keeping it and retrying."
            );
            return Decision::Retry(NO_TARGET_RETRY.as_millis() as u64);
        }
        decision
    }

    async fn send_dead_letter(
        &mut self,
        original: &Message,
        reason: &str,
        failure: &ProcessingFailure,
        attempts: u32,
        target: Option<DeadLetterTarget>,
    ) -> Result<(), SinkError> {
        let plugin = match &failure.plugin {
            Some(p) => Some(
                self.chain
                    .describe_plugin(p)
                    .await
                    .unwrap_or_else(|| p.clone()),
            ),
            None => None,
        };
        let ctx = DeadLetterContext {
            mapping: &self.settings.mapping,
            reason,
            kind: failure.kind.as_str(),
            plugin,
            attempts,
        };
        let mut letter = headers::dead_letter(original, &ctx);
        match target {
            Some(DeadLetterTarget::Kafka(topic)) => letter.kafka_target.topic = Some(topic),
            Some(DeadLetterTarget::Amqp(t)) => letter.amqp_target = t,
            None => {}
        }
        let Some(sink) = &self.dead_letter else {
            return Err(SinkError("no dead-letter target".to_string()));
        };
        let mut backoff = Duration::from_millis(500);
        loop {
            match sink.send(&letter).await?.await {
                Ok(()) => {
                    tracing::warn!(mapping = %self.settings.mapping, kind = %failure.kind, reason, "Message dead-lettered.");
                    return Ok(());
                }
                Err(r) if r.connection_lost => return Err(SinkError(r.detail)),
                Err(r) => {
                    tracing::error!(mapping = %self.settings.mapping, error = %r.detail, "Dead-letter target refused the message; retrying.");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

fn done(original: Message) -> Flight {
    Box::pin(std::future::ready(Sent {
        original,
        outputs: Vec::new(),
        results: Vec::new(),
    }))
}
