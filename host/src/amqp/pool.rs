//! A tenant's RabbitMQ connections, shared by its mappings: one per connection name and role
//! (consuming, publishing), with a channel per mapping. Nothing is shared across tenants.
//! Publishing and consuming use separate connections, as RabbitMQ advises: a broker under a
//! resource alarm blocks publishing connections, and consumers' acknowledgements must still get
//! through. A connection lives while a mapping uses it; a mapping that restarts after a lost
//! connection gets a fresh one. What the broker was found to refuse ([`Learned`]) outlives the
//! connections, until the connection's settings change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::ConnectError;
use crate::config::RabbitConnection;

/// What a RabbitMQ connection is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Consuming queues (sources).
    Consume,
    /// Publishing (targets, dead letters).
    Publish,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Consume => "consume",
            Role::Publish => "publish",
        }
    }
}

/// A tenant's connection, shared by its mappings, and when a publish was last written on it.
#[derive(Debug)]
pub struct Pooled {
    connection: lapin::Connection,
    /// When a publish on any channel of the connection was last written (lapin writes them
    /// from one queue per connection).
    pub writes: Progress,
    /// What the broker was found to refuse, learned by this connection or an earlier one of
    /// the same tenant, name, role and settings.
    pub learned: Arc<Learned>,
}

/// Limits of a broker that no protocol message announces, learned from its refusals.
#[derive(Debug, Default)]
pub struct Learned {
    /// The largest message body the broker takes (its `max_message_size`); 0 while unknown.
    max_message: AtomicUsize,
}

impl Learned {
    /// The largest message body the broker takes, once known.
    pub fn max_message(&self) -> Option<usize> {
        Some(self.max_message.load(Ordering::Relaxed)).filter(|m| *m > 0)
    }

    /// The broker said it takes no body larger than `bytes`.
    pub fn set_max_message(&self, bytes: usize) {
        self.max_message.store(bytes, Ordering::Relaxed);
    }

    /// Forgets it all: the connection's settings changed (another broker, perhaps).
    fn forget(&self) {
        self.max_message.store(0, Ordering::Relaxed);
    }
}

impl std::ops::Deref for Pooled {
    type Target = lapin::Connection;

    fn deref(&self) -> &lapin::Connection {
        &self.connection
    }
}

/// When something last happened: milliseconds since a start.
#[derive(Debug)]
pub struct Progress {
    start: std::time::Instant,
    last_ms: AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Progress {
            start: std::time::Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// It happened now.
    pub fn made(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// Whether it happened within the last `span`.
    pub fn within(&self, span: Duration) -> bool {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last) < span
    }
}

/// The live connection of one tenant, connection name and role, if any, with its settings.
type ConnectionSlot = Option<(RabbitConnection, Weak<Pooled>)>;

/// One tenant, connection name and role: its live connection and what its connections learned.
#[derive(Debug, Default)]
struct Slot {
    live: tokio::sync::Mutex<ConnectionSlot>,
    learned: Arc<Learned>,
}

/// The slots of every tenant, connection name and role.
type Slots = HashMap<(String, String, Role), Arc<Slot>>;

/// Every tenant's live RabbitMQ connections, by tenant, connection name and role.
#[derive(Debug, Default)]
pub struct Connections {
    slots: Mutex<Slots>,
}

impl Connections {
    /// The connection of `tenant` to `[rabbitmq.NAME]` for `role`: the open one, or a new one
    /// (it closes when the last mapping using it lets go).
    pub async fn connection(
        &self,
        tenant: &str,
        name: &str,
        conn: &RabbitConnection,
        role: Role,
    ) -> Result<Arc<Pooled>, ConnectError> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let key = (tenant.to_string(), name.to_string(), role);
            Arc::clone(slots.entry(key).or_default())
        };
        // Mappings starting together wait for one connect instead of each opening their own.
        let mut live = slot.live.lock().await;
        if let Some((settings, connection)) = &*live
            && settings == conn
            && let Some(connection) = connection.upgrade()
            && connection.status().connected()
        {
            return Ok(connection);
        }
        if live.as_ref().is_some_and(|(settings, _)| settings != conn) {
            slot.learned.forget();
        }
        let label = format!("bridge-host/{name}/{tenant}/{}", role.as_str());
        let connection = Arc::new(Pooled {
            connection: super::connect_as(name, conn, &label).await?,
            writes: Progress::new(),
            learned: Arc::clone(&slot.learned),
        });
        *live = Some((conn.clone(), Arc::downgrade(&connection)));
        Ok(connection)
    }
}
