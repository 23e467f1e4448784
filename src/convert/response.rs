//! OpenAI Chat Completions response → Anthropic message (non-streaming).
//!
//! Receives the complete upstream response body (HTTP 200) from the lifecycle
//! plus the client's model name and a fresh `msg_` id, and appends one
//! Anthropic `message` JSON object to a caller-owned buffer. It returns the
//! [`Outcome`] (stop reason and usage) for the access log.
//!
//! The body is validated once ([`json::validate_with_tape`]) and walked
//! with [`json::Lazy`], without allocating: strings the client sees verbatim
//! (text, thinking, tool names, tool arguments) are copied as raw JSON bytes,
//! never decoded and re-encoded.
//!
//! Mapping decisions worth knowing:
//! - Only `choices[0]` is converted; Anthropic has no `n > 1`.
//! - Content order is thinking (`reasoning_content`, else `reasoning`), text
//!   (`content` as a string or as `{"type":"text"}` parts; empty skipped),
//!   `refusal` as a plain text block, then `tool_use` blocks (including the
//!   legacy `function_call`).
//! - Tool `arguments` (a JSON string) become the `input` object: an empty
//!   string or `null` gives `{}`; invalid JSON or a non-object gives
//!   `{"_raw": "<the arguments string>"}` so nothing the model produced is
//!   lost and the tool's own validation reports the problem to the model.
//!   Some servers send `arguments` as an object already; it is copied.
//! - vLLM's `choices[0].stop_reason` string becomes `stop_sequence`.
//! - Tool ids Anthropic would refuse, and ids carrying a Gemini
//!   `extra_content.google.thought_signature`, are encoded reversibly
//!   (see [`crate::convert::tool_ids`]); shortened tool names are mapped
//!   back to the client's (see [`crate::convert::tool_names`]).
//! - A 200 body that is not JSON, has no choices, or is an error object is a
//!   502 for the client, carrying the upstream message where there is one.

use crate::convert::{stop_reason, tool_ids, Outcome, ToolNames, Usage};
use crate::error::{upstream_message, ProxyError};
use crate::json::{self, Lazy};

/// Converts an upstream Chat Completions body into an Anthropic message and
/// appends it to `out`. On error `out` is left as it was.
///
/// `model` = the model name the client asked for (echoed back);
/// `message_id` = a fresh `msg_` id from the caller; `names` = the request's
/// shortened tool names ([`crate::convert::request::RequestMeta::tool_names`]).
pub fn convert_response(
    body: &[u8],
    model: &str,
    message_id: &str,
    names: &ToolNames,
    out: &mut Vec<u8>,
) -> Result<Outcome, ProxyError> {
    let mut tape = json::take_tape();
    let result = convert_with_tape(body, &mut tape, model, message_id, names, out);
    json::give_tape(tape);
    result
}

fn convert_with_tape(
    body: &[u8],
    tape: &mut Vec<json::Span>,
    model: &str,
    message_id: &str,
    names: &ToolNames,
    out: &mut Vec<u8>,
) -> Result<Outcome, ProxyError> {
    // Lone surrogate escapes pass through to the client, unlike on the way
    // upstream: the SDKs' parsers (JSON.parse, Python's json) accept them.
    let text = match json::validate_with_tape(body, json::MAX_DEPTH, tape) {
        Ok(v) => v.text,
        Err(json::Invalid::Depth) => {
            return Err(ProxyError::bad_gateway("upstream response nests objects or arrays deeper than 128 levels"))
        }
        Err(json::Invalid::Syntax) => return Err(syntax_error(body)),
    };
    let top = parse_top(text, tape)?;
    let start = out.len();
    let result = write_message(&top, model, message_id, names, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// The parts of the top-level object we use.
#[derive(Default)]
struct Top<'a> {
    choice: Option<Lazy<'a>>,
    usage: Option<Lazy<'a>>,
}

/// The parts of `choices[0]` we use.
#[derive(Default)]
struct Choice<'a> {
    finish_reason: Option<Lazy<'a>>,
    vllm_stop: Option<Lazy<'a>>,
    content: Option<Lazy<'a>>,
    reasoning_content: Option<Lazy<'a>>,
    reasoning: Option<Lazy<'a>>,
    refusal: Option<Lazy<'a>>,
    tool_calls: Option<Lazy<'a>>,
    function_call: Option<Lazy<'a>>,
}

fn upstream_json_error(e: sonic_rs::Error) -> ProxyError {
    ProxyError::bad_gateway(format!("upstream returned a response body that is not valid JSON: {e}"))
}

/// The message for a body [`json::validate`] refused as malformed: sonic's
/// own, naming line and column (error path only; sonic recurses, so the
/// depth is bounded first).
fn syntax_error(body: &[u8]) -> ProxyError {
    if json::depth_within(body, json::MAX_DEPTH) {
        if let Some(e) = sonic_rs::to_object_iter(body).find_map(Result::err) {
            return upstream_json_error(e);
        }
    }
    ProxyError::bad_gateway("upstream returned a response body that is not valid JSON")
}

/// Reads the top level of a body [`json::validate`] accepted.
fn parse_top<'a>(text: &'a str, tape: &'a [json::Span]) -> Result<Top<'a>, ProxyError> {
    let mut top = Top::default();
    let mut choices = None;
    let mut error = None;
    let body = text.as_bytes();
    let entries = Lazy::with_tape(text, tape).entries().ok_or_else(|| syntax_error(body))?;
    for (key, value) in entries {
        match &*key.name() {
            "choices" => choices = Some(value),
            "usage" => top.usage = Some(value),
            "error" if !value.is_null() => error = Some(value),
            _ => {}
        }
    }
    if let Some(err) = error {
        return Err(upstream_error_object(body, &err));
    }
    let choices = choices.ok_or_else(|| ProxyError::bad_gateway("upstream response has no `choices`"))?;
    let mut iter =
        choices.elements().ok_or_else(|| ProxyError::bad_gateway("upstream response `choices` is not an array"))?;
    match iter.next() {
        Some(first) => top.choice = Some(first),
        None => return Err(ProxyError::bad_gateway("upstream response has an empty `choices` array")),
    }
    Ok(top)
}

/// An `{"error": ...}` object delivered with HTTP 200 (OpenRouter and some
/// local servers do this).
fn upstream_error_object(body: &[u8], err: &Lazy<'_>) -> ProxyError {
    let detail = upstream_message(body).or_else(|| err.as_str().map(|s| s.into_owned()));
    match detail {
        Some(m) => ProxyError::bad_gateway(format!("upstream returned an error with HTTP 200: {m}")),
        None => ProxyError::bad_gateway("upstream returned an error object with HTTP 200"),
    }
}

fn parse_choice<'a>(choice: Lazy<'a>) -> Result<Choice<'a>, ProxyError> {
    let mut c = Choice::default();
    let iter =
        choice.entries().ok_or_else(|| ProxyError::bad_gateway("upstream response `choices[0]` is not an object"))?;
    let mut message = None;
    for (key, value) in iter {
        match &*key.name() {
            "message" => message = Some(value),
            "finish_reason" => c.finish_reason = Some(value),
            "stop_reason" => c.vllm_stop = Some(value),
            "error" if !value.is_null() => {
                let detail = value
                    .get("message")
                    .and_then(|m| m.as_str().map(|s| s.into_owned()))
                    .unwrap_or_else(|| value.as_raw_str().to_owned());
                return Err(ProxyError::bad_gateway(format!("upstream choice failed: {detail}")));
            }
            _ => {}
        }
    }
    let message = message.ok_or_else(|| ProxyError::bad_gateway("upstream response `choices[0]` has no `message`"))?;
    let iter = message
        .entries()
        .ok_or_else(|| ProxyError::bad_gateway("upstream response `choices[0].message` is not an object"))?;
    for (key, value) in iter {
        match &*key.name() {
            "content" => c.content = Some(value),
            "reasoning_content" => c.reasoning_content = Some(value),
            "reasoning" => c.reasoning = Some(value),
            "refusal" => c.refusal = Some(value),
            "tool_calls" => c.tool_calls = Some(value),
            "function_call" => c.function_call = Some(value),
            _ => {}
        }
    }
    Ok(c)
}

fn write_message(
    top: &Top<'_>,
    model: &str,
    message_id: &str,
    names: &ToolNames,
    out: &mut Vec<u8>,
) -> Result<Outcome, ProxyError> {
    let choice = match &top.choice {
        Some(c) => parse_choice(*c)?,
        None => return Err(ProxyError::bad_gateway("upstream response has no choices")),
    };
    let usage = top.usage.as_ref().map(read_usage).unwrap_or_default();

    out.extend_from_slice(b"{\"id\":");
    json::write_str(out, message_id);
    out.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"content\":[");
    let mut blocks = Blocks { first: true };

    // `reasoning_content` (DeepSeek, vLLM) wins over `reasoning` (Ollama,
    // OpenRouter): servers that send both send the same text twice.
    let thinking = non_empty_str(&choice.reasoning_content).or_else(|| non_empty_str(&choice.reasoning));
    if let Some(t) = thinking {
        blocks.open(out);
        out.extend_from_slice(b"{\"type\":\"thinking\",\"thinking\":");
        write_raw_string(out, t);
        out.extend_from_slice(b",\"signature\":\"\"}");
    }

    if let Some(content) = &choice.content {
        write_content(content, &mut blocks, out);
    }
    if let Some(r) = non_empty_str(&choice.refusal) {
        write_text_block(r, &mut blocks, out);
    }

    let mut saw_tool_call = false;
    let mut tools = Tools { id: String::new(), names };
    if let Some(calls) = choice.tool_calls.and_then(|t| t.elements()) {
        for call in calls {
            if write_tool_call(&call, &mut tools, &mut blocks, out)? {
                saw_tool_call = true;
            }
        }
    }
    if let Some(fc) = &choice.function_call {
        if fc.is_object() && write_function(fc, "", None, &mut tools, &mut blocks, out) {
            saw_tool_call = true;
        }
    }

    out.extend_from_slice(b"],\"model\":");
    json::write_str(out, model);

    let finish = choice.finish_reason.as_ref().and_then(|v| v.as_str());
    let finish = finish.as_deref();
    let vllm_stop = choice.vllm_stop.as_ref().filter(|v| v.is_str());
    let reason = match vllm_stop {
        Some(_) if !saw_tool_call => "stop_sequence",
        _ => stop_reason(finish, saw_tool_call),
    };
    out.extend_from_slice(b",\"stop_reason\":\"");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\",\"stop_sequence\":");
    match vllm_stop {
        Some(s) if reason == "stop_sequence" => write_raw_string(out, s),
        _ => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"usage\":{\"input_tokens\":");
    json::write_u64(out, usage.input_tokens);
    out.extend_from_slice(b",\"output_tokens\":");
    json::write_u64(out, usage.output_tokens);
    out.extend_from_slice(b",\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":");
    json::write_u64(out, usage.cache_read_input_tokens);
    out.extend_from_slice(b"}}");

    Ok(Outcome { stop_reason: Some(reason), usage })
}

/// Comma bookkeeping for the `content` array.
struct Blocks {
    first: bool,
}

impl Blocks {
    fn open(&mut self, out: &mut Vec<u8>) {
        if !self.first {
            out.push(b',');
        }
        self.first = false;
    }
}

/// A string value that is not `""`; `null`, numbers etc. count as absent.
fn non_empty_str<'v, 'a>(v: &'v Option<Lazy<'a>>) -> Option<&'v Lazy<'a>> {
    v.as_ref().filter(|v| v.is_str() && v.as_raw_str().len() > 2)
}

fn write_text_block(text: &Lazy<'_>, blocks: &mut Blocks, out: &mut Vec<u8>) {
    blocks.open(out);
    out.extend_from_slice(b"{\"type\":\"text\",\"text\":");
    write_raw_string(out, text);
    out.push(b'}');
}

/// `content` is usually a string, but some servers (Mistral among them)
/// answer with an array of parts; their text parts become text blocks.
fn write_content(content: &Lazy<'_>, blocks: &mut Blocks, out: &mut Vec<u8>) {
    if content.is_str() {
        if content.as_raw_str().len() > 2 {
            write_text_block(content, blocks, out);
        }
        return;
    }
    let Some(parts) = content.elements() else { return };
    for part in parts {
        if part.get("type").and_then(|t| t.as_str().map(|t| t == "text")) != Some(true) {
            continue;
        }
        if let Some(text) = part.get("text") {
            if text.is_str() && text.as_raw_str().len() > 2 {
                write_text_block(&text, blocks, out);
            }
        }
    }
}

/// Per-message tool-call state: a reusable id buffer and the name map.
struct Tools<'n> {
    id: String,
    names: &'n ToolNames,
}

/// Writes one `tool_calls[]` entry; returns whether a block was written.
fn write_tool_call(
    call: &Lazy<'_>,
    tools: &mut Tools<'_>,
    blocks: &mut Blocks,
    out: &mut Vec<u8>,
) -> Result<bool, ProxyError> {
    if !call.is_object() {
        return Ok(false);
    }
    let id_value = call.get("id");
    let id = id_value.as_ref().and_then(|v| v.as_str());
    let id = id.as_deref().unwrap_or("");
    let sig_value = call.pointer(&["extra_content", "google", "thought_signature"]);
    let signature = sig_value.as_ref().and_then(|v| v.as_str());
    let signature = signature.as_deref();
    let Some(function) = call.get("function").filter(|f| f.is_object()) else {
        tracing::warn!(tool_call = clip(call.as_raw_str()), "upstream tool call without a `function` object; dropped");
        return Ok(false);
    };
    Ok(write_function(&function, id, signature, tools, blocks, out))
}

/// Writes a `{name, arguments}` function object as a `tool_use` block.
fn write_function(
    function: &Lazy<'_>,
    id: &str,
    signature: Option<&str>,
    tools: &mut Tools<'_>,
    blocks: &mut Blocks,
    out: &mut Vec<u8>,
) -> bool {
    let name = function.get("name").filter(|n| n.is_str() && n.as_raw_str().len() > 2);
    let Some(name) = name else {
        tracing::warn!(function = clip(function.as_raw_str()), "upstream tool call without a name; dropped");
        return false;
    };
    tool_ids::encode(id, signature, &mut tools.id);
    blocks.open(out);
    out.extend_from_slice(b"{\"type\":\"tool_use\",\"id\":");
    json::write_str(out, &tools.id);
    out.extend_from_slice(b",\"name\":");
    let original = if tools.names.is_empty() { None } else { name.as_str().and_then(|n| tools.names.original(&n)) };
    match original {
        Some(original) => json::write_str(out, original),
        None => write_raw_string(out, &name),
    }
    out.extend_from_slice(b",\"input\":");
    write_input(function.get("arguments").as_ref(), name.as_raw_str(), out);
    out.push(b'}');
    true
}

/// Writes the tool `input` object from OpenAI's `arguments`.
fn write_input(arguments: Option<&Lazy<'_>>, name: &str, out: &mut Vec<u8>) {
    let Some(args) = arguments else {
        out.extend_from_slice(b"{}");
        return;
    };
    if args.is_object() {
        write_raw_json(out, args.as_raw_str().as_bytes());
        return;
    }
    if args.is_null() {
        out.extend_from_slice(b"{}");
        return;
    }
    let Some(text) = args.as_str() else {
        tracing::warn!(
            tool = name,
            arguments = clip(args.as_raw_str()),
            "tool arguments are not a string; kept as _raw"
        );
        out.extend_from_slice(b"{\"_raw\":");
        write_raw_json(out, args.as_raw_str().as_bytes());
        out.push(b'}');
        return;
    };
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "null" {
        out.extend_from_slice(b"{}");
        return;
    }
    // The arguments are JSON inside a string: validated (depth included)
    // here, since the body's validation saw only a string.
    if trimmed.starts_with('{') && json::validate(trimmed.as_bytes(), json::MAX_DEPTH).is_ok() {
        write_raw_json(out, trimmed.as_bytes());
        return;
    }
    tracing::warn!(tool = name, arguments = clip(&text), "tool arguments are not a JSON object; kept as _raw");
    out.extend_from_slice(b"{\"_raw\":");
    write_raw_string(out, args);
    out.push(b'}');
}

/// Copies a JSON string value as its raw, already-escaped bytes.
fn write_raw_string(out: &mut Vec<u8>, v: &Lazy<'_>) {
    write_raw_json(out, v.as_raw_str().as_bytes());
}

/// Copies raw JSON text that sonic-rs validated. Validation lets lone UTF-16
/// surrogate escapes (`\ud800`) through and strict parsers reject them, so
/// they become U+FFFD. Backslashes only occur inside strings in JSON, so the
/// scan works on any value.
fn write_raw_json(out: &mut Vec<u8>, raw: &[u8]) {
    if memchr::memmem::find(raw, b"\\u").is_none() {
        out.extend_from_slice(raw);
        return;
    }
    // Copied in spans; only lone surrogates are rewritten.
    let (mut start, mut i) = (0, 0);
    while let Some(off) = memchr::memchr(b'\\', raw.get(i..).unwrap_or_default()) {
        let at = i + off;
        if raw.get(at + 1) != Some(&b'u') {
            i = at + 2;
            continue;
        }
        match hex4(raw, at + 2) {
            Some(0xD800..=0xDBFF)
                if raw.get(at + 6) == Some(&b'\\')
                    && raw.get(at + 7) == Some(&b'u')
                    && matches!(hex4(raw, at + 8), Some(0xDC00..=0xDFFF)) =>
            {
                i = at + 12;
            }
            Some(0xD800..=0xDFFF) => {
                out.extend_from_slice(raw.get(start..at).unwrap_or_default());
                out.extend_from_slice(b"\\ufffd");
                i = at + 6;
                start = i;
            }
            _ => i = at + 6,
        }
    }
    out.extend_from_slice(raw.get(start..).unwrap_or_default());
}

/// Bounds what a warning logs of model output (tool arguments can be whole files).
fn clip(s: &str) -> &str {
    let mut end = s.len().min(512);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn hex4(raw: &[u8], at: usize) -> Option<u32> {
    let digits = raw.get(at..at + 4)?;
    let s = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// Reads OpenAI usage; DeepSeek reports cache hits as `prompt_cache_hit_tokens`.
fn read_usage(usage: &Lazy<'_>) -> Usage {
    let num = |key: &str| usage.get(key).and_then(|v| v.as_u64());
    let prompt = num("prompt_tokens").unwrap_or(0);
    let completion = num("completion_tokens").unwrap_or(0);
    let cached = usage
        .get("prompt_tokens_details")
        .and_then(|d| d.get("cached_tokens").and_then(|v| v.as_u64()))
        .or_else(|| num("prompt_cache_hit_tokens"))
        .unwrap_or(0);
    Usage::from_openai(prompt, completion, cached)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonic_rs::{pointer, JsonValueTrait, Value};

    fn conv(body: &str) -> (Value, Outcome) {
        let mut out = Vec::new();
        let outcome =
            convert_response(body.as_bytes(), "claude-test", "msg_1", &ToolNames::default(), &mut out).unwrap();
        let v: Value = sonic_rs::from_slice(&out)
            .unwrap_or_else(|e| panic!("output is not JSON: {e}: {}", String::from_utf8_lossy(&out)));
        (v, outcome)
    }

    fn val(s: &str) -> Value {
        sonic_rs::from_str(s).unwrap()
    }

    fn content(v: &Value) -> String {
        v.get("content").unwrap().to_string()
    }

    fn body(message: &str, finish: &str, usage: &str) -> String {
        format!(
            r#"{{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"up",
            "choices":[{{"index":0,"message":{message},"finish_reason":{finish}}}]{usage}}}"#
        )
    }

    #[test]
    fn plain_text_has_the_exact_anthropic_shape() {
        let b = body(
            r#"{"role":"assistant","content":"Hello there"}"#,
            r#""stop""#,
            r#","usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}"#,
        );
        let (v, outcome) = conv(&b);
        assert_eq!(
            v,
            val(r#"{"id":"msg_1","type":"message","role":"assistant",
                "content":[{"type":"text","text":"Hello there"}],"model":"claude-test",
                "stop_reason":"end_turn","stop_sequence":null,
                "usage":{"input_tokens":12,"output_tokens":3,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}"#)
        );
        assert_eq!(outcome.stop_reason, Some("end_turn"));
        assert_eq!(outcome.usage, Usage { input_tokens: 12, output_tokens: 3, cache_read_input_tokens: 0 });
    }

    #[test]
    fn content_order_is_thinking_text_tool_whatever_the_field_order() {
        let b = body(
            r#"{"tool_calls":[{"id":"call_1","type":"function","function":{"name":"Bash","arguments":"{\"command\":\"ls\"}"}}],
                "content":"Let me look.","reasoning_content":"User wants files.","role":"assistant"}"#,
            r#""tool_calls""#,
            "",
        );
        let (v, outcome) = conv(&b);
        assert_eq!(
            v.get("content").unwrap(),
            &val(r#"[{"type":"thinking","thinking":"User wants files.","signature":""},
                {"type":"text","text":"Let me look."},
                {"type":"tool_use","id":"call_1","name":"Bash","input":{"command":"ls"}}]"#)
        );
        assert_eq!(outcome.stop_reason, Some("tool_use"));
    }

    #[test]
    fn reasoning_field_and_precedence() {
        let (v, _) = conv(&body(r#"{"content":"ok","reasoning":"ollama thinks"}"#, r#""stop""#, ""));
        assert_eq!(
            v.get("content").unwrap(),
            &val(r#"[{"type":"thinking","thinking":"ollama thinks","signature":""},{"type":"text","text":"ok"}]"#)
        );
        let (v, _) = conv(&body(r#"{"content":"ok","reasoning":"twice","reasoning_content":"twice"}"#, "null", ""));
        assert_eq!(content(&v).matches(r#""type":"thinking""#).count(), 1, "{}", content(&v));
        let (v, _) = conv(&body(r#"{"content":"ok","reasoning_content":"","reasoning":null}"#, "null", ""));
        assert_eq!(v.get("content").unwrap(), &val(r#"[{"type":"text","text":"ok"}]"#));
    }

    #[test]
    fn empty_and_null_content_are_skipped() {
        for msg in [r#"{"content":""}"#, r#"{"content":null}"#, r#"{"role":"assistant"}"#, r#"{"content":[]}"#] {
            let (v, _) = conv(&body(msg, r#""length""#, ""));
            assert_eq!(v.get("content").unwrap(), &val("[]"), "{msg}");
            assert_eq!(v.get("stop_reason").unwrap().as_str(), Some("max_tokens"));
        }
    }

    #[test]
    fn content_parts_array_keeps_text_parts() {
        let (v, _) = conv(&body(
            r#"{"content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{}},{"type":"text","text":""},{"type":"text","text":"b"}]}"#,
            r#""stop""#,
            "",
        ));
        assert_eq!(v.get("content").unwrap(), &val(r#"[{"type":"text","text":"a"},{"type":"text","text":"b"}]"#));
    }

    #[test]
    fn refusal_becomes_text() {
        let (v, outcome) = conv(&body(r#"{"content":null,"refusal":"I can't help with that."}"#, r#""stop""#, ""));
        assert_eq!(v.get("content").unwrap(), &val(r#"[{"type":"text","text":"I can't help with that."}]"#));
        assert_eq!(outcome.stop_reason, Some("end_turn"));
        let (_, outcome) = conv(&body(r#"{"content":null}"#, r#""content_filter""#, ""));
        assert_eq!(outcome.stop_reason, Some("refusal"));
    }

    fn tool_input(arguments: &str) -> (Value, Vec<u8>) {
        let b = body(
            &format!(
                r#"{{"tool_calls":[{{"id":"c","type":"function","function":{{"name":"T","arguments":{arguments}}}}}]}}"#
            ),
            r#""tool_calls""#,
            "",
        );
        let mut out = Vec::new();
        convert_response(b.as_bytes(), "m", "msg_1", &ToolNames::default(), &mut out).unwrap();
        let v: Value = sonic_rs::from_slice(&out).unwrap();
        (v.pointer(&pointer!["content", 0, "input"]).unwrap().clone(), out)
    }

    #[test]
    fn tool_arguments_become_input_objects() {
        // A valid object is copied byte for byte, spacing included.
        let (input, out) = tool_input(r#""{\"path\": \"/tmp/x\",  \"n\": [1, 2]}""#);
        assert_eq!(input, val(r#"{"path":"/tmp/x","n":[1,2]}"#));
        assert!(String::from_utf8(out).unwrap().contains(r#""input":{"path": "/tmp/x",  "n": [1, 2]}"#));
        assert_eq!(tool_input(r#""""#).0, val("{}"));
        assert_eq!(tool_input(r#""  ""#).0, val("{}"));
        assert_eq!(tool_input("null").0, val("{}"));
        assert_eq!(tool_input(r#""null""#).0, val("{}"));
        assert_eq!(tool_input(r#"{"already":"object"}"#).0, val(r#"{"already":"object"}"#));
    }

    #[test]
    fn bad_tool_arguments_keep_a_valid_object() {
        assert_eq!(tool_input(r#""{\"a\": 1""#).0, val(r#"{"_raw":"{\"a\": 1"}"#));
        assert_eq!(tool_input(r#""[1,2]""#).0, val(r#"{"_raw":"[1,2]"}"#));
        assert_eq!(tool_input(r#""{\"a\":1} trailing""#).0, val(r#"{"_raw":"{\"a\":1} trailing"}"#));
        assert_eq!(tool_input(r#""not json""#).0, val(r#"{"_raw":"not json"}"#));
        assert_eq!(tool_input("42").0, val(r#"{"_raw":42}"#));
        // A lone surrogate inside otherwise valid arguments must not leak
        // into the output, which strict parsers would then reject.
        let (input, _) = tool_input(r#""{\"t\":\"\\ud800\"}""#);
        assert_eq!(input, val(r#"{"t":"\ufffd"}"#));
    }

    #[test]
    fn tool_ids_are_encoded_or_minted() {
        let (v, _) = conv(&body(
            r#"{"tool_calls":[{"id":"functions.Bash:0","type":"function","function":{"name":"Bash","arguments":"{}"}},
                {"type":"function","function":{"name":"Read","arguments":"{}"}}]}"#,
            r#""tool_calls""#,
            "",
        ));
        let id = v.pointer(&pointer!["content", 0, "id"]).unwrap().as_str().unwrap();
        assert!(tool_ids::is_valid_id(id), "{id}");
        assert_eq!(tool_ids::decode(id).unwrap().id, "functions.Bash:0");
        let minted = v.pointer(&pointer!["content", 1, "id"]).unwrap().as_str().unwrap();
        assert!(minted.starts_with("toolu_") && minted.len() > 10, "{minted}");
    }

    #[test]
    fn gemini_two_tool_calls_with_finish_stop_are_tool_use() {
        let (v, outcome) = conv(&body(
            r#"{"role":"assistant","content":null,"tool_calls":[
                {"id":"a1","type":"function","function":{"name":"Read","arguments":"{\"file\":\"a\"}"}},
                {"id":"a2","type":"function","function":{"name":"Read","arguments":"{\"file\":\"b\"}"}}]}"#,
            r#""stop""#,
            "",
        ));
        assert_eq!(
            v.get("content").unwrap(),
            &val(r#"[{"type":"tool_use","id":"a1","name":"Read","input":{"file":"a"}},
                {"type":"tool_use","id":"a2","name":"Read","input":{"file":"b"}}]"#)
        );
        assert_eq!(v.get("stop_reason").unwrap().as_str(), Some("tool_use"));
        assert_eq!(outcome.stop_reason, Some("tool_use"));
    }

    #[test]
    fn nameless_tool_calls_are_dropped_and_legacy_function_call_is_used() {
        let (v, outcome) =
            conv(&body(r#"{"tool_calls":[{"id":"x","function":{"arguments":"{}"}}],"content":"hi"}"#, r#""stop""#, ""));
        assert_eq!(v.get("content").unwrap(), &val(r#"[{"type":"text","text":"hi"}]"#));
        assert_eq!(outcome.stop_reason, Some("end_turn"));
        let (v, outcome) =
            conv(&body(r#"{"function_call":{"name":"f","arguments":"{\"x\":1}"}}"#, r#""function_call""#, ""));
        assert_eq!(v.pointer(&pointer!["content", 0, "name"]).unwrap().as_str(), Some("f"));
        assert_eq!(v.pointer(&pointer!["content", 0, "input"]).unwrap(), &val(r#"{"x":1}"#));
        assert_eq!(outcome.stop_reason, Some("tool_use"));
    }

    #[test]
    fn vllm_stop_reason_string_is_a_stop_sequence() {
        let b = r#"{"choices":[{"message":{"content":"1 2 3"},"finish_reason":"stop","stop_reason":"END\n"}]}"#;
        let (v, outcome) = conv(b);
        assert_eq!(v.get("stop_reason").unwrap().as_str(), Some("stop_sequence"));
        assert_eq!(v.get("stop_sequence").unwrap().as_str(), Some("END\n"));
        assert_eq!(outcome.stop_reason, Some("stop_sequence"));
        // A token id (integer) or null is not a stop string.
        for sr in ["128001", "null"] {
            let b =
                format!(r#"{{"choices":[{{"message":{{"content":"x"}},"finish_reason":"stop","stop_reason":{sr}}}]}}"#);
            let (v, _) = conv(&b);
            assert_eq!(v.get("stop_reason").unwrap().as_str(), Some("end_turn"));
            assert!(v.get("stop_sequence").unwrap().is_null());
        }
    }

    #[test]
    fn usage_mapping() {
        let (v, outcome) = conv(&body(
            r#"{"content":"x"}"#,
            r#""stop""#,
            r#","usage":{"prompt_tokens":100,"completion_tokens":7,"prompt_tokens_details":{"cached_tokens":30}}"#,
        ));
        assert_eq!(
            v.get("usage").unwrap(),
            &val(
                r#"{"input_tokens":70,"output_tokens":7,"cache_creation_input_tokens":0,"cache_read_input_tokens":30}"#
            )
        );
        assert_eq!(outcome.usage, Usage { input_tokens: 70, output_tokens: 7, cache_read_input_tokens: 30 });
        let (v, _) = conv(&body(
            r#"{"content":"x"}"#,
            r#""stop""#,
            r#","usage":{"prompt_tokens":50,"completion_tokens":5,"prompt_cache_hit_tokens":20}"#,
        ));
        assert_eq!(v.pointer(&pointer!["usage", "input_tokens"]).unwrap().as_u64(), Some(30));
        for usage in ["", r#","usage":null"#] {
            let (v, outcome) = conv(&body(r#"{"content":"x"}"#, r#""stop""#, usage));
            assert_eq!(
                v.get("usage").unwrap(),
                &val(
                    r#"{"input_tokens":0,"output_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}"#
                )
            );
            assert_eq!(outcome.usage, Usage::default());
        }
    }

    #[test]
    fn unicode_survives() {
        let (v, _) = conv(&body(
            r#"{"content":"héllo 🎉 日本 \u00e9 \ud83d\ude00","tool_calls":[{"id":"c","function":{"name":"W","arguments":"{\"t\":\"ü🎉\\u00fc\"}"}}]}"#,
            r#""stop""#,
            "",
        ));
        assert_eq!(v.pointer(&pointer!["content", 0, "text"]).unwrap().as_str(), Some("héllo 🎉 日本 é 😀"));
        assert_eq!(v.pointer(&pointer!["content", 1, "input", "t"]).unwrap().as_str(), Some("ü🎉ü"));
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let (v, _) = conv(&body(r#"{"content":"a\ud800b \\u \ud83d\ude00 \udc00"}"#, r#""stop""#, ""));
        assert_eq!(v.pointer(&pointer!["content", 0, "text"]).unwrap().as_str(), Some("a\u{fffd}b \\u 😀 \u{fffd}"));
    }

    fn err_of(body: &[u8]) -> ProxyError {
        let mut out = b"keep".to_vec();
        let e = convert_response(body, "m", "msg_1", &ToolNames::default(), &mut out).unwrap_err();
        assert_eq!(out, b"keep", "output must be untouched on error");
        e
    }

    #[test]
    fn bad_upstream_bodies_are_502() {
        for (b, needle) in [
            (&b"not json"[..], "not valid JSON"),
            (b"", "not valid JSON"),
            (b"[1,2]", "not valid JSON"),
            (br#"{"id":"x"}"#, "no `choices`"),
            (br#"{"choices":[]}"#, "empty `choices`"),
            (br#"{"choices":{}}"#, "not an array"),
            (br#"{"choices":[1]}"#, "not an object"),
            (br#"{"choices":[{"finish_reason":"stop"}]}"#, "no `message`"),
            (br#"{"choices":[{"message":"x"}]}"#, "not an object"),
        ] {
            let e = err_of(b);
            assert_eq!(e.status, 502);
            assert_eq!(e.kind.as_str(), "api_error");
            assert!(e.message.contains(needle), "{:?}: {}", String::from_utf8_lossy(b), e.message);
        }
    }

    #[test]
    fn error_objects_with_200_carry_the_upstream_message() {
        let e = err_of(br#"{"error":{"message":"model overloaded","type":"server_error","code":503}}"#);
        assert_eq!(e.status, 502);
        assert!(e.message.contains("model overloaded"), "{}", e.message);
        let e = err_of(br#"{"error":"quota exceeded"}"#);
        assert!(e.message.contains("quota exceeded"), "{}", e.message);
        let e = err_of(
            br#"{"choices":[{"message":{"content":""},"finish_reason":"error","error":{"message":"provider died"}}]}"#,
        );
        assert!(e.message.contains("provider died"), "{}", e.message);
        // `"error": null` next to real choices is not an error.
        let (v, _) = conv(r#"{"error":null,"choices":[{"message":{"content":"fine"},"finish_reason":"stop"}]}"#);
        assert_eq!(v.pointer(&pointer!["content", 0, "text"]).unwrap().as_str(), Some("fine"));
    }

    #[test]
    fn appends_to_the_callers_buffer() {
        let mut out = b"prefix".to_vec();
        convert_response(
            br#"{"choices":[{"message":{"content":"x"}}]}"#,
            "m",
            "msg_1",
            &ToolNames::default(),
            &mut out,
        )
        .unwrap();
        assert!(out.starts_with(b"prefix{\"id\":\"msg_1\""));
    }

    #[test]
    fn every_prefix_of_a_valid_body_is_handled_without_panic() {
        let b = body(
            r#"{"role":"assistant","reasoning_content":"hmm ü","content":"Hi 🎉",
                "tool_calls":[{"id":"functions.X:0","type":"function","function":{"name":"X","arguments":"{\"a\":[1,{\"b\":\"\\u00e9\"}]}"}}]}"#,
            r#""tool_calls""#,
            r#","usage":{"prompt_tokens":9,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":2}}"#,
        );
        let full = b.as_bytes();
        let mut ok = 0;
        for end in 0..=full.len() {
            let mut out = Vec::new();
            match convert_response(&full[..end], "m", "msg_1", &ToolNames::default(), &mut out) {
                Ok(_) => {
                    ok += 1;
                    sonic_rs::from_slice::<Value>(&out).unwrap();
                }
                Err(e) => {
                    assert_eq!(e.status, 502);
                    assert!(out.is_empty());
                }
            }
        }
        assert_eq!(ok, 1, "only the complete body converts");
        let (v, _) = conv(&b);
        assert_eq!(v.pointer(&pointer!["content", 2, "input"]).unwrap(), &val(r#"{"a":[1,{"b":"é"}]}"#));
    }
}
