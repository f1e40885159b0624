//! The Helm chart, rendered by the real `helm` (built from its Go module by
//! `scripts/setup.sh`): it lints, renders with default and seed-like values, and the rendered
//! objects hold what users rely on — a `bridge.toml` that `bridge-host check` accepts, probes on
//! `/livez` and `/readyz`, secrets as `${ENV}`, a PodDisruptionBudget, an optional
//! ServiceMonitor, and a config checksum that rolls the pods when the config changes.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use bridge_tests::bridge::binary;
use serde_json::Value;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/bridge-host")
}

fn seed_like() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/seed-like.values.yaml")
}

fn helm() -> PathBuf {
    let path = std::env::var_os("BRIDGE_HELM").map_or_else(
        || PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/bridge-host/bin/helm"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: scripts/setup.sh builds helm from its Go module",
        path.display()
    );
    path
}

fn run_helm(args: &[&str], values: &[&Path]) -> String {
    let mut cmd = Command::new(helm());
    cmd.args(args);
    for v in values {
        cmd.arg("-f").arg(v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "helm {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `helm template` with `values`: the rendered objects.
fn render(values: &[&Path], set: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec!["template", "bridge", chart.to_str().unwrap()];
    for s in set {
        args.extend(["--set", s]);
    }
    let text = run_helm(&args, values);
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn object<'a>(objects: &'a [Value], kind: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["kind"] == kind)
}

/// `bridge-host check` on the rendered `bridge.toml`.
fn check_config(objects: &[Value]) {
    let config = object(objects, "ConfigMap").unwrap()["data"]["bridge.toml"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        config.contains("plugin_cache_dir = \"/var/cache/bridge-host\""),
        "{config}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(&path, &config).unwrap();
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .env("RABBITMQ_PASSWORD", "from-the-secret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rendered bridge.toml: {}\n{config}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_chart_lints_and_renders_what_users_rely_on() {
    let chart = chart();
    run_helm(&["lint", chart.to_str().unwrap()], &[]);
    run_helm(&["lint", chart.to_str().unwrap()], &[&seed_like()]);

    // Defaults.
    let objects = render(&[], &[]);
    check_config(&objects);
    let deployment = object(&objects, "Deployment").unwrap();
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(object(&objects, "PodDisruptionBudget").is_some());
    assert!(
        object(&objects, "ServiceMonitor").is_none(),
        "off by default"
    );
    let checksum = pod["metadata"]["annotations"]["checksum/config"].clone();
    assert!(checksum.is_string());

    // Seed-like values: the replicator's replicas, resources and probe timings.
    let objects = render(&[&seed_like()], &[]);
    check_config(&objects);
    let deployment = object(&objects, "Deployment").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(container["readinessProbe"]["initialDelaySeconds"], 30);
    assert_eq!(container["readinessProbe"]["periodSeconds"], 10);
    let env = container["env"].as_array().unwrap();
    let password = env
        .iter()
        .find(|e| e["name"] == "RABBITMQ_PASSWORD")
        .unwrap();
    assert_eq!(password["valueFrom"]["secretKeyRef"]["name"], "rabbitmq");
    assert_eq!(
        pod["spec"]["initContainers"][0]["image"], "ghcr.io/example/bridge-plugins:1.0",
        "plugins from an OCI image"
    );
    let monitor = object(&objects, "ServiceMonitor").unwrap();
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");

    // The Grafana dashboard, for the sidecar, only when asked for.
    let dashboard = |objects: &[Value]| {
        objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap" && o["data"]["bridge-host.json"].is_string())
            .cloned()
    };
    assert!(dashboard(&objects).is_none(), "off by default");
    let with = render(&[], &["grafanaDashboard.enabled=true"]);
    let map = dashboard(&with).expect("the dashboard ConfigMap");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value =
        serde_json::from_str(map["data"]["bridge-host.json"].as_str().unwrap()).unwrap();
    assert_eq!(json["uid"], "bridge-host");

    // A changed config changes the checksum, which rolls the pods.
    let changed = render(&[&seed_like()], &["replicaCount=3,logFormat=text"]);
    let same = &object(&changed, "Deployment").unwrap()["spec"]["template"]["metadata"]["annotations"]
        ["checksum/config"];
    assert_eq!(
        *same, pod["metadata"]["annotations"]["checksum/config"],
        "same config, same checksum"
    );
    let dir = tempfile::tempdir().unwrap();
    let edit = dir.path().join("edit.yaml");
    std::fs::write(
        &edit,
        "config: |\n  [kafka.other]\n  bootstrap_servers = \"kafka-2:9092\"\n",
    )
    .unwrap();
    let edited = render(&[&edit], &[]);
    let other = &object(&edited, "Deployment").unwrap()["spec"]["template"]["metadata"]["annotations"]
        ["checksum/config"];
    assert_ne!(*other, checksum, "a changed config rolls the pods");
}
