//! Bad plugin files give clear errors naming the file and the problem, never a panic.

use std::path::Path;

use bridge_host::plugin::{LoadError, PluginLimits, PluginSpec};
use bridge_tests::{artifacts, runtime};

fn load_error(path: &Path) -> String {
    runtime()
        .load(&PluginSpec::new("p", path))
        .expect_err("loading fails")
        .to_string()
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("temp file is writable");
    path
}

#[test]
fn missing_file() {
    let err = load_error(Path::new("/nonexistent/plugin.wasm"));
    assert!(
        err.starts_with("cannot read plugin `p` from `/nonexistent/plugin.wasm`: No such file"),
        "{err}"
    );
}

#[test]
fn not_webassembly() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "notes.wasm", b"hello, world");
    assert_eq!(
        load_error(&path),
        format!(
            "plugin `p` (`{}`) is not a WebAssembly file",
            path.display()
        )
    );
}

#[test]
fn core_module_instead_of_component() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "core.wasm", &wat::parse_str("(module)").unwrap());
    let err = load_error(&path);
    assert!(
        err.contains("is a core WebAssembly module, not a component"),
        "{err}"
    );
}

#[test]
fn truncated_component() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(artifacts::HEADER_MAP).unwrap();
    let path = write(&dir, "truncated.wasm", &bytes[..bytes.len() / 2]);
    let err = load_error(&path);
    assert!(
        err.starts_with(&format!(
            "plugin `p` (`{}`) is not a valid component:",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn incompatible_contract_version() {
    let dir = tempfile::tempdir().unwrap();
    let wat = r#"(component
        (core module $m (func (export "f")))
        (core instance $i (instantiate $m))
        (func $f (canon lift (core func $i "f")))
        (instance $inst (export "process" (func $f)))
        (export "bridge:plugin/transform@0.2.0" (instance $inst)))"#;
    let path = write(&dir, "future.wasm", &wat::parse_str(wat).unwrap());
    assert_eq!(
        load_error(&path),
        format!(
            "plugin `p` (`{}`) exports `bridge:plugin/transform@0.2.0`, but this host implements `bridge:plugin@0.1.0` (compatible: 0.1.x)",
            path.display()
        )
    );
}

#[test]
fn component_exporting_nothing_useful() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "empty.wasm", &wat::parse_str("(component)").unwrap());
    assert_eq!(
        load_error(&path),
        format!(
            "plugin `p` (`{}`) exports neither `bridge:plugin/transform@0.1.0` nor `bridge:plugin/dead-letter-policy@0.1.0` (it exports: nothing); build it for the `transformer`, `policy` or `transformer-and-policy` world of `wit/plugin.wit` (Rust: `export_transform!`; JavaScript: `export const transform`; Python: a `Transform` class in the componentized module; C: define `exports_bridge_plugin_transform_process`)",
            path.display()
        )
    );
}

#[test]
fn import_the_host_does_not_provide() {
    let err = load_error(Path::new(artifacts::BAD_IMPORT));
    assert_eq!(
        err,
        format!(
            "plugin `p` (`{}`) imports `evil:net/raw-socket@0.1.0` which the host does not provide (plugins may import `bridge:plugin/*` and sandboxed `wasi:*@0.2` interfaces only)",
            artifacts::BAD_IMPORT
        )
    );
}

#[test]
fn out_of_range_limits() {
    let spec = PluginSpec::new("p", artifacts::HEADER_MAP).with_limits(PluginLimits {
        stack_kib: 8192,
        ..PluginLimits::default()
    });
    let err = runtime().load(&spec).unwrap_err();
    assert!(matches!(err, LoadError::Limits { .. }));
    assert_eq!(
        err.to_string(),
        "plugin `p`: limit `stack_kib` is 8192, at most 1024 is allowed"
    );
}

#[test]
fn compiled_code_is_cached_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let options = bridge_host::plugin::RuntimeOptions {
        cache_dir: Some(dir.path().to_path_buf()),
    };
    let first = bridge_host::plugin::PluginRuntime::new(options.clone()).unwrap();
    first
        .load(&PluginSpec::new("p", artifacts::ROUTING_KEY))
        .unwrap();
    assert_eq!(first.cache_hits(), 0);
    let second = bridge_host::plugin::PluginRuntime::new(options).unwrap();
    second
        .load(&PluginSpec::new("p", artifacts::ROUTING_KEY))
        .unwrap();
    assert_eq!(
        second.cache_hits(),
        1,
        "the second runtime reuses the compiled code"
    );
}
