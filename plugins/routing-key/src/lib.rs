//! `routing-key`: derive where a message goes from a template over its headers, key, origin
//! and JSON payload. See the README for the configuration and `bridge_guest_sdk::template` for
//! the template syntax.

use bridge_guest_sdk::template::Template;
use bridge_guest_sdk::{AmqpTarget, Config, KafkaTarget, Message, Transform, Verdict};

/// The configured derivations; each is optional.
#[derive(Debug)]
pub struct RoutingKey {
    routing_key: Option<Template>,
    exchange: Option<Template>,
    topic: Option<Template>,
    key: Option<Template>,
    on_missing: OnMissing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnMissing {
    DeadLetter,
    Keep,
}

impl Transform for RoutingKey {
    fn init(config: Config) -> Result<Self, String> {
        config.deny_unknown(&["routing_key", "exchange", "topic", "key", "on_missing"])?;
        let template = |name: &str| {
            config
                .get(name)
                .map(|t| Template::parse(t).map_err(|e| format!("setting `{name}`: {e}")))
                .transpose()
        };
        let plugin = RoutingKey {
            routing_key: template("routing_key")?,
            exchange: template("exchange")?,
            topic: template("topic")?,
            key: template("key")?,
            on_missing: match config.get("on_missing").unwrap_or("dead-letter") {
                "dead-letter" => OnMissing::DeadLetter,
                "keep" => OnMissing::Keep,
                other => {
                    return Err(format!(
                        "setting `on_missing` = {other:?} is invalid: expected \"dead-letter\" or \"keep\""
                    ));
                }
            },
        };
        if plugin.routing_key.is_none()
            && plugin.exchange.is_none()
            && plugin.topic.is_none()
            && plugin.key.is_none()
        {
            return Err(
                "set at least one of `routing_key`, `exchange`, `topic` or `key`".to_string(),
            );
        }
        Ok(plugin)
    }

    fn process(&mut self, msg: &mut Message) -> Verdict {
        let derived = (|| {
            Ok::<_, String>((
                self.derive("routing_key", &self.routing_key, msg)?,
                self.derive("exchange", &self.exchange, msg)?,
                self.derive("topic", &self.topic, msg)?,
                self.derive("key", &self.key, msg)?,
            ))
        })();
        let (routing_key, exchange, topic, key) = match derived {
            Ok(values) => values,
            Err(reason) => return Verdict::DeadLetter(reason),
        };
        if routing_key.is_some() || exchange.is_some() {
            let current = msg.amqp_target();
            msg.set_amqp_target(&AmqpTarget {
                exchange: exchange.or(current.exchange),
                routing_key: routing_key.or(current.routing_key),
            });
        }
        if let Some(topic) = topic {
            let current = msg.kafka_target();
            msg.set_kafka_target(&KafkaTarget {
                topic: Some(topic),
                partition: current.partition,
            });
        }
        if let Some(key) = key {
            msg.set_key(Some(key.as_bytes()));
        }
        Verdict::Forward
    }
}

impl RoutingKey {
    /// Renders one template; a missing value is an error only with `on_missing = "dead-letter"`.
    fn derive(
        &self,
        name: &str,
        template: &Option<Template>,
        msg: &Message,
    ) -> Result<Option<String>, String> {
        let Some(template) = template else {
            return Ok(None);
        };
        match template.render(msg) {
            Ok(v) => Ok(Some(v)),
            Err(e) if self.on_missing == OnMissing::DeadLetter => {
                Err(format!("routing-key: cannot derive `{name}`: {e}"))
            }
            Err(_) => Ok(None),
        }
    }
}

bridge_guest_sdk::export_transform!(RoutingKey);

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_guest_sdk::{KafkaOrigin, Origin};

    fn msg() -> Message {
        let mut m = Message::new();
        m.set_payload(Some(br#"{"type":"damage","customer":{"id":42}}"#));
        m.set_header("region", "us");
        m.set_origin(Origin::Kafka(KafkaOrigin {
            cluster: "main".into(),
            topic: "events-order-damage".into(),
            partition: 0,
            offset: 1,
        }));
        m
    }

    #[test]
    fn derives_routing_key_topic_and_key() {
        let mut p = RoutingKey::init(Config::from_pairs(&[
            ("routing_key", "order.{json:type}.{header:zone|eu}"),
            ("topic", "copy-{topic}"),
            ("key", "{json:customer.id}"),
        ]))
        .unwrap();
        let mut m = msg();
        assert!(matches!(p.process(&mut m), Verdict::Forward));
        assert_eq!(
            m.amqp_target().routing_key.as_deref(),
            Some("order.damage.eu")
        );
        assert_eq!(m.amqp_target().exchange, None);
        assert_eq!(
            m.kafka_target().topic.as_deref(),
            Some("copy-events-order-damage")
        );
        assert_eq!(m.key(), Some(b"42".to_vec()));
    }

    #[test]
    fn missing_value_dead_letters_or_keeps() {
        let mut p =
            RoutingKey::init(Config::from_pairs(&[("routing_key", "x.{json:nope}")])).unwrap();
        match p.process(&mut msg()) {
            Verdict::DeadLetter(r) => assert_eq!(
                r,
                "routing-key: cannot derive `routing_key`: JSON field `nope` is missing"
            ),
            v => panic!("unexpected {v:?}"),
        }
        let mut p = RoutingKey::init(Config::from_pairs(&[
            ("routing_key", "x.{json:nope}"),
            ("on_missing", "keep"),
        ]))
        .unwrap();
        let mut m = msg();
        assert!(matches!(p.process(&mut m), Verdict::Forward));
        assert_eq!(m.amqp_target().routing_key, None);
    }

    #[test]
    fn config_errors() {
        assert_eq!(
            RoutingKey::init(Config::default()).unwrap_err(),
            "set at least one of `routing_key`, `exchange`, `topic` or `key`"
        );
        assert!(
            RoutingKey::init(Config::from_pairs(&[("routing_key", "{")]))
                .unwrap_err()
                .starts_with("setting `routing_key`: unclosed")
        );
    }
}
