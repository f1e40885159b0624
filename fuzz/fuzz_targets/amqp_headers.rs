//! AMQP field tables from the wire → Kafka headers → AMQP again: whatever headers a RabbitMQ
//! publisher sends, the bridge converts them without panicking, and once converted they cross
//! AMQP and back unchanged (names, values, order).
#![no_main]

use bridge_fuzz::through_the_wire;
use bridge_host::amqp::{from_field_table, to_field_table};
use lapin::types::parsing::parse_field_table;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((_, table)) = parse_field_table(data) else {
        return;
    };
    let headers = from_field_table(&table);
    // The names come from AMQP, so they fit AMQP again.
    let again = to_field_table(&headers).expect("headers from AMQP convert back to AMQP");
    let parsed = through_the_wire(&again);
    assert_eq!(
        parsed, again,
        "a table the bridge writes reads back the same"
    );
    assert_eq!(
        from_field_table(&parsed),
        headers,
        "headers survive a second crossing"
    );
});
