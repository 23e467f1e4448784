//! The proxy's HTTP/1.1 server and its local endpoints, byte for byte:
//! keep-alive, pipelining, chunked request bodies, `Expect: 100-continue`,
//! size limits, `HEAD /`, `/health`, `/status`, `/v1/models` and
//! `count_tokens` (which must never reach the upstream). Both drivers.

mod common;

use common::*;
use serde_json::{json, Value};

#[test]
fn keep_alive_several_requests_on_one_connection() {
    with_proxy(|mock, proxy| {
        mock.push(Reply::text("first"));
        mock.push(Reply::text("second"));
        let mut c = proxy.client();
        c.send(&request("GET", "/health", &[], b""));
        assert_eq!(c.read_response().json(), json!({"status": "ok"}));
        c.send(&post_json("/v1/messages", &simple_request("a")));
        assert_eq!(c.read_response().json()["content"][0]["text"], "first");
        c.send(&post_json("/v1/messages/count_tokens", &simple_request("a")));
        assert!(c.read_response().json()["input_tokens"].as_u64().unwrap() > 0);
        c.send(&post_json("/v1/messages?beta=true", &simple_request("b")));
        let r = c.read_response();
        assert_eq!(r.json()["content"][0]["text"], "second");
        assert_ne!(r.header("connection").map(str::to_ascii_lowercase).as_deref(), Some("close"));
        c.send(&request("GET", "/v1/models", &[], b""));
        assert_eq!(c.read_response().status, 200);
        assert_eq!(mock.request_count(), 2);
    });
}

#[test]
fn pipelined_requests_in_one_write() {
    with_proxy(|mock, proxy| {
        mock.push(Reply::text("piped"));
        let mut all = request("GET", "/health", &[], b"");
        all.extend(post_json("/v1/messages", &simple_request("p")));
        all.extend(request("GET", "/v2/none", &[], b""));
        all.extend(request("GET", "/health", &[], b""));
        let mut c = proxy.client();
        c.send(&all);
        let r1 = c.read_response();
        assert_eq!(r1.json(), json!({"status": "ok"}));
        let r2 = c.read_response();
        assert_eq!(r2.status, 200, "{}", r2.text());
        assert_eq!(r2.json()["content"][0]["text"], "piped");
        c.read_response().assert_error(404, "not_found_error");
        assert_eq!(c.read_response().json(), json!({"status": "ok"}));
    });
}

#[test]
fn chunked_request_body() {
    with_proxy(|mock, proxy| {
        mock.push(Reply::text("chunky"));
        let body = serde_json::to_vec(&simple_request("sent in chunks ✓")).unwrap();
        let mut c = proxy.client();
        let head = "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                    anthropic-version: 2023-06-01\r\nTransfer-Encoding: chunked\r\n\r\n";
        c.send(head.as_bytes());
        // Split inside the multi-byte character too.
        let pieces = [&body[..10], &body[10..body.len() - 5], &body[body.len() - 5..]];
        for p in pieces {
            c.send(&wire::chunk(p));
        }
        c.send(b"0\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["content"][0]["text"], "chunky");
        assert_eq!(openai_text(&mock.last_body()["messages"][0]["content"]), "sent in chunks ✓");
        // The connection is still usable after a chunked body.
        c.send(&request("GET", "/health", &[], b""));
        assert_eq!(c.read_response().status, 200);
    });
}

#[test]
fn expect_100_continue() {
    with_proxy(|mock, proxy| {
        mock.push(Reply::text("continued"));
        let body = serde_json::to_vec(&simple_request("x")).unwrap();
        let mut c = proxy.client();
        let head = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        );
        c.send(head.as_bytes());
        let interim = c.read_any_head();
        assert_eq!(interim.status(), 100, "the proxy must answer 100 Continue before the body is sent");
        c.send(&body);
        let r = c.read_response();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["content"][0]["text"], "continued");
    });
}

#[test]
fn head_root_and_health() {
    with_proxy(|mock, proxy| {
        let mut c = proxy.client();
        c.send(&request("HEAD", "/", &[], b""));
        let r = c.read_head_response();
        assert_eq!(r.status, 200);
        // No body bytes may follow a HEAD answer: the next response on the
        // same connection must parse cleanly.
        c.send(&request("GET", "/health", &[], b""));
        let h = c.read_response();
        assert_eq!(h.status, 200);
        assert!(h.header("content-type").unwrap_or("").starts_with("application/json"));
        assert_eq!(h.json(), json!({"status": "ok"}));
        assert_eq!(mock.request_count(), 0);
    });
}

/// Finds a numeric field whose name mentions requests, anywhere in `v`.
fn requests_counter(v: &Value) -> Option<u64> {
    match v {
        Value::Object(o) => o.iter().find_map(|(k, x)| {
            if k.contains("request") {
                if let Some(n) = x.as_u64() {
                    return Some(n);
                }
            }
            requests_counter(x)
        }),
        _ => None,
    }
}

#[test]
fn status_endpoint() {
    with_proxy(|mock, proxy| {
        mock.push(Reply::text("x"));
        assert_eq!(proxy.messages(&simple_request("x")).status, 200);
        let r = proxy.get("/status");
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
        assert!(v["uptime_secs"].is_number() || v["uptime"].is_number() || v["uptime_seconds"].is_number(), "{v}");
        assert_eq!(v["workers"], 2, "{v}");
        assert_eq!(v["driver"], proxy.driver.as_str(), "{v}");
        assert!(v["upstream"].to_string().contains(&mock.addr.to_string()), "{v}");
        let served = requests_counter(&v).unwrap_or_else(|| panic!("no requests-served counter in {v}"));
        assert!(served >= 1, "{v}");
        assert_eq!(mock.request_count(), 1);
    });
}

#[test]
fn models_endpoint() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = ProxyCmd::new(d).upstream(&mock).arg("--model").arg("my-upstream-model").start();
        let r = proxy.get("/v1/models");
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let data = v["data"].as_array().unwrap_or_else(|| panic!("no data array: {v}"));
        assert!(!data.is_empty(), "{v}");
        for m in data {
            assert_eq!(m["type"], "model", "{m}");
            assert!(m["id"].is_string(), "{m}");
            assert!(m["display_name"].is_string(), "{m}");
            assert!(m["created_at"].is_string(), "{m}");
        }
        assert!(data.iter().any(|m| m["id"] == "my-upstream-model"), "{v}");
        assert_eq!(v["has_more"], false);
        assert_eq!(v["first_id"], data[0]["id"]);
        assert_eq!(v["last_id"], data[data.len() - 1]["id"]);
        let r = proxy.get("/v1/models?limit=20");
        assert_eq!(r.status, 200);
        assert_eq!(mock.request_count(), 0);
        proxy.finish();
    });
}

#[test]
fn count_tokens_is_local_and_counts_everything() {
    with_proxy(|mock, proxy| {
        let count = |req: &Value, path: &str| -> u64 {
            let r = proxy.send(&post_json(path, req));
            assert_eq!(r.status, 200, "{}", r.text());
            let v = r.json();
            assert_eq!(v.as_object().unwrap().len(), 1, "only input_tokens: {v}");
            v["input_tokens"].as_u64().unwrap_or_else(|| panic!("{v}"))
        };
        let base = json!({"model": "claude-test-1", "messages": [{"role": "user", "content": "Hello, world"}]});
        let n0 = count(&base, "/v1/messages/count_tokens");
        assert!(n0 > 0);
        assert_eq!(count(&base, "/v1/messages/count_tokens?beta=true"), n0, "deterministic");

        let mut with_system = base.clone();
        with_system["system"] = json!([{"type": "text", "text": "You are a careful assistant who reads every file."}]);
        let n1 = count(&with_system, "/v1/messages/count_tokens");
        assert!(n1 > n0, "system counted: {n1} vs {n0}");

        let mut with_tools = with_system.clone();
        with_tools["tools"] = json!([{"name": "Bash", "description": "Runs a shell command and returns its output",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}]);
        let n2 = count(&with_tools, "/v1/messages/count_tokens");
        assert!(n2 > n1, "tool definitions counted: {n2} vs {n1}");

        let mut with_history = with_tools.clone();
        with_history["messages"] = json!([
            {"role": "user", "content": "Hello, world"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash",
                "input": {"command": "find / -name '*.rs' -newer Cargo.toml | xargs grep -l tokio"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                "content": "src/main.rs\nsrc/lib.rs\nsrc/server/worker.rs\nsrc/upstream/pool.rs"}]}
        ]);
        let n3 = count(&with_history, "/v1/messages/count_tokens");
        assert!(n3 > n2 + 20, "tool inputs and results counted: {n3} vs {n2}");

        // Roughly proportional to the text: 1000 repetitions of a word is
        // hundreds of tokens, not a hard-coded guess.
        let long = json!({"model": "claude-test-1", "messages": [{"role": "user", "content": "token ".repeat(1000)}]});
        let n4 = count(&long, "/v1/messages/count_tokens");
        assert!((900..=1200).contains(&n4), "{n4}");

        let r = proxy.send(&post_raw("/v1/messages/count_tokens", b"{nope"));
        r.assert_error(400, "invalid_request_error");
        assert_eq!(mock.request_count(), 0, "count_tokens never calls the upstream");
    });
}

#[test]
fn head_over_64k_is_431() {
    with_proxy(|mock, proxy| {
        let mut c = proxy.client();
        let big = "a".repeat(8000);
        let mut head = String::from("POST /v1/messages HTTP/1.1\r\nHost: x\r\n");
        for i in 0..10 {
            head.push_str(&format!("X-Filler-{i}: {big}\r\n"));
        }
        head.push_str("Content-Length: 2\r\n\r\n{}");
        // The proxy may answer and close before reading everything.
        let _ = c.try_send(head.as_bytes());
        let r = c.read_response();
        assert_eq!(r.status, 431, "{}", r.text());
        let v = r.json();
        assert_eq!(v["type"], "error", "{v}");
        assert!(v["error"]["type"].is_string() && v["error"]["message"].is_string(), "{v}");
        assert_eq!(mock.request_count(), 0);

        // A big but legal head (under 64 KiB) is fine.
        mock.push(Reply::text("ok"));
        let filler = "b".repeat(40_000);
        let body = serde_json::to_vec(&simple_request("x")).unwrap();
        let r = proxy.send(&request(
            "POST",
            "/v1/messages",
            &[("X-Filler", &filler), ("Content-Type", "application/json")],
            &body,
        ));
        assert_eq!(r.status, 200, "{}", r.text());
    });
}

#[test]
fn body_over_max_body_bytes_is_413() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let cfg = write_config(&format!(
            "max_body_bytes = 2048\n\n[upstream]\nbase_url = \"{}\"\napi_key = \"{TEST_KEY}\"\n",
            mock.url()
        ));
        let proxy = ProxyCmd::new(d).arg("--config").arg(cfg.to_str().unwrap()).start();
        let mut req = simple_request(&"x".repeat(4000));
        let r = proxy.messages(&req);
        r.assert_error(413, "request_too_large");

        // Chunked bodies are limited too.
        let body = serde_json::to_vec(&req).unwrap();
        let mut c = proxy.client();
        let head = "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut raw = head.as_bytes().to_vec();
        raw.extend(wire::chunk(&body[..1500]));
        raw.extend(wire::chunk(&body[1500..]));
        raw.extend(b"0\r\n\r\n");
        let _ = c.try_send(&raw);
        c.read_response().assert_error(413, "request_too_large");

        // Under the limit: served.
        mock.push(Reply::text("small"));
        req = simple_request("small");
        assert_eq!(proxy.messages(&req).status, 200);
        assert_eq!(mock.request_count(), 1);
        proxy.finish();
    });
}

#[test]
fn connection_close_and_malformed_requests() {
    with_proxy(|mock, proxy| {
        let mut c = proxy.client();
        c.send(&request("GET", "/health", &[("Connection", "close")], b""));
        assert_eq!(c.read_response().status, 200);
        assert!(c.is_closed(), "the proxy must close after answering `Connection: close`");

        let r = proxy.send(b"THIS IS NOT HTTP\r\n\r\n");
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["type"], "error");

        // Request smuggling shape: both Content-Length and chunked.
        let body = serde_json::to_vec(&simple_request("x")).unwrap();
        let mut raw = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend(wire::chunked(&body));
        let r = proxy.send(&raw);
        r.assert_error(400, "invalid_request_error");
        assert_eq!(mock.request_count(), 0);
    });
}

/// A keep-alive connection left idle past the hot window parks: its read
/// is cancelled and its buffers are released. The next request on it must
/// be served exactly as on a busy connection, streamed or not, large or not,
/// and then again after parking a second time.
#[test]
fn parked_keep_alive_connection_serves_its_next_requests() {
    with_proxy(|mock, proxy| {
        let long = "x".repeat(200_000);
        mock.push(Reply::text("after parking"));
        mock.push(Reply::sse(openai::text_stream(&["str", "eamed"])));
        mock.push(Reply::text("large after parking"));
        let mut c = proxy.client();
        c.send(&request("GET", "/health", &[], b""));
        assert_eq!(c.read_response().status, 200);
        std::thread::sleep(std::time::Duration::from_millis(600));
        c.send(&post_json("/v1/messages", &simple_request("one")));
        assert_eq!(c.read_response().json()["content"][0]["text"], "after parking");
        std::thread::sleep(std::time::Duration::from_millis(600));
        c.send(&post_json("/v1/messages", &stream_request("two")));
        let acc = accumulate(&c.read_response().events());
        assert_eq!(acc.content(), &vec![json!({"type": "text", "text": "streamed"})]);
        assert!(acc.saw_message_stop);
        std::thread::sleep(std::time::Duration::from_millis(600));
        c.send(&post_json("/v1/messages", &simple_request(&long)));
        assert_eq!(c.read_response().json()["content"][0]["text"], "large after parking");
        assert_eq!(openai_text(&mock.last_body()["messages"][0]["content"]), long);
        assert_eq!(mock.request_count(), 3);
        // It really parked, once per idle gap. Closed first, so it cannot
        // park a fourth time while the status query runs on a busy machine
        // (the query's own connection is fresh and does not idle).
        drop(c);
        let status = proxy.get("/status").json();
        assert_eq!(status["connections_parked"], 3, "{status}");
    });
}

/// Requests sent around the moment the idle read is cancelled (the hot
/// window is 250 ms): bytes that land in the cancelled read must not be
/// lost, so every one of these connections gets its answer.
#[test]
fn requests_racing_the_park_are_not_lost() {
    with_proxy(|_mock, proxy| {
        let threads: Vec<_> = (0..24u64)
            .map(|i| {
                let mut c = proxy.client();
                std::thread::spawn(move || {
                    c.send(&request("GET", "/health", &[], b""));
                    assert_eq!(c.read_response().status, 200);
                    // 226 ms to 272 ms after the answer, 2 ms apart.
                    std::thread::sleep(std::time::Duration::from_millis(226 + 2 * i));
                    c.send(&request("GET", "/v1/models", &[], b""));
                    assert_eq!(c.read_response().status, 200, "connection {i}");
                    c.send(&request("GET", "/health", &[], b""));
                    assert_eq!(c.read_response().json(), json!({"status": "ok"}));
                })
            })
            .collect();
        for t in threads {
            t.join().expect("client thread");
        }
    });
}
