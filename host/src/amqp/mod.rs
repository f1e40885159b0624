//! Everything about RabbitMQ (lapin): connections (TLS, credentials) and the tenants' pool of
//! them, the conversion between AMQP messages and plugin messages, the mappings' source (a
//! queue, manual acknowledgements) and sink (an exchange, publisher confirms).

mod convert;
pub mod dead_letters;
mod pool;
mod sink;
mod source;
pub mod topology;

pub use pool::{Connections, Role};
pub use sink::AmqpSink;
pub use source::AmqpSource;

pub use convert::{
    ConversionError, HEADER_ORDER, HEADER_TYPES, TOMBSTONE, add_property_headers,
    carries_properties, from_field_table, properties_from_message, to_field_table, to_message,
};

use std::path::PathBuf;

/// Why RabbitMQ takes nothing on connection `name` now, if it blocked it (`connection.blocked`:
/// a memory or disk alarm).
pub fn blocked_reason(name: &str, connection: &lapin::Connection) -> Option<String> {
    connection
        .status()
        .blocked()
        .then(|| format!("RabbitMQ `{name}` blocked publishing (a memory or disk alarm is on)"))
}

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Connection, ConnectionProperties};

use crate::config::{RabbitConnection, TlsFiles, redact_url};

/// Why a RabbitMQ connection could not be opened; the URL is shown without its password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The broker refused or could not be reached.
    #[error("cannot connect to RabbitMQ `{name}` at {url}: {source}")]
    Broker {
        /// The connection name.
        name: String,
        /// The URL without its password.
        url: String,
        /// What lapin said.
        #[source]
        source: Box<lapin::Error>,
    },
    /// The URL is not an AMQP URI.
    #[error("`rabbitmq.{name}.url` is not a valid AMQP URL: {source}")]
    Url {
        /// The connection name.
        name: String,
        /// What is wrong.
        #[source]
        source: crate::config::BadAmqpUrl,
    },
    /// A TLS file could not be read.
    #[error("`rabbitmq.{name}.tls.{key}`: cannot read {}: {source}", path.display())]
    TlsFile {
        /// The connection name.
        name: String,
        /// `ca_file`, `cert_file` or `key_file`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Opens a connection.
pub async fn connect(name: &str, conn: &RabbitConnection) -> Result<Connection, ConnectError> {
    connect_as(name, conn, &format!("bridge-host/{name}")).await
}

/// Opens a connection that the broker's management UI lists as `label`.
pub async fn connect_as(
    name: &str,
    conn: &RabbitConnection,
    label: &str,
) -> Result<Connection, ConnectError> {
    let uri = conn.uri().map_err(|source| ConnectError::Url {
        name: name.to_string(),
        source,
    })?;
    let props = ConnectionProperties::default().with_connection_name(label.to_string().into());
    let broker_error = |source| ConnectError::Broker {
        name: name.to_string(),
        url: redact_url(&conn.url),
        source: Box::new(source),
    };
    let tls = tls_config(name, conn.tls.as_ref())?;
    let runtime = lapin::runtime::default_runtime().map_err(broker_error)?;
    Connection::connect_uri_with_config(uri, props, tls, runtime)
        .await
        .map_err(broker_error)
}

/// The CA and client certificate of `tls`, read at each connect (a renewed certificate is
/// used on the next reconnect). Without a CA, the system trust store verifies the broker.
fn tls_config(name: &str, tls: Option<&TlsFiles>) -> Result<OwnedTLSConfig, ConnectError> {
    let Some(tls) = tls else {
        return Ok(OwnedTLSConfig::default());
    };
    let read = |key: &'static str, path: &PathBuf| {
        std::fs::read(path).map_err(|source| ConnectError::TlsFile {
            name: name.to_string(),
            key,
            path: path.clone(),
            source,
        })
    };
    let cert_chain = match &tls.ca_file {
        Some(p) => Some(String::from_utf8_lossy(&read("ca_file", p)?).into_owned()),
        None => None,
    };
    let identity = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
            pem: read("cert_file", cert)?,
            key: read("key_file", key)?,
        }),
        _ => None,
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}
