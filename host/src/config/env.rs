//! `${ENV_VAR}` substitution in broker settings, after parsing.

use super::BridgeConfig;

/// Replaces `${NAME}` in every broker setting; returns one problem per unset variable.
pub(super) fn substitute(
    config: &mut BridgeConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut apply = |path: String, value: &mut String| match expand(value, env) {
        Ok(v) => *value = v,
        Err(name) => problems.push(format!(
            "`{path}`: environment variable `{name}` is not set"
        )),
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
        apply(format!("rabbitmq.{name}.url"), &mut conn.url);
        if let Some(vhost) = &mut conn.vhost {
            apply(format!("rabbitmq.{name}.vhost"), vhost);
        }
    }
    problems
}

/// Expands `${NAME}`; `$${` is a literal `${`. Returns the first unset name on failure.
pub(super) fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
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
            out.push_str(&env(name).ok_or_else(|| name.to_string())?);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}
