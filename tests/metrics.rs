//! `GET /metrics` through the real proxy: the output parses as Prometheus
//! text (a small parser below checks the exposition format), and its values
//! move exactly as the requests served between two scrapes say they must.
//! Every test runs under both drivers.

mod common;

use std::collections::BTreeMap;

use common::*;

/// One parsed scrape: `name{k="v",...}` (labels sorted) → value, plus the
/// declared type of each family.
#[derive(Debug, Default)]
struct Scrape {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    /// The value of a sample; `labels` in any order.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.try_get(name, labels).unwrap_or_else(|| panic!("no sample {}", key(name, labels)))
    }

    fn try_get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples.get(&key(name, labels)).copied()
    }

    /// A request series, 0 when the proxy has not produced it (yet).
    fn requests(&self, route: &str, provider: &str, status: &str) -> f64 {
        self.try_get("ccproxy_requests_total", &[("route", route), ("provider", provider), ("status", status)])
            .unwrap_or(0.0)
    }
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut l: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    l.sort();
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Parses the text exposition format 0.0.4, failing the test on anything
/// malformed: every sample belongs to a family with a `# TYPE` line before
/// it, label values are quoted with valid escapes, values are numbers,
/// histogram buckets are cumulative and end with `+Inf` equal to `_count`.
fn parse(text: &str) -> Scrape {
    let mut s = Scrape::default();
    assert!(text.ends_with('\n'), "the exposition must end with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name, arg) = (parts.next().unwrap(), parts.next(), parts.next());
            let name = name.unwrap_or_else(|| panic!("comment without a name: {line:?}"));
            assert!(valid_name(name), "bad metric name in {line:?}");
            match kw {
                "TYPE" => {
                    let kind = arg.unwrap_or("");
                    assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "{line:?}");
                    assert!(s.types.insert(name.to_string(), kind.to_string()).is_none(), "TYPE twice: {line:?}");
                }
                "HELP" => assert!(arg.is_some_and(|h| !h.is_empty()), "empty HELP: {line:?}"),
                _ => panic!("unknown comment {line:?}"),
            }
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "stray line {line:?}");
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line:?}"));
        let name = &line[..name_end];
        assert!(valid_name(name), "bad name in {line:?}");
        let mut labels = Vec::new();
        let mut rest = &line[name_end..];
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                if let Some(r) = rest.strip_prefix('}') {
                    rest = r;
                    break;
                }
                let eq = rest.find("=\"").unwrap_or_else(|| panic!("bad label in {line:?}"));
                let lname = &rest[..eq];
                assert!(valid_name(lname) && !lname.contains(':'), "bad label name in {line:?}");
                let mut value = String::new();
                let mut chars = rest[eq + 2..].char_indices();
                let end = loop {
                    match chars.next() {
                        Some((i, '"')) => break eq + 2 + i + 1,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => value.push(c),
                            other => panic!("bad escape {other:?} in {line:?}"),
                        },
                        Some((_, c)) => value.push(c),
                        None => panic!("unterminated label value in {line:?}"),
                    }
                };
                labels.push((lname.to_string(), value));
                rest = &rest[end..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("no space before the value: {line:?}"));
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suf| name.strip_suffix(suf).filter(|f| s.types.get(*f).is_some_and(|t| t == "histogram")))
            .unwrap_or(name);
        assert!(s.types.contains_key(family), "sample before its # TYPE: {line:?}");
        let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert!(s.samples.insert(key(name, &l), v).is_none(), "duplicate sample {line:?}");
    }
    for (family, kind) in &s.types {
        if kind != "histogram" {
            continue;
        }
        let mut last = 0.0;
        let prefix = format!("{family}_bucket{{le=");
        let buckets: Vec<(&String, &f64)> = s.samples.iter().filter(|(k, _)| k.starts_with(&prefix)).collect();
        assert!(buckets.len() > 1, "{family} has no buckets");
        let mut bounds: Vec<(f64, f64)> = buckets
            .iter()
            .map(|(k, v)| {
                let le = k[prefix.len()..].trim_end_matches('}').trim_matches('"');
                (if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() }, **v)
            })
            .collect();
        bounds.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        for (le, n) in &bounds {
            assert!(*n >= last, "{family} bucket le={le} is not cumulative");
            last = *n;
        }
        assert_eq!(bounds.last().unwrap().0, f64::INFINITY, "{family} lacks +Inf");
        assert_eq!(last, s.get(&format!("{family}_count"), &[]), "{family}: +Inf != _count");
        assert!(s.get(&format!("{family}_sum"), &[]) >= 0.0);
    }
    s
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Scrapes once; returns the parsed values and the raw response size.
///
/// A request is recorded just after its answer is written, so a scrape on
/// another connection (maybe another worker) could run before that. The
/// tests therefore send everything on one keep-alive connection: its worker
/// records each request before it reads the next.
fn scrape(c: &mut Client) -> (Scrape, usize) {
    c.send(SCRAPE);
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    (parse(&r.text()), r.head.raw.len() + r.body.len())
}

fn hist_count(s: &Scrape, family: &str) -> f64 {
    s.get(&format!("{family}_count"), &[])
}

#[test]
fn metrics_move_as_requests_are_served() {
    with_proxy(|mock, proxy| {
        let mut c = proxy.client();
        let (m0, first_scrape_bytes) = scrape(&mut c);
        assert_eq!(m0.get("ccproxy_info", &[("driver", &proxy.driver), ("version", env!("CARGO_PKG_VERSION"))]), 1.0);
        assert_eq!(m0.types["ccproxy_info"], "gauge");
        assert_eq!(m0.get("ccproxy_workers", &[]), proxy.workers as f64);
        assert_eq!(m0.types["ccproxy_requests_total"], "counter");
        assert_eq!(m0.types["ccproxy_request_duration_seconds"], "histogram");
        // The scrape counts itself while it is being served.
        assert_eq!(m0.get("ccproxy_in_flight_requests", &[]), 1.0);
        assert_eq!(m0.get("ccproxy_in_flight_streams", &[]), 0.0);
        assert_eq!(m0.requests("messages", "default", "200"), 0.0);

        let mut sent = 0;
        let mut received = 0;
        let mut send = |c: &mut Client, raw: Vec<u8>| {
            c.send(&raw);
            let r = c.read_response();
            sent += raw.len();
            received += r.head.raw.len() + r.body.len();
            r
        };
        // A success, an upstream error, and a stream.
        mock.push(Reply::text("hello"));
        let r = send(&mut c, post_json("/v1/messages", &simple_request("hi")));
        assert_eq!(r.status, 200, "{}", r.text());
        mock.push(Reply::openai_error(400, "invalid_request_error", "bad thing"));
        let r = send(&mut c, post_json("/v1/messages", &simple_request("hi")));
        assert_eq!(r.status, 400, "{}", r.text());
        let mut parts = vec![openai::role()];
        parts.extend(openai::text_stream(&["Hel", "lo"]));
        mock.push(Reply::sse(parts));
        let r = send(&mut c, post_json("/v1/messages", &stream_request("hi")));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("content_block_delta"), "{}", r.text());
        // A route that never reaches a provider.
        let r = send(&mut c, request("GET", "/nope", &[], b""));
        assert_eq!(r.status, 404);

        let (m1, _) = scrape(&mut c);
        let d = |name: &str, labels: &[(&str, &str)]| m1.get(name, labels) - m0.get(name, labels);
        assert_eq!(m1.requests("messages", "default", "200"), 2.0);
        assert_eq!(m1.requests("messages", "default", "400"), 1.0);
        assert_eq!(m1.requests("not_found", "none", "404"), 1.0);
        // The first scrape was recorded once it was answered.
        assert_eq!(m1.requests("metrics", "none", "200"), 1.0);
        assert_eq!(d("ccproxy_messages_total", &[]), 3.0);
        assert_eq!(d("ccproxy_streams_total", &[]), 1.0);
        assert_eq!(d("ccproxy_errors_total", &[]), 2.0);
        assert_eq!(m1.get("ccproxy_in_flight_requests", &[]), 1.0);
        assert_eq!(m1.get("ccproxy_in_flight_streams", &[]), 0.0);
        // Everything read since the first scrape's request: four requests
        // and this scrape's own request.
        assert_eq!(d("ccproxy_received_bytes_total", &[]), (sent + SCRAPE.len()) as f64);
        // Everything written since: the first scrape's answer and four more
        // (the stream's chunk framing comes on top of what the client kept).
        let out = d("ccproxy_sent_bytes_total", &[]);
        assert!(out >= (received + first_scrape_bytes) as f64, "{out} < {received} + {first_scrape_bytes}");
        assert!(out < (received + first_scrape_bytes + 1024) as f64, "{out}");
        // Histograms: five requests finished (the first scrape included); the
        // success and the stream got a 2xx upstream head; the stream alone had
        // a first token.
        assert_eq!(
            hist_count(&m1, "ccproxy_request_duration_seconds") - hist_count(&m0, "ccproxy_request_duration_seconds"),
            5.0
        );
        assert_eq!(
            hist_count(&m1, "ccproxy_upstream_latency_seconds") - hist_count(&m0, "ccproxy_upstream_latency_seconds"),
            2.0
        );
        assert_eq!(hist_count(&m1, "ccproxy_time_to_first_token_seconds"), 1.0);
        assert!(m1.get("ccproxy_time_to_first_token_seconds_sum", &[]) > 0.0);
        // Every upstream request either reused a pooled connection or opened one.
        let pool = d("ccproxy_upstream_pool_hits_total", &[]) + d("ccproxy_upstream_pool_misses_total", &[]);
        assert_eq!(pool, mock.request_count() as f64);
        assert!(m1.get("ccproxy_upstream_pool_misses_total", &[]) >= 1.0);
        assert_eq!(d("ccproxy_upstream_retries_total", &[]), 0.0);
        assert_eq!(d("ccproxy_upstream_fallbacks_total", &[]), 0.0);
    });
}

#[test]
fn retries_are_counted() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = ProxyCmd::new(d)
            .arg("--upstream")
            .arg(&mock.url())
            .arg("--upstream-key")
            .arg(TEST_KEY)
            .arg("--retries")
            .arg("1")
            .start();
        let mut c = proxy.client();
        let (m0, _) = scrape(&mut c);
        mock.push(Reply::openai_error(503, "server_error", "busy").header("retry-after", "0"));
        mock.push(Reply::text("ok"));
        c.send(&post_json("/v1/messages", &simple_request("hi")));
        let r = c.read_response();
        assert_eq!(r.status, 200, "{}", r.text());
        let (m1, _) = scrape(&mut c);
        let delta = |n: &str| m1.get(n, &[]) - m0.get(n, &[]);
        assert_eq!(delta("ccproxy_upstream_retries_total"), 1.0);
        assert_eq!(m1.requests("messages", "default", "200"), 1.0);
        assert_eq!(delta("ccproxy_upstream_pool_hits_total") + delta("ccproxy_upstream_pool_misses_total"), 2.0);
        proxy.finish();
    });
}

#[test]
fn head_and_wrong_method() {
    with_proxy(|_mock, proxy| {
        let mut c = proxy.client();
        c.send(&request("HEAD", "/metrics", &[], b""));
        let r = c.read_head_response();
        assert_eq!(r.status, 200);
        assert!(r.header("content-length").is_some_and(|n| n != "0"));
        assert!(r.body.is_empty());
        c.send(&request("POST", "/metrics", &[], b""));
        assert_eq!(c.read_response().status, 405);
        let (m, _) = scrape(&mut c);
        assert_eq!(m.requests("metrics", "none", "200"), 1.0);
        assert_eq!(m.requests("method_not_allowed", "none", "405"), 1.0);
    });
}
