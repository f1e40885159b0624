//! Per-partition commit watermarks for a Kafka source. Messages of one partition settle in any
//! order (a retried one late, the ones after it early), but a partition's commit position only
//! moves over a contiguous run of settled offsets, so a crash never skips a message. Each
//! partition advances on its own: one waiting on a retry holds back only itself.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use rustc_hash::FxHashMap;

/// Where a consumed message sits: its partition (with the assignment epoch it was consumed in)
/// and offset.
#[derive(Debug, Clone)]
pub struct Coordinates {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    epoch: u64,
}

#[derive(Debug, Default)]
struct Partition {
    /// Consumed offsets not yet passed by the watermark, in order, each with whether it settled.
    pending: VecDeque<(i64, bool)>,
    /// The assignment this state belongs to: completions from before a revocation are stale.
    epoch: u64,
    /// Messages of this partition waiting on a retry.
    retrying: usize,
    /// Moved since the offsets were last taken for storing.
    dirty: bool,
    /// The next offset to consume, as far as everything before it settled.
    next: Option<i64>,
}

/// Settlement state of every partition a source consumes.
#[derive(Debug, Default)]
pub struct Watermarks {
    topics: FxHashMap<Arc<str>, FxHashMap<i32, Partition>>,
    epochs: u64,
    in_flight: usize,
    /// Messages the watermarks passed since [`Watermarks::take_passed`] last asked.
    passed: usize,
}

/// A revoked partition's messages that were still in flight: their settlement is abandoned and
/// the partition's next owner consumes them again from the last commit.
#[derive(Debug, PartialEq, Eq)]
pub struct Abandoned {
    /// Messages consumed and not passed by the watermark.
    pub in_flight: usize,
    /// The position last reached, if any.
    pub next: Option<i64>,
}

impl Watermarks {
    /// Records a consumed message; settle it later with its coordinates. `None` for an offset
    /// at or below one its partition already had in this assignment: a message fetched again
    /// (after a seek), already handed out once, and not handed out twice.
    pub fn consumed(&mut self, topic: &str, partition: i32, offset: i64) -> Option<Coordinates> {
        let topic = match self.topics.get_key_value(topic) {
            Some((known, _)) => Arc::clone(known),
            None => Arc::from(topic),
        };
        let partitions = self.topics.entry(Arc::clone(&topic)).or_default();
        let part = partitions.entry(partition).or_insert_with(|| {
            self.epochs += 1;
            Partition {
                epoch: self.epochs,
                ..Partition::default()
            }
        });
        let seen = part.pending.back().map(|(o, _)| *o + 1).or(part.next);
        if seen.is_some_and(|next| offset < next) {
            return None;
        }
        part.pending.push_back((offset, false));
        self.in_flight += 1;
        Some(Coordinates {
            topic,
            partition,
            offset,
            epoch: part.epoch,
        })
    }

    fn partition(&mut self, at: &Coordinates) -> Option<&mut Partition> {
        self.topics
            .get_mut(&at.topic)?
            .get_mut(&at.partition)
            .filter(|p| p.epoch == at.epoch)
    }

    /// Whether the message still belongs to a current assignment (its partition was not
    /// revoked since it was consumed).
    pub fn is_current(&self, at: &Coordinates) -> bool {
        self.topics
            .get(&at.topic)
            .and_then(|p| p.get(&at.partition))
            .is_some_and(|p| p.epoch == at.epoch)
    }

    /// Marks a message handled and moves its partition's watermark over every contiguous
    /// settled offset. `false` if its partition was revoked meanwhile (nothing changes).
    pub fn settled(&mut self, at: &Coordinates) -> bool {
        let Some(part) = self.partition(at) else {
            return false;
        };
        let Ok(i) = part.pending.binary_search_by_key(&at.offset, |(o, _)| *o) else {
            return false;
        };
        part.pending[i].1 = true;
        let mut passed = 0;
        while let Some(&(offset, true)) = part.pending.front() {
            part.pending.pop_front();
            part.next = Some(offset + 1);
            part.dirty = true;
            passed += 1;
        }
        self.in_flight -= passed;
        self.passed += passed;
        true
    }

    /// Counts a retry starting (`true`) or ending on a message's partition; returns how many
    /// of the partition's messages now wait on a retry (0 when revoked).
    pub fn retrying(&mut self, at: &Coordinates, starts: bool) -> usize {
        match self.partition(at) {
            Some(part) => {
                if starts {
                    part.retrying += 1;
                } else {
                    part.retrying = part.retrying.saturating_sub(1);
                }
                part.retrying
            }
            None => 0,
        }
    }

    /// The partitions whose watermark moved since the last call, with the next offset to
    /// consume: what to store for commit, once per partition.
    pub fn take_moved(&mut self) -> Vec<(Arc<str>, i32, i64)> {
        let mut moved = Vec::new();
        for (topic, partitions) in &mut self.topics {
            for (&partition, part) in partitions.iter_mut() {
                if let (true, Some(next)) = (part.dirty, part.next) {
                    part.dirty = false;
                    moved.push((Arc::clone(topic), partition, next));
                }
            }
        }
        moved
    }

    /// Every partition with state: consumed from in this assignment.
    pub fn partitions(&self) -> Vec<(Arc<str>, i32)> {
        self.topics
            .iter()
            .flat_map(|(topic, partitions)| partitions.keys().map(|p| (Arc::clone(topic), *p)))
            .collect()
    }

    /// Forgets a revoked partition; what was in flight is abandoned.
    pub fn revoke(&mut self, topic: &str, partition: i32) -> Abandoned {
        let part = self
            .topics
            .get_mut(topic)
            .and_then(|p| p.remove(&partition))
            .unwrap_or_default();
        self.in_flight -= part.pending.len();
        Abandoned {
            in_flight: part.pending.len(),
            next: part.next,
        }
    }

    /// Per partition with a message not settled, the first such offset: where consuming must
    /// start again for nothing to be skipped.
    pub fn resume_points(&self) -> Vec<(String, i32, i64)> {
        self.topics
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions.iter().filter_map(|(&partition, part)| {
                    let (offset, _) = part.pending.front()?;
                    Some((topic.to_string(), partition, *offset))
                })
            })
            .collect()
    }

    /// How many messages the watermarks passed since the last call: settled, and behind no
    /// unsettled one.
    pub fn take_passed(&mut self) -> usize {
        std::mem::take(&mut self.passed)
    }

    /// Messages consumed and not yet passed by their partition's watermark.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Of [`Watermarks::in_flight`], the messages of partitions waiting on a retry: held
    /// behind it until it settles.
    pub fn held_by_retries(&self) -> usize {
        self.topics
            .values()
            .flat_map(HashMap::values)
            .filter(|p| p.retrying > 0)
            .map(|p| p.pending.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_commits_only_over_contiguous_settled_offsets() {
        let mut w = Watermarks::default();
        let a: Vec<_> = (10..14).map(|o| w.consumed("t", 0, o).unwrap()).collect();
        assert!(w.settled(&a[1]));
        assert!(w.settled(&a[2]));
        assert!(w.take_moved().is_empty(), "offset 10 is not settled yet");
        assert!(w.settled(&a[0]));
        assert_eq!(w.take_moved(), vec![(Arc::from("t"), 0, 13)]);
        assert!(w.take_moved().is_empty(), "reported once");
        assert_eq!(w.in_flight(), 1);
    }

    #[test]
    fn an_offset_fetched_again_is_not_handed_out_twice() {
        let mut w = Watermarks::default();
        let a = w.consumed("t", 0, 10).unwrap();
        assert!(w.consumed("t", 0, 11).is_some());
        assert!(w.consumed("t", 0, 10).is_none(), "in flight");
        assert!(w.settled(&a));
        assert!(w.consumed("t", 0, 11).is_none());
        assert!(w.consumed("t", 0, 9).is_none(), "passed");
        assert!(w.consumed("t", 0, 12).is_some());
        assert_eq!(w.in_flight(), 2);
    }

    #[test]
    fn partitions_advance_independently() {
        let mut w = Watermarks::default();
        let stuck = w.consumed("t", 0, 5).unwrap();
        let _after = w.consumed("t", 0, 6).unwrap();
        let other: Vec<_> = (0..3).map(|o| w.consumed("t", 1, o).unwrap()).collect();
        assert_eq!(w.retrying(&stuck, true), 1);
        assert_eq!(
            w.held_by_retries(),
            2,
            "the stuck message and the one behind it"
        );
        for at in &other {
            assert!(w.settled(at));
        }
        assert_eq!(w.take_moved(), vec![(Arc::from("t"), 1, 3)]);
        assert_eq!(w.retrying(&stuck, false), 0);
    }

    #[test]
    fn a_revoked_partition_abandons_its_flights_and_ignores_stale_ones() {
        let mut w = Watermarks::default();
        let first = w.consumed("t", 0, 0).unwrap();
        let second = w.consumed("t", 0, 1).unwrap();
        assert!(w.settled(&first));
        assert_eq!(
            w.revoke("t", 0),
            Abandoned {
                in_flight: 1,
                next: Some(1)
            }
        );
        assert_eq!(w.in_flight(), 0);
        // Assigned again and re-consumed from the commit: the old flight's answer is stale.
        let again = w.consumed("t", 0, 1).unwrap();
        assert!(!w.settled(&second));
        assert!(!w.is_current(&second));
        assert!(w.settled(&again));
        let moved = w.take_moved();
        assert_eq!(moved, vec![(Arc::from("t"), 0, 2)]);
    }

    #[test]
    fn consuming_resumes_at_the_first_unsettled_offset_of_each_partition() {
        let mut w = Watermarks::default();
        let a: Vec<_> = (10..14).map(|o| w.consumed("t", 0, o).unwrap()).collect();
        let b = w.consumed("t", 1, 7).unwrap();
        assert!(w.settled(&a[0]));
        assert!(w.settled(&a[2]));
        assert!(w.settled(&b));
        assert_eq!(w.resume_points(), vec![("t".to_string(), 0, 11)]);
    }
}
