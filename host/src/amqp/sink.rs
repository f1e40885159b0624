//! A mapping's RabbitMQ target: an exchange, published to on a channel of its own (publisher
//! confirms, `mandatory`) over its tenant's publishing connection. Publishing returns at once
//! with a future of the confirm, so many messages are in flight at a time.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};

use super::pool::{Connections, Pooled, Role};
use crate::config::{AmqpTarget, RabbitConnection, TargetAllowlist};
use crate::connector::{
    BoxFuture, Pending, Refusal, Rejected, Sink, SinkError, refused, source_name,
};
use crate::plugin::{FailureKind, Message};

/// How long writing a publish may take before the connection counts as lost.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes a mapping's messages to RabbitMQ.
pub struct AmqpSink {
    /// A channel in confirm mode, the mapping's own.
    channel: Arc<lapin::Channel>,
    /// The tenant's publishing connection, shared with its other mappings.
    connection: Arc<Pooled>,
    /// Exchange, default routing key, persistence.
    target: AmqpTarget,
    /// The exchanges its tenant allows, for those a plugin or a header chose.
    allowlist: TargetAllowlist,
    /// Exchanges a plugin chose that the broker was found to have.
    known: Mutex<HashSet<String>>,
    /// Carried `amqp_*` headers become properties again.
    properties_from_headers: bool,
}

impl AmqpSink {
    /// Opens a confirming channel on `tenant`'s publishing connection to `[rabbitmq.NAME]`.
    pub async fn open(
        connections: &Connections,
        tenant: &str,
        conn: &RabbitConnection,
        target: &AmqpTarget,
        allowlist: TargetAllowlist,
        properties_from_headers: bool,
    ) -> Result<Self, SinkError> {
        let connection = connections
            .connection(tenant, &target.connection, conn, Role::Publish)
            .await
            .map_err(|e| SinkError::new("cannot connect", e))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| SinkError::new("cannot open a channel", e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| SinkError::new("cannot enable publisher confirms", e))?;
        Ok(AmqpSink {
            channel: Arc::new(channel),
            connection,
            target: target.clone(),
            allowlist,
            known: Mutex::new(HashSet::new()),
            properties_from_headers,
        })
    }

    /// Whether a plugin-chosen `exchange` may be published to: inside the tenant's allowlist,
    /// and there (a publish to a missing exchange would close the mapping's channel). The
    /// broker is asked once per exchange, on a channel of its own.
    async fn check_chosen(&self, exchange: &str) -> Result<Option<Rejected>, SinkError> {
        if let Err(outside) = self.allowlist.exchange(exchange) {
            return Ok(Some(Rejected::because(Refusal::NotAllowed, outside)));
        }
        let known = |k: &Mutex<HashSet<String>>| {
            k.lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(exchange)
        };
        if exchange.is_empty() || known(&self.known) {
            return Ok(None);
        }
        // Only the broker's answer can take long.
        let probing = async {
            let probe = self
                .connection
                .create_channel()
                .await
                .map_err(|e| SinkError::new("cannot open a channel", e))?;
            let passive = ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            };
            let declared = probe
                .exchange_declare(
                    exchange.into(),
                    lapin::ExchangeKind::Direct,
                    passive,
                    Default::default(),
                )
                .await;
            Ok::<_, SinkError>((probe, declared))
        };
        let (probe, declared) = tokio::time::timeout(WRITE_TIMEOUT, probing)
            .await
            .map_err(|_| {
                SinkError::msg(format!(
                    "checking exchange `{exchange}` took more than {} s",
                    WRITE_TIMEOUT.as_secs()
                ))
            })??;
        match declared {
            Ok(()) => {
                let _ = probe.close(200, "OK".into()).await;
                self.known
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(exchange.to_string());
                Ok(None)
            }
            // 404 NOT_FOUND: the broker closed the probe's channel.
            Err(e) if is_not_found(&e) => Ok(Some(Rejected::because(
                Refusal::NoRoute,
                format!("exchange `{exchange}` does not exist: {e}"),
            ))),
            Err(e) => Err(SinkError::new(
                format!("cannot check exchange `{exchange}`"),
                e,
            )),
        }
    }

    async fn publish(&self, msg: &Message) -> Result<Pending, SinkError> {
        let exchange = msg
            .amqp_target
            .exchange
            .clone()
            .unwrap_or_else(|| self.target.exchange.clone());
        let routing_key = msg
            .amqp_target
            .routing_key
            .clone()
            .or_else(|| self.target.routing_key.clone())
            .or_else(|| source_name(msg))
            .unwrap_or_default();
        if routing_key.len() > 255 || exchange.len() > 255 {
            let detail = format!(
                "routing key or exchange longer than 255 bytes (`{exchange}` / {} bytes)",
                routing_key.len()
            );
            return Ok(refused(FailureKind::TargetRejected, detail));
        }
        if let Some(chosen) = &msg.amqp_target.exchange
            && *chosen != self.target.exchange
            && let Some(rejected) = self.check_chosen(chosen).await?
        {
            return Ok(Box::pin(async move { Err(rejected) }));
        }
        let props = match super::properties_from_message(
            msg,
            self.target.persistent,
            self.properties_from_headers,
        ) {
            Ok(props) => props,
            Err(e) => return Ok(refused(FailureKind::ConversionError, e.to_string())),
        };
        let payload = msg.payload.clone().unwrap_or_default();
        if let Some(max) = self.connection.learned.max_message()
            && payload.len() > max
        {
            return Ok(refused(
                FailureKind::TargetRejected,
                too_large(payload.len(), max),
            ));
        }
        // Queued now, in the order of the sends (the first poll pushes the frames to the
        // connection's writer); the write and the confirm are awaited with the flight, so a
        // batch goes out in one wake of the writer rather than one round trip a message.
        let channel = Arc::clone(&self.channel);
        let size = payload.len();
        let (ex, rk) = (exchange.clone(), routing_key.clone());
        let mut publish = Box::pin(async move {
            let options = BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            };
            channel
                .basic_publish(ex.into(), rk.into(), options, &payload, props)
                .await
        });
        let queued = futures_util::poll!(&mut publish);
        let connection = Arc::clone(&self.connection);
        Ok(Box::pin(async move {
            let written = match queued {
                std::task::Poll::Ready(written) => written,
                // A write on a connection that died without lapin noticing may never
                // complete: a publish stuck while nothing else was written on its connection
                // for as long counts as a lost connection, unless the broker blocked
                // publishing (a resource alarm): then it waits, and the wait counts as a
                // sign of life. (A slow link writing a long queue is not stuck.)
                std::task::Poll::Pending => loop {
                    match tokio::time::timeout(WRITE_TIMEOUT, &mut publish).await {
                        Ok(written) => break written,
                        Err(_) if connection.status().blocked() => connection.writes.made(),
                        Err(_) if connection.writes.within(WRITE_TIMEOUT) => continue,
                        Err(_) => {
                            return Err(Rejected::transient(
                                format!(
                                    "publish to exchange `{exchange}` not written within {} s",
                                    WRITE_TIMEOUT.as_secs()
                                ),
                                None,
                            ));
                        }
                    }
                },
            };
            if written.is_ok() {
                connection.writes.made();
            }
            let confirm = written.map_err(|e| {
                lost(
                    &connection,
                    size,
                    format!("publish to exchange `{exchange}` failed"),
                    e,
                )
            })?;
            match confirm.await {
                Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => Ok(()),
                Ok(Confirmation::Ack(Some(returned))) => Err(Rejected::refused(
                    FailureKind::Unroutable,
                    format!(
                        "exchange `{exchange}` returned the message with routing key `{routing_key}`: {} {}",
                        returned.reply_code, returned.reply_text
                    ),
                )),
                Ok(Confirmation::Nack(_)) => Err(Rejected::refused(
                    FailureKind::TargetRejected,
                    format!("RabbitMQ nacked the publish to exchange `{exchange}`"),
                )),
                Err(e) => Err(lost(
                    &connection,
                    size,
                    "lost the publisher confirm".to_string(),
                    e,
                )),
            }
        }))
    }
}

impl Sink for AmqpSink {
    fn send<'a>(&'a self, msg: &'a Message) -> BoxFuture<'a, Result<Pending, SinkError>> {
        Box::pin(self.publish(msg))
    }

    /// RabbitMQ blocks publishers while one of its resource alarms (memory, disk) is on.
    fn blocked(&self) -> Option<String> {
        super::blocked_reason(&self.target.connection, &self.connection)
    }

    fn wait_unblocked(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            while self.connection.status().blocked() && self.connection.status().connected() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    /// A channel closes with its connection.
    fn is_connected(&self) -> bool {
        self.channel.status().connected()
    }

    /// Confirms are awaited through their futures.
    fn flush(&self, _timeout: Duration) {}

    /// Closes the channel; the shared connection closes when its last mapping lets go.
    fn close(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = tokio::time::timeout(
                timeout,
                self.channel.close(200, "bridge mapping stopping".into()),
            )
            .await;
        })
    }
}

/// A publish of a `size`-byte body that failed with `e` (its channel or connection closed): a
/// lost connection, but for the message the broker closed the channel on because it is larger
/// than the broker's `max_message_size`. That limit is learned from the broker's words, so that
/// the message, consumed again after the mapping restarts, is refused before it is sent.
fn lost(connection: &Pooled, size: usize, what: String, e: lapin::Error) -> Rejected {
    if let Some(max) = max_message_size(&e.to_string()) {
        connection.learned.set_max_message(max);
        if size > max {
            return Rejected::refused(FailureKind::TargetRejected, too_large(size, max));
        }
    }
    Rejected::transient(format!("{what}: {e}"), Some(Box::new(e)))
}

/// The limit in RabbitMQ's `PRECONDITION_FAILED - message size N is larger than configured
/// max size M` (RabbitMQ 3.8 and later; `… larger than max size M` at its hard maximum).
fn max_message_size(error: &str) -> Option<usize> {
    let (_, rest) = error.split_once("larger than ")?;
    let rest = rest.strip_prefix("configured ").unwrap_or(rest);
    let rest = rest.strip_prefix("max size ")?;
    let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok().filter(|m| *m > 0)
}

fn too_large(size: usize, max: usize) -> String {
    format!(
        "the message body takes {size} bytes, more than the {max} RabbitMQ takes (its `max_message_size`)"
    )
}

/// Whether the broker answered 404 NOT_FOUND.
fn is_not_found(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if p.get_id() == 404)
}

#[cfg(test)]
mod tests {
    use super::max_message_size;

    #[test]
    fn the_brokers_message_size_limit_is_read_from_its_refusal() {
        let said = "protocol error: AMQP soft error: PRECONDITION_FAILED - message size 204800 is larger than configured max size 65536";
        assert_eq!(max_message_size(said), Some(65536));
        let at_the_hard_maximum =
            "PRECONDITION_FAILED - message size 600000000 is larger than max size 536870912";
        assert_eq!(max_message_size(at_the_hard_maximum), Some(536870912));
        assert_eq!(
            max_message_size("PRECONDITION_FAILED - unknown delivery tag 7"),
            None
        );
        assert_eq!(
            max_message_size("larger than configured max size of nothing"),
            None
        );
    }
}
