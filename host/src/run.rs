//! `bridge-host run`: loads the configuration and the plugins, runs every mapping, and shuts
//! down gracefully on SIGINT/SIGTERM (a second signal exits at once).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::BridgeConfig;
use crate::health::{self, Request};
use crate::reload;
use crate::status::Status;
use crate::supervisor::Supervisor;
use crate::topology;

use crate::plugin::{PluginRuntime, PluginSet, RuntimeOptions};

/// Loads every plugin the mappings use and starts one instance of each, so that a bad
/// component or a rejected configuration stops the bridge before it touches a broker.
pub fn load_plugins(config: &BridgeConfig) -> Result<PluginSet, Vec<String>> {
    let runtime = PluginRuntime::new(RuntimeOptions {
        cache_dir: config.bridge.plugin_cache_dir.clone(),
    })
    .map_err(|e| vec![e.to_string()])?;
    let mut loaded = HashMap::new();
    let mut problems = Vec::new();
    for (name, plugin) in &config.plugins {
        let spec = config.plugin_spec(name, plugin);
        let loaded_plugin = runtime.load(&spec).map_err(reload::CandidateError::from);
        match loaded_plugin.and_then(|p| reload::run_canaries(&p).map(|()| p)) {
            Ok(p) => {
                loaded.insert(name.clone(), p);
            }
            Err(e) => problems.push(format!(
                "`plugins.{name}`: {}",
                crate::pipeline::error_text(&e)
            )),
        }
    }
    for m in &config.mapping {
        for (p, kind) in m.plugin_uses() {
            if loaded.get(p).is_some_and(|l| !l.kinds().contains(kind)) {
                problems.push(format!(
                    "mapping `{}`.{}: `{p}` is not a {} plugin",
                    m.name,
                    kind.info().mapping_key,
                    kind.info().name,
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(PluginSet::new(runtime, loaded, reload::uses(config)))
    } else {
        Err(problems)
    }
}

/// Runs the bridge until a signal.
pub async fn run(path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).map_err(|source| crate::config::ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let config = Arc::new(BridgeConfig::parse(path, &text, &|name| {
        std::env::var(name).ok()
    })?);
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let plugins = Arc::new(load_plugins(&config).map_err(|p| anyhow::anyhow!("{}", p.join("; ")))?);
    let health = match config.bridge.health_listen {
        Some(addr) => Some(crate::health::bind(addr).await?),
        None => None,
    };
    let status = Status::new(&config);
    status.plugins_loaded(&config, &plugins);
    let mut background = tokio::task::JoinSet::new();
    let (reload_tx, mut reload_rx) = mpsc::channel::<Request>(1);
    background.spawn(watched(
        Background::Sighup,
        reload_on_sighup(reload_tx.clone()),
    ));
    if let Some(listener) = health {
        tracing::info!(addr = %listener.local_addr()?, "Health endpoints: /livez, /readyz, /status, /metrics, /admin/*.");
        let admin = crate::health::Admin {
            token: config.bridge.admin_token.clone(),
            protect_status: config.bridge.protect_status,
            reload: reload_tx.clone(),
        };
        background.spawn(watched(
            Background::Health,
            crate::health::serve(listener, Arc::clone(&status), admin),
        ));
    }
    if config.bridge.stats_interval_secs > 0 {
        let every = Duration::from_secs(config.bridge.stats_interval_secs);
        background.spawn(watched(
            Background::Stats,
            Arc::clone(&status).heartbeat(every),
        ));
    }
    prepare_topology(&config).await?;
    let timeout = Duration::from_secs(config.bridge.shutdown_timeout_secs);
    // From here SIGTERM/SIGINT stop the bridge within the timeout (see `signals`).
    let (stop_tx, mut stop_rx) = watch::channel(None::<Instant>);
    background.spawn(watched(Background::Signals, signals(stop_tx, timeout)));
    let mut supervisor = Supervisor::start(
        path.to_path_buf(),
        text,
        Arc::clone(&config),
        Arc::clone(&plugins),
        Arc::clone(&status),
        reload_tx,
    );
    crate::telemetry::log_start(
        &config,
        &plugins.all().iter().map(AsRef::as_ref).collect::<Vec<_>>(),
    );
    tracing::info!(
        mappings = config.mapping.len(),
        plugins = plugins.all().len(),
        "Bridge started."
    );

    // Reloads, one at a time, until the first SIGTERM/SIGINT; a reload still in progress then
    // is abandoned (its caller is told the bridge is stopping).
    let stop_at = async {
        match stop_rx.wait_for(Option::is_some).await {
            Ok(deadline) => (*deadline).unwrap_or_else(Instant::now),
            Err(_) => std::future::pending().await,
        }
    };
    tokio::pin!(stop_at);
    let mut checks = tokio::time::interval(BACKGROUND_CHECK);
    // A task the process cannot do without that ended: the bridge stops, and exits with an
    // error so that it is started again.
    let mut failed = None;
    let deadline = loop {
        tokio::select! {
            deadline = &mut stop_at => break deadline,
            Some((command, reply)) = reload_rx.recv() => tokio::select! {
                answer = supervisor.handle(command) => {
                    if let Some(reply) = reply {
                        let _ = reply.send(answer);
                    }
                }
                deadline = &mut stop_at => break deadline,
            },
            Some(ended) = background.join_next() => {
                let (task, why) = ended.unwrap_or((Background::Unknown, "it was cancelled".into()));
                if task.needed() {
                    tracing::error!(task = task.name(), why, "A background task ended; stopping the bridge.");
                    failed = Some(format!("the {} task ended: {why}", task.name()));
                    break Instant::now() + timeout;
                }
                tracing::error!(task = task.name(), why, "A background task ended.");
            }
            _ = checks.tick() => supervisor.check_background(),
        }
    };
    tracing::info!(
        timeout_secs = timeout.as_secs(),
        "Shutting down: draining in-flight messages."
    );
    supervisor.stop_all(deadline).await;
    status.log_stop();
    tracing::info!("Bridge stopped.");
    match failed {
        Some(why) => Err(anyhow::anyhow!("{why}")),
        None => Ok(()),
    }
}

/// How often the supervisor checks its own background tasks (the Kafka readiness probe).
const BACKGROUND_CHECK: Duration = Duration::from_secs(5);

/// The process's background tasks, watched by `run`.
#[derive(Debug, Clone, Copy)]
enum Background {
    Sighup,
    Health,
    Stats,
    Signals,
    Unknown,
}

impl Background {
    fn name(self) -> &'static str {
        match self {
            Background::Sighup => "SIGHUP reload",
            Background::Health => "health listener",
            Background::Stats => "stats heartbeat",
            Background::Signals => "stop signal",
            Background::Unknown => "background",
        }
    }

    /// Whether the bridge must stop without it: without the signal task SIGTERM would be
    /// swallowed; without the listener the probes fail and the admin API is gone.
    fn needed(self) -> bool {
        matches!(
            self,
            Background::Health | Background::Signals | Background::Unknown
        )
    }
}

/// Runs `task`, then says which task it was and why it ended (it returned, or it panicked).
async fn watched(
    task: Background,
    run: impl std::future::Future<Output = ()>,
) -> (Background, String) {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(run).catch_unwind().await {
        Ok(()) => (task, "it returned".to_string()),
        Err(panic) => (
            task,
            format!(
                "it panicked: {}",
                crate::pipeline::panic_message(panic.as_ref())
            ),
        ),
    }
}

/// How long after `shutdown_timeout_secs` a stop may still take before the process exits
/// anyway: closing channels and clients after the drain.
const STOP_GRACE: Duration = Duration::from_millis(1500);

/// The exit status of a stop that overran `shutdown_timeout_secs` (and [`STOP_GRACE`]).
pub const EXIT_STOP_OVERRAN: u8 = 124;

/// The exit status after a second SIGTERM/SIGINT.
pub const EXIT_SECOND_SIGNAL: u8 = 130;

/// Waits for SIGTERM or SIGINT, then sends the stop's deadline and makes it hold: whatever the
/// bridge waits on (a retry, a blocked publish, a stuck confirm, a reload), the process exits
/// once the deadline and [`STOP_GRACE`] are over, leaving what is unsettled unacknowledged and
/// uncommitted, so it is delivered again. A second signal exits at once.
async fn signals(stop: watch::Sender<Option<Instant>>, timeout: Duration) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => (term, int),
            (Err(e), _) | (_, Err(e)) => {
                // Ending stops the bridge: it cannot be stopped gracefully.
                tracing::error!(error = %e, "SIGTERM/SIGINT cannot be watched.");
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = stop.send(Some(Instant::now() + timeout));
        let limit = timeout + STOP_GRACE;
        // An OS thread: it fires even if every runtime worker is stuck.
        let watchdog = std::thread::Builder::new()
            .name("stop-deadline".to_string())
            .spawn(move || {
                std::thread::sleep(limit);
                tracing::error!(
                    limit_ms = limit.as_millis() as u64,
                    "The stop overran shutdown_timeout_secs; exiting now (what is unsettled is delivered again)."
                );
                std::process::exit(i32::from(EXIT_STOP_OVERRAN));
            });
        if let Err(e) = watchdog {
            tracing::warn!(error = %e, "Cannot watch the stop's deadline.");
        }
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("Second signal: exiting now.");
        std::process::exit(i32::from(EXIT_SECOND_SIGNAL));
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop.send(Some(Instant::now() + timeout));
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(i32::from(EXIT_SECOND_SIGNAL));
    }
}

/// Creates what the mappings declare; a missing topic, queue or exchange stops the bridge. An
/// unreachable broker does not: its mappings connect with backoff once it is up.
async fn prepare_topology(config: &BridgeConfig) -> anyhow::Result<()> {
    let report = topology::ensure(config, topology::Mode::Declare).await;
    for declared in &report.declared {
        tracing::info!(object = %declared, "Declared.");
    }
    for problem in &report.unreachable {
        tracing::warn!(problem = %problem, "Broker unreachable at startup; its mappings will retry.");
    }
    if report.missing.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", report.missing.join("; "))
    }
}

/// Asks for a plugin reload on every SIGHUP.
async fn reload_on_sighup(requests: mpsc::Sender<Request>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(hup) => hup,
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP cannot be watched: reload with /admin/reload or the file watch.");
                return std::future::pending().await;
            }
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the plugins.");
            if requests
                .send((health::Command::Reload(health::Trigger::Signal), None))
                .await
                .is_err()
            {
                return;
            }
        }
    }
    #[cfg(not(unix))]
    drop(requests);
}

/// What `bridge-host check` found.
#[derive(Debug, Default)]
pub struct Checked {
    /// What keeps the configuration from running.
    pub problems: Vec<String>,
    /// What runs but should not be left so (credentials sent in the clear, …).
    pub warnings: Vec<String>,
}

/// `bridge-host check`: every problem in the configuration and the plugins; with `connect`,
/// also in the brokers (unreachable, missing topics, queues or exchanges).
pub async fn check(path: &Path, connect: bool) -> anyhow::Result<Checked> {
    let config = match BridgeConfig::load(path) {
        Ok(c) => c,
        Err(crate::config::ConfigError::Invalid { problems, .. }) => {
            return Ok(Checked {
                problems,
                ..Checked::default()
            });
        }
        Err(e) => {
            return Ok(Checked {
                problems: vec![e.to_string()],
                ..Checked::default()
            });
        }
    };
    let mut problems = load_plugins(&config).err().unwrap_or_default();
    if connect {
        let report = topology::ensure(&config, topology::Mode::Inspect).await;
        problems.extend(report.unreachable);
        problems.extend(report.missing);
    }
    Ok(Checked {
        problems,
        warnings: config.warnings(),
    })
}

/// The `--config` path, or an error saying it is required.
pub fn require_config(path: Option<&Path>) -> anyhow::Result<&Path> {
    path.context("no configuration: pass `--config bridge.toml`")
}
