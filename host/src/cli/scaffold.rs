//! `bridge-host plugin new --lang LANG NAME`: a working plugin project from templates built
//! into the binary — source, build script, README, the bridge's WIT (for the languages that
//! bind it themselves) and conformance cases that the new plugin passes as generated.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

/// Arguments of `plugin new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name: lowercase letters, digits and `-`, starting with a letter.
    pub name: String,
    /// The language of the project.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Where to create it (default: `./NAME`); must not exist or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Rust only: use the guest SDK from this checkout of the bridge instead of its Git
    /// repository.
    #[arg(long, value_name = "PATH")]
    pub sdk_path: Option<PathBuf>,
}

/// The languages `plugin new` has templates for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust with the bridge's guest SDK.
    Rust,
    /// JavaScript with componentize-js.
    #[value(alias = "javascript")]
    Js,
    /// Python with componentize-py.
    Python,
    /// C with wit-bindgen's C generator, clang and wasi-libc.
    C,
}

/// A template file: its path in the project, its text, and whether it is a script.
type File = (&'static str, &'static str, bool);

const COMMON: &[File] = &[
    (
        "README.md",
        include_str!("../../templates/README.md.tmpl"),
        false,
    ),
    (
        "fixtures/adds-the-header.json",
        include_str!("../../templates/fixtures/adds-the-header.json"),
        false,
    ),
    (
        "fixtures/drops-empty-payloads.json",
        include_str!("../../templates/fixtures/drops-empty-payloads.json"),
        false,
    ),
    (
        "fixtures/rejects-unknown-settings.json",
        include_str!("../../templates/fixtures/rejects-unknown-settings.json"),
        false,
    ),
];

/// The contract, for the languages whose bindings are generated from it in the project.
const WIT: File = (
    "wit/plugin.wit",
    include_str!("../../../wit/plugin.wit"),
    false,
);

const RUST: &[File] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/rust/Cargo.toml"),
        false,
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/rust/src/lib.rs"),
        false,
    ),
    (
        "build.sh",
        include_str!("../../templates/rust/build.sh"),
        true,
    ),
    (".gitignore", "/target\n*.wasm\n", false),
];

const JS: &[File] = &[
    (
        "plugin.js",
        include_str!("../../templates/javascript/plugin.js"),
        false,
    ),
    (
        "build.mjs",
        include_str!("../../templates/javascript/build.mjs"),
        false,
    ),
    (
        "build.sh",
        include_str!("../../templates/javascript/build.sh"),
        true,
    ),
    (
        "package.json",
        include_str!("../../templates/javascript/package.json"),
        false,
    ),
    (
        "package-lock.json",
        include_str!("../../templates/javascript/package-lock.json"),
        false,
    ),
    (".gitignore", "node_modules/\n*.wasm\n", false),
    WIT,
];

const PYTHON: &[File] = &[
    (
        "app.py",
        include_str!("../../templates/python/app.py"),
        false,
    ),
    (
        "requirements.txt",
        include_str!("../../templates/python/requirements.txt"),
        false,
    ),
    (
        "build.sh",
        include_str!("../../templates/python/build.sh"),
        true,
    ),
    (".gitignore", ".venv/\n*.wasm\n__pycache__/\n", false),
    WIT,
];

const C: &[File] = &[
    (
        "plugin.c",
        include_str!("../../templates/c/plugin.c"),
        false,
    ),
    ("build.sh", include_str!("../../templates/c/build.sh"), true),
    (".gitignore", "*.wasm\n", false),
    WIT,
];

impl Lang {
    fn files(self) -> &'static [File] {
        match self {
            Lang::Rust => RUST,
            Lang::Js => JS,
            Lang::Python => PYTHON,
            Lang::C => C,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Js => "JavaScript",
            Lang::Python => "Python",
            Lang::C => "C",
        }
    }
}

/// Creates the project; returns what to do next.
pub fn run(args: NewArgs) -> anyhow::Result<String> {
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read `{}`", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "`{}` exists and is not empty: choose another --dir",
            dir.display()
        );
    }
    let sdk = match (&args.sdk_path, args.lang) {
        (Some(path), Lang::Rust) => {
            let path = std::fs::canonicalize(path)
                .with_context(|| format!("--sdk-path `{}`", path.display()))?;
            let sdk = path.join("guest-sdk");
            if !sdk.join("Cargo.toml").exists() {
                bail!(
                    "--sdk-path `{}` is not a checkout of the bridge (no guest-sdk/Cargo.toml)",
                    path.display()
                );
            }
            format!("{{ path = {:?} }}", sdk.display().to_string())
        }
        (Some(_), _) => bail!("--sdk-path is for Rust projects only"),
        (None, _) => "{ git = \"https://github.com/kafka-rabbitmq-bridge/bridge\" }".to_string(),
    };
    let fill = |text: &str| {
        text.replace("{{name}}", &args.name)
            .replace("{{crate}}", &args.name.replace('-', "_"))
            .replace("{{sdk}}", &sdk)
            .replace("{{language}}", args.lang.title())
    };
    for (path, text, script) in COMMON.iter().chain(args.lang.files()) {
        write(&dir.join(path), &fill(text), *script)?;
    }
    Ok(format!(
        "Created the {} plugin `{}` in {}.\nNext:\n  cd {}\n  ./build.sh\n  bridge-host plugin test {}.wasm --fixtures fixtures",
        args.lang.title(),
        args.name,
        dir.display(),
        dir.display(),
        args.name
    ))
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "plugin name `{name}` is invalid: use lowercase letters, digits and `-`, starting with a letter (at most 64)"
        );
    }
    Ok(())
}

fn write(path: &Path, text: &str, script: bool) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create `{}`", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write `{}`", path.display()))?;
    if script {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make `{}` executable", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("pii-mask2").is_ok());
        for bad in ["", "Pii", "2x", "a_b", "a b"] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains("is invalid"), "{e}");
        }
    }

    #[test]
    fn every_template_is_filled() {
        for lang in [Lang::Rust, Lang::Js, Lang::Python, Lang::C] {
            let dir =
                std::env::temp_dir().join(format!("scaffold-{lang:?}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            run(NewArgs {
                name: "my-plugin".into(),
                lang,
                dir: Some(dir.clone()),
                sdk_path: None,
            })
            .unwrap();
            for (path, _, _) in COMMON.iter().chain(lang.files()) {
                let text = std::fs::read_to_string(dir.join(path)).unwrap();
                assert!(
                    !text.contains("{{"),
                    "{lang:?} {path} has a placeholder left"
                );
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
