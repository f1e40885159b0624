//! The plugin-facing message API: random sequences of the calls a guest can make on message
//! resources (create, duplicate, set headers, payloads, targets, drop, return a fan-out), run
//! against the host's implementation with small limits and a small tenant budget.
#![no_main]

use bridge_host::plugin::Message;
use bridge_host::plugin::fuzzing::{ApiCall, run};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    |input: (Option<Vec<u8>>, Vec<(String, Vec<u8>)>, Vec<ApiCall>)| {
        let (payload, headers, calls) = input;
        let mut message = Message::new(payload);
        message.headers = headers;
        run(message, calls);
    }
);
