//! Anthropic Messages request body → OpenAI Chat Completions request body.
//!
//! Receives the raw client body bytes from the lifecycle and appends the
//! upstream body to a caller-owned buffer, returning the few facts the
//! lifecycle needs afterwards ([`RequestMeta`]). Client mistakes become 400
//! `invalid_request_error`s whose message names the offending field.
//!
//! The body is validated once ([`json::validate_with_tape`]: syntax, UTF-8,
//! nesting depth), which also records where every object, array and long
//! string ends. The top-level fields are then collected as borrowed
//! [`json::Lazy`] values (keys may come in any order, and `system` must be
//! written before `messages`) and the write pass walks them without
//! validating again or allocating, skipping through that tape rather than
//! re-scanning what it does not visit. Strings are never unescaped: a JSON
//! string literal from the input is already valid output, so texts, ids,
//! schemas and tool inputs are copied as raw spans, and joined texts are
//! built by concatenating raw string bodies.
//!
//! Mapping decisions this module owns (README's mapping rules mirror them):
//! - `system` blocks are joined with `"\n\n"` into one leading system message;
//!   a mid-list `role:"system"` message stays in place as a system message.
//! - Tool results become `role:"tool"` messages, in order, before the rest of
//!   their user turn; see [`messages`] for `is_error` and images.
//! - `stop_sequences`: OpenAI takes at most 4, so the first 4 are sent and the
//!   rest are dropped with a debug log line (refusing would break clients that
//!   work against Anthropic); `stop` is only sent when non-empty.
//! - `metadata.user_id` → `user` only when it is at most [`MAX_USER_LEN`]
//!   characters (OpenAI rejects longer ones; Claude Code's is longer, so it is
//!   usually dropped).
//! - `top_k` is dropped. Server tools (a `type` other than `custom`, e.g.
//!   `web_search_20250305`) carry no `input_schema` and have no OpenAI
//!   equivalent, so they are skipped.
//! - `thinking` → an effort, by budget: below 4096 → `low`, below 16384 →
//!   `medium`, else `high`; `adaptive` uses `output_config.effort` (`max` →
//!   `high`) and otherwise `high`, Anthropic's default effort. The effort is
//!   sent as the provider's [`ReasoningParam`] says, or dropped.
//! - `max_tokens` is capped by the provider's cap, and sent as
//!   `max_completion_tokens` to OpenAI reasoning models (see [`Quirks`]).
//! - Every other top-level field (`context_management`, `output_config`,
//!   `service_tier`, `container`, `cache_control`, ...) is never forwarded.
//! - Tool ids the response side encoded (`ccpx_…`, see [`super::tool_ids`])
//!   are decoded back to the upstream's ids; tool names over 64 characters
//!   are shortened (see [`super::tool_names`]).
//!
//! Two phases: [`inspect`] validates the body and exposes what routing
//! needs ([`RouteFacts`]) before the upstream is known; [`convert_inspected`]
//! then writes the body for the routed model and provider.

mod messages;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_quirks;
mod tools;

use std::borrow::Cow;
use std::fmt;

use crate::json::Lazy;

use crate::convert::quirks::{Quirks, ReasoningParam};
use crate::convert::tool_names::ToolNames;
use crate::error::ProxyError;
use crate::json;

/// The upstream chosen by routing, and what it accepts.
#[derive(Debug, Clone, Copy)]
pub struct RequestOptions<'a> {
    /// The upstream model, already routed.
    pub model: &'a str,
    pub quirks: &'a Quirks,
    /// The provider's cap on `max_tokens` (the smaller of the two is sent).
    pub max_tokens_cap: Option<u32>,
}

/// Facts about the client request the lifecycle needs after conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    /// The model name the client asked for (echoed back in responses).
    pub client_model: String,
    pub stream: bool,
    /// Shortened → original tool names, for the response converters.
    pub tool_names: ToolNames,
}

pub use crate::route::RouteFacts;

/// A validated client body, between [`inspect`] and [`convert_inspected`].
pub struct Inspected<'a> {
    /// The body, validated; `tape` is its [`json::validate_with_tape`] tape.
    text: &'a str,
    /// Some string escapes a UTF-16 surrogate (see [`convert_inspected`]).
    surrogate_escapes: bool,
    tape: Vec<json::Span>,
    /// Unescaped `model` (borrowed unless the client escaped it).
    model: Cow<'a, str>,
    max_tokens: u64,
    stream: bool,
    thinking_enabled: bool,
    web_search: bool,
    body_len: usize,
}

impl Drop for Inspected<'_> {
    fn drop(&mut self) {
        json::give_tape(std::mem::take(&mut self.tape));
    }
}

impl Inspected<'_> {
    /// The top-level fields; cheap, the tape skips every value.
    fn top(&self) -> Result<Top<'_>, ProxyError> {
        Top::read(self.text, &self.tape)
    }

    pub fn facts(&self) -> RouteFacts<'_> {
        RouteFacts {
            model: self.client_model(),
            thinking_enabled: self.thinking_enabled,
            web_search: self.web_search,
            body_len: self.body_len,
        }
    }

    /// The model the client asked for (non-empty).
    pub fn client_model(&self) -> &str {
        &self.model
    }

    pub fn stream(&self) -> bool {
        self.stream
    }
}

/// Longest `metadata.user_id` forwarded as OpenAI's `user`, in characters.
pub const MAX_USER_LEN: usize = 64;

/// OpenAI's cap on `stop` entries.
const MAX_STOP: usize = 4;

/// Validates a client body and reads the routing facts. Checks the JSON and
/// the required fields (`model`, `max_tokens`, `messages`, `stream`); the
/// rest is checked while converting.
pub fn inspect(body: &[u8]) -> Result<Inspected<'_>, ProxyError> {
    let mut tape = json::take_tape();
    let (text, surrogate_escapes) = match json::validate_with_tape(body, json::MAX_DEPTH, &mut tape) {
        Ok(v) => (v.text, v.surrogate_escapes),
        Err(json::Invalid::Depth) => {
            json::give_tape(tape);
            return Err(ProxyError::bad_request("body nests objects or arrays deeper than 128 levels"));
        }
        Err(json::Invalid::Syntax) => {
            json::give_tape(tape);
            return Err(Top::syntax_error(body));
        }
    };
    let mut inspected = Inspected {
        text,
        surrogate_escapes,
        tape,
        model: Cow::Borrowed(""),
        max_tokens: 0,
        stream: false,
        thinking_enabled: false,
        web_search: false,
        body_len: body.len(),
    };
    let top = inspected.top()?;
    let model = match &top.model {
        None => return Err(ProxyError::bad_request("model: required")),
        Some(v) => match v.as_str() {
            Some(Cow::Borrowed(s)) if !s.is_empty() => Cow::Borrowed(rebase(text, s)),
            Some(Cow::Owned(s)) if !s.is_empty() => Cow::Owned(s),
            _ => return Err(ProxyError::bad_request("model: must be a non-empty string")),
        },
    };
    let max_tokens = match &top.max_tokens {
        None => return Err(ProxyError::bad_request("max_tokens: required")),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => n,
            _ => return Err(ProxyError::bad_request("max_tokens: must be a positive integer")),
        },
    };
    match &top.messages {
        None => return Err(ProxyError::bad_request("messages: required")),
        Some(v) if v.is_array() => {}
        Some(_) => return Err(ProxyError::bad_request("messages: must be an array")),
    }
    let stream = match &top.stream {
        None => false,
        Some(v) if v.is_null() => false,
        Some(v) => v.as_bool().ok_or_else(|| ProxyError::bad_request("stream: must be a boolean"))?,
    };
    let thinking_enabled =
        top.thinking.as_ref().and_then(|t| t.get("type")).is_some_and(|t| t.as_str().as_deref() == Some("enabled"));
    let web_search = top.tools.as_ref().is_some_and(tools::has_web_search);
    inspected.model = model;
    inspected.max_tokens = max_tokens;
    inspected.stream = stream;
    inspected.thinking_enabled = thinking_enabled;
    inspected.web_search = web_search;
    Ok(inspected)
}

/// `s`, a slice of `text` reached through a shorter-lived view, as a slice
/// of `text` itself.
fn rebase<'a>(text: &'a str, s: &str) -> &'a str {
    let at = (s.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    text.get(at..at.wrapping_add(s.len())).unwrap_or("")
}

/// Converts an inspected body into an OpenAI Chat Completions body for the
/// routed upstream, appended to `out`. On error `out` may hold a partial
/// body; the caller discards it.
pub fn convert_inspected(
    i: &Inspected<'_>,
    opts: &RequestOptions,
    out: &mut Vec<u8>,
) -> Result<RequestMeta, ProxyError> {
    let top = &i.top()?;
    let mq = opts.quirks.for_model(opts.model);
    let start = out.len();
    let msgs = top.messages.ok_or_else(|| ProxyError::bad_request("messages: required"))?;

    out.extend_from_slice(b"{\"model\":");
    json::write_str(out, opts.model);
    out.extend_from_slice(b",\"messages\":[");
    if let Some(system) = present(top.system) {
        messages::write_system(out, system, Loc::System)?;
    }
    let (n, turns) = messages::write_messages(out, msgs, opts)?;
    if n == 0 {
        return Err(ProxyError::bad_request("messages: must contain at least one message"));
    }
    if turns == 0 {
        // Thinking blocks are not sent upstream and empty turns are dropped;
        // an upstream given nothing to answer would refuse the request anyway.
        return Err(ProxyError::bad_request(
            "messages: nothing for the model to answer: every user and assistant turn is empty or holds only \
             thinking blocks (which are not sent upstream), or there are only system messages",
        ));
    }
    close_array(out);

    let max_tokens = match opts.max_tokens_cap.filter(|&c| c > 0) {
        Some(cap) => i.max_tokens.min(cap as u64),
        None => i.max_tokens,
    };
    out.extend_from_slice(if mq.completion_tokens {
        b",\"max_completion_tokens\":".as_slice()
    } else {
        b",\"max_tokens\":"
    });
    json::write_u64(out, max_tokens);
    if i.stream {
        out.extend_from_slice(b",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    }
    write_number(out, b",\"temperature\":", present(top.temperature), "temperature", mq.sampling)?;
    write_number(out, b",\"top_p\":", present(top.top_p), "top_p", mq.sampling)?;
    if let Some(stops) = present(top.stop_sequences) {
        write_stop(out, stops)?;
    }
    if let Some(meta) = present(top.metadata) {
        write_user(out, meta)?;
    }
    let mut tool_names = ToolNames::default();
    let has_tools = match present(top.tools) {
        Some(t) => tools::write_tools(out, t, opts.quirks, &mut tool_names)?,
        None => false,
    };
    if let Some(choice) = present(top.tool_choice) {
        tools::write_tool_choice(out, choice, has_tools)?;
    }
    if let Some(thinking) = present(top.thinking) {
        let effort = reasoning_effort(thinking, present(top.output_config))?;
        if let Some(effort) = effort {
            let (open, close): (&[u8], &[u8]) = match mq.reasoning {
                ReasoningParam::None => (b"", b""),
                ReasoningParam::Effort => (b",\"reasoning_effort\":\"", b"\""),
                ReasoningParam::OpenRouter => (b",\"reasoning\":{\"effort\":\"", b"\"}"),
            };
            if !open.is_empty() {
                out.extend_from_slice(open);
                out.extend_from_slice(effort.as_bytes());
                out.extend_from_slice(close);
            }
        }
    }
    out.push(b'}');
    if i.surrogate_escapes {
        // Copied spans keep the client's escapes, lone surrogates included;
        // strict upstreams would refuse the whole request over one.
        json::replace_lone_surrogates(&mut out[start..]);
    }

    Ok(RequestMeta { client_model: i.client_model().to_owned(), stream: i.stream, tool_names })
}

/// [`inspect`] then [`convert_inspected`], for callers that route before.
pub fn convert_request(body: &[u8], opts: &RequestOptions, out: &mut Vec<u8>) -> Result<RequestMeta, ProxyError> {
    convert_inspected(&inspect(body)?, opts, out)
}

/// The top-level fields we read; everything else is dropped unseen.
#[derive(Default)]
struct Top<'a> {
    model: Option<Lazy<'a>>,
    messages: Option<Lazy<'a>>,
    system: Option<Lazy<'a>>,
    max_tokens: Option<Lazy<'a>>,
    stream: Option<Lazy<'a>>,
    temperature: Option<Lazy<'a>>,
    top_p: Option<Lazy<'a>>,
    stop_sequences: Option<Lazy<'a>>,
    metadata: Option<Lazy<'a>>,
    tools: Option<Lazy<'a>>,
    tool_choice: Option<Lazy<'a>>,
    thinking: Option<Lazy<'a>>,
    output_config: Option<Lazy<'a>>,
}

impl<'a> Top<'a> {
    /// Collects the top-level fields of a body [`json::validate`] accepted,
    /// without validating again.
    fn read(text: &'a str, tape: &'a [json::Span]) -> Result<Self, ProxyError> {
        let mut top = Top::default();
        let entries = Lazy::with_tape(text, tape).entries().ok_or_else(|| Top::syntax_error(text.as_bytes()))?;
        for (key, value) in entries {
            let slot = match &*key.name() {
                "model" => &mut top.model,
                "messages" => &mut top.messages,
                "system" => &mut top.system,
                "max_tokens" => &mut top.max_tokens,
                "stream" => &mut top.stream,
                "temperature" => &mut top.temperature,
                "top_p" => &mut top.top_p,
                "stop_sequences" => &mut top.stop_sequences,
                "metadata" => &mut top.metadata,
                "tools" => &mut top.tools,
                "tool_choice" => &mut top.tool_choice,
                "thinking" => &mut top.thinking,
                "output_config" => &mut top.output_config,
                _ => continue,
            };
            *slot = Some(value);
        }
        Ok(top)
    }

    /// The client-facing message for a body [`json::validate`] refused as
    /// malformed: sonic-rs's own, which names line and column. Error path
    /// only; the depth is bounded again first because sonic recurses.
    fn syntax_error(body: &[u8]) -> ProxyError {
        if !json::depth_within(body, json::MAX_DEPTH) {
            return ProxyError::bad_request("body nests objects or arrays deeper than 128 levels");
        }
        match sonic_rs::to_object_iter(body).find_map(Result::err) {
            Some(e) => json_error(e),
            // sonic stops at the closing brace; what follows it is the fault
            // (or an escape sonic does not check, such as a bad `\u` hex).
            None => ProxyError::bad_request(
                "body is not valid JSON: trailing characters after the top-level object, or a malformed escape",
            ),
        }
    }
}

fn json_error(e: sonic_rs::Error) -> ProxyError {
    // sonic's Display appends a multi-line excerpt of the body; the first
    // line (message with line/column) is what a client needs.
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("parse error");
    ProxyError::bad_request(format!("body is not valid JSON: {first}"))
}

/// `null` counts as absent for every optional field.
fn present(v: Option<Lazy<'_>>) -> Option<Lazy<'_>> {
    v.filter(|v| !v.is_null())
}

/// Where in the request a value sits, for error messages only.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Loc {
    System,
    SystemBlock(usize),
    Msg(usize),
    Block(usize, usize),
    Sub(usize, usize, usize),
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Loc::System => f.write_str("system"),
            Loc::SystemBlock(j) => write!(f, "system.{j}"),
            Loc::Msg(i) => write!(f, "messages.{i}"),
            Loc::Block(i, j) => write!(f, "messages.{i}.content.{j}"),
            Loc::Sub(i, j, k) => write!(f, "messages.{i}.content.{j}.content.{k}"),
        }
    }
}

/// A 400 whose message starts with the field path.
pub(crate) fn bad(at: impl fmt::Display, what: impl fmt::Display) -> ProxyError {
    ProxyError::bad_request(format!("{at}: {what}"))
}

/// The escaped contents of a JSON string value, without its quotes. The value
/// was validated by sonic, so the span is valid JSON string content as is.
pub(crate) fn raw_body<'v>(v: &'v Lazy<'_>) -> &'v str {
    let raw = v.as_raw_str();
    raw.get(1..raw.len().saturating_sub(1)).unwrap_or("")
}

/// Elements are written each followed by a comma; this drops the last one
/// and closes the array. Rolling back an element is then a plain truncate.
pub(crate) fn close_array(out: &mut Vec<u8>) {
    if out.last() == Some(&b',') {
        out.pop();
    }
    out.push(b']');
}

/// Validates a number field; writes it when `send`.
fn write_number(out: &mut Vec<u8>, key: &[u8], v: Option<Lazy<'_>>, name: &str, send: bool) -> Result<(), ProxyError> {
    if let Some(v) = v {
        if !v.is_number() {
            return Err(bad(name, "must be a number"));
        }
        if !send {
            return Ok(());
        }
        out.extend_from_slice(key);
        out.extend_from_slice(v.as_raw_str().as_bytes());
    }
    Ok(())
}

fn write_stop(out: &mut Vec<u8>, stops: Lazy<'_>) -> Result<(), ProxyError> {
    let iter = stops.elements().ok_or_else(|| bad("stop_sequences", "must be an array of strings"))?;
    let mark = out.len();
    out.extend_from_slice(b",\"stop\":[");
    let mut n = 0usize;
    for (i, s) in iter.enumerate() {
        if !s.is_str() {
            return Err(bad(format_args!("stop_sequences.{i}"), "must be a string"));
        }
        if n < MAX_STOP {
            out.extend_from_slice(s.as_raw_str().as_bytes());
            out.push(b',');
        }
        n += 1;
    }
    if n == 0 {
        out.truncate(mark);
        return Ok(());
    }
    if n > MAX_STOP {
        tracing::debug!(sent = MAX_STOP, dropped = n - MAX_STOP, "stop_sequences: OpenAI takes at most 4");
    }
    close_array(out);
    Ok(())
}

fn write_user(out: &mut Vec<u8>, meta: Lazy<'_>) -> Result<(), ProxyError> {
    let iter = meta.entries().ok_or_else(|| bad("metadata", "must be an object"))?;
    for (key, v) in iter {
        if !key.is("user_id") || v.is_null() {
            continue;
        }
        let id = v.as_str().ok_or_else(|| bad("metadata.user_id", "must be a string"))?;
        if !id.is_empty() && id.chars().count() <= MAX_USER_LEN {
            out.extend_from_slice(b",\"user\":");
            out.extend_from_slice(v.as_raw_str().as_bytes());
        }
    }
    Ok(())
}

/// Budget thresholds for `thinking.budget_tokens` → `reasoning_effort`.
/// Claude Code's "think" (4000) maps to low, "think hard" (10000) to medium,
/// "ultrathink" (31999) to high.
const LOW_BELOW: u64 = 4096;
const MEDIUM_BELOW: u64 = 16384;

/// Validates `thinking` and picks the effort it implies (None: disabled).
fn reasoning_effort(thinking: Lazy<'_>, output_config: Option<Lazy<'_>>) -> Result<Option<&'static str>, ProxyError> {
    let fields = thinking.entries().ok_or_else(|| bad("thinking", "must be an object"))?;
    let (mut ty, mut budget) = (None, None);
    for (key, v) in fields {
        match &*key.name() {
            "type" => ty = Some(v),
            "budget_tokens" => budget = Some(v),
            _ => {}
        }
    }
    let ty = ty.ok_or_else(|| bad("thinking.type", "required"))?;
    match ty.as_str().as_deref() {
        Some("disabled") => Ok(None),
        Some("enabled") => {
            let budget = budget.and_then(|b| b.as_u64()).ok_or_else(|| {
                bad("thinking.budget_tokens", "required non-negative integer when type is \"enabled\"")
            })?;
            Ok(Some(match budget {
                b if b < LOW_BELOW => "low",
                b if b < MEDIUM_BELOW => "medium",
                _ => "high",
            }))
        }
        Some("adaptive") => {
            let effort = output_config.as_ref().and_then(|c| c.get("effort"));
            Ok(Some(match effort.as_ref().and_then(|e| e.as_str()).as_deref() {
                Some("low") => "low",
                Some("medium") => "medium",
                _ => "high",
            }))
        }
        _ => Err(bad("thinking.type", "must be \"enabled\", \"disabled\" or \"adaptive\"")),
    }
}
