//! The small endpoints that never touch the upstream.
//!
//! Receives the worker's state from the lifecycle and emits JSON bodies for
//! `/health`, `/status`, `/v1/models` and `/`, and the Prometheus text for
//! `/metrics`. `count_tokens` is in
//! [`crate::tokens`]; `/v1/messages` is the lifecycle's own business.

use crate::config::Config;
use crate::json;
use crate::metrics::{HistogramTotals, Metrics, BUCKETS};

pub const HEALTH_BODY: &[u8] = b"{\"status\":\"ok\"}";
pub const ROOT_BODY: &[u8] = b"{\"name\":\"ccproxy\",\"status\":\"ok\"}";
/// Prometheus text exposition format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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
    out.extend_from_slice(b",\"connections_parked\":");
    json::write_u64(out, t.parked);
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

/// `GET /metrics`: every shard summed, in Prometheus text format. Request
/// series that are still zero are left out; provider labels come from the
/// current config.
pub fn write_metrics(out: &mut Vec<u8>, config: &Config, metrics: &Metrics) {
    let s = metrics.snapshot();
    let t = s.totals;
    header(out, "ccproxy_info", "gauge", "Build and runtime facts; always 1.");
    out.extend_from_slice(b"ccproxy_info{driver=");
    label(out, metrics.driver());
    out.extend_from_slice(b",version=");
    label(out, env!("CARGO_PKG_VERSION"));
    out.extend_from_slice(b"} 1\n");
    gauge(out, "ccproxy_workers", "Worker threads.", config.workers as u64);
    gauge(out, "ccproxy_uptime_seconds", "Seconds since start.", metrics.started.elapsed().as_secs());

    header(
        out,
        "ccproxy_requests_total",
        "counter",
        "Finished requests by route, provider and status (499: client went away).",
    );
    for r in &s.requests {
        out.extend_from_slice(b"ccproxy_requests_total{route=");
        label(out, r.route);
        out.extend_from_slice(b",provider=");
        let provider = match r.provider {
            _ if r.provider_other => "other",
            Some(p) => config.providers.get(p).map(|p| p.name.as_str()).unwrap_or("other"),
            None => "none",
        };
        label(out, provider);
        out.extend_from_slice(b",status=");
        match r.status {
            Some(code) => label(out, itoa::Buffer::new().format(code)),
            None => label(out, "other"),
        }
        out.extend_from_slice(b"} ");
        value(out, r.count);
    }
    counter(out, "ccproxy_messages_total", "POST /v1/messages requests received.", t.messages);
    counter(out, "ccproxy_streams_total", "Streams started.", t.streams);
    counter(out, "ccproxy_errors_total", "Error responses.", t.errors);
    gauge(out, "ccproxy_in_flight_requests", "Requests being served (a scrape counts itself).", t.in_flight);
    gauge(out, "ccproxy_in_flight_streams", "Streams being relayed.", t.in_flight_streams);
    counter(out, "ccproxy_received_bytes_total", "Bytes read from clients.", t.bytes_in);
    counter(out, "ccproxy_sent_bytes_total", "Bytes written to clients.", t.bytes_out);
    counter(out, "ccproxy_upstream_retries_total", "Upstream attempts retried.", t.retries);
    counter(out, "ccproxy_upstream_fallbacks_total", "Fallback targets tried.", t.fallbacks);
    counter(out, "ccproxy_upstream_pool_hits_total", "Upstream requests on a pooled connection.", t.pool_hits);
    counter(out, "ccproxy_upstream_pool_misses_total", "Upstream connections opened.", t.upstream_connects);
    counter(
        out,
        "ccproxy_connections_parked_total",
        "Idle keep-alive client connections that released their buffers.",
        t.parked,
    );
    histogram(
        out,
        "ccproxy_upstream_latency_seconds",
        "Request start to the upstream response head, retries included.",
        &s.upstream_latency,
    );
    histogram(
        out,
        "ccproxy_time_to_first_token_seconds",
        "Request start to a stream's first content event.",
        &s.first_token,
    );
    histogram(out, "ccproxy_request_duration_seconds", "Request start to the end of the answer.", &s.duration);
}

fn header(out: &mut Vec<u8>, name: &str, kind: &str, help: &str) {
    for part in ["# HELP ", name, " ", help, "\n# TYPE ", name, " ", kind, "\n"] {
        out.extend_from_slice(part.as_bytes());
    }
}

fn value(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    out.push(b'\n');
}

fn counter(out: &mut Vec<u8>, name: &str, help: &str, v: u64) {
    header(out, name, "counter", help);
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    value(out, v);
}

fn gauge(out: &mut Vec<u8>, name: &str, help: &str, v: u64) {
    header(out, name, "gauge", help);
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    value(out, v);
}

fn histogram(out: &mut Vec<u8>, name: &str, help: &str, h: &HistogramTotals) {
    use std::io::Write;
    header(out, name, "histogram", help);
    for (i, n) in h.cumulative.iter().enumerate() {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"_bucket{le=\"");
        match BUCKETS.get(i) {
            Some(b) => {
                let _ = write!(out, "{b}");
            }
            None => out.extend_from_slice(b"+Inf"),
        }
        out.extend_from_slice(b"\"} ");
        value(out, *n);
    }
    let _ = writeln!(out, "{name}_sum {}", h.sum_secs);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"_count ");
    value(out, h.count());
}

/// A quoted label value, escaped as the exposition format asks.
fn label(out: &mut Vec<u8>, v: &str) {
    out.push(b'"');
    for b in v.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
    out.push(b'"');
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{RequestRecord, Shard};
    use std::time::Duration;

    fn text(m: &Metrics) -> String {
        let config = crate::config::Config::load_with_home(&crate::config::Cli::default(), None, &|_| None).unwrap();
        let mut out = Vec::new();
        write_metrics(&mut out, &config, m);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn labels_are_escaped() {
        let mut out = Vec::new();
        label(&mut out, "a\"b\\c\nd");
        assert_eq!(out, br#""a\"b\\c\nd""#);
    }

    #[test]
    fn metrics_text_has_series_types_and_cumulative_buckets() {
        let m = Metrics::new(2);
        m.driver.set("epoll").unwrap();
        m.shards[1].record_request(&RequestRecord {
            route: 0,
            provider: Some(0),
            status: 502,
            duration: Duration::from_millis(300),
            upstream_head: None,
            first_token: Some(Duration::from_millis(40)),
        });
        Shard::bump(&m.shards[0].pool_hits);
        let t = text(&m);
        assert!(t.contains("ccproxy_info{driver=\"epoll\",version=\"") && t.contains("\"} 1\n"), "{t}");
        assert!(
            t.contains("\nccproxy_requests_total{route=\"messages\",provider=\"default\",status=\"502\"} 1\n"),
            "{t}"
        );
        assert!(t.contains("\nccproxy_upstream_pool_hits_total 1\n"), "{t}");
        assert!(t.contains("# TYPE ccproxy_request_duration_seconds histogram\n"), "{t}");
        assert!(t.contains("ccproxy_request_duration_seconds_bucket{le=\"0.25\"} 0\n"), "{t}");
        assert!(t.contains("ccproxy_request_duration_seconds_bucket{le=\"0.5\"} 1\n"), "{t}");
        assert!(t.contains("ccproxy_request_duration_seconds_bucket{le=\"+Inf\"} 1\n"), "{t}");
        assert!(t.contains("ccproxy_request_duration_seconds_sum 0.3\n"), "{t}");
        assert!(t.contains("ccproxy_time_to_first_token_seconds_bucket{le=\"0.05\"} 1\n"), "{t}");
        assert!(t.contains("ccproxy_upstream_latency_seconds_count 0\n"), "{t}");
        // Every sample line is `name{labels} value` or `name value`.
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            let v = line.rsplit(' ').next().unwrap();
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
    }
}
