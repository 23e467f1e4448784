//! Test support for the stream converter (compiled in tests only).
//!
//! Receives the converter's output bytes, parses them back into
//! (event name, JSON) pairs, checks the invariants the official Anthropic
//! SDKs enforce, and drives the converter with an input split at every byte
//! offset and byte by byte.

use sonic_rs::{json, JsonContainerTrait, JsonValueTrait, Value};

use super::StreamConverter;

pub type Ev = (String, Value);

pub const MODEL: &str = "claude-test-model";
pub const MSG_ID: &str = "msg_test0000000000000000";

/// Splits converter output into events; each must be exactly
/// `event: <name>\ndata: <json>\n\n`.
pub fn parse_events(out: &[u8]) -> Vec<Ev> {
    let text = std::str::from_utf8(out).expect("output is UTF-8");
    assert!(text.is_empty() || text.ends_with("\n\n"), "output ends mid-event: {text:?}");
    let mut events = Vec::new();
    for raw in text.split_terminator("\n\n") {
        let (event_line, data_line) = raw.split_once('\n').unwrap_or_else(|| panic!("event without data: {raw:?}"));
        let name = event_line.strip_prefix("event: ").unwrap_or_else(|| panic!("no event line: {raw:?}"));
        let data = data_line.strip_prefix("data: ").unwrap_or_else(|| panic!("no data line: {raw:?}"));
        assert!(!data.contains('\n'), "multi-line data: {raw:?}");
        let value: Value = sonic_rs::from_str(data).unwrap_or_else(|e| panic!("bad JSON {data:?}: {e}"));
        events.push((name.to_owned(), value));
    }
    events
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(|x| x.as_str()).unwrap_or_else(|| panic!("missing string {key} in {v:?}"))
}

/// Asserts what the SDKs (and Claude Code) rely on. `tool_args` are the
/// upstream arguments of every tool call, in block order; checked when the
/// stream ended normally.
pub fn validate(events: &[Ev], tool_args: &[&str]) {
    assert!(!events.is_empty(), "no events");
    for (name, data) in events {
        assert_eq!(name, s(data, "type"), "event line must equal data.type");
    }
    assert_eq!(events[0].0, "message_start", "message_start first");
    assert_eq!(events.iter().filter(|e| e.0 == "message_start").count(), 1, "one message_start");
    let msg = events[0].1.get("message").expect("message");
    assert_eq!(msg.get("content").and_then(|c| c.as_array()).map(|a| a.len()), Some(0));
    assert_eq!(s(msg, "model"), MODEL);
    assert!(msg.get("usage").and_then(|u| u.get("output_tokens")).is_some());

    let mut open: Option<(u64, String, usize)> = None; // (index, type, deltas with content)
    let mut next_index = 0u64;
    let mut inputs: Vec<String> = Vec::new();
    let last = events.len() - 1;
    for (pos, (name, data)) in events.iter().enumerate().skip(1) {
        match name.as_str() {
            "ping" => {}
            "content_block_start" => {
                assert!(open.is_none(), "block opened while another is open at event {pos}");
                let index = data.get("index").and_then(|i| i.as_u64()).expect("index");
                assert_eq!(index, next_index, "indices must be contiguous");
                next_index += 1;
                let block = data.get("content_block").expect("content_block");
                let kind = s(block, "type").to_owned();
                match kind.as_str() {
                    "text" => assert_eq!(s(block, "text"), ""),
                    "thinking" => assert_eq!((s(block, "thinking"), s(block, "signature")), ("", "")),
                    "tool_use" => {
                        let id = s(block, "id");
                        assert!(
                            !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                            "bad tool id {id:?}"
                        );
                        assert!(block.get("name").and_then(|n| n.as_str()).is_some());
                        assert_eq!(block.get("input"), Some(&json!({})), "tool_use input must be {{}}");
                        inputs.push(String::new());
                    }
                    other => panic!("unknown block type {other}"),
                }
                open = Some((index, kind, 0));
            }
            "content_block_delta" => {
                let (index, kind, count) = open.as_mut().expect("delta outside a block");
                assert_eq!(data.get("index").and_then(|i| i.as_u64()), Some(*index), "delta index");
                let delta = data.get("delta").expect("delta");
                let dtype = s(delta, "type");
                match (kind.as_str(), dtype) {
                    ("text", "text_delta") => *count += !s(delta, "text").is_empty() as usize,
                    ("thinking", "thinking_delta") => *count += !s(delta, "thinking").is_empty() as usize,
                    ("thinking", "signature_delta") => {
                        assert!(delta.get("signature").and_then(|x| x.as_str()).is_some());
                        assert_eq!(events.get(pos + 1).map(|e| e.0.as_str()), Some("content_block_stop"));
                    }
                    ("tool_use", "input_json_delta") => {
                        inputs.last_mut().expect("tool input").push_str(s(delta, "partial_json"));
                    }
                    (k, d) => panic!("delta {d} in a {k} block"),
                }
            }
            "content_block_stop" => {
                let (index, kind, count) = open.take().expect("stop without open block");
                assert_eq!(data.get("index").and_then(|i| i.as_u64()), Some(index), "stop index");
                if kind != "tool_use" {
                    assert!(count > 0, "empty {kind} block {index}");
                }
            }
            "message_delta" => {
                assert!(open.is_none(), "message_delta with an open block");
                assert_eq!(pos + 1, last, "message_delta must be followed by message_stop only");
                let delta = data.get("delta").expect("delta");
                let reason = s(delta, "stop_reason");
                assert!(
                    ["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"].contains(&reason),
                    "stop_reason {reason}"
                );
                assert_eq!(reason == "tool_use", !inputs.is_empty(), "tool_use iff tool blocks");
                let usage = data.get("usage").expect("usage");
                for k in ["input_tokens", "output_tokens"] {
                    assert!(usage.get(k).and_then(|x| x.as_u64()).is_some(), "usage.{k}");
                }
            }
            "message_stop" => {
                assert_eq!(pos, last, "message_stop must be last");
                assert_eq!(events[pos - 1].0, "message_delta");
                let expected: Vec<String> = tool_args.iter().map(|a| a.to_string()).collect();
                assert_eq!(inputs, expected, "tool inputs must equal upstream arguments");
            }
            "error" => {
                assert_eq!(pos, last, "error must be last");
                let err = data.get("error").expect("error");
                assert!(!s(err, "type").is_empty() && !s(err, "message").is_empty());
            }
            other => panic!("unexpected event {other}"),
        }
    }
    let end = events[last].0.as_str();
    assert!(end == "message_stop" || end == "error", "stream must end with message_stop or error, got {end}");
}

/// Runs the converter over `pieces`; `eof` goes with the last piece, or in
/// a separate empty push when `eof_apart`.
pub fn run(pieces: &[&[u8]], eof_apart: bool) -> Vec<u8> {
    let mut conv = StreamConverter::new(MODEL, MSG_ID);
    let mut out = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        let eof = !eof_apart && i + 1 == pieces.len();
        conv.push(p, eof, &mut out);
    }
    if eof_apart || pieces.is_empty() {
        conv.push(b"", true, &mut out);
    }
    assert!(conv.is_finished(), "converter must be finished after eof");
    let mut after = Vec::new();
    conv.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"late\"}}]}\n\n", true, &mut after);
    assert!(after.is_empty(), "nothing may follow the end");
    out
}

/// Feeds `input` whole, split in two at every byte offset, and byte by
/// byte; every run must validate and equal `expected`.
pub fn check(input: &str, expected: &[Ev], tool_args: &[&str]) {
    let input = input.as_bytes();
    let verify = |out: Vec<u8>, label: &dyn Fn() -> String| {
        let events = parse_events(&out);
        validate(&events, tool_args);
        if events != expected {
            panic!("{}: events differ\n got: {events:#?}\nwant: {expected:#?}", label());
        }
    };
    verify(run(&[input], false), &|| "whole".into());
    verify(run(&[input], true), &|| "whole, eof apart".into());
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        verify(run(&[a, b], false), &|| format!("split at {i}"));
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    verify(run(&bytes, true), &|| "byte by byte".into());
}

// Expected-event builders.

pub fn message_start() -> Ev {
    ev(json!({"type":"message_start","message":{"id":MSG_ID,"type":"message","role":"assistant","model":MODEL,
        "content":[],"stop_reason":null,"stop_sequence":null,
        "usage":{"input_tokens":0,"output_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}))
}

pub fn start_text(i: u64) -> Ev {
    ev(json!({"type":"content_block_start","index":i,"content_block":{"type":"text","text":""}}))
}

pub fn start_thinking(i: u64) -> Ev {
    ev(json!({"type":"content_block_start","index":i,"content_block":{"type":"thinking","thinking":"","signature":""}}))
}

pub fn start_tool(i: u64, id: &str, name: &str) -> Ev {
    ev(
        json!({"type":"content_block_start","index":i,"content_block":{"type":"tool_use","id":id,"name":name,"input":{}}}),
    )
}

/// The id the converter gives an upstream tool call.
pub fn client_id(upstream_id: &str, signature: Option<&str>) -> String {
    let mut s = String::new();
    crate::convert::tool_ids::encode(upstream_id, signature, &mut s);
    s
}

pub fn text(i: u64, t: &str) -> Ev {
    ev(json!({"type":"content_block_delta","index":i,"delta":{"type":"text_delta","text":t}}))
}

pub fn thinking(i: u64, t: &str) -> Ev {
    ev(json!({"type":"content_block_delta","index":i,"delta":{"type":"thinking_delta","thinking":t}}))
}

pub fn signature(i: u64) -> Ev {
    ev(json!({"type":"content_block_delta","index":i,"delta":{"type":"signature_delta","signature":""}}))
}

pub fn args(i: u64, t: &str) -> Ev {
    ev(json!({"type":"content_block_delta","index":i,"delta":{"type":"input_json_delta","partial_json":t}}))
}

pub fn stop(i: u64) -> Ev {
    ev(json!({"type":"content_block_stop","index":i}))
}

/// `usage` = (input, output, cache read).
pub fn message_delta(reason: &str, usage: (u64, u64, u64)) -> Ev {
    ev(json!({"type":"message_delta","delta":{"stop_reason":reason,"stop_sequence":null},
        "usage":{"input_tokens":usage.0,"output_tokens":usage.1,"cache_read_input_tokens":usage.2}}))
}

pub fn message_stop() -> Ev {
    ev(json!({"type":"message_stop"}))
}

pub fn error(kind: &str, message: &str) -> Ev {
    ev(json!({"type":"error","error":{"type":kind,"message":message}}))
}

fn ev(v: Value) -> Ev {
    (v.get("type").and_then(|t| t.as_str()).unwrap_or_default().to_owned(), v)
}

// Upstream chunk builders, shaped like real OpenAI chunks.

pub fn chunk(delta: &str) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\",\
         \"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
    )
}

pub fn finish(reason: &str) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\",\
         \"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"{reason}\"}}]}}\n\n"
    )
}

pub fn usage(prompt: u64, completion: u64, cached: u64) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\",\
         \"choices\":[],\"usage\":{{\"prompt_tokens\":{prompt},\"completion_tokens\":{completion},\
         \"total_tokens\":{},\"prompt_tokens_details\":{{\"cached_tokens\":{cached}}}}}}}\n\n",
        prompt + completion
    )
}

pub const DONE: &str = "data: [DONE]\n\n";
