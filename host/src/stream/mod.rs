//! RabbitMQ streams over the stream protocol (RabbitMQ's `rabbitmq_stream` plugin): a stream
//! as a mapping's target, deduplicated by the broker under exactly-once, and as its source,
//! with the consumer's offset stored on the broker.

mod convert;
mod sink;
mod source;

use rabbitmq_stream_client::{ClientOptions, Environment, TlsConfiguration};

pub use sink::StreamSink;
pub use source::StreamSource;

use crate::config::RabbitConnection;
use crate::connector::BoxError;

/// A stream connection could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct ConnectError {
    /// What failed, in the bridge's words.
    pub context: String,
    /// The cause.
    #[source]
    pub source: Option<BoxError>,
}

impl From<ConnectError> for crate::connector::SinkError {
    fn from(e: ConnectError) -> Self {
        crate::connector::SinkError {
            context: e.context,
            source: e.source,
        }
    }
}

impl From<ConnectError> for crate::connector::SourceError {
    fn from(e: ConnectError) -> Self {
        crate::connector::SourceError {
            context: e.context,
            source: e.source,
        }
    }
}

/// The stream protocol's client options for `[rabbitmq.NAME]`: the host, credentials and
/// vhost of its `url`, its `stream_port`, TLS with its `tls` files when the URL is `amqps://`.
fn options(name: &str, conn: &RabbitConnection) -> Result<ClientOptions, ConnectError> {
    let uri = conn.uri().map_err(|e| ConnectError {
        context: format!("`[rabbitmq.{name}]`.url"),
        source: Some(Box::new(e)),
    })?;
    let mut builder = ClientOptions::builder()
        .host(&uri.authority.host)
        .port(conn.stream_port)
        .user(&uri.authority.userinfo.username)
        .password(&uri.authority.userinfo.password)
        .v_host(&uri.vhost)
        // No limit of the bridge's own: the frame size is the broker's `stream.frame_max`.
        .max_frame_size(0)
        .client_provided_name(format!("bridge-host {name}"));
    if uri.scheme == lapin::uri::AMQPScheme::AMQPS {
        let mut tls = TlsConfiguration::builder().enable(true);
        if let Some(files) = &conn.tls {
            if let Some(ca) = &files.ca_file {
                tls = tls.add_root_certificates(ca.display().to_string());
            }
            if let (Some(cert), Some(key)) = (&files.cert_file, &files.key_file) {
                tls = tls.add_client_certificates_keys(
                    cert.display().to_string(),
                    key.display().to_string(),
                );
            }
        }
        let tls = tls.build().map_err(|e| ConnectError {
            context: format!("`[rabbitmq.{name}]`.tls: {e}"),
            source: None,
        })?;
        builder = builder.tls(tls);
    }
    Ok(builder.build())
}

/// What to say when `[rabbitmq.NAME]`'s stream port does not answer.
fn unreachable(name: &str, conn: &RabbitConnection, e: impl Into<BoxError>) -> ConnectError {
    ConnectError {
        context: format!(
            "cannot connect to `[rabbitmq.{name}]`'s stream port {} (is the `rabbitmq_stream` plugin enabled?)",
            conn.stream_port
        ),
        source: Some(e.into()),
    }
}

/// The stream protocol's environment for `[rabbitmq.NAME]`.
async fn environment(name: &str, conn: &RabbitConnection) -> Result<Environment, ConnectError> {
    Environment::from_client_option(options(name, conn)?)
        .await
        .map_err(|e| unreachable(name, conn, e))
}
