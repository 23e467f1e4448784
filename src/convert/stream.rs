//! OpenAI Chat Completions SSE stream → Anthropic Messages SSE events.
//!
//! Receives the upstream response body bytes, in whatever splits the network
//! delivers them, from the lifecycle; emits complete Anthropic SSE events into
//! the caller's buffer as soon as each upstream chunk allows: `message_start`
//! first, then blocks at contiguous indices, each opened, fed and closed
//! before the next (text, thinking from `reasoning_content`/`reasoning`,
//! `tool_use`), then `message_delta` (stop reason, final usage) and
//! `message_stop`, or a single `event: error` when the upstream fails.
//!
//! Rules worth knowing:
//! - Text, reasoning and tool-argument fragments are copied in their escaped
//!   JSON form straight from the upstream chunk (both sides are JSON).
//! - Tool calls: the current call's fragments are forwarded as they arrive;
//!   fragments of other calls are buffered until the current call's arguments
//!   form a complete JSON value (or the stream ends), so interleaved calls
//!   still become one block each, in first-appearance order. A non-blank
//!   fragment for a call whose block is already closed is an error, never a
//!   silent corruption.
//! - Text or reasoning arriving while the open tool call's arguments are
//!   incomplete is held back and sent as its own block once the call's block
//!   closes (closing it early would orphan the rest of the arguments);
//!   leading blank text while a tool block is open is dropped.
//! - Memory is bounded: an SSE line or event over `sse::MAX_EVENT_BYTES`, or
//!   more than `tools::MAX_HELD_BYTES` held back, ends the stream with
//!   `event: error` (502 api_error).
//! - The end is `data: [DONE]`, or the end of the body after a
//!   `finish_reason` (some providers omit `[DONE]`). `[DONE]` without any
//!   `finish_reason` is taken as `end_turn`. The body ending with neither is
//!   a truncation and becomes `event: error`, never a fake `end_turn`.
//! - Tool ids are made valid for Anthropic and carry Gemini thought
//!   signatures ([`crate::convert::tool_ids`]); the id is fixed when the
//!   call's block opens, so a signature arriving after the id still counts.
//!   Shortened tool names are mapped back ([`Self::with_tool_names`]).
//! - Only choice 0 is converted.

mod emit;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_hold;
mod tools;

use std::borrow::Cow;

use sonic_rs::JsonValueTrait;

use crate::json::Lazy;

use crate::convert::{stop_reason, Outcome, ToolNames, Usage};
use crate::error::{ErrorType, ProxyError, Side};
use crate::sse::{Event, SseParser, MAX_EVENT_BYTES};
use emit::BlockKind;
use tools::ToolCall;

/// Converts one upstream stream. Create one per response.
pub struct StreamConverter {
    sse: SseParser,
    st: State,
}

/// "event: ping\ndata: {\"type\": \"ping\"}\n\n"
pub fn write_ping(out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: ping\ndata: {\"type\": \"ping\"}\n\n");
}

impl StreamConverter {
    /// `model`: the model name the client asked for (echoed in message_start).
    /// `message_id`: fresh msg_ id.
    pub fn new(model: &str, message_id: &str) -> Self {
        StreamConverter {
            sse: SseParser::new(),
            st: State {
                model: model.to_owned(),
                message_id: message_id.to_owned(),
                input_tokens: 0,
                started: false,
                finished: false,
                at_eof: false,
                next_index: 0,
                open: Open::None,
                calls: Vec::new(),
                cur: 0,
                held_text: Vec::new(),
                held_bytes: 0,
                finish: None,
                stop_sequence: None,
                usage: None,
                outcome: Outcome::default(),
                names: ToolNames::default(),
                tape: Vec::new(),
            },
        }
    }

    /// Input-token estimate announced in `message_start` and used at the end
    /// when the upstream reports no usage. The upstream's count wins.
    pub fn with_input_tokens(mut self, input_tokens: u64) -> Self {
        self.st.input_tokens = input_tokens;
        self
    }

    /// The request's shortened tool names
    /// ([`crate::convert::request::RequestMeta::tool_names`]), mapped back
    /// to the client's names in `tool_use` blocks.
    pub fn with_tool_names(mut self, names: ToolNames) -> Self {
        self.st.names = names;
        self
    }

    /// Feed upstream body bytes. `eof` = the upstream body has ended. Appends
    /// complete Anthropic SSE events to `out`. The first call, even with
    /// empty input, emits message_start.
    pub fn push(&mut self, input: &[u8], eof: bool, out: &mut Vec<u8>) {
        self.st.ensure_started(out);
        if self.st.finished {
            return;
        }
        let st = &mut self.st;
        if self.sse.feed(input, &mut |ev| st.on_event(ev, out)).is_err() {
            st.fail(&event_too_large(), out);
            return;
        }
        if eof && !st.finished {
            st.at_eof = true;
            if self.sse.finish(&mut |ev| st.on_event(ev, out)).is_err() {
                st.fail(&event_too_large(), out);
                return;
            }
            if !st.finished {
                if st.finish.is_some() {
                    st.finalize(out);
                } else {
                    st.fail(&truncated(), out);
                }
            }
        }
    }

    /// Upstream failed mid-stream (reset, read error, idle timeout): closes
    /// the open block and emits `event: error`. Nothing is emitted after that.
    pub fn fail(&mut self, err: &ProxyError, out: &mut Vec<u8>) {
        self.st.fail(err, out);
    }

    /// True once message_stop or an error event has been emitted.
    pub fn is_finished(&self) -> bool {
        self.st.finished
    }

    pub fn outcome(&self) -> Outcome {
        self.st.outcome
    }
}

/// The block currently open on the client side, with its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Block(BlockKind, u32),
    /// The tool call at `State::cur`.
    Tool(u32),
}

struct State {
    model: String,
    message_id: String,
    input_tokens: u64,
    started: bool,
    finished: bool,
    /// Events now come from the unterminated tail of an ended body.
    at_eof: bool,
    next_index: u32,
    open: Open,
    /// Every tool call in first-appearance order. Those before `cur` are
    /// closed; `calls[cur]` is open when `open` is `Tool`; the rest wait.
    calls: Vec<ToolCall>,
    cur: usize,
    /// Text and reasoning that arrived while the open tool call's arguments
    /// were incomplete, in arrival order (consecutive same-kind runs merged).
    held_text: Vec<(BlockKind, Vec<u8>)>,
    /// Bytes in `held_text` plus the `pending` arguments of waiting calls,
    /// kept under `tools::MAX_HELD_BYTES`.
    held_bytes: usize,
    /// Stop reason mapped from the last `finish_reason`, tool calls aside.
    finish: Option<&'static str>,
    /// Escaped stop string from vLLM's `choices[].stop_reason`.
    stop_sequence: Option<Vec<u8>>,
    usage: Option<Usage>,
    outcome: Outcome,
    names: ToolNames,
    /// Reused by every chunk; see [`crate::json::validate_with_tape`].
    tape: Vec<crate::json::Span>,
}

type Step = Result<(), ProxyError>;

impl State {
    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            emit::message_start(out, &self.message_id, &self.model, self.input_tokens);
        }
    }

    fn on_event(&mut self, ev: Event<'_>, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        let data = ev.data.trim_ascii();
        let step = if ev.event == b"error" {
            // sonic-rs recurses per nesting level; refuse before it sees this.
            Err(if crate::json::depth_within(data, crate::json::MAX_DEPTH) {
                stream_error(data, "upstream sent an error event")
            } else {
                too_deep()
            })
        } else if data == b"[DONE]" {
            self.finalize(out);
            Ok(())
        } else if data.is_empty() {
            Ok(())
        } else {
            // A tail that does not parse at the end of the body is the body
            // being cut off, and is reported as such.
            self.on_chunk(data, out).map_err(|e| if self.at_eof { truncated() } else { e })
        };
        if let Err(e) = step {
            self.fail(&e, out);
        }
    }

    fn on_chunk(&mut self, data: &[u8], out: &mut Vec<u8>) -> Step {
        // The tape buffer lives in the state so that chunks reuse it; it is
        // out of `self` while the chunk's values borrow it.
        let mut tape = std::mem::take(&mut self.tape);
        let step = self.on_chunk_with(data, &mut tape, out);
        self.tape = tape;
        step
    }

    fn on_chunk_with(&mut self, data: &[u8], tape: &mut Vec<crate::json::Span>, out: &mut Vec<u8>) -> Step {
        // The whole chunk is validated (UTF-8, syntax, and a depth bound
        // that sonic-rs's recursion needs) before anything is acted on, so
        // a chunk broken at its end is not half applied.
        // Lone surrogate escapes pass through: a pair split across two
        // chunks comes together again when a JavaScript client joins the
        // deltas, which replacing each half would break.
        let text = match crate::json::validate_with_tape(data, crate::json::MAX_DEPTH, tape) {
            Ok(v) => v.text,
            Err(crate::json::Invalid::Depth) => return Err(too_deep()),
            Err(crate::json::Invalid::Syntax) => return Err(chunk_syntax_error(data)),
        };
        let (mut choices, mut usage, mut error) = (None, None, None);
        let Some(fields) = Lazy::with_tape(text, tape).entries() else { return Err(chunk_syntax_error(data)) };
        for (k, v) in fields {
            match &*k.name() {
                "choices" => choices = Some(v),
                "usage" => usage = Some(v),
                "error" => error = Some(v),
                _ => {}
            }
        }
        if error.is_some_and(|e| !e.is_null()) {
            return Err(stream_error(data, "upstream reported an error mid-stream"));
        }
        if let Some(u) = usage.filter(|u| u.is_object()) {
            self.usage = Some(parse_usage(&u));
        }
        if let Some(list) = choices.and_then(|c| c.elements()) {
            for choice in list {
                self.on_choice(choice, data, out)?;
            }
        }
        Ok(())
    }

    fn on_choice(&mut self, choice: Lazy<'_>, data: &[u8], out: &mut Vec<u8>) -> Step {
        let Some(fields) = choice.entries() else { return Ok(()) };
        let (mut index, mut delta, mut finish, mut matched) = (0, None, None, None);
        for (k, v) in fields {
            match &*k.name() {
                "index" => index = v.as_u64().unwrap_or(0),
                "delta" => delta = Some(v),
                "finish_reason" => finish = Some(v),
                "stop_reason" => matched = Some(v),
                _ => {}
            }
        }
        if index != 0 {
            return Ok(());
        }
        if let Some(d) = delta {
            self.on_delta(d, out)?;
        }
        let reason = finish.as_ref().and_then(|f| f.as_str());
        let Some(reason) = reason.as_deref() else { return Ok(()) };
        if reason == "error" {
            return Err(stream_error(data, "upstream reported finish_reason \"error\""));
        }
        self.finish = Some(stop_reason(Some(reason), false));
        if reason == "stop" {
            if let Some(s) = matched.as_ref().and_then(string_body) {
                self.stop_sequence = Some(s.as_bytes().to_vec());
            }
        }
        Ok(())
    }

    fn on_delta(&mut self, delta: Lazy<'_>, out: &mut Vec<u8>) -> Step {
        let Some(fields) = delta.entries() else { return Ok(()) };
        let (mut content, mut reasoning, mut reasoning_alt, mut refusal, mut tool_calls) =
            (None, None, None, None, None);
        for (k, v) in fields {
            match &*k.name() {
                "content" => content = Some(v),
                "reasoning_content" => reasoning = Some(v),
                "reasoning" => reasoning_alt = Some(v),
                "refusal" => refusal = Some(v),
                "tool_calls" => tool_calls = Some(v),
                _ => {}
            }
        }
        // Some providers send the same reasoning under both names: use one.
        let thinking = non_empty(&reasoning).or_else(|| non_empty(&reasoning_alt));
        if let Some(t) = thinking {
            self.on_block_text(BlockKind::Thinking, t.as_bytes(), out)?;
        }
        if let Some(t) = non_empty(&content) {
            self.on_block_text(BlockKind::Text, t.as_bytes(), out)?;
        }
        if let Some(t) = non_empty(&refusal) {
            self.on_block_text(BlockKind::Text, t.as_bytes(), out)?;
        }
        if let Some(list) = tool_calls.and_then(|t| t.elements()) {
            for call in list {
                self.on_tool_call(call, out)?;
            }
        }
        Ok(())
    }

    fn on_block_text(&mut self, kind: BlockKind, escaped: &[u8], out: &mut Vec<u8>) -> Step {
        if matches!(self.open, Open::Tool(_)) {
            let incomplete = self.calls.get(self.cur).is_some_and(|c| !c.scan.complete());
            if self.held_text.is_empty() && tools::is_blank(escaped) {
                // Models put newlines around tool calls; a block of nothing
                // but those is noise.
                return Ok(());
            }
            if incomplete {
                self.hold(escaped.len())?;
                match self.held_text.last_mut() {
                    Some((k, buf)) if *k == kind => buf.extend_from_slice(escaped),
                    _ => self.held_text.push((kind, escaped.to_vec())),
                }
                return Ok(());
            }
        }
        self.write_text(kind, escaped, out);
        Ok(())
    }

    fn write_text(&mut self, kind: BlockKind, escaped: &[u8], out: &mut Vec<u8>) {
        let index = match self.open {
            Open::Block(k, i) if k == kind => i,
            _ => {
                self.close_block(out);
                let i = self.take_index();
                emit::block_start(out, i, kind);
                self.open = Open::Block(kind, i);
                i
            }
        };
        match kind {
            BlockKind::Text => emit::text_delta(out, index, escaped),
            BlockKind::Thinking => emit::thinking_delta(out, index, escaped),
        }
    }

    fn on_tool_call(&mut self, call: Lazy<'_>, out: &mut Vec<u8>) -> Step {
        let Some(fields) = call.entries() else { return Ok(()) };
        let (mut index, mut id, mut function, mut extra) = (None, None, None, None);
        for (k, v) in fields {
            match &*k.name() {
                "index" => index = v.as_u64(),
                "id" => id = Some(v),
                "function" => function = Some(v),
                "extra_content" => extra = Some(v),
                _ => {}
            }
        }
        let signature = extra.as_ref().and_then(|e| e.pointer(&["google", "thought_signature"]));
        let signature = signature.as_ref().and_then(|s| s.as_str());
        let (mut name, mut args) = (None, None);
        if let Some(fields) = function.and_then(|f| f.entries()) {
            for (k, v) in fields {
                match &*k.name() {
                    "name" => name = Some(v),
                    "arguments" => args = Some(v),
                    _ => {}
                }
            }
        }
        let id = id.as_ref().and_then(|v| v.as_str());
        let name = name.as_ref().and_then(|v| v.as_str());
        let (id, name, signature) = (id.as_deref(), name.as_deref(), signature.as_deref());
        // Some servers send `arguments` as an object instead of a string:
        // its JSON text is the arguments, escaped here into string form.
        let escaped_object;
        let args: &[u8] = match &args {
            Some(v) if v.is_str() => string_body(v).unwrap_or("").as_bytes(),
            Some(v) if v.is_object() || v.is_array() => {
                let mut buf = Vec::new();
                crate::json::write_str_body(&mut buf, v.as_raw_str());
                escaped_object = buf;
                &escaped_object
            }
            _ => b"",
        };
        self.tool_fragment(index, Ids { id, name, signature }, args, out)
    }

    fn tool_fragment(&mut self, index: Option<u64>, ids: Ids<'_>, args: &[u8], out: &mut Vec<u8>) -> Step {
        let Ids { id, name, signature } = ids;
        let i = match tools::locate(&self.calls, index, id, name) {
            Some(i) => {
                if !self.is_opened(i) {
                    self.calls[i].fill(id, name, signature);
                }
                i
            }
            None => {
                let mut call = ToolCall::new(index, id.unwrap_or(""), name.unwrap_or(""));
                call.fill(None, None, signature);
                self.calls.push(call);
                self.calls.len() - 1
            }
        };
        if !args.is_empty() {
            match self.open {
                Open::Tool(block) if i == self.cur => {
                    emit::input_json_delta(out, block, args);
                    self.calls[i].scan.feed(args);
                }
                _ if i < self.cur => {
                    // Blank text after a complete value changes nothing; any
                    // thing else cannot be placed in a closed block.
                    if !tools::is_blank(args) {
                        return Err(ProxyError::bad_gateway(
                            "upstream sent arguments for a tool call after its block was closed",
                        ));
                    }
                }
                _ => {
                    self.hold(args.len())?;
                    let c = &mut self.calls[i];
                    c.pending.extend_from_slice(args);
                    c.scan.feed(args);
                }
            }
        }
        let open_complete = self.calls.get(self.cur).is_some_and(|c| c.scan.complete());
        if matches!(self.open, Open::Tool(_)) && open_complete && !self.held_text.is_empty() {
            // The text that waited on these arguments can go out now.
            self.close_tool(out);
            self.release_held(out);
        }
        self.advance(out);
        Ok(())
    }

    /// Accounts for `n` more bytes held back.
    fn hold(&mut self, n: usize) -> Step {
        self.held_bytes += n;
        if self.held_bytes > tools::MAX_HELD_BYTES {
            return Err(ProxyError::bad_gateway(format!(
                "upstream stream held back more than {} MiB while a tool call was incomplete",
                tools::MAX_HELD_BYTES >> 20
            )));
        }
        Ok(())
    }

    /// Sends the held text as blocks; the last one stays open.
    fn release_held(&mut self, out: &mut Vec<u8>) {
        for (kind, text) in std::mem::take(&mut self.held_text) {
            self.held_bytes = self.held_bytes.saturating_sub(text.len());
            self.write_text(kind, &text, out);
        }
    }

    fn is_opened(&self, i: usize) -> bool {
        i < self.cur || (i == self.cur && matches!(self.open, Open::Tool(_)))
    }

    /// Opens waiting tool calls while that cannot cut a call short: the
    /// open call's arguments are complete (or no call is open) and the next
    /// call has its name.
    fn advance(&mut self, out: &mut Vec<u8>) {
        loop {
            let open_tool = matches!(self.open, Open::Tool(_));
            let next = if open_tool { self.cur + 1 } else { self.cur };
            let Some(c) = self.calls.get(next) else { return };
            if c.name.is_empty() || (open_tool && !self.calls[self.cur].scan.complete()) {
                return;
            }
            self.close_block(out);
            self.open_tool(out);
        }
    }

    fn open_tool(&mut self, out: &mut Vec<u8>) {
        let index = self.take_index();
        let Some(c) = self.calls.get_mut(self.cur) else { return };
        c.assign_id();
        emit::tool_start(out, index, &c.id, self.names.client_name(&c.name));
        if !c.pending.is_empty() {
            emit::input_json_delta(out, index, &c.pending);
            self.held_bytes = self.held_bytes.saturating_sub(c.pending.len());
            c.pending = Vec::new();
        }
        self.open = Open::Tool(index);
    }

    /// Closes the open block; text held behind a tool block follows it as
    /// block(s) of its own, closed too. Nothing is open afterwards.
    fn close_block(&mut self, out: &mut Vec<u8>) {
        match self.open {
            Open::None => {}
            Open::Block(BlockKind::Thinking, i) => {
                emit::signature_delta(out, i);
                emit::block_stop(out, i);
            }
            Open::Block(BlockKind::Text, i) => emit::block_stop(out, i),
            Open::Tool(_) => {
                self.close_tool(out);
                if !self.held_text.is_empty() {
                    self.release_held(out);
                    self.close_block(out);
                }
            }
        }
        self.open = Open::None;
    }

    fn close_tool(&mut self, out: &mut Vec<u8>) {
        if let Open::Tool(i) = self.open {
            emit::block_stop(out, i);
            self.cur += 1;
            self.open = Open::None;
        }
    }

    fn take_index(&mut self) -> u32 {
        let i = self.next_index;
        self.next_index += 1;
        i
    }

    fn finalize(&mut self, out: &mut Vec<u8>) {
        self.close_block(out);
        while self.cur < self.calls.len() {
            self.open_tool(out);
            self.close_block(out);
        }
        let saw_tool = !self.calls.is_empty();
        let (reason, sequence) = match (&self.stop_sequence, saw_tool) {
            (Some(s), false) => ("stop_sequence", Some(s.as_slice())),
            _ => (if saw_tool { stop_reason(None, true) } else { self.finish.unwrap_or("end_turn") }, None),
        };
        let usage = self.usage.unwrap_or(Usage { input_tokens: self.input_tokens, ..Usage::default() });
        emit::message_delta(out, reason, sequence, &usage);
        emit::message_stop(out);
        self.finished = true;
        self.outcome = Outcome { stop_reason: Some(reason), usage };
    }

    fn fail(&mut self, err: &ProxyError, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.ensure_started(out);
        // Held text is not sent after a failure: the error ends the stream.
        self.held_text.clear();
        self.close_block(out);
        err.write_sse(out);
        self.finished = true;
        self.outcome = Outcome { stop_reason: None, usage: self.usage.unwrap_or_default() };
    }
}

/// What identifies a tool call in one fragment.
struct Ids<'a> {
    id: Option<&'a str>,
    name: Option<&'a str>,
    signature: Option<&'a str>,
}

/// The escaped body of a JSON string value, without its quotes.
fn string_body<'a>(v: &Lazy<'a>) -> Option<&'a str> {
    v.str_body()
}

fn non_empty<'a>(v: &Option<Lazy<'a>>) -> Option<&'a str> {
    v.as_ref().and_then(string_body).filter(|s| !s.is_empty())
}

fn parse_usage(u: &Lazy<'_>) -> Usage {
    let num = |path: &[&str]| u.pointer(path).and_then(|v| v.as_u64());
    let prompt = num(&["prompt_tokens"]).unwrap_or(0);
    let completion = num(&["completion_tokens"]).unwrap_or(0);
    // DeepSeek reports cache hits under its own name.
    let cached = num(&["prompt_tokens_details", "cached_tokens"]).or_else(|| num(&["prompt_cache_hit_tokens"]));
    Usage::from_openai(prompt, completion, cached.unwrap_or(0))
}

fn truncated() -> ProxyError {
    ProxyError::bad_gateway("upstream stream ended before completion")
}

fn event_too_large() -> ProxyError {
    ProxyError::bad_gateway(format!("upstream sent an SSE line or event larger than {} MiB", MAX_EVENT_BYTES >> 20))
}

fn too_deep() -> ProxyError {
    ProxyError::bad_gateway("upstream stream chunk nests deeper than 128 levels")
}

/// Why a chunk is refused: invalid UTF-8, or sonic's message
/// (error path only; sonic recurses, so the depth is bounded first).
fn chunk_syntax_error(data: &[u8]) -> ProxyError {
    if std::str::from_utf8(data).is_err() {
        return ProxyError::bad_gateway("upstream sent invalid UTF-8");
    }
    if crate::json::depth_within(data, crate::json::MAX_DEPTH) {
        if let Some(e) = sonic_rs::to_object_iter(data).find_map(Result::err) {
            return invalid_chunk(e);
        }
    }
    ProxyError::bad_gateway("upstream sent an invalid stream chunk")
}

fn invalid_chunk(e: sonic_rs::Error) -> ProxyError {
    ProxyError::bad_gateway(format!("upstream sent an invalid stream chunk: {e}"))
}

/// An error the upstream reported inside the stream (`{"error":..}`,
/// `event: error`, OpenRouter's `finish_reason:"error"`), keeping its message
/// and, where recognisable, its kind, so the SDK's retry logic can act.
fn stream_error(data: &[u8], fallback: &'static str) -> ProxyError {
    let field = |key: &str| sonic_rs::get(data, &["error", key]).ok();
    let code = field("code");
    let kind_text = field("type");
    let number = code.as_ref().and_then(|c| c.as_u64().or_else(|| c.as_str().and_then(|s| s.parse().ok())));
    let words = [code.as_ref().and_then(|c| c.as_str()), kind_text.as_ref().and_then(|t| t.as_str())];
    let said = |w: &str| words.iter().flatten().any(|s| s.contains(w));
    let (status, kind) = if number == Some(429) || said("rate_limit") {
        (429, ErrorType::RateLimit)
    } else if matches!(number, Some(503 | 529)) || said("overloaded") {
        (529, ErrorType::Overloaded)
    } else {
        (502, ErrorType::Api)
    };
    let message: Cow<'static, str> = match crate::error::upstream_message(data) {
        Some(m) => format!("upstream error: {m}").into(),
        None => fallback.into(),
    };
    ProxyError::new(Side::Upstream, status, kind, message)
}
