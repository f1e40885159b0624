//! The configuration loader: TOML, `${ENV}` substitution and validation. Input: the file's
//! text, then optionally a NUL byte and the environment as `NAME=VALUE` lines. Any input loads
//! or fails with an error; it never panics.
#![no_main]

use std::collections::HashMap;
use std::path::Path;

use bridge_host::config::BridgeConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (text, env) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let env: HashMap<String, String> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match BridgeConfig::parse(Path::new("fuzz.toml"), text, &|name| env.get(name).cloned()) {
        Ok(config) => {
            let _ = format!("{config:?}");
            for (name, plugin) in &config.plugins {
                let _ = config.plugin_spec(name, plugin);
            }
        }
        Err(e) => {
            assert!(
                e.to_string().starts_with("fuzz.toml"),
                "errors name the file: {e}"
            );
        }
    }
});
