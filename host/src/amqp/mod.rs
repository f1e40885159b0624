//! RabbitMQ (lapin): connections and the conversion between AMQP messages and plugin messages.

mod convert;

pub use convert::{
    TOMBSTONE, from_field_table, properties_from_message, to_field_table, to_message,
};

use lapin::{Connection, ConnectionProperties};

use crate::config::{RabbitConnection, redact_url};

/// Why a RabbitMQ connection could not be opened; the URL is shown without its password.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to RabbitMQ `{name}` at {url}: {source}")]
pub struct ConnectError {
    name: String,
    url: String,
    #[source]
    source: lapin::Error,
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
    Connection::connect(&url, props)
        .await
        .map_err(|source| ConnectError {
            name: name.to_string(),
            url: redact_url(&conn.url),
            source,
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
