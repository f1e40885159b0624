//! `{{name}}`: sets the header `x-tag` to its `value` setting and drops messages without a
//! payload.

use bridge_guest_sdk::{Config, Message, Transform, Verdict};

/// The configured plugin.
pub struct Plugin {
    value: String,
}

impl Transform for Plugin {
    fn init(config: Config) -> Result<Self, String> {
        config.deny_unknown(&["value"])?;
        Ok(Plugin {
            value: config.get("value").unwrap_or("{{name}}").to_string(),
        })
    }

    fn process(&mut self, msg: &mut Message) -> Verdict {
        if msg.payload().is_none() {
            return Verdict::Drop;
        }
        msg.set_header("x-tag", &self.value);
        Verdict::Forward
    }
}

bridge_guest_sdk::export_transform!(Plugin);
