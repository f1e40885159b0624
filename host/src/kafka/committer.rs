//! The explicit offset commits of a shared consumer, sent one at a time on a blocking thread
//! and waited for there.
//!
//! An asynchronous commit is answered through the consumer's queue, so its answer waits until
//! the consumer is next polled — and the poller waits while a mapping's queue is full. Sending
//! the next commit only after that answer held commits back by seconds at high rates (a crash
//! then redelivered thousands of messages); sending it regardless lets commits outpace the
//! coordinator's answers and queue the group's heartbeats behind them. A synchronous commit is
//! answered on a queue of its own: the committer sends one, waits for its answer off the
//! runtime, and sends the next with every offset stored meanwhile. Requests made while a commit
//! is under way go out together in the next.

use std::sync::{Arc, Weak};

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::sync::Notify;

/// Commits the offsets stored in a consumer when asked; stops when the consumer is gone.
pub(super) struct Committer {
    wanted: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Committer {
    /// A committer for `consumer`, which it does not keep alive.
    pub(super) fn start<C, X>(consumer: Weak<C>, group: String) -> Self
    where
        C: Consumer<X> + Send + Sync + 'static,
        X: ConsumerContext + 'static,
    {
        let wanted = Arc::new(Notify::new());
        let task = tokio::spawn(commit_when_asked(consumer, Arc::clone(&wanted), group));
        Committer { wanted, task }
    }

    /// Asks for a commit of every offset stored: now, or right after the one under way.
    pub(super) fn request(&self) {
        self.wanted.notify_one();
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Commits every offset stored in `consumer`, waiting for the answer. Nothing stored is not
/// an error.
pub(super) fn commit_stored<C, X>(consumer: &C) -> Result<(), KafkaError>
where
    C: Consumer<X>,
    X: ConsumerContext,
{
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
        other => other,
    }
}

async fn commit_when_asked<C, X>(consumer: Weak<C>, wanted: Arc<Notify>, group: String)
where
    C: Consumer<X> + Send + Sync + 'static,
    X: ConsumerContext + 'static,
{
    loop {
        wanted.notified().await;
        let Some(consumer) = consumer.upgrade() else {
            return;
        };
        let committed = tokio::task::spawn_blocking(move || commit_stored(&*consumer)).await;
        match committed {
            Ok(Ok(())) => {}
            // A rebalance under way, the coordinator moving: the next commit, or the periodic
            // one, carries these offsets.
            Ok(Err(e)) => tracing::debug!(group, error = %e, "Offset commit failed."),
            Err(e) => tracing::debug!(group, error = %e, "Offset commit not sent."),
        }
    }
}
