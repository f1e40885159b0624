//! `bridge-host`: a WebAssembly-extensible bridge between Apache Kafka and RabbitMQ.
//!
//! Every message passes through a chain of sandboxed WebAssembly components (see [`plugin`]).

pub mod amqp;
pub mod cli;
pub mod config;
pub mod connector;
pub mod health;
pub mod kafka;
pub mod message_json;
pub mod pipeline;
pub mod plugin;
pub mod reload;
pub mod run;
pub mod status;
pub mod stream;
pub mod supervisor;
pub mod telemetry;
#[cfg(debug_assertions)]
pub mod test_hooks;
pub mod topology;
