//! The topics a mapping uses on a cluster: checked, and created where the mapping has
//! `declare`.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use super::ClusterContext;
use crate::config::{KafkaCluster, Mode, Need, Object, Report};

/// How long a cluster may take to answer before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks the topics of `needs` on `[kafka.CLUSTER]`; in [`Mode::Declare`], creates the
/// missing ones whose mapping has `declare`.
pub async fn ensure(
    name: &str,
    settings: &KafkaCluster,
    needs: &[Need],
    mode: Mode,
    report: &mut Report,
) {
    let cluster = name;
    let client = super::client_config(settings);
    // librdkafka's metadata request blocks: keep it off the async workers.
    let probe = client.clone();
    let context = ClusterContext::new(cluster);
    let existing = tokio::task::spawn_blocking(move || {
        let md = probe
            .create_with_context::<_, BaseConsumer<ClusterContext>>(context)?
            .fetch_metadata(None, CONNECT_TIMEOUT)?;
        Ok::<_, rdkafka::error::KafkaError>(
            md.topics()
                .iter()
                .filter(|t| t.error().is_none())
                .map(|t| t.name().to_string())
                .collect::<std::collections::HashSet<_>>(),
        )
    })
    .await;
    let existing = match existing {
        Ok(Ok(names)) => names,
        Ok(Err(e)) => {
            report
                .unreachable
                .push(format!("`kafka.{cluster}`: cannot fetch metadata: {e}"));
            return;
        }
        Err(e) => {
            report
                .unreachable
                .push(format!("`kafka.{cluster}`: metadata request failed: {e}"));
            return;
        }
    };
    let exists = |topic: &str| existing.contains(topic);
    let mut create = Vec::new();
    for need in needs {
        let Object::Topic(topic) = &need.object else {
            continue;
        };
        if exists(topic) {
            continue;
        }
        match (&need.declare, mode) {
            (Some(d), Mode::Declare) => create.push((topic, d, &need.at)),
            (Some(_), Mode::Inspect) => {}
            (None, _) => report.missing.push(format!(
                "{}: topic `{topic}` does not exist on `{cluster}` (create it, or set `declare = true` on the mapping)",
                need.at
            )),
        }
    }
    if create.is_empty() {
        return;
    }
    let admin: AdminClient<ClusterContext> =
        match client.create_with_context(ClusterContext::new(cluster)) {
            Ok(a) => a,
            Err(e) => {
                report.unreachable.push(format!(
                    "`kafka.{cluster}`: cannot create an admin client: {e}"
                ));
                return;
            }
        };
    let topics: Vec<NewTopic<'_>> = create
        .iter()
        .map(|(t, d, _)| {
            NewTopic::new(
                t,
                d.partitions,
                TopicReplication::Fixed(d.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    match admin.create_topics(&topics, &options).await {
        Err(e) => report
            .unreachable
            .push(format!("`kafka.{cluster}`: cannot create topics: {e}")),
        Ok(results) => {
            for (result, (topic, _, at)) in results.into_iter().zip(create) {
                match result {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                        report
                            .declared
                            .push(format!("topic `{topic}` on `{cluster}`"));
                    }
                    Err((_, e)) => report.missing.push(format!(
                        "{at}: cannot create topic `{topic}` on `{cluster}`: {e}"
                    )),
                }
            }
        }
    }
}
