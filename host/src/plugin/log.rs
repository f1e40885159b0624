//! Plugin log output: what the `host.log` import and the guest's stdout/stderr write, both
//! tagged with the plugin name, truncated and rate-limited so a chatty plugin cannot flood the
//! log.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::bindings::LogLevel;

/// The log sink of one plugin.
#[derive(Debug)]
pub struct PluginLog {
    plugin: Arc<str>,
    line_bytes: usize,
    per_second: u32,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    lines: u32,
    dropped: u64,
}

impl PluginLog {
    /// A sink for `plugin` allowing `per_second` lines of at most `line_bytes` bytes.
    pub fn new(plugin: &str, per_second: u32, line_bytes: u32) -> Arc<Self> {
        Arc::new(PluginLog {
            plugin: plugin.into(),
            line_bytes: line_bytes as usize,
            per_second,
            window: Mutex::new(Window {
                started: Instant::now(),
                lines: 0,
                dropped: 0,
            }),
        })
    }

    /// Writes one line at `level`, unless the rate limit is reached.
    pub fn write(&self, level: LogLevel, text: &str) {
        {
            let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
            if w.started.elapsed().as_secs() >= 1 {
                let dropped = w.dropped;
                *w = Window {
                    started: Instant::now(),
                    lines: 0,
                    dropped: 0,
                };
                if dropped > 0 {
                    tracing::warn!(plugin = %self.plugin, dropped, "Plugin log lines dropped by the rate limit.");
                }
            }
            if w.lines >= self.per_second {
                w.dropped += 1;
                return;
            }
            w.lines += 1;
        }
        let text = escape_controls(text.trim_end_matches(['\n', '\r']));
        let text = truncate(&text, self.line_bytes);
        let plugin = &*self.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{text}"),
            LogLevel::Debug => tracing::debug!(plugin, "{text}"),
            LogLevel::Info => tracing::info!(plugin, "{text}"),
            LogLevel::Warn => tracing::warn!(plugin, "{text}"),
            LogLevel::Error => tracing::error!(plugin, "{text}"),
        }
    }

    /// A guest stdout (`Info`) or stderr (`Warn`) stream that writes here.
    pub fn stream(self: &Arc<Self>, level: LogLevel) -> LogStream {
        LogStream {
            log: Arc::clone(self),
            level,
        }
    }
}

/// `text` with control characters (newlines, carriage returns, escape sequences) written as
/// Rust escapes (`\n`, `\u{1b}`): a plugin's line cannot pass for another log line.
fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
fn truncate(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes truncated)", &text[..end], text.len() - end).into()
}

/// A guest output stream whose lines go to the plugin's log.
#[derive(Clone)]
pub struct LogStream {
    log: Arc<PluginLog>,
    level: LogLevel,
}

impl LogStream {
    fn emit(&self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            self.log.write(self.level, line);
        }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.emit(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.emit(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::{escape_controls, truncate};

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain"), "plain");
        assert_eq!(
            escape_controls("a\nERROR forged\r\u{1b}[2K"),
            "a\\nERROR forged\\r\\u{1b}[2K"
        );
    }

    #[test]
    fn truncates_on_char_boundary() {
        assert_eq!(truncate("héllo", 2), "h… (5 bytes truncated)");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
