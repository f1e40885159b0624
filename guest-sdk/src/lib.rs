//! Write plugins for the Kafka ⇄ RabbitMQ bridge as WebAssembly components.
//!
//! A plugin is a `cdylib` crate built for `wasm32-wasip2`. It implements [`Transform`] (look at
//! and edit each message), [`Policy`] (decide what happens to a failed message), or both, and
//! exports them with [`export_transform!`] and [`export_policy!`].
//!
//! ```
//! use bridge_guest_sdk::{Config, Message, Transform, Verdict};
//!
//! struct Tag { value: String }
//!
//! impl Transform for Tag {
//!     fn init(config: Config) -> Result<Self, String> {
//!         config.deny_unknown(&["value"])?;
//!         Ok(Tag { value: config.require("value")?.to_string() })
//!     }
//!     fn process(&mut self, msg: &mut Message) -> Verdict {
//!         msg.set_header("x-tag", &self.value);
//!         Verdict::Forward
//!     }
//! }
//!
//! bridge_guest_sdk::export_transform!(Tag);
//! ```
//!
//! The same code compiles natively, where [`Message`] is an in-memory value: plugin logic is
//! unit-tested with plain `cargo test`, without WebAssembly.

#![deny(missing_docs)]

mod config;
#[cfg(feature = "json")]
pub mod json;
pub mod log;
mod message;
pub mod template;

#[doc(hidden)]
pub mod __rt;

#[doc(hidden)]
#[allow(missing_docs, unsafe_op_in_unsafe_fn, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "bridge:plugin/imports",
        generate_unused_types: true,
    });
}

pub use wit_bindgen;

pub use bindings::bridge::plugin::types::{
    AmqpOrigin, AmqpProperties, AmqpTarget, DeadLetterDecision, DeadLetterTarget, Decision,
    Failure, FailureKind, KafkaOrigin, KafkaTarget, Origin,
};
pub use config::Config;
pub use message::Message;

/// The `bridge:plugin` contract version this SDK builds against.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// What a transform decides for one message.
#[derive(Debug)]
pub enum Verdict {
    /// Pass the (possibly edited) message on.
    Forward,
    /// Replace the message by these messages, in order. Make them with
    /// [`Message::duplicate`] or [`Message::new`].
    FanOut(Vec<Message>),
    /// Drop the message on purpose; it counts as handled.
    Drop,
    /// Send the message to the dead-letter target with this reason.
    DeadLetter(String),
}

/// A plugin that sees every message of a mapping.
pub trait Transform: Sized + 'static {
    /// Builds the plugin from its configuration; an `Err` rejects the configuration and the
    /// bridge does not start.
    fn init(config: Config) -> Result<Self, String>;

    /// Looks at and edits one message.
    fn process(&mut self, msg: &mut Message) -> Verdict;
}

/// A plugin that decides what happens to a message whose processing failed.
pub trait Policy: Sized + 'static {
    /// Builds the policy from its configuration; an `Err` rejects the configuration.
    fn init(config: Config) -> Result<Self, String>;

    /// Decides: retry later, dead-letter, or drop.
    fn decide(&mut self, msg: &Message, failure: &Failure) -> Decision;
}

impl FailureKind {
    /// The kebab-case name, as in configuration and the `x-bridge-failure-kind` header.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::PluginTrap => "plugin-trap",
            FailureKind::PluginTimeout => "plugin-timeout",
            FailureKind::PluginMemoryLimit => "plugin-memory-limit",
            FailureKind::PluginOutputLimit => "plugin-output-limit",
            FailureKind::PluginError => "plugin-error",
            FailureKind::TargetRejected => "target-rejected",
            FailureKind::Unroutable => "unroutable",
            FailureKind::ConversionError => "conversion-error",
            FailureKind::HopLimit => "hop-limit",
        }
    }

    /// Every failure kind.
    pub const ALL: [FailureKind; 9] = [
        FailureKind::PluginTrap,
        FailureKind::PluginTimeout,
        FailureKind::PluginMemoryLimit,
        FailureKind::PluginOutputLimit,
        FailureKind::PluginError,
        FailureKind::TargetRejected,
        FailureKind::Unroutable,
        FailureKind::ConversionError,
        FailureKind::HopLimit,
    ];

    /// Parses the kebab-case name.
    pub fn parse(name: &str) -> Option<FailureKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

include!(concat!(env!("OUT_DIR"), "/export_macros.rs"));
