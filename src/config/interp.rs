//! `${ENV_VAR}` interpolation for config-file strings.
//!
//! Receives one string value read from the TOML file plus an environment
//! lookup (injected, so tests never touch the process environment) and emits
//! the string with every `${NAME}` replaced by that variable's value. `$${`
//! is the escape for a literal `${`; any other `$` is kept as is. Substituted
//! values are not scanned again, so a secret containing `${` stays intact.

/// Replaces `${NAME}` with `env(NAME)`. The error names the variable but
/// never echoes the string, which may hold a secret.
pub(crate) fn interpolate(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !s.contains('$') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                return Err("unterminated `${` (write `$${` for a literal `${`)".into());
            };
            let name = &after[..end];
            if !is_var_name(name) {
                return Err(format!(
                    "`${{{name}}}` is not a valid variable reference (names are letters, digits and _, \
                     not starting with a digit; write `$${{` for a literal `${{`)"
                ));
            }
            match env(name) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("environment variable `{name}` is not set")),
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("sk-123".into()),
            "HOST" => Some("10.0.0.2".into()),
            "TRICKY" => Some("a${KEY}b".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(s: &str) -> Result<String, String> {
        interpolate(s, &env)
    }

    #[test]
    fn substitutes_every_reference() {
        assert_eq!(run("${KEY}").unwrap(), "sk-123");
        assert_eq!(run("http://${HOST}:11434/v1").unwrap(), "http://10.0.0.2:11434/v1");
        assert_eq!(run("${HOST}-${KEY}-${HOST}").unwrap(), "10.0.0.2-sk-123-10.0.0.2");
        assert_eq!(run("x${EMPTY}y").unwrap(), "xy");
        assert_eq!(run("plain").unwrap(), "plain");
    }

    #[test]
    fn values_are_not_rescanned() {
        assert_eq!(run("${TRICKY}").unwrap(), "a${KEY}b");
    }

    #[test]
    fn escapes_and_lone_dollars() {
        assert_eq!(run("$${KEY}").unwrap(), "${KEY}");
        assert_eq!(run("a$b$$c$").unwrap(), "a$b$$c$");
        // Scanned left to right: a `$` then the escape.
        assert_eq!(run("$$${KEY}").unwrap(), "$${KEY}");
        assert_eq!(run("$${").unwrap(), "${");
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(run("pre ${MISSING} post").unwrap_err(), "environment variable `MISSING` is not set");
        assert!(run("${KEY").unwrap_err().contains("unterminated `${`"));
        assert!(run("${}").unwrap_err().contains("`${}` is not a valid variable reference"));
        assert!(run("${1A}").unwrap_err().contains("`${1A}` is not a valid"));
        assert!(run("${A-B}").unwrap_err().contains("`${A-B}` is not a valid"));
    }
}
