//! The WIT contract has one source of truth, `wit/plugin.wit`; the guest SDK's copy must not
//! drift from it.

#[test]
fn guest_sdk_wit_matches_the_contract() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let contract = std::fs::read_to_string(format!("{root}/wit/plugin.wit")).unwrap();
    let copy = std::fs::read_to_string(format!("{root}/guest-sdk/wit/plugin.wit")).unwrap();
    assert!(
        contract == copy,
        "guest-sdk/wit/plugin.wit differs from wit/plugin.wit: copy it with `cp wit/plugin.wit guest-sdk/wit/`"
    );
}

#[test]
fn sdk_and_host_agree_on_the_version() {
    assert_eq!(bridge_host::plugin::CONTRACT_VERSION, "0.1.0");
    let contract =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/plugin.wit")).unwrap();
    assert!(contract.starts_with("package bridge:plugin@0.1.0;"));
}
