//! JSON payload field access.

use crate::Message;

pub use serde_json::Value;

impl Message {
    /// The payload parsed as JSON (`None` if absent or not JSON).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.payload()?).ok()
    }

    /// A field of the JSON payload by dotted path: `customer.address.city`, `items.0.sku`.
    pub fn json_field(&self, path: &str) -> Option<Value> {
        json_path(&self.json()?, path).cloned()
    }
}

/// Looks up a dotted path (object keys and array indices) in a JSON value.
pub fn json_path<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.')
        .filter(|p| !p.is_empty())
        .try_fold(value, |v, part| match v {
            Value::Object(map) => map.get(part),
            Value::Array(items) => items.get(part.parse::<usize>().ok()?),
            _ => None,
        })
}

/// A JSON scalar as text: strings without quotes, numbers and booleans as written; `None` for
/// null, objects and arrays.
pub fn json_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let v: Value = serde_json::json!({"a": {"b": [1, {"c": "x"}]}, "t": true});
        assert_eq!(
            json_path(&v, "a.b.1.c").and_then(json_text).as_deref(),
            Some("x")
        );
        assert_eq!(
            json_path(&v, "a.b.0").and_then(json_text).as_deref(),
            Some("1")
        );
        assert_eq!(
            json_path(&v, "t").and_then(json_text).as_deref(),
            Some("true")
        );
        assert!(json_path(&v, "a.zz").is_none());
    }
}
