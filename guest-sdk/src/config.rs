//! Plugin configuration: the plugin's `config` table from `bridge.toml` as ordered key/value
//! strings. Nested tables arrive flattened with dots (`rename.a = "b"` is `("rename.a", "b")`)
//! and arrays with indices (`keep = ["x", "y"]` is `("keep.0", "x"), ("keep.1", "y")`).

use std::str::FromStr;

/// A plugin's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// A configuration from ordered entries.
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }

    /// Builds one from pairs, for tests: `Config::from_pairs(&[("value", "x")])`.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Config::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// Every entry, in order.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an error naming it.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("missing required setting `{key}`"))
    }

    /// The value of `key` parsed as `T`, `default` when absent, or an error naming the key.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|e| format!("setting `{key}` = {v:?} is invalid: {e}")),
        }
    }

    /// A list: `key` itself (comma-separated) or `key.0`, `key.1`, … in order.
    pub fn list(&self, key: &str) -> Vec<&str> {
        if let Some(v) = self.get(key) {
            return v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
        }
        let prefix = format!("{key}.");
        let mut items: Vec<(usize, &str)> = self
            .entries
            .iter()
            .filter_map(|(k, v)| {
                let index = k.strip_prefix(&prefix)?.parse().ok()?;
                Some((index, v.as_str()))
            })
            .collect();
        items.sort_by_key(|(i, _)| *i);
        items.into_iter().map(|(_, v)| v).collect()
    }

    /// The entries of a table: `prefix.NAME = value` as `(NAME, value)`, in order.
    pub fn table(&self, prefix: &str) -> Vec<(&str, &str)> {
        let prefix = format!("{prefix}.");
        self.entries
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?, v.as_str())))
            .collect()
    }

    /// Rejects keys that are not in `allowed` (a key `a.b` is allowed by `a`).
    pub fn deny_unknown(&self, allowed: &[&str]) -> Result<(), String> {
        for (key, _) in &self.entries {
            let top = key.split('.').next().unwrap_or(key);
            if !allowed.contains(&top) {
                return Err(format!(
                    "unknown setting `{key}` (expected one of: {})",
                    allowed
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    #[test]
    fn lists_tables_and_errors() {
        let c = Config::from_pairs(&[
            ("keep.1", "b"),
            ("keep.0", "a"),
            ("rename.x", "y"),
            ("n", "5"),
        ]);
        assert_eq!(c.list("keep"), vec!["a", "b"]);
        assert_eq!(c.table("rename"), vec![("x", "y")]);
        assert_eq!(c.parse_or("n", 1u32), Ok(5));
        assert_eq!(c.parse_or("m", 1u32), Ok(1));
        assert_eq!(
            Config::from_pairs(&[("n", "x")]).parse_or("n", 1u32),
            Err("setting `n` = \"x\" is invalid: invalid digit found in string".to_string())
        );
        assert_eq!(
            c.deny_unknown(&["keep", "rename"]),
            Err("unknown setting `n` (expected one of: `keep`, `rename`)".to_string())
        );
        assert_eq!(
            Config::from_pairs(&[("drop", "a, b")]).list("drop"),
            vec!["a", "b"]
        );
    }
}
