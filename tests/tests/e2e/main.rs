//! The integration tests of the bridge, in one test executable (wasmtime and librdkafka are
//! linked once, not once per file): the plugin host in process, and the `bridge-host` binary
//! end to end against the real brokers (`scripts/brokers.sh start`). One module per area; run
//! one with a filter, e.g. `cargo test -p bridge-tests --test e2e -- soak::`.
//!
//! Tests of different modules run side by side (`--test-threads`, the number of cores by
//! default): no test may change the shared brokers for everyone (resource alarms, restarts,
//! broker-wide settings) or the process's environment; a test that must do so to a broker uses
//! a private node (`bridge_tests::kafka_node`, `bridge_tests::rabbit_node`).

mod amqp_properties;
mod bad_input;
mod breaker;
mod builtin_plugins;
mod cli;
mod config_reload;
mod contract;
mod dead_letters;
mod directions;
mod exactly_once;
mod examples;
mod examples_run;
mod helm_chart;
mod hostile_input;
mod image;
mod kafka_cluster;
mod kafka_restart;
mod kafka_security;
mod load_errors;
mod many_mappings;
mod metrics;
mod migrate;
mod network_faults;
mod noisy_neighbour;
mod plugins_any_language;
mod probes;
mod queue_types;
mod rabbitmq_restart;
mod rabbitmq_tls;
mod rebalance;
mod recovery;
mod reload;
mod replay;
mod resource_alarms;
mod sandbox;
mod settlement;
mod settlement_faults;
mod shared_consumer;
mod soak;
mod streams;
mod tenants;
mod top;
mod topology_removed;
mod tripwire;
