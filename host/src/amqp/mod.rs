//! RabbitMQ (lapin): connections and the conversion between AMQP messages and plugin messages.

mod convert;

pub use convert::{
    TOMBSTONE, from_field_table, properties_from_message, to_field_table, to_message,
};

use std::path::PathBuf;

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
    let mut url = conn.url.clone();
    if let Some(vhost) = &conn.vhost {
        let (base, _) = split_vhost(&url);
        url = format!("{base}/{}", encode_vhost(vhost));
    }
    if let Some(hb) = conn.heartbeat_secs {
        url.push_str(if url.contains('?') { "&" } else { "?" });
        url.push_str(&format!("heartbeat={hb}"));
    }
    let props =
        ConnectionProperties::default().with_connection_name(format!("bridge-host/{name}").into());
    let broker_error = |source| ConnectError::Broker {
        name: name.to_string(),
        url: redact_url(&conn.url),
        source: Box::new(source),
    };
    let tls = tls_config(name, conn.tls.as_ref())?;
    let runtime = lapin::runtime::default_runtime().map_err(broker_error)?;
    Connection::connect_with_config(&url, props, tls, runtime)
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

fn split_vhost(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => (&url[..after_scheme + i], &url[after_scheme + i + 1..]),
        None => (url, ""),
    }
}

fn encode_vhost(vhost: &str) -> String {
    vhost.replace('%', "%25").replace('/', "%2f")
}
