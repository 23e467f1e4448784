//! Upstream base-URL parsing.
//!
//! Receives the raw `--upstream` / `upstream.base_url` string from config
//! resolution and emits its connection parts: host and port to dial, the
//! `Host` header value, the normalized base URL, and the request path of the
//! chat-completions endpoint, and whether to speak TLS (`https://`). Also
//! parses `upstream.proxy_url` / `HTTPS_PROXY`, which may only name a plain
//! `http://host:port` forward proxy (reached with CONNECT).

use std::net::Ipv6Addr;

/// The pieces of an upstream base URL the HTTP client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedUrl {
    /// `https://` was given: connect with TLS.
    pub tls: bool,
    /// Scheme + host header + path prefix, no trailing slash.
    pub base_url: String,
    /// Host to dial: a DNS name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// `host` or `host:port`; the scheme's default port (80 or 443) is
    /// omitted, IPv6 is bracketed.
    pub host_header: String,
    /// Path prefix + `/chat/completions`.
    pub chat_path: String,
}

/// A forward proxy to tunnel through with CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedProxy {
    /// Normalized `http://host:port`.
    pub url: String,
    pub host: String,
    pub port: u16,
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
    let tls = scheme.eq_ignore_ascii_case("https");
    if !tls && !scheme.eq_ignore_ascii_case("http") {
        return Err(format!(
            "`{url}`: unsupported scheme `{scheme}`; only http:// and https:// upstreams are supported"
        ));
    }
    let default_port = if tls { 443 } else { 80 };
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
        None => default_port,
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
    let host_header = if port == default_port { shown_host } else { format!("{shown_host}:{port}") };
    let scheme = if tls { "https" } else { "http" };
    Ok(ParsedUrl {
        tls,
        base_url: format!("{scheme}://{host_header}{path}"),
        host: host.to_string(),
        port,
        host_header,
        chat_path: format!("{path}{CHAT_SUFFIX}"),
    })
}

/// Parses a forward proxy address: `http://host:port`, optionally with a
/// trailing `/`; the scheme may be left out (`host:port`), as in many
/// `HTTPS_PROXY` values. Proxies speaking TLS or needing credentials are
/// refused here rather than failing obscurely on the first request.
pub(crate) fn parse_proxy_url(raw: &str) -> Result<ParsedProxy, String> {
    let url = raw.trim();
    if url.is_empty() {
        return Err("the proxy URL is empty; expected e.g. http://proxy.internal:3128".into());
    }
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "`{url}`: unsupported proxy scheme `{scheme}`; only http://host:port proxies (CONNECT) are supported"
            ))
        }
        None => url,
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('@') {
        return Err(format!("`{url}`: proxy credentials (`user:pass@`) are not supported"));
    }
    if authority.contains(['/', '?', '#']) {
        return Err(format!("`{url}`: give only http://host:port for a proxy, without a path"));
    }
    let (host, bracketed, port_text) = split_authority(authority, url)?;
    validate_host(host, bracketed, url)?;
    let Some(port_text) = port_text else {
        return Err(format!("`{url}`: the proxy URL needs a port, e.g. http://{authority}:3128"));
    };
    let port = parse_port(port_text, url)?;
    let shown_host = if bracketed { format!("[{host}]") } else { host.to_string() };
    Ok(ParsedProxy { url: format!("http://{shown_host}:{port}"), host: host.to_string(), port })
}

/// Whether an upstream `host` skips the environment's proxy: loopback
/// hosts always do; otherwise `no_proxy` (the `NO_PROXY` value) is a comma
/// list of exact host names or IP literals (case-insensitive; a leading `.`
/// is ignored, IPv6 may be bracketed), or `*` for every host.
pub(crate) fn bypasses_proxy(host: &str, no_proxy: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
        return true;
    }
    no_proxy.split(',').map(str::trim).filter(|e| !e.is_empty()).any(|entry| {
        let entry = entry.trim_start_matches('.');
        let entry = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']')).unwrap_or(entry);
        entry == "*" || entry.trim_end_matches('.').eq_ignore_ascii_case(host)
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
    fn https_defaults_to_443_and_omits_it_from_host_header() {
        let p = ok("https://api.openai.com/v1");
        assert!(p.tls);
        assert_eq!((p.host.as_str(), p.port), ("api.openai.com", 443));
        assert_eq!(p.host_header, "api.openai.com");
        assert_eq!(p.base_url, "https://api.openai.com/v1");
        assert_eq!(p.chat_path, "/v1/chat/completions");
        let p = ok("HTTPS://api.openai.com:443/v1/");
        assert_eq!(p.host_header, "api.openai.com");
        assert_eq!(p.base_url, "https://api.openai.com/v1");
        // The other scheme's default port is not special.
        let p = ok("https://h:80/v1");
        assert_eq!((p.port, p.host_header.as_str()), (80, "h:80"));
        let p = ok("http://h:443/v1");
        assert!(!p.tls);
        assert_eq!((p.port, p.host_header.as_str()), (443, "h:443"));
        let p = ok("https://[::1]:8443");
        assert_eq!((p.host.as_str(), p.host_header.as_str()), ("::1", "[::1]:8443"));
        assert_eq!(p.base_url, "https://[::1]:8443");
        assert!(!ok("http://h/v1").tls);
    }

    #[test]
    fn no_proxy_matches_exact_hosts_and_loopback() {
        for host in ["localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "::1"] {
            assert!(bypasses_proxy(host, ""), "{host}");
        }
        assert!(!bypasses_proxy("api.openai.com", ""));
        assert!(bypasses_proxy("api.openai.com", "example.com, API.openai.com"));
        assert!(bypasses_proxy("api.openai.com", ".api.openai.com"));
        assert!(bypasses_proxy("api.openai.com", "*"));
        assert!(bypasses_proxy("fd00::1", "[fd00::1]"));
        assert!(bypasses_proxy("10.0.0.5", "10.0.0.5"));
        // Exact hosts only: no suffix or CIDR matching.
        assert!(!bypasses_proxy("api.openai.com", "openai.com"));
        assert!(!bypasses_proxy("api.openai.com", ".openai.com"));
        assert!(!bypasses_proxy("10.0.0.5", "10.0.0.0/8"));
        assert!(!bypasses_proxy("api.openai.com", " , "));
    }

    fn proxy(url: &str) -> Result<(String, String, u16), String> {
        parse_proxy_url(url).map(|p| (p.url, p.host, p.port))
    }

    #[test]
    fn proxy_urls() {
        let want = Ok(("http://proxy.corp:3128".to_string(), "proxy.corp".to_string(), 3128));
        assert_eq!(proxy("http://proxy.corp:3128"), want);
        assert_eq!(proxy(" HTTP://proxy.corp:3128/ "), want);
        assert_eq!(proxy("proxy.corp:3128"), want);
        assert_eq!(proxy("http://[::1]:8080"), Ok(("http://[::1]:8080".into(), "::1".into(), 8080)));
        let err = |u: &str| proxy(u).unwrap_err();
        assert!(err("").contains("is empty"));
        assert!(err("https://p:3128").contains("unsupported proxy scheme `https`"));
        assert!(err("socks5://p:1080").contains("unsupported proxy scheme `socks5`"));
        assert!(err("http://u:pw@p:3128").contains("credentials"));
        assert!(err("http://p:3128/x").contains("without a path"));
        assert!(err("http://p").contains("needs a port"));
        assert!(err("http://p:0").contains("out of range"));
        assert!(err("http://p q:1").contains("invalid character"));
    }

    #[test]
    fn rejections_name_the_problem() {
        assert!(err("").contains("is empty"));
        assert!(err("127.0.0.1:11434/v1").contains("is not a URL"));
        assert!(err("ftp://h/v1").contains("unsupported scheme `ftp`; only http:// and https://"));
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
