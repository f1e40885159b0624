//! The plugins the bridge runs, by name: the live versions, the candidates staged in shadow
//! beside them, and the versions the last promotion replaced (kept loaded for an instant
//! rollback). Every swap moves the set's generation; each mapping's chain picks up the new
//! versions between two batches, so every message runs its whole chain on one version of each
//! plugin and no mapping pauses for another's swap.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;

use super::error::StageError;
use super::kind::Kinds;
use super::loader::{LoadedPlugin, PluginSpec};
use super::runtime::PluginRuntime;
use super::stage::{StageStats, StageView};

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

/// A swapped plugin: the version replaced (none if it was not running) and the new one.
pub type Swap = (Option<Arc<LoadedPlugin>>, Arc<LoadedPlugin>);

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

/// Plugins loaded for a new configuration, not swapped in yet.
pub struct Prepared {
    /// Every plugin of the new configuration, by name.
    pub plugins: HashMap<String, Arc<LoadedPlugin>>,
    /// How the new configuration's mappings use each plugin.
    pub uses: HashMap<String, Kinds>,
}

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

impl PluginSet {
    /// The set of already loaded plugins, on `runtime` (whose compile cache the reloads
    /// reuse), used by the mappings as `uses` says.
    pub fn new(
        runtime: PluginRuntime,
        loaded: HashMap<String, Arc<LoadedPlugin>>,
        uses: HashMap<String, Kinds>,
    ) -> Self {
        PluginSet {
            runtime,
            specs: RwLock::new(
                loaded
                    .iter()
                    .map(|(name, p)| (name.clone(), p.spec().clone()))
                    .collect(),
            ),
            uses: RwLock::new(uses),
            current: RwLock::new(loaded),
            rejected: Mutex::default(),
            candidates: RwLock::default(),
            previous: RwLock::default(),
            stage: Arc::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// The runtime new versions are loaded on.
    pub fn runtime(&self) -> &PluginRuntime {
        &self.runtime
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

    /// Runs `candidate` (already checked) in shadow beside the live version of plugin `name`,
    /// counting afresh; returns it as `name@sha256:…`.
    pub fn add_candidate(&self, name: &str, candidate: Arc<LoadedPlugin>) -> String {
        let described = candidate.describe();
        if let Ok(mut c) = self.candidates.write() {
            c.insert(name.to_string(), candidate);
        }
        self.stage.reset();
        self.generation.fetch_add(1, Ordering::AcqRel);
        described
    }

    /// Makes every candidate live; the versions they replace stay loaded for a rollback.
    pub fn promote(&self) -> Result<Vec<Swap>, StageError> {
        let candidates = take(&self.candidates);
        if candidates.is_empty() {
            return Err(StageError::NothingStaged);
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
    pub fn rollback(&self) -> Result<Vec<Swap>, StageError> {
        let dropped = take(&self.candidates);
        if !dropped.is_empty() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            return Ok(Vec::new());
        }
        let previous = take(&self.previous);
        if previous.is_empty() {
            return Err(StageError::NothingToRollBack);
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

    /// What each plugin was loaded from, by name.
    pub fn specs(&self) -> BTreeMap<String, PluginSpec> {
        self.specs.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// How the mappings use plugin `name`.
    pub fn use_of(&self, name: &str) -> Kinds {
        self.uses
            .read()
            .ok()
            .and_then(|u| u.get(name).copied())
            .unwrap_or_default()
    }

    /// Swaps in what was prepared for a new configuration; returns the plugins that changed.
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

    /// Makes each of `versions` (already checked) the running version of its plugin, in
    /// order; returns the swaps.
    pub fn swap_in(&self, versions: Vec<(String, Arc<LoadedPlugin>)>) -> Vec<Swap> {
        let mut swapped = Vec::new();
        if let Ok(mut current) = self.current.write() {
            for (name, new) in versions {
                let old = current.insert(name, Arc::clone(&new));
                swapped.push((old, new));
            }
        }
        if !swapped.is_empty() {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        swapped
    }

    /// Why the file of plugin `name` with SHA-256 `digest` was rejected, if it was the last
    /// one rejected.
    pub fn known_rejection(&self, name: &str, digest: &str) -> Option<String> {
        let rejected = self.rejected.lock().ok()?;
        rejected
            .get(name)
            .filter(|(d, _)| d == digest)
            .map(|(_, reason)| reason.clone())
    }

    /// Remembers that the file of plugin `name` with SHA-256 `digest` was rejected.
    pub fn remember_rejection(&self, name: &str, digest: &str, reason: &str) {
        if let Ok(mut rejected) = self.rejected.lock() {
            rejected.insert(name.to_string(), (digest.to_string(), reason.to_string()));
        }
    }

    /// Forgets the rejected file of plugin `name` (a version of it passed).
    pub fn forget_rejection(&self, name: &str) {
        if let Ok(mut rejected) = self.rejected.lock() {
            rejected.remove(name);
        }
    }
}

type Versions = RwLock<HashMap<String, Arc<LoadedPlugin>>>;

/// Empties `versions`, returning what it held.
fn take(versions: &Versions) -> HashMap<String, Arc<LoadedPlugin>> {
    versions
        .write()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default()
}
