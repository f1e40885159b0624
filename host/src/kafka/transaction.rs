//! A mapping's Kafka transaction (`delivery = "exactly-once"`): one transactional producer per
//! mapping and replica, under a stable `transactional.id`, so that a restarted replica fences
//! the one it replaces and aborts what that one left open. Everything the mapping produces —
//! its outputs and its dead letters — and the offsets it consumed commit together or not at
//! all. A transaction begins with the first message sent after a commit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer as _;

use super::pool::Producer;
use super::{ClusterContext, client_config_with};
use crate::config::KafkaCluster;

/// Producer settings the cluster's `properties` may override.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("linger.ms", "5"),
    ("socket.timeout.ms", "10000"),
    // A replica that died with a transaction open holds back `read_committed` readers of its
    // partitions until the transaction times out, unless a replica with its id starts first;
    // a transaction also waits for a message's retries, which may each be up to 60 s apart.
    ("transaction.timeout.ms", "60000"),
];

/// How long initialising, committing or aborting may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// How long a commit (its offsets, then the commit itself) may take before the producer is
/// given up: librdkafka bounds the commit but not the offsets, whose request waits without end
/// for a group coordinator that died and does not come back (librdkafka 2.12,
/// confluentinc/librdkafka#5456).
const COMMIT_LIMIT: Duration = Duration::from_secs(2 * 30 + 5);

/// A transaction that did not commit.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The cluster refused it or did not answer within its timeout.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The commit did not return: the producer is stuck and is given up (the mapping
    /// restarts with a new one, which fences it and aborts the transaction).
    #[error("the Kafka transaction did not commit within {} s (the producer is replaced)", COMMIT_LIMIT.as_secs())]
    Stuck,
    /// No thread for the commit.
    #[error("cannot start a thread for the Kafka transaction's commit")]
    Thread(#[source] std::io::Error),
}

/// A mapping's transactional producer and whether a transaction is open.
pub struct Transaction {
    producer: Arc<Producer>,
    open: Mutex<bool>,
    id: String,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction").field("id", &self.id).finish()
    }
}

/// The `transactional.id` of a mapping on this replica: stable across restarts of the replica
/// (`BRIDGE_INSTANCE_ID`, else the host name — a Kubernetes pod's name), distinct between
/// replicas.
pub fn transactional_id(mapping: &str, group: &str) -> String {
    let instance = std::env::var("BRIDGE_INSTANCE_ID")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(host_name)
        .unwrap_or_else(|| "bridge".to_string());
    format!("bridge-host.{group}.{mapping}.{instance}")
}

/// The machine's host name (a pod's name on Kubernetes), whether or not `HOSTNAME` is exported.
fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    (!name.is_empty()).then_some(name)
}

impl Transaction {
    /// Makes the producer for `[kafka.NAME]` and registers `id` with the cluster's transaction
    /// coordinator, fencing an earlier producer with the same id.
    pub async fn start(name: &str, cluster: &KafkaCluster, id: &str) -> Result<Self, KafkaError> {
        let producer: Producer = client_config_with(cluster, PRODUCER_DEFAULTS)
            .set("transactional.id", id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create_with_context(ClusterContext::new(name))?;
        let producer = tokio::task::spawn_blocking(move || {
            producer.init_transactions(TIMEOUT).map(|()| producer)
        })
        .await
        .map_err(|_| KafkaError::Canceled)??;
        Ok(Transaction {
            producer: Arc::new(producer),
            open: Mutex::new(false),
            id: id.to_string(),
        })
    }

    /// The producer, to send in the transaction (after [`Transaction::begin`]).
    pub fn producer(&self) -> Arc<Producer> {
        Arc::clone(&self.producer)
    }

    /// Begins a transaction unless one is open.
    pub fn begin(&self) -> Result<(), KafkaError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if !*open {
            self.producer.begin_transaction()?;
            *open = true;
        }
        Ok(())
    }

    /// Commits the open transaction (beginning one if none is, so that consumed offsets
    /// commit even when nothing was produced) with `offsets` of the consumer group `group`.
    ///
    /// The blocking calls run on a thread of their own, awaited up to [`COMMIT_LIMIT`]: one
    /// that never returns is left behind with the producer, and the mapping restarts instead
    /// of waiting with it.
    pub async fn commit(
        &self,
        offsets: TopicPartitionList,
        group: ConsumerGroupMetadata,
    ) -> Result<(), CommitError> {
        self.begin()?;
        let producer = Arc::clone(&self.producer);
        let (answer, answered) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("kafka-txn-commit".into())
            .spawn(move || {
                let committed = producer
                    .send_offsets_to_transaction(&offsets, &group, TIMEOUT)
                    .and_then(|()| producer.commit_transaction(TIMEOUT));
                let _ = answer.send(committed);
            })
            .map_err(CommitError::Thread)?;
        match tokio::time::timeout(COMMIT_LIMIT, answered).await {
            Ok(Ok(committed)) => committed?,
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(transactional_id = %self.id, "The Kafka transaction did not commit in time; the producer is replaced.");
                return Err(CommitError::Stuck);
            }
        }
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = false;
        Ok(())
    }

    /// Aborts the open transaction, if any: what it produced is never seen by
    /// `read_committed` readers. Blocks the calling thread (a runtime worker, told so) for at
    /// most 30 s.
    pub fn abort(&self) -> Result<(), KafkaError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if *open {
            tokio::task::block_in_place(|| self.producer.abort_transaction(TIMEOUT))?;
            *open = false;
        }
        Ok(())
    }

    /// Whether the producer failed for good (fenced by another with its id, say).
    pub fn failed(&self) -> bool {
        self.producer.client().fatal_error().is_some()
    }
}
