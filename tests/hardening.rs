//! Regression tests for defects a review found in the running proxy: JSON
//! nested deep enough to overflow a recursive parser (client and upstream
//! side), an empty upstream error body, HEAD on every GET route, the upstream
//! key cut in half by message truncation or quoted by a config error, a
//! client hanging up before the upstream answers, HTTP/1.0 streaming, a
//! 413 that must reach a client still writing, upstream connection reuse
//! after streams, and a JSON error answered to a streaming request.
//!
//! Receives nothing but the real binary and the scripted mock upstream (plus
//! a silent raw upstream, for the one case the mock cannot script: no head
//! at all); each test asserts the intended behaviour under both drivers.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// How deep the hostile documents nest.
const DEEP: usize = 100_000;

fn deep_array() -> String {
    format!("{}{}", "[".repeat(DEEP), "]".repeat(DEEP))
}

/// Asserts no 8-byte piece of the upstream key shows in `text`: neither its
/// prefix (what a cut keeps) nor any window of its secret tail. Windows that
/// are only "ccproxy-" are skipped: temp paths legitimately contain that.
fn assert_no_key_piece(text: &str, what: &str) {
    let key = TEST_KEY;
    assert!(!text.contains(&key[..8]), "{what} shows a prefix of the upstream key: {text}");
    let tail = &key[11..];
    for i in 0..=tail.len() - 8 {
        let piece = &tail[i..i + 8];
        assert!(!text.contains(piece), "{what} shows the key piece {piece:?}: {text}");
    }
}

/// A config for `mock`, with retries off so each scripted answer is seen once.
fn config_with(mock: &Mock, top: &str, upstream: &str) -> std::path::PathBuf {
    write_config(&format!(
        "retries = 0\n{top}\n[upstream]\nbase_url = \"{}\"\napi_key = \"{TEST_KEY}\"\n{upstream}\n",
        mock.url()
    ))
}

fn assert_alive(proxy: &Proxy) {
    let h = proxy.get("/health");
    assert_eq!(h.status, 200, "the proxy no longer serves /health: {}", h.text());
}

#[test]
fn deeply_nested_client_bodies_are_refused_and_the_proxy_lives() {
    with_proxy(|mock, proxy| {
        let deep = deep_array();
        let messages = format!(
            r#"{{"model":"claude-test-1","max_tokens":16,"messages":[{{"role":"user","content":"x"}}],"extra":{deep}}}"#
        );
        let count =
            format!(r#"{{"model":"claude-test-1","messages":[{{"role":"user","content":"x"}}],"extra":{deep}}}"#);
        for (path, body) in [("/v1/messages", &messages), ("/v1/messages/count_tokens?beta=true", &count)] {
            let r = proxy.send(&post_raw(path, body.as_bytes()));
            let msg = r.assert_error(400, "invalid_request_error");
            assert!(msg.to_lowercase().contains("nest"), "{path}: the message names the nesting: {msg}");
            assert_alive(proxy);
        }
        assert_eq!(mock.request_count(), 0, "refused requests never reach the upstream");
    });
}

#[test]
fn deeply_nested_upstream_stream_chunk_is_an_error_event() {
    with_proxy(|mock, proxy| {
        let line = format!("data: {{\"choices\":[],\"x\":{}}}\n\n", deep_array());
        mock.push(Reply::sse(vec![
            openai::role(),
            openai::text("before"),
            Part::bytes(line),
            openai::finish("stop"),
            openai::done(),
        ]));
        let mut c = proxy.stream(&stream_request("x"));
        let (head, mut events) = c.start_stream();
        assert_eq!(head.status(), 200);
        let all = events.rest();
        let last = all.last().expect("events");
        assert_eq!(last.name(), "error", "the stream ends with an error event: {all:?}");
        assert_eq!(last.json()["error"]["type"], "api_error");
        assert!(!all.iter().any(|e| e.name() == "message_stop"), "{all:?}");
        assert_alive(proxy);
    });
}

#[test]
fn deeply_nested_upstream_body_is_502() {
    with_proxy(|mock, proxy| {
        let body = format!(
            r#"{{"id":"c1","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"hi"}},"finish_reason":"stop"}}],"x":{}}}"#,
            deep_array()
        );
        mock.push(Reply::raw(200, "application/json", body));
        proxy.messages(&simple_request("x")).assert_error(502, "api_error");
        assert_alive(proxy);
    });
}

#[test]
fn upstream_429_with_empty_body_is_answered_at_once() {
    for_each_driver(|d| {
        let mock = Mock::start();
        // The bug waited for a body `Content-Length: 0` says is not coming,
        // until the idle timeout, and only then answered. A read timeout on
        // the client far below the idle timeout turns that regression into a
        // failure within seconds; a correct proxy answers in milliseconds.
        // (With the idle timeout at 5 s the regression would still end in a
        // 429, just late, and pass.)
        let cfg = config_with(&mock, "", "idle_timeout_secs = 120");
        let proxy = ProxyCmd::new(d).arg("--config").arg(cfg.to_str().unwrap()).start();
        for stream in [false, true] {
            mock.push(Reply::raw(429, "application/json", b""));
            let req = if stream { stream_request("x") } else { simple_request("x") };
            let mut c = proxy.client();
            c.wire.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.send(&post_json("/v1/messages", &req));
            c.read_response().assert_error(429, "rate_limit_error");
        }
        proxy.finish();
    });
}

#[test]
fn head_works_on_every_get_route() {
    with_proxy(|mock, proxy| {
        for path in ["/status", "/v1/models"] {
            let mut c = proxy.client();
            // Pipelined: a body after the HEAD answer would corrupt the next.
            let mut raw = request("HEAD", path, &[], b"");
            raw.extend(request("GET", "/health", &[], b""));
            c.send(&raw);
            let r = c.read_head_response();
            assert_eq!(r.status, 200, "HEAD {path}");
            let h = c.read_response();
            assert_eq!(h.status, 200, "GET /health after HEAD {path}: {}", h.text());
            assert_eq!(h.json(), json!({"status": "ok"}), "after HEAD {path}");
        }
        let mut c = proxy.client();
        let mut raw = request("HEAD", "/v2/nothing", &[], b"");
        raw.extend(request("GET", "/health", &[], b""));
        c.send(&raw);
        assert_eq!(c.read_head_response().status, 404);
        let h = c.read_response();
        assert_eq!(h.status, 200, "GET /health after HEAD 404: {}", h.text());
        assert_eq!(h.json(), json!({"status": "ok"}));
        assert_eq!(mock.request_count(), 0);
    });
}

#[test]
fn key_cut_by_error_truncation_never_shows() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = ProxyCmd::new(d).upstream(&mock).start();
        // The key straddles the 1024-byte cut, in a plain body and inside an
        // OpenAI error message.
        for filler in [1000, 1010, 1016, 1020] {
            let text = format!("{}{TEST_KEY} rejected", "x".repeat(filler));
            mock.push(Reply::raw(401, "text/plain", text.clone()));
            mock.push(Reply::openai_error(401, "invalid_api_key", &text));
        }
        for _ in 0..8 {
            let r = proxy.messages(&simple_request("x"));
            assert_eq!(r.status, 401, "{}", r.text());
            assert_no_key_piece(&String::from_utf8_lossy(&r.head.raw), "the response head");
            assert_no_key_piece(&r.text(), "the response body");
        }
        let log = proxy.stop();
        assert_no_key_piece(&log, "the log");
    });
}

#[test]
fn config_syntax_error_does_not_print_the_key() {
    for_each_driver(|d| {
        for line in [
            format!("api_key = \"{TEST_KEY}"),
            format!("api_key = {TEST_KEY}"),
            format!("api_key = \"{TEST_KEY}\" trailing"),
            format!("api_key = '{TEST_KEY}\"\nmodel = 1"),
        ] {
            let cfg = write_config(&format!("[upstream]\nbase_url = \"http://127.0.0.1:9/v1\"\n{line}\n"));
            let out = ProxyCmd::new(d).arg("--config").arg(cfg.to_str().unwrap()).arg("--check-config").run_to_exit();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "a broken config is refused ({line:?}): {stderr}");
            assert_no_key_piece(&stderr, "stderr");
            assert_no_key_piece(&String::from_utf8_lossy(&out.stdout), "stdout");
        }
    });
}

/// An upstream that reads a request and never answers. Reports each request
/// head received, and each connection the proxy then closed.
struct SilentUpstream {
    addr: SocketAddr,
    requests: mpsc::Receiver<()>,
    closed: mpsc::Receiver<()>,
}

impl SilentUpstream {
    fn start() -> SilentUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (req_tx, requests) = mpsc::channel();
        let (closed_tx, closed) = mpsc::channel();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { return };
                let (req_tx, closed_tx) = (req_tx.clone(), closed_tx.clone());
                thread::spawn(move || {
                    // Bounds the thread if the proxy never closes; the test
                    // itself waits far less.
                    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 16384];
                    let mut announced = false;
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return,
                            Err(_) => break,
                        }
                        if !announced && wire::find(&seen, b"\r\n\r\n").is_some() {
                            announced = true;
                            let _ = req_tx.send(());
                        }
                    }
                    let _ = closed_tx.send(());
                });
            }
        });
        SilentUpstream { addr, requests, closed }
    }
}

#[test]
fn client_hanging_up_before_the_upstream_answers_closes_the_upstream() {
    for_each_driver(|d| {
        let up = SilentUpstream::start();
        let proxy = ProxyCmd::new(d)
            .arg("--upstream")
            .arg(&format!("http://{}/v1", up.addr))
            .arg("--upstream-key")
            .arg(TEST_KEY)
            .start();
        for stream in [true, false] {
            let req = if stream { stream_request("x") } else { simple_request("x") };
            let c = proxy.stream(&req);
            up.requests.recv_timeout(Duration::from_secs(10)).expect("the request reached the upstream");
            drop(c);
            assert!(
                up.closed.recv_timeout(Duration::from_secs(10)).is_ok(),
                "stream={stream}: the proxy kept waiting on the upstream after its client hung up"
            );
        }
        assert_alive(&proxy);
        proxy.finish();
    });
}

#[test]
fn http10_client_gets_a_close_delimited_stream() {
    with_proxy(|mock, proxy| {
        mock.push(Reply::sse(openai::text_stream(&["Hel", "lo"])));
        let body = serde_json::to_vec(&stream_request("x")).unwrap();
        let mut raw = format!(
            "POST /v1/messages HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nanthropic-version: 2023-06-01\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend(body);
        let mut c = proxy.client();
        c.send(&raw);
        let head = c.read_head();
        assert_eq!(head.status(), 200);
        assert!(head.header("transfer-encoding").is_none(), "no chunked framing for HTTP/1.0: {head:?}");
        assert_eq!(head.framing(), wire::Framing::Close, "{head:?}");
        let body = c.wire.read_body(wire::Framing::Close).expect("the body ends with EOF");
        let events = parse_sse(&body);
        assert_eq!(events.last().map(|e| e.name()), Some("message_stop"), "{events:?}");
        let acc = accumulate(&events);
        assert_eq!(acc.content(), &vec![json!({"type": "text", "text": "Hello"})]);
    });
}

#[test]
fn too_large_body_written_in_full_still_reads_413() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let cfg = config_with(&mock, "max_body_bytes = 2048", "");
        let proxy = ProxyCmd::new(d).arg("--config").arg(cfg.to_str().unwrap()).start();
        let req = simple_request(&"x".repeat(3 << 20));
        let raw = post_json("/v1/messages", &req);
        let mut c = proxy.client();
        c.wire.stream.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        // Like an SDK, the whole request is written before anything is read.
        // The proxy refuses from the head alone; the test waits (peeking,
        // without consuming) until that answer is here, so the rest of the
        // body always arrives after the refusal: a proxy that closes at once
        // resets the connection under the client's feet.
        let (head_and_some, rest) = raw.split_at(64 * 1024);
        c.wire.stream.write_all(head_and_some).unwrap();
        let mut peek = [0u8; 1];
        assert_eq!(c.wire.stream.peek(&mut peek).expect("the 413 arrives while the client writes"), 1);
        c.wire.stream.write_all(rest).expect("the proxy drains the refused body instead of resetting");
        c.read_response().assert_error(413, "request_too_large");
        assert_eq!(mock.request_count(), 0);
        proxy.finish();
    });
}

#[test]
fn streams_reuse_the_upstream_connection() {
    with_proxy(|mock, proxy| {
        // The upstream's last chunk (`0\r\n\r\n`) is held until the client
        // has its message_stop, so a proxy that stops reading at `[DONE]`
        // never sees the body end and cannot pool the connection.
        let mut gates = Vec::new();
        for word in ["one", "two"] {
            let (go_tx, go_rx) = mpsc::channel();
            let mut parts = openai::text_stream(&[word]);
            parts.push(Part::Wait(go_rx));
            mock.push(Reply::sse(parts));
            gates.push(go_tx);
        }
        let mut c = proxy.client();
        for (word, go) in ["one", "two"].into_iter().zip(gates) {
            c.send(&post_json("/v1/messages", &stream_request("x")));
            let (head, mut events) = c.start_stream();
            assert_eq!(head.status(), 200);
            let mut all = events.until("message_stop");
            go.send(()).unwrap();
            all.extend(events.rest());
            assert_eq!(accumulate(&all).content(), &vec![json!({"type": "text", "text": word})]);
        }
        let conns: Vec<usize> = mock.requests().iter().map(|r| r.conn).collect();
        assert_eq!(conns.len(), 2);
        assert_eq!(conns[0], conns[1], "the second stream opened a new upstream connection");
        assert_eq!(mock.connections(), 1);
    });
}

#[test]
fn json_error_answered_to_a_stream_keeps_the_upstream_message() {
    with_proxy(|mock, proxy| {
        let err = json!({"error": {"message": "model zorblax-9 is not available", "type": "invalid_request_error",
            "code": "model_not_found"}});
        mock.push(Reply::json(200, &err));
        let mut c = proxy.stream(&stream_request("x"));
        let r = c.read_response();
        assert!(r.status >= 400, "status {}: {}", r.status, r.text());
        let ct = r.header("content-type").unwrap_or("");
        assert!(ct.starts_with("application/json"), "content-type {ct:?}: {}", r.text());
        let v: Value = r.json();
        assert_eq!(v["type"], "error", "{v}");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains("zorblax-9 is not available"), "the upstream message is kept: {v}");
    });
}

#[test]
fn endless_upstream_sse_line_ends_the_stream_with_an_error() {
    with_proxy(|mock, proxy| {
        // Close-delimited, no line ending ever: the proxy used to buffer it
        // all (262 MB of it grew the process to 520 MB).
        let mut parts = vec![openai::role()];
        for _ in 0..40 {
            parts.push(Part::bytes(vec![b'x'; 1 << 20]));
        }
        mock.push(Reply::sse(parts).framing(Framing::Close));
        let mut c = proxy.stream(&stream_request("x"));
        let (head, mut events) = c.start_stream();
        assert_eq!(head.status(), 200);
        let all = events.rest();
        let last = all.last().expect("events");
        assert_eq!(last.name(), "error", "{all:?}");
        let err = last.json();
        assert_eq!(err["error"]["type"], "api_error");
        assert!(err["error"]["message"].as_str().unwrap_or("").contains("16 MiB"), "{err}");
        assert_alive(proxy);
    });
}
