//! Builders for OpenAI streaming chunks, so scripts read like the streams
//! real providers send.
//!
//! Receives the interesting part of each chunk (a delta, a finish reason, a
//! usage block); emits the full `chat.completion.chunk` JSON or the raw
//! `data: ...\n\n` SSE bytes the mock writes.

use serde_json::{json, Value};

use super::mock::Part;

/// A chunk with one choice carrying `delta` and `finish_reason`.
pub fn chunk(delta: Value, finish_reason: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-mock1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "mock-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": null}],
    })
}

/// The choiceless usage chunk sent after the finish chunk with
/// `stream_options.include_usage`.
pub fn usage_chunk(prompt: u64, completion: u64, cached: u64) -> Value {
    json!({
        "id": "chatcmpl-mock1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "mock-model",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    })
}

/// `data: <json>\n\n`.
pub fn data(v: &Value) -> Vec<u8> {
    format!("data: {}\n\n", serde_json::to_string(v).unwrap()).into_bytes()
}

pub fn data_part(v: &Value) -> Part {
    Part::Bytes(data(v))
}

pub fn done() -> Part {
    Part::bytes(b"data: [DONE]\n\n")
}

pub fn role() -> Part {
    data_part(&chunk(json!({"role": "assistant", "content": ""}), None))
}

pub fn text(t: &str) -> Part {
    data_part(&chunk(json!({"content": t}), None))
}

pub fn reasoning(t: &str) -> Part {
    data_part(&chunk(json!({"reasoning_content": t}), None))
}

pub fn finish(reason: &str) -> Part {
    data_part(&chunk(json!({}), Some(reason)))
}

pub fn usage(prompt: u64, completion: u64, cached: u64) -> Part {
    data_part(&usage_chunk(prompt, completion, cached))
}

/// First fragment of a tool call: index, id, name, and maybe some arguments.
pub fn tool_start(index: u64, id: &str, name: &str, args: &str) -> Part {
    data_part(&chunk(
        json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": args}}]}),
        None,
    ))
}

/// A later argument fragment of the tool call at `index`.
pub fn tool_args(index: u64, args: &str) -> Part {
    data_part(&chunk(json!({"tool_calls": [{"index": index, "function": {"arguments": args}}]}), None))
}

/// A whole text stream: role, the pieces, finish `stop`, usage, `[DONE]`.
pub fn text_stream(pieces: &[&str]) -> Vec<Part> {
    let mut parts = vec![role()];
    parts.extend(pieces.iter().map(|p| text(p)));
    parts.push(finish("stop"));
    parts.push(usage(12, 5, 0));
    parts.push(done());
    parts
}
