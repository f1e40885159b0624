//! What each language's plugin costs: `cargo bench -p bridge-tests --bench plugin_languages`
//! (scripts/bench.sh runs it). Builds the PII-masking example in every language from source
//! (`examples/plugins/*/build.sh`) and prints one JSON object per language:
//! - `size_bytes`: the component file;
//! - `compile_ms`: loading it with an empty compile cache (validate, compile, pre-instantiate);
//! - `cached_load_ms`: loading it again from the compile cache (a restart, or a second replica
//!   on the same volume);
//! - `instantiate_us`: a new instance with `init` (each mapping's chain makes one);
//! - `call_ns`: one `process` call on a 1 KiB JSON message (masks two fields, sets the route);
//! - `instance_kib`: resident memory per instance, from 16 instances that handled a message.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use bridge_host::plugin::{Message, PluginRuntime, PluginSpec, RuntimeOptions};

/// Instances made to measure the memory of one.
const INSTANCES: usize = 16;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("resident pages");
    pages * 4096
}

/// A 1 KiB JSON message with two PII fields and a route.
fn message() -> Message {
    let mut body = String::from(
        r#"{"region":"eu","email":"ann@example.com","card":"4111111111111111","notes":""#,
    );
    while body.len() < 1022 {
        body.push('x');
    }
    body.push_str("\"}");
    Message::new(Some(body.into_bytes()))
}

fn spec(name: &str, path: &Path) -> PluginSpec {
    PluginSpec::new(name, path)
        .with_config("fields.0", "email")
        .with_config("fields.1", "card")
        .with_config("route_field", "region")
}

fn build(examples: &Path, lang: &str, out: &Path) -> PathBuf {
    let wasm = out.join(format!("pii-mask-{lang}.wasm"));
    let status = Command::new("bash")
        .arg(examples.join(lang).join("build.sh"))
        .arg(&wasm)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("build script runs");
    assert!(status.success(), "building the {lang} plugin failed");
    wasm
}

fn main() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plugins");
    let out = tempfile::tempdir().expect("temp dir");
    for lang in ["rust", "c", "javascript", "python"] {
        let wasm = build(&examples, lang, out.path());
        let size_bytes = std::fs::metadata(&wasm).expect("built").len();
        let spec = spec(lang, &wasm);

        let cold = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");
        let started = Instant::now();
        cold.load(&spec).expect("load");
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;

        let cache = out.path().join(format!("cache-{lang}"));
        let options = RuntimeOptions {
            cache_dir: Some(cache),
        };
        PluginRuntime::new(options.clone())
            .expect("runtime")
            .load(&spec)
            .expect("load");
        let warm = PluginRuntime::new(options).expect("runtime");
        let started = Instant::now();
        let plugin = warm.load(&spec).expect("load from cache");
        let cached_load_ms = started.elapsed().as_secs_f64() * 1e3;

        let instantiate_us = bridge_tests::median_ns(20, || {
            plugin.instantiate().expect("instance");
        }) / 1e3;

        let msg = message();
        let mut instance = plugin.instantiate().expect("instance");
        let call_ns = bridge_tests::median_ns(2_000, || {
            instance.process(msg.clone()).expect("call");
        });

        let before = resident_bytes();
        let instances: Vec<_> = (0..INSTANCES)
            .map(|_| {
                let mut i = plugin.instantiate().expect("instance");
                i.process(msg.clone()).expect("call");
                i
            })
            .collect();
        let instance_kib = resident_bytes().saturating_sub(before) / INSTANCES as u64 / 1024;
        drop(instances);

        println!(
            "{{\"bench\":\"plugin_language\",\"language\":\"{lang}\",\"size_bytes\":{size_bytes},\"compile_ms\":{compile_ms:.0},\"cached_load_ms\":{cached_load_ms:.1},\"instantiate_us\":{instantiate_us:.0},\"call_ns\":{call_ns:.0},\"instance_kib\":{instance_kib}}}"
        );
    }
}
