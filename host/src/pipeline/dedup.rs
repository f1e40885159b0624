//! Optional per-mapping deduplication: a message whose key (source coordinates or AMQP
//! message-id) was already bridged within the window is dropped. In memory, per process.
//!
//! A key counts as bridged only once its message is handled (delivered, dead-lettered or
//! dropped by the policy). Until then it is pending: a repeat of it meanwhile is a duplicate,
//! but when the message is abandoned (its Kafka partition revoked) the key is forgotten, so the
//! message is not dropped when it is consumed again.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::config::{DedupBy, DedupConfig};
use crate::plugin::{Message, Origin};

/// Keys seen within the window.
pub struct Dedup {
    by: DedupBy,
    window: Duration,
    seen: HashMap<Vec<u8>, Instant>,
    order: VecDeque<(Instant, Vec<u8>)>,
    /// Keys of messages admitted and not yet handled, with their Kafka partition if any.
    pending: HashMap<Vec<u8>, Option<(String, i32)>>,
}

/// Entries kept at most, whatever the window, so memory stays bounded.
const MAX_ENTRIES: usize = 1_000_000;

impl Dedup {
    /// A deduplicator for this configuration.
    pub fn new(config: &DedupConfig) -> Self {
        Dedup {
            by: config.by,
            window: Duration::from_secs(config.window_secs),
            seen: HashMap::new(),
            order: VecDeque::new(),
            pending: HashMap::new(),
        }
    }

    /// Whether `msg` was bridged within the window or is in flight; otherwise its key is
    /// pending until [`Dedup::settled`]. Messages without a key (no message-id) are never
    /// duplicates.
    pub fn is_duplicate(&mut self, msg: &Message) -> bool {
        let now = Instant::now();
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) <= self.window && self.order.len() < MAX_ENTRIES {
                break;
            }
            if let Some((at, key)) = self.order.pop_front()
                && self.seen.get(&key) == Some(&at)
            {
                self.seen.remove(&key);
            }
        }
        let Some(key) = self.key(msg) else {
            return false;
        };
        if self.seen.contains_key(&key) || self.pending.contains_key(&key) {
            return true;
        }
        let partition = match &msg.origin {
            Origin::Kafka(k) => Some((k.topic.clone(), k.partition)),
            Origin::Amqp(_) | Origin::None => None,
        };
        self.pending.insert(key, partition);
        false
    }

    /// The message with `key` was handled: repeats of it within the window are duplicates.
    pub fn settled(&mut self, key: Vec<u8>) {
        self.pending.remove(&key);
        let now = Instant::now();
        self.seen.insert(key.clone(), now);
        self.order.push_back((now, key));
    }

    /// The messages of a revoked partition were abandoned: they are consumed again, and are
    /// not duplicates then.
    pub fn abandon_partition(&mut self, topic: &str, partition: i32) {
        self.pending.retain(|_, p| {
            p.as_ref()
                .is_none_or(|(t, n)| t != topic || *n != partition)
        });
    }

    /// The key a message is deduplicated by, if it has one.
    pub fn key(&self, msg: &Message) -> Option<Vec<u8>> {
        match self.by {
            DedupBy::MessageId => msg
                .amqp_properties
                .message_id
                .as_ref()
                .map(|id| id.as_bytes().to_vec())
                .or_else(|| msg.header("message_id").map(<[u8]>::to_vec)),
            DedupBy::Coordinates => match &msg.origin {
                Origin::Kafka(k) => Some(
                    format!("{}/{}/{}/{}", k.cluster, k.topic, k.partition, k.offset).into_bytes(),
                ),
                Origin::Amqp(_) | Origin::None => msg
                    .amqp_properties
                    .message_id
                    .as_ref()
                    .map(|id| id.as_bytes().to_vec()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_repeated_message_ids_within_the_window() {
        let mut d = Dedup::new(&DedupConfig {
            by: DedupBy::MessageId,
            window_secs: 60,
        });
        let msg = |id: Option<&str>| {
            let mut m = Message::new(Some(b"x".to_vec()));
            m.amqp_properties.message_id = id.map(str::to_string);
            m
        };
        assert!(!d.is_duplicate(&msg(Some("a"))));
        assert!(d.is_duplicate(&msg(Some("a"))), "in flight");
        d.settled(b"a".to_vec());
        assert!(d.is_duplicate(&msg(Some("a"))), "bridged");
        assert!(!d.is_duplicate(&msg(Some("b"))));
        assert!(!d.is_duplicate(&msg(None)));
        assert!(
            !d.is_duplicate(&msg(None)),
            "messages without an id are never duplicates"
        );
        let mut expired = Dedup::new(&DedupConfig {
            by: DedupBy::MessageId,
            window_secs: 0,
        });
        assert!(!expired.is_duplicate(&msg(Some("a"))));
        expired.settled(b"a".to_vec());
        std::thread::sleep(Duration::from_millis(5));
        assert!(!expired.is_duplicate(&msg(Some("a"))), "outside the window");
    }

    #[test]
    fn an_abandoned_partition_is_not_a_duplicate_when_consumed_again() {
        let mut d = Dedup::new(&DedupConfig {
            by: DedupBy::Coordinates,
            window_secs: 60,
        });
        let at = |partition, offset| {
            let mut m = Message::new(Some(b"x".to_vec()));
            m.origin = Origin::Kafka(crate::plugin::KafkaOrigin {
                cluster: "main".to_string(),
                topic: "t".to_string(),
                partition,
                offset,
            });
            m
        };
        assert!(!d.is_duplicate(&at(0, 1)));
        assert!(!d.is_duplicate(&at(1, 1)));
        d.abandon_partition("t", 0);
        assert!(
            !d.is_duplicate(&at(0, 1)),
            "consumed again after the revocation"
        );
        assert!(d.is_duplicate(&at(1, 1)), "still in flight");
    }
}
