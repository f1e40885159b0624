//! Hot reload of plugins. The bridge's plugins live in a [`PluginSet`]; a reload (a changed
//! plugin file, SIGHUP, or `POST /admin/reload`) reads every plugin file, and for each whose
//! content changed compiles, checks and initialises the new version off the message path. A
//! version that passes replaces the old one in the set; each mapping's chain picks it up
//! between two batches, so every message runs its whole chain on one version of each plugin
//! and no mapping pauses for another's swap. A version that fails is rejected with its reason
//! and the running one stays.

mod diff;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

pub use diff::{MappingChanges, mapping_changes};
pub use watch::watch_files;

use crate::config::BridgeConfig;
use crate::plugin::{LoadedPlugin, PluginRuntime, PluginSpec};

/// The plugins the bridge runs, by name, with a generation that moves on every swap.
pub struct PluginSet {
    runtime: PluginRuntime,
    specs: RwLock<BTreeMap<String, PluginSpec>>,
    /// How each plugin is used (a transform, a policy), from the mappings.
    uses: RwLock<HashMap<String, Use>>,
    current: RwLock<HashMap<String, Arc<LoadedPlugin>>>,
    /// The last rejected file of each plugin (digest, reason): not checked again.
    rejected: Mutex<HashMap<String, (String, String)>>,
    generation: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Use {
    transform: bool,
    policy: bool,
}

/// A swapped plugin: the version replaced (none if it was not running) and the new one.
pub type Swap = (Option<Arc<LoadedPlugin>>, Arc<LoadedPlugin>);

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
            generation: AtomicU64::new(0),
        }
    }

    /// The running version of plugin `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.current.read().ok()?.get(name).cloned()
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
            let spec = PluginSpec {
                name: name.clone(),
                path: config.plugin_path(plugin),
                config: plugin.flat_config(),
                limits: plugin.limits.clone(),
            };
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
            let use_ = self
                .uses
                .read()
                .ok()
                .and_then(|u| u.get(name).copied())
                .unwrap_or_default();
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

    /// Loads and initialises a new version of a plugin used as `use_`.
    fn check(&self, spec: &PluginSpec, use_: Use) -> Result<Arc<LoadedPlugin>, String> {
        let new = self.runtime.load(spec).map_err(|e| e.to_string())?;
        check_uses(&new, use_)?;
        new.instantiate().map_err(|e| e.to_string())?;
        Ok(new)
    }
}

/// Plugins loaded for a new configuration, not swapped in yet.
pub struct Prepared {
    plugins: HashMap<String, Arc<LoadedPlugin>>,
    uses: HashMap<String, Use>,
}

fn uses(config: &BridgeConfig) -> HashMap<String, Use> {
    let mut uses: HashMap<String, Use> = HashMap::new();
    for m in &config.mapping {
        for p in &m.plugins {
            uses.entry(p.clone()).or_default().transform = true;
        }
        if let Some(p) = &m.dead_letter_policy {
            uses.entry(p.clone()).or_default().policy = true;
        }
    }
    uses
}

fn check_uses(plugin: &LoadedPlugin, use_: Use) -> Result<(), String> {
    if use_.transform && !plugin.is_transform() {
        return Err("it does not export `bridge:plugin/transform`, which its mappings call".into());
    }
    if use_.policy && !plugin.is_policy() {
        return Err(
            "it does not export `bridge:plugin/dead-letter-policy`, which its mappings call".into(),
        );
    }
    Ok(())
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

/// A reload request, answered with the report when one is wanted.
pub type Request = (Trigger, Option<oneshot::Sender<ReloadReport>>);
