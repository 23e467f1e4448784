//! Upstream base-URL parsing.
//!
//! Receives the raw `--upstream` / `upstream.base_url` string from config
//! resolution and emits its connection parts: host and port to dial, the
//! `Host` header value, the normalized base URL, and the request path of the
//! chat-completions endpoint. Only plain `http://` is accepted for now: the
//! upstream client speaks no TLS yet, and failing at start-up beats failing
//! on the first request.

use std::net::Ipv6Addr;

/// The pieces of an upstream base URL the HTTP client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedUrl {
    /// `http://` + host header + path prefix, no trailing slash.
    pub base_url: String,
    /// Host to dial: a DNS name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// `host` or `host:port`; port 80 is omitted, IPv6 is bracketed.
    pub host_header: String,
    /// Path prefix + `/chat/completions`.
    pub chat_path: String,
}

const CHAT_SUFFIX: &str = "/chat/completions";

/// Parses an OpenAI-compatible base URL such as `http://127.0.0.1:11434/v1`.
/// The error text says what is wrong with the URL; the caller prefixes the
/// name of the field it came from.
pub(crate) fn parse_base_url(raw: &str) -> Result<ParsedUrl, String> {
    let url = raw.trim();
    if url.is_empty() {
        return Err("the upstream URL is empty; expected e.g. http://127.0.0.1:11434/v1".into());
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("`{url}` is not a URL; expected e.g. http://127.0.0.1:11434/v1"));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(format!("`{url}`: https upstreams are not supported yet; TLS arrives with provider support"));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!("`{url}`: unsupported scheme `{scheme}`; only http:// upstreams are supported"));
    }
    if rest.contains(['?', '#']) {
        return Err(format!("`{url}` has a query or fragment; give only scheme, host, port and path"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(format!(
            "`{url}` contains user info (`...@`); put credentials in upstream.api_key or --upstream-key"
        ));
    }
    let (host, bracketed, port_text) = split_authority(authority, url)?;
    validate_host(host, bracketed, url)?;
    let port = match port_text {
        None => 80,
        Some(p) => parse_port(p, url)?,
    };
    if let Some(bad) = path.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{url}`: the path contains the invalid character {bad:?}"));
    }
    let path = path.trim_end_matches('/');
    if path.ends_with(CHAT_SUFFIX) {
        return Err(format!(
            "`{url}` already ends with {CHAT_SUFFIX}; give the base URL (e.g. http://127.0.0.1:11434/v1), \
             the proxy appends {CHAT_SUFFIX}"
        ));
    }
    let shown_host = if bracketed { format!("[{host}]") } else { host.to_string() };
    let host_header = if port == 80 { shown_host } else { format!("{shown_host}:{port}") };
    Ok(ParsedUrl {
        base_url: format!("http://{host_header}{path}"),
        host: host.to_string(),
        port,
        host_header,
        chat_path: format!("{path}{CHAT_SUFFIX}"),
    })
}

/// Splits `host[:port]` or `[v6][:port]` into host, whether it was
/// bracketed, and the port text if a colon was present.
fn split_authority<'a>(authority: &'a str, url: &str) -> Result<(&'a str, bool, Option<&'a str>), String> {
    if let Some(inner) = authority.strip_prefix('[') {
        let Some((host, after)) = inner.split_once(']') else {
            return Err(format!("`{url}`: unterminated `[` in an IPv6 host"));
        };
        return match after {
            "" => Ok((host, true, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, true, Some(port))),
                None => Err(format!("`{url}`: unexpected `{after}` after the IPv6 host")),
            },
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, false, Some(port)),
        None => (authority, false, None),
    })
}

fn validate_host(host: &str, bracketed: bool, url: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err(format!("`{url}` has no host; expected e.g. http://127.0.0.1:11434/v1"));
    }
    if bracketed {
        return match host.parse::<Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("`{url}`: `[{host}]` is not an IPv6 address")),
        };
    }
    // Anything else ends up in the Host header and in DNS lookups, so only
    // the characters of names and IPv4 literals are let through.
    match host.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))) {
        Some(bad) => Err(format!("`{url}`: the host `{host}` contains the invalid character {bad:?}")),
        None => Ok(()),
    }
}

fn parse_port(text: &str, url: &str) -> Result<u16, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{url}`: the port `{text}` is not a number"));
    }
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("`{url}`: the port {text} is out of range 1..=65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> ParsedUrl {
        match parse_base_url(url) {
            Ok(p) => p,
            Err(e) => panic!("{url}: {e}"),
        }
    }

    fn err(url: &str) -> String {
        match parse_base_url(url) {
            Ok(p) => panic!("{url} parsed as {p:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn ollama_default_shape() {
        let p = ok("http://127.0.0.1:11434/v1");
        assert_eq!(p.host, "127.0.0.1");
        assert_eq!(p.port, 11434);
        assert_eq!(p.host_header, "127.0.0.1:11434");
        assert_eq!(p.base_url, "http://127.0.0.1:11434/v1");
        assert_eq!(p.chat_path, "/v1/chat/completions");
    }

    #[test]
    fn default_port_is_80_and_omitted_from_host_header() {
        let p = ok("http://api.example.com/v1");
        assert_eq!((p.host.as_str(), p.port), ("api.example.com", 80));
        assert_eq!(p.host_header, "api.example.com");
        let p = ok("http://api.example.com:80/v1");
        assert_eq!(p.host_header, "api.example.com");
        assert_eq!(p.base_url, "http://api.example.com/v1");
    }

    #[test]
    fn trailing_slashes_and_empty_path() {
        let p = ok("http://h:8080/openai/v1///");
        assert_eq!(p.base_url, "http://h:8080/openai/v1");
        assert_eq!(p.chat_path, "/openai/v1/chat/completions");
        let p = ok("http://h:8080");
        assert_eq!(p.base_url, "http://h:8080");
        assert_eq!(p.chat_path, "/chat/completions");
        let p = ok("  HTTP://h/  ");
        assert_eq!(p.base_url, "http://h");
        assert_eq!(p.chat_path, "/chat/completions");
    }

    #[test]
    fn ipv6_hosts_are_bracketed_in_the_header_only() {
        let p = ok("http://[::1]:9000/v1");
        assert_eq!(p.host, "::1");
        assert_eq!(p.port, 9000);
        assert_eq!(p.host_header, "[::1]:9000");
        assert_eq!(p.base_url, "http://[::1]:9000/v1");
        assert_eq!(ok("http://[::1]/v1").host_header, "[::1]");
        assert!(err("http://[::1/v1").contains("unterminated `[`"));
        assert!(err("http://[zz]/v1").contains("is not an IPv6 address"));
        assert!(err("http://[::1]x/v1").contains("unexpected `x`"));
    }

    #[test]
    fn https_gets_the_tls_message() {
        let e = err("https://api.openai.com/v1");
        assert!(e.contains("https upstreams are not supported yet; TLS arrives with provider support"), "{e}");
    }

    #[test]
    fn rejections_name_the_problem() {
        assert!(err("").contains("is empty"));
        assert!(err("127.0.0.1:11434/v1").contains("is not a URL"));
        assert!(err("ftp://h/v1").contains("unsupported scheme `ftp`"));
        assert!(err("http:///v1").contains("has no host"));
        assert!(err("http://:8080/v1").contains("has no host"));
        assert!(err("http://h:/v1").contains("the port `` is not a number"));
        assert!(err("http://h:abc/v1").contains("the port `abc` is not a number"));
        assert!(err("http://h:65536/v1").contains("out of range 1..=65535"));
        assert!(err("http://h:0/v1").contains("out of range 1..=65535"));
        assert!(err("http://user:pw@h/v1").contains("user info"));
        assert!(err("http://h/v1?x=1").contains("query or fragment"));
        assert!(err("http://h/v1#frag").contains("query or fragment"));
        assert!(err("http://h\r\nX: y/v1").contains("invalid character"));
        assert!(err("http://h/v 1").contains("invalid character ' '"));
        assert!(err("http://h/v1/chat/completions").contains("already ends with /chat/completions"));
    }
}
