//! `--check-config` output.
//!
//! Receives a resolved [`Config`] and emits it as TOML text, with comments
//! saying where things came from: every provider as a `[[providers]]` entry
//! with all its fields resolved, then `[router]` and `[model_map]`. Keys
//! (and credential-like header values) are replaced by their masks, and the
//! text parses back as a config file, so it can serve as a starting point
//! for one.

use std::fmt::Write;

use super::providers::{reasoning_name, shown_header_value};
use super::routing::target_text;
use super::{mask_secret, Config, Provider, ProxyConfig};
use crate::route::Route;

/// A TOML basic string, escaped by toml itself.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

pub(super) fn render(c: &Config) -> String {
    let mut o = String::with_capacity(2048);
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
    let _ = writeln!(o, "retries = {}", c.retries);
    let _ = writeln!(o, "retry_after_cap_secs = {}", c.retry_after_cap.as_secs());
    if let Some(k) = &c.server.client_key {
        let _ = writeln!(o, "api_key = {}", quote(&mask_secret(&k.0)));
    }
    let _ = writeln!(o, "allow_remote = {}", c.server.allow_remote);
    let _ = writeln!(o, "shutdown_grace_secs = {}", c.server.shutdown_grace.as_secs());
    let l = &c.server.limits;
    let _ = writeln!(o, "\n[limits]");
    let _ = writeln!(o, "header_timeout_secs = {}", l.header_timeout.as_secs());
    let _ = writeln!(o, "body_timeout_secs = {}", l.body_timeout.as_secs());
    let _ = writeln!(o, "idle_timeout_secs = {}", l.idle_timeout.as_secs());
    let _ = writeln!(o, "max_headers = {}", l.max_headers);
    let _ = writeln!(o, "max_head_bytes = {}", l.max_head_bytes);
    let _ = writeln!(o, "max_connections_per_worker = {}", l.max_connections_per_worker);
    for p in &c.providers {
        provider(&mut o, p);
    }
    router(&mut o, c);
    o
}

fn provider(o: &mut String, p: &Provider) {
    let up = &p.upstream;
    let _ = writeln!(o);
    let _ = writeln!(o, "[[providers]]");
    if up.is_default {
        let _ = writeln!(o, "# nothing configured an upstream: using the built-in local Ollama default");
    }
    let _ = writeln!(o, "name = {}", quote(&p.name));
    match p.preset {
        Some(n) => _ = writeln!(o, "preset = {}", quote(n)),
        None => _ = writeln!(o, "# preset: none"),
    }
    let _ = writeln!(o, "kind = {}", quote(p.kind.as_str()));
    let _ = writeln!(o, "base_url = {}", quote(&up.base_url));
    let scheme = if up.tls { "https" } else { "http" };
    let _ = writeln!(o, "# requests: POST {scheme}://{}{}", up.host_header, up.chat_path);
    let _ = writeln!(o, "auth = {}", quote(p.auth.as_str()));
    match &up.api_key {
        Some(k) => _ = writeln!(o, "api_key = {}", quote(&mask_secret(k))),
        None => _ = writeln!(o, "# api_key: not set, no key is sent"),
    }
    let models: Vec<String> = p.models.iter().map(|m| quote(m)).collect();
    let _ = writeln!(o, "models = [{}]", models.join(", "));
    if let Some(n) = p.max_tokens {
        let _ = writeln!(o, "max_tokens = {n}");
    }
    let _ = writeln!(o, "connect_timeout_secs = {}", up.connect_timeout.as_secs());
    let _ = writeln!(o, "first_byte_timeout_secs = {}", up.first_byte_timeout.as_secs());
    let _ = writeln!(o, "idle_timeout_secs = {}", up.idle_timeout.as_secs());
    let _ = writeln!(o, "pool_max_idle = {}", up.pool_max_idle);
    let _ = writeln!(o, "pdf = {}", p.quirks.pdf_file_parts);
    match &up.ca_file {
        Some(path) => _ = writeln!(o, "ca_file = {}", quote(&path.to_string_lossy())),
        None => _ = writeln!(o, "# ca_file: not set, only the built-in public roots are trusted"),
    }
    match &up.proxy {
        Some(ProxyConfig { url, from_env: Some(var), .. }) => {
            _ = writeln!(o, "# proxy_url: not set; {var} is used: {url}")
        }
        Some(proxy) => _ = writeln!(o, "proxy_url = {}", quote(&proxy.url)),
        None => _ = writeln!(o, "# proxy_url: not set, connecting directly"),
    }
    let headers: Vec<String> =
        p.headers.iter().map(|(k, v)| format!("{} = {}", quote(k), quote(&shown_header_value(k, v)))).collect();
    match headers.is_empty() {
        true => _ = writeln!(o, "headers = {{}}"),
        false => _ = writeln!(o, "headers = {{ {} }}", headers.join(", ")),
    }
    let q = &p.quirks;
    let _ = writeln!(
        o,
        "quirks = {{ reasoning = {}, openai_reasoning_models = {}, deepseek_reasoning_passback = {}, gemini = {} }}",
        quote(reasoning_name(q.reasoning)),
        q.openai_reasoning_models,
        q.deepseek_reasoning_passback,
        q.gemini
    );
}

fn router(o: &mut String, c: &Config) {
    let r = &c.router;
    let ps = &c.providers;
    let _ = writeln!(o);
    let _ = writeln!(o, "[router]");
    let _ = writeln!(o, "# targets are \"provider,model\"; \"provider,\" passes the client's model name through");
    let _ = writeln!(o, "default = {}", quote(&target_text(&r.default.target, ps)));
    let routes: [(&str, &Option<Route>); 4] = [
        ("background", &r.background),
        ("think", &r.think),
        ("long_context", &r.long_context),
        ("web_search", &r.web_search),
    ];
    for (name, route) in routes {
        match route {
            Some(route) => _ = writeln!(o, "{name} = {}", quote(&target_text(&route.target, ps))),
            None => _ = writeln!(o, "# {name}: not set"),
        }
    }
    let _ = writeln!(o, "long_context_threshold = {}", r.long_context_threshold);
    if let Some(t) = &r.forced {
        let _ = writeln!(
            o,
            "# --model {}: every request goes to this model; [model_map] and the routes are ignored",
            quote(t.model.as_deref().unwrap_or(""))
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "[router.fallback]");
    let list = |route: &Route| {
        let items: Vec<String> = route.fallbacks.iter().map(|t| quote(&target_text(t, ps))).collect();
        format!("[{}]", items.join(", "))
    };
    let _ = writeln!(o, "default = {}", list(&r.default));
    for (name, route) in routes {
        if let Some(route) = route {
            let _ = writeln!(o, "{name} = {}", list(route));
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "[model_map]");
    for (from, to) in &r.map {
        let _ = writeln!(o, "{} = {}", quote(from), quote(&target_text(to, ps)));
    }
}
