//! Keeping secrets out of what the bridge shows: URLs in logs, `/status` and errors, and the
//! excerpts of a configuration file that parse errors quote.

/// Key names whose values are secrets.
const SECRET_KEYS: [&str; 4] = ["password", "secret", "token", "sasl"];

/// A URL with its password replaced by `***`, for logs, `/status` and errors. A well-formed
/// URL (its userinfo percent-encoded, as `${VAR}` substitution writes it) is parsed as one;
/// anything else — an `@`, `/`, `#` or `?` written unencoded in a password — has everything
/// between `://` and its last `@` masked, so no part of a password shows either way.
pub fn redact_url(url: &str) -> String {
    if !url.contains('@') {
        return url.to_string();
    }
    if url.matches('@').count() == 1
        && let Ok(mut parsed) = url::Url::parse(url)
        && !parsed.username().is_empty()
    {
        if parsed.password().is_none() {
            return url.to_string();
        }
        if parsed.set_password(Some("***")).is_ok() {
            return parsed.to_string();
        }
    }
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
        _ => "***".to_string(),
    }
}

/// A TOML parse error with the values of secret-looking keys (`password`, `secret`, `token`,
/// `sasl`, in any case, as part of a longer name too) masked in its quoted excerpt; once one
/// is, the message's quoted values (`` `…` ``, `"…"`) are masked too, as serde repeats the
/// offending value there.
pub fn mask_secrets(message: &str) -> String {
    let mut masked = false;
    let lines: Vec<String> = message
        .lines()
        .map(|line| {
            let Some((gutter, content)) = line.split_once(" | ") else {
                return line.to_string();
            };
            let number = gutter.trim();
            let excerpt = !number.is_empty() && number.chars().all(|c| c.is_ascii_digit());
            let url_credentials = content.contains("://") && content.contains('@');
            match content.split_once('=') {
                Some((key, _)) if excerpt && (is_secret(content) || url_credentials) => {
                    masked = true;
                    format!("{gutter} | {key}= ***")
                }
                None if excerpt && (is_secret(content) || url_credentials) => {
                    masked = true;
                    format!("{gutter} | ***")
                }
                _ => line.to_string(),
            }
        })
        .collect();
    if !masked {
        return message.to_string();
    }
    lines
        .iter()
        .map(|line| match line.split_once(" | ") {
            Some(_) => line.clone(),
            None => mask_quoted(line),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|k| key.contains(k))
}

/// `line` with what is between backticks or double quotes replaced by `***`.
fn mask_quoted(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut open: Option<char> = None;
    for c in line.chars() {
        match open {
            Some(q) if c == q => {
                out.push_str("***");
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '`' || c == '"' {
                    open = Some(c);
                }
            }
        }
    }
    out
}
