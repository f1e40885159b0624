//! What one plugin instance charged to its tenant's budget ([`super::budget`]), per message
//! resource it holds: charged as a message grows, released when the plugin drops it, handed on
//! with the message when the plugin hands it back.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::budget::{Held, HeldBytes};
use super::error::LimitHit;

/// What one plugin instance charged to its tenant, per message resource.
#[derive(Debug, Default)]
pub struct Charges {
    budget: Option<Arc<HeldBytes>>,
    /// Per message: the bytes it came with from the host (not charged) and the bytes charged.
    by_message: FxHashMap<u32, (u64, u64)>,
}

impl Charges {
    /// Charges against `budget`, if the tenant has one.
    pub fn new(budget: Option<Arc<HeldBytes>>) -> Self {
        Charges {
            budget,
            by_message: FxHashMap::default(),
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
            budget
                .charge(wanted - charged)
                .map_err(|total| LimitHit::Held {
                    tenant: budget.tenant().to_string(),
                    limit: budget.limit(),
                    wanted: total,
                })?;
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
        Some(Held::new(budget, charged, earlier))
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
