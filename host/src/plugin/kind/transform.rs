//! The transform kind: `process` on each message, and what its verdict becomes.

use wasmtime::component::Resource;

use crate::plugin::bindings::{FailureKind, Message, Verdict};
use crate::plugin::error::CallError;
use crate::plugin::instance::PluginInstance;

/// What a transform decided, with the messages it produced.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The messages to pass on: one for `forward`, any number for `fan-out`.
    Forward(Vec<Message>),
    /// The message was dropped on purpose.
    Drop,
    /// The message goes to the dead-letter target.
    DeadLetter {
        /// The message as the plugin left it.
        message: Box<Message>,
        /// The plugin's reason.
        reason: String,
    },
}

impl PluginInstance {
    /// Runs the transform on `msg`.
    pub fn process(&mut self, msg: Message) -> Result<Outcome, CallError> {
        let (guest, res) = self.lend(msg, "transform", |l| l.transform.as_ref())?;
        let rep = res.rep();
        let verdict = self.call(|store| guest.call_process(store, Resource::new_borrow(rep)))?;
        let Some(live) = self.live.as_mut() else {
            return Err(self.host_error(wasmtime::format_err!("instance vanished")));
        };
        let state = live.store.data_mut();
        let table = &mut state.table;
        let mut msg = match table.delete(res) {
            Ok(m) => m,
            Err(e) => {
                state.charges.release(rep);
                return Err(self.fail(FailureKind::PluginTrap, format!("{e}")));
            }
        };
        // What the plugin made the message hold stays charged until it is settled.
        msg.held = state.charges.hand_back(rep, msg.held.take());
        let outcome = match verdict {
            Verdict::Forward => Outcome::Forward(vec![msg]),
            Verdict::Drop => Outcome::Drop,
            Verdict::DeadLetter(reason) => Outcome::DeadLetter {
                message: Box::new(msg),
                reason,
            },
            Verdict::FanOut(list) => {
                let mut out = Vec::with_capacity(list.len());
                for r in list {
                    if r.rep() == rep {
                        out.push(msg.clone());
                        continue;
                    }
                    let out_rep = r.rep();
                    match table.delete(r) {
                        Ok(mut m) => {
                            m.held = state.charges.hand_back(out_rep, m.held.take());
                            out.push(m)
                        }
                        Err(e) => return Err(self.fail(FailureKind::PluginTrap, format!("{e}"))),
                    }
                }
                Outcome::Forward(out)
            }
        };
        self.check_output(&outcome)?;
        Ok(outcome)
    }

    fn check_output(&mut self, outcome: &Outcome) -> Result<(), CallError> {
        let limits = &self.plugin().spec.limits;
        let messages: &[Message] = match outcome {
            Outcome::Forward(m) => m,
            Outcome::DeadLetter { message, .. } => std::slice::from_ref(message),
            Outcome::Drop => &[],
        };
        if messages.len() > limits.fan_out as usize {
            return Err(self.fail(
                FailureKind::PluginOutputLimit,
                format!(
                    "{} output messages are more than {}",
                    messages.len(),
                    limits.fan_out
                ),
            ));
        }
        for m in messages {
            if m.size() > limits.output_bytes {
                return Err(self.fail(
                    FailureKind::PluginOutputLimit,
                    format!(
                        "an output message of {} bytes is larger than {} bytes",
                        m.size(),
                        limits.output_bytes
                    ),
                ));
            }
            if m.headers.len() > limits.headers as usize {
                return Err(self.fail(
                    FailureKind::PluginOutputLimit,
                    format!(
                        "{} headers are more than {}",
                        m.headers.len(),
                        limits.headers
                    ),
                ));
            }
        }
        Ok(())
    }
}
