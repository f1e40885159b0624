//! `bridge-host`: a WebAssembly-extensible bridge between Apache Kafka and RabbitMQ.
//!
//! Every message passes through a chain of sandboxed WebAssembly components (see [`plugin`]).

pub mod cli;
pub mod config;
pub mod message_json;
pub mod plugin;
pub mod telemetry;
