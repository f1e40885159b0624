//! A mapping's plugin chain and its dead-letter policy.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::plugin::{
    CallError, DeadLetterDecision, Decision, Failure, FailureKind, LoadedPlugin, Message, Outcome,
    PluginInstance,
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
}

impl From<CallError> for ProcessingFailure {
    fn from(e: CallError) -> Self {
        ProcessingFailure {
            kind: e.kind,
            plugin: Some(e.plugin),
            detail: e.detail,
        }
    }
}

/// The transform plugins of a mapping, in order, and its dead-letter policy. Runs on the
/// calling thread; see [`Chain`] for the asynchronous handle the pipelines use.
pub struct ChainCore {
    transforms: Vec<PluginInstance>,
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
            timers,
            policy: match policy {
                Some(p) => Policy::Plugin(Box::new(p.instantiate()?)),
                None => Policy::Default,
            },
        })
    }

    /// Runs every transform in order on `msg`.
    pub fn run(&mut self, msg: Message) -> ChainOutcome {
        let mut current = vec![msg];
        for (i, plugin) in self.transforms.iter_mut().enumerate() {
            let timer = self.timers.get(i).and_then(Option::as_ref);
            let mut next = Vec::with_capacity(current.len());
            for m in current {
                let started = timer.map(|_| std::time::Instant::now());
                let result = plugin.process(m);
                if let (Some(t), Some(s)) = (timer, started) {
                    t.called(s.elapsed());
                }
                match result {
                    Ok(Outcome::Forward(out)) => next.extend(out),
                    Ok(Outcome::Drop) => {}
                    Ok(Outcome::DeadLetter { reason, .. }) => {
                        return ChainOutcome::Failed(ProcessingFailure {
                            kind: FailureKind::PluginError,
                            plugin: Some(plugin.plugin().name().to_string()),
                            detail: reason,
                        });
                    }
                    Err(e) => return ChainOutcome::Failed(e.into()),
                }
            }
            current = next;
            if current.is_empty() {
                return ChainOutcome::Dropped;
            }
        }
        ChainOutcome::Send(current)
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

/// A request to the chain's thread.
enum Job {
    Run(Vec<Message>, oneshot::Sender<Vec<ChainOutcome>>),
    Decide(
        Box<(Message, ProcessingFailure)>,
        u32,
        oneshot::Sender<Decision>,
    ),
    Describe(String, oneshot::Sender<Option<String>>),
}

/// The asynchronous handle of a [`ChainCore`] running on its own thread.
///
/// Plugins run outside the async runtime: WebAssembly work never blocks a runtime worker, the
/// thread's stack is sized for the guest stack cap, and the synchronous WASI host (guest
/// stdout, stderr) may drive its own small runtime, which it cannot do on a runtime worker.
pub struct Chain {
    jobs: std::sync::mpsc::Sender<Job>,
}

/// Stack of a chain thread: room for the largest guest stack (1 MiB) and the host below it.
const CHAIN_THREAD_STACK: usize = 8 * 1024 * 1024;

impl Chain {
    /// Starts the chain's thread with fresh plugin instances.
    pub fn new(
        name: &str,
        transforms: &[Arc<LoadedPlugin>],
        policy: Option<&Arc<LoadedPlugin>>,
        timers: Vec<Option<PluginTimer>>,
    ) -> Result<Self, crate::plugin::LoadError> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let transforms = transforms.to_vec();
        let policy = policy.cloned();
        std::thread::Builder::new()
            .name(format!("plugins-{name}"))
            .stack_size(CHAIN_THREAD_STACK)
            .spawn(move || {
                let mut core = match ChainCore::new(&transforms, policy.as_ref(), timers) {
                    Ok(core) => {
                        let _ = ready_tx.send(Ok(()));
                        core
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    match job {
                        Job::Run(batch, reply) => {
                            let _ = reply.send(batch.into_iter().map(|m| core.run(m)).collect());
                        }
                        Job::Decide(job, attempt, reply) => {
                            let (msg, failure) = *job;
                            let _ = reply.send(core.decide(&msg, &failure, attempt));
                        }
                        Job::Describe(name, reply) => {
                            let _ = reply.send(core.describe_plugin(&name));
                        }
                    }
                }
            })
            .map_err(|e| {
                crate::plugin::LoadError::Engine(format!("cannot start the plugin thread: {e}"))
            })?;
        ready_rx.recv().map_err(|_| {
            crate::plugin::LoadError::Engine("the plugin thread exited".to_string())
        })??;
        Ok(Chain { jobs })
    }

    /// Runs the transforms on `msg`.
    pub async fn run(&self, msg: Message) -> ChainOutcome {
        self.run_batch(vec![msg])
            .await
            .pop()
            .unwrap_or_else(no_outcome)
    }

    /// Runs the transforms on each message of `batch`, in order, in one trip to the chain's
    /// thread. Returns one outcome per message.
    pub async fn run_batch(&self, batch: Vec<Message>) -> Vec<ChainOutcome> {
        let n = batch.len();
        let gone = || (0..n).map(|_| no_outcome()).collect();
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Run(batch, tx)).is_err() {
            return gone();
        }
        rx.await.unwrap_or_else(|_| gone())
    }

    /// Asks the dead-letter policy.
    pub async fn decide(
        &self,
        msg: &Message,
        failure: &ProcessingFailure,
        attempt: u32,
    ) -> Decision {
        let (tx, rx) = oneshot::channel();
        let fallback = || {
            default_decision(&Failure {
                kind: failure.kind,
                plugin: failure.plugin.clone(),
                message: failure.detail.clone(),
                attempt,
            })
        };
        if self
            .jobs
            .send(Job::Decide(
                Box::new((msg.clone(), failure.clone())),
                attempt,
                tx,
            ))
            .is_err()
        {
            return fallback();
        }
        rx.await.unwrap_or_else(|_| fallback())
    }

    /// `name@sha256:…` of a plugin in the chain.
    pub async fn describe_plugin(&self, name: &str) -> Option<String> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(Job::Describe(name.to_string(), tx)).ok()?;
        rx.await.ok().flatten()
    }
}

/// The outcome of a message the chain's thread could not answer (it exited).
pub(super) fn no_outcome() -> ChainOutcome {
    ChainOutcome::Failed(thread_gone())
}

fn thread_gone() -> ProcessingFailure {
    ProcessingFailure {
        kind: FailureKind::PluginTrap,
        plugin: None,
        detail: "the plugin thread exited".to_string(),
    }
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
