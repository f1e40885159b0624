//! `bridge-host top`: a live view of a running bridge, from its health listener's `/status`,
//! refreshed every second — per mapping the rates in and out, consumer lag, messages in
//! flight, retries, dead letters, restarts, plugin versions and connection state.

use std::io::Write as _;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Why `top` cannot show a bridge.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// The URL is not `http://HOST:PORT`.
    #[error("`--url {0}`: expected http://HOST:PORT of a bridge's health_listen")]
    Url(String),
    /// The bridge did not answer.
    #[error("{url}: {detail}")]
    Unreachable {
        /// Where.
        url: String,
        /// Why.
        detail: String,
    },
}

/// `GET /status` of the bridge at `base`.
pub async fn fetch_status(base: &url::Url) -> Result<Value, TopError> {
    let unreachable = |detail: String| TopError::Unreachable {
        url: base.to_string(),
        detail,
    };
    let host = base
        .host_str()
        .ok_or_else(|| TopError::Url(base.to_string()))?;
    let port = base.port_or_known_default().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn);
    let request = hyper::Request::get("/status")
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| unreachable(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| unreachable(format!("not status JSON: {e}")))
}

/// Parses `--url`.
pub fn parse_url(text: &str) -> Result<url::Url, TopError> {
    let url = url::Url::parse(text).map_err(|_| TopError::Url(text.to_string()))?;
    if url.scheme() != "http" || url.host_str().is_none() {
        return Err(TopError::Url(text.to_string()));
    }
    Ok(url)
}

/// One screen: a header and a row per mapping, rates from the counters' change since `prev`.
pub fn render(url: &str, status: &Value, prev: Option<(&Value, Duration)>) -> String {
    let ready = if status["ready"] == true {
        "ready"
    } else {
        "NOT READY"
    };
    let mut out = format!("bridge-host top — {url} — {ready}\n\n");
    out += &format!(
        "{:<28} {:<12} {:>9} {:>9} {:>8} {:>9} {:>8} {:>8} {:>8}  {}\n",
        "MAPPING",
        "STATE",
        "IN/s",
        "OUT/s",
        "LAG",
        "IN-FLIGHT",
        "RETRIES",
        "DEAD",
        "RESTARTS",
        "PLUGINS"
    );
    let empty = serde_json::Map::new();
    let mappings = status["mappings"].as_object().unwrap_or(&empty);
    let counter = |m: &Value, name: &str| m["counters"][name].as_f64().unwrap_or(0.0);
    for (name, m) in mappings {
        let rate = |field: &str| match prev {
            Some((p, elapsed)) if elapsed.as_secs_f64() > 0.0 => {
                let before = counter(&p["mappings"][name], field);
                ((counter(m, field) - before) / elapsed.as_secs_f64()).max(0.0)
            }
            _ => 0.0,
        };
        let state = if m["connected"] == true {
            "connected"
        } else {
            "DISCONNECTED"
        };
        let plugins: Vec<&str> = m["plugins"]
            .as_array()
            .map(|p| p.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out += &format!(
            "{:<28} {:<12} {:>9.1} {:>9.1} {:>8} {:>9} {:>8} {:>8} {:>8}  {}\n",
            name,
            state,
            rate("consumed"),
            rate("delivered"),
            counter(m, "lag"),
            counter(m, "in_flight"),
            counter(m, "retries"),
            counter(m, "dead_lettered"),
            counter(m, "restarts"),
            plugins.join(" "),
        );
    }
    out
}

/// Redraws the view every `every` until interrupted; an unreachable bridge shows as such and
/// is retried.
pub async fn run(url: &str, every: Duration) -> Result<(), TopError> {
    let base = parse_url(url)?;
    let mut prev: Option<(Value, Instant)> = None;
    let mut stdout = std::io::stdout();
    loop {
        let screen = match fetch_status(&base).await {
            Ok(status) => {
                let view = render(url, &status, prev.as_ref().map(|(p, at)| (p, at.elapsed())));
                prev = Some((status, Instant::now()));
                view
            }
            Err(e) => format!("bridge-host top — {e}\n"),
        };
        // Clear the screen and home the cursor, then draw.
        let _ = write!(stdout, "\x1b[2J\x1b[H{screen}");
        let _ = stdout.flush();
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_the_change_between_two_samples() {
        let before = serde_json::json!({ "ready": true, "mappings": { "m": {
            "connected": true, "plugins": ["route@1.0.0"],
            "counters": { "consumed": 100, "delivered": 90, "lag": 5, "in_flight": 10 } } } });
        let after = serde_json::json!({ "ready": true, "mappings": { "m": {
            "connected": true, "plugins": ["route@1.0.0"],
            "counters": { "consumed": 300, "delivered": 290, "lag": 7, "in_flight": 10 } } } });
        let screen = render(
            "http://x:1",
            &after,
            Some((&before, Duration::from_secs(2))),
        );
        let row = screen
            .lines()
            .find(|l| l.starts_with("m "))
            .unwrap_or_default();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[..6], ["m", "connected", "100.0", "100.0", "7", "10"]);
        assert!(row.ends_with("route@1.0.0"));
        assert!(parse_url("ftp://x").is_err());
    }
}
