//! Optional per-mapping deduplication: a message whose key (source coordinates or AMQP
//! message-id) was already bridged within the window is dropped. In memory, per process.

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
        }
    }

    /// Whether `msg` was seen within the window; records it otherwise. Messages without a
    /// key (no message-id) are never duplicates.
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
        if self.seen.contains_key(&key) {
            return true;
        }
        self.seen.insert(key.clone(), now);
        self.order.push_back((now, key));
        false
    }

    fn key(&self, msg: &Message) -> Option<Vec<u8>> {
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
        assert!(d.is_duplicate(&msg(Some("a"))));
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
        std::thread::sleep(Duration::from_millis(5));
        assert!(!expired.is_duplicate(&msg(Some("a"))), "outside the window");
    }
}
