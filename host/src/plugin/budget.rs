//! A tenant's budget of message bytes its plugins may make the host hold: every message a
//! plugin creates or grows (duplicates, fan-out, new payloads, headers, keys) is charged to its
//! tenant, across all the tenant's plugin instances, from the moment the plugin makes it until
//! the message is settled: what a plugin hands back carries its charge ([`Held`]) through the
//! rest of the chain, the send and any retry, and releases it when the last copy is dropped.
//! A plugin that would go past the budget traps with `plugin-memory-limit`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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

    /// The tenant it is the budget of.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Charges `bytes`, or says how many bytes that would have made.
    pub(super) fn charge(&self, bytes: u64) -> Result<(), u64> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .map(|_| ())
            .map_err(|held| held.saturating_add(bytes))
    }

    pub(super) fn release(&self, bytes: u64) {
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
    /// `bytes` charged to `budget`, after what `earlier` plugins charged.
    pub(super) fn new(budget: Arc<HeldBytes>, bytes: u64, earlier: Option<Held>) -> Held {
        Held(Arc::new(HeldCharge {
            budget,
            bytes,
            earlier,
        }))
    }

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
