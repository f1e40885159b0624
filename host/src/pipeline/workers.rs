//! Per-tenant worker pools: the threads plugin chains run on.
//!
//! A tenant's mappings share a small pool of threads (`[tenants.NAME] workers`, by default one
//! per core) instead of a thread each, so hundreds of mappings cost a handful of threads.
//! Tenants never share a pool: a tenant whose plugins spin to their CPU limit occupies only
//! its own threads. Plugins run outside the async runtime: WebAssembly work never blocks a
//! runtime worker, the threads' stacks are sized for the guest stack cap, and the synchronous
//! WASI host (guest stdout, stderr) may drive its own small runtime, which it cannot do on a
//! runtime worker.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, Weak};

/// A unit of work: one call into a chain.
pub type Job = Box<dyn FnOnce() + Send>;

/// Stack of a worker thread: room for the largest guest stack (1 MiB) and the host below it.
const STACK: usize = 8 * 1024 * 1024;

/// One tenant's threads. They end when the last chain using the pool is dropped.
#[derive(Debug)]
pub struct WorkerPool {
    jobs: crossbeam_channel::Sender<Job>,
    size: usize,
}

impl WorkerPool {
    /// Starts `size` threads named after `tenant`.
    pub fn start(tenant: &str, size: usize) -> std::io::Result<Self> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        let size = size.max(1);
        for i in 0..size {
            let queue = queue.clone();
            let span = tracing::info_span!("mapping", tenant = %tenant);
            std::thread::Builder::new()
                .name(format!("plugins-{tenant}-{i}"))
                .stack_size(STACK)
                .spawn(move || {
                    let _span = span.entered();
                    while let Ok(job) = queue.recv() {
                        // Chain calls catch their own panics; this keeps the thread alive
                        // whatever else a job does.
                        if let Err(p) = std::panic::catch_unwind(AssertUnwindSafe(job)) {
                            tracing::error!(
                                panic = panic_message(p.as_ref()),
                                "A plugin worker job panicked."
                            );
                        }
                    }
                })?;
        }
        Ok(WorkerPool { jobs, size })
    }

    /// Queues `job`; `false` when the pool has stopped.
    pub fn submit(&self, job: Job) -> bool {
        self.jobs.send(job).is_ok()
    }

    /// How many threads it runs.
    pub fn size(&self) -> usize {
        self.size
    }
}

/// The running pools, one per tenant, shared by that tenant's chains.
#[derive(Debug, Default)]
pub struct WorkerPools {
    pools: Mutex<HashMap<String, Weak<WorkerPool>>>,
}

impl WorkerPools {
    /// The pool of `tenant`, started with `size` threads unless it runs already (a changed
    /// size applies once all of the tenant's chains have stopped).
    pub fn get(&self, tenant: &str, size: usize) -> std::io::Result<Arc<WorkerPool>> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pool) = pools.get(tenant).and_then(Weak::upgrade) {
            return Ok(pool);
        }
        let pool = Arc::new(WorkerPool::start(tenant, size)?);
        pools.retain(|_, p| p.strong_count() > 0);
        pools.insert(tenant.to_string(), Arc::downgrade(&pool));
        Ok(pool)
    }
}

/// What a caught panic said.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_shares_its_pool_and_tenants_do_not() {
        let pools = WorkerPools::default();
        let a = pools.get("a", 2).unwrap();
        let a2 = pools.get("a", 5).unwrap();
        let b = pools.get("b", 1).unwrap();
        assert!(Arc::ptr_eq(&a, &a2));
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(a.size(), 2);
        drop((a, a2));
        assert_eq!(pools.get("a", 3).unwrap().size(), 3);
    }

    #[test]
    fn a_panicking_job_keeps_the_thread() {
        let pool = WorkerPool::start("t", 1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        assert!(pool.submit(Box::new(|| panic!("boom"))));
        assert!(pool.submit(Box::new(move || tx.send(7).unwrap())));
        assert_eq!(rx.recv().unwrap(), 7);
    }
}
