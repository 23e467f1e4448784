//! Self-tests of the harness: the mock upstream's validation and framing, and
//! the raw client's parsers, exercised without the proxy so a harness bug is
//! never mistaken for a proxy bug.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::validate::validate_chat_request;
use common::*;
use serde_json::json;

fn valid_request() -> serde_json::Value {
    json!({
        "model": "gpt-x",
        "max_tokens": 100,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "ls", "arguments": "{}"}},
                {"id": "call_2", "type": "function", "function": {"name": "ls", "arguments": "{\"a\":1}"}}]},
            {"role": "tool", "tool_call_id": "call_2", "content": "x"},
            {"role": "tool", "tool_call_id": "call_1", "content": "y"},
            {"role": "user", "content": "go on"}
        ],
        "tools": [{"type": "function", "function": {"name": "ls", "description": "list", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "ls"}},
        "parallel_tool_calls": false,
        "stop": ["a", "b"],
        "stream": true,
        "stream_options": {"include_usage": true},
        "user": "u1"
    })
}

#[test]
fn validator_accepts_a_valid_request() {
    let v = validate_chat_request(&valid_request());
    assert!(v.is_empty(), "{v:#?}");
}

type Mutation = Box<dyn Fn(&mut serde_json::Value)>;

#[test]
fn validator_rejects_each_violation() {
    let cases: Vec<(&str, Mutation)> = vec![
        ("unknown top-level", Box::new(|r| r["thinking"] = json!({"type": "enabled"}))),
        ("top_k", Box::new(|r| r["top_k"] = json!(5))),
        ("system key", Box::new(|r| r["system"] = json!("x"))),
        ("stop_sequences", Box::new(|r| r["stop_sequences"] = json!(["x"]))),
        ("metadata", Box::new(|r| r["metadata"] = json!({"user_id": "x"}))),
        ("five stops", Box::new(|r| r["stop"] = json!(["a", "b", "c", "d", "e"]))),
        ("stream_options without stream", Box::new(|r| r["stream"] = json!(false))),
        ("tool_choice any", Box::new(|r| r["tool_choice"] = json!("any"))),
        ("tool_choice anthropic shape", Box::new(|r| r["tool_choice"] = json!({"type": "auto"}))),
        ("tool_choice undeclared", Box::new(|r| r["tool_choice"]["function"]["name"] = json!("nope"))),
        ("tool with cache_control", Box::new(|r| r["tools"][0]["cache_control"] = json!({"type": "ephemeral"}))),
        ("anthropic tool", Box::new(|r| r["tools"][0] = json!({"name": "ls", "input_schema": {}}))),
        ("tool function extra", Box::new(|r| r["tools"][0]["function"]["input_schema"] = json!({}))),
        (
            "missing tool answer",
            Box::new(|r| {
                r["messages"].as_array_mut().unwrap().remove(4);
            }),
        ),
        (
            "tool message out of place",
            Box::new(|r| {
                r["messages"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"role": "tool", "tool_call_id": "call_1", "content": "z"}));
            }),
        ),
        (
            "user between call and result",
            Box::new(|r| {
                r["messages"].as_array_mut().unwrap().insert(3, json!({"role": "user", "content": "z"}));
            }),
        ),
        (
            "image in tool message",
            Box::new(|r| {
                r["messages"][3]["content"] = json!([{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]);
            }),
        ),
        (
            "image in system",
            Box::new(|r| {
                r["messages"][0]["content"] = json!([{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]);
            }),
        ),
        (
            "anthropic image block",
            Box::new(|r| {
                r["messages"][1]["content"][1] =
                    json!({"type": "image", "source": {"type": "url", "url": "https://x"}});
            }),
        ),
        (
            "text part with cache_control",
            Box::new(|r| {
                r["messages"][1]["content"][0]["cache_control"] = json!({"type": "ephemeral"});
            }),
        ),
        ("bad role", Box::new(|r| r["messages"][0]["role"] = json!("model"))),
        (
            "arguments object",
            Box::new(|r| {
                r["messages"][2]["tool_calls"][0]["function"]["arguments"] = json!({});
            }),
        ),
        (
            "assistant without content",
            Box::new(|r| {
                r["messages"][2] = json!({"role": "assistant"});
            }),
        ),
        ("user too long", Box::new(|r| r["user"] = json!("x".repeat(65)))),
        (
            "parallel without tools",
            Box::new(|r| {
                r.as_object_mut().unwrap().remove("tools");
                r.as_object_mut().unwrap().remove("tool_choice");
            }),
        ),
        ("empty messages", Box::new(|r| r["messages"] = json!([]))),
        ("temperature", Box::new(|r| r["temperature"] = json!(2.5))),
        ("reasoning in message", Box::new(|r| r["messages"][2]["reasoning_content"] = json!("x"))),
    ];
    for (name, mutate) in cases {
        let mut r = valid_request();
        mutate(&mut r);
        let v = validate_chat_request(&r);
        assert!(!v.is_empty(), "validator accepted the violation {name:?}: {r}");
    }
}

#[test]
fn mock_records_validates_and_keeps_alive() {
    let mock = Mock::start();
    mock.push(Reply::text("one"));
    mock.push(Reply::text("two"));
    let mut c = Client::connect(mock.addr);
    let body = serde_json::to_vec(&valid_request()).unwrap();
    let auth = format!("Bearer {TEST_KEY}");
    let hdrs = [("Content-Type", "application/json"), ("Authorization", auth.as_str())];
    c.send(&request("POST", "/v1/chat/completions", &hdrs, &body));
    let r1 = c.read_response();
    c.send(&request("POST", "/v1/chat/completions", &hdrs, &body));
    let r2 = c.read_response();
    assert_eq!(r1.json()["choices"][0]["message"]["content"], "one");
    assert_eq!(r2.json()["choices"][0]["message"]["content"], "two");
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].conn, reqs[1].conn, "keep-alive");
    assert_eq!(reqs[0].body["model"], "gpt-x");
    mock.assert_clean();

    // A violation: 400 OpenAI error, recorded.
    let mut bad = valid_request();
    bad["top_k"] = json!(3);
    c.send(&request("POST", "/v1/chat/completions", &hdrs, &serde_json::to_vec(&bad).unwrap()));
    let r3 = c.read_response();
    assert_eq!(r3.status, 400);
    assert!(r3.json()["error"]["message"].as_str().unwrap().contains("top_k"));
    // Wrong key.
    let hdrs2 = [("Content-Type", "application/json"), ("Authorization", "Bearer nope")];
    c.send(&request("POST", "/v1/chat/completions", &hdrs2, &body));
    assert_eq!(c.read_response().status, 400);
    let v = mock.take_violations();
    assert_eq!(v.len(), 2, "{v:#?}");
}

#[test]
fn mock_streams_with_every_framing_and_client_parses_incrementally() {
    for framing in [Framing::Chunked, Framing::Close, Framing::ContentLength] {
        let mock = Mock::start_with_key(None);
        let (go_tx, go_rx) = mpsc::channel();
        let mut parts = vec![openai::role(), openai::text("Hel")];
        parts.push(Part::Wait(go_rx));
        parts.extend(openai::text_stream(&["lo"]).into_iter().skip(1));
        mock.push(Reply::sse(parts).framing(framing));
        let mut c = Client::connect(mock.addr);
        let body = serde_json::to_vec(&valid_request()).unwrap();
        c.send(&request("POST", "/v1/chat/completions", &[("Content-Type", "application/json")], &body));
        let (head, mut events) = c.start_stream();
        assert_eq!(head.status(), 200);
        // Two events arrive while the mock is blocked on the gate.
        let e1 = events.expect_event();
        assert_eq!(e1.json()["choices"][0]["delta"]["role"], "assistant");
        let e2 = events.expect_event();
        assert_eq!(e2.json()["choices"][0]["delta"]["content"], "Hel");
        go_tx.send(()).unwrap();
        let rest = events.rest();
        assert_eq!(rest.len(), 4, "{rest:?} with {framing:?}");
        assert_eq!(rest[3].data, "[DONE]");
    }
}

#[test]
fn mock_truncates_and_resets() {
    for (framing, end) in
        [(Framing::Chunked, End::Truncate), (Framing::ContentLength, End::Truncate), (Framing::Chunked, End::Reset)]
    {
        let mock = Mock::start_with_key(None);
        mock.push(Reply::sse(vec![openai::role(), openai::text("x")]).framing(framing).end(end));
        let mut c = Client::connect(mock.addr);
        let body = serde_json::to_vec(&valid_request()).unwrap();
        c.send(&request("POST", "/v1/chat/completions", &[("Content-Type", "application/json")], &body));
        let (_, mut events) = c.start_stream();
        events.expect_event();
        events.expect_event();
        assert!(events.next_event().is_err(), "{framing:?}/{end:?} should fail the body read");
    }
}

#[test]
fn mock_flags_unscripted_requests_and_detects_aborted_streams() {
    let mock = Mock::start_with_key(None);
    let body = serde_json::to_vec(&valid_request()).unwrap();
    let mut c = Client::connect(mock.addr);
    c.send(&request("POST", "/v1/chat/completions", &[("Content-Type", "application/json")], &body));
    assert_eq!(c.read_response().status, 500);
    assert_eq!(mock.take_violations().len(), 1);

    let parts: Vec<Part> = std::iter::once(openai::role())
        .chain((0..400).flat_map(|_| [openai::text("x"), Part::Sleep(Duration::from_millis(5))]))
        .collect();
    mock.push(Reply::sse(parts));
    let mut c = Client::connect(mock.addr);
    c.send(&request("POST", "/v1/chat/completions", &[("Content-Type", "application/json")], &body));
    let (_, mut events) = c.start_stream();
    events.expect_event();
    drop(c);
    assert!(mock.wait_aborted_stream(Duration::from_secs(5)));
}

#[test]
fn sse_parser_handles_crlf_comments_and_multiline_data() {
    let evs = parse_sse(b": hi\r\nevent: a\r\ndata: {\"x\":1}\r\n\r\ndata: l1\ndata: l2\n\n");
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0].name(), "a");
    assert_eq!(evs[0].json()["x"], 1);
    assert_eq!(evs[1].event, None);
    assert_eq!(evs[1].data, "l1\nl2");
}

#[test]
fn log_field_parsing() {
    let line = "2025-01-01T00:00:00Z  INFO ccproxy: listening on http://127.0.0.1:4567 driver=\"io_uring\" workers=2";
    assert_eq!(proxy::parse_listen(line).unwrap().port(), 4567);
    assert_eq!(proxy::field(line, "driver").as_deref(), Some("io_uring"));
    assert_eq!(proxy::field(line, "workers").as_deref(), Some("2"));
}
