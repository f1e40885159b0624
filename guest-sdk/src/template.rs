//! Templates over message data, used by the built-in plugins and available to any plugin.
//!
//! A template is text with placeholders in braces; `{{` and `}}` are literal braces.
//!
//! | placeholder | value |
//! |---|---|
//! | `{key}` | the message key (UTF-8) |
//! | `{header:NAME}` | the first header `NAME` (UTF-8) |
//! | `{json:PATH}` | a field of the JSON payload: `{json:customer.id}`, `{json:items.0.sku}` |
//! | `{topic}` `{partition}` `{offset}` `{cluster}` | Kafka origin |
//! | `{queue}` `{exchange}` `{routing_key}` `{connection}` | RabbitMQ origin |
//! | `{source}` | the source topic or queue |
//! | `{timestamp}` | milliseconds since the Unix epoch |
//!
//! `{SOURCE|DEFAULT}` uses `DEFAULT` when the value is missing: `order.{json:type}.{header:region|eu}`.
//! `{SOURCE|}` means "empty when missing". A missing value without a default is an error,
//! which the built-in plugins turn into a dead letter.

use crate::{Message, Origin};

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    needs_json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field {
        source: Source,
        default: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Key,
    Header(String),
    Json(String),
    Topic,
    Partition,
    Offset,
    Cluster,
    Queue,
    Exchange,
    RoutingKey,
    Connection,
    TopicOrQueue,
    Timestamp,
}

impl Source {
    fn parse(text: &str) -> Result<Source, String> {
        let (kind, arg) = match text.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (text, None),
        };
        let plain = |s: Source| match arg {
            None => Ok(s),
            Some(_) => Err(format!("placeholder `{{{kind}}}` takes no `:` argument")),
        };
        let named = |f: fn(String) -> Source| match arg {
            Some(a) if !a.is_empty() => Ok(f(a.to_string())),
            _ => Err(format!("placeholder `{{{kind}:…}}` needs a name after `:`")),
        };
        match kind {
            "key" => plain(Source::Key),
            "header" => named(Source::Header),
            "json" => named(Source::Json),
            "topic" => plain(Source::Topic),
            "partition" => plain(Source::Partition),
            "offset" => plain(Source::Offset),
            "cluster" => plain(Source::Cluster),
            "queue" => plain(Source::Queue),
            "exchange" => plain(Source::Exchange),
            "routing_key" => plain(Source::RoutingKey),
            "connection" => plain(Source::Connection),
            "source" => plain(Source::TopicOrQueue),
            "timestamp" => plain(Source::Timestamp),
            other => Err(format!(
                "unknown placeholder `{{{other}}}` (expected key, header:NAME, json:PATH, topic, partition, offset, cluster, queue, exchange, routing_key, connection, source or timestamp)"
            )),
        }
    }

    fn describe(&self) -> String {
        match self {
            Source::Header(n) => format!("header `{n}`"),
            Source::Json(p) => format!("JSON field `{p}`"),
            other => format!("`{}`", format!("{other:?}").to_lowercase()),
        }
    }
}

impl Template {
    /// Parses a template, or explains what is wrong with it.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(format!("unmatched `}}` at byte {i} in template {text:?}")),
                '{' => {
                    let rest = &text[i + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(format!("unclosed `{{` at byte {i} in template {text:?}"));
                    };
                    let inner = &rest[..end];
                    for _ in 0..inner.chars().count() + 1 {
                        chars.next();
                    }
                    let (source, default) = match inner.split_once('|') {
                        Some((s, d)) => (s, Some(d.to_string())),
                        None => (inner, None),
                    };
                    let source = Source::parse(source.trim())
                        .map_err(|e| format!("{e} in template {text:?}"))?;
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field { source, default });
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        let needs_json = parts.iter().any(|p| {
            matches!(
                p,
                Part::Field {
                    source: Source::Json(_),
                    ..
                }
            )
        });
        Ok(Template { parts, needs_json })
    }

    /// Whether the template reads the payload.
    pub fn reads_payload(&self) -> bool {
        self.needs_json
    }

    /// Renders the template for `msg`, or names the first missing value without a default.
    pub fn render(&self, msg: &Message) -> Result<String, String> {
        let json = if self.needs_json {
            payload_json(msg)
        } else {
            None
        };
        let origin = if self
            .parts
            .iter()
            .any(|p| matches!(p, Part::Field { source, .. } if source.is_origin()))
        {
            Some(msg.origin())
        } else {
            None
        };
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field { source, default } => {
                    match source
                        .value(msg, origin.as_ref(), json.as_ref())
                        .or_else(|| default.clone())
                    {
                        Some(v) => out.push_str(&v),
                        None => return Err(format!("{} is missing", source.describe())),
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Source {
    fn is_origin(&self) -> bool {
        !matches!(
            self,
            Source::Key | Source::Header(_) | Source::Json(_) | Source::Timestamp
        )
    }

    fn value(
        &self,
        msg: &Message,
        origin: Option<&Origin>,
        json: Option<&JsonValue>,
    ) -> Option<String> {
        let kafka = match origin {
            Some(Origin::Kafka(k)) => Some(k),
            _ => None,
        };
        let amqp = match origin {
            Some(Origin::Amqp(a)) => Some(a),
            _ => None,
        };
        match self {
            Source::Key => msg.key().and_then(|k| String::from_utf8(k).ok()),
            Source::Header(n) => msg.header_str(n),
            Source::Json(path) => json_field(json?, path),
            Source::Topic => kafka.map(|k| k.topic.clone()),
            Source::Partition => kafka.map(|k| k.partition.to_string()),
            Source::Offset => kafka.map(|k| k.offset.to_string()),
            Source::Cluster => kafka.map(|k| k.cluster.clone()),
            Source::Queue => amqp.map(|a| a.queue.clone()),
            Source::Exchange => amqp.map(|a| a.exchange.clone()),
            Source::RoutingKey => amqp.map(|a| a.routing_key.clone()),
            Source::Connection => amqp.map(|a| a.connection.clone()),
            Source::TopicOrQueue => kafka
                .map(|k| k.topic.clone())
                .or_else(|| amqp.map(|a| a.queue.clone())),
            Source::Timestamp => msg.timestamp().map(|t| t.to_string()),
        }
        .filter(|v| !v.is_empty())
    }
}

#[cfg(feature = "json")]
type JsonValue = serde_json::Value;
#[cfg(not(feature = "json"))]
type JsonValue = ();

#[cfg(feature = "json")]
fn payload_json(msg: &Message) -> Option<JsonValue> {
    msg.json()
}

#[cfg(feature = "json")]
fn json_field(json: &JsonValue, path: &str) -> Option<String> {
    crate::json::json_path(json, path).and_then(crate::json::json_text)
}

#[cfg(not(feature = "json"))]
fn payload_json(_: &Message) -> Option<JsonValue> {
    None
}

#[cfg(not(feature = "json"))]
fn json_field(_: &JsonValue, _: &str) -> Option<String> {
    None
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::Template;
    use crate::{KafkaOrigin, Message, Origin};

    fn msg() -> Message {
        let mut m = Message::new();
        m.set_payload(Some(br#"{"type":"damage","n":3}"#));
        m.set_header("region", "us");
        m.set_key(Some(b"k1"));
        m.set_origin(Origin::Kafka(KafkaOrigin {
            cluster: "main".into(),
            topic: "orders".into(),
            partition: 2,
            offset: 41,
        }));
        m
    }

    #[test]
    fn renders_sources_and_defaults() {
        let t = Template::parse("order.{json:type}.{header:region|eu}.{header:zone|eu}").unwrap();
        assert_eq!(t.render(&msg()).unwrap(), "order.damage.us.eu");
        let t = Template::parse("{topic}/{partition}/{offset}/{key}/{source}/{{x}}").unwrap();
        assert_eq!(t.render(&msg()).unwrap(), "orders/2/41/k1/orders/{x}");
        assert!(!t.reads_payload());
    }

    #[test]
    fn missing_value_and_bad_templates() {
        let t = Template::parse("a.{header:nope}").unwrap();
        assert_eq!(
            t.render(&msg()),
            Err("header `nope` is missing".to_string())
        );
        assert_eq!(
            Template::parse("a.{header:x|}")
                .unwrap()
                .render(&msg())
                .unwrap(),
            "a."
        );
        assert!(
            Template::parse("{nope}")
                .unwrap_err()
                .starts_with("unknown placeholder `{nope}`")
        );
        assert!(
            Template::parse("{header}")
                .unwrap_err()
                .contains("needs a name")
        );
        assert!(Template::parse("a{").unwrap_err().starts_with("unclosed"));
        assert!(Template::parse("a}").unwrap_err().starts_with("unmatched"));
    }
}
