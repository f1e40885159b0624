//! Whatever a producer writes or a plugin does is contained: a record the bridge cannot carry
//! is dead-lettered with its reason, and nothing stops the consumer it came through.

use std::time::Duration;

use bridge_tests::brokers::{self, unique};
use bridge_tests::scenario::{Mapping, Scenario};

/// A header name that is not UTF-8, and one with a NUL byte, between ordinary records: the
/// ordinary ones arrive, the two are dead-lettered as `conversion-error` with their names
/// escaped, and the bridge stays ready.
#[tokio::test(flavor = "multi_thread")]
async fn header_names_that_are_not_utf8_or_hold_a_nul_are_dead_lettered() {
    let topic = unique("rawhdr-in");
    let out = unique("rawhdr-out");
    let dlq = unique("rawhdr-dlq");
    brokers::create_topics(&[&topic, &out, &dlq], 1).await;
    let records: Vec<brokers::RawRecord> = (0..12)
        .map(|i| {
            let name: &[u8] = match i {
                3 => b"n\xff\xfeame",
                7 => b"a\0b",
                _ => b"h",
            };
            (
                format!("m{i}").into_bytes(),
                vec![
                    (b"first".to_vec(), b"1".to_vec()),
                    (name.to_vec(), b"v".to_vec()),
                ],
            )
        })
        .collect();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || brokers::produce_raw_headers(&t, 0, &records))
        .await
        .unwrap();
    let mut bridge = Scenario::new()
        .health()
        .mapping(
            Mapping::kafka_to_kafka("raw", &[&topic], &unique("g"), &out).dead_letter_kafka(&dlq),
        )
        .start();
    let (o, d) = (out.clone(), dlq.clone());
    let delivered = tokio::task::spawn_blocking(move || {
        brokers::consume_topic(&o, 10, Duration::from_secs(30))
    })
    .await
    .unwrap();
    let dead =
        tokio::task::spawn_blocking(move || brokers::consume_topic(&d, 2, Duration::from_secs(10)))
            .await
            .unwrap();
    bridge.ready().await;
    bridge.stop_clean();
    let log = bridge.log_text();
    let payloads: Vec<String> = delivered
        .iter()
        .map(|r| String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).into_owned())
        .collect();
    let expected: Vec<String> = (0..12)
        .filter(|i| ![3, 7].contains(i))
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(payloads, expected, "log:\n{log}");
    assert_eq!(dead.len(), 2, "log:\n{log}");
    for (letter, (payload, name)) in dead.iter().zip([("m3", "n%FF%FEame"), ("m7", "a%00b")]) {
        assert_eq!(letter.payload.as_deref(), Some(payload.as_bytes()));
        assert_eq!(
            letter.header("x-bridge-failure-kind").as_deref(),
            Some("conversion-error")
        );
        assert_eq!(
            letter.header(name).as_deref(),
            Some("v"),
            "escaped name kept"
        );
        assert_eq!(letter.header("first").as_deref(), Some("1"));
    }
}
