//! Streaming `POST /v1/messages` through the real proxy: OpenAI SSE from the
//! mock, Anthropic SSE at the client, checked against the SDK's rules
//! (`accumulate`). Incremental delivery is proven with gates in the mock
//! script, never with timing. Every test runs under both drivers.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Sends a streaming request and reads the whole answer.
fn stream_all(proxy: &Proxy, req: &Value) -> (Response, Accumulated) {
    let mut c = proxy.stream(req);
    let r = c.read_response();
    proxy::assert_no_key(&r.body);
    assert_eq!(r.status, 200, "{}", r.text());
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("text/event-stream"), "content-type {ct:?}");
    assert_canonical_sse(&r.body);
    let acc = accumulate(&r.events());
    (r, acc)
}

/// Every event is exactly `event: NAME\ndata: ONE-LINE-JSON\n\n`, the form
/// every SSE client parses the same way.
fn assert_canonical_sse(body: &[u8]) {
    let text = std::str::from_utf8(body).expect("UTF-8 stream");
    assert!(text.ends_with("\n\n"), "stream does not end with a blank line: {text:?}");
    for block in text[..text.len() - 2].split("\n\n") {
        let lines: Vec<&str> = block.split('\n').collect();
        assert_eq!(lines.len(), 2, "event block is not `event:` + `data:`: {block:?}");
        let name = lines[0].strip_prefix("event: ").unwrap_or_else(|| panic!("no `event: ` line first: {block:?}"));
        let data = lines[1].strip_prefix("data: ").unwrap_or_else(|| panic!("no `data: ` line second: {block:?}"));
        let v: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("data is not JSON ({e}): {block:?}"));
        assert_eq!(v["type"], name, "{block:?}");
    }
}

#[test]
fn text_events_are_flushed_incrementally() {
    with_proxy(|mock, proxy| {
        let (go_tx, go_rx) = mpsc::channel();
        let mut parts = vec![openai::role(), openai::text("Hel"), Part::Wait(go_rx)];
        parts.extend([
            openai::text("lo"),
            openai::text(" wörld"),
            openai::finish("stop"),
            openai::usage(12, 5, 0),
            openai::done(),
        ]);
        mock.push(Reply::sse(parts));
        let mut c = proxy.stream(&stream_request("hi"));
        let (head, mut events) = c.start_stream();
        assert_eq!(head.status(), 200);
        assert!(head.header("content-type").unwrap_or("").starts_with("text/event-stream"));
        // The mock is now blocked on the gate: everything up to the first
        // delta must already be here.
        let early = events.until("content_block_delta");
        let first = early.last().unwrap().json();
        assert_eq!(first["delta"], json!({"type": "text_delta", "text": "Hel"}));
        go_tx.send(()).unwrap();
        let mut all = early;
        all.extend(events.rest());
        proxy::assert_no_key(&events.raw);
        assert_canonical_sse(&events.raw);
        let acc = accumulate(&all);
        let names: Vec<&str> = acc.names.iter().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(acc.content(), &vec![json!({"type": "text", "text": "Hello wörld"})]);
        assert_eq!(acc.stop_reason.as_deref(), Some("end_turn"));
        assert_eq!(acc.usage()["output_tokens"], 5);
        assert_eq!(acc.usage()["input_tokens"], 12);

        let up = mock.only_request().body;
        assert_eq!(up["stream"], true);
        assert_eq!(up["stream_options"], json!({"include_usage": true}));
    });
}

#[test]
fn upstream_framings_all_stream() {
    with_proxy(|mock, proxy| {
        for framing in [Framing::Chunked, Framing::Close, Framing::ContentLength] {
            mock.push(Reply::sse(openai::text_stream(&["a", "b", "c"])).framing(framing));
            let (_, acc) = stream_all(proxy, &stream_request("x"));
            assert_eq!(acc.content(), &vec![json!({"type": "text", "text": "abc"})], "{framing:?}");
            assert_eq!(acc.stop_reason.as_deref(), Some("end_turn"), "{framing:?}");
        }
    });
}

#[test]
fn tool_call_with_fragmented_arguments() {
    with_proxy(|mock, proxy| {
        let frags = ["", "{\"comm", "and\": \"ls -", "la ü\"", ", \"timeout\": 5}"];
        let mut parts = vec![openai::role(), openai::text("Let me check.")];
        parts.push(openai::tool_start(0, "call_abc123", "Bash", frags[0]));
        parts.extend(frags[1..].iter().map(|f| openai::tool_args(0, f)));
        parts.extend([openai::finish("tool_calls"), openai::usage(40, 17, 0), openai::done()]);
        mock.push(Reply::sse(parts));
        let (_, acc) = stream_all(proxy, &stream_request("list files"));
        let c = acc.content();
        assert_eq!(c.len(), 2, "{:?}", acc.message);
        assert_eq!(c[0], json!({"type": "text", "text": "Let me check."}));
        assert_eq!(c[1]["type"], "tool_use");
        assert_eq!(c[1]["id"], "call_abc123");
        assert_eq!(c[1]["name"], "Bash");
        assert_eq!(c[1]["input"], json!({"command": "ls -la ü", "timeout": 5}));
        assert_eq!(
            acc.partial_json[1],
            frags.concat(),
            "fragments concatenate to the upstream arguments byte for byte"
        );
        assert_eq!(acc.stop_reason.as_deref(), Some("tool_use"));
        assert_eq!(acc.usage()["output_tokens"], 17);
    });
}

#[test]
fn tool_arguments_are_forwarded_as_they_arrive() {
    with_proxy(|mock, proxy| {
        let (go_tx, go_rx) = mpsc::channel();
        let parts = vec![
            openai::role(),
            openai::tool_start(0, "call_x", "Bash", "{\"command\":"),
            Part::Wait(go_rx),
            openai::tool_args(0, "\"pwd\"}"),
            openai::finish("tool_calls"),
            openai::usage(5, 5, 0),
            openai::done(),
        ];
        mock.push(Reply::sse(parts));
        let mut c = proxy.stream(&stream_request("where"));
        let (_, mut events) = c.start_stream();
        let mut early = events.until("content_block_start");
        // The first fragment must arrive while the upstream is still silent
        // (an empty first input_json_delta is allowed before it).
        let mut got = String::new();
        while got.is_empty() {
            let e = events.expect_event();
            if e.name() == "content_block_delta" {
                got.push_str(e.json()["delta"]["partial_json"].as_str().unwrap_or(""));
            }
            early.push(e);
        }
        assert_eq!(got, "{\"command\":");
        go_tx.send(()).unwrap();
        early.extend(events.rest());
        let acc = accumulate(&early);
        assert_eq!(acc.content()[0]["input"], json!({"command": "pwd"}));
    });
}

#[test]
fn parallel_tool_calls_interleaved_by_index() {
    with_proxy(|mock, proxy| {
        let parts = vec![
            openai::role(),
            openai::tool_start(0, "call_a", "Read", ""),
            openai::tool_start(1, "call_b", "Grep", "{\"pat"),
            openai::tool_args(0, "{\"path\":"),
            openai::tool_args(1, "tern\":\"fn main\"}"),
            openai::tool_args(0, "\"src/main.rs\"}"),
            openai::finish("tool_calls"),
            openai::usage(50, 30, 0),
            openai::done(),
        ];
        mock.push(Reply::sse(parts));
        let (_, acc) = stream_all(proxy, &stream_request("look"));
        let c = acc.content();
        assert_eq!(c.len(), 2, "{:?}", acc.message);
        assert_eq!((c[0]["id"].as_str(), c[0]["name"].as_str()), (Some("call_a"), Some("Read")));
        assert_eq!(c[0]["input"], json!({"path": "src/main.rs"}));
        assert_eq!(acc.partial_json[0], "{\"path\":\"src/main.rs\"}");
        assert_eq!((c[1]["id"].as_str(), c[1]["name"].as_str()), (Some("call_b"), Some("Grep")));
        assert_eq!(c[1]["input"], json!({"pattern": "fn main"}));
        assert_eq!(acc.partial_json[1], "{\"pattern\":\"fn main\"}");
        assert_eq!(acc.stop_reason.as_deref(), Some("tool_use"));
    });
}

#[test]
fn gemini_indexless_batched_tool_calls() {
    with_proxy(|mock, proxy| {
        let batch = openai::chunk(
            json!({"role": "assistant", "tool_calls": [
                {"id": "g_1", "type": "function", "function": {"name": "Read", "arguments": "{\"path\":\"a.txt\"}"}},
                {"id": "g_2", "type": "function", "function": {"name": "Read", "arguments": "{\"path\":\"b.txt\"}"}}
            ]}),
            None,
        );
        let parts = vec![openai::data_part(&batch), openai::finish("stop"), openai::usage(9, 9, 0), openai::done()];
        mock.push(Reply::sse(parts));
        let (_, acc) = stream_all(proxy, &stream_request("read both"));
        let c = acc.content();
        assert_eq!(c.len(), 2, "two separate blocks, not one concatenated: {:?}", acc.message);
        assert_eq!(c[0]["id"], "g_1");
        assert_eq!(c[0]["input"], json!({"path": "a.txt"}));
        assert_eq!(c[1]["id"], "g_2");
        assert_eq!(c[1]["input"], json!({"path": "b.txt"}));
        assert_eq!(acc.stop_reason.as_deref(), Some("tool_use"), "tool calls were produced despite finish_reason stop");
    });
}

#[test]
fn reasoning_becomes_thinking() {
    with_proxy(|mock, proxy| {
        // DeepSeek style `reasoning_content`, then OpenRouter/Ollama `reasoning`.
        for field in ["reasoning_content", "reasoning"] {
            let r = |t: &str| openai::data_part(&openai::chunk(json!({ field: t }), None));
            let parts = vec![
                openai::role(),
                r("Let me "),
                r("think."),
                openai::text("The answer"),
                openai::text(" is 4."),
                openai::finish("stop"),
                openai::usage(10, 20, 0),
                openai::done(),
            ];
            mock.push(Reply::sse(parts));
            let (_, acc) = stream_all(proxy, &stream_request("2+2"));
            let c = acc.content();
            assert_eq!(c.len(), 2, "{field}: {:?}", acc.message);
            assert_eq!(c[0]["type"], "thinking", "{field}");
            assert_eq!(c[0]["thinking"], "Let me think.");
            assert_eq!(c[1], json!({"type": "text", "text": "The answer is 4."}));
            assert_eq!(acc.stop_reason.as_deref(), Some("end_turn"));
        }
    });
}

#[test]
fn provider_quirks_usage_comments_crlf_and_split_reads() {
    with_proxy(|mock, proxy| {
        let finish = openai::data(&openai::chunk(json!({}), Some("length")));
        let usage = openai::data(&openai::usage_chunk(100, 42, 60));
        let text = openai::data(&openai::chunk(json!({"content": "héllo"}), None));
        let text_crlf = String::from_utf8(text.clone()).unwrap().replace('\n', "\r\n").into_bytes();
        // Split inside the multi-byte `é` and inside the JSON.
        let cut = text_crlf.iter().position(|&b| b == 0xC3).unwrap() + 1;
        let parts = vec![
            Part::bytes(b": OPENROUTER PROCESSING\n\n"),
            openai::data_part(&openai::chunk(json!({"role": "assistant", "content": ""}), None)),
            openai::data_part(&openai::chunk(json!({}), None)),
            Part::bytes(&text_crlf[..cut]),
            Part::Sleep(Duration::from_millis(5)),
            Part::bytes(&text_crlf[cut..]),
            // The finish chunk and the usage chunk in the same read.
            Part::Bytes([finish, usage].concat()),
            openai::done(),
        ];
        mock.push(Reply::sse(parts));
        let (_, acc) = stream_all(proxy, &stream_request("x"));
        assert_eq!(acc.content(), &vec![json!({"type": "text", "text": "héllo"})]);
        assert_eq!(acc.stop_reason.as_deref(), Some("max_tokens"));
        let u = acc.usage();
        assert_eq!(u["output_tokens"], 42);
        assert_eq!(u["input_tokens"], 40, "prompt - cached, in the final usage: {u}");
        assert_eq!(u["cache_read_input_tokens"], 60);
    });
}

#[test]
fn mid_stream_error_becomes_error_event() {
    with_proxy(|mock, proxy| {
        let err =
            json!({"error": {"message": "The server is overloaded", "type": "server_error", "code": "overloaded"}});
        let parts = vec![openai::role(), openai::text("partial"), openai::data_part(&err), openai::done()];
        mock.push(Reply::sse(parts));
        let (r, acc) = stream_all(proxy, &stream_request("x"));
        let e = acc.error.as_ref().unwrap_or_else(|| panic!("no error event: {}", r.text()));
        assert_eq!(e["type"], "error");
        assert!(e["error"]["message"].as_str().unwrap().contains("overloaded"), "{e}");
        assert!(!acc.saw_message_stop);
        assert_ne!(acc.stop_reason.as_deref(), Some("end_turn"), "no fake end_turn after an error");
        assert_eq!(acc.names.last().map(String::as_str), Some("error"));
    });
}

#[test]
fn upstream_reset_or_truncation_becomes_error_event() {
    with_proxy(|mock, proxy| {
        let cases = [
            (Framing::Chunked, End::Reset),
            (Framing::Chunked, End::Truncate),
            (Framing::ContentLength, End::Truncate),
            (Framing::Close, End::Reset),
            // Close-delimited and cleanly closed, but before any finish chunk
            // or [DONE]: the answer is cut short.
            (Framing::Close, End::Truncate),
        ];
        for (framing, end) in cases {
            mock.push(
                Reply::sse(vec![
                    openai::role(),
                    openai::text("partial answer"),
                    Part::Sleep(Duration::from_millis(20)),
                ])
                .framing(framing)
                .end(end),
            );
            let mut c = proxy.stream(&stream_request("x"));
            let (head, mut events) = c.start_stream();
            assert_eq!(head.status(), 200, "{framing:?}/{end:?}");
            let mut all = Vec::new();
            loop {
                match events.next_event() {
                    Ok(Some(e)) => all.push(e),
                    Ok(None) => break,
                    Err(e) => panic!("{framing:?}/{end:?}: the proxy broke the client stream ({e}) instead of ending it with an error event; got {all:?}"),
                }
            }
            let acc = accumulate(&all);
            assert!(acc.error.is_some(), "{framing:?}/{end:?}: no error event: {all:?}");
            assert!(!acc.saw_message_stop, "{framing:?}/{end:?}");
            assert_ne!(acc.stop_reason.as_deref(), Some("end_turn"), "{framing:?}/{end:?}: fake end_turn");
        }
    });
}

#[test]
fn client_disconnect_cancels_upstream() {
    with_proxy(|mock, proxy| {
        let (go_tx, go_rx) = mpsc::channel();
        let mut parts = vec![openai::role(), openai::text("first"), Part::Wait(go_rx)];
        for _ in 0..500 {
            parts.push(openai::text("more "));
            parts.push(Part::Sleep(Duration::from_millis(10)));
        }
        parts.extend([openai::finish("stop"), openai::done()]);
        mock.push(Reply::sse(parts));
        let mut c = proxy.stream(&stream_request("x"));
        {
            let (_, mut events) = c.start_stream();
            events.until("content_block_delta");
        }
        drop(c);
        go_tx.send(()).unwrap();
        assert!(
            mock.wait_aborted_stream(Duration::from_secs(4)),
            "the proxy kept reading the upstream stream after its client went away"
        );
    });
}

#[test]
fn stream_upstream_error_status_is_plain_json_error() {
    with_proxy(|mock, proxy| {
        mock.push(Reply::openai_error(429, "rate_limit_exceeded", "slow down").header("retry-after", "3"));
        let mut c = proxy.stream(&stream_request("x"));
        let r = c.read_response();
        r.assert_error(429, "rate_limit_error");
        assert_eq!(r.header("retry-after"), Some("3"));
    });
}

#[test]
fn ping_while_upstream_is_silent() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let cfg = write_config(&format!(
            "ping_interval_secs = 1\n\n[upstream]\nbase_url = \"{}\"\napi_key = \"{TEST_KEY}\"\n",
            mock.url()
        ));
        let proxy = ProxyCmd::new(d).arg("--config").arg(cfg.to_str().unwrap()).start();
        let (go_tx, go_rx) = mpsc::channel();
        let mut parts = vec![openai::role(), openai::text("wait"), Part::Wait(go_rx)];
        parts.extend(openai::text_stream(&["ed"]).into_iter().skip(1));
        mock.push(Reply::sse(parts));
        let mut c = proxy.stream(&stream_request("x"));
        let (_, mut events) = c.start_stream();
        let mut all = events.until("content_block_delta");
        // The upstream is now silent until we open the gate: a ping must come.
        all.extend(events.until("ping"));
        go_tx.send(()).unwrap();
        all.extend(events.rest());
        let acc = accumulate(&all);
        assert_eq!(acc.content(), &vec![json!({"type": "text", "text": "waited"})]);
        assert_eq!(all.iter().find(|e| e.name() == "ping").unwrap().json(), json!({"type": "ping"}));
        proxy.finish();
    });
}

#[test]
fn non_anthropic_tool_ids_are_sanitized() {
    with_proxy(|mock, proxy| {
        // Kimi-style ids, and a call without any id.
        let parts = vec![
            openai::role(),
            openai::tool_start(0, "functions.Bash:0", "Bash", "{\"command\":\"ls\"}"),
            openai::data_part(&openai::chunk(
                json!({"tool_calls": [{"index": 1, "type": "function", "function": {"name": "Bash", "arguments": "{}"}}]}),
                None,
            )),
            openai::finish("tool_calls"),
            openai::usage(1, 1, 0),
            openai::done(),
        ];
        mock.push(Reply::sse(parts));
        let (_, acc) = stream_all(proxy, &stream_request("x"));
        let c = acc.content();
        assert_eq!(c.len(), 2, "{:?}", acc.message);
        // accumulate() already checked both ids match ^[a-zA-Z0-9_-]+$.
        assert_ne!(c[0]["id"], c[1]["id"]);
        // Invalid upstream ids are encoded reversibly, so the next turn can
        // hand the provider its own id back.
        assert!(c[0]["id"].as_str().unwrap().starts_with("ccpx_"), "{}", c[0]["id"]);

        mock.push(Reply::completion(
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "functions.Read:1", "type": "function", "function": {"name": "Read", "arguments": "{}"}}]}),
            "tool_calls",
            json!({"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}),
        ));
        let r = proxy.messages(&simple_request("x"));
        assert_eq!(r.status, 200, "{}", r.text());
        let id = r.json()["content"][0]["id"].as_str().unwrap().to_string();
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{id}");
    });
}

#[test]
fn concurrent_streams_do_not_mix() {
    with_proxy(|mock, proxy| {
        mock.set_handler(|rec| {
            let text = openai_text(&rec.body["messages"][0]["content"]);
            let pieces: Vec<String> = text.split(' ').map(|w| format!("{w} ")).collect();
            let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
            Reply::sse(openai::text_stream(&refs))
        });
        let results: Vec<(String, Accumulated)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    s.spawn(move || {
                        let text = format!("client {i} says hello number {i}");
                        let (_, acc) = stream_all(proxy, &stream_request(&text));
                        (text, acc)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut ids = std::collections::HashSet::new();
        for (text, acc) in results {
            assert_eq!(acc.content()[0]["text"], format!("{text} "));
            assert!(ids.insert(acc.message["id"].as_str().unwrap().to_string()), "duplicate message id");
        }
        assert_eq!(mock.request_count(), 8);
    });
}

#[test]
fn mixed_blocks_in_one_stream() {
    with_proxy(|mock, proxy| {
        let parts = vec![
            openai::role(),
            openai::reasoning("plan"),
            openai::text("I will run it."),
            openai::tool_start(0, "call_1", "Bash", "{\"command\":\"make\"}"),
            // Text after a tool call must open a new block, not reuse the
            // tool block's index.
            openai::text(" Also this."),
            openai::finish("tool_calls"),
            openai::usage(3, 3, 0),
            openai::done(),
        ];
        mock.push(Reply::sse(parts));
        let (_, acc) = stream_all(proxy, &stream_request("x"));
        let c = acc.content();
        let types: Vec<&str> = c.iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(types[..3], ["thinking", "text", "tool_use"], "{:?}", acc.message);
        assert_eq!(c[2]["input"], json!({"command": "make"}));
        let all_text: String = c.iter().filter(|b| b["type"] == "text").map(|b| b["text"].as_str().unwrap()).collect();
        assert_eq!(all_text, "I will run it. Also this.", "no text is lost");
        assert_eq!(acc.stop_reason.as_deref(), Some("tool_use"));
    });
}

#[test]
fn garbage_in_upstream_stream_is_survived() {
    with_proxy(|mock, proxy| {
        let parts = vec![openai::role(), openai::text("ok"), Part::bytes(b"data: {\"choices\": [{\"delta\": \n\n")];
        mock.push(Reply::sse(parts).framing(Framing::Close).end(End::Truncate));
        let mut c = proxy.stream(&stream_request("x"));
        let r = c.read_response();
        assert_eq!(r.status, 200);
        // Whatever the proxy does with a broken event, the client's stream
        // stays valid for the SDK, and is not a silent success.
        let acc = accumulate(&r.events());
        assert!(acc.error.is_some(), "a broken upstream stream must end with an error event: {}", r.text());
        mock.push(Reply::text("still alive"));
        assert_eq!(proxy.messages(&simple_request("x")).json()["content"][0]["text"], "still alive");
    });
}
