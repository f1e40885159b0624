//! The dead-letter policy kind: `decide` about a failed message.

use wasmtime::component::Resource;

use crate::plugin::bindings::{Decision, Failure, Message};
use crate::plugin::error::CallError;
use crate::plugin::instance::PluginInstance;

impl PluginInstance {
    /// Asks the dead-letter policy what to do with a failed message.
    pub fn decide(&mut self, msg: Message, failure: &Failure) -> Result<Decision, CallError> {
        let (guest, res) = self.lend(msg, "dead-letter-policy", |l| l.policy.as_ref())?;
        let rep = res.rep();
        let decision =
            self.call(|store| guest.call_decide(store, Resource::new_borrow(rep), failure))?;
        if let Some(live) = self.live.as_mut() {
            live.store.data_mut().charges.release(rep);
            let _ = live.store.data_mut().table.delete(res);
        }
        Ok(decision)
    }
}
