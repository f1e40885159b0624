//! `pii-mask`, in Rust: the example plugin every supported language implements the same way.
//!
//! - masks the JSON payload's members named in `fields` (at any depth) as `"***"`;
//! - derives the route — the RabbitMQ routing key and the Kafka topic — from the payload's
//!   top-level `route_field`, else the header `route_header`, else `default_route`;
//! - dead-letters a payload that is not a JSON object, with a reason.

use bridge_guest_sdk::json::Value;
use bridge_guest_sdk::{AmqpTarget, Config, KafkaTarget, Message, Transform, Verdict};

/// What a masked value becomes.
pub const MASK: &str = "***";

/// The configured plugin.
#[derive(Debug)]
pub struct PiiMask {
    fields: Vec<String>,
    route_field: Option<String>,
    route_header: Option<String>,
    default_route: Option<String>,
}

impl Transform for PiiMask {
    fn init(config: Config) -> Result<Self, String> {
        config.deny_unknown(&["fields", "route_field", "route_header", "default_route"])?;
        let fields: Vec<String> = config
            .list("fields")
            .into_iter()
            .map(String::from)
            .collect();
        if fields.is_empty() {
            return Err("setting `fields` is required: the JSON fields to mask".to_string());
        }
        let text = |key: &str| config.get(key).map(String::from);
        Ok(PiiMask {
            fields,
            route_field: text("route_field"),
            route_header: text("route_header"),
            default_route: text("default_route"),
        })
    }

    fn process(&mut self, msg: &mut Message) -> Verdict {
        let payload = msg.payload().unwrap_or_default();
        let mut doc = match serde_json::from_slice::<Value>(&payload) {
            Ok(doc @ Value::Object(_)) => doc,
            Ok(_) => return Verdict::DeadLetter("payload is not JSON: not an object".to_string()),
            Err(e) => return Verdict::DeadLetter(format!("payload is not JSON: {e}")),
        };
        let route = self.route(&doc, msg);
        self.mask(&mut doc);
        msg.set_payload(Some(doc.to_string().as_bytes()));
        if let Some(route) = route {
            msg.set_amqp_target(&AmqpTarget {
                exchange: None,
                routing_key: Some(route.clone()),
            });
            msg.set_kafka_target(&KafkaTarget {
                topic: Some(route),
                partition: None,
            });
        }
        Verdict::Forward
    }
}

impl PiiMask {
    /// The route: the field (a string or a number), else the header, else the default.
    fn route(&self, doc: &Value, msg: &Message) -> Option<String> {
        let from_field = self.route_field.as_ref().and_then(|f| match doc.get(f)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        from_field
            .or_else(|| {
                let h = msg.header_str(self.route_header.as_ref()?)?;
                (!h.is_empty()).then_some(h)
            })
            .or_else(|| self.default_route.clone())
    }

    fn mask(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if self.fields.iter().any(|f| f == k) {
                        *v = Value::String(MASK.to_string());
                    } else {
                        self.mask(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.mask(v)),
            _ => {}
        }
    }
}

bridge_guest_sdk::export_transform!(PiiMask);

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin() -> PiiMask {
        PiiMask::init(Config::from_pairs(&[
            ("fields", "email,card"),
            ("route_field", "region"),
            ("route_header", "x-region"),
            ("default_route", "unrouted"),
        ]))
        .unwrap()
    }

    #[test]
    fn masks_nested_fields_and_routes_by_field() {
        let mut msg = Message::new();
        msg.set_payload(Some(
            br#"{"region":"eu","user":{"email":"a@b.c","name":"Al"},"card":"4111"}"#,
        ));
        assert!(matches!(plugin().process(&mut msg), Verdict::Forward));
        let doc: Value = serde_json::from_slice(&msg.payload().unwrap()).unwrap();
        assert_eq!(doc["user"]["email"], MASK);
        assert_eq!(doc["user"]["name"], "Al");
        assert_eq!(doc["card"], MASK);
        assert_eq!(msg.amqp_target().routing_key.as_deref(), Some("eu"));
    }

    #[test]
    fn not_json_is_dead_lettered() {
        let mut msg = Message::new();
        msg.set_payload(Some(b"hello"));
        match plugin().process(&mut msg) {
            Verdict::DeadLetter(reason) => assert!(reason.contains("not JSON")),
            other => panic!("{other:?}"),
        }
    }
}
