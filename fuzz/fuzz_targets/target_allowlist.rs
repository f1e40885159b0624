//! Topics and exchanges a plugin or a header chose, checked against a tenant's allowlist of
//! globs: no panic whatever the names and patterns; a name listed literally is allowed; an
//! empty list allows nothing; a refusal names the tenant and the list.
#![no_main]

use bridge_host::config::TargetAllowlist;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Vec<String>, String, bool)| {
    let (patterns, name, as_exchange) = input;
    let list = Some(patterns.clone());
    let allowlist = match as_exchange {
        false => TargetAllowlist::new("t", &list, &None),
        true => TargetAllowlist::new("t", &None, &list),
    };
    let Ok(allowlist) = allowlist else {
        return;
    };
    let checked = match as_exchange {
        false => allowlist.topic(&name),
        true => allowlist.exchange(&name),
    };
    let literal = !name.contains(['*', '?', '[', ']', '{', '}', '\\']);
    if literal && patterns.contains(&name) {
        assert!(checked.is_ok(), "`{name}` is listed: {checked:?}");
    }
    if patterns.is_empty() {
        assert!(checked.is_err(), "an empty list allows nothing");
    }
    if let Err(refusal) = checked {
        assert_eq!(refusal.tenant, "t");
        assert!(refusal.to_string().contains("tenant `t`"), "{refusal}");
    }
});
