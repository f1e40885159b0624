//! Consumed Kafka headers as librdkafka holds them (names of any bytes, NULs included; null
//! values) → message headers: every name that is UTF-8 without NUL is kept as it is, any
//! other is escaped so that its bytes can be read back, and the message is marked unreadable
//! exactly when there is one.
#![no_main]

use bridge_host::kafka::{RawHeader, carry_headers};
use libfuzzer_sys::fuzz_target;

/// The bytes of an escaped name (`%XX` for each escaped byte).
fn unescape(name: &str) -> Vec<u8> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("two hex digits");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|raw: Vec<(Vec<u8>, Option<Vec<u8>>)>| {
    let (headers, problem) = carry_headers(raw.iter().map(|(name, value)| RawHeader {
        name,
        value: value.as_deref(),
    }));
    assert_eq!(headers.len(), raw.len());
    let mut any_bad = false;
    for ((name, value), (carried, carried_value)) in raw.iter().zip(&headers) {
        assert_eq!(carried_value, value.as_deref().unwrap_or_default());
        match std::str::from_utf8(name) {
            Ok(text) if !text.contains('\0') => assert_eq!(carried, text),
            _ => {
                any_bad = true;
                assert_eq!(&unescape(carried), name, "an escaped name reads back");
            }
        }
    }
    assert_eq!(problem.is_some(), any_bad);
});
