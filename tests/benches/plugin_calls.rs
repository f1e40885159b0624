//! Plugin call costs: `cargo bench -p bridge-tests --bench plugin_calls`.
//!
//! Prints one JSON object with nanoseconds per operation (median of several rounds):
//! - `header_only_ns`: a call with a 1 KiB payload and 5 headers to a plugin that reads one
//!   header and sets another (the payload never crosses into the guest);
//! - `payload_ns`: the same message to a plugin that reads the payload and writes it back;
//! - `header_map_ns`: the built-in `header-map` with a rename, a copy and a set;
//! - `record_shape_ns`: the header-only work with the message passed as a record instead of a
//!   resource (the alternative interface shape);
//! - `fresh_instance_ns`: a new instance from the pre-instantiated component, with `init`;
//! - `allowlist_check_ns`: checking a topic a plugin chose against a tenant's allowlist of
//!   eight globs (the check every send to a chosen topic or exchange makes), half inside it.

use bridge_host::plugin::{PluginRuntime, PluginSpec, RuntimeOptions};
use bridge_tests::{artifacts, sample_message};

fn main() {
    let runtime = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");
    let msg = sample_message();

    let transform = |spec: PluginSpec| {
        runtime
            .load(&spec)
            .expect("load")
            .instantiate()
            .expect("start")
    };
    let mut touch =
        transform(PluginSpec::new("touch", artifacts::HOSTILE).with_config("mode", "touch"));
    let header_only_ns = bridge_tests::median_ns(50_000, || {
        touch.process(msg.clone()).expect("call");
    });
    let mut echo =
        transform(PluginSpec::new("echo", artifacts::HOSTILE).with_config("mode", "echo"));
    let payload_ns = bridge_tests::median_ns(50_000, || {
        echo.process(msg.clone()).expect("call");
    });
    let mut header_map = transform(
        PluginSpec::new("header-map", artifacts::HEADER_MAP)
            .with_config("rename.kafka_key", "message_key")
            .with_config("copy.trace-id", "x-trace")
            .with_config("set.x-source", "{header:kafka_topic}"),
    );
    let header_map_ns = bridge_tests::median_ns(50_000, || {
        header_map.process(msg.clone()).expect("call");
    });
    let clone_ns = bridge_tests::median_ns(50_000, || {
        std::hint::black_box(msg.clone());
    });
    let plugin = runtime
        .load(&PluginSpec::new("touch", artifacts::HOSTILE).with_config("mode", "touch"))
        .expect("load");
    let fresh_instance_ns = bridge_tests::median_ns(2_000, || {
        std::hint::black_box(plugin.instantiate().expect("instance"));
    });
    let record_shape_ns = record_shape::measure_touch(&msg);
    let allowlist_check_ns = allowlist_check_ns();

    println!(
        "{}",
        serde_json::json!({
            "header_only_ns": header_only_ns.round(),
            "payload_ns": payload_ns.round(),
            "header_map_ns": header_map_ns.round(),
            "record_shape_ns": record_shape_ns.round(),
            "fresh_instance_ns": fresh_instance_ns.round(),
            "allowlist_check_ns": (allowlist_check_ns * 10.0).round() / 10.0,
            "message_clone_ns": clone_ns.round(),
            "message": { "payload_bytes": msg.payload.as_ref().map_or(0, |p| p.len()), "headers": msg.headers.len() },
        })
    );
}

/// Nanoseconds per allowlist check of a chosen topic, one inside and one outside the list.
fn allowlist_check_ns() -> f64 {
    let globs = [
        "pay-*",
        "orders.*",
        "billing-?-in",
        "audit.[a-c]*",
        "team-a.**",
        "x-*-y",
        "ledger",
        "events.eu-*",
    ];
    let topics = Some(globs.iter().map(|g| g.to_string()).collect());
    let allowlist = bridge_host::config::TargetAllowlist::new("payments", &topics, &None)
        .expect("globs compile");
    let pair_ns = bridge_tests::median_ns(200_000, || {
        let inside = allowlist.topic(std::hint::black_box("events.eu-west-orders"));
        let outside = allowlist.topic(std::hint::black_box("other-team.topic"));
        std::hint::black_box((inside.is_ok(), outside.is_ok()));
    });
    pair_ns / 2.0
}

/// The record-shaped alternative, called directly through wasmtime.
mod record_shape {
    use bridge_host::plugin::Message;
    use wasmtime::component::{Component, Linker, ResourceTable};
    use wasmtime::{Config, Engine, Store};

    wasmtime::component::bindgen!({
        path: "plugins/shape-record/shape.wit",
        world: "shape",
    });

    use exports::bench::shape::record_shape::Msg;

    struct State {
        wasi: wasmtime_wasi::WasiCtx,
        table: ResourceTable,
    }

    impl wasmtime_wasi::WasiView for State {
        fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
            wasmtime_wasi::WasiCtxView {
                ctx: &mut self.wasi,
                table: &mut self.table,
            }
        }
    }

    pub fn measure_touch(msg: &Message) -> f64 {
        let mut config = Config::new();
        config.concurrency_support(false).epoch_interruption(true);
        let engine = Engine::new(&config).expect("engine");
        let component = Component::from_file(&engine, bridge_tests::artifacts::SHAPE_RECORD)
            .expect("component");
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasi");
        let mut store = Store::new(
            &engine,
            State {
                wasi: wasmtime_wasi::WasiCtxBuilder::new().build(),
                table: ResourceTable::new(),
            },
        );
        store.set_epoch_deadline(u64::MAX / 2);
        let shape = Shape::instantiate(&mut store, &component, &linker).expect("instance");
        let guest = shape.bench_shape_record_shape();
        bridge_tests::median_ns(50_000, || {
            let m = Msg {
                key: msg.key.clone(),
                payload: msg.payload.as_ref().map(|p| p.to_vec()),
                headers: msg.headers.clone(),
            };
            std::hint::black_box(guest.call_touch(&mut store, &m).expect("call"));
        })
    }
}
