//! The small endpoints that never touch the upstream.
//!
//! Receives the worker's state from the lifecycle and emits JSON bodies for
//! `/health`, `/status`, `/v1/models` and `/`. `count_tokens` is in
//! [`crate::tokens`]; `/v1/messages` is the lifecycle's own business.

use crate::config::Config;
use crate::json;
use crate::metrics::Metrics;

pub const HEALTH_BODY: &[u8] = b"{\"status\":\"ok\"}";
pub const ROOT_BODY: &[u8] = b"{\"name\":\"ccproxy\",\"status\":\"ok\"}";

/// `GET /status`: version, uptime, workers, driver, upstream and counters.
pub fn write_status(out: &mut Vec<u8>, config: &Config, metrics: &Metrics) {
    let t = metrics.totals();
    out.extend_from_slice(b"{\"status\":\"ok\",\"version\":");
    json::write_str(out, env!("CARGO_PKG_VERSION"));
    out.extend_from_slice(b",\"uptime_secs\":");
    json::write_u64(out, metrics.started.elapsed().as_secs());
    out.extend_from_slice(b",\"workers\":");
    json::write_u64(out, config.workers as u64);
    out.extend_from_slice(b",\"driver\":");
    json::write_str(out, metrics.driver());
    out.extend_from_slice(b",\"listen\":");
    json::write_str(out, &config.listen.to_string());
    out.extend_from_slice(b",\"upstream\":");
    json::write_str(out, &config.providers[0].upstream.base_url);
    out.extend_from_slice(b",\"requests_served\":");
    json::write_u64(out, t.requests);
    out.extend_from_slice(b",\"messages\":");
    json::write_u64(out, t.messages);
    out.extend_from_slice(b",\"streams\":");
    json::write_u64(out, t.streams);
    out.extend_from_slice(b",\"errors\":");
    json::write_u64(out, t.errors);
    out.extend_from_slice(b",\"upstream_connects\":");
    json::write_u64(out, t.upstream_connects);
    out.extend_from_slice(b",\"pool_hits\":");
    json::write_u64(out, t.pool_hits);
    out.extend_from_slice(b",\"retries\":");
    json::write_u64(out, t.retries);
    out.extend_from_slice(b",\"fallbacks\":");
    json::write_u64(out, t.fallbacks);
    out.extend_from_slice(b",\"providers\":[");
    for (i, p) in config.providers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        json::write_str(out, &p.name);
        out.extend_from_slice(b",\"kind\":");
        json::write_str(out, p.kind.as_str());
        out.extend_from_slice(b",\"base_url\":");
        json::write_str(out, &p.upstream.base_url);
        out.push(b'}');
    }
    out.push(b']');
    out.push(b'}');
}

/// `GET /v1/models`: the configured model names in Anthropic's list shape.
pub fn write_models(out: &mut Vec<u8>, config: &Config) {
    let names = config.router.advertised();
    out.extend_from_slice(b"{\"data\":[");
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"type\":\"model\",\"id\":");
        json::write_str(out, name);
        out.extend_from_slice(b",\"display_name\":");
        json::write_str(out, name);
        // The upstream does not tell us when a model was created; the Unix
        // epoch is an honest "unknown" that still parses as a timestamp.
        out.extend_from_slice(b",\"created_at\":\"1970-01-01T00:00:00Z\"}");
    }
    out.extend_from_slice(b"],\"has_more\":false,\"first_id\":");
    match names.first() {
        Some(n) => json::write_str(out, n),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"last_id\":");
    match names.last() {
        Some(n) => json::write_str(out, n),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}
