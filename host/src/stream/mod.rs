//! RabbitMQ streams over the stream protocol (RabbitMQ's `rabbitmq_stream` plugin): a stream
//! as a mapping's target, deduplicated by the broker under exactly-once.

mod convert;
mod sink;

use rabbitmq_stream_client::{Environment, TlsConfiguration};

pub use sink::StreamSink;

use crate::config::RabbitConnection;
use crate::connector::SinkError;

/// The stream protocol's environment for `[rabbitmq.NAME]`: the host, credentials and vhost of
/// its `url`, its `stream_port`, TLS with its `tls` files when the URL is `amqps://`.
async fn environment(name: &str, conn: &RabbitConnection) -> Result<Environment, SinkError> {
    let uri = conn
        .uri()
        .map_err(|e| SinkError::new(format!("`[rabbitmq.{name}]`.url"), e))?;
    let mut builder = Environment::builder()
        .host(&uri.authority.host)
        .port(conn.stream_port)
        .username(&uri.authority.userinfo.username)
        .password(&uri.authority.userinfo.password)
        .virtual_host(&uri.vhost)
        .client_provided_name(&format!("bridge-host {name}"));
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
        let tls = tls
            .build()
            .map_err(|e| SinkError::msg(format!("`[rabbitmq.{name}]`.tls: {e}")))?;
        builder = builder.tls(tls);
    }
    builder.build().await.map_err(|e| {
        SinkError::new(
            format!(
                "cannot connect to `[rabbitmq.{name}]`'s stream port {} (is the `rabbitmq_stream` plugin enabled?)",
                conn.stream_port
            ),
            e,
        )
    })
}
