//! `header-map`: rename, copy, drop and set headers, and keep or drop them by glob.
//!
//! Steps run in this order: `keep`, `drop`, `rename`, `copy`, `set`. See the README for the
//! configuration.

use bridge_guest_sdk::template::Template;
use bridge_guest_sdk::{Config, Message, Transform, Verdict};
use wildmatch::WildMatch;

/// The configured header mapping.
#[derive(Debug)]
pub struct HeaderMap {
    keep: Vec<WildMatch>,
    drop: Vec<WildMatch>,
    rename: Vec<(String, String)>,
    copy: Vec<(String, String)>,
    set: Vec<(String, Template)>,
    missing: Missing,
}

/// What to do when a `set` template has a missing value and no default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// Leave the header unset.
    Skip,
    /// Dead-letter the message.
    DeadLetter,
}

impl Transform for HeaderMap {
    fn init(config: Config) -> Result<Self, String> {
        config.deny_unknown(&["keep", "drop", "rename", "copy", "set", "on_missing"])?;
        let globs = |key: &str| config.list(key).into_iter().map(WildMatch::new).collect();
        let pairs = |key: &str| {
            config
                .table(key)
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        let set = config
            .table("set")
            .into_iter()
            .map(|(name, t)| {
                Template::parse(t)
                    .map(|t| (name.to_string(), t))
                    .map_err(|e| format!("setting `set.{name}`: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let missing = match config.get("on_missing").unwrap_or("skip") {
            "skip" => Missing::Skip,
            "dead-letter" => Missing::DeadLetter,
            other => {
                return Err(format!(
                    "setting `on_missing` = {other:?} is invalid: expected \"skip\" or \"dead-letter\""
                ));
            }
        };
        Ok(HeaderMap {
            keep: globs("keep"),
            drop: globs("drop"),
            rename: pairs("rename"),
            copy: pairs("copy"),
            set,
            missing,
        })
    }

    fn process(&mut self, msg: &mut Message) -> Verdict {
        if !self.keep.is_empty() || !self.drop.is_empty() {
            for name in msg.header_names() {
                let kept = self.keep.is_empty() || self.keep.iter().any(|g| g.matches(&name));
                let dropped = self.drop.iter().any(|g| g.matches(&name));
                if !kept || dropped {
                    msg.remove_header(&name);
                }
            }
        }
        for (from, to) in &self.rename {
            let values = msg.header_all(from);
            if values.is_empty() {
                continue;
            }
            msg.remove_header(from);
            msg.remove_header(to);
            for v in values {
                msg.add_header(to, v);
            }
        }
        for (from, to) in &self.copy {
            if let Some(v) = msg.header(from) {
                msg.set_header(to, v);
            }
        }
        for (name, template) in &self.set {
            match template.render(msg) {
                Ok(v) => msg.set_header(name, v),
                Err(e) if self.missing == Missing::DeadLetter => {
                    return Verdict::DeadLetter(format!("header-map: cannot set `{name}`: {e}"));
                }
                Err(_) => {}
            }
        }
        Verdict::Forward
    }
}

bridge_guest_sdk::export_transform!(HeaderMap);

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pairs: &[(&str, &str)], headers: &[(&str, &str)]) -> (Verdict, Vec<(String, String)>) {
        let mut plugin = HeaderMap::init(Config::from_pairs(pairs)).unwrap();
        let mut msg = Message::new();
        for (n, v) in headers {
            msg.add_header(n, v);
        }
        let verdict = plugin.process(&mut msg);
        let headers = msg
            .headers()
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8(v).unwrap()))
            .collect();
        (verdict, headers)
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn keep_drop_rename_copy_set() {
        let (verdict, headers) = run(
            &[
                ("keep.0", "kafka_*"),
                ("keep.1", "x-*"),
                ("drop", "x-secret"),
                ("rename.kafka_key", "message_key"),
                ("copy.kafka_topic", "x-topic"),
                ("set.x-route", "{header:kafka_topic}.{header:region|eu}"),
            ],
            &[
                ("kafka_topic", "orders"),
                ("kafka_key", "k"),
                ("x-secret", "s"),
                ("other", "o"),
            ],
        );
        assert!(matches!(verdict, Verdict::Forward));
        assert_eq!(
            headers,
            h(&[
                ("kafka_topic", "orders"),
                ("message_key", "k"),
                ("x-topic", "orders"),
                ("x-route", "orders.eu")
            ])
        );
    }

    #[test]
    fn rename_keeps_every_value_in_order() {
        let (_, headers) = run(&[("rename.a", "b")], &[("a", "1"), ("c", "x"), ("a", "2")]);
        assert_eq!(headers, h(&[("c", "x"), ("b", "1"), ("b", "2")]));
    }

    #[test]
    fn missing_values() {
        let (verdict, headers) = run(&[("set.x", "{header:nope}")], &[]);
        assert!(matches!(verdict, Verdict::Forward));
        assert!(headers.is_empty());
        let (verdict, _) = run(
            &[("set.x", "{header:nope}"), ("on_missing", "dead-letter")],
            &[],
        );
        assert!(
            matches!(verdict, Verdict::DeadLetter(r) if r == "header-map: cannot set `x`: header `nope` is missing")
        );
    }

    #[test]
    fn bad_config_is_rejected() {
        let err = HeaderMap::init(Config::from_pairs(&[("renam.a", "b")])).unwrap_err();
        assert!(err.starts_with("unknown setting `renam.a`"), "{err}");
        let err = HeaderMap::init(Config::from_pairs(&[("set.a", "{bogus}")])).unwrap_err();
        assert!(
            err.starts_with("setting `set.a`: unknown placeholder `{bogus}`"),
            "{err}"
        );
    }
}
