//! A tenant's budget of message bytes its plugins may make the host hold: every message a
//! plugin creates or grows (duplicates, fan-out, new payloads, headers, keys) is charged to its
//! tenant, across all the tenant's plugin instances, from the moment the plugin makes it until
//! the message is settled: what a plugin hands back carries its charge ([`Held`]) through the
//! rest of the chain, the send and any retry, and releases it when the last copy is dropped.
//! A plugin that would go past the budget traps with `plugin-memory-limit`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::LimitHit;

/// The budget of a tenant that sets no `held_bytes`, the `default` tenant's included: 256 MiB,
/// room for sixteen messages of the largest size a plugin may make (`output_bytes`, 16 MiB).
pub const DEFAULT_HELD_BYTES: u64 = 256 * 1024 * 1024;

/// The bytes a tenant's plugins hold, against its limit.
#[derive(Debug)]
pub struct HeldBytes {
    tenant: String,
    limit: u64,
    held: AtomicU64,
}

impl HeldBytes {
    /// An empty budget of `limit` bytes for `tenant`.
    pub fn new(tenant: &str, limit: u64) -> Self {
        HeldBytes {
            tenant: tenant.to_string(),
            limit,
            held: AtomicU64::new(0),
        }
    }

    /// The budget.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    fn charge(&self, bytes: u64) -> Result<(), LimitHit> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .map(|_| ())
            .map_err(|held| LimitHit::Held {
                tenant: self.tenant.clone(),
                limit: self.limit,
                wanted: held.saturating_add(bytes),
            })
    }

    fn release(&self, bytes: u64) {
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(held.saturating_sub(bytes))
            });
    }
}

/// Bytes a message a plugin handed back still holds against its tenant's budget, with those
/// of the plugins before it; copies of the message share them. Released when the last copy
/// is dropped: when the message is settled (or dropped, or dead-lettered).
#[derive(Clone)]
pub struct Held(Arc<HeldCharge>);

struct HeldCharge {
    budget: Arc<HeldBytes>,
    bytes: u64,
    /// What earlier plugins of the chain charged for the same message.
    earlier: Option<Held>,
}

impl Held {
    /// Bytes held, the earlier plugins' included.
    pub fn bytes(&self) -> u64 {
        self.0.bytes + self.0.earlier.as_ref().map_or(0, Held::bytes)
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Held({} bytes)", self.bytes())
    }
}

impl Drop for HeldCharge {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// What one plugin instance charged to its tenant, per message resource.
#[derive(Debug, Default)]
pub struct Charges {
    budget: Option<std::sync::Arc<HeldBytes>>,
    /// Per message: the bytes it came with from the host (not charged) and the bytes charged.
    by_message: HashMap<u32, (u64, u64)>,
}

impl Charges {
    /// Charges against `budget`, if the tenant has one.
    pub fn new(budget: Option<std::sync::Arc<HeldBytes>>) -> Self {
        Charges {
            budget,
            by_message: HashMap::new(),
        }
    }

    /// The host lent message `rep` of `size` bytes to the plugin: those bytes are the host's.
    pub fn lent(&mut self, rep: u32, size: u64) {
        if self.budget.is_some() {
            self.by_message.insert(rep, (size, 0));
        }
    }

    /// Message `rep` now holds `size` bytes: charges what it grew beyond what the host lent,
    /// releases what it shrank.
    pub fn resize(&mut self, rep: u32, size: u64) -> Result<(), LimitHit> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        let (lent, charged) = self.by_message.get(&rep).copied().unwrap_or((0, 0));
        let wanted = size.saturating_sub(lent);
        if wanted > charged {
            budget.charge(wanted - charged)?;
        } else {
            budget.release(charged - wanted);
        }
        self.by_message.insert(rep, (lent, wanted));
        Ok(())
    }

    /// Message `rep` left the plugin (dropped, or handed back to the host).
    pub fn release(&mut self, rep: u32) {
        if let (Some(budget), Some((_, charged))) = (&self.budget, self.by_message.remove(&rep)) {
            budget.release(charged);
        }
    }

    /// Message `rep` goes back to the host on its way to its target: its charge goes with it,
    /// after `earlier` (what it already held when it was lent).
    pub fn hand_back(&mut self, rep: u32, earlier: Option<Held>) -> Option<Held> {
        let Some((_, charged)) = self.by_message.remove(&rep) else {
            return earlier;
        };
        let Some(budget) = self.budget.clone().filter(|_| charged > 0) else {
            return earlier;
        };
        Some(Held(Arc::new(HeldCharge {
            budget,
            bytes: charged,
            earlier,
        })))
    }

    /// Releases everything (the instance is gone).
    pub fn release_all(&mut self) {
        let reps: Vec<u32> = self.by_message.keys().copied().collect();
        for rep in reps {
            self.release(rep);
        }
    }
}

impl Drop for Charges {
    fn drop(&mut self) {
        self.release_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_growth_across_instances_and_releases() {
        let budget = Arc::new(HeldBytes::new("t", 100));
        let mut a = Charges::new(Some(Arc::clone(&budget)));
        let mut b = Charges::new(Some(Arc::clone(&budget)));
        a.resize(1, 60).unwrap();
        assert!(b.resize(1, 50).is_err(), "the tenant's budget is shared");
        a.resize(1, 10).unwrap();
        b.resize(1, 50).unwrap();
        assert_eq!(budget.held(), 60);
        // A lent message is charged only for what it grows.
        let mut c = Charges::new(Some(Arc::clone(&budget)));
        c.lent(7, 1_000);
        c.resize(7, 1_030).unwrap();
        assert_eq!(budget.held(), 90);
        c.release(7);
        a.release(1);
        drop(b);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_handed_back_message_holds_its_charge_until_its_last_copy_is_dropped() {
        let budget = Arc::new(HeldBytes::new("t", 100));
        let mut first = Charges::new(Some(Arc::clone(&budget)));
        first.resize(1, 40).unwrap();
        let held = first.hand_back(1, None);
        drop(first);
        assert_eq!(
            budget.held(),
            40,
            "the instance let go; the message did not"
        );
        // The next plugin of the chain grows it again.
        let mut second = Charges::new(Some(Arc::clone(&budget)));
        second.lent(1, 40);
        second.resize(1, 70).unwrap();
        let held = second.hand_back(1, held).expect("charged");
        assert_eq!(held.bytes(), 70);
        let copy = held.clone();
        drop(held);
        assert_eq!(budget.held(), 70, "a copy still holds it");
        drop(copy);
        assert_eq!(budget.held(), 0);
        // Nothing charged: nothing held.
        let mut third = Charges::new(Some(Arc::clone(&budget)));
        third.lent(2, 10);
        assert!(third.hand_back(2, None).is_none());
    }
}
