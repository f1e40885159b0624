//! Running `bridge-host` as a child process, as users do.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `bridge-host run` process with its configuration file.
pub struct BridgeProcess {
    child: Option<Child>,
    /// The `bridge-host` executable it runs.
    bin: PathBuf,
    _dir: tempfile::TempDir,
    /// The configuration path.
    pub config: PathBuf,
    /// Where its log goes.
    pub log: PathBuf,
    env: Vec<(String, String)>,
}

/// Waits up to `timeout` for `child` to exit: its exit status, or `None` if it was still
/// running (it is then killed and reaped).
pub fn exit_within(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// How long [`BridgeProcess::stop_clean`] gives the bridge to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The `bridge-host` binary of this build.
pub fn binary() -> PathBuf {
    let path = std::env::var_os("BRIDGE_HOST_BIN")
        .map_or_else(|| PathBuf::from(env!("BRIDGE_HOST_BIN")), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p bridge-host` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The optimised build of `bridge-host` the throughput tripwire runs (`BRIDGE_HOST_TRIPWIRE_BIN`
/// overrides it): the release profile without link-time optimisation.
pub fn tripwire_binary() -> PathBuf {
    let path = std::env::var_os("BRIDGE_HOST_TRIPWIRE_BIN").map_or_else(
        || PathBuf::from(env!("BRIDGE_HOST_TRIPWIRE_BIN")),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --profile tripwire -p bridge-host` (scripts/test.sh does)",
        path.display()
    );
    path
}

impl BridgeProcess {
    /// Writes `config` to a temporary file and starts `bridge-host run --config FILE`.
    pub fn start(config: &str) -> Self {
        Self::start_with_env(config, &[])
    }

    /// [`BridgeProcess::start`] with another `bridge-host` executable.
    pub fn start_binary(bin: PathBuf, config: &str) -> Self {
        let (dir, path) = Self::write(config);
        Self::launch(dir, path, &[], bin)
    }

    /// [`BridgeProcess::start`] with more environment variables for the process.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Self {
        let (dir, path) = Self::write(config);
        Self::launch(dir, path, env, binary())
    }

    /// `config` in a file of a new temporary directory.
    fn write(config: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bridge.toml");
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(config.as_bytes()))
            .expect("config written");
        (dir, path)
    }

    /// Starts `bridge-host run --config PATH` on an existing file (relative plugin paths resolve
    /// against its directory), with more environment variables.
    pub fn start_at(config: &std::path::Path, env: &[(&str, &str)]) -> Self {
        Self::launch(
            tempfile::tempdir().expect("temp dir"),
            config.to_path_buf(),
            env,
            binary(),
        )
    }

    /// Starts `bin` on `config`, its log in `dir`.
    fn launch(dir: tempfile::TempDir, config: PathBuf, env: &[(&str, &str)], bin: PathBuf) -> Self {
        let log = dir.path().join("bridge.log");
        let mut process = BridgeProcess {
            child: None,
            bin,
            _dir: dir,
            config,
            log,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        process.spawn();
        process
    }

    /// (Re)starts the process with the same configuration.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(&self.bin)
            .args(["run", "--config"])
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("BRIDGE_TEST_RUST_LOG").unwrap_or_else(|_| "info".to_string()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("bridge-host starts");
        self.child = Some(child);
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `timeout` for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        self.stop_within(timeout).is_some_and(|s| s.success())
    }

    /// SIGTERM, then waits up to `timeout` for the process to exit: its exit status, or `None`
    /// if it was still running (it is then killed).
    pub fn stop_within(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        send_signal(self.child.as_ref()?.id(), libc::SIGTERM);
        self.wait_exit(timeout)
    }

    /// SIGTERM, then fails the test, with the bridge's log, unless the process exits with
    /// status 0 within [`STOP_TIMEOUT`] (30 s).
    #[track_caller]
    pub fn stop_clean(&mut self) {
        self.stop_clean_within(STOP_TIMEOUT);
    }

    /// [`BridgeProcess::stop_clean`] with another time limit, for tests whose point is a
    /// prompt stop.
    #[track_caller]
    pub fn stop_clean_within(&mut self, timeout: Duration) {
        let status = self.stop_within(timeout);
        let how = match status {
            Some(s) if s.success() => return,
            Some(s) => format!("it exited with {s}"),
            None => format!("it was not running, or still running after {timeout:?} (killed)"),
        };
        panic!(
            "the bridge did not stop cleanly on SIGTERM: {how}; log:\n{}",
            self.log_text()
        );
    }

    /// Waits up to `timeout` for the process to exit: its exit status, or `None` if it was
    /// still running (it is then killed).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        exit_within(&mut self.child.take()?, timeout)
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log for a failure message, its telling lines first (long failure output is cut
    /// from the end): the warnings and errors, the last lines, then the whole log.
    pub fn log_report(&self) -> String {
        let log = self.log_text();
        let lines: Vec<&str> = log.lines().collect();
        let notable: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .take(20)
            .collect();
        let tail = &lines[lines.len().saturating_sub(10)..];
        format!(
            "warnings and errors (first 20):\n{}\nlast lines:\n{}\nwhole log:\n{log}",
            notable.join("\n"),
            tail.join("\n")
        )
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends signal `sig` (`libc::SIGHUP`, …) to process `pid`, without needing a `kill` program.
pub fn send_signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; the worst outcome is an error code.
    let _ = unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Waits (up to a minute) until the health listener on `port` answers `/readyz` with 200.
pub async fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http_get(port, "/readyz");
        if answer.as_ref().is_some_and(|(code, _)| *code == 200) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the bridge did not become ready: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `/readyz` on `port` answers `code`: how long it took and the body (the status
/// JSON, with `not_ready_because`), or `None` after `limit`.
pub async fn wait_readyz(port: u16, code: u16, limit: Duration) -> Option<(Duration, String)> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let answer = tokio::task::spawn_blocking(move || http_get(port, "/readyz"))
            .await
            .ok()
            .flatten();
        if let Some((c, body)) = answer
            && c == code
        {
            return Some((start.elapsed(), body));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

impl BridgeProcess {
    /// Waits (up to a minute) until the bridge's health listener on `port` answers `/readyz`
    /// with 200; fails the test with the bridge's log otherwise.
    pub async fn assert_ready(&self, port: u16) {
        assert!(
            wait_readyz(port, 200, Duration::from_secs(60))
                .await
                .is_some(),
            "ready:\n{}",
            self.log_text()
        );
    }

    /// Waits until the bridge logs a warning or an error with every one of `words`: the line,
    /// or `None` after `limit`.
    pub async fn wait_log_line(&self, words: &[&str], limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let log = self.log_text();
            let found = log.lines().find(|l| {
                (l.contains(" WARN ") || l.contains(" ERROR "))
                    && words.iter().all(|w| l.contains(w))
            });
            if let Some(line) = found {
                return Some(line.to_string());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }
}

/// `GET path` on `127.0.0.1:port`: the status code and body, or `None` if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_request(port, "GET", path, &[])
}

/// `POST path` on `127.0.0.1:port`, with `Authorization: Bearer TOKEN` when a token is given.
pub fn http_post(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    http_request(port, "POST", path, auth.as_slice())
}

/// A request with `headers` (`Name: value`) and no body: the status code and body.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[String],
) -> Option<(u16, String)> {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .ok()?;
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    round_trip(
        stream,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n{extra}\r\n"
        ),
    )
}

/// Writes `request` on `stream` and reads the whole answer: its status code and body.
fn round_trip(mut stream: std::net::TcpStream, request: &str) -> Option<(u16, String)> {
    use std::io::Read;
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((code, body))
}

/// A number field of `/proc/PID/status` (`Threads:`, `VmRSS:`, `VmHWM:` — memory in KiB).
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A free loopback port, never one this process was handed before: the port is free when
/// asked for, and the kernel may offer it again until its user binds it (a broker node's
/// listeners took one port twice that way).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// `GET path` as a Kubernetes probe sends it: the status code if it came within `timeout`
/// (connecting included).
pub fn probe(port: u16, path: &str, timeout: Duration) -> Option<u16> {
    let started = std::time::Instant::now();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let stream = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream
        .set_read_timeout(Some(timeout.checked_sub(started.elapsed())?))
        .ok()?;
    let (code, _) = round_trip(
        stream,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )?;
    (started.elapsed() <= timeout).then_some(code)
}
