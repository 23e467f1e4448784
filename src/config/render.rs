//! `--check-config` output.
//!
//! Receives a resolved [`Config`] and emits it as TOML text, with comments
//! saying where things came from. The upstream key is replaced by its mask,
//! and the text parses back as a config file, so it can serve as a starting
//! point for one.

use std::fmt::Write;

use super::{mask_secret, Config, ProxyConfig};

/// A TOML basic string, escaped by toml itself.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

pub(super) fn render(c: &Config) -> String {
    let up = &c.upstream;
    let mut o = String::with_capacity(1024);
    // `write!` into a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(o, "# ccproxy resolved configuration");
    match &c.source {
        Some(p) => _ = writeln!(o, "# config file: {}", p.display()),
        None => _ = writeln!(o, "# config file: none (built-in defaults and command line)"),
    }
    let _ = writeln!(o, "listen = {}", quote(&c.listen.to_string()));
    let _ = writeln!(o, "workers = {}", c.workers);
    let _ = writeln!(o, "max_body_bytes = {}", c.max_body_bytes);
    let _ = writeln!(o, "ping_interval_secs = {}", c.ping_interval.as_secs());
    let _ = writeln!(o);
    let _ = writeln!(o, "[upstream]");
    if up.is_default {
        let _ = writeln!(o, "# nothing configured an upstream: using the built-in local Ollama default");
    }
    let _ = writeln!(o, "base_url = {}", quote(&up.base_url));
    let scheme = if up.tls { "https" } else { "http" };
    let _ = writeln!(o, "# requests: POST {scheme}://{}{}", up.host_header, up.chat_path);
    match &up.api_key {
        Some(k) => _ = writeln!(o, "api_key = {}", quote(&mask_secret(k))),
        None => _ = writeln!(o, "# api_key: not set, no Authorization header is sent"),
    }
    match &c.route.default {
        Some(m) => _ = writeln!(o, "model = {}", quote(m)),
        None => _ = writeln!(o, "# model: not set, unmapped client model names are passed through"),
    }
    let _ = writeln!(o, "connect_timeout_secs = {}", up.connect_timeout.as_secs());
    let _ = writeln!(o, "first_byte_timeout_secs = {}", up.first_byte_timeout.as_secs());
    let _ = writeln!(o, "idle_timeout_secs = {}", up.idle_timeout.as_secs());
    let _ = writeln!(o, "pool_max_idle = {}", up.pool_max_idle);
    let _ = writeln!(o, "pdf = {}", up.pdf_file_parts);
    let _ = writeln!(o, "reasoning_effort = {}", up.reasoning_effort);
    match &up.ca_file {
        Some(p) => _ = writeln!(o, "ca_file = {}", quote(&p.to_string_lossy())),
        None => _ = writeln!(o, "# ca_file: not set, only the built-in public roots are trusted"),
    }
    match &up.proxy {
        Some(ProxyConfig { url, from_env: Some(var), .. }) => {
            _ = writeln!(o, "# proxy_url: not set; {var} is used: {url}")
        }
        Some(p) => _ = writeln!(o, "proxy_url = {}", quote(&p.url)),
        None => _ = writeln!(o, "# proxy_url: not set, connecting directly"),
    }
    if let Some(m) = &c.route.force {
        let _ = writeln!(o);
        let _ =
            writeln!(o, "# --model {}: every request goes to this model; [model_map] and model are ignored", quote(m));
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "[model_map]");
    for (from, to) in &c.route.map {
        let _ = writeln!(o, "{} = {}", quote(from), quote(to));
    }
    o
}
