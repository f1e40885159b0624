//! Whether each Kafka cluster answers: a metadata request every few seconds, for readiness
//! (librdkafka reconnects on its own; this only observes).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::{ClusterContext, client_config};
use crate::config::KafkaCluster;

/// Asks every cluster of `clusters` for metadata every `every`, telling `reachable` whether it
/// answered. Runs until dropped.
pub async fn watch(
    clusters: Vec<(String, KafkaCluster)>,
    every: Duration,
    reachable: impl Fn(&str, bool),
) {
    let mut clients = Vec::new();
    for (name, cluster) in clusters {
        match client_config(&cluster)
            .create_with_context::<_, BaseConsumer<ClusterContext>>(ClusterContext::new(&name))
        {
            Ok(c) => clients.push((name, Arc::new(c))),
            Err(e) => {
                tracing::error!(cluster = %name, error = %e, "Cannot create a Kafka client for the readiness probe.");
                reachable(&name, false);
            }
        }
    }
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        #[cfg(debug_assertions)]
        if crate::test_hooks::fires(crate::test_hooks::Hook::ProbePanic, None) {
            panic!("test hook: the Kafka readiness probe panics");
        }
        for (name, client) in &clients {
            let client = Arc::clone(client);
            // librdkafka's metadata request blocks: keep it off the async workers.
            let up = tokio::task::spawn_blocking(move || {
                client.fetch_metadata(None, Duration::from_secs(2)).is_ok()
            })
            .await
            .unwrap_or(false);
            reachable(name, up);
        }
    }
}
