//! Shared by the bench binaries: synthetic payloads, the counting allocator
//! ([`alloc`]) and the in-process proxy + mock upstream + client ([`harness`]).
//!
//! Receives nothing; emits request/response bytes shaped like real traffic.
//! Every text here is generated filler: no real prompt is reproduced.

// Each bench binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod alloc;
pub mod harness;

use sonic_rs::{json, Value};

pub const MODEL: &str = "claude-sonnet-4-5";

const WORDS: &[&str] = &[
    "the",
    "proxy",
    "converts",
    "each",
    "request",
    "into",
    "chat",
    "completions",
    "and",
    "streams",
    "events",
    "back",
    "while",
    "keeping",
    "tool",
    "calls",
    "intact",
    "across",
    "turns",
    "with",
    "careful",
    "buffer",
    "reuse",
    "so",
    "latency",
    "stays",
    "low",
    "under",
    "load",
    "file",
    "path",
    "output",
    "value",
    "config",
    "error",
    "retry",
];

/// Deterministic filler text of about `bytes` bytes.
pub fn lorem(bytes: usize, seed: usize) -> String {
    let mut s = String::with_capacity(bytes + 16);
    let mut i = seed.wrapping_mul(7919);
    while s.len() < bytes {
        if !s.is_empty() {
            s.push(if i.is_multiple_of(17) { '\n' } else { ' ' });
        }
        s.push_str(WORDS[i % WORDS.len()]);
        i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345) >> 3;
    }
    s
}

fn to_bytes(v: &Value) -> Vec<u8> {
    sonic_rs::to_vec(v).expect("payload serializes")
}

fn arr(items: Vec<Value>) -> Value {
    sonic_rs::to_value(&items).expect("array")
}

// ---------------------------------------------------------------- Anthropic requests

pub fn simple_request(stream: bool) -> Vec<u8> {
    to_bytes(&json!({
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hello, how are you today?"}],
        "stream": stream,
    }))
}

/// `n` alternating user/assistant messages with plain string content.
pub fn multi_turn_request(n: usize) -> Vec<u8> {
    let msgs: Vec<Value> = (0..n)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            json!({"role": role, "content": lorem(200, i)})
        })
        .collect();
    to_bytes(&json!({"model": MODEL, "max_tokens": 1024, "messages": arr(msgs)}))
}

pub fn system_request() -> Vec<u8> {
    to_bytes(&json!({
        "model": MODEL,
        "max_tokens": 1024,
        "system": lorem(600, 1),
        "messages": [{"role": "user", "content": "Summarize the project status."}],
    }))
}

/// One user message whose text makes the body about `bytes` long.
pub fn large_request(bytes: usize) -> Vec<u8> {
    let build = |text: usize| {
        to_bytes(&json!({
            "model": MODEL,
            "max_tokens": 4096,
            "messages": [{"role": "user", "content": lorem(text, 2)}],
        }))
    };
    // Escaped newlines make the body longer than the text; correct once.
    let first = build(bytes.saturating_sub(90));
    build(bytes.saturating_sub(90 + first.len().saturating_sub(bytes)))
}

pub fn tools_request() -> Vec<u8> {
    let tools: Vec<Value> = (0..3).map(tool_def).collect();
    to_bytes(&json!({
        "model": MODEL,
        "max_tokens": 1024,
        "tools": arr(tools),
        "tool_choice": {"type": "auto"},
        "messages": [{"role": "user", "content": "List the files in the current directory."}],
    }))
}

/// An Anthropic request the proxy itself rejects with 400 (no max_tokens).
pub fn invalid_request() -> Vec<u8> {
    br#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#.to_vec()
}

/// A valid request for the model the mock upstream answers with HTTP 400.
pub fn upstream_error_request() -> Vec<u8> {
    to_bytes(&json!({
        "model": "mock-error",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }))
}

const TOOL_NAMES: &[&str] = &[
    "Bash",
    "Read",
    "Edit",
    "Write",
    "Glob",
    "Grep",
    "Task",
    "TodoWrite",
    "WebFetch",
    "WebSearch",
    "NotebookEdit",
    "MultiEdit",
    "LS",
    "ExitPlanMode",
    "BashOutput",
    "KillShell",
    "SlashCommand",
    "ListMcpResources",
    "ReadMcpResource",
    "AskUser",
    "Skill",
    "EnterWorktree",
    "ReviewDiff",
    "RunTests",
];

/// A tool with a realistic JSON schema: strings, numbers, enums, booleans,
/// and an array of objects every third tool.
fn tool_def(i: usize) -> Value {
    let name = TOOL_NAMES[i % TOOL_NAMES.len()];
    let mut schema = json!({
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": lorem(120, i * 3 + 1)},
            "limit": {"type": "number", "description": "Maximum number of lines to read"},
            "mode": {"type": "string", "enum": ["content", "files_with_matches", "count"], "description": lorem(80, i)},
            "recursive": {"type": "boolean", "description": "Whether to descend into sub-directories"},
        },
        "required": ["path"],
        "additionalProperties": false,
        "$schema": "http://json-schema.org/draft-07/schema#",
    });
    if i.is_multiple_of(3) {
        schema["properties"]["items"] = json!({
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "content": {"type": "string", "minLength": 1},
                    "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]},
                    "id": {"type": "string"},
                },
                "required": ["content", "status", "id"],
                "additionalProperties": false,
            },
            "description": lorem(100, i + 40),
        });
    }
    json!({"name": name, "description": lorem(1280, i + 100), "input_schema": schema})
}

/// Shaped like a first Claude Code turn (~76 KB): 3-block system array with
/// cache_control, 24 tools, a mid-conversation `role:"system"` message, a
/// tool round trip, adaptive thinking, context_management, output_config,
/// metadata.user_id, max_tokens 64000, stream true. All text is filler.
pub fn claude_code_request() -> Vec<u8> {
    let tools: Vec<Value> = (0..24).map(tool_def).collect();
    let user_id = r#"{"device_id":"0f3c9a1e5b7d4c2a8e6f1b3d5a7c9e0f","account_uuid":"","session_id":"6d1f2b7c-3a4e-4f5a-9b8c-7d6e5f4a3b2c"}"#;
    to_bytes(&json!({
        "model": "claude-opus-4-8",
        "max_tokens": 64000,
        "stream": true,
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": user_id},
        "system": [
            {"type": "text", "text": "x-billing-header: cc_version=0.0.0; cc_entrypoint=cli"},
            {"type": "text", "text": lorem(400, 7), "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": lorem(14_500, 8), "cache_control": {"type": "ephemeral"}},
        ],
        "tools": arr(tools),
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": format!("<system-reminder>\n{}\n</system-reminder>", lorem(5_000, 9))},
                {"type": "text", "text": "Find where the config is loaded and add a --dry-run flag."},
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "I'll look for the config loader first."},
                {"type": "tool_use", "id": "toolu_01A2b3C4d5E6f7G8h9I0j1K2", "name": "Grep",
                 "input": {"path": "src", "mode": "files_with_matches", "recursive": true}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A2b3C4d5E6f7G8h9I0j1K2",
                 "content": lorem(3_000, 10), "is_error": false, "cache_control": {"type": "ephemeral"}},
            ]},
            {"role": "system", "content": lorem(300, 11)},
            {"role": "user", "content": [{"type": "text", "text": "Go ahead."}]},
        ],
    }))
}

/// Tool-heavy conversation: parallel tool calls, block-content and error
/// tool results, tool_choice naming a tool.
pub fn complex_tool_request() -> Vec<u8> {
    let tools: Vec<Value> = (0..8).map(tool_def).collect();
    let mut msgs = vec![json!({"role": "user", "content": "Refactor the parser and run the tests."})];
    for turn in 0..4 {
        let calls: Vec<Value> = (0..3)
            .map(|k| {
                json!({"type": "tool_use", "id": format!("toolu_{turn}_{k}"), "name": TOOL_NAMES[k],
                       "input": {"path": format!("src/mod{k}.rs"), "limit": 200, "items": [
                           {"content": lorem(60, k), "status": "pending", "id": "a"}]}})
            })
            .collect();
        let mut content = vec![json!({"type": "text", "text": lorem(120, turn)})];
        content.extend(calls);
        msgs.push(json!({"role": "assistant", "content": arr(content)}));
        let results: Vec<Value> = (0..3)
            .map(|k| {
                if k == 2 {
                    json!({"type": "tool_result", "tool_use_id": format!("toolu_{turn}_{k}"), "is_error": true,
                           "content": "Exit code 1: command not found"})
                } else {
                    json!({"type": "tool_result", "tool_use_id": format!("toolu_{turn}_{k}"),
                           "content": [{"type": "text", "text": lorem(400, turn * 3 + k)}]})
                }
            })
            .collect();
        msgs.push(json!({"role": "user", "content": arr(results)}));
    }
    to_bytes(&json!({
        "model": MODEL,
        "max_tokens": 8192,
        "tools": arr(tools),
        "tool_choice": {"type": "tool", "name": "Bash"},
        "messages": arr(msgs),
    }))
}

// ---------------------------------------------------------------- OpenAI responses

fn completion(message: Value, finish: &str) -> Vec<u8> {
    to_bytes(&json!({
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "upstream-model",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 180, "total_tokens": 1380,
                  "prompt_tokens_details": {"cached_tokens": 1024}},
        "system_fingerprint": "fp_bench",
    }))
}

pub fn openai_simple() -> Vec<u8> {
    completion(json!({"role": "assistant", "content": "I'm doing well, thanks for asking! How can I help?"}), "stop")
}

pub fn openai_large(bytes: usize) -> Vec<u8> {
    completion(json!({"role": "assistant", "content": lorem(bytes.saturating_sub(330), 3)}), "stop")
}

pub fn openai_tool_call() -> Vec<u8> {
    completion(
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": "call_abc123", "type": "function",
            "function": {"name": "Bash", "arguments": "{\"command\":\"ls -la\",\"timeout\":120000}"}}]}),
        "tool_calls",
    )
}

/// Reasoning, text and five parallel tool calls with sizeable arguments.
pub fn openai_complex_tools() -> Vec<u8> {
    let calls: Vec<Value> = (0..5)
        .map(|k| {
            let args = to_bytes(&json!({"path": format!("src/file{k}.rs"), "old_string": lorem(300, k),
                                        "new_string": lorem(320, k + 9), "replace_all": false}));
            json!({"id": format!("call_{k}:fn.Edit"), "type": "function",
                   "function": {"name": "Edit", "arguments": String::from_utf8(args).expect("utf8")}})
        })
        .collect();
    completion(
        json!({"role": "assistant", "reasoning_content": lorem(500, 4), "content": "Applying the edits now.",
               "tool_calls": arr(calls)}),
        "tool_calls",
    )
}

// ---------------------------------------------------------------- OpenAI streams

fn sse_chunk(out: &mut String, delta: &Value, finish: Option<&str>) {
    let v = json!({
        "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": "upstream-model",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    });
    out.push_str("data: ");
    out.push_str(&sonic_rs::to_string(&v).expect("chunk"));
    out.push_str("\n\n");
}

fn sse_tail(out: &mut String, finish: &str) {
    sse_chunk(out, &json!({}), Some(finish));
    out.push_str(
        "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\
         \"model\":\"upstream-model\",\"choices\":[],\"usage\":{\"prompt_tokens\":1200,\
         \"completion_tokens\":180,\"total_tokens\":1380,\"prompt_tokens_details\":{\"cached_tokens\":1024}}}\n\n",
    );
    out.push_str("data: [DONE]\n\n");
}

/// A text stream of exactly `chunks` SSE events (role, deltas, finish,
/// usage, [DONE]), each delta one to three words as real models send.
/// Returns the events, one per element, so callers can feed them apart.
pub fn openai_text_stream(chunks: usize) -> Vec<String> {
    let mut events = Vec::with_capacity(chunks);
    let mut e = String::new();
    sse_chunk(&mut e, &json!({"role": "assistant", "content": ""}), None);
    events.push(std::mem::take(&mut e));
    for i in 0..chunks.saturating_sub(4) {
        sse_chunk(&mut e, &json!({"content": format!("{} ", lorem(1 + i % 12, i))}), None);
        events.push(std::mem::take(&mut e));
    }
    sse_tail(&mut e, "stop");
    events.extend(e.split_inclusive("\n\n").map(str::to_owned));
    events
}

/// Text, then two tool calls whose arguments arrive in small fragments.
pub fn openai_tool_stream(chunks: usize) -> Vec<String> {
    let mut events = Vec::with_capacity(chunks);
    let mut e = String::new();
    sse_chunk(&mut e, &json!({"role": "assistant", "content": "Let me check."}), None);
    events.push(std::mem::take(&mut e));
    let per_call = chunks.saturating_sub(6) / 2;
    for call in 0..2 {
        let head = json!({"tool_calls": [{"index": call, "id": format!("call_{call}"), "type": "function",
                                          "function": {"name": "Bash", "arguments": ""}}]});
        sse_chunk(&mut e, &head, None);
        events.push(std::mem::take(&mut e));
        let args = format!("{{\"command\":\"{}\"}}", lorem(per_call * 6, call));
        let bytes = args.as_bytes();
        let step = bytes.len().div_ceil(per_call.max(1)).max(1);
        let mut at = 0;
        while at < bytes.len() {
            let mut end = (at + step).min(bytes.len());
            while !args.is_char_boundary(end) {
                end += 1;
            }
            let frag = &args[at..end];
            sse_chunk(&mut e, &json!({"tool_calls": [{"index": call, "function": {"arguments": frag}}]}), None);
            events.push(std::mem::take(&mut e));
            at = end;
        }
    }
    sse_tail(&mut e, "tool_calls");
    events.extend(e.split_inclusive("\n\n").map(str::to_owned));
    events
}

/// An OpenAI error body, as providers send with 4xx/5xx.
pub const OPENAI_ERROR: &[u8] = br#"{"error":{"message":"Rate limit reached for requests. Please try again in 5s.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
