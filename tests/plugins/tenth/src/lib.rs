//! A candidate for staged-rollout tests: it accepts any configuration, and marks with header
//! `x-tenth` the messages whose payload ends in `0` — every tenth of a numbered stream —
//! leaving the others as they came.

use bridge_guest_sdk::{Config, Message, Transform, Verdict};

/// Marks every tenth message.
pub struct Tenth;

impl Transform for Tenth {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Tenth)
    }

    fn process(&mut self, msg: &mut Message) -> Verdict {
        if msg.payload().is_some_and(|p| p.ends_with(b"0")) {
            msg.set_header("x-tenth", "1");
        }
        Verdict::Forward
    }
}

bridge_guest_sdk::export_transform!(Tenth);
