//! Hot reload of plugins. The bridge's plugins live in a [`PluginSet`]; a reload (a changed
//! plugin file, SIGHUP, or `POST /admin/reload`) reads every plugin file, and for each whose
//! content changed compiles, checks and initialises the new version off the message path. A
//! version that passes replaces the old one in the set; each mapping's chain picks it up
//! between two batches, so every message runs its whole chain on one version of each plugin
//! and no mapping pauses for another's swap. A version that fails is rejected with its reason
//! and the running one stays.

mod stage;
mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use watch::watch_files;

use crate::config::BridgeConfig;
use crate::pipeline::error_text;
use crate::plugin::{
    CallError, Kind, Kinds, LoadError, LoadedPlugin, PluginSet, PluginSpec, Prepared, Rejection,
    Swap,
};
use crate::status::ReloadReport;

/// Why a new version of a plugin is not taken.
#[derive(Debug, thiserror::Error)]
pub enum CandidateError {
    /// A stage for a plugin the bridge does not run.
    #[error("no plugin `{0}` is running")]
    NotRunning(String),
    /// The live plugin's directory cannot be resolved.
    #[error("cannot resolve the directory of {}", .0.display())]
    NoDir(PathBuf),
    /// The candidate's file cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The candidate's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The candidate is not beside the file it replaces.
    #[error("{} is outside {}, the directory of the plugin's file: a candidate must sit beside the file it replaces", candidate.display(), dir.display())]
    Outside {
        /// The candidate's path.
        candidate: PathBuf,
        /// The live plugin's directory.
        dir: PathBuf,
    },
    /// The new version does not load or start.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The new version lacks an interface its mappings call.
    #[error("it does not export `{0}`, which its mappings call")]
    MissingExport(&'static str),
    /// A canary message cannot be read.
    #[error("cannot read canary message `{}`", path.display())]
    CanaryRead {
        /// The canary's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A canary message is not message JSON.
    #[error("canary message `{}` is not message JSON", path.display())]
    CanaryJson {
        /// The canary's path.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The new version fails on a canary message.
    #[error("fails on canary message `{}` ({}): {}", path.display(), source.kind, source.detail)]
    Canary {
        /// The canary's path.
        path: PathBuf,
        /// How it failed.
        #[source]
        source: CallError,
    },
    /// The check itself did not finish (its task panicked).
    #[error("the check did not finish")]
    Task(#[source] tokio::task::JoinError),
}

/// Stages the component at `path` as the candidate of plugin `name`: loaded, checked and
/// initialised like a reload, then run in shadow beside the live version.
pub fn stage(set: &PluginSet, name: &str, path: PathBuf) -> Result<String, CandidateError> {
    let Some(live) = set.get(name) else {
        return Err(CandidateError::NotRunning(name.to_string()));
    };
    let path = beside(&live.spec().path, &path)?;
    let spec = PluginSpec {
        path,
        ..live.spec().clone()
    };
    let candidate = check(set, &spec, set.use_of(name))?;
    Ok(set.add_candidate(name, candidate))
}

/// `candidate`, resolved (symbolic links too), when it is in the directory of the plugin file
/// `live` or below it: an admin request may not make the bridge read files elsewhere.
fn beside(live: &Path, candidate: &Path) -> Result<PathBuf, CandidateError> {
    let dir = live
        .parent()
        .and_then(|d| d.canonicalize().ok())
        .ok_or_else(|| CandidateError::NoDir(live.to_path_buf()))?;
    let resolved = candidate
        .canonicalize()
        .map_err(|source| CandidateError::Read {
            path: candidate.to_path_buf(),
            source,
        })?;
    if resolved.starts_with(&dir) {
        Ok(resolved)
    } else {
        Err(CandidateError::Outside {
            candidate: candidate.to_path_buf(),
            dir,
        })
    }
}

/// Loads what a new configuration needs: every plugin that is new, whose spec (file,
/// config, limits) changed or whose file changed, checked against the new mappings' uses.
/// Nothing is swapped yet ([`PluginSet::commit`] does); any problem rejects the whole
/// configuration.
pub fn prepare(set: &PluginSet, config: &BridgeConfig) -> Result<Prepared, Vec<String>> {
    let uses = uses(config);
    let mut plugins = HashMap::new();
    let mut problems = Vec::new();
    for (name, plugin) in &config.plugins {
        let spec = config.plugin_spec(name, plugin);
        let running = set.get(name).filter(|p| {
            *p.spec() == spec
                && std::fs::read(&spec.path)
                    .is_ok_and(|b| hex::encode(Sha256::digest(&b)) == p.digest())
        });
        let use_ = uses.get(name).copied().unwrap_or_default();
        match running {
            Some(p) => {
                if let Err(e) = check_uses(&p, use_) {
                    problems.push(format!("`plugins.{name}`: {}", error_text(&e)));
                }
                plugins.insert(name.clone(), p);
            }
            None => match check(set, &spec, use_) {
                Ok(p) => {
                    plugins.insert(name.clone(), p);
                }
                Err(e) => problems.push(format!("`plugins.{name}`: {}", error_text(&e))),
            },
        }
    }
    if problems.is_empty() {
        Ok(Prepared { plugins, uses })
    } else {
        Err(problems)
    }
}

/// Reads every plugin file; swaps in each changed one that compiles, has the exports its
/// mappings use, links, and initialises with its config. Blocking: run it off the runtime.
pub fn reload_plugins(set: &PluginSet) -> (ReloadReport, Vec<Swap>) {
    let mut report = ReloadReport::default();
    let mut passed = Vec::new();
    for (name, spec) in &set.specs() {
        let old = set.get(name);
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
        if let Some(reason) = set.known_rejection(name, &digest) {
            report.rejected.push(Rejection {
                plugin: name.clone(),
                digest: Some(digest),
                reason,
                repeated: true,
            });
            continue;
        }
        match check(set, spec, set.use_of(name)) {
            Ok(new) => {
                set.forget_rejection(name);
                report.applied.push(new.describe());
                passed.push((name.clone(), new));
            }
            Err(e) => {
                let reason = error_text(&e);
                set.remember_rejection(name, &digest, &reason);
                report.rejected.push(Rejection {
                    plugin: name.clone(),
                    digest: Some(digest),
                    reason,
                    repeated: false,
                });
            }
        }
    }
    let swapped = set.swap_in(passed);
    (report, swapped)
}

/// Loads and initialises a new version of a plugin used as `use_`, and runs its canaries.
fn check(
    set: &PluginSet,
    spec: &PluginSpec,
    use_: Kinds,
) -> Result<Arc<LoadedPlugin>, CandidateError> {
    let new = set.runtime().load(spec)?;
    check_uses(&new, use_)?;
    run_canaries(&new)?;
    Ok(new)
}

/// Starts an instance of `plugin` (its `init` with its config) and, for a transform, runs each
/// of its canary messages through it: a trap, a timeout or a limit hit rejects the version. A
/// verdict of any kind (forward, drop, dead-letter) is fine.
pub fn run_canaries(plugin: &Arc<LoadedPlugin>) -> Result<(), CandidateError> {
    let mut instance = plugin.instantiate()?;
    if !plugin.kinds().contains(Kind::Transform) {
        return Ok(());
    }
    for path in &plugin.spec().canaries {
        let text = std::fs::read_to_string(path).map_err(|source| CandidateError::CanaryRead {
            path: path.clone(),
            source,
        })?;
        let not_json =
            |source: Box<dyn std::error::Error + Send + Sync>| CandidateError::CanaryJson {
                path: path.clone(),
                source,
            };
        let message = serde_json::from_str::<crate::message_json::JsonMessage>(&text)
            .map_err(|e| not_json(e.into()))?
            .into_message()
            .map_err(|e| not_json(e.into()))?;
        instance
            .process(message)
            .map_err(|source| CandidateError::Canary {
                path: path.clone(),
                source,
            })?;
    }
    Ok(())
}

/// The kinds each plugin is called as by the configuration's mappings.
pub fn uses(config: &BridgeConfig) -> HashMap<String, Kinds> {
    let mut uses: HashMap<String, Kinds> = HashMap::new();
    for m in &config.mapping {
        for (p, kind) in m.plugin_uses() {
            let used = uses.entry(p.to_string()).or_default();
            *used = used.with(kind);
        }
    }
    uses
}

fn check_uses(plugin: &LoadedPlugin, used: Kinds) -> Result<(), CandidateError> {
    match used.iter().find(|k| !plugin.kinds().contains(*k)) {
        Some(kind) => Err(CandidateError::MissingExport(kind.info().interface)),
        None => Ok(()),
    }
}
