//! What the official Anthropic SDKs enforce on a Messages stream, as an
//! executable check, plus the SDK's accumulator.
//!
//! Receives the SSE events the proxy sent; emits the final message the SDK
//! would build (content blocks with tool inputs parsed from the concatenated
//! `partial_json`), after asserting every ordering and shape rule: `event:`
//! equals `data.type`, `message_start` first and once, contiguous block
//! indices, one open block at a time, delta types matching their block,
//! `message_delta` then `message_stop` last, or an `error` event last.

use serde_json::{json, Value};

use super::client::SseEvent;

/// The outcome of a stream, as an SDK accumulator sees it.
#[derive(Debug, Clone)]
pub struct Accumulated {
    /// `message_start.message` with `content` filled in and usage merged.
    pub message: Value,
    /// Concatenated `partial_json` per block index (empty for non-tool blocks).
    pub partial_json: Vec<String>,
    pub stop_reason: Option<String>,
    /// The `event: error` payload, when the stream ended with one.
    pub error: Option<Value>,
    pub saw_message_stop: bool,
    /// Non-ping event names in order, for readable assertions.
    pub names: Vec<String>,
}

impl Accumulated {
    pub fn content(&self) -> &Vec<Value> {
        self.message["content"].as_array().unwrap()
    }

    pub fn usage(&self) -> &Value {
        &self.message["usage"]
    }
}

/// Checks `events` and accumulates them. Panics with the whole stream on any
/// rule violation.
pub fn accumulate(events: &[SseEvent]) -> Accumulated {
    let dump = || events.iter().map(|e| format!("  {}: {}", e.name(), e.data)).collect::<Vec<_>>().join("\n");
    let fail = |msg: String| -> ! { panic!("{msg}\nstream:\n{}", dump()) };
    let mut message: Option<Value> = None;
    let mut content: Vec<Value> = Vec::new();
    let mut partial: Vec<String> = Vec::new();
    let mut open: Option<usize> = None;
    let mut stop_reason = None;
    let mut saw_delta = false;
    let mut saw_stop = false;
    let mut error = None;
    let mut names = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let Some(name) = e.event.as_deref() else { fail(format!("event #{i} has no `event:` line")) };
        let data: Value =
            serde_json::from_str(&e.data).unwrap_or_else(|_| fail(format!("event #{i} data is not JSON")));
        if data["type"] != name {
            fail(format!("event #{i}: `event: {name}` but data.type is {}", data["type"]));
        }
        if name == "ping" {
            continue;
        }
        names.push(name.to_string());
        if saw_stop || error.is_some() {
            fail(format!("event #{i} ({name}) after the end of the stream"));
        }
        if name != "message_start" && name != "error" && message.is_none() {
            fail(format!("event #{i} ({name}) before message_start"));
        }
        match name {
            "message_start" => {
                if message.is_some() {
                    fail("second message_start".into());
                }
                let m = data["message"].clone();
                if m["content"] != json!([]) {
                    fail(format!("message_start content is {}, must be []", m["content"]));
                }
                if m["type"] != "message" || m["role"] != "assistant" {
                    fail(format!("message_start message has type {} role {}", m["type"], m["role"]));
                }
                if !m["id"].as_str().is_some_and(|s| s.starts_with("msg_")) {
                    fail(format!("message id {} does not start with msg_", m["id"]));
                }
                if !m["usage"].is_object() {
                    fail("message_start has no usage".into());
                }
                message = Some(m);
            }
            "content_block_start" => {
                if let Some(o) = open {
                    fail(format!("block {} started while block {o} is still open", data["index"]));
                }
                if saw_delta {
                    fail("content_block_start after message_delta".into());
                }
                let idx = data["index"].as_u64().unwrap_or(u64::MAX) as usize;
                if idx != content.len() {
                    fail(format!("block index {idx}, expected the next contiguous index {}", content.len()));
                }
                let b = data["content_block"].clone();
                match b["type"].as_str() {
                    Some("text") if b["text"] == "" => {}
                    Some("thinking") if b["thinking"] == "" => {}
                    Some("tool_use") => {
                        if b["input"] != json!({}) {
                            fail(format!("tool_use content_block_start input must be {{}}, got {}", b["input"]));
                        }
                        if !b["id"].as_str().is_some_and(valid_tool_id) || !b["name"].is_string() {
                            fail(format!("tool_use block has a bad id or name: {b}"));
                        }
                    }
                    Some("redacted_thinking") => {}
                    _ => fail(format!("unexpected content_block_start block {b}")),
                }
                content.push(b);
                partial.push(String::new());
                open = Some(idx);
            }
            "content_block_delta" => {
                let idx = data["index"].as_u64().unwrap_or(u64::MAX) as usize;
                if open != Some(idx) {
                    fail(format!("delta for block {idx} but the open block is {open:?}"));
                }
                let d = &data["delta"];
                let block = &mut content[idx];
                match (block["type"].as_str().unwrap_or(""), d["type"].as_str().unwrap_or("")) {
                    ("text", "text_delta") => {
                        let t = format!("{}{}", block["text"].as_str().unwrap(), d["text"].as_str().unwrap());
                        block["text"] = json!(t);
                    }
                    ("thinking", "thinking_delta") => {
                        let t = format!("{}{}", block["thinking"].as_str().unwrap(), d["thinking"].as_str().unwrap());
                        block["thinking"] = json!(t);
                    }
                    ("thinking", "signature_delta") => block["signature"] = d["signature"].clone(),
                    ("tool_use", "input_json_delta") => {
                        let p = d["partial_json"]
                            .as_str()
                            .unwrap_or_else(|| fail(format!("input_json_delta without partial_json: {d}")));
                        partial[idx].push_str(p);
                    }
                    (b, dt) => fail(format!("delta type {dt} does not match block type {b}")),
                }
            }
            "content_block_stop" => {
                let idx = data["index"].as_u64().unwrap_or(u64::MAX) as usize;
                if open != Some(idx) {
                    fail(format!("content_block_stop for {idx} but the open block is {open:?}"));
                }
                if content[idx]["type"] == "tool_use" {
                    let raw = if partial[idx].is_empty() { "{}" } else { partial[idx].as_str() };
                    let input: Value = serde_json::from_str(raw)
                        .unwrap_or_else(|_| fail(format!("tool input of block {idx} is not JSON: {raw:?}")));
                    content[idx]["input"] = input;
                }
                open = None;
            }
            "message_delta" => {
                if let Some(o) = open {
                    fail(format!("message_delta while block {o} is open"));
                }
                if saw_delta {
                    fail("second message_delta".into());
                }
                saw_delta = true;
                stop_reason = data["delta"]["stop_reason"].as_str().map(str::to_string);
                if stop_reason.is_none() {
                    fail("message_delta without stop_reason".into());
                }
                let u = &data["usage"];
                if !u["output_tokens"].is_u64() {
                    fail(format!("message_delta usage.output_tokens missing: {u}"));
                }
                let m = message.as_mut().unwrap();
                m["stop_reason"] = data["delta"]["stop_reason"].clone();
                m["stop_sequence"] = data["delta"]["stop_sequence"].clone();
                if let Some(o) = u.as_object() {
                    for (k, v) in o {
                        if !v.is_null() {
                            m["usage"][k] = v.clone();
                        }
                    }
                }
            }
            "message_stop" => {
                if !saw_delta {
                    fail("message_stop without message_delta".into());
                }
                saw_stop = true;
            }
            "error" => {
                if data["error"]["type"].as_str().is_none_or(str::is_empty)
                    || data["error"]["message"].as_str().is_none_or(str::is_empty)
                {
                    fail(format!("error event without error.type/message: {data}"));
                }
                error = Some(data);
            }
            other => fail(format!("unknown event {other}")),
        }
    }
    if error.is_none() && !saw_stop {
        fail("the stream ended without message_stop or error".into());
    }
    let mut message = message.unwrap_or(Value::Null);
    if message.is_object() {
        message["content"] = Value::Array(content);
    }
    Accumulated { message, partial_json: partial, stop_reason, error, saw_message_stop: saw_stop, names }
}

fn valid_tool_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Text of an OpenAI `content` (string, or text parts joined with `\n`).
pub fn openai_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p["type"] == "text")
            .map(|p| p["text"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A minimal valid Anthropic request.
pub fn simple_request(text: &str) -> Value {
    json!({"model": "claude-test-1", "max_tokens": 256, "messages": [{"role": "user", "content": text}]})
}

/// The same as a streaming request.
pub fn stream_request(text: &str) -> Value {
    let mut r = simple_request(text);
    r["stream"] = json!(true);
    r
}
