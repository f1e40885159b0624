//! Staged rollout: a candidate version runs in shadow beside the live one on the same
//! messages. Its outputs are compared with the live outputs and counted — same, different,
//! failed — with a few sampled differences; they are never sent.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

/// Differences kept as samples.
const SAMPLES: usize = 5;

/// What a chain made of one message, as a stage compares the candidate's with the live one's.
pub trait Staged {
    /// How `candidate`, made by the candidate version, compares with this live outcome.
    fn compare_with(&self, candidate: &Self) -> Comparison;
    /// The outcome in a few words, for a sampled difference; header values only with
    /// `values` (they may be personal data), else their sizes.
    fn summary(&self, values: bool) -> String;
}

/// How a candidate's outcome compares with the live one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    /// The same outputs.
    Same,
    /// Different outputs: what differs, in a few words.
    Different(String),
    /// The candidate failed and the live version did not.
    CandidateFailed,
}

/// The comparison counts of the current stage.
#[derive(Debug, Default)]
pub struct StageStats {
    same: AtomicU64,
    different: AtomicU64,
    failed: AtomicU64,
    samples: Mutex<Vec<Difference>>,
    /// Samples show header values (`bridge.stage_sample_values`).
    values: AtomicBool,
}

/// One sampled difference between the live and the candidate outputs.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    /// The mapping.
    pub mapping: String,
    /// What differs, in a few words.
    pub what: String,
    /// The live outcome, summarised.
    pub live: String,
    /// The candidate's outcome, summarised.
    pub candidate: String,
}

/// The counts as `/status` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct StageCounts {
    /// Messages on which both made the same outputs.
    pub same: u64,
    /// Messages on which the outputs differ.
    pub different: u64,
    /// Messages on which the candidate failed and the live version did not.
    pub failed: u64,
    /// The first differences.
    pub samples: Vec<Difference>,
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

impl StageStats {
    /// Whether sampled differences show header values, not only their sizes.
    pub fn show_values(&self, on: bool) {
        self.values.store(on, Ordering::Relaxed);
    }

    /// Starts counting afresh (a new stage).
    pub fn reset(&self) {
        self.same.store(0, Ordering::Relaxed);
        self.different.store(0, Ordering::Relaxed);
        self.failed.store(0, Ordering::Relaxed);
        if let Ok(mut s) = self.samples.lock() {
            s.clear();
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> StageCounts {
        StageCounts {
            same: self.same.load(Ordering::Relaxed),
            different: self.different.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            samples: self.samples.lock().map(|s| s.clone()).unwrap_or_default(),
        }
    }

    /// Compares what the live chain and the candidate chain made of one message.
    pub fn compare<O: Staged>(&self, mapping: &str, live: &O, candidate: &O) {
        match live.compare_with(candidate) {
            Comparison::Same => {
                self.same.fetch_add(1, Ordering::Relaxed);
            }
            Comparison::Different(what) => {
                self.different.fetch_add(1, Ordering::Relaxed);
                self.sample(mapping, &what, live, candidate);
            }
            Comparison::CandidateFailed => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.sample(mapping, "the candidate failed", live, candidate);
            }
        }
    }

    fn sample<O: Staged>(&self, mapping: &str, what: &str, live: &O, candidate: &O) {
        if let Ok(mut samples) = self.samples.lock()
            && samples.len() < SAMPLES
        {
            samples.push(Difference {
                mapping: mapping.to_string(),
                what: what.to_string(),
                live: live.summary(self.values.load(Ordering::Relaxed)),
                candidate: candidate.summary(self.values.load(Ordering::Relaxed)),
            });
        }
    }
}
