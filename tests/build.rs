//! Builds every plugin the tests load — the built-in ones and the hostile test plugins — for
//! `wasm32-wasip2`, and exports their paths as `PLUGIN_<NAME>` environment variables.
//! Nothing prebuilt is committed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (package, crate file name) of every plugin the tests need.
const PLUGINS: &[(&str, &str)] = &[
    ("header-map", "header_map"),
    ("routing-key", "routing_key"),
    ("dlq-policy", "dlq_policy"),
    ("hostile", "hostile"),
    ("bad-import", "bad_import"),
    ("shape-record", "shape_record"),
    ("tenth", "tenth"),
    ("chosen-dead-letter", "chosen_dead_letter"),
    ("pii-mask", "pii_mask"),
];

const PROFILE: &str = "plugin";

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let root = manifest
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf();
    for dir in [
        "wit",
        "guest-sdk",
        "plugins",
        "tests/plugins",
        "examples/plugins/rust",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let target_dir = wasm_target_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--target",
            "wasm32-wasip2",
            "--profile",
            PROFILE,
            "--locked",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _) in PLUGINS {
        cmd.args(["-p", package]);
    }
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("cargo can be run to build the test plugins");
    assert!(
        status.success(),
        "building the plugins for wasm32-wasip2 failed (is the target installed? `rustup target add wasm32-wasip2`)"
    );
    for (package, file) in PLUGINS {
        let path = target_dir
            .join("wasm32-wasip2")
            .join(PROFILE)
            .join(format!("{file}.wasm"));
        assert!(path.exists(), "{} was not built", path.display());
        let var = package.to_uppercase().replace('-', "_");
        println!("cargo:rustc-env=PLUGIN_{var}={}", path.display());
    }
    // The bridge binary of this build (built by `cargo test --workspace` or `cargo build -p bridge-host`).
    println!(
        "cargo:rustc-env=BRIDGE_HOST_BIN={}",
        profile_dir().join("bridge-host").display()
    );
    // Its optimised build (`cargo build --profile tripwire -p bridge-host`), for the throughput
    // tripwire.
    let optimised = profile_dir()
        .parent()
        .map(|target| target.join("tripwire").join("bridge-host"));
    if let Some(optimised) = optimised {
        println!(
            "cargo:rustc-env=BRIDGE_HOST_TRIPWIRE_BIN={}",
            optimised.display()
        );
    }
}

/// `<target dir>/<profile>`, where this build's binaries go.
fn profile_dir() -> PathBuf {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    out.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or(out)
}

/// `<target dir>/wasm-plugins`: beside the host build, never inside the directory the outer
/// cargo has locked; or `BRIDGE_TEST_PLUGINS_DIR` (the test command's lints, in a target
/// directory of their own, share the tests' plugin builds).
fn wasm_target_dir() -> PathBuf {
    println!("cargo:rerun-if-env-changed=BRIDGE_TEST_PLUGINS_DIR");
    if let Some(dir) = std::env::var_os("BRIDGE_TEST_PLUGINS_DIR") {
        return PathBuf::from(dir);
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out (or with a target triple in between).
    let target = out
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or(out);
    target.join("wasm-plugins")
}
