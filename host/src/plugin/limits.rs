//! Per-plugin resource limits and the store limiter that enforces them.

use serde::Deserialize;

use super::error::{LimitError, LimitHit};

/// Resource limits of one plugin, from its `limits` table in `bridge.toml`:
///
/// ```toml
/// [plugins.headers.limits]
/// timeout_ms = 100
/// memory_mib = 64
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// Wall-clock time one call may take before it is interrupted: `timeout_ms = 100`.
    pub timeout_ms: u64,
    /// Linear memory cap per instance, all its memories together, in MiB: `memory_mib = 64`.
    pub memory_mib: u64,
    /// Maximum elements per table: `table_elements = 20000`.
    pub table_elements: u64,
    /// Maximum core instances, tables and memories per plugin instance: `instances = 32`.
    pub instances: u32,
    /// WebAssembly stack cap in KiB: `stack_kib = 512` (at most 1024).
    pub stack_kib: u32,
    /// Largest key, payload or header value, and largest whole message a call may produce,
    /// in bytes: `output_bytes = 16777216`.
    pub output_bytes: u64,
    /// Most headers on one output message: `headers = 1024`.
    pub headers: u32,
    /// Most messages one call may create (`duplicate`, constructor, fan-out): `fan_out = 1024`.
    pub fan_out: u32,
    /// Log lines (host `log` calls and stdout/stderr lines) per second before lines are dropped:
    /// `log_lines_per_second = 50`.
    pub log_lines_per_second: u32,
    /// Longest log line in bytes; longer lines are truncated: `log_line_bytes = 2048`.
    pub log_line_bytes: u32,
}

/// The largest `stack_kib` accepted: plugins run on threads with 2 MiB stacks, and the host
/// needs room of its own below the guest.
pub const MAX_STACK_KIB: u32 = 1024;

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            timeout_ms: 100,
            memory_mib: 64,
            table_elements: 20_000,
            instances: 32,
            stack_kib: 512,
            output_bytes: 16 * 1024 * 1024,
            headers: 1024,
            fan_out: 1024,
            log_lines_per_second: 50,
            log_line_bytes: 2048,
        }
    }
}

impl PluginLimits {
    /// Checks that every limit is in range.
    pub fn validate(&self) -> Result<(), LimitError> {
        let positive = [
            ("timeout_ms", self.timeout_ms),
            ("memory_mib", self.memory_mib),
            ("table_elements", self.table_elements),
            ("instances", u64::from(self.instances)),
            ("stack_kib", u64::from(self.stack_kib)),
            ("output_bytes", self.output_bytes),
            ("fan_out", u64::from(self.fan_out)),
            ("log_line_bytes", u64::from(self.log_line_bytes)),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(LimitError::Zero(name));
        }
        if self.stack_kib > MAX_STACK_KIB {
            return Err(LimitError::TooLarge {
                name: "stack_kib",
                value: u64::from(self.stack_kib),
                max: u64::from(MAX_STACK_KIB),
            });
        }
        if self.memory_mib > 4096 {
            return Err(LimitError::TooLarge {
                name: "memory_mib",
                value: self.memory_mib,
                max: 4096,
            });
        }
        Ok(())
    }

    /// The memory cap in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_mib * 1024 * 1024
    }
}

/// Enforces [`PluginLimits`] on one store. Growth past a cap traps with a [`LimitHit`].
#[derive(Debug)]
pub struct StoreLimiter {
    memory_bytes: u64,
    /// Bytes of all the instance's linear memories together.
    memory_total: u64,
    table_elements: u64,
    instances: usize,
}

impl StoreLimiter {
    /// A limiter for these limits.
    pub fn new(limits: &PluginLimits) -> Self {
        StoreLimiter {
            memory_bytes: limits.memory_bytes(),
            memory_total: 0,
            table_elements: limits.table_elements,
            instances: limits.instances as usize,
        }
    }
}

impl wasmtime::ResourceLimiter for StoreLimiter {
    /// `memory_mib` bounds all of an instance's linear memories together, not each one.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total =
            (self.memory_total.saturating_sub(current as u64)).saturating_add(desired as u64);
        if total > self.memory_bytes {
            return Err(wasmtime::Error::new(LimitHit::Memory {
                limit: self.memory_bytes,
                wanted: total,
            }));
        }
        self.memory_total = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.table_elements {
            return Err(wasmtime::Error::new(LimitHit::Table {
                limit: self.table_elements,
                wanted: desired as u64,
            }));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.instances
    }

    fn memories(&self) -> usize {
        self.instances
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(PluginLimits::default().validate(), Ok(()));
    }

    #[test]
    fn rejects_zero_and_oversized_stack() {
        let zero = PluginLimits {
            timeout_ms: 0,
            ..PluginLimits::default()
        };
        let err = zero.validate().unwrap_err();
        assert_eq!(err, LimitError::Zero("timeout_ms"));
        assert_eq!(err.to_string(), "limit `timeout_ms` must be greater than 0");
        let stack = PluginLimits {
            stack_kib: 4096,
            ..PluginLimits::default()
        };
        assert_eq!(
            stack.validate().unwrap_err().to_string(),
            "limit `stack_kib` is 4096, at most 1024 is allowed"
        );
    }

    /// A component whose two core instances each have a 1.25 MiB memory: 2.5 MiB in all,
    /// refused under a 2 MiB cap though each memory alone is under it.
    #[cfg(feature = "compiler")]
    #[test]
    fn the_memory_cap_counts_every_linear_memory_of_an_instance() {
        let text = r#"(component
            (core module $a (memory 20)) (core instance (instantiate $a))
            (core module $b (memory 20)) (core instance (instantiate $b)))"#;
        let bytes = wat::parse_str(text).expect("valid component text");
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = wasmtime::Engine::new(&config).expect("engine");
        let component =
            wasmtime::component::Component::new(&engine, &bytes).expect("component compiles");
        let instantiate = |memory_mib| {
            let limits = PluginLimits {
                memory_mib,
                ..PluginLimits::default()
            };
            let mut store = wasmtime::Store::new(&engine, StoreLimiter::new(&limits));
            store.limiter(|l| l);
            wasmtime::component::Linker::<StoreLimiter>::new(&engine)
                .instantiate(&mut store, &component)
                .map(|_| ())
        };
        assert!(instantiate(3).is_ok(), "2.5 MiB fits under 3 MiB");
        let err = instantiate(2).expect_err("2.5 MiB in two memories is over 2 MiB");
        assert!(
            matches!(
                err.downcast_ref::<LimitHit>(),
                Some(LimitHit::Memory { wanted, .. }) if *wanted == 40 * 64 * 1024
            ),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_limit_is_rejected() {
        let err = toml::from_str::<PluginLimits>("timeout = 5").unwrap_err();
        assert!(err.to_string().contains("unknown field `timeout`"), "{err}");
    }
}
