//! A tenant's RabbitMQ connections, shared by its mappings: one per connection name and role
//! (consuming, publishing), with a channel per mapping. Nothing is shared across tenants.
//! Publishing and consuming use separate connections, as RabbitMQ advises: a broker under a
//! resource alarm blocks publishing connections, and consumers' acknowledgements must still get
//! through. A connection lives while a mapping uses it; a mapping that restarts after a lost
//! connection gets a fresh one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

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

/// The live connection of one tenant, connection name and role, if any, with its settings.
type ConnectionSlot = Option<(RabbitConnection, Weak<lapin::Connection>)>;

/// The slots of every tenant, connection name and role.
type Slots = HashMap<(String, String, Role), Arc<tokio::sync::Mutex<ConnectionSlot>>>;

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
    ) -> Result<Arc<lapin::Connection>, ConnectError> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let key = (tenant.to_string(), name.to_string(), role);
            Arc::clone(slots.entry(key).or_default())
        };
        // Mappings starting together wait for one connect instead of each opening their own.
        let mut slot = slot.lock().await;
        if let Some((settings, connection)) = &*slot
            && settings == conn
            && let Some(connection) = connection.upgrade()
            && connection.status().connected()
        {
            return Ok(connection);
        }
        let label = format!("bridge-host/{name}/{tenant}/{}", role.as_str());
        let connection = Arc::new(super::connect_as(name, conn, &label).await?);
        *slot = Some((conn.clone(), Arc::downgrade(&connection)));
        Ok(connection)
    }
}
