//! `bridge-host run`: loads the configuration and the plugins, runs every mapping, and shuts
//! down gracefully on SIGINT/SIGTERM (a second signal exits at once).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::BridgeConfig;
use crate::reload::{self, PluginSet};
use crate::status::Status;
use crate::supervisor::Supervisor;
use crate::topology;

use crate::plugin::{PluginRuntime, RuntimeOptions};

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
        let loaded_plugin = runtime.load(&spec).map_err(|e| e.to_string());
        match loaded_plugin.and_then(|p| reload::run_canaries(&p).map(|()| p)) {
            Ok(p) => {
                loaded.insert(name.clone(), p);
            }
            Err(e) => problems.push(format!("`plugins.{name}`: {e}")),
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
        Ok(PluginSet::new(config, runtime, loaded))
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
    let plugins = Arc::new(load_plugins(&config).map_err(|p| anyhow::anyhow!("{}", p.join("; ")))?);
    let health = match config.bridge.health_listen {
        Some(addr) => Some(crate::health::bind(addr).await?),
        None => None,
    };
    let status = Status::new(&config);
    status.plugins_loaded(&config, &plugins);
    let mut background = tokio::task::JoinSet::new();
    let (reload_tx, mut reload_rx) = mpsc::channel::<reload::Request>(1);
    background.spawn(reload_on_sighup(reload_tx.clone()));
    if let Some(listener) = health {
        tracing::info!(addr = %listener.local_addr()?, "Health endpoints: /livez, /readyz, /status, /metrics, /admin/*.");
        let admin = crate::health::Admin {
            token: config.bridge.admin_token.clone(),
            reload: reload_tx.clone(),
        };
        background.spawn(crate::health::serve(listener, Arc::clone(&status), admin));
    }
    if config.bridge.stats_interval_secs > 0 {
        let every = Duration::from_secs(config.bridge.stats_interval_secs);
        background.spawn(Arc::clone(&status).heartbeat(every));
    }
    prepare_topology(&config).await?;
    let timeout = Duration::from_secs(config.bridge.shutdown_timeout_secs);
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

    // Reloads, one at a time, until the first SIGTERM/SIGINT.
    let first_signal = wait_for_signal();
    tokio::pin!(first_signal);
    loop {
        tokio::select! {
            _ = &mut first_signal => break,
            Some((command, reply)) = reload_rx.recv() => {
                let answer = supervisor.handle(command).await;
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
        }
    }
    tracing::info!(
        timeout_secs = timeout.as_secs(),
        "Shutting down: draining in-flight messages."
    );
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        tracing::warn!("Second signal: exiting now.");
        std::process::exit(130);
    });
    supervisor.stop_all(Instant::now() + timeout).await;
    signals.abort();
    crate::telemetry::log_stop(&status);
    tracing::info!("Bridge stopped.");
    Ok(())
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
async fn reload_on_sighup(requests: mpsc::Sender<reload::Request>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the plugins.");
            if requests
                .send((reload::Command::Reload(reload::Trigger::Signal), None))
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

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `bridge-host check`: every problem in the configuration and the plugins; with `connect`,
/// also in the brokers (unreachable, missing topics, queues or exchanges).
pub async fn check(path: &Path, connect: bool) -> anyhow::Result<Vec<String>> {
    let config = match BridgeConfig::load(path) {
        Ok(c) => c,
        Err(crate::config::ConfigError::Invalid { problems, .. }) => return Ok(problems),
        Err(e) => return Ok(vec![e.to_string()]),
    };
    let mut problems = load_plugins(&config).err().unwrap_or_default();
    if connect {
        let report = topology::ensure(&config, topology::Mode::Inspect).await;
        problems.extend(report.unreachable);
        problems.extend(report.missing);
    }
    Ok(problems)
}

/// The `--config` path, or an error saying it is required.
pub fn require_config(path: Option<&Path>) -> anyhow::Result<&Path> {
    path.context("no configuration: pass `--config bridge.toml`")
}
