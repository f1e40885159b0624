//! The running mappings and what a reload does to them. Each mapping runs in its own task with
//! its own stop signal, so a configuration reload stops (drained, offsets committed), starts and
//! restarts exactly the mappings it changes and leaves the others running untouched.

mod clients;
mod mapping;

pub use clients::Clients;
pub use mapping::open_target;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{BridgeConfig, mapping_changes};
use crate::health::{Answer, Command, Request, Trigger};
use crate::pipeline::Shutdown;
use crate::plugin::PluginSet;
use crate::reload;
use crate::status::{ReloadReport, Status};
use crate::topology;

/// How often readiness asks each Kafka cluster for metadata.
const KAFKA_PROBE_EVERY: Duration = Duration::from_secs(2);

/// A mapping's task and its stop signal.
struct Running {
    stop: watch::Sender<Shutdown>,
    task: JoinHandle<()>,
}

/// Owns the mappings' tasks, the Kafka readiness probe and the file watch.
pub struct Supervisor {
    path: PathBuf,
    config: Arc<BridgeConfig>,
    /// The configuration text last applied: a reload parses the file again only when it
    /// differs.
    config_text: String,
    /// The text last rejected: a file change that leaves it so is not tried again, but SIGHUP
    /// and `POST /admin/reload` retry it in full (the cause may have been fixed outside the
    /// file: a plugin file, a topic, a certificate).
    rejected_text: Option<String>,
    plugins: Arc<PluginSet>,
    /// The clients and worker pools the mappings of each tenant share.
    clients: Arc<Clients>,
    status: Arc<Status>,
    running: HashMap<String, Running>,
    /// Mappings told to stop whose tasks have not ended yet.
    stopping: Vec<JoinHandle<()>>,
    probe: Option<JoinHandle<()>>,
    requests: mpsc::Sender<Request>,
    watch:
        Option<notify_debouncer_mini::Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>>,
}

impl Supervisor {
    /// Starts every mapping of `config` (read from `path` as `config_text`).
    pub fn start(
        path: PathBuf,
        config_text: String,
        config: Arc<BridgeConfig>,
        plugins: Arc<PluginSet>,
        status: Arc<Status>,
        requests: mpsc::Sender<Request>,
    ) -> Self {
        let mut supervisor = Supervisor {
            path,
            config: Arc::clone(&config),
            config_text,
            rejected_text: None,
            plugins,
            clients: Arc::default(),
            status,
            running: HashMap::new(),
            stopping: Vec::new(),
            probe: None,
            requests,
            watch: None,
        };
        for m in &config.mapping {
            supervisor.spawn(&m.name);
        }
        supervisor
            .plugins
            .stage_stats()
            .show_values(config.bridge.stage_sample_values);
        supervisor.restart_probe();
        supervisor.rewatch();
        supervisor
    }

    fn spawn(&mut self, name: &str) {
        let Some(mapping) = self.config.mapping.iter().find(|m| m.name == name) else {
            return;
        };
        let Some(state) = self.status.mapping(name) else {
            return;
        };
        let (stop, rx) = watch::channel(Shutdown {
            stopping: false,
            deadline: Instant::now(),
        });
        // Every line the mapping logs carries its tenant.
        let span = tracing::info_span!("mapping", tenant = %mapping.tenant());
        let task = tokio::spawn(
            mapping::run_mapping(
                Arc::clone(&self.config),
                mapping.clone(),
                Arc::clone(&self.plugins),
                Arc::clone(&self.clients),
                state,
                rx,
            )
            .instrument(span),
        );
        self.running
            .insert(name.to_string(), Running { stop, task });
    }

    /// Restarts the Kafka readiness probe if it ended (it runs until replaced): a probe that
    /// died would leave each cluster's readiness as it last was.
    pub fn check_background(&mut self) {
        if self
            .probe
            .as_ref()
            .is_some_and(tokio::task::JoinHandle::is_finished)
        {
            tracing::error!("The Kafka readiness probe ended; restarting it.");
            self.restart_probe();
        }
    }

    fn restart_probe(&mut self) {
        if let Some(old) = self.probe.take() {
            old.abort();
        }
        let status = Arc::clone(&self.status);
        let clusters = status
            .watched_clusters()
            .into_iter()
            .filter_map(|name| {
                let cluster = self.config.kafka.get(&name)?.clone();
                Some((name, cluster))
            })
            .collect();
        self.probe = Some(tokio::spawn(crate::kafka::probe::watch(
            clusters,
            KAFKA_PROBE_EVERY,
            move |name, up| status.cluster_reachable(name, up),
        )));
    }

    /// Watches the configuration file and every plugin file, unless `watch_plugins = false`.
    fn rewatch(&mut self) {
        self.watch = None;
        if !self.config.bridge.watch_plugins {
            return;
        }
        let mut files = self.plugins.paths();
        files.push(self.path.clone());
        self.watch = reload::watch_files(&files, self.requests.clone())
            .inspect_err(|e| tracing::warn!(error = %e, "Cannot watch the plugin and configuration files; SIGHUP and POST /admin/reload still reload."))
            .ok();
    }

    /// Stops the mappings `names`, each draining until `deadline` and committing what was
    /// settled; waits for all of them.
    async fn stop(&mut self, names: &[String], deadline: Instant) {
        for name in names {
            if let Some(r) = self.running.remove(name) {
                let _ = r.stop.send(Shutdown {
                    stopping: true,
                    deadline,
                });
                self.stopping.push(r.task);
            }
        }
        // Kept on the supervisor until each has ended: a stop that interrupts a reload still
        // waits for the mappings that reload was stopping.
        while let Some(task) = self.stopping.first_mut() {
            let _ = task.await;
            self.stopping.remove(0);
        }
    }

    /// Stops every mapping (SIGTERM): drain until `deadline`, commit, return.
    pub async fn stop_all(&mut self, deadline: Instant) {
        let names: Vec<String> = self.running.keys().cloned().collect();
        self.stop(&names, deadline).await;
        if let Some(p) = self.probe.take() {
            p.abort();
        }
    }

    /// Carries out an admin, signal or file-watch command.
    pub async fn handle(&mut self, command: Command) -> Answer {
        let answer = |code: u16, body: serde_json::Value| Answer { code, body };
        match command {
            Command::Reload(trigger) => {
                let report = self.reload(trigger).await;
                let code = if report.rejected.is_empty() && report.config != "rejected" {
                    200
                } else {
                    422
                };
                answer(code, serde_json::to_value(&report).unwrap_or_default())
            }
            Command::Stage { plugin, path } => {
                let path = if path.is_absolute() {
                    path
                } else {
                    self.config.base_dir.join(path)
                };
                let set = Arc::clone(&self.plugins);
                let name = plugin.clone();
                let staged = tokio::task::spawn_blocking(move || reload::stage(&set, &name, path))
                    .await
                    .unwrap_or_else(|e| Err(reload::CandidateError::Task(e)))
                    .map_err(|e| crate::pipeline::error_text(&e));
                match staged {
                    Ok(candidate) => {
                        tracing::info!(
                            plugin,
                            candidate,
                            "Candidate staged: it runs in shadow, its outputs are compared and not sent."
                        );
                        answer(200, serde_json::json!({ "staged": candidate }))
                    }
                    Err(error) => {
                        self.status
                            .metrics()
                            .emit(crate::telemetry::BridgeEvent::PluginRejected {
                                plugin: &plugin,
                                reason: &error,
                                trigger: "stage",
                            });
                        answer(422, serde_json::json!({ "plugin": plugin, "error": error }))
                    }
                }
            }
            Command::Promote | Command::Rollback => {
                let promote = command == Command::Promote;
                let comparison = self.plugins.stage_view().counts;
                let result = if promote {
                    self.plugins.promote()
                } else {
                    self.plugins.rollback()
                };
                let trigger = if promote { "promote" } else { "rollback" };
                match result {
                    Ok(swapped) => {
                        let report = ReloadReport {
                            applied: swapped.iter().map(|(_, p)| p.describe()).collect(),
                            ..ReloadReport::default()
                        };
                        self.status.reloaded(
                            &self.config,
                            trigger,
                            &report,
                            &swapped,
                            &self.plugins,
                        );
                        tracing::info!(trigger, live = %report.applied.join(","), same = comparison.same, different = comparison.different, failed = comparison.failed, "Stage ended.");
                        answer(
                            200,
                            serde_json::json!({ trigger: report.applied, "comparison": comparison }),
                        )
                    }
                    Err(error) => answer(409, serde_json::json!({ "error": error.to_string() })),
                }
            }
        }
    }

    /// Reloads: the configuration file when its text changed (applied whole or rejected
    /// whole), else every plugin file that changed.
    async fn reload(&mut self, trigger: Trigger) -> ReloadReport {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                let error = format!("cannot read {}: {e}", self.path.display());
                self.status.config_rejected(&error, trigger.as_str());
                let mut report = self.reload_plugins(trigger).await;
                report.config = "rejected";
                report.config_error = Some(error);
                return report;
            }
        };
        let rejected_before = self.rejected_text.as_ref() == Some(&text);
        if text == self.config_text || (rejected_before && trigger == Trigger::File) {
            return self.reload_plugins(trigger).await;
        }
        match self.apply_config(&text, trigger).await {
            Ok(report) => {
                self.config_text = text;
                self.rejected_text = None;
                report
            }
            Err(problems) => {
                self.rejected_text = Some(text);
                let error = problems.join("; ");
                self.status.config_rejected(&error, trigger.as_str());
                let mut report = self.reload_plugins(trigger).await;
                report.config = "rejected";
                report.config_error = Some(error);
                report
            }
        }
    }

    async fn reload_plugins(&self, trigger: Trigger) -> ReloadReport {
        let set = Arc::clone(&self.plugins);
        let (mut report, swapped) =
            match tokio::task::spawn_blocking(move || reload::reload_plugins(&set)).await {
                Ok(done) => done,
                Err(e) => {
                    // A bug, not a plugin's fault: the running versions stay, and the caller
                    // is told the reload failed.
                    let error = format!("the plugin reload failed: {e}");
                    tracing::error!(trigger = trigger.as_str(), error, "Plugin reload failed.");
                    self.status.config_rejected(&error, trigger.as_str());
                    return ReloadReport {
                        config: "rejected",
                        config_error: Some(error),
                        ..ReloadReport::default()
                    };
                }
            };
        report.config = "unchanged";
        self.status.reloaded(
            &self.config,
            trigger.as_str(),
            &report,
            &swapped,
            &self.plugins,
        );
        report
    }

    /// Applies a new configuration, or changes nothing and says why.
    async fn apply_config(
        &mut self,
        text: &str,
        trigger: Trigger,
    ) -> Result<ReloadReport, Vec<String>> {
        let new = BridgeConfig::parse(&self.path, text, &|name| std::env::var(name).ok())
            .map_err(|e| vec![e.to_string()])?;
        let new = Arc::new(new);
        if new.bridge != self.config.bridge {
            tracing::warn!("`[bridge]` settings changed: they take effect at the next restart.");
        }
        let changes = mapping_changes(&self.config, &new);
        let set = Arc::clone(&self.plugins);
        let for_plugins = Arc::clone(&new);
        let prepared = tokio::task::spawn_blocking(move || reload::prepare(&set, &for_plugins))
            .await
            .map_err(|e| vec![format!("loading the plugins failed: {e}")])??;
        let starting: BTreeSet<&String> = changes.added.iter().chain(&changes.restarted).collect();
        if !starting.is_empty() {
            let mut subset = (*new).clone();
            subset.mapping.retain(|m| starting.contains(&m.name));
            let topology = topology::ensure(&subset, topology::Mode::Declare).await;
            if !topology.missing.is_empty() {
                return Err(topology.missing);
            }
        }

        // Valid as a whole: apply. Stopped mappings drain and commit first.
        let drain = Duration::from_secs(self.config.bridge.shutdown_timeout_secs);
        let stopping: Vec<String> = changes
            .removed
            .iter()
            .chain(&changes.restarted)
            .cloned()
            .collect();
        self.stop(&stopping, Instant::now() + drain).await;
        let swapped = self.plugins.commit(prepared);
        self.config = Arc::clone(&new);
        self.status.configure(&new);
        self.plugins
            .stage_stats()
            .show_values(new.bridge.stage_sample_values);
        let mut report = ReloadReport {
            config: "applied",
            applied: swapped.iter().map(|(_, p)| p.describe()).collect(),
            mappings: Some(changes.clone()),
            ..ReloadReport::default()
        };
        report.unchanged = new.plugins.len().saturating_sub(report.applied.len());
        self.status
            .reloaded(&new, trigger.as_str(), &report, &swapped, &self.plugins);
        for name in changes.added.iter().chain(&changes.restarted) {
            self.spawn(name);
        }
        self.restart_probe();
        self.rewatch();
        self.status.config_applied(&changes, trigger.as_str());
        Ok(report)
    }
}
