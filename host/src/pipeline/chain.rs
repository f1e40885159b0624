//! A mapping's plugin chain and its dead-letter policy, and the headers the bridge keeps
//! around the plugins: provenance and the hop count going in, the hop count and the plugin
//! versions coming out.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use super::workers::WorkerPool;

use crate::plugin::PluginSet;
use crate::plugin::{
    CallError, DeadLetterDecision, Decision, Failure, FailureKind, LoadedPlugin, Message, Origin,
    Outcome, PluginInstance,
};
use crate::telemetry::PluginTimer;

/// What the chain made of one message.
#[derive(Debug)]
pub enum ChainOutcome {
    /// Send these (one for `forward`, any number for `fan-out`).
    Send(Vec<Message>),
    /// Dropped on purpose.
    Dropped,
    /// The chain failed or a plugin asked for a dead letter.
    Failed(ProcessingFailure),
}

/// A failure with what the policy and the dead-letter headers need.
#[derive(Debug, Clone)]
pub struct ProcessingFailure {
    /// The kind of failure.
    pub kind: FailureKind,
    /// The plugin involved.
    pub plugin: Option<String>,
    /// The error text or the plugin's reason.
    pub detail: String,
    /// The plugin's version that failed, `name@sha256:…`.
    pub version: Option<String>,
}

impl From<CallError> for ProcessingFailure {
    fn from(e: CallError) -> Self {
        ProcessingFailure {
            kind: e.kind,
            plugin: Some(e.plugin),
            detail: e.detail,
            version: None,
        }
    }
}

/// The transform plugins of a mapping, in order, and its dead-letter policy. Runs on the
/// calling thread; see [`Chain`] for the asynchronous handle the pipelines use.
pub struct ChainCore {
    transforms: Vec<PluginInstance>,
    /// `x-bridge-plugin-versions` for every output, when the mapping asks for it.
    versions: Option<Vec<u8>>,
    /// Per transform, where its call times go (`bridge_plugin_call_seconds`), if anywhere.
    timers: Vec<Option<PluginTimer>>,
    policy: Policy,
}

/// The dead-letter policy: a plugin, or the built-in default.
pub enum Policy {
    /// A `dead-letter-policy` plugin.
    Plugin(Box<PluginInstance>),
    /// Retry `plugin-timeout` and `target-rejected` up to 5 attempts with exponential backoff
    /// (200 ms doubling, at most 30 s); dead-letter everything else.
    Default,
}

impl ChainCore {
    /// A chain of fresh instances of these plugins.
    pub fn new(
        transforms: &[Arc<LoadedPlugin>],
        policy: Option<&Arc<LoadedPlugin>>,
        timers: Vec<Option<PluginTimer>>,
    ) -> Result<Self, crate::plugin::LoadError> {
        Ok(ChainCore {
            transforms: transforms
                .iter()
                .map(|p| p.instantiate())
                .collect::<Result<_, _>>()?,
            versions: None,
            timers,
            policy: match policy {
                Some(p) => Policy::Plugin(Box::new(p.instantiate()?)),
                None => Policy::Default,
            },
        })
    }

    /// Runs every transform in order on `msg`.
    pub fn run(&mut self, msg: Message) -> ChainOutcome {
        #[cfg(debug_assertions)]
        if crate::test_hooks::fires(crate::test_hooks::Hook::ChainPanic, Some(&msg)) {
            panic!("test hook: a host panic in a chain call");
        }
        let mut current = vec![msg];
        // Each plugin's outputs go to `next`, which then swaps with `current`: one message
        // passing a chain allocates no list per plugin.
        let mut next = Vec::new();
        for (i, plugin) in self.transforms.iter_mut().enumerate() {
            let timer = self.timers.get(i).and_then(Option::as_ref);
            for m in current.drain(..) {
                let started = timer.map(|_| std::time::Instant::now());
                let result = plugin.process(m);
                if let (Some(t), Some(s)) = (timer, started) {
                    t.called(s.elapsed());
                }
                let cap = plugin.plugin().spec().limits.fan_out as usize;
                match result {
                    Ok(Outcome::Forward(out)) if next.len() + out.len() > cap => {
                        return ChainOutcome::Failed(ProcessingFailure {
                            kind: FailureKind::PluginOutputLimit,
                            plugin: Some(plugin.plugin().name().to_string()),
                            detail: format!(
                                "the chain made more than {cap} messages of one (`fan_out` = {cap})"
                            ),
                            version: Some(plugin.plugin().describe()),
                        });
                    }
                    Ok(Outcome::Forward(mut out)) => next.append(&mut out),
                    Ok(Outcome::Drop) => {}
                    Ok(Outcome::DeadLetter { reason, .. }) => {
                        return ChainOutcome::Failed(ProcessingFailure {
                            kind: FailureKind::PluginError,
                            plugin: Some(plugin.plugin().name().to_string()),
                            detail: reason,
                            version: Some(plugin.plugin().describe()),
                        });
                    }
                    Err(e) => {
                        if e.kind == FailureKind::PluginTimeout {
                            yield_cpu();
                        }
                        let mut failure = ProcessingFailure::from(e);
                        failure.version = Some(plugin.plugin().describe());
                        return ChainOutcome::Failed(failure);
                    }
                }
            }
            std::mem::swap(&mut current, &mut next);
            if current.is_empty() {
                return ChainOutcome::Dropped;
            }
        }
        if let Some(versions) = &self.versions {
            for m in &mut current {
                m.headers.retain(|(k, _)| k != VERSIONS_HEADER);
                m.headers
                    .push((VERSIONS_HEADER.to_string(), versions.clone()));
            }
        }
        ChainOutcome::Send(current)
    }

    /// Tags every output with the chain's plugin versions (`x-bridge-plugin-versions`).
    pub fn tag_versions(&mut self) {
        let versions: Vec<String> = self
            .transforms
            .iter()
            .map(|t| t.plugin().describe())
            .collect();
        self.versions = Some(versions.join(",").into_bytes());
    }

    /// Asks the policy what to do after `failure` on attempt `attempt` (1-based).
    pub fn decide(&mut self, msg: &Message, failure: &ProcessingFailure, attempt: u32) -> Decision {
        let wit_failure = Failure {
            kind: failure.kind,
            plugin: failure.plugin.clone(),
            message: failure.detail.clone(),
            attempt,
        };
        match &mut self.policy {
            Policy::Default => default_decision(&wit_failure),
            Policy::Plugin(p) => match p.decide(msg.clone(), &wit_failure) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(plugin = %e.plugin, error = %e.detail, "Dead-letter policy failed; using the default policy.");
                    default_decision(&wit_failure)
                }
            },
        }
    }

    /// The plugins of the chain with their digests, for dead-letter headers.
    pub fn describe_plugin(&self, name: &str) -> Option<String> {
        self.transforms
            .iter()
            .map(PluginInstance::plugin)
            .find(|p| p.name() == name)
            .map(|p| p.describe())
    }
}

/// The nice value of a tenant's worker thread after a plugin on it ran into its CPU time limit.
const SPINNER_NICE: i32 = 10;

/// Lowers this worker thread's CPU priority once a plugin on it has spun to its time limit: a
/// tenant whose plugin burns its whole CPU budget on every call then yields the cores to the
/// other tenants' pipelines and plugins instead of taking a core from them. Lasts for the
/// thread's life (its tenant's pool); raising it back would need privileges a bridge should
/// not have.
fn yield_cpu() {
    thread_local! {
        static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if DONE.with(|d| d.replace(true)) {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; setpriority on our own thread id only changes
        // this thread's nice value.
        let result = unsafe {
            let tid = libc::gettid() as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, SPINNER_NICE)
        };
        if result == 0 {
            tracing::warn!(
                nice = SPINNER_NICE,
                "A plugin ran into its CPU time limit: this worker thread of its tenant now runs at a lower CPU priority."
            );
        }
    }
}

/// The header naming the plugin versions that made an output message, when the mapping has
/// `plugin_versions_header = true`: `name@sha256:…,name@sha256:…`, in chain order.
pub const VERSIONS_HEADER: &str = "x-bridge-plugin-versions";

/// Counts how many bridges a message has crossed.
pub const HOPS: &str = "x-bridge-hops";

/// Adds the seed replicators' provenance headers: `kafka_topic`, `kafka_partition`,
/// `kafka_offset`, `kafka_key` from Kafka; `rabbitmq_queue`, `rabbitmq_exchange`,
/// `rabbitmq_routing_key` from RabbitMQ.
pub fn add_provenance(msg: &mut Message) {
    let provenance: [(&str, Option<Vec<u8>>); 4] = match &msg.origin {
        Origin::Kafka(k) => [
            ("kafka_topic", Some(k.topic.as_bytes().to_vec())),
            (
                "kafka_partition",
                Some(k.partition.to_string().into_bytes()),
            ),
            ("kafka_offset", Some(k.offset.to_string().into_bytes())),
            ("kafka_key", msg.key.clone()),
        ],
        Origin::Amqp(a) => [
            ("rabbitmq_queue", Some(a.queue.as_bytes().to_vec())),
            ("rabbitmq_exchange", Some(a.exchange.as_bytes().to_vec())),
            (
                "rabbitmq_routing_key",
                Some(a.routing_key.as_bytes().to_vec()),
            ),
            ("", None),
        ],
        Origin::None => return,
    };
    // One pass drops what the message already carried under these names.
    msg.headers
        .retain(|(n, _)| !provenance.iter().any(|(p, v)| v.is_some() && n == p));
    for (name, value) in provenance {
        if let Some(value) = value {
            msg.headers.push((name.to_string(), value));
        }
    }
}

/// The hop count carried by a message (0 when absent or unreadable).
pub fn hops(msg: &Message) -> u32 {
    msg.header(HOPS)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Sets the hop count.
pub fn set_hops(msg: &mut Message, hops: u32) {
    msg.headers.retain(|(n, _)| n != HOPS);
    msg.headers
        .push((HOPS.to_string(), hops.to_string().into_bytes()));
}

/// Makes `msg` carry exactly one hop count, `hops`: the host owns it, whatever a plugin did to
/// it. Whether it had to put it back.
pub fn keep_hops(msg: &mut Message, hops: u32) -> bool {
    let mut found = msg.headers.iter().filter(|(n, _)| n == HOPS);
    let intact = matches!(
        (found.next(), found.next()),
        (Some((_, v)), None) if is_count(v, hops)
    );
    if !intact {
        set_hops(msg, hops);
    }
    !intact
}

/// Whether `value` is `count` in decimal, as [`set_hops`] writes it.
fn is_count(value: &[u8], count: u32) -> bool {
    let mut rest = count;
    let mut digits = value.iter().rev();
    loop {
        if digits.next() != Some(&(b'0' + (rest % 10) as u8)) {
            return false;
        }
        rest /= 10;
        if rest == 0 {
            return digits.next().is_none();
        }
    }
}

/// What a mapping's chain is made of: plugin names, looked up in the bridge's [`PluginSet`]
/// whenever its generation moves (a reload swapped a plugin).
pub struct ChainSpec {
    /// The mapping's name.
    pub mapping: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// The running plugins.
    pub plugins: Arc<PluginSet>,
    /// Transform plugin names, in order.
    pub transforms: Vec<String>,
    /// The dead-letter policy plugin's name.
    pub policy: Option<String>,
    /// Per transform, where its call times go.
    pub timers: Vec<Option<PluginTimer>>,
    /// Tag outputs with `x-bridge-plugin-versions`.
    pub tag_versions: bool,
}

impl ChainSpec {
    /// Fresh instances of the running versions, and of the staged candidates in shadow when
    /// one of the transforms has a candidate; also the generation they belong to.
    fn build(&self) -> Result<Built, crate::plugin::LoadError> {
        let generation = self.plugins.generation();
        let missing = |name: &String| {
            crate::plugin::LoadError::Engine(format!("plugin `{name}` is not loaded"))
        };
        let get = |name: &String| self.plugins.get(name).ok_or_else(|| missing(name));
        let transforms = self
            .transforms
            .iter()
            .map(get)
            .collect::<Result<Vec<_>, _>>()?;
        let policy = self.policy.as_ref().map(get).transpose()?;
        let mut core = ChainCore::new(&transforms, policy.as_ref(), self.timers.clone())?;
        if self.tag_versions {
            core.tag_versions();
        }
        let staged = self
            .transforms
            .iter()
            .any(|n| self.plugins.candidate(n).is_some());
        let shadow = if staged {
            let candidates = self
                .transforms
                .iter()
                .map(|n| self.plugins.candidate(n).map_or_else(|| get(n), Ok))
                .collect::<Result<Vec<_>, _>>()?;
            let untimed = vec![None; candidates.len()];
            Some(ChainCore::new(&candidates, policy.as_ref(), untimed)?)
        } else {
            None
        };
        Ok(Built {
            generation,
            core,
            shadow,
        })
    }
}

/// A chain's instances for one plugin generation.
struct Built {
    generation: u64,
    core: ChainCore,
    /// The staged candidates' chain, run in shadow and compared, never sent.
    shadow: Option<ChainCore>,
}

/// What a chain's calls work on, on whichever worker thread of its tenant runs them.
struct ChainState {
    spec: ChainSpec,
    built: Built,
}

impl ChainState {
    /// Moves to fresh instances of the running versions when a reload swapped a plugin since
    /// the last call: every message runs its whole chain on one version.
    fn refresh(&mut self) {
        if self.spec.plugins.generation() == self.built.generation {
            return;
        }
        match self.spec.build() {
            Ok(b) => self.built = b,
            Err(e) => {
                tracing::error!(mapping = %self.spec.mapping, error = %e, "Cannot start the reloaded plugins; the running versions stay.");
                self.built.generation = self.spec.plugins.generation();
            }
        }
    }

    fn run(&mut self, batch: Vec<Message>) -> Vec<ChainOutcome> {
        let Built { core, shadow, .. } = &mut self.built;
        let Some(shadow) = shadow else {
            return batch.into_iter().map(|m| core.run(m)).collect();
        };
        let stage = self.spec.plugins.stage_stats();
        batch
            .into_iter()
            .map(|m| {
                let live = core.run(m.clone());
                let candidate = shadow.run(m);
                stage.compare(&self.spec.mapping, &live, &candidate);
                live
            })
            .collect()
    }
}

/// The asynchronous handle of a mapping's [`ChainCore`]. Its calls run one at a time, in the
/// order they are made, on its tenant's [`WorkerPool`].
pub struct Chain {
    /// The instances and the calls waiting for them.
    runner: Arc<Runner>,
    pool: Arc<WorkerPool>,
    plugins: Arc<PluginSet>,
}

/// A chain's state and its queue of calls. At most one job of a chain is in the pool at a
/// time: it runs the first call, then goes to the back of the pool's queue if more wait, so a
/// mapping never holds two of its tenant's threads and the other mappings get their turn.
struct Runner {
    state: Mutex<ChainState>,
    calls: Mutex<Calls>,
    /// A call panicked in the host: the instances may be in any state, so no call runs again.
    broken: AtomicBool,
}

#[derive(Default)]
struct Calls {
    waiting: VecDeque<Queued>,
    /// A job of this chain is in the pool.
    scheduled: bool,
}

/// A call waiting in a chain's queue: runs on the state (or learns why it cannot) and answers
/// its caller; returns whether it panicked.
type Queued = Box<dyn FnOnce(Result<&mut ChainState, ChainBroken>) -> bool + Send>;

impl Runner {
    /// Queues `call` and has a job run it unless one is already in the pool.
    fn queue(self: &Arc<Self>, pool: &Arc<WorkerPool>, call: Queued) {
        let mut calls = lock(&self.calls);
        calls.waiting.push_back(call);
        if !calls.scheduled {
            calls.scheduled = true;
            drop(calls);
            self.schedule(pool);
        }
    }

    fn schedule(self: &Arc<Self>, pool: &Arc<WorkerPool>) {
        let (runner, again) = (Arc::clone(self), Arc::clone(pool));
        if !pool.submit(Box::new(move || runner.run_one(&again))) {
            // The pool stopped: the waiting calls are dropped, and their callers learn it.
            let mut calls = lock(&self.calls);
            calls.waiting.clear();
            calls.scheduled = false;
        }
    }

    /// Runs the first waiting call, then schedules itself again if more wait.
    fn run_one(self: &Arc<Self>, pool: &Arc<WorkerPool>) {
        let next = lock(&self.calls).waiting.pop_front();
        if let Some(next) = next {
            let mut state = lock(&self.state);
            let state = if self.broken.load(Ordering::Acquire) {
                Err(ChainBroken::Poisoned)
            } else {
                Ok(&mut *state)
            };
            if next(state) {
                self.broken.store(true, Ordering::Release);
            }
        }
        let mut calls = lock(&self.calls);
        if calls.waiting.is_empty() {
            calls.scheduled = false;
        } else {
            drop(calls);
            self.schedule(pool);
        }
    }
}

impl Chain {
    /// Fresh instances of the running plugin versions, made on `pool`.
    pub async fn new(
        spec: ChainSpec,
        pool: Arc<WorkerPool>,
    ) -> Result<Self, crate::plugin::LoadError> {
        let plugins = Arc::clone(&spec.plugins);
        let (tx, rx) = oneshot::channel();
        let gone = || crate::plugin::LoadError::Engine("the plugin workers stopped".to_string());
        let job = Box::new(move || {
            let _ = tx.send(spec.build().map(|built| ChainState { spec, built }));
        });
        if !pool.submit(job) {
            return Err(gone());
        }
        let state = rx.await.map_err(|_| gone())??;
        Ok(Chain {
            runner: Arc::new(Runner {
                state: Mutex::new(state),
                calls: Mutex::default(),
                broken: AtomicBool::new(false),
            }),
            pool,
            plugins,
        })
    }

    /// Queues `call` on the chain's state and returns its answer to come. The call is queued
    /// when this is called, not when the answer is awaited: a mapping may queue its next batch
    /// while the plugins work on the one before. `Err` when the pool stopped or a call
    /// panicked in the host: the chain's instances may then be in any state, so it takes no
    /// more calls and its mapping restarts with fresh ones.
    fn call<R: Send + 'static>(
        &self,
        call: impl FnOnce(&mut ChainState) -> R + Send + 'static,
    ) -> impl Future<Output = Result<R, ChainBroken>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let queued: Queued = Box::new(move |state| {
            let (answer, panicked) = match state {
                Err(e) => (Err(e), false),
                Ok(state) => {
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        state.refresh();
                        call(state)
                    })) {
                        Ok(answer) => (Ok(answer), false),
                        Err(p) => {
                            let panic = super::workers::panic_message(p.as_ref()).to_string();
                            tracing::error!(mapping = %state.spec.mapping, panic, "A plugin call panicked in the host; the mapping restarts.");
                            (Err(ChainBroken::Panicked(panic)), true)
                        }
                    }
                }
            };
            let _ = tx.send(answer);
            panicked
        });
        self.runner.queue(&self.pool, queued);
        async move { rx.await.unwrap_or(Err(ChainBroken::WorkersStopped)) }
    }

    /// The plugin generation: it moves when a reload swaps a plugin.
    pub fn generation(&self) -> u64 {
        self.plugins.generation()
    }

    /// Runs the transforms on `msg`.
    pub async fn run(&self, msg: Message) -> Result<ChainOutcome, ChainBroken> {
        Ok(self
            .run_batch(vec![msg])
            .await?
            .pop()
            .unwrap_or_else(no_outcome))
    }

    /// Runs the transforms on each message of `batch`, in order, in one trip to a worker.
    /// Returns one outcome per message.
    pub fn run_batch(
        &self,
        batch: Vec<Message>,
    ) -> impl Future<Output = Result<Vec<ChainOutcome>, ChainBroken>> + Send + 'static {
        self.call(move |state| state.run(batch))
    }

    /// Asks the dead-letter policy.
    pub async fn decide(
        &self,
        msg: &Message,
        failure: &ProcessingFailure,
        attempt: u32,
    ) -> Result<Decision, ChainBroken> {
        let job = (msg.clone(), failure.clone());
        self.call(move |state| state.built.core.decide(&job.0, &job.1, attempt))
            .await
    }

    /// `name@sha256:…` of a plugin in the chain.
    pub async fn describe_plugin(&self, name: &str) -> Option<String> {
        let name = name.to_string();
        self.call(move |state| state.built.core.describe_plugin(&name))
            .await
            .ok()
            .flatten()
    }
}

/// The chain takes no more calls; its mapping restarts with fresh instances.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChainBroken {
    /// A call panicked in the host (its instances may be in any state).
    #[error("a plugin call panicked in the host: {0}")]
    Panicked(String),
    /// An earlier call panicked.
    #[error("an earlier plugin call panicked in the host")]
    Poisoned,
    /// The tenant's plugin worker threads stopped.
    #[error("the plugin workers stopped")]
    WorkersStopped,
}

/// Locks `m`; a panic is caught inside every call, so a poisoned lock holds nothing half-done.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The outcome of a message a chain answered nothing for.
pub(super) fn no_outcome() -> ChainOutcome {
    ChainOutcome::Failed(ProcessingFailure {
        kind: FailureKind::PluginTrap,
        plugin: None,
        detail: "the plugin chain gave no outcome".to_string(),
        version: None,
    })
}

/// The built-in policy (see [`Policy::Default`]).
pub fn default_decision(f: &Failure) -> Decision {
    let transient = matches!(
        f.kind,
        FailureKind::PluginTimeout | FailureKind::TargetRejected
    );
    if transient && f.attempt < 5 {
        let delay = 200u64
            .saturating_mul(1 << (f.attempt.saturating_sub(1)).min(16))
            .min(30_000);
        return Decision::Retry(delay);
    }
    Decision::DeadLetter(DeadLetterDecision {
        reason: format!("{}: {}", f.kind, f.message),
        target: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::KafkaOrigin;

    #[test]
    fn provenance_from_kafka() {
        let mut m = Message::new(Some(b"x".to_vec()));
        m.key = Some(b"k".to_vec());
        m.origin = Origin::Kafka(KafkaOrigin {
            cluster: "c".into(),
            topic: "t".into(),
            partition: 2,
            offset: 9,
        });
        add_provenance(&mut m);
        let h: Vec<_> = m
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        assert_eq!(
            h,
            vec![
                ("kafka_topic", "t".into()),
                ("kafka_partition", "2".into()),
                ("kafka_offset", "9".into()),
                ("kafka_key", "k".into())
            ]
        );
    }

    #[test]
    fn hop_count_round_trips() {
        let mut m = Message::new(None);
        assert_eq!(hops(&m), 0);
        set_hops(&mut m, 3);
        assert_eq!(hops(&m), 3);
        assert!(!keep_hops(&mut m, 3), "an intact count stays");
        assert!(keep_hops(&mut m, 12), "another count is put back");
        assert_eq!(hops(&m), 12);
        for (value, count, equal) in [
            (&b"0"[..], 0, true),
            (b"10", 10, true),
            (b"4294967295", u32::MAX, true),
            (b"010", 10, false),
            (b"1", 10, false),
            (b"", 0, false),
            (b" 1", 1, false),
        ] {
            assert_eq!(is_count(value, count), equal, "{value:?} {count}");
        }
    }

    #[test]
    fn provenance_replaces_what_the_message_carried() {
        let mut m = Message::new(None);
        m.headers = vec![
            ("kafka_offset".into(), b"old".to_vec()),
            ("kafka_key".into(), b"kept: no key".to_vec()),
            ("region".into(), b"eu".to_vec()),
        ];
        m.origin = Origin::Kafka(KafkaOrigin {
            cluster: "c".into(),
            topic: "t".into(),
            partition: 0,
            offset: 1,
        });
        add_provenance(&mut m);
        let names: Vec<_> = m.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "kafka_key",
                "region",
                "kafka_topic",
                "kafka_partition",
                "kafka_offset"
            ]
        );
    }

    #[test]
    fn default_policy_backs_off_then_dead_letters() {
        let f = |kind, attempt| Failure {
            kind,
            plugin: None,
            message: "x".into(),
            attempt,
        };
        assert!(matches!(
            default_decision(&f(FailureKind::TargetRejected, 1)),
            Decision::Retry(200)
        ));
        assert!(matches!(
            default_decision(&f(FailureKind::TargetRejected, 4)),
            Decision::Retry(1600)
        ));
        assert!(matches!(
            default_decision(&f(FailureKind::TargetRejected, 5)),
            Decision::DeadLetter(_)
        ));
        match default_decision(&f(FailureKind::Unroutable, 1)) {
            Decision::DeadLetter(d) => assert_eq!(d.reason, "unroutable: x"),
            other => panic!("{other:?}"),
        }
    }
}
