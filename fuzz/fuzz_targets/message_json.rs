//! The message JSON of `bridge-host plugin run` and the conformance kit: any bytes parse or
//! fail with an error, and a message written as JSON reads back the same.
#![no_main]

use bridge_host::message_json::JsonMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<JsonMessage>(data) else {
        return;
    };
    let Ok(message) = json.into_message() else {
        return;
    };
    let written = serde_json::to_vec(&JsonMessage::from_message(&message)).expect("serialises");
    let again = serde_json::from_slice::<JsonMessage>(&written)
        .expect("the JSON the bridge writes parses")
        .into_message()
        .expect("and converts");
    let rewritten = serde_json::to_vec(&JsonMessage::from_message(&again)).expect("serialises");
    assert_eq!(
        String::from_utf8_lossy(&written),
        String::from_utf8_lossy(&rewritten)
    );
});
