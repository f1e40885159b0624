//! A dead-letter policy that chooses the dead-letter target itself: every failed message goes
//! to the Kafka topic setting `topic` names, whatever the mapping's `dead_letter` says — the
//! host must hold that choice to the tenant's allowlists.

use bridge_guest_sdk::{
    Config, DeadLetterDecision, DeadLetterTarget, Decision, Failure, Message, Policy,
};

/// Dead-letters to its configured topic.
pub struct ChosenDeadLetter {
    topic: String,
}

impl Policy for ChosenDeadLetter {
    fn init(config: Config) -> Result<Self, String> {
        Ok(ChosenDeadLetter {
            topic: config.require("topic")?.to_string(),
        })
    }

    fn decide(&mut self, _msg: &Message, failure: &Failure) -> Decision {
        Decision::DeadLetter(DeadLetterDecision {
            reason: format!("chosen: {}", failure.kind.as_str()),
            target: Some(DeadLetterTarget::Kafka(self.topic.clone())),
        })
    }
}

bridge_guest_sdk::export_policy!(ChosenDeadLetter);
