//! Liveness and readiness probes over HTTP (`[bridge] health_listen`):
//!
//! - `GET /livez`: `200 ok` while the process serves requests;
//! - `GET /readyz`: `200` when every mapping's source and target are connected and every Kafka
//!   cluster answers, `503` otherwise; the body is the status JSON either way;
//! - `GET /status`: the status JSON (readiness, connections, counters);
//! - `GET /metrics`: every metric in Prometheus' text format;
//! - `POST /admin/reload`: reloads the configuration and the plugins and answers what it did
//!   (`200`, or `422` when the configuration or a new plugin version was rejected);
//! - `POST /admin/stage?plugin=NAME&path=FILE`: runs a candidate version in shadow;
//!   `POST /admin/promote` makes it live, `POST /admin/rollback` drops it or undoes the
//!   promotion. Admin endpoints need `Authorization: Bearer <admin_token>`:
//!   without it they answer `401`, with a wrong token (or none configured) `403`, and change
//!   nothing.
//!
//! The admin protocol is defined here too: a [`Command`] for the supervisor, sent as a
//! [`Request`] and answered with an [`Answer`]. The file watch and SIGHUP send the same
//! requests (a [`Trigger`] tells who asked).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use crate::status::Status;

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A watched plugin or configuration file changed.
    File,
    /// SIGHUP.
    Signal,
    /// `POST /admin/reload`.
    Admin,
}

impl Trigger {
    /// `file`, `signal` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::File => "file",
            Trigger::Signal => "signal",
            Trigger::Admin => "admin",
        }
    }
}

/// What the reload loop is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Reload the configuration and the plugin files.
    Reload(Trigger),
    /// Run the component at `path` in shadow as the candidate of plugin `plugin`.
    Stage {
        /// The plugin's name.
        plugin: String,
        /// The candidate component (relative paths: to the configuration's directory).
        path: PathBuf,
    },
    /// Make the staged candidates live.
    Promote,
    /// Drop the stage, or undo the last promotion.
    Rollback,
}

/// An answer to an admin command: an HTTP status and a JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status code.
    pub code: u16,
    /// What was done, or why not.
    pub body: serde_json::Value,
}

/// A request, answered when an answer is wanted.
pub type Request = (Command, Option<oneshot::Sender<Answer>>);

/// What the admin endpoints act on.
#[derive(Clone)]
pub struct Admin {
    /// The bearer token they require; `None` turns them off.
    pub token: Option<String>,
    /// `/status` and `/metrics` require the token too.
    pub protect_status: bool,
    /// Where reload requests go.
    pub reload: mpsc::Sender<Request>,
}

/// Binds `addr`; an error names the address.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("`bridge.health_listen`: cannot listen on {addr}: {e}"))
}

/// Connections served at once.
const MAX_CONNECTIONS: usize = 128;
/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may stay open, whatever it does.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// Connections that have not sent a request yet, oldest first, each with what cuts it off.
type Waiting = Arc<std::sync::Mutex<std::collections::VecDeque<(u64, Arc<Notify>)>>>;

/// Serves the probes until the task is dropped. A client that sends its headers slowly is cut
/// off after [`HEADER_READ_TIMEOUT`], and connections are capped at [`MAX_CONNECTIONS`]: at the
/// cap, a new connection takes the place of the oldest one that has not sent a request yet, so
/// slow or idle clients cannot keep a probe waiting (Kubernetes gives it 1 s).
pub async fn serve(listener: TcpListener, status: Arc<Status>, admin: Admin) {
    let admin = Arc::new(admin);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let waiting: Waiting = Arc::default();
    for id in 0u64.. {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, for instance: wait instead of spinning.
                tracing::warn!(error = %e, "The health listener cannot accept a connection.");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                let oldest = lock(&waiting).pop_front();
                if let Some((_, cut)) = oldest {
                    cut.notify_one();
                }
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                slot
            }
        };
        let cut = Arc::new(Notify::new());
        lock(&waiting).push_back((id, Arc::clone(&cut)));
        let status = Arc::clone(&status);
        let admin = Arc::clone(&admin);
        let waiting = Arc::clone(&waiting);
        tokio::spawn(async move {
            let _slot = slot;
            let asked = Arc::clone(&waiting);
            let service = service_fn(move |req| {
                // A request came: no longer one to cut off for a newcomer.
                lock(&asked).retain(|(w, _)| *w != id);
                let status = Arc::clone(&status);
                let admin = Arc::clone(&admin);
                async move { Ok::<_, Infallible>(respond(&req, &status, &admin).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_LIFETIME, connection) => {}
                () = cut.notified() => {}
            }
            lock(&waiting).retain(|(w, _)| *w != id);
        });
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn respond<B>(
    req: &hyper::Request<B>,
    status: &Status,
    admin: &Admin,
) -> Response<Full<Bytes>> {
    let (code, body, content_type) = match (req.method(), req.uri().path()) {
        (&Method::POST, path) if path.starts_with("/admin/") => match authorize(req, admin) {
            Err(refusal) => refusal,
            Ok(()) => match admin_command(path, req.uri().query()) {
                Ok(command) => ask(admin, command).await,
                Err(answer) => answer,
            },
        },
        (&Method::GET, "/livez") => (StatusCode::OK, "ok\n".to_string(), TEXT),
        (&Method::GET, "/readyz") => {
            let code = if status.is_ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = match admin.protect_status {
                // The status is behind the token: the probe gets the reasons only.
                true => serde_json::json!({ "not_ready_because": status.not_ready_because() }),
                false => status.to_json(),
            };
            (code, body.to_string(), JSON)
        }
        (&Method::GET, "/status" | "/metrics") if admin.protect_status => {
            match authorize(req, admin) {
                Err(refusal) => refusal,
                Ok(()) if req.uri().path() == "/status" => {
                    (StatusCode::OK, status.to_json().to_string(), JSON)
                }
                Ok(()) => (StatusCode::OK, status.metrics().encode(), OPENMETRICS),
            }
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
    if code == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
    }
    *response.status_mut() = code;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

/// What an HTTP request is answered with: status, body, content type.
type Reply = (StatusCode, String, &'static str);

/// `Ok` when the request carries the admin token.
fn authorize<B>(req: &hyper::Request<B>, admin: &Admin) -> Result<(), Reply> {
    let Some(token) = &admin.token else {
        return Err((
            StatusCode::FORBIDDEN,
            "admin endpoints are off: set `bridge.admin_token`\n".to_string(),
            TEXT,
        ));
    };
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => Err((
            StatusCode::UNAUTHORIZED,
            "an `Authorization: Bearer <admin_token>` header is required\n".to_string(),
            TEXT,
        )),
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err((
            StatusCode::FORBIDDEN,
            "wrong admin token\n".to_string(),
            TEXT,
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The command an admin request asks for.
fn admin_command(path: &str, query: Option<&str>) -> Result<Command, Reply> {
    let param = |name: &str| {
        url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    match path {
        "/admin/reload" => Ok(Command::Reload(Trigger::Admin)),
        "/admin/promote" => Ok(Command::Promote),
        "/admin/rollback" => Ok(Command::Rollback),
        "/admin/stage" => match (param("plugin"), param("path")) {
            (Some(plugin), Some(path)) => Ok(Command::Stage {
                plugin,
                path: path.into(),
            }),
            _ => Err((
                StatusCode::BAD_REQUEST,
                "`/admin/stage?plugin=NAME&path=FILE.wasm`: both are required\n".to_string(),
                TEXT,
            )),
        },
        _ => Err((StatusCode::NOT_FOUND, "not found\n".to_string(), TEXT)),
    }
}

async fn ask(admin: &Admin, command: Command) -> Reply {
    let (tx, rx) = oneshot::channel();
    let unavailable = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the bridge is stopping\n".to_string(),
            TEXT,
        )
    };
    if admin.reload.send((command, Some(tx))).await.is_err() {
        return unavailable();
    }
    let Ok(answer) = rx.await else {
        return unavailable();
    };
    let code = StatusCode::from_u16(answer.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, answer.body.to_string(), JSON)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(token: Option<&str>) -> Admin {
        Admin {
            token: token.map(str::to_string),
            protect_status: false,
            reload: mpsc::channel(1).0,
        }
    }

    fn post(auth: Option<&str>) -> hyper::Request<()> {
        let mut req = hyper::Request::post("/admin/reload");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.body(()).unwrap()
    }

    #[test]
    fn admin_requests_need_the_token() {
        let a = admin(Some("s3cret"));
        assert_eq!(
            authorize(&post(None), &a).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            authorize(&post(Some("Bearer nope")), &a).unwrap_err().0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            authorize(&post(Some("Basic s3cret")), &a).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        assert!(authorize(&post(Some("Bearer s3cret")), &a).is_ok());
        let off = admin(None);
        assert_eq!(
            authorize(&post(Some("Bearer s3cret")), &off).unwrap_err().0,
            StatusCode::FORBIDDEN
        );
    }
}
