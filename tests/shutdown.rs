//! Graceful shutdown on SIGTERM/SIGINT and the JSON log format (issue 5).
//!
//! Receives nothing but the real binary, started under both monoio drivers,
//! and the scripted mock upstream, which holds a stream open at a gate so
//! that the signal provably arrives mid-stream. Asserts that the stream
//! still completes, that no new connection is served once shutdown began,
//! and that the process exits 0; and that `--log-format json` writes one
//! JSON object per line, the access event with all its fields.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use common::proxy::assert_log_clean;
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
/// A connection made during the drain that neither answers nor closes
/// within this long is held (the drain itself lasts until the test says go).
const HELD: Duration = Duration::from_secs(3);

/// What a connection attempted now gets: `None` when it is refused, or
/// closed without an answer; otherwise a description of what went wrong.
fn served_or_held(proxy: &Proxy) -> Option<String> {
    let mut s = match TcpStream::connect(proxy.addr) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => return None,
        Err(e) => return Some(format!("connect failed oddly: {e}")),
    };
    let _ = s.write_all(&request("GET", "/health", &[], b""));
    s.set_read_timeout(Some(HELD)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            // Sockets with a receive timeout fail with EINTR after a stop/continue.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Some(format!(
                    "held open {HELD:?} with no answer and no close (received {:?})",
                    String::from_utf8_lossy(&got)
                ))
            }
            Err(e) => return Some(format!("read failed oddly: {e}")),
        }
    }
    (!got.is_empty()).then(|| format!("served: {:?}", String::from_utf8_lossy(&got)))
}

/// A scripted stream held at a gate: (reply, "first half flushed", "go").
fn held_stream() -> (Reply, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (flushed_tx, flushed_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let reply = Reply::sse(vec![
        openai::role(),
        openai::text("Hel"),
        Part::Signal(flushed_tx),
        Part::Wait(go_rx),
        openai::text("lo"),
        openai::finish("stop"),
        openai::usage(5, 2, 0),
        openai::done(),
    ]);
    (reply, flushed_rx, go_tx)
}

fn stream_survives_signal(sig: i32, name: &str) {
    for_each_driver(|d| {
        let mock = Mock::start();
        let mut proxy = ProxyCmd::new(d).upstream(&mock).start();
        let (reply, flushed_rx, go_tx) = held_stream();
        mock.push(reply);
        let mut c = proxy.stream(&stream_request("x"));
        let (head, mut events) = c.start_stream();
        assert_eq!(head.status(), 200);
        flushed_rx.recv_timeout(WAIT).expect("the mock sent the first half");
        let mut all = events.until("content_block_delta");

        proxy.signal(sig);
        // The signal provably arrived while the stream was held open.
        assert!(proxy.wait_log("shutting down", WAIT), "{name}: no shutdown line; log:\n{}", proxy.log());

        go_tx.send(()).unwrap();
        all.extend(events.rest());
        let pairs = event_pairs(&all);
        assert_eq!(pairs.last().map(|p| p.0.as_str()), Some("message_stop"), "{name}: {pairs:?}");
        let acc = accumulate(&all);
        assert_eq!(acc.content(), &vec![json!({"type": "text", "text": "Hello"})], "{name}");
        // The connection is not kept alive past its last request.
        assert!(c.is_closed(), "{name}: the connection stayed open after the stream during shutdown");

        let status = proxy.wait_exit(WAIT);
        assert_eq!(status.code(), Some(0), "{name}: exit status {status:?}; log:\n{}", proxy.log());
        let log = proxy.log();
        assert!(log.contains("shutdown complete"), "{log}");
        assert!(!log.contains("grace expired"), "{log}");
        assert_log_clean(&log);
        assert_eq!(mock.request_count(), 1);
    });
}

#[test]
fn sigterm_lets_a_stream_in_flight_finish_and_exits_0() {
    stream_survives_signal(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigint_lets_a_stream_in_flight_finish_and_exits_0() {
    stream_survives_signal(libc::SIGINT, "SIGINT");
}

#[test]
fn no_new_connection_is_served_once_shutdown_began() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let mut proxy = ProxyCmd::new(d).upstream(&mock).start();
        let (reply, flushed_rx, go_tx) = held_stream();
        mock.push(reply);
        let mut c = proxy.stream(&stream_request("x"));
        let (_, mut events) = c.start_stream();
        flushed_rx.recv_timeout(WAIT).expect("the mock sent the first half");
        proxy.signal(libc::SIGTERM);
        assert!(proxy.wait_log("shutting down", WAIT), "log:\n{}", proxy.log());

        let mut problems = Vec::new();
        // Right after the signal: refused, or closed unanswered.
        if let Some(p) = served_or_held(&proxy) {
            problems.push(format!("a connection made right after SIGTERM was {p}"));
        }
        // And within a bounded time the port is closed: refused, not queued.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let refused = loop {
            match TcpStream::connect(proxy.addr) {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => break true,
                _ if std::time::Instant::now() > deadline => break false,
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        if !refused {
            problems
                .push("3 s after SIGTERM, with a stream draining, connections are still queued, not refused".into());
        }

        // The stream in flight is unaffected, and the exit is clean.
        go_tx.send(()).unwrap();
        let all = events.rest();
        assert_eq!(all.last().map(|e| e.name()), Some("message_stop"), "{all:?}");
        let status = proxy.wait_exit(WAIT);
        assert_eq!(status.code(), Some(0), "{status:?}");
        assert!(problems.is_empty(), "driver {}:\n  {}", d.name(), problems.join("\n  "));
    });
}

#[test]
fn idle_proxy_exits_0_on_sigterm_and_stops_listening() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let mut proxy = ProxyCmd::new(d).upstream(&mock).start();
        // An idle keep-alive connection does not hold the shutdown up.
        let mut idle = proxy.client();
        idle.send(&request("GET", "/health", &[], b""));
        assert_eq!(idle.read_response().status, 200);
        proxy.signal(libc::SIGTERM);
        let status = proxy.wait_exit(WAIT);
        assert_eq!(status.code(), Some(0), "{status:?}");
        assert!(idle.is_closed());
        let e = TcpStream::connect(proxy.addr).expect_err("nothing listens after exit");
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    });
}

/// The fields of a tracing JSON line (flattened or under `fields`).
fn fields(v: &Value) -> &Value {
    v.get("fields").unwrap_or(v)
}

#[test]
fn log_format_json_writes_one_object_per_line_with_the_access_fields() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = ProxyCmd::new(d).upstream(&mock).arg("--log-format").arg("json").start();
        mock.push(Reply::text("hello"));
        assert_eq!(proxy.messages(&simple_request("x")).status, 200);
        mock.push(Reply::sse(openai::text_stream(&["a", "b"])));
        let mut c = proxy.stream(&stream_request("x"));
        let (_, mut events) = c.start_stream();
        events.rest();
        proxy.get("/nope");
        // Access events are written after the answer; wait for the third.
        let deadline = std::time::Instant::now() + WAIT;
        while proxy.log().matches("ccproxy::access").count() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let log = proxy.stop();
        let mut access = Vec::new();
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
            assert!(v.is_object(), "{line}");
            assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
            if v["target"] == "ccproxy::access" {
                access.push(v);
            }
        }
        assert_eq!(access.len(), 3, "{log}");
        let ok = fields(&access[0]);
        assert_eq!(ok["route"], "messages", "{ok}");
        assert_eq!(ok["status"], 200, "{ok}");
        assert_eq!(ok["model"], "claude-test-1", "{ok}");
        assert_eq!(ok["stream"], false, "{ok}");
        assert_eq!(ok["input_tokens"], 11, "{ok}");
        assert_eq!(ok["output_tokens"], 7, "{ok}");
        assert_eq!(ok["stop_reason"], "end_turn", "{ok}");
        assert!(ok["upstream"].as_str().is_some_and(|u| !u.is_empty()), "{ok}");
        for k in ["dur_us", "ttfb_us", "retries"] {
            assert!(ok[k].is_u64(), "{k} in {ok}");
        }
        assert!(ok["dur_us"].as_u64().unwrap() >= ok["ttfb_us"].as_u64().unwrap(), "{ok}");
        let st = fields(&access[1]);
        assert_eq!(st["route"], "messages", "{st}");
        assert_eq!(st["stream"], true, "{st}");
        assert_eq!(st["status"], 200, "{st}");
        let nf = fields(&access[2]);
        assert_eq!(nf["route"], "not_found", "{nf}");
        assert_eq!(nf["status"], 404, "{nf}");
        assert_eq!(nf["error_type"], "not_found_error", "{nf}");
        assert!(nf["dur_us"].is_u64(), "{nf}");
        assert_log_clean(&log);
    });
}
