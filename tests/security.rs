//! Client authentication, the loopback-only default, and the limits that
//! protect the proxy from hostile clients (issue 5).
//!
//! Receives nothing but the real binary, started under both monoio drivers,
//! and the scripted mock upstream; talks to it over raw sockets so that
//! partial heads, trickled bytes and ambiguous framing can be sent exactly.
//! Each test asserts what the client sees (status, error type, whether the
//! connection ends) and that refused requests never reach the upstream.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::proxy::assert_log_clean;
use common::*;
use serde_json::json;

/// The key clients must present. Distinctive, so a leak is unmistakable.
const CLIENT_KEY: &str = "ccpx-client-9d2f41b7e0a35c68";

/// How long a test waits for the proxy to close a connection. Far above
/// every limit configured here (1 s), so a timeout means "never closed".
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// A config file for `mock`: `top` goes before the tables, `limits` into
/// `[limits]`.
fn config(mock: &Mock, top: &str, limits: &str) -> String {
    let path = write_config(&format!(
        "retries = 0\n{top}\n[upstream]\nbase_url = \"{}\"\napi_key = \"{TEST_KEY}\"\n[limits]\n{limits}\n",
        mock.url()
    ));
    path.to_str().unwrap().to_string()
}

/// A proxy for `mock` started from a config file.
fn start_with(d: Driver, mock: &Mock, top: &str, limits: &str) -> Proxy {
    ProxyCmd::new(d).arg("--config").arg(&config(mock, top, limits)).start()
}

/// A request with exactly the given auth headers (none of the harness defaults).
fn req_with(method: &str, path: &str, auth: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut headers = vec![("Content-Type", "application/json"), ("anthropic-version", "2023-06-01")];
    headers.extend_from_slice(auth);
    request(method, path, &headers, body)
}

fn messages_body() -> Vec<u8> {
    serde_json::to_vec(&simple_request("hi")).unwrap()
}

/// Reads until the proxy closes the connection and returns what arrived.
/// Panics when the connection is still open after `CLOSE_WAIT`.
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(CLOSE_WAIT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            // A socket with a receive timeout fails with EINTR after the
            // process is stopped and continued, even without a handler.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => panic!(
                "the proxy kept the connection open for {CLOSE_WAIT:?}; received so far: {:?}",
                String::from_utf8_lossy(&got)
            ),
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// Sends `raw` on a fresh connection, reads one response, and asserts the
/// proxy then closes the connection without another byte: whatever followed
/// the refused request was not taken as a next request.
fn refused(proxy: &Proxy, raw: &[u8]) -> Response {
    let mut c = proxy.client();
    let _ = c.try_send(raw);
    let r = c.read_response();
    let rest = std::mem::take(&mut c.wire.buf);
    let mut more = read_to_close(&mut c.wire.stream);
    more.splice(0..0, rest);
    assert!(more.is_empty(), "bytes after the {} answer: {:?}", r.status, String::from_utf8_lossy(&more));
    r
}

fn assert_health(proxy: &Proxy) {
    let h = proxy.get("/health");
    assert_eq!(h.status, 200, "{}", h.text());
    assert_eq!(h.json(), json!({"status": "ok"}));
}

fn assert_no_client_key(bytes: &[u8], what: &str) {
    let text = String::from_utf8_lossy(bytes);
    assert!(!text.contains(CLIENT_KEY), "{what} shows the client key: {text}");
    assert!(!text.contains(&CLIENT_KEY[5..20]), "{what} shows part of the client key: {text}");
}

// ---------------------------------------------------------------- auth

#[test]
fn right_key_in_either_header_style_is_served() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = ProxyCmd::new(d).upstream(&mock).arg("--api-key").arg(CLIENT_KEY).start();
        let bearer = format!("Bearer {CLIENT_KEY}");
        let lower = format!("bearer {CLIENT_KEY}");
        let styles: [(&str, &str); 3] =
            [("x-api-key", CLIENT_KEY), ("Authorization", &bearer), ("authorization", &lower)];
        for (name, value) in styles {
            mock.push(Reply::text("hello"));
            let r = proxy.send(&req_with("POST", "/v1/messages", &[(name, value)], &messages_body()));
            assert_eq!(r.status, 200, "{name}: {}", r.text());
            assert_eq!(r.json()["content"][0]["text"], "hello", "{name}");
            assert_no_client_key(&r.head.raw, "the response head");
            let m = proxy.send(&req_with("GET", "/v1/models", &[(name, value)], b""));
            assert_eq!(m.status, 200, "GET /v1/models with {name}: {}", m.text());
        }
        // The client key is the proxy's, not the provider's: never forwarded.
        for rec in mock.requests() {
            assert_eq!(rec.header("authorization"), Some(format!("Bearer {TEST_KEY}").as_str()));
            for (k, v) in &rec.headers {
                assert!(!v.contains(CLIENT_KEY), "the client key was forwarded upstream as {k}");
            }
        }
        assert_eq!(mock.request_count(), 3);
        proxy.finish();
    });
}

#[test]
fn wrong_or_missing_key_is_401_on_every_route_but_health() {
    for_each_driver(|d| {
        let mock = Mock::start();
        // The key comes from the config file here (from --api-key above).
        let proxy = start_with(d, &mock, &format!("api_key = \"{CLIENT_KEY}\""), "");
        let near = format!("{CLIENT_KEY}x");
        let short = &CLIENT_KEY[..CLIENT_KEY.len() - 1];
        let bearer_wrong = format!("Bearer {near}");
        let bearer_short = format!("Bearer {short}");
        let basic = format!("Basic {CLIENT_KEY}");
        let x_bearer = format!("Bearer {CLIENT_KEY}");
        let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
            ("missing", vec![]),
            ("x-api-key wrong", vec![("x-api-key", "sk-wrong")]),
            ("x-api-key one char more", vec![("x-api-key", &near)]),
            ("x-api-key one char less", vec![("x-api-key", short)]),
            ("x-api-key empty", vec![("x-api-key", "")]),
            ("bearer wrong", vec![("Authorization", &bearer_wrong)]),
            ("bearer short", vec![("Authorization", &bearer_short)]),
            ("bearer empty", vec![("Authorization", "Bearer ")]),
            ("bare key in Authorization", vec![("Authorization", CLIENT_KEY)]),
            ("Basic scheme", vec![("Authorization", &basic)]),
            ("Bearer form in x-api-key", vec![("x-api-key", &x_bearer)]),
        ];
        let body = messages_body();
        for (what, auth) in &cases {
            for (method, path, body) in [
                ("POST", "/v1/messages", &body[..]),
                ("POST", "/v1/messages/count_tokens", &body[..]),
                ("GET", "/v1/models", &b""[..]),
                ("GET", "/status", &b""[..]),
                ("GET", "/", &b""[..]),
            ] {
                let r = refused(&proxy, &req_with(method, path, auth, body));
                let msg = r.assert_error(401, "authentication_error");
                assert!(msg.contains("x-api-key") && msg.contains("Bearer"), "{what} {path}: {msg}");
                assert_no_client_key(&r.head.raw, "a 401 head");
                assert_no_client_key(&r.body, "a 401 body");
            }
        }
        assert_eq!(mock.request_count(), 0, "unauthenticated requests never reach the upstream");
        proxy.finish();
    });
}

#[test]
fn key_from_the_environment_is_enforced() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = ProxyCmd::new(d).upstream(&mock).env("CCPROXY_API_KEY", CLIENT_KEY).start();
        refused(&proxy, &req_with("GET", "/v1/models", &[], b"")).assert_error(401, "authentication_error");
        let r = proxy.send(&req_with("GET", "/v1/models", &[("x-api-key", CLIENT_KEY)], b""));
        assert_eq!(r.status, 200, "{}", r.text());
        proxy.finish();
    });
}

#[test]
fn health_needs_no_key() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = ProxyCmd::new(d).upstream(&mock).arg("--api-key").arg(CLIENT_KEY).start();
        for auth in [vec![], vec![("x-api-key", "wrong")], vec![("Authorization", "Bearer wrong")]] {
            let mut c = proxy.client();
            // Keep-alive: /health answers and the connection stays usable.
            c.send(&req_with("GET", "/health", &auth, b""));
            let r = c.read_response();
            assert_eq!(r.status, 200, "{auth:?}: {}", r.text());
            assert_eq!(r.json(), json!({"status": "ok"}));
            c.send(&req_with("GET", "/health", &auth, b""));
            assert_eq!(c.read_response().status, 200);
        }
        proxy.finish();
    });
}

#[test]
fn head_with_a_wrong_key_is_a_401_head_only() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = ProxyCmd::new(d).upstream(&mock).arg("--api-key").arg(CLIENT_KEY).start();
        for (path, auth) in [("/v1/models", vec![("x-api-key", "wrong")]), ("/status", vec![])] {
            let mut c = proxy.client();
            c.send(&req_with("HEAD", path, &auth, b""));
            let r = c.read_head_response();
            assert_eq!(r.status, 401, "HEAD {path}");
            assert!(r.header("content-type").unwrap_or("").starts_with("application/json"), "{:?}", r.head);
            let after = read_to_close(&mut c.wire.stream);
            let after = [std::mem::take(&mut c.wire.buf), after].concat();
            assert!(
                after.is_empty(),
                "HEAD {path}: a body followed the 401 head: {:?}",
                String::from_utf8_lossy(&after)
            );
        }
        // And with the right key, HEAD is answered 200, head only.
        let mut c = proxy.client();
        c.send(&req_with("HEAD", "/v1/models", &[("x-api-key", CLIENT_KEY)], b""));
        assert_eq!(c.read_head_response().status, 200);
        proxy.finish();
    });
}

#[test]
fn client_key_never_shows_in_responses_or_logs() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let cfg = config(&mock, &format!("api_key = \"{CLIENT_KEY}\""), "");
        let proxy = ProxyCmd::new(d).arg("--config").arg(&cfg).env("RUST_LOG", "debug").start();
        let near = format!("{CLIENT_KEY}0");
        mock.push(Reply::text("ok"));
        mock.push(Reply::sse(openai::text_stream(&["o", "k"])));
        let mut seen = Vec::new();
        let ok = proxy.send(&req_with("POST", "/v1/messages", &[("x-api-key", CLIENT_KEY)], &messages_body()));
        assert_eq!(ok.status, 200);
        seen.push(ok);
        let stream = serde_json::to_vec(&stream_request("hi")).unwrap();
        let bearer = format!("Bearer {CLIENT_KEY}");
        let s = proxy.send(&req_with("POST", "/v1/messages", &[("Authorization", &bearer)], &stream));
        assert_eq!(s.status, 200);
        seen.push(s);
        for auth in [("x-api-key", near.as_str()), ("Authorization", "Bearer nope")] {
            seen.push(refused(&proxy, &req_with("POST", "/v1/messages", &[auth], &messages_body())));
        }
        seen.push(proxy.send(&req_with("GET", "/status", &[("x-api-key", CLIENT_KEY)], b"")));
        seen.push(proxy.send(&req_with("GET", "/nope", &[("x-api-key", CLIENT_KEY)], b"")));
        for r in &seen {
            assert_no_client_key(&r.head.raw, "a response head");
            assert_no_client_key(&r.body, "a response body");
        }
        let log = proxy.stop();
        assert!(log.contains("ccproxy::access") || log.contains("request"), "an access log was written: {log}");
        assert_no_client_key(log.as_bytes(), "the log (RUST_LOG=debug)");
        assert_log_clean(&log);
        // --check-config masks it as well.
        let out = ProxyCmd::new(d).arg("--config").arg(&cfg).arg("--check-config").run_to_exit();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_no_client_key(&out.stdout, "--check-config stdout");
        assert_no_client_key(&out.stderr, "--check-config stderr");
    });
}

// ------------------------------------------------------ loopback default

/// Runs the proxy to exit with `args` (no `--listen` added, no client key
/// in the environment) and returns (success, stderr).
fn run_listen(d: Driver, args: &[&str]) -> (bool, String) {
    let mut cmd = ProxyCmd::new(d).no_listen().env("CCPROXY_API_KEY", "");
    for a in args {
        cmd = cmd.arg(a);
    }
    let out = cmd.run_to_exit();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn non_loopback_listen_without_a_key_is_refused() {
    for_each_driver(|d| {
        for listen in ["0.0.0.0:0", "[::]:0"] {
            let (ok, err) = run_listen(d, &["--listen", listen, "--upstream", "http://127.0.0.1:9/v1"]);
            assert!(!ok, "{listen}: the proxy started without a client key: {err}");
            assert!(err.contains("refusing to listen"), "{listen}: {err}");
            assert!(
                err.contains("api_key") && err.contains("--api-key"),
                "{listen}: the error says how to set a key: {err}"
            );
            assert!(err.contains("allow_remote"), "{listen}: {err}");
        }
        // allow_remote alone is not enough either.
        let cfg = write_config("allow_remote = true\nlisten = \"0.0.0.0:0\"\n");
        let (ok, err) = run_listen(d, &["--config", cfg.to_str().unwrap()]);
        assert!(!ok, "allow_remote without a key started: {err}");
        assert!(err.contains("needs a client key") && err.contains("api_key"), "{err}");
    });
}

#[test]
fn non_loopback_listen_with_a_key_but_no_allow_remote_is_refused() {
    for_each_driver(|d| {
        let (ok, err) = run_listen(d, &["--listen", "0.0.0.0:0", "--api-key", CLIENT_KEY]);
        assert!(!ok, "started on 0.0.0.0 without allow_remote: {err}");
        assert!(err.contains("refusing to listen") && err.contains("allow_remote"), "{err}");
        assert_no_client_key(err.as_bytes(), "the refusal");
    });
}

#[test]
fn non_loopback_listen_with_a_key_and_allow_remote_starts() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let cfg = config(&mock, &format!("allow_remote = true\napi_key = \"{CLIENT_KEY}\""), "");
        let proxy = ProxyCmd::new(d).no_listen().arg("--listen").arg("0.0.0.0:0").arg("--config").arg(&cfg).start();
        assert!(proxy.addr.ip().is_unspecified(), "listening on {}", proxy.addr);
        let local = SocketAddr::from(([127, 0, 0, 1], proxy.addr.port()));
        let send = |raw: &[u8]| {
            let mut c = Client::connect(local);
            c.send(raw);
            c.read_response()
        };
        mock.push(Reply::text("remote ok"));
        let r = send(&req_with("POST", "/v1/messages", &[("x-api-key", CLIENT_KEY)], &messages_body()));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["content"][0]["text"], "remote ok");
        send(&req_with("POST", "/v1/messages", &[], &messages_body())).assert_error(401, "authentication_error");
        assert_eq!(send(&req_with("GET", "/health", &[], b"")).status, 200);
        assert_eq!(mock.request_count(), 1);
        proxy.finish();
    });
}

#[test]
fn loopback_is_the_default_listen_address() {
    for_each_driver(|d| {
        let out = ProxyCmd::new(d).no_listen().env("CCPROXY_API_KEY", "").arg("--check-config").run_to_exit();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("127.0.0.1:3456"), "default listen is loopback: {text}");
    });
}

// ------------------------------------------------------------- timeouts

/// Writes `bytes` one at a time, every 200 ms, until the proxy closes the
/// connection or `stop` is set; a trickling client keeps every single read
/// short, so only a deadline for the whole head/body can end it.
fn trickle(mut s: TcpStream, bytes: Vec<u8>, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for b in bytes.iter().cycle() {
            if stop.load(Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(200));
        }
    })
}

#[test]
fn slowloris_head_is_cut_at_the_header_timeout() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = start_with(d, &mock, "", "header_timeout_secs = 1\nidle_timeout_secs = 30");
        // A partial head, then silence.
        let mut s = TcpStream::connect(proxy.addr).unwrap();
        s.write_all(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: appl").unwrap();
        let got = read_to_close(&mut s);
        assert!(got.is_empty() || got.starts_with(b"HTTP/1.1 4"), "{:?}", String::from_utf8_lossy(&got));

        // A head trickled a byte at a time: each read is quick, the head never ends.
        let mut s = TcpStream::connect(proxy.addr).unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let w = trickle(s.try_clone().unwrap(), b"X-Slow: aaaaaaaa\r\n".to_vec(), stop.clone());
        let got = read_to_close(&mut s);
        stop.store(true, Ordering::Relaxed);
        w.join().unwrap();
        assert!(got.is_empty() || got.starts_with(b"HTTP/1.1 4"), "{:?}", String::from_utf8_lossy(&got));

        assert_health(&proxy);
        assert_eq!(mock.request_count(), 0);
        proxy.finish();
    });
}

#[test]
fn slow_body_is_cut_at_the_body_timeout() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = start_with(d, &mock, "", "body_timeout_secs = 1\nidle_timeout_secs = 30\nheader_timeout_secs = 30");
        let body = messages_body();
        let head = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // Content-Length promises more than ever comes.
        let mut s = TcpStream::connect(proxy.addr).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body[..10]).unwrap();
        let got = read_to_close(&mut s);
        assert_error_or_nothing(&got);

        // Chunked, trickled a byte at a time.
        let mut s = TcpStream::connect(proxy.addr).unwrap();
        s.write_all(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let w = trickle(s.try_clone().unwrap(), b"1\r\n{\r\n".to_vec(), stop.clone());
        let got = read_to_close(&mut s);
        stop.store(true, Ordering::Relaxed);
        w.join().unwrap();
        assert_error_or_nothing(&got);

        assert_health(&proxy);
        assert_eq!(mock.request_count(), 0);
        proxy.finish();
    });
}

/// A timed-out body may be answered with an Anthropic 4xx before the close.
fn assert_error_or_nothing(got: &[u8]) {
    if got.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(got);
    assert!(text.starts_with("HTTP/1.1 4"), "{text}");
    let body = &text[text.find("\r\n\r\n").map(|i| i + 4).unwrap_or(0)..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["type"], "error", "{text}");
}

#[test]
fn idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = start_with(d, &mock, "", "idle_timeout_secs = 1\nheader_timeout_secs = 30");
        let mut c = proxy.client();
        c.send(&request("GET", "/health", &[], b""));
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert!(!r.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")), "{:?}", r.head);
        let after = read_to_close(&mut c.wire.stream);
        assert!(after.is_empty(), "{:?}", String::from_utf8_lossy(&after));
        assert_health(&proxy);
        proxy.finish();
    });
}

// --------------------------------------------------------- size limits

#[test]
fn more_than_max_headers_is_431() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = ProxyCmd::new(d).upstream(&mock).start();
        let names: Vec<String> = (0..100).map(|i| format!("X-Filler-{i}")).collect();
        // Host + 99 = 100 header fields: the default limit, accepted.
        let at: Vec<(&str, &str)> = names[..99].iter().map(|n| (n.as_str(), "v")).collect();
        let r = proxy.send(&request("GET", "/health", &at, b""));
        assert_eq!(r.status, 200, "100 headers: {}", r.text());
        // Host + 100 = 101.
        let over: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        let msg = refused(&proxy, &request("GET", "/health", &over, b"")).assert_error(431, "invalid_request_error");
        assert!(msg.contains("100"), "{msg}");
        assert_health(&proxy);
        proxy.finish();
    });
}

#[test]
fn head_over_max_head_bytes_is_431() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = start_with(d, &mock, "", "max_head_bytes = 2048\nmax_headers = 16");
        let small = "a".repeat(1500);
        let r = proxy.send(&request("GET", "/health", &[("X-Pad", &small)], b""));
        assert_eq!(r.status, 200, "a 1.5 KB head: {}", r.text());
        let big = "a".repeat(2100);
        let msg = refused(&proxy, &request("GET", "/health", &[("X-Pad", &big)], b""))
            .assert_error(431, "invalid_request_error");
        assert!(msg.contains("2048"), "{msg}");
        // A head over the limit that never ends is refused too, without waiting for its end.
        let mut c = proxy.client();
        c.send(format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {big}").as_bytes());
        c.read_response().assert_error(431, "invalid_request_error");
        // Over max_headers = 16 (custom).
        let names: Vec<String> = (0..16).map(|i| format!("X-F-{i}")).collect();
        let over: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        refused(&proxy, &request("GET", "/health", &over, b"")).assert_error(431, "invalid_request_error");
        assert_health(&proxy);
        proxy.finish();
    });
}

#[test]
fn body_over_max_body_bytes_is_413() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = start_with(d, &mock, "max_body_bytes = 2048", "");
        // Exactly at the limit: served (count_tokens needs no upstream).
        let mut at = serde_json::to_vec(&json!({"model": "m", "messages": [{"role": "user", "content": ""}]})).unwrap();
        let pad = 2048 - at.len();
        at = serde_json::to_vec(&json!({"model": "m", "messages": [{"role": "user", "content": "a".repeat(pad)}]}))
            .unwrap();
        assert_eq!(at.len(), 2048);
        let r = proxy.send(&req_with("POST", "/v1/messages/count_tokens", &[], &at));
        assert_eq!(r.status, 200, "{}", r.text());
        // One byte over, by Content-Length.
        let over = vec![b' '; 2049];
        let msg = refused(&proxy, &req_with("POST", "/v1/messages", &[], &over)).assert_error(413, "request_too_large");
        assert!(msg.contains("2048"), "{msg}");
        // Over, chunked: no length up front, refused as it arrives.
        let mut raw = b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        raw.extend(wire::chunked(&vec![b' '; 4096]));
        refused(&proxy, &raw).assert_error(413, "request_too_large");
        assert_eq!(mock.request_count(), 0);
        assert_health(&proxy);
        proxy.finish();
    });
}

// ------------------------------------------------------------ smuggling

#[test]
fn ambiguous_framing_is_400_and_ends_the_connection() {
    with_proxy(|mock, proxy| {
        // Each is followed by a smuggled request that must never be answered.
        let smuggled = "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n";
        let cases = [
            ("CL+TE", format!("POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}")),
            ("TE+CL", format!("POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{smuggled}")),
            ("differing CL", format!("POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 38\r\n\r\n{smuggled}")),
            ("repeated CL", format!("POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{{}}{smuggled}")),
            ("CL list", format!("POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\n{{}}{smuggled}")),
            ("bad chunk size", format!("POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n{smuggled}")),
            ("negative chunk size", format!("POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\n{{}}\r\n0\r\n\r\n{smuggled}")),
            ("overflowing chunk size", format!("POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000002\r\n{{}}\r\n0\r\n\r\n{smuggled}")),
            ("obs-fold", format!("POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\n{{}}{smuggled}")),
            ("obs-fold tab", format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n\tb\r\n\r\n{smuggled}")),
        ];
        for (what, raw) in cases {
            let r = refused(proxy, raw.as_bytes());
            let msg = r.assert_error(400, "invalid_request_error");
            eprintln!("{what}: {msg}");
        }
        assert_eq!(mock.request_count(), 0);
        assert_health(proxy);
    });
}

// ------------------------------------------------------ connection cap

#[test]
fn connections_beyond_the_cap_wait_until_one_closes() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = ProxyCmd::new(d)
            .no_workers()
            .arg("--workers")
            .arg("1")
            .arg("--config")
            .arg(&config(&mock, "", "max_connections_per_worker = 2"))
            .start();
        assert_eq!(proxy.workers, 1);
        // Two connections, each proven served (and kept open).
        let mut c1 = proxy.client();
        let mut c2 = proxy.client();
        for c in [&mut c1, &mut c2] {
            c.send(&request("GET", "/health", &[], b""));
            assert_eq!(c.read_response().status, 200);
        }
        // The third lands in the kernel backlog: connect succeeds, no answer.
        let mut c3 = TcpStream::connect(proxy.addr).unwrap();
        c3.write_all(&request("GET", "/health", &[], b"")).unwrap();
        c3.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
        let mut one = [0u8; 1];
        match c3.peek(&mut one) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("a third connection was served while two were open (cap 2): {other:?}"),
        }
        // c2 still works: the cap blocks accepting, not serving.
        c2.send(&request("GET", "/health", &[], b""));
        assert_eq!(c2.read_response().status, 200);
        // Closing one lets the third in.
        drop(c1);
        c3.set_read_timeout(Some(CLOSE_WAIT)).unwrap();
        let mut w = wire::Wire::new(c3);
        let head = w.read_head().expect("the third connection is served after one closed").expect("a head");
        assert_eq!(head.status(), 200);
        proxy.finish();
    });
}
