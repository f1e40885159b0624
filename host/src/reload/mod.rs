//! Hot reload of plugins. The bridge's plugins live in a [`PluginSet`]; a reload (a changed
//! plugin file, SIGHUP, or `POST /admin/reload`) reads every plugin file, and for each whose
//! content changed compiles, checks and initialises the new version off the message path. A
//! version that passes replaces the old one in the set; each mapping's chain picks it up
//! between two batches, so every message runs its whole chain on one version of each plugin
//! and no mapping pauses for another's swap. A version that fails is rejected with its reason
//! and the running one stays.

mod diff;
mod stage;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

pub use diff::{MappingChanges, mapping_changes};
pub use stage::{Difference, StageCounts, StageStats};
pub use watch::watch_files;

use crate::config::BridgeConfig;
use crate::plugin::{Kind, Kinds, LoadedPlugin, PluginRuntime, PluginSpec};

/// The plugins the bridge runs, by name, with a generation that moves on every swap.
pub struct PluginSet {
    runtime: PluginRuntime,
    specs: RwLock<BTreeMap<String, PluginSpec>>,
    /// How each plugin is used (a transform, a policy), from the mappings.
    uses: RwLock<HashMap<String, Kinds>>,
    current: Versions,
    /// The last rejected file of each plugin (digest, reason): not checked again.
    rejected: Mutex<HashMap<String, (String, String)>>,
    /// Staged candidates, running in shadow.
    candidates: Versions,
    /// The versions the last promotion replaced, kept loaded for an instant rollback.
    previous: Versions,
    /// How the candidates compare with the live versions.
    stage: Arc<StageStats>,
    generation: AtomicU64,
}

/// What the current stage looks like, for `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct StageView {
    /// Candidates in shadow: plugin name → `name@sha256:…`.
    pub candidates: BTreeMap<String, String>,
    /// Versions a rollback would bring back.
    pub previous: BTreeMap<String, String>,
    /// The comparison since the stage began.
    #[serde(flatten)]
    pub counts: StageCounts,
}

/// A swapped plugin: the version replaced (none if it was not running) and the new one.
pub type Swap = (Option<Arc<LoadedPlugin>>, Arc<LoadedPlugin>);

impl std::fmt::Debug for PluginSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSet")
            .field(
                "plugins",
                &self.all().iter().map(|p| p.describe()).collect::<Vec<_>>(),
            )
            .field("generation", &self.generation())
            .finish()
    }
}

/// What one reload did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadReport {
    /// The configuration file: `unchanged`, `applied` or `rejected`.
    pub config: &'static str,
    /// Why the configuration was rejected (it names the file, line and key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    /// The mappings the configuration reload stopped, started and restarted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mappings: Option<MappingChanges>,
    /// Plugins swapped to a new version: `name@sha256:…`.
    pub applied: Vec<String>,
    /// Plugins whose new version was rejected, with the reason; the old version keeps running.
    pub rejected: Vec<Rejection>,
    /// Plugins whose file did not change.
    pub unchanged: usize,
}

/// A rejected plugin version.
#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    /// The plugin's name in the config.
    pub plugin: String,
    /// The rejected file's SHA-256 in hex, if it could be read.
    pub digest: Option<String>,
    /// Why it was rejected.
    pub reason: String,
    /// This very file was rejected before (it was not checked again).
    pub repeated: bool,
}

impl PluginSet {
    /// The set of already loaded plugins of `config`, on `runtime` (whose compile cache the
    /// reloads reuse).
    pub fn new(
        config: &BridgeConfig,
        runtime: PluginRuntime,
        loaded: HashMap<String, Arc<LoadedPlugin>>,
    ) -> Self {
        PluginSet {
            runtime,
            specs: RwLock::new(
                loaded
                    .iter()
                    .map(|(name, p)| (name.clone(), p.spec().clone()))
                    .collect(),
            ),
            uses: RwLock::new(uses(config)),
            current: RwLock::new(loaded),
            rejected: Mutex::default(),
            candidates: RwLock::default(),
            previous: RwLock::default(),
            stage: Arc::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// The running version of plugin `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.current.read().ok()?.get(name).cloned()
    }

    /// The staged candidate of plugin `name`, if one runs in shadow.
    pub fn candidate(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.candidates.read().ok()?.get(name).cloned()
    }

    /// Where shadow comparisons are counted.
    pub fn stage_stats(&self) -> Arc<StageStats> {
        Arc::clone(&self.stage)
    }

    /// The current stage: candidates, the versions a rollback brings back, the comparison.
    pub fn stage_view(&self) -> StageView {
        let describe = |m: &Versions| {
            m.read()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.describe())).collect())
                .unwrap_or_default()
        };
        StageView {
            candidates: describe(&self.candidates),
            previous: describe(&self.previous),
            counts: self.stage.counts(),
        }
    }

    /// Stages the component at `path` as the candidate of plugin `name`: loaded, checked and
    /// initialised like a reload, then run in shadow beside the live version.
    pub fn stage(&self, name: &str, path: PathBuf) -> Result<String, String> {
        let Some(live) = self.get(name) else {
            return Err(format!("no plugin `{name}` is running"));
        };
        let spec = PluginSpec {
            path,
            ..live.spec().clone()
        };
        let use_ = self.use_of(name);
        let candidate = self.check(&spec, use_)?;
        let described = candidate.describe();
        if let Ok(mut c) = self.candidates.write() {
            c.insert(name.to_string(), candidate);
        }
        self.stage.reset();
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(described)
    }

    /// Makes every candidate live; the versions they replace stay loaded for a rollback.
    pub fn promote(&self) -> Result<Vec<Swap>, String> {
        let candidates = take(&self.candidates);
        if candidates.is_empty() {
            return Err("nothing is staged: stage a candidate first".into());
        }
        let mut swapped = Vec::new();
        if let (Ok(mut current), Ok(mut previous)) = (self.current.write(), self.previous.write()) {
            previous.clear();
            for (name, candidate) in candidates {
                let old = current.insert(name.clone(), Arc::clone(&candidate));
                if let Some(old) = &old {
                    previous.insert(name, Arc::clone(old));
                }
                swapped.push((old, candidate));
            }
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(swapped)
    }

    /// Ends a stage without promoting it, or after a promotion brings the previous versions
    /// back at once (they stayed loaded).
    pub fn rollback(&self) -> Result<Vec<Swap>, String> {
        let dropped = take(&self.candidates);
        if !dropped.is_empty() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            return Ok(Vec::new());
        }
        let previous = take(&self.previous);
        if previous.is_empty() {
            return Err("nothing to roll back: no stage and no promotion".into());
        }
        let mut swapped = Vec::new();
        if let Ok(mut current) = self.current.write() {
            for (name, old) in previous {
                let promoted = current.insert(name, Arc::clone(&old));
                swapped.push((promoted, old));
            }
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(swapped)
    }

    /// Every running plugin.
    pub fn all(&self) -> Vec<Arc<LoadedPlugin>> {
        self.current
            .read()
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Moves on every swap; chains compare it between batches.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The plugin files, to watch.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.specs().into_values().map(|s| s.path).collect()
    }

    fn specs(&self) -> BTreeMap<String, PluginSpec> {
        self.specs.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Loads what a new configuration needs: every plugin that is new, whose spec (file,
    /// config, limits) changed or whose file changed, checked against the new mappings' uses.
    /// Nothing is swapped yet; any problem rejects the whole configuration.
    pub fn prepare(&self, config: &BridgeConfig) -> Result<Prepared, Vec<String>> {
        let uses = uses(config);
        let mut plugins = HashMap::new();
        let mut problems = Vec::new();
        for (name, plugin) in &config.plugins {
            let spec = config.plugin_spec(name, plugin);
            let running = self.get(name).filter(|p| {
                *p.spec() == spec
                    && std::fs::read(&spec.path)
                        .is_ok_and(|b| hex::encode(Sha256::digest(&b)) == p.digest())
            });
            let use_ = uses.get(name).copied().unwrap_or_default();
            match running {
                Some(p) => {
                    if let Err(e) = check_uses(&p, use_) {
                        problems.push(format!("`plugins.{name}`: {e}"));
                    }
                    plugins.insert(name.clone(), p);
                }
                None => match self.check(&spec, use_) {
                    Ok(p) => {
                        plugins.insert(name.clone(), p);
                    }
                    Err(e) => problems.push(format!("`plugins.{name}`: {e}")),
                },
            }
        }
        if problems.is_empty() {
            Ok(Prepared { plugins, uses })
        } else {
            Err(problems)
        }
    }

    /// Swaps in what [`PluginSet::prepare`] loaded; returns the plugins that changed.
    pub fn commit(&self, prepared: Prepared) -> Vec<Swap> {
        let Prepared { plugins, uses } = prepared;
        let mut swapped = Vec::new();
        if let Ok(mut current) = self.current.write() {
            for (name, new) in &plugins {
                let old = current.get(name);
                if !old.is_some_and(|o| Arc::ptr_eq(o, new)) {
                    swapped.push((old.cloned(), Arc::clone(new)));
                }
            }
            let removed = current.keys().any(|k| !plugins.contains_key(k));
            if removed || !swapped.is_empty() {
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
            if let Ok(mut specs) = self.specs.write() {
                *specs = plugins
                    .iter()
                    .map(|(n, p)| (n.clone(), p.spec().clone()))
                    .collect();
            }
            if let Ok(mut u) = self.uses.write() {
                *u = uses;
            }
            *current = plugins;
        }
        swapped
    }

    /// Reads every plugin file; swaps in each changed one that compiles, has the exports its
    /// mappings use, links, and initialises with its config. Blocking: run it off the runtime.
    pub fn reload(&self) -> (ReloadReport, Vec<Swap>) {
        let mut report = ReloadReport::default();
        let mut swapped = Vec::new();
        for (name, spec) in &self.specs() {
            let old = self.get(name);
            let digest = match std::fs::read(&spec.path) {
                Ok(bytes) => hex::encode(Sha256::digest(&bytes)),
                Err(e) => {
                    report.rejected.push(Rejection {
                        plugin: name.clone(),
                        digest: None,
                        reason: format!("cannot read {}: {e}", spec.path.display()),
                        repeated: false,
                    });
                    continue;
                }
            };
            if old.as_ref().is_some_and(|o| o.digest() == digest) {
                report.unchanged += 1;
                continue;
            }
            let known = self.rejected.lock().ok().and_then(|r| r.get(name).cloned());
            if let Some((_, reason)) = known.filter(|(d, _)| *d == digest) {
                report.rejected.push(Rejection {
                    plugin: name.clone(),
                    digest: Some(digest),
                    reason,
                    repeated: true,
                });
                continue;
            }
            let use_ = self.use_of(name);
            match self.check(spec, use_) {
                Ok(new) => {
                    if let Ok(mut rejected) = self.rejected.lock() {
                        rejected.remove(name);
                    }
                    if let Ok(mut current) = self.current.write() {
                        current.insert(name.clone(), Arc::clone(&new));
                    }
                    report.applied.push(new.describe());
                    swapped.push((old, new));
                }
                Err(reason) => {
                    if let Ok(mut rejected) = self.rejected.lock() {
                        rejected.insert(name.clone(), (digest.clone(), reason.clone()));
                    }
                    report.rejected.push(Rejection {
                        plugin: name.clone(),
                        digest: Some(digest),
                        reason,
                        repeated: false,
                    });
                }
            }
        }
        if !swapped.is_empty() {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        (report, swapped)
    }

    /// How the mappings use plugin `name`.
    fn use_of(&self, name: &str) -> Kinds {
        self.uses
            .read()
            .ok()
            .and_then(|u| u.get(name).copied())
            .unwrap_or_default()
    }

    /// Loads and initialises a new version of a plugin used as `use_`, and runs its canaries.
    fn check(&self, spec: &PluginSpec, use_: Kinds) -> Result<Arc<LoadedPlugin>, String> {
        let new = self.runtime.load(spec).map_err(|e| e.to_string())?;
        check_uses(&new, use_)?;
        run_canaries(&new)?;
        Ok(new)
    }
}

/// Starts an instance of `plugin` (its `init` with its config) and, for a transform, runs each
/// of its canary messages through it: a trap, a timeout or a limit hit rejects the version. A
/// verdict of any kind (forward, drop, dead-letter) is fine.
pub fn run_canaries(plugin: &Arc<LoadedPlugin>) -> Result<(), String> {
    let mut instance = plugin.instantiate().map_err(|e| e.to_string())?;
    if !plugin.kinds().contains(Kind::Transform) {
        return Ok(());
    }
    for path in &plugin.spec().canaries {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read canary message `{shown}`: {e}"))?;
        let message = serde_json::from_str::<crate::message_json::JsonMessage>(&text)
            .map_err(|e| e.to_string())
            .and_then(crate::message_json::JsonMessage::into_message)
            .map_err(|e| format!("canary message `{shown}` is not message JSON: {e}"))?;
        instance.process(message).map_err(|e| {
            format!(
                "fails on canary message `{shown}` ({}): {}",
                e.kind, e.detail
            )
        })?;
    }
    Ok(())
}

type Versions = RwLock<HashMap<String, Arc<LoadedPlugin>>>;

/// Empties `versions`, returning what it held.
fn take(versions: &Versions) -> HashMap<String, Arc<LoadedPlugin>> {
    versions
        .write()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default()
}

/// Plugins loaded for a new configuration, not swapped in yet.
pub struct Prepared {
    plugins: HashMap<String, Arc<LoadedPlugin>>,
    uses: HashMap<String, Kinds>,
}

/// The kinds each plugin is called as by the configuration's mappings.
fn uses(config: &BridgeConfig) -> HashMap<String, Kinds> {
    let mut uses: HashMap<String, Kinds> = HashMap::new();
    for m in &config.mapping {
        for (p, kind) in m.plugin_uses() {
            let used = uses.entry(p.to_string()).or_default();
            *used = used.with(kind);
        }
    }
    uses
}

fn check_uses(plugin: &LoadedPlugin, used: Kinds) -> Result<(), String> {
    match used.iter().find(|k| !plugin.kinds().contains(*k)) {
        Some(kind) => Err(format!(
            "it does not export `{}`, which its mappings call",
            kind.info().interface
        )),
        None => Ok(()),
    }
}

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
