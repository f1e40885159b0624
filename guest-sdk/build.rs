//! Writes the export macros with the WIT contract inlined, so that a plugin crate can generate
//! its export bindings without knowing where this crate's `wit/` directory is.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=wit/plugin.wit");
    println!("cargo:rerun-if-changed=src/export_macros.rs.in");
    let wit =
        std::fs::read_to_string("wit/plugin.wit").expect("guest-sdk/wit/plugin.wit is readable");
    assert!(
        !wit.contains("\"####"),
        "the WIT must not contain the raw-string terminator"
    );
    let template = std::fs::read_to_string("src/export_macros.rs.in")
        .expect("export_macros.rs.in is readable");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(
        out.join("export_macros.rs"),
        template.replace("@WIT@", &wit),
    )
    .expect("OUT_DIR is writable");
}
