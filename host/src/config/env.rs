//! `${ENV_VAR}` substitution in broker settings, after parsing.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::BridgeConfig;

/// What a value substituted into a URL's userinfo keeps unencoded: RFC 3986's unreserved.
pub const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A `${NAME}` whose variable is not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable `{0}` is not set")]
pub struct UnsetVar(pub String);

/// Replaces `${NAME}` in every broker setting; returns one problem per unset variable.
pub(super) fn substitute(
    config: &mut BridgeConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut apply = |path: String, value: &mut String| match expand(value, env) {
        Ok(v) => *value = v,
        Err(unset) => problems.push(format!("`{path}`: {unset}")),
    };
    for (name, cluster) in &mut config.kafka {
        apply(
            format!("kafka.{name}.bootstrap_servers"),
            &mut cluster.bootstrap_servers,
        );
        for (key, value) in &mut cluster.properties {
            apply(format!("kafka.{name}.properties.\"{key}\""), value);
        }
        if let Some(sasl) = &mut cluster.sasl {
            apply(format!("kafka.{name}.sasl.username"), &mut sasl.username);
            apply(format!("kafka.{name}.sasl.password"), &mut sasl.password);
        }
    }
    if let Some(token) = &mut config.bridge.admin_token {
        apply("bridge.admin_token".to_string(), token);
    }
    for (name, conn) in &mut config.rabbitmq {
        match expand_url(&conn.url, env) {
            Ok(v) => conn.url = v,
            Err(unset) => problems.push(format!("`rabbitmq.{name}.url`: {unset}")),
        }
        let mut apply = |path: String, value: &mut String| match expand(value, env) {
            Ok(v) => *value = v,
            Err(unset) => problems.push(format!("`{path}`: {unset}")),
        };
        if let Some(vhost) = &mut conn.vhost {
            apply(format!("rabbitmq.{name}.vhost"), vhost);
        }
    }
    problems
}

/// [`expand`] for a URL: a value substituted into its userinfo (`user:password@`) is
/// percent-encoded, so a password with `@ % / # ? :` in it means what it says. When the
/// userinfo has no `:` of its own (`${CREDS}@host`), the first `:` a value brings separates
/// the user from the password and stays as it is.
pub(super) fn expand_url(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, UnsetVar> {
    let Some(scheme) = text.find("://") else {
        return expand(text, env);
    };
    let start = scheme + 3;
    let end = text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| start + i);
    let Some(at) = text[start..end].rfind('@') else {
        return expand(text, env);
    };
    let userinfo = &text[start..start + at];
    let separated = std::cell::Cell::new(has_own_colon(userinfo));
    let encoded = |name: &str| {
        let value = env(name)?;
        match value.split_once(':') {
            Some((user, password)) if !separated.replace(true) => Some(format!(
                "{}:{}",
                utf8_percent_encode(user, USERINFO),
                utf8_percent_encode(password, USERINFO)
            )),
            _ => Some(utf8_percent_encode(&value, USERINFO).to_string()),
        }
    };
    Ok(format!(
        "{}{}{}",
        expand(&text[..start], env)?,
        expand(&text[start..start + at], &encoded)?,
        expand(&text[start + at..], env)?
    ))
}

/// Whether `text` has a `:` outside its `${NAME}` placeholders.
fn has_own_colon(text: &str) -> bool {
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        if rest[..i].contains(':') {
            return true;
        }
        rest = rest[i..].find('}').map_or("", |j| &rest[i + j + 1..]);
    }
    rest.contains(':')
}

/// Expands `${NAME}`; `$${` is a literal `${`. Fails on the first unset name.
pub(super) fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, UnsetVar> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some(end) = tail.find('}') else {
                out.push_str(after);
                return Ok(out);
            };
            let name = &tail[..end];
            out.push_str(&env(name).ok_or_else(|| UnsetVar(name.to_string()))?);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}
