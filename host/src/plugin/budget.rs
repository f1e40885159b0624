//! A tenant's budget of message bytes its plugins may make the host hold: every message a
//! plugin creates or grows (duplicates, fan-out, new payloads, headers, keys) is charged to its
//! tenant while the host holds it for the plugin, across all the tenant's plugin instances.
//! A plugin that would go past the budget traps with `plugin-memory-limit`.

use std::collections::HashMap;
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
    use std::sync::Arc;

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
}
