//! Kafka headers (any names, repeated or not, any bytes) → an AMQP field table on the wire →
//! Kafka headers: equal, in order, or a conversion error when a name is longer than AMQP allows.
#![no_main]

use bridge_fuzz::through_the_wire;
use bridge_host::amqp::{HEADER_ORDER, from_field_table, to_field_table};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|headers: Vec<(String, Vec<u8>)>| {
    let table = match to_field_table(&headers) {
        Ok(table) => table,
        Err(e) => {
            assert!(
                headers.iter().any(|(name, _)| name.len() > 255),
                "only a name longer than 255 bytes fails: {e}"
            );
            return;
        }
    };
    let parsed = through_the_wire(&table);
    // The order header is the bridge's own: a Kafka header of that name does not cross.
    let expected: Vec<_> = headers
        .into_iter()
        .filter(|(name, _)| name != HEADER_ORDER)
        .collect();
    assert_eq!(from_field_table(&parsed), expected);
});
