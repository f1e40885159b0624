//! A TCP fault proxy between the bridge and a broker, with Toxiproxy's faults: a blackhole
//! (connections stay open, nothing gets through either way), reset of every connection with
//! TCP RST, latency added to every chunk (pipelined, as on a long link), a bandwidth limit and
//! a slow close (a closed side is passed on only after a delay).
//!
//! The proxy runs on the test's tokio runtime; a connection accepted while a fault is on gets
//! it too. Dropping the proxy closes its listener and every connection.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// What the proxy does to the bytes going through it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Read and drop everything, both ways; keep connections open.
    pub blackhole: bool,
    /// Deliver every chunk this much later.
    pub latency: Duration,
    /// At most this many bytes per second per direction of a connection.
    pub bandwidth: Option<u64>,
    /// Pass a close on after this delay.
    pub slow_close: Duration,
}

/// A running proxy.
pub struct FaultProxy {
    port: u16,
    faults: Arc<Mutex<Faults>>,
    upstream: Arc<Mutex<String>>,
    /// Bumped to reset every open connection.
    resets: watch::Sender<u64>,
    /// Bumped to close every open connection (both ways, after the slow-close delay).
    closes: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy on a free loopback port forwarding to `upstream` (`HOST:PORT`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let port = listener.local_addr().expect("address").port();
        let faults = Arc::new(Mutex::new(Faults::default()));
        let (resets, _) = watch::channel(0u64);
        let (closes, _) = watch::channel(0u64);
        let upstream = Arc::new(Mutex::new(upstream.to_string()));
        let accept = {
            let upstream = Arc::clone(&upstream);
            let faults = Arc::clone(&faults);
            let resets = resets.clone();
            let closes = closes.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let to = upstream.lock().expect("upstream lock").clone();
                    let Ok(server) = TcpStream::connect(to).await else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_r, client_w) = client.into_split();
                    let (server_r, server_w) = server.into_split();
                    let signals = || Signals {
                        reset: resets.subscribe(),
                        close: closes.subscribe(),
                    };
                    pipe(client_r, server_w, &faults, signals());
                    pipe(server_r, client_w, &faults, signals());
                }
            })
        };
        FaultProxy {
            port,
            faults,
            upstream,
            resets,
            closes,
            accept,
        }
    }

    /// Forwards new connections to `upstream` from now on (for a broker that must know the
    /// proxy's port before it starts).
    pub fn set_upstream(&self, upstream: &str) {
        *self.upstream.lock().expect("upstream lock") = upstream.to_string();
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sets the faults (all at once; [`Faults::default`] clears them).
    pub fn set(&self, faults: Faults) {
        *self.faults.lock().expect("faults lock") = faults;
    }

    /// Clears every fault.
    pub fn clear(&self) {
        self.set(Faults::default());
    }

    /// Resets every open connection (TCP RST to both peers), like Toxiproxy's `reset_peer`.
    pub fn reset_peers(&self) {
        self.resets.send_modify(|n| *n += 1);
    }

    /// Closes every open connection as if the far side had closed it: each peer gets its FIN
    /// after the slow-close delay.
    pub fn close_connections(&self) {
        self.closes.send_modify(|n| *n += 1);
    }
}

/// What a connection's tasks listen for.
struct Signals {
    reset: watch::Receiver<u64>,
    close: watch::Receiver<u64>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.reset_peers();
    }
}

/// One direction of a connection: a reader stamping chunks as they arrive and a writer
/// delivering them when their latency is over, within the bandwidth.
fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    faults: &Arc<Mutex<Faults>>,
    signals: Signals,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Option<Vec<u8>>)>();
    let read_faults = Arc::clone(faults);
    let Signals {
        reset: mut resets,
        close: mut closes,
    } = signals;
    let mut read_resets = resets.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            tokio::select! {
                read = from.read(&mut buf) => {
                    let n = match read {
                        Ok(0) | Err(_) => {
                            let _ = tx.send((Instant::now(), None));
                            break;
                        }
                        Ok(n) => n,
                    };
                    if read_faults.lock().expect("faults lock").blackhole {
                        continue;
                    }
                    if tx.send((Instant::now(), Some(buf[..n].to_vec()))).is_err() {
                        break;
                    }
                }
                _ = read_resets.changed() => {
                    reset_on_close(from.as_ref());
                    break;
                }
                _ = closes.changed() => {
                    let _ = tx.send((Instant::now(), None));
                    break;
                }
            }
        }
    });
    let faults = Arc::clone(faults);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                next = rx.recv() => next,
                _ = resets.changed() => {
                    reset_on_close(to.as_ref());
                    return;
                }
            };
            let Some((at, chunk)) = next else {
                return;
            };
            let now = *faults.lock().expect("faults lock");
            let due = at + now.latency;
            let wait = async {
                tokio::time::sleep_until(due.into()).await;
                if chunk.is_none() {
                    tokio::time::sleep(now.slow_close).await;
                }
            };
            tokio::select! {
                _ = wait => {}
                _ = resets.changed() => {
                    reset_on_close(to.as_ref());
                    return;
                }
            }
            let Some(chunk) = chunk else {
                let _ = to.shutdown().await;
                return;
            };
            if now.blackhole {
                continue;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            if let Some(rate) = now.bandwidth.filter(|r| *r > 0) {
                let secs = chunk.len() as f64 / rate as f64;
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            }
        }
    });
}

/// Makes closing `socket` send a TCP RST (`SO_LINGER` 0). A zero linger never blocks the
/// closing thread, which is what tokio's deprecation of `set_linger` warns about.
#[allow(deprecated)]
fn reset_on_close(socket: &TcpStream) {
    let _ = socket.set_linger(Some(Duration::ZERO));
}
