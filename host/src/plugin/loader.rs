//! Loading a plugin: read the file, check it is a component, compile it (through the cache),
//! check its exports and imports against the contract, and pre-instantiate it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::{Component, InstancePre};

use super::bindings::{VERSION, dead_letter_policy, transform};
use super::error::LoadError;
use super::kind::{KINDS, Kind, Kinds};
use super::limits::PluginLimits;
use super::runtime::{EngineHandle, PluginRuntime};
use super::state::PluginState;

/// The tenant of mappings and plugins that name none.
pub const DEFAULT_TENANT: &str = "default";

/// What to load: a named plugin, its file, its configuration and its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    /// The plugin's name in the configuration, used in logs and errors.
    pub name: String,
    /// The `.wasm` component file.
    pub path: PathBuf,
    /// Key/value configuration passed to `init`, in order.
    pub config: Vec<(String, String)>,
    /// Resource limits.
    pub limits: PluginLimits,
    /// The tenant it belongs to.
    pub tenant: String,
    /// The tenant's budget of message bytes its plugins may make the host hold, if any.
    pub held_bytes: Option<u64>,
    /// Canary messages (message JSON files) a version must handle before it runs.
    pub canaries: Vec<PathBuf>,
}

impl PluginSpec {
    /// A spec with no configuration and default limits.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        PluginSpec {
            name: name.into(),
            path: path.into(),
            config: Vec::new(),
            limits: PluginLimits::default(),
            tenant: DEFAULT_TENANT.to_string(),
            held_bytes: None,
            canaries: Vec::new(),
        }
    }

    /// Adds one configuration entry.
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.push((key.into(), value.into()));
        self
    }

    /// Replaces the limits.
    pub fn with_limits(mut self, limits: PluginLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// A compiled, validated, pre-instantiated plugin. Instances are made from it cheaply.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// The version the plugin declares, if it declares one.
    pub(crate) declared: Option<String>,
    /// The tenant's held-bytes budget, if it has one.
    pub(crate) budget: Option<Arc<super::budget::HeldBytes>>,
    pub(crate) spec: PluginSpec,
    pub(crate) engine: EngineHandle,
    pub(crate) pre: InstancePre<PluginState>,
    /// The kinds it exports.
    pub(crate) kinds: Kinds,
    pub(crate) transform: Option<transform::GuestIndices>,
    pub(crate) policy: Option<dead_letter_policy::GuestIndices>,
    pub(crate) version: String,
    pub(crate) digest: String,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.spec.name)
            .field("path", &self.spec.path)
            .field("kinds", &self.kinds.names())
            .finish()
    }
}

impl LoadedPlugin {
    /// The same compiled plugin with another configuration for `init` (no recompilation).
    pub fn with_config(&self, config: Vec<(String, String)>) -> Arc<LoadedPlugin> {
        let mut plugin = self.clone();
        plugin.spec.config = config;
        Arc::new(plugin)
    }

    /// The version the plugin declares in its `bridge-plugin-version` section, if any.
    pub fn version(&self) -> Option<&str> {
        self.declared.as_deref()
    }

    /// The SHA-256 of the component's bytes, in hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The spec it was loaded from.
    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    /// The kinds it exports: transform, dead-letter policy, or both.
    pub fn kinds(&self) -> Kinds {
        self.kinds
    }

    /// Name and content digest, `name@sha256:0123abcd`, for logs and dead-letter headers.
    pub fn describe(&self) -> String {
        format!("{}@sha256:{}", self.spec.name, &self.digest[..16])
    }

    /// The `bridge:plugin` version it was built against.
    pub fn contract_version(&self) -> &str {
        &self.version
    }
}

/// What a component exports and imports, for `bridge-host plugin inspect`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    /// The version the plugin declares, if any.
    pub version: Option<String>,
    /// File size in bytes.
    pub size: u64,
    /// Exported names (interfaces and functions).
    pub exports: Vec<String>,
    /// Imported names.
    pub imports: Vec<String>,
    /// The plugin kinds it implements: `transform`, `dead-letter-policy`.
    pub kinds: Vec<String>,
    /// The `bridge:plugin` version of its exports, if any.
    pub contract_version: Option<String>,
    /// Imports this host does not provide.
    pub unsupported_imports: Vec<String>,
}

impl PluginRuntime {
    /// Loads and validates a plugin. Does not instantiate it: see [`LoadedPlugin::instantiate`].
    pub fn load(&self, spec: &PluginSpec) -> Result<Arc<LoadedPlugin>, LoadError> {
        spec.limits.validate().map_err(|source| LoadError::Limits {
            name: spec.name.clone(),
            source,
        })?;
        let engine = self.engine(spec.limits.stack_kib)?;
        let (component, digest, declared) = compile(&engine, &spec.name, &spec.path)?;
        let exports = Exports::read(&engine, &component);
        let (version, kinds) = exports.check(&spec.name, &spec.path)?;
        let unsupported = unsupported_imports(&engine, &component);
        if !unsupported.is_empty() {
            return Err(LoadError::Imports {
                name: spec.name.clone(),
                path: spec.path.clone(),
                detail: format!(
                    "{} which the host does not provide (plugins may import `bridge:plugin/*` and sandboxed `wasi:*@0.2` interfaces only){}",
                    unsupported
                        .iter()
                        .map(|i| format!("`{i}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    unsupported
                        .iter()
                        .find_map(|i| import_hint(i))
                        .map(|h| format!(": {h}"))
                        .unwrap_or_default()
                ),
            });
        }
        let pre = engine
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Imports {
                name: spec.name.clone(),
                path: spec.path.clone(),
                detail: format!("something the host cannot link: {e:#}"),
            })?;
        let indices_error = |e: wasmtime::Error| LoadError::Exports {
            name: spec.name.clone(),
            path: spec.path.clone(),
            problem: format!("has exports that do not match `bridge:plugin@{VERSION}`: {e:#}"),
        };
        let transform = kinds
            .contains(Kind::Transform)
            .then(|| transform::GuestIndices::new(&pre))
            .transpose()
            .map_err(indices_error)?;
        let policy = kinds
            .contains(Kind::DeadLetterPolicy)
            .then(|| dead_letter_policy::GuestIndices::new(&pre))
            .transpose()
            .map_err(indices_error)?;
        Ok(Arc::new(LoadedPlugin {
            spec: spec.clone(),
            engine,
            pre,
            kinds,
            transform,
            policy,
            version,
            digest,
            budget: Some(self.budget(
                &spec.tenant,
                spec.held_bytes.unwrap_or(super::budget::DEFAULT_HELD_BYTES),
            )),
            declared,
        }))
    }

    /// Describes a component file without requiring it to be a valid plugin.
    pub fn inspect(&self, path: &Path) -> Result<Inspection, LoadError> {
        let engine = self.engine(super::limits::PluginLimits::default().stack_kib)?;
        let name = path.display().to_string();
        let size = std::fs::metadata(path)
            .map_err(|source| LoadError::Read {
                name: name.clone(),
                path: path.to_path_buf(),
                source,
            })?
            .len();
        let (component, _, declared) = compile(&engine, &name, path)?;
        let exports = Exports::read(&engine, &component);
        let (kinds, contract_version) = match exports.check(&name, path) {
            Ok((version, kinds)) => (
                kinds.names().into_iter().map(str::to_string).collect(),
                Some(version),
            ),
            Err(_) => (Vec::new(), exports.version()),
        };
        let imports = component
            .component_type()
            .imports(&engine.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        Ok(Inspection {
            size,
            version: declared,
            exports: exports.names,
            imports,
            kinds,
            contract_version,
            unsupported_imports: unsupported_imports(&engine, &component),
        })
    }
}

/// Reads and compiles a component, telling apart "not wasm", "core module" and "invalid".
/// Returns the component and the hex SHA-256 of the file.
/// The custom section in which a plugin declares its own version (the Rust SDK writes the
/// crate's version there; any toolchain can add it, e.g. with `wasm-tools`).
pub const VERSION_SECTION: &str = "bridge-plugin-version";

/// The version a component declares in a `bridge-plugin-version` custom section (of the
/// component or a module inside it): the first line, trimmed; `None` without one.
pub fn declared_version(bytes: &[u8]) -> Option<String> {
    wasmparser::Parser::new(0)
        .parse_all(bytes)
        .filter_map(Result::ok)
        .find_map(|payload| match payload {
            wasmparser::Payload::CustomSection(section) if section.name() == VERSION_SECTION => {
                let text = String::from_utf8_lossy(section.data());
                let first = text.lines().next().unwrap_or("").trim().to_string();
                (!first.is_empty()).then_some(first)
            }
            _ => None,
        })
}

fn compile(
    engine: &EngineHandle,
    name: &str,
    path: &Path,
) -> Result<(Component, String, Option<String>), LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        name: name.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    let not_component = |problem: &str| LoadError::NotAComponent {
        name: name.to_string(),
        path: path.to_path_buf(),
        problem: problem.to_string(),
    };
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(not_component("is not a WebAssembly file"));
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(not_component(
            "is a core WebAssembly module, not a component: build it for `wasm32-wasip2` or wrap it with `wasm-tools component new`",
        ));
    }
    let component = build_component(engine, &bytes).map_err(|e| LoadError::Invalid {
        name: name.to_string(),
        path: path.to_path_buf(),
        detail: format!("{e:#}"),
    })?;
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    Ok((component, digest, declared_version(&bytes)))
}

/// Compiles a component (served from the compiled-code cache when it has it).
#[cfg(feature = "compiler")]
fn build_component(engine: &EngineHandle, bytes: &[u8]) -> wasmtime::Result<Component> {
    Component::new(&engine.engine, bytes)
}

/// A build without the compiler (the fuzz targets) loads no plugin.
#[cfg(not(feature = "compiler"))]
fn build_component(_engine: &EngineHandle, _bytes: &[u8]) -> wasmtime::Result<Component> {
    Err(wasmtime::Error::msg(
        "this build of bridge-host has no WebAssembly compiler (the `compiler` feature)",
    ))
}

/// The exported names of a component.
struct Exports {
    names: Vec<String>,
}

impl Exports {
    fn read(engine: &EngineHandle, component: &Component) -> Self {
        Exports {
            names: component
                .component_type()
                .exports(&engine.engine)
                .map(|(n, _)| n.to_string())
                .collect(),
        }
    }

    /// The version of the first `bridge:plugin` export, if any.
    fn version(&self) -> Option<String> {
        self.names
            .iter()
            .find_map(|n| n.strip_prefix("bridge:plugin/"))
            .and_then(|n| n.split_once('@'))
            .map(|(_, v)| v.to_string())
    }

    /// Checks for compatible exports of the plugin kinds ([`KINDS`]); returns the contract
    /// version and the kinds exported.
    fn check(&self, name: &str, path: &Path) -> Result<(String, Kinds), LoadError> {
        let err = |problem: String| LoadError::Exports {
            name: name.to_string(),
            path: path.to_path_buf(),
            problem,
        };
        let mut found = (None::<String>, Kinds::default());
        for export in &self.names {
            let Some((interface, version)) = export.split_once('@') else {
                continue;
            };
            let Some(kind) = Kind::from_interface(interface) else {
                continue;
            };
            if !compatible(version) {
                return Err(err(format!(
                    "exports `{export}`, but this host implements `bridge:plugin@{VERSION}` (compatible: 0.1.x)"
                )));
            }
            found = (Some(version.to_string()), found.1.with(kind));
        }
        match found {
            (Some(version), kinds) => Ok((version, kinds)),
            (None, ..) => Err(err(format!(
                "exports {} (it exports: {}); build it for the `transformer`, `policy` or `transformer-and-policy` world of `wit/plugin.wit` (Rust: `export_transform!`; JavaScript: `export const transform`; Python: a `Transform` class in the componentized module; C: define `exports_bridge_plugin_transform_process`)",
                neither(),
                if self.names.is_empty() {
                    "nothing".to_string()
                } else {
                    self.names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ))),
        }
    }
}

/// "neither `a@v` nor `b@v`" over the kinds' interfaces.
fn neither() -> String {
    let names: Vec<String> = KINDS
        .iter()
        .map(|k| format!("`{}@{VERSION}`", k.interface))
        .collect();
    format!("neither {}", names.join(" nor "))
}

/// Semver compatibility with the host's contract version (0.x: same minor).
fn compatible(version: &str) -> bool {
    let host: Vec<&str> = VERSION.split('.').collect();
    let theirs: Vec<&str> = version.split(['.', '-', '+']).collect();
    theirs.len() >= 3
        && theirs[0] == host[0]
        && theirs[1] == host[1]
        && theirs[2].parse::<u32>().is_ok()
}

/// The WASI 0.2 packages the host links (each sandboxed: no files, environment, network or
/// name lookup); `wasi:http` is not among them.
const LINKED_WASI: &[&str] = &[
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// Imports the host does not provide: anything but compatible `bridge:plugin/*` and the
/// linked `wasi:*@0.2.*` packages.
fn unsupported_imports(engine: &EngineHandle, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(&engine.engine)
        .map(|(n, _)| n)
        .filter(|n| {
            let wasi = LINKED_WASI.iter().any(|p| n.starts_with(p)) && n.contains("@0.2.");
            let ours = n
                .strip_prefix("bridge:plugin/")
                .and_then(|rest| rest.split_once('@'))
                .is_some_and(|(_, v)| compatible(v));
            !(wasi || ours)
        })
        .map(str::to_string)
        .collect()
}

/// How to fix the usual cause of an unsupported import, per language.
pub(crate) fn import_hint(import: &str) -> Option<&'static str> {
    if import.starts_with("wasi:http/") {
        Some(
            "plugins have no network: a JavaScript plugin built with componentize-js or `jco componentize` imports `wasi:http` unless its `http` and `fetch-event` features are disabled (`disableFeatures`, or `--disable http fetch-event`); in other languages, remove the HTTP client",
        )
    } else if import.starts_with("wasi:") && !import.contains("@0.2.") {
        Some(
            "it was built for another WASI version: build for WASI 0.2 (Rust: `wasm32-wasip2`; C and Go: the WASI preview1 adapter of wasmtime 48)",
        )
    } else if import.starts_with("bridge:plugin/") {
        Some(
            "it was built against another version of the contract: rebuild with bindings generated from this host's `wit/plugin.wit` (`bridge:plugin@0.1.x`), or the matching SDK",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::compatible;

    #[test]
    fn version_compatibility() {
        assert!(compatible("0.1.0"));
        assert!(compatible("0.1.7"));
        assert!(!compatible("0.2.0"));
        assert!(!compatible("1.1.0"));
        assert!(!compatible("garbage"));
    }
}
