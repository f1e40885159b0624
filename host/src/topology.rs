//! The topics, queues and exchanges the mappings use: checked at startup and by
//! `check --connect`, and created when a mapping asks for it with `declare`. What each broker
//! checks and creates lives in its folder.

use crate::config::{BridgeConfig, Needs};
pub use crate::config::{Mode, Report};

/// Checks every object the mappings use and, in [`Mode::Declare`], creates the missing ones
/// whose mapping has `declare`.
pub async fn ensure(config: &BridgeConfig, mode: Mode) -> Report {
    let needs = Needs::of(config);
    let mut report = Report::default();
    for (cluster, list) in &needs.kafka {
        crate::kafka::topology::ensure(cluster, &config.kafka[cluster], list, mode, &mut report)
            .await;
    }
    for (conn, list) in &needs.amqp {
        crate::amqp::topology::ensure(conn, &config.rabbitmq[conn], list, mode, &mut report).await;
    }
    report
}
