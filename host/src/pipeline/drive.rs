//! One mapping's loop, the same for every source: take a batch, run it through the processor,
//! settle each message when the target answered (or retry it later, holding back only itself),
//! and tell the source what was settled. The plugins work on one batch while the loop sends and
//! settles the one before. On a stop it drains what is in flight until the
//! deadline; what is not settled by then is left for redelivery.

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesOrdered, FuturesUnordered};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;

use super::processor::{Answered, Processor, Retry, Sent, Settlement};
use super::{CONNECTION_CHECK, PipelineError, Shutdown, stop_or, time_left};
use crate::connector::{MAX_BATCH, Source};
use crate::telemetry::Event;

/// Flights, each with its token and whether it is a retry's.
type Flights<T> = FuturesUnordered<BoxFuture<'static, (T, bool, Sent)>>;
type Retries<T> = FuturesUnordered<BoxFuture<'static, (T, Box<Retry>)>>;
/// Batches in the plugin chain, with their tokens, answered in the order they were taken.
type Chained<T> = FuturesOrdered<BoxFuture<'static, (Vec<T>, Answered)>>;

/// Batches a mapping may have in its chain at once: one the plugins work on while the mapping
/// sends and settles the one before.
const CHAINED: usize = 2;

/// Runs `source` through `processor` until shutdown (then drains) or a failure.
pub async fn drive<S: Source>(
    mut source: S,
    processor: &mut Processor,
    max_in_flight: usize,
    shutdown: &mut watch::Receiver<Shutdown>,
) -> Result<(), PipelineError> {
    let mut flights: Flights<S::Token> = FuturesUnordered::new();
    let mut retries: Retries<S::Token> = FuturesUnordered::new();
    let mut chained: Chained<S::Token> = FuturesOrdered::new();
    // Messages in `chained`: up to one batch of them comes on top of the window, so that
    // the plugins working on a batch do not shrink what is sent and awaits confirmation.
    let mut in_chain = 0;
    let mut watchdog = tokio::time::interval(CONNECTION_CHECK);
    processor.status().set_connected(true);
    let result = loop {
        processor
            .status()
            .counters
            .emit(Event::InFlight(source.in_flight()));
        let room = source.room(max_in_flight + in_chain.min(MAX_BATCH));
        tokio::select! {
            biased;
            _ = shutdown.changed() => break Ok(()),
            _ = watchdog.tick() => {
                if let Err(e) = source.check() {
                    break stop_or(shutdown, e.into());
                }
                if let Err(e) = processor.check_sinks() {
                    break Err(e);
                }
            }
            Some(first) = flights.next(), if !flights.is_empty() => {
                let settled = settle_ready(&mut source, processor, &mut flights, &mut retries, first).await;
                if let Err(e) = settled {
                    break stop_or(shutdown, e);
                }
            }
            Some((token, retry)) = retries.next(), if !retries.is_empty() => {
                if !source.is_current(&token) {
                    continue;
                }
                match processor.retry(retry).await {
                    Ok(flight) => flights.push(async move { (token, true, flight.await) }.boxed()),
                    Err(e) => break stop_or(shutdown, e),
                }
            }
            Some((tokens, answered)) = chained.next(), if !chained.is_empty() => {
                in_chain -= tokens.len();
                if let Err(e) = finish(&source, processor, &mut flights, tokens, answered).await {
                    // What the chain holds after a batch that was not all sent stays unsent:
                    // sending it would overtake the rest of that batch.
                    chained = FuturesOrdered::new();
                    break stop_or(shutdown, e);
                }
            }
            received = source.recv(room.min(MAX_BATCH)), if room > 0 && chained.len() < CHAINED => match received {
                Ok(received) => {
                    // Forgotten before what was consumed again is admitted.
                    for (topic, partition) in received.abandoned {
                        processor.abandon_partition(&topic, partition);
                    }
                    if received.messages.is_empty() {
                        continue;
                    }
                    let mut tokens = Vec::with_capacity(received.messages.len());
                    let mut batch = Vec::with_capacity(received.messages.len());
                    for c in received.messages {
                        tokens.push(c.token);
                        batch.push(c.message);
                    }
                    in_chain += tokens.len();
                    let admitted = processor.admit_batch(batch);
                    chained.push_back(async move { (tokens, admitted.answered().await) }.boxed());
                }
                Err(e) => break stop_or(shutdown, e.into()),
            }
        }
    };
    let stop = *shutdown.borrow();
    if result.is_ok() {
        // Send what the chain still works on, then drain what is in flight until the deadline.
        // A message that would need a retry, and every retry still waiting, is left
        // unsettled: it is delivered again.
        while let Ok(Some((tokens, answered))) =
            tokio::time::timeout_at(stop.deadline, chained.next()).await
        {
            let finished = tokio::time::timeout_at(
                stop.deadline,
                finish(&source, processor, &mut flights, tokens, answered),
            )
            .await;
            match finished {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "Left unsent at shutdown.");
                    break;
                }
                Err(_) => break,
            }
        }
        while let Ok(Some((token, _, sent))) =
            tokio::time::timeout_at(stop.deadline, flights.next()).await
        {
            if !source.is_current(&token) {
                continue;
            }
            match processor.settle(sent).await {
                Ok(Settlement::Done) => source.settled(token),
                Ok(Settlement::RetryAfter(..)) => {}
                Err(e) => tracing::debug!(error = %e, "Left unsettled at shutdown."),
            }
        }
        processor.flush(time_left(stop.deadline, std::time::Duration::from_secs(5)));
    }
    let deadline = if stop.stopping {
        stop.deadline
    } else {
        tokio::time::Instant::now() + super::CLOSE_TIMEOUT
    };
    match source.close(result.is_ok(), deadline).await {
        Err(e) if result.is_ok() => {
            tracing::warn!(error = %super::error_text(&e), "The source did not close cleanly.");
        }
        Err(e) => tracing::debug!(error = %e, "The source did not close cleanly."),
        Ok(()) => {}
    }
    result
}

/// Sends what the chain made of a batch, but for messages no longer current; its flights join
/// the others.
async fn finish<S: Source>(
    source: &S,
    processor: &mut Processor,
    flights: &mut Flights<S::Token>,
    tokens: Vec<S::Token>,
    answered: Answered,
) -> Result<(), PipelineError> {
    let current: Vec<bool> = tokens.iter().map(|t| source.is_current(t)).collect();
    let sent = processor
        .finish(answered, |i| current.get(i).copied().unwrap_or(false))
        .await?;
    for (token, flight) in tokens.into_iter().zip(sent) {
        flights.push(async move { (token, false, flight.await) }.boxed());
    }
    Ok(())
}

/// Settles `first` and every other flight already answered, then has the source acknowledge
/// or commit what settled.
async fn settle_ready<S: Source>(
    source: &mut S,
    processor: &mut Processor,
    flights: &mut Flights<S::Token>,
    retries: &mut Retries<S::Token>,
    first: (S::Token, bool, Sent),
) -> Result<(), PipelineError> {
    let mut next = Some(first);
    while let Some((token, retried, sent)) = next {
        settle_one(source, processor, retries, token, retried, sent).await?;
        next = flights.next().now_or_never().flatten();
    }
    // A retry waiting for its delay has nothing in flight: what settled meanwhile is
    // acknowledged now, not held back behind it.
    let idle = flights.is_empty();
    source.flush(idle).await?;
    Ok(())
}

async fn settle_one<S: Source>(
    source: &mut S,
    processor: &mut Processor,
    retries: &mut Retries<S::Token>,
    token: S::Token,
    retried: bool,
    sent: Sent,
) -> Result<(), PipelineError> {
    if !source.is_current(&token) {
        // Its partition was revoked meanwhile: the partition's new owner consumes it again.
        return Ok(());
    }
    // A message starts waiting on its first retry and stops when a retry settles it.
    match processor.settle(sent).await? {
        Settlement::Done => {
            if retried {
                source.retrying(&token, false);
            }
            source.settled(token);
        }
        Settlement::RetryAfter(delay, retry) => {
            if !retried {
                source.retrying(&token, true);
            }
            retries.push(
                async move {
                    tokio::time::sleep(delay).await;
                    (token, retry)
                }
                .boxed(),
            );
        }
    }
    Ok(())
}
