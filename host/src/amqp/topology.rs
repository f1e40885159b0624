//! The queues, exchanges and bindings a mapping uses on a RabbitMQ connection: checked, and
//! declared where the mapping has `declare`.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};

use crate::config::{
    Declare, Mode, Need, Object, QueueArgument, QueueType, RabbitConnection, Report,
};

/// Why an object could not be checked or declared.
#[derive(Debug, thiserror::Error)]
enum DeclareError {
    /// The broker refused (a missing object, different arguments, …).
    #[error(transparent)]
    Broker(#[from] lapin::Error),
    /// No channel to ask on.
    #[error(transparent)]
    Channel(#[from] Unreachable),
}

/// Why the broker could not be asked at all.
#[derive(Debug, thiserror::Error)]
enum Unreachable {
    /// The connection failed.
    #[error("`rabbitmq.{name}`: {source}")]
    Connect {
        /// The connection's name.
        name: String,
        /// Why.
        #[source]
        source: super::ConnectError,
    },
    /// The connection did not open in time.
    #[error("`rabbitmq.{name}`: no connection within {} s", CONNECT_TIMEOUT.as_secs())]
    Timeout {
        /// The connection's name.
        name: String,
    },
    /// The connection opened no channel.
    #[error("`rabbitmq.{name}`: cannot open a channel: {source}")]
    Channel {
        /// The connection's name.
        name: String,
        /// What lapin said.
        #[source]
        source: lapin::Error,
    },
}

/// How long a broker may take to answer before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks the objects of `needs` on `[rabbitmq.NAME]`; in [`Mode::Declare`], declares the
/// missing ones whose mapping has `declare`.
pub async fn ensure(
    name: &str,
    settings: &RabbitConnection,
    needs: &[Need],
    mode: Mode,
    report: &mut Report,
) {
    let mut connection = match Channels::open(name, settings).await {
        Ok(c) => c,
        Err(problem) => {
            report.unreachable.push(problem.to_string());
            return;
        }
    };
    // Queues and exchanges before bindings (the list keeps each mapping's order).
    let (bindings, objects): (Vec<&Need>, Vec<&Need>) = needs
        .iter()
        .partition(|n| matches!(n.object, Object::Binding(..)));
    for need in objects.into_iter().chain(bindings) {
        let declare = need.declare.as_ref().filter(|_| mode == Mode::Declare);
        if matches!(
            (&need.object, declare),
            (Object::Topic(_), _) | (Object::Binding(..), None)
        ) {
            continue;
        }
        // A failed declare closes its channel: one channel per object.
        let channel = match connection.channel().await {
            Ok(c) => c,
            Err(problem) => {
                report.unreachable.push(problem.to_string());
                break;
            }
        };
        let (what, result) = match (&need.object, declare) {
            (Object::Binding(queue, exchange, key), Some(_)) => (
                format!("binding of queue `{queue}` to exchange `{exchange}` with `{key}`"),
                channel
                    .queue_bind(
                        queue.as_str().into(),
                        exchange.as_str().into(),
                        key.as_str().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map(|_| true)
                    .map_err(DeclareError::from),
            ),
            (Object::Binding(..), None) | (Object::Topic(_), _) => continue,
            (Object::Queue(queue), declare) => (
                format!("queue `{queue}`"),
                declare_queue(&mut connection, channel.clone(), queue, declare).await,
            ),
            (Object::Exchange(exchange), declare) => (
                format!("exchange `{exchange}`"),
                declare_exchange(&mut connection, channel.clone(), exchange, declare).await,
            ),
        };
        // Closed before the next one: channels left closing when the connection closes
        // make lapin log a connection error.
        close(channel).await;
        match result {
            Ok(false) => {}
            Ok(true) => report.declared.push(format!("{what} on `{name}`")),
            Err(e) if need.declare.is_some() && mode == Mode::Inspect => {
                tracing::debug!(at = %need.at, error = %e, "Missing; the mapping declares it at startup.");
            }
            Err(e) => report.missing.push(format!(
                "{}: {what} is not usable on `{name}`: {e}{}",
                need.at,
                if need.declare.is_none() {
                    " (create it, or set `declare = true` on the mapping)"
                } else {
                    ""
                }
            )),
        }
    }
    connection.close().await;
}

/// Channels for checking and declaring, on a connection replaced every
/// [`CHANNELS_PER_CONNECTION`] channels: a failed passive declare (an object that is missing)
/// has the broker close its channel, and lapin does not give the numbers of such channels out
/// again, so one connection would run out at `channel_max` (2 047 by default) after about a
/// thousand missing objects however few channels are open.
struct Channels<'a> {
    name: &'a str,
    settings: &'a RabbitConnection,
    connection: lapin::Connection,
    opened: usize,
}

/// Channels opened on one connection before the next one is used.
const CHANNELS_PER_CONNECTION: usize = 500;

impl<'a> Channels<'a> {
    async fn open(name: &'a str, settings: &'a RabbitConnection) -> Result<Self, Unreachable> {
        Ok(Channels {
            name,
            settings,
            connection: connect(name, settings).await?,
            opened: 0,
        })
    }

    /// A new channel, on a new connection once this one opened its share.
    async fn channel(&mut self) -> Result<lapin::Channel, Unreachable> {
        if self.opened >= CHANNELS_PER_CONNECTION {
            let next = connect(self.name, self.settings).await?;
            hang_up(std::mem::replace(&mut self.connection, next)).await;
            self.opened = 0;
        }
        self.opened += 1;
        self.connection
            .create_channel()
            .await
            .map_err(|source| Unreachable::Channel {
                name: self.name.to_string(),
                source,
            })
    }

    async fn close(self) {
        hang_up(self.connection).await;
    }
}

/// Connects to `[rabbitmq.NAME]` within [`CONNECT_TIMEOUT`].
async fn connect(
    name: &str,
    settings: &RabbitConnection,
) -> Result<lapin::Connection, Unreachable> {
    match tokio::time::timeout(CONNECT_TIMEOUT, super::connect(name, settings)).await {
        Ok(connected) => connected.map_err(|source| Unreachable::Connect {
            name: name.to_string(),
            source,
        }),
        Err(_) => Err(Unreachable::Timeout {
            name: name.to_string(),
        }),
    }
}

async fn hang_up(connection: lapin::Connection) {
    let _ = connection.close(200, "topology checked".into()).await;
}

/// `Ok(true)` if the queue was created, `Ok(false)` if it existed.
async fn declare_queue(
    connection: &mut Channels<'_>,
    channel: lapin::Channel,
    queue: &str,
    declare: Option<&Declare>,
) -> Result<bool, DeclareError> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let Err(missing) = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
    else {
        return Ok(false);
    };
    let Some(d) = declare else {
        return Err(missing.into());
    };
    let options = QueueDeclareOptions {
        durable: d.durable || d.queue_type != QueueType::Classic,
        ..QueueDeclareOptions::default()
    };
    let channel = connection.channel().await?;
    let declared = channel
        .queue_declare(queue.into(), options, queue_arguments(d))
        .await
        .map(|_| true)
        .map_err(DeclareError::from);
    close(channel).await;
    declared
}

/// Closes a channel this module opened (a failed declare has closed it already): thousands
/// of mappings must not run the connection out of channels (`channel_max`).
async fn close(channel: lapin::Channel) {
    if channel.status().connected() {
        let _ = channel.close(200, "declared".into()).await;
    }
}

/// `x-queue-type` and the declared arguments.
fn queue_arguments(d: &Declare) -> FieldTable {
    let mut table = FieldTable::default();
    table.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(d.queue_type.as_str().into()),
    );
    for (name, value) in &d.arguments {
        let value = match value {
            QueueArgument::Integer(n) => AMQPValue::LongLongInt(*n),
            QueueArgument::Text(t) => AMQPValue::LongString(t.as_str().into()),
            QueueArgument::Flag(b) => AMQPValue::Boolean(*b),
        };
        table.insert(name.as_str().into(), value);
    }
    table
}

/// `Ok(true)` if the exchange was created, `Ok(false)` if it existed.
async fn declare_exchange(
    connection: &mut Channels<'_>,
    channel: lapin::Channel,
    exchange: &str,
    declare: Option<&Declare>,
) -> Result<bool, DeclareError> {
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..ExchangeDeclareOptions::default()
    };
    let Err(missing) = channel
        .exchange_declare(
            exchange.into(),
            lapin::ExchangeKind::Direct,
            passive,
            FieldTable::default(),
        )
        .await
    else {
        return Ok(false);
    };
    let Some(d) = declare else {
        return Err(missing.into());
    };
    let options = ExchangeDeclareOptions {
        durable: d.durable,
        ..ExchangeDeclareOptions::default()
    };
    let kind = lapin::ExchangeKind::Custom(d.exchange_type.as_str().to_string());
    let channel = connection.channel().await?;
    let declared = channel
        .exchange_declare(exchange.into(), kind, options, FieldTable::default())
        .await
        .map(|_| true)
        .map_err(DeclareError::from);
    close(channel).await;
    declared
}
