use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<BridgeConfig, String> {
    let env = |name: &str| (name == "SECRET").then(|| "s3cret".to_string());
    BridgeConfig::parse(Path::new("bridge.toml"), text, &env).map_err(|e| e.to_string())
}

const BASE: &str = r#"
[kafka.main]
bootstrap_servers = "127.0.0.1:9092"

[rabbitmq.local]
url = "amqp://guest:${SECRET}@127.0.0.1:5672/%2f"

[plugins.headers]
path = "header_map.wasm"
config = { keep = ["kafka_*"], rename = { kafka_key = "message_key" }, n = 3 }
"#;

#[test]
fn parses_both_directions_and_substitutes_env() {
    let config = parse(&format!(
        r#"{BASE}
[[mapping]]
name = "out"
source = {{ kafka = "main", topics = ["events-order-damage"] }}
target = {{ rabbitmq = "local", exchange = "events", routing_key = "order.damage" }}
plugins = ["headers"]

[[mapping]]
name = "in"
source = {{ rabbitmq = "local", queue = "warehouse-events" }}
target = {{ kafka = "main", topic = "warehouse-events" }}
dead_letter = {{ kafka = "main", topic = "dlq" }}
"#
    ))
    .unwrap();
    assert_eq!(
        config.rabbitmq["local"].url,
        "amqp://guest:s3cret@127.0.0.1:5672/%2f"
    );
    assert!(
        !format!("{:?}", config.rabbitmq["local"]).contains("s3cret"),
        "Debug redacts the password"
    );
    assert_eq!(
        config.plugins["headers"].flat_config(),
        vec![
            ("keep.0".to_string(), "kafka_*".to_string()),
            ("n".to_string(), "3".to_string()),
            ("rename.kafka_key".to_string(), "message_key".to_string()),
        ]
    );
    match &config.mapping[0].source {
        Source::Kafka(k) => {
            assert_eq!(k.group, "bridge-host");
            assert_eq!(k.auto_offset_reset, "earliest");
        }
        other => panic!("{other:?}"),
    }
    assert!(config.mapping[0].provenance_headers);
}

#[test]
fn unknown_keys_are_rejected_with_line_and_column() {
    let err = parse(&format!("{BASE}\n[[mapping]]\nname = \"x\"\nsorce = 1\n")).unwrap_err();
    assert!(
        err.starts_with("bridge.toml: TOML parse error at line 14, column 1"),
        "{err}"
    );
    assert!(err.contains("unknown field `sorce`"), "{err}");
}

#[test]
fn bad_source_shape_names_the_problem() {
    let err = parse(&format!(
        "{BASE}\n[[mapping]]\nname = \"x\"\nsource = {{ kafka = \"main\", queue = \"q\" }}\ntarget = {{ kafka = \"main\", topic = \"t\" }}\n"
    ))
    .unwrap_err();
    assert!(
        err.contains("a Kafka source takes `topics` or `topic_regex`, not `queue`, `prefetch`, `stream`, `consumer` or `offset`"),
        "{err}"
    );
    assert!(err.contains("line 14"), "{err}");
}

#[test]
fn references_are_checked_with_key_paths() {
    let err = parse(&format!(
        r#"{BASE}
[[mapping]]
name = "x"
source = {{ kafka = "nope", topics = ["a"] }}
target = {{ rabbitmq = "local", exchange = "e" }}
plugins = ["missing"]
"#
    ))
    .unwrap_err();
    assert_eq!(
        err,
        "bridge.toml: mapping `x`.source.kafka: no `[kafka.nope]` cluster is defined; mapping `x`.plugins: no `[plugins.missing]` is defined"
    );
}

#[test]
fn unset_env_var_is_named_without_leaking_values() {
    let err = parse(
        r#"
[rabbitmq.local]
url = "amqp://guest:${MISSING_PASSWORD}@127.0.0.1/%2f"
[kafka.main]
bootstrap_servers = "x:1"
[[mapping]]
name = "in"
source = { rabbitmq = "local", queue = "q" }
target = { kafka = "main", topic = "t" }
"#,
    )
    .unwrap_err();
    assert_eq!(
        err,
        "bridge.toml: `rabbitmq.local.url`: environment variable `MISSING_PASSWORD` is not set"
    );
}

#[test]
fn env_expansion_rules() {
    let env = |n: &str| (n == "A").then(|| "1".to_string());
    assert_eq!(
        env::expand("x${A}y$${A}$z", &env),
        Ok("x1y${A}$z".to_string())
    );
    assert_eq!(
        env::expand("${B}", &env),
        Err(env::UnsetVar("B".to_string()))
    );
}

#[test]
fn redacts_url_passwords() {
    assert_eq!(redact_url("amqp://u:p@h:5672/v"), "amqp://u:***@h:5672/v");
    assert_eq!(redact_url("amqp://h:5672"), "amqp://h:5672");
    // Encoded, as `${VAR}` substitution writes it.
    assert_eq!(
        redact_url("amqp://u:a%40b%2Fc%23d@h:5672/%2f"),
        "amqp://u:***@h:5672/%2f"
    );
    // Written unencoded in the file: nothing before the last `@` shows.
    for (url, redacted) in [
        ("amqp://u:a@b/c#d?e@h:5672/v", "amqp://***@h:5672/v"),
        ("amqp://u:p/w@h", "amqp://***@h"),
        ("amqp://u:12/w@h", "amqp://***@h"),
        ("amqp://u:a@b@h/v", "amqp://***@h/v"),
    ] {
        assert_eq!(redact_url(url), redacted);
    }
}

#[test]
fn a_value_substituted_into_url_userinfo_is_percent_encoded() {
    let env = |n: &str| match n {
        "PW" => Some("p@ss%w/rd#?:x".to_string()),
        "HOST" => Some("h".to_string()),
        _ => None,
    };
    assert_eq!(
        env::expand_url("amqp://user:${PW}@${HOST}:5672/%2f", &env),
        Ok("amqp://user:p%40ss%25w%2Frd%23%3F%3Ax@h:5672/%2f".to_string())
    );
    assert_eq!(
        env::expand_url("amqp://${HOST}:5672", &env),
        Ok("amqp://h:5672".to_string())
    );
    assert_eq!(
        env::expand_url("amqp://u:${NOPE}@h", &env),
        Err(env::UnsetVar("NOPE".to_string()))
    );
    let uri: lapin::uri::AMQPUri = env::expand_url("amqp://user:${PW}@${HOST}:5672/%2f", &env)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(uri.authority.userinfo.password, "p@ss%w/rd#?:x");
    // One variable for the whole userinfo: its first `:` separates user and password.
    let creds = |n: &str| (n == "CREDS").then(|| "us@r:p@ss:w%rd".to_string());
    let url = env::expand_url("amqp://${CREDS}@h/%2f", &creds).unwrap();
    assert_eq!(url, "amqp://us%40r:p%40ss%3Aw%25rd@h/%2f");
    let uri: lapin::uri::AMQPUri = url.parse().unwrap();
    assert_eq!(
        (
            uri.authority.userinfo.username.as_str(),
            uri.authority.userinfo.password.as_str()
        ),
        ("us@r", "p@ss:w%rd")
    );
    // Its own `:` first: every `:` a value brings is encoded.
    assert_eq!(
        env::expand_url("amqp://${CREDS}x:${CREDS}@h", &creds),
        Ok("amqp://us%40r%3Ap%40ss%3Aw%25rdx:us%40r%3Ap%40ss%3Aw%25rd@h".to_string())
    );
}

const OUT_MAPPING: &str = r#"
[[mapping]]
name = "out"
source = { kafka = "main", topics = ["events-order-damage"] }
target = { rabbitmq = "local", exchange = "events", routing_key = "order.damage" }
"#;

#[test]
fn declare_is_a_bool_or_a_table() {
    let off = parse(&format!("{BASE}{OUT_MAPPING}")).unwrap();
    assert_eq!(off.mapping[0].declare, None);
    let on = parse(&format!("{BASE}{OUT_MAPPING}declare = true\n")).unwrap();
    assert_eq!(on.mapping[0].declare, Some(Declare::default()));
    let table = parse(&format!(
        "{BASE}{OUT_MAPPING}declare = {{ partitions = 3, exchange_type = \"topic\", queue = \"q\" }}\n"
    ))
    .unwrap();
    let d = table.mapping[0].declare.clone().unwrap();
    assert_eq!(
        (
            d.partitions,
            d.replication_factor,
            d.exchange_type,
            d.durable,
            d.queue.as_deref()
        ),
        (3, 1, ExchangeType::Topic, true, Some("q"))
    );
    let err = parse(&format!(
        "{BASE}{OUT_MAPPING}declare = {{ partition = 3 }}\n"
    ))
    .unwrap_err();
    assert!(
        err.contains("partition") && err.contains("declare"),
        "{err}"
    );
    let err = parse(&format!("{BASE}{OUT_MAPPING}declare = \"yes\"\n")).unwrap_err();
    assert!(err.contains("`true`, `false` or a table"), "{err}");
    let err = parse(&format!(
        "{BASE}{OUT_MAPPING}declare = {{ partitions = 0 }}\n"
    ))
    .unwrap_err();
    assert!(err.contains("mapping `out`.declare.partitions"), "{err}");
}

#[test]
fn queue_types_and_arguments_are_checked_naming_the_key() {
    let ok = parse(&format!(
        "{BASE}{OUT_MAPPING}declare = {{ queue = \"q\", queue_type = \"quorum\", arguments = {{ \"x-delivery-limit\" = 5, \"x-dead-letter-exchange\" = \"dlx\" }} }}\n"
    ))
    .unwrap();
    let d = ok.mapping[0].declare.clone().unwrap();
    assert_eq!(d.queue_type, QueueType::Quorum);
    assert_eq!(
        d.arguments.get("x-delivery-limit"),
        Some(&QueueArgument::Integer(5))
    );
    let err = parse(&format!(
        "{BASE}{OUT_MAPPING}declare = {{ queue_type = \"stream\", durable = false, arguments = {{ \"x-max-length\" = \"many\", \"x-queue-type\" = \"quorum\", \"max-age\" = \"1D\", \"x-delivery-limit\" = 3 }} }}\n"
    ))
    .unwrap_err();
    for expected in [
        "mapping `out`.declare.durable: a stream queue is always durable",
        "mapping `out`.declare.arguments.\"x-max-length\": must be a number",
        "mapping `out`.declare.arguments.\"x-max-length\": does not apply to a stream queue",
        "mapping `out`.declare.arguments.\"x-queue-type\": set `queue_type` instead",
        "mapping `out`.declare.arguments.\"max-age\": unknown queue argument",
        "mapping `out`.declare.arguments.\"x-delivery-limit\": does not apply to a stream queue",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }
    let err = parse(&format!(
        "{BASE}{OUT_MAPPING}declare = {{ queue_type = \"lazy\" }}\n"
    ))
    .unwrap_err();
    assert!(err.contains("queue_type") || err.contains("lazy"), "{err}");
}

#[test]
fn rabbitmq_tls_needs_amqps_and_a_complete_client_certificate() {
    let with_tls = |url: &str, tls: &str| {
        parse(&format!(
            "[kafka.main]\nbootstrap_servers = \"k:9092\"\n[rabbitmq.local]\nurl = \"{url}\"\ntls = {tls}\n{OUT_MAPPING}"
        ))
    };
    with_tls(
        "amqps://u:p@h:5671/%2f",
        r#"{ ca_file = "ca.pem", cert_file = "c.pem", key_file = "c.key" }"#,
    )
    .unwrap();
    let err = with_tls("amqp://u:p@h:5672/%2f", r#"{ ca_file = "ca.pem" }"#).unwrap_err();
    assert!(
        err.contains("`rabbitmq.local.tls` needs an `amqps://` URL"),
        "{err}"
    );
    let err = with_tls("amqps://u:p@h:5671/%2f", r#"{ cert_file = "c.pem" }"#).unwrap_err();
    assert!(err.contains("both `cert_file` and `key_file`"), "{err}");
}

#[test]
fn amqp_names_longer_than_amqp_allows_are_rejected() {
    let long = "q".repeat(256);
    let err = parse(&format!(
        r#"{BASE}
[[mapping]]
name = "x"
source = {{ rabbitmq = "local", queue = "{long}" }}
target = {{ rabbitmq = "local", exchange = "{long}", routing_key = "{long}" }}
"#
    ))
    .unwrap_err();
    for key in ["source.queue", "target.exchange", "target.routing_key"] {
        assert!(
            err.contains(&format!(
                "mapping `x`.{key} is 256 bytes long; AMQP names are at most 255 bytes"
            )),
            "{err}"
        );
    }
}

#[test]
fn two_mappings_cannot_consume_one_topic_in_one_group() {
    let mapping = |name: &str, group: &str| {
        format!(
            "\n[[mapping]]\nname = \"{name}\"\nsource = {{ kafka = \"main\", topics = [\"orders\"]{group} }}\n\
             target = {{ rabbitmq = \"local\", exchange = \"e\" }}\n"
        )
    };
    let err = parse(&format!("{BASE}{}{}", mapping("a", ""), mapping("b", ""))).unwrap_err();
    assert!(
        err.contains("mapping `b`.source: `orders` is consumed by mapping `a` too, in the same group `bridge-host`"),
        "{err}"
    );
    // Another group is another consumer: both see every message.
    parse(&format!(
        "{BASE}{}{}",
        mapping("a", ""),
        mapping("b", ", group = \"audit\"")
    ))
    .unwrap();
}

#[test]
fn an_invalid_topic_regex_is_rejected_at_load() {
    let err = parse(&format!(
        "{BASE}\n[[mapping]]\nname = \"r\"\nsource = {{ kafka = \"main\", topic_regex = \"^orders-(\" }}\n\
         target = {{ rabbitmq = \"local\", exchange = \"e\" }}\n"
    ))
    .unwrap_err();
    assert!(
        err.contains("mapping `r`.source.topic_regex: \"^orders-(\" is not a valid regex"),
        "{err}"
    );
}

fn connection(url: &str, vhost: Option<&str>, heartbeat_secs: Option<u16>) -> RabbitConnection {
    RabbitConnection {
        url: url.to_string(),
        vhost: vhost.map(str::to_string),
        heartbeat_secs,
        tls: None,
        stream_port: 5552,
    }
}

#[test]
fn uri_overrides_keep_the_query_string() {
    let c = connection(
        "amqp://u:p@h:5673/old?frame_max=8192&connection_timeout=500",
        Some("new/vh"),
        Some(15),
    );
    let uri = c.uri().unwrap();
    assert_eq!(uri.vhost, "new/vh");
    assert_eq!(uri.query.heartbeat, Some(15));
    assert_eq!(uri.query.frame_max, Some(8192));
    assert_eq!(uri.query.connection_timeout, Some(500));
    assert_eq!(uri.authority.port, 5673);
}

#[test]
fn the_default_vhost_is_decoded() {
    assert_eq!(
        connection("amqp://h/%2f", None, None).uri().unwrap().vhost,
        "/"
    );
}

#[test]
fn a_bad_url_is_an_error() {
    assert!(connection("amqp://h:notaport/", None, None).uri().is_err());
}

#[test]
fn a_shutdown_timeout_over_an_hour_is_refused() {
    let mapping = r#"
[[mapping]]
name = "out"
source = { kafka = "main", topics = ["t"] }
target = { kafka = "main", topic = "u" }
"#;
    let error = parse(&format!(
        "[bridge]\nshutdown_timeout_secs = 18446744073709551615\n{BASE}{mapping}"
    ))
    .unwrap_err();
    assert!(
        error.contains("`bridge.shutdown_timeout_secs` = 18446744073709551615: at most 3600"),
        "{error}"
    );
    assert!(
        parse(&format!(
            "[bridge]\nshutdown_timeout_secs = 3600\n{BASE}{mapping}"
        ))
        .is_ok()
    );
}

#[test]
fn parse_errors_do_not_quote_secret_values() {
    let text = "[kafka.main]\nbootstrap_servers = \"k:9092\"\nsasl = { username = \"u\", password = 81726354 }\n";
    let err = BridgeConfig::parse(Path::new("bridge.toml"), text, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(!err.contains("81726354"), "{err}");
    assert!(
        err.contains("sasl = ***") || err.contains("sasl ="),
        "{err}"
    );
    let text = "[bridge]\nadmin_token = [\"s3cr3t-t0ken\"]\n";
    let err = BridgeConfig::parse(Path::new("bridge.toml"), text, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(!err.contains("s3cr3t-t0ken"), "{err}");
}

#[test]
fn parse_errors_do_not_quote_url_credentials() {
    let text = "[rabbitmq.local]\nurl = \"amqp://u:Zq9word\\q@h:5672\"\n";
    let err = BridgeConfig::parse(Path::new("bridge.toml"), text, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2"), "{err}");
    assert!(!err.contains("Zq9word"), "{err}");
}

#[test]
fn exactly_once_is_refused_where_one_kafka_transaction_cannot_hold_it() {
    let mapping = |name: &str, source: &str, target: &str, extra: &str| {
        format!(
            "\n[[mapping]]\nname = \"{name}\"\nsource = {source}\ntarget = {target}\n\
             delivery = \"exactly-once\"\n{extra}"
        )
    };
    let kafka = r#"{ kafka = "main", topics = ["orders"], group = "g1" }"#;
    let ok = mapping("k2k", kafka, r#"{ kafka = "main", topic = "copy" }"#, "");
    parse(&format!("{BASE}{ok}")).unwrap();
    let err = parse(&format!(
        "{BASE}[kafka.other]\nbootstrap_servers = \"127.0.0.1:9093\"\n{}{}{}",
        mapping(
            "to-rabbit",
            r#"{ kafka = "main", topics = ["a"], group = "g2" }"#,
            r#"{ rabbitmq = "local", exchange = "e" }"#,
            ""
        ),
        mapping(
            "from-rabbit",
            r#"{ rabbitmq = "local", queue = "q" }"#,
            r#"{ kafka = "main", topic = "t" }"#,
            ""
        ),
        mapping(
            "two-clusters",
            r#"{ kafka = "main", topics = ["b"], group = "g3" }"#,
            r#"{ kafka = "other", topic = "t" }"#,
            "dead_letter = { rabbitmq = \"local\", exchange = \"dl\" }\n"
        ),
    ))
    .unwrap_err();
    for expected in [
        "mapping `to-rabbit`.delivery = \"exactly-once\": the target is a RabbitMQ exchange, which cannot take part in a Kafka transaction (a RabbitMQ stream target, `stream = \"…\"`, deduplicates instead)",
        "mapping `from-rabbit`.delivery = \"exactly-once\": needs a Kafka source",
        "mapping `two-clusters`.delivery = \"exactly-once\": the target is on cluster `other` and the source on `main`",
        "mapping `two-clusters`.delivery = \"exactly-once\": the dead-letter target is a RabbitMQ exchange",
    ] {
        assert!(err.contains(expected), "{expected}\nin: {err}");
    }
    let shared = format!(
        "{BASE}{ok}\n[[mapping]]\nname = \"audit\"\nsource = {{ kafka = \"main\", topics = [\"x\"], group = \"g1\" }}\ntarget = {{ kafka = \"main\", topic = \"y\" }}\n"
    );
    let err = parse(&shared).unwrap_err();
    assert!(
        err.contains("consumer group `g1` is used by mapping `audit` too"),
        "{err}"
    );
    let deduplicated = format!("{BASE}{ok}dedup = {{ by = \"coordinates\" }}\n");
    let err = parse(&deduplicated).unwrap_err();
    assert!(
        err.contains(
            "mapping `k2k`.delivery = \"exactly-once\": `dedup` cannot be combined with it"
        ),
        "{err}"
    );
    let err = parse(&format!("{BASE}{}", ok.replace("exactly-once", "twice"))).unwrap_err();
    assert!(err.contains("unknown variant `twice`"), "{err}");
}

#[test]
fn a_stream_target_parses_and_takes_exactly_once() {
    let config = parse(&format!(
        "{BASE}[[mapping]]\nname = \"s\"\nsource = {{ kafka = \"main\", topics = [\"a\"] }}\n\
         target = {{ rabbitmq = \"local\", stream = \"events\" }}\ndelivery = \"exactly-once\"\n\
         dead_letter = {{ rabbitmq = \"local\", exchange = \"dl\" }}\n"
    ))
    .unwrap();
    assert_eq!(
        config.mapping[0].target,
        Target::Stream(StreamTarget {
            connection: "local".into(),
            stream: "events".into(),
        })
    );
    assert_eq!(config.rabbitmq["local"].stream_port, 5552);
    let err = parse(&format!(
        "{BASE}[[mapping]]\nname = \"s\"\nsource = {{ kafka = \"main\", topics = [\"a\"] }}\n\
         target = {{ rabbitmq = \"local\", stream = \"events\", exchange = \"e\" }}\n"
    ))
    .unwrap_err();
    assert!(
        err.contains("a RabbitMQ stream target takes `stream`, not `exchange`"),
        "{err}"
    );
    let err = parse(&format!(
        "{BASE}[[mapping]]\nname = \"s\"\nsource = {{ rabbitmq = \"local\", queue = \"q\" }}\n\
         target = {{ rabbitmq = \"local\", stream = \"events\" }}\ndelivery = \"exactly-once\"\n"
    ))
    .unwrap_err();
    assert!(
        err.contains("mapping `s`.delivery = \"exactly-once\": needs a Kafka source"),
        "{err}"
    );
}

#[test]
fn a_stream_source_parses_its_offset_forms() {
    let source = |extra: &str| {
        parse(&format!(
            "{BASE}[[mapping]]\nname = \"s\"\nsource = {{ rabbitmq = \"local\", stream = \"events\"{extra} }}\n\
             target = {{ kafka = \"main\", topic = \"t\" }}\n"
        ))
        .map(|c| c.mapping[0].source.clone())
    };
    assert_eq!(
        source("").unwrap(),
        Source::Stream(StreamSource {
            connection: "local".into(),
            stream: "events".into(),
            consumer: None,
            offset: StreamOffset::First,
        })
    );
    let Source::Stream(s) = source(", consumer = \"c\", offset = \"next\"").unwrap() else {
        panic!("a stream source");
    };
    assert_eq!(
        (s.consumer.as_deref(), s.offset),
        (Some("c"), StreamOffset::Next)
    );
    let Source::Stream(s) = source(", offset = \"2026-12-01T00:00:00Z\"").unwrap() else {
        panic!("a stream source");
    };
    assert_eq!(s.offset, StreamOffset::Timestamp(1_796_083_200_000));
    let err = source(", offset = \"yesterday\"").unwrap_err();
    assert!(
        err.contains(
            "`offset` is \"yesterday\"; expected \"first\", \"last\", \"next\" or an RFC 3339 time"
        ),
        "{err}"
    );
    let err = source(", queue = \"q\"").unwrap_err();
    assert!(err.contains("a RabbitMQ stream source takes `stream`, `consumer` and `offset`, not `queue` or `prefetch`"), "{err}");
}
