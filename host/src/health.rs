//! Liveness and readiness probes over HTTP (`[bridge] health_listen`):
//!
//! - `GET /livez`: `200 ok` while the process serves requests;
//! - `GET /readyz`: `200` when every mapping's source and target are connected and every Kafka
//!   cluster answers, `503` otherwise; the body is the status JSON either way;
//! - `GET /status`: the status JSON (readiness, connections, counters);
//! - `GET /metrics`: every metric in Prometheus' text format.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::status::Status;

/// Binds `addr`; an error names the address.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("`bridge.health_listen`: cannot listen on {addr}: {e}"))
}

/// Serves the probes until the task is dropped.
pub async fn serve(listener: TcpListener, status: Arc<Status>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let status = Arc::clone(&status);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let status = Arc::clone(&status);
                async move { Ok::<_, Infallible>(respond(&req, &status)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn respond<B>(req: &Request<B>, status: &Status) -> Response<Full<Bytes>> {
    let (code, body, content_type) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/livez") => (StatusCode::OK, "ok\n".to_string(), TEXT),
        (&Method::GET, "/readyz") => {
            let code = if status.is_ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (code, status.to_json().to_string(), JSON)
        }
        (&Method::GET, "/status") => (StatusCode::OK, status.to_json().to_string(), JSON),
        (&Method::GET, "/metrics") => (StatusCode::OK, status.metrics().encode(), OPENMETRICS),
        (&Method::GET, _) => (StatusCode::NOT_FOUND, "not found\n".to_string(), TEXT),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".to_string(),
            TEXT,
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
