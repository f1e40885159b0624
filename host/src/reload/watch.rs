//! Watches the plugin files (their directories, so that a file replaced by a rename — as
//! editors, `cp` and Kubernetes volume updates do — is seen too) and asks for a reload once a
//! burst of changes has settled.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify_debouncer_mini::notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};
use tokio::sync::mpsc;

use crate::health::{Command, Request, Trigger};

/// Changes closer together than this make one reload.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Watches `files`; each settled change among them sends a reload request. The watch lasts as
/// long as the returned value.
pub fn watch_files(
    files: &[PathBuf],
    requests: mpsc::Sender<Request>,
) -> notify_debouncer_mini::notify::Result<
    Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>,
> {
    let files: BTreeSet<PathBuf> = files.iter().map(|f| absolute(f)).collect();
    let watched = files.clone();
    let mut debouncer = new_debouncer(DEBOUNCE, move |result: DebounceEventResult| {
        match result {
            Ok(events) if events.iter().any(|e| watched.contains(&absolute(&e.path))) => {
                // A full queue already holds a reload that will see this change.
                let _ = requests.try_send((Command::Reload(Trigger::File), None));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Watching the plugin files failed."),
        }
    })?;
    let dirs: BTreeSet<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    for dir in dirs {
        debouncer
            .watcher()
            .watch(&dir, RecursiveMode::NonRecursive)?;
    }
    Ok(debouncer)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
