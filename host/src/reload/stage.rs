//! How a stage compares what the live chain and the candidate chain made of one message: the
//! outputs (the version tag aside) and the verdict.

use crate::pipeline::{ChainOutcome, VERSIONS_HEADER};
use crate::plugin::{Comparison, Message, Staged};

impl Staged for ChainOutcome {
    fn compare_with(&self, candidate: &Self) -> Comparison {
        let difference = match (self, candidate) {
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
                return Comparison::CandidateFailed;
            }
            _ => Some("a different verdict".to_string()),
        };
        match difference {
            None => Comparison::Same,
            Some(what) => Comparison::Different(what),
        }
    }

    fn summary(&self, values: bool) -> String {
        match self {
            ChainOutcome::Send(out) => {
                let first = out.first().map(|m| {
                    let headers: Vec<String> = m
                        .headers
                        .iter()
                        .filter(|(k, _)| k != VERSIONS_HEADER)
                        .map(|(k, v)| match values {
                            true => format!("{k}={}", String::from_utf8_lossy(v)),
                            false => format!("{k} ({} B)", v.len()),
                        })
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
