//! A candidate for staged-rollout and reload tests: it accepts any configuration, and marks with
//! header `x-tenth` the messages whose payload ends in `0` — every tenth of a numbered stream —
//! leaving the others as they came. It traps on the payload `boom` (a canary it fails).

use bridge_guest_sdk::{Config, Message, Transform, Verdict};

/// Marks every tenth message.
pub struct Tenth;

impl Transform for Tenth {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Tenth)
    }

    fn process(&mut self, msg: &mut Message) -> Verdict {
        if msg.payload().as_deref() == Some(b"boom".as_slice()) {
            panic!("the tenth plugin traps on `boom`");
        }
        if msg.payload().is_some_and(|p| p.ends_with(b"0")) {
            msg.set_header("x-tenth", "1");
        }
        Verdict::Forward
    }
}

bridge_guest_sdk::export_transform!(Tenth);
