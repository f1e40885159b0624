//! Glue called by the export macros. Not part of the public API.

use std::cell::RefCell;
use std::thread::LocalKey;

use crate::bindings::bridge::plugin::types;
use crate::{Config, DeadLetterDecision, Decision, Failure, Policy, Transform};
#[cfg(target_arch = "wasm32")]
use crate::{Message, Verdict};

/// Runs a plugin's `init` ([`Transform::init`] or [`Policy::init`]) and stores the plugin.
pub fn init<T: 'static>(
    slot: &'static LocalKey<RefCell<Option<T>>>,
    config: Vec<(String, String)>,
    init: fn(Config) -> Result<T, String>,
) -> Result<(), String> {
    let plugin = init(Config::new(config))?;
    slot.with(|s| *s.borrow_mut() = Some(plugin));
    Ok(())
}

/// Runs [`Transform::process`] on a borrowed host message.
#[cfg(target_arch = "wasm32")]
pub fn transform_process<T: Transform>(
    slot: &'static LocalKey<RefCell<Option<T>>>,
    msg: &types::Message,
) -> types::Verdict {
    let mut msg = Message::from_borrowed(msg);
    slot.with(|s| match s.borrow_mut().as_mut() {
        None => types::Verdict::DeadLetter("plugin used before `init`".to_string()),
        Some(plugin) => match plugin.process(&mut msg) {
            Verdict::Forward => types::Verdict::Forward,
            Verdict::Drop => types::Verdict::Drop,
            Verdict::DeadLetter(reason) => types::Verdict::DeadLetter(reason),
            Verdict::FanOut(list) => {
                types::Verdict::FanOut(list.into_iter().map(Message::into_owned).collect())
            }
        },
    })
}

/// Native builds never call this; it exists so the export macros type-check everywhere.
#[cfg(not(target_arch = "wasm32"))]
pub fn transform_process<T: Transform>(
    _slot: &'static LocalKey<RefCell<Option<T>>>,
    _msg: &types::Message,
) -> types::Verdict {
    types::Verdict::DeadLetter("not running in WebAssembly".to_string())
}

/// Runs [`Policy::decide`] on a borrowed host message.
#[cfg(target_arch = "wasm32")]
pub fn policy_decide<T: Policy>(
    slot: &'static LocalKey<RefCell<Option<T>>>,
    msg: &types::Message,
    failure: Failure,
) -> Decision {
    let msg = Message::from_borrowed(msg);
    slot.with(|s| match s.borrow_mut().as_mut() {
        None => not_initialised(),
        Some(plugin) => plugin.decide(&msg, &failure),
    })
}

/// Native builds never call this; it exists so the export macros type-check everywhere.
#[cfg(not(target_arch = "wasm32"))]
pub fn policy_decide<T: Policy>(
    _slot: &'static LocalKey<RefCell<Option<T>>>,
    _msg: &types::Message,
    _failure: Failure,
) -> Decision {
    not_initialised()
}

fn not_initialised() -> Decision {
    Decision::DeadLetter(DeadLetterDecision {
        reason: "dead-letter policy used before `init`".to_string(),
        target: None,
    })
}

/// `version` and a newline as bytes, for the `bridge-plugin-version` custom section (a plugin
/// exporting both kinds writes it twice; the host reads the first line).
pub const fn version_line<const N: usize>(version: &str) -> [u8; N] {
    let bytes = version.as_bytes();
    let mut out = [b'\n'; N];
    let mut i = 0;
    while i < bytes.len() && i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}
