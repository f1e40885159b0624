//! Staged rollout: a candidate version runs in shadow beside the live one on the same
//! messages. Its outputs are compared with the live outputs and counted — same, different,
//! failed — with a few sampled differences; they are never sent.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::pipeline::{ChainOutcome, VERSIONS_HEADER};
use crate::plugin::Message;

/// Differences kept as samples.
const SAMPLES: usize = 5;

/// The comparison counts of the current stage.
#[derive(Debug, Default)]
pub struct StageStats {
    same: AtomicU64,
    different: AtomicU64,
    failed: AtomicU64,
    samples: Mutex<Vec<Difference>>,
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

impl StageStats {
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
    pub fn compare(&self, mapping: &str, live: &ChainOutcome, candidate: &ChainOutcome) {
        let difference = match (live, candidate) {
            (ChainOutcome::Send(a), ChainOutcome::Send(b)) => {
                if a.len() != b.len() {
                    Some(format!("{} outputs instead of {}", b.len(), a.len()))
                } else {
                    a.iter().zip(b).find_map(|(x, y)| differs(x, y))
                }
            }
            (ChainOutcome::Dropped, ChainOutcome::Dropped) => None,
            (ChainOutcome::Failed(a), ChainOutcome::Failed(b)) if a.kind == b.kind => None,
            (l, ChainOutcome::Failed(_)) if !matches!(l, ChainOutcome::Failed(_)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.sample(mapping, "the candidate failed", live, candidate);
                return;
            }
            _ => Some("a different verdict".to_string()),
        };
        match difference {
            None => {
                self.same.fetch_add(1, Ordering::Relaxed);
            }
            Some(what) => {
                self.different.fetch_add(1, Ordering::Relaxed);
                self.sample(mapping, &what, live, candidate);
            }
        }
    }

    fn sample(&self, mapping: &str, what: &str, live: &ChainOutcome, candidate: &ChainOutcome) {
        if let Ok(mut samples) = self.samples.lock()
            && samples.len() < SAMPLES
        {
            samples.push(Difference {
                mapping: mapping.to_string(),
                what: what.to_string(),
                live: summary(live),
                candidate: summary(candidate),
            });
        }
    }
}

/// What differs between two outputs, if anything (the version tag aside).
fn differs(a: &Message, b: &Message) -> Option<String> {
    let headers = |m: &Message| -> Vec<(String, Vec<u8>)> {
        m.headers
            .iter()
            .filter(|(k, _)| k != VERSIONS_HEADER)
            .cloned()
            .collect()
    };
    if a.key != b.key {
        return Some("the key".into());
    }
    if a.payload != b.payload {
        return Some("the payload".into());
    }
    let (ha, hb) = (headers(a), headers(b));
    if ha != hb {
        let changed: Vec<&str> = hb
            .iter()
            .filter(|h| !ha.contains(h))
            .chain(ha.iter().filter(|h| !hb.contains(h)))
            .map(|(k, _)| k.as_str())
            .collect();
        return Some(format!("headers {}", changed.join(", ")));
    }
    if format!("{:?}{:?}", a.kafka_target, a.amqp_target)
        != format!("{:?}{:?}", b.kafka_target, b.amqp_target)
    {
        return Some("the target".into());
    }
    if format!("{:?}", a.amqp_properties) != format!("{:?}", b.amqp_properties) {
        return Some("the AMQP properties".into());
    }
    None
}

fn summary(outcome: &ChainOutcome) -> String {
    match outcome {
        ChainOutcome::Send(out) => {
            let first = out.first().map(|m| {
                let headers: Vec<String> = m
                    .headers
                    .iter()
                    .filter(|(k, _)| k != VERSIONS_HEADER)
                    .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
                    .collect();
                format!(
                    "payload {} B, headers [{}]",
                    m.payload.as_ref().map_or(0, |p| p.len()),
                    headers.join(", ")
                )
            });
            format!("send {}: {}", out.len(), first.unwrap_or_default())
        }
        ChainOutcome::Dropped => "drop".into(),
        ChainOutcome::Failed(f) => format!("{}: {}", f.kind, f.detail),
    }
}
