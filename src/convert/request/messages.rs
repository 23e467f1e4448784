//! `system` and `messages` of an Anthropic request → OpenAI `messages` entries.
//!
//! Receives lazily parsed values from [`super::convert_request`] and appends
//! OpenAI message objects, each followed by a comma (the parent closes the
//! array with [`close_array`]), so a message that turns out empty is rolled
//! back with a truncate.
//!
//! Per role:
//! - `system` (top-level or mid-list): one system message whose text is the
//!   text blocks joined with `"\n\n"`; empty ones are dropped.
//! - `user`: every `tool_result` first becomes a `role:"tool"` message, in
//!   order. A tool result with `is_error:true` gets its text prefixed with
//!   [`TOOL_ERROR_PREFIX`] so the model still sees that the call failed.
//!   Tool messages carry text only, so images and documents inside a tool
//!   result move to the user message that follows, ahead of the turn's own
//!   text/image/document parts. A lone text part is sent as a plain string.
//! - `assistant`: text blocks joined with `"\n\n"` become `content` (null
//!   when there is none), `tool_use` blocks become `tool_calls` with the input
//!   as a JSON string; a turn left with neither (only thinking) is dropped.
//! - A mid-list system message between an assistant's tool calls and the
//!   user turn answering them is moved to just after the tool messages,
//!   because OpenAI rejects anything between tool_calls and their results.
//! - `thinking` and `redacted_thinking` blocks are dropped everywhere, except
//!   with DeepSeek's quirk: an assistant turn with tool calls then carries
//!   its thinking text (joined with `"\n\n"`, empty when it has none) as
//!   `reasoning_content`, which DeepSeek's thinking mode requires back.
//!   Any unknown block type is a 400 naming the block.
//! - Tool ids are decoded (see [`super::tools::write_id`]); with Gemini's
//!   quirk a decoded thought signature goes back on its tool call as
//!   `extra_content.google.thought_signature`. Long tool names are
//!   shortened as in the tool definitions.

use crate::json::Lazy;

use super::tools::{write_id, write_name};
use super::{bad, close_array, present, raw_body, Loc, RequestOptions};
use crate::error::ProxyError;
use crate::json;

/// Keeps `is_error:true` visible to the model in the tool message text.
pub(crate) const TOOL_ERROR_PREFIX: &str = "[tool error] ";

/// Separator between joined text blocks (system, assistant, tool results).
const JOIN: &str = "\\n\\n";

impl Loc {
    /// The location of block `j` inside the content at `self`.
    fn block(self, j: usize) -> Loc {
        match self {
            Loc::System | Loc::SystemBlock(_) => Loc::SystemBlock(j),
            Loc::Msg(i) => Loc::Block(i, j),
            Loc::Block(i, b) | Loc::Sub(i, b, _) => Loc::Sub(i, b, j),
        }
    }

    /// The path of the content field at `self`, for "must be ..." errors.
    fn content_path(self) -> String {
        match self {
            Loc::System => "system".to_owned(),
            other => format!("{other}.content"),
        }
    }
}

/// The fields of a content block we may need, gathered in one pass because
/// `type` may come after them.
#[derive(Default)]
struct Block<'a> {
    ty: Option<Lazy<'a>>,
    text: Option<Lazy<'a>>,
    thinking: Option<Lazy<'a>>,
    source: Option<Lazy<'a>>,
    title: Option<Lazy<'a>>,
    id: Option<Lazy<'a>>,
    name: Option<Lazy<'a>>,
    input: Option<Lazy<'a>>,
    tool_use_id: Option<Lazy<'a>>,
    content: Option<Lazy<'a>>,
    is_error: Option<Lazy<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Image,
    Document,
    ToolUse,
    ToolResult,
    Thinking,
}

impl<'a> Block<'a> {
    fn read(v: Lazy<'a>, at: Loc) -> Result<(Self, Kind), ProxyError> {
        let fields = v.entries().ok_or_else(|| bad(at, "content block must be an object"))?;
        let mut b = Block::default();
        for (key, v) in fields {
            let slot = match &*key.name() {
                "type" => &mut b.ty,
                "text" => &mut b.text,
                "thinking" => &mut b.thinking,
                "source" => &mut b.source,
                "title" => &mut b.title,
                "id" => &mut b.id,
                "name" => &mut b.name,
                "input" => &mut b.input,
                "tool_use_id" => &mut b.tool_use_id,
                "content" => &mut b.content,
                "is_error" => &mut b.is_error,
                _ => continue,
            };
            *slot = Some(v);
        }
        let ty = b.ty.as_ref().ok_or_else(|| bad(format_args!("{at}.type"), "required"))?;
        let kind = match ty.as_str().as_deref() {
            Some("text") => Kind::Text,
            Some("image") => Kind::Image,
            Some("document") => Kind::Document,
            Some("tool_use") => Kind::ToolUse,
            Some("tool_result") => Kind::ToolResult,
            Some("thinking") | Some("redacted_thinking") => Kind::Thinking,
            Some(other) => return Err(bad(at, format_args!("unknown content block type {other:?}"))),
            None => return Err(bad(format_args!("{at}.type"), "must be a string")),
        };
        Ok((b, kind))
    }

    /// The `text` of a text block, as a raw JSON string literal.
    fn text(&self, at: Loc) -> Result<&Lazy<'a>, ProxyError> {
        self.text.as_ref().filter(|t| t.is_str()).ok_or_else(|| bad(format_args!("{at}.text"), "required string"))
    }
}

/// A required string field of a block.
fn req_str<'v, 'a>(v: &'v Option<Lazy<'a>>, at: Loc, field: &str) -> Result<&'v Lazy<'a>, ProxyError> {
    v.as_ref().filter(|v| v.is_str()).ok_or_else(|| bad(format_args!("{at}.{field}"), "required string"))
}

/// Writes a system message for `content` (a string or text blocks) at `at`
/// (`Loc::System` for the top-level field, `Loc::Msg(i)` mid-list).
pub(super) fn write_system(out: &mut Vec<u8>, content: Lazy<'_>, at: Loc) -> Result<(), ProxyError> {
    let mark = out.len();
    out.extend_from_slice(b"{\"role\":\"system\",\"content\":\"");
    let start = out.len();
    if content.is_str() {
        out.extend_from_slice(raw_body(&content).as_bytes());
    } else {
        let blocks = content.elements().ok_or_else(|| bad(at.content_path(), "must be a string or an array"))?;
        let mut first = true;
        for (j, v) in blocks.enumerate() {
            let bat = at.block(j);
            let (b, kind) = Block::read(v, bat)?;
            if kind != Kind::Text {
                return Err(bad(bat, "system content must be text blocks"));
            }
            let text = raw_body(b.text(bat)?);
            if text.is_empty() {
                continue;
            }
            if !first {
                out.extend_from_slice(JOIN.as_bytes());
            }
            first = false;
            out.extend_from_slice(text.as_bytes());
        }
    }
    if out.len() == start {
        out.truncate(mark);
    } else {
        out.extend_from_slice(b"\"},");
    }
    Ok(())
}

/// Writes every message. Returns how many input messages there were and how many user, assistant
/// or tool messages came out: turns holding only thinking or empty content
/// are dropped, which can leave nothing for the upstream to answer.
pub(super) fn write_messages(
    out: &mut Vec<u8>,
    msgs: Lazy<'_>,
    opts: &RequestOptions,
) -> Result<(usize, usize), ProxyError> {
    let iter = msgs.elements().ok_or_else(|| bad("messages", "must be an array"))?;
    let (mut n, mut turns) = (0, 0);
    // OpenAI wants tool messages right after the assistant's tool_calls, so
    // system messages arriving in between are held until the tool messages
    // of the next user turn are out. Allocates only in that rare case.
    let mut awaiting_tools = false;
    let mut held = Vec::new();
    for (i, msg) in iter.enumerate() {
        n += 1;
        let at = Loc::Msg(i);
        let fields = msg.entries().ok_or_else(|| bad(at, "must be an object"))?;
        let (mut role, mut content) = (None, None);
        for (key, v) in fields {
            match &*key.name() {
                "role" => role = Some(v),
                "content" => content = Some(v),
                _ => {}
            }
        }
        let role = role.ok_or_else(|| bad(format_args!("{at}.role"), "required"))?;
        let content = present(content).ok_or_else(|| bad(at.content_path(), "required"))?;
        match role.as_str().as_deref() {
            Some("user") => {
                turns += usize::from(write_user(out, content, at, opts, &mut held)?);
                awaiting_tools = false;
            }
            Some("assistant") => {
                flush_held(out, &mut held)?;
                let before = out.len();
                awaiting_tools = write_assistant(out, content, at, opts)?;
                turns += usize::from(out.len() > before);
            }
            Some("system") if awaiting_tools => held.push((content, at)),
            Some("system") => write_system(out, content, at)?,
            _ => return Err(bad(format_args!("{at}.role"), "must be \"user\", \"assistant\" or \"system\"")),
        }
    }
    flush_held(out, &mut held)?;
    Ok((n, turns))
}

fn flush_held(out: &mut Vec<u8>, held: &mut Vec<(Lazy<'_>, Loc)>) -> Result<(), ProxyError> {
    for (content, at) in held.drain(..) {
        write_system(out, content, at)?;
    }
    Ok(())
}

fn write_user<'a>(
    out: &mut Vec<u8>,
    content: Lazy<'a>,
    at: Loc,
    opts: &RequestOptions,
    held: &mut Vec<(Lazy<'a>, Loc)>,
) -> Result<bool, ProxyError> {
    if content.is_str() {
        flush_held(out, held)?;
        out.extend_from_slice(b"{\"role\":\"user\",\"content\":");
        out.extend_from_slice(content.as_raw_str().as_bytes());
        out.extend_from_slice(b"},");
        return Ok(true);
    }
    if !content.is_array() {
        return Err(bad(at.content_path(), "must be a string or an array"));
    }
    let blocks = || content.elements().into_iter().flatten().enumerate();

    // Pass 1: tool messages, and a census of what else the turn holds.
    let (mut moved, mut rest, mut rest_all_text, mut tools) = (false, 0usize, true, false);
    for (j, v) in blocks() {
        let bat = at.block(j);
        let (b, kind) = Block::read(v, bat)?;
        match kind {
            Kind::ToolResult => {
                moved |= write_tool_message(out, &b, bat)?;
                tools = true;
            }
            Kind::Text => rest += 1,
            Kind::Image | Kind::Document => {
                rest += 1;
                rest_all_text = false;
            }
            Kind::Thinking => {}
            Kind::ToolUse => return Err(bad(bat, "tool_use blocks are only allowed in assistant messages")),
        }
    }
    flush_held(out, held)?;
    if rest == 0 && !moved {
        return Ok(tools);
    }

    out.extend_from_slice(b"{\"role\":\"user\",\"content\":");
    if rest == 1 && rest_all_text && !moved {
        for (j, v) in blocks() {
            let bat = at.block(j);
            let (b, kind) = Block::read(v, bat)?;
            if kind == Kind::Text {
                out.extend_from_slice(b.text(bat)?.as_raw_str().as_bytes());
            }
        }
        out.extend_from_slice(b"},");
        return Ok(true);
    }
    out.push(b'[');
    if moved {
        // Pass 2: attachments of tool results, right after their tool messages.
        for (j, v) in blocks() {
            let bat = at.block(j);
            let (b, kind) = Block::read(v, bat)?;
            if kind != Kind::ToolResult {
                continue;
            }
            let Some(parts) = b.content.and_then(|c| c.elements()) else { continue };
            for (k, p) in parts.enumerate() {
                let pat = bat.block(k);
                let (pb, pkind) = Block::read(p, pat)?;
                if matches!(pkind, Kind::Image | Kind::Document) {
                    write_part(out, &pb, pkind, pat, opts)?;
                }
            }
        }
    }
    if rest > 0 {
        // Pass 3: the turn's own parts.
        for (j, v) in blocks() {
            let bat = at.block(j);
            let (b, kind) = Block::read(v, bat)?;
            if matches!(kind, Kind::Text | Kind::Image | Kind::Document) {
                write_part(out, &b, kind, bat, opts)?;
            }
        }
    }
    close_array(out);
    out.extend_from_slice(b"},");
    Ok(true)
}

/// Writes one `role:"tool"` message; returns whether the result holds
/// images/documents that must follow in a user message.
fn write_tool_message(out: &mut Vec<u8>, b: &Block<'_>, at: Loc) -> Result<bool, ProxyError> {
    let id = req_str(&b.tool_use_id, at, "tool_use_id")?;
    let is_error = match &b.is_error {
        None => false,
        Some(v) if v.is_null() => false,
        Some(v) => v.as_bool().ok_or_else(|| bad(format_args!("{at}.is_error"), "must be a boolean"))?,
    };
    out.extend_from_slice(b"{\"role\":\"tool\",\"tool_call_id\":");
    write_id(out, id);
    out.extend_from_slice(b",\"content\":\"");
    if is_error {
        out.extend_from_slice(TOOL_ERROR_PREFIX.as_bytes());
    }
    let mut moved = false;
    match present(b.content) {
        None => {}
        Some(c) if c.is_str() => out.extend_from_slice(raw_body(&c).as_bytes()),
        Some(c) => {
            let parts = c.elements().ok_or_else(|| bad(at.content_path(), "must be a string or an array"))?;
            let mut first = true;
            for (k, p) in parts.enumerate() {
                let pat = at.block(k);
                let (pb, kind) = Block::read(p, pat)?;
                match kind {
                    Kind::Text => {
                        if !first {
                            out.extend_from_slice(JOIN.as_bytes());
                        }
                        first = false;
                        out.extend_from_slice(raw_body(pb.text(pat)?).as_bytes());
                    }
                    Kind::Image | Kind::Document => moved = true,
                    _ => return Err(bad(pat, "tool_result content may only hold text, image and document blocks")),
                }
            }
        }
    }
    out.extend_from_slice(b"\"},");
    Ok(moved)
}

/// The fields of an image/document `source`.
#[derive(Default)]
struct Source<'a> {
    ty: Option<Lazy<'a>>,
    media_type: Option<Lazy<'a>>,
    data: Option<Lazy<'a>>,
    url: Option<Lazy<'a>>,
}

fn read_source<'a>(b: &Block<'a>, at: Loc) -> Result<Source<'a>, ProxyError> {
    let fields =
        b.source.and_then(|s| s.entries()).ok_or_else(|| bad(format_args!("{at}.source"), "required object"))?;
    let mut s = Source::default();
    for (key, v) in fields {
        let slot = match &*key.name() {
            "type" => &mut s.ty,
            "media_type" => &mut s.media_type,
            "data" => &mut s.data,
            "url" => &mut s.url,
            _ => continue,
        };
        *slot = Some(v);
    }
    Ok(s)
}

fn source_str<'v>(v: &'v Option<Lazy<'_>>, at: Loc, field: &str) -> Result<&'v str, ProxyError> {
    match v {
        Some(v) if v.is_str() => Ok(raw_body(v)),
        _ => Err(bad(format_args!("{at}.source.{field}"), "required string")),
    }
}

/// Writes one user content part (text, image or document), comma-terminated.
fn write_part(out: &mut Vec<u8>, b: &Block<'_>, kind: Kind, at: Loc, opts: &RequestOptions) -> Result<(), ProxyError> {
    match kind {
        Kind::Text => {
            out.extend_from_slice(b"{\"type\":\"text\",\"text\":");
            out.extend_from_slice(b.text(at)?.as_raw_str().as_bytes());
            out.extend_from_slice(b"},");
        }
        Kind::Image => {
            let s = read_source(b, at)?;
            out.extend_from_slice(b"{\"type\":\"image_url\",\"image_url\":{\"url\":\"");
            match s.ty.as_ref().and_then(|t| t.as_str()).as_deref() {
                Some("base64") => {
                    out.extend_from_slice(b"data:");
                    out.extend_from_slice(source_str(&s.media_type, at, "media_type")?.as_bytes());
                    out.extend_from_slice(b";base64,");
                    out.extend_from_slice(source_str(&s.data, at, "data")?.as_bytes());
                }
                Some("url") => out.extend_from_slice(source_str(&s.url, at, "url")?.as_bytes()),
                _ => return Err(bad(format_args!("{at}.source.type"), "image source must be \"base64\" or \"url\"")),
            }
            out.extend_from_slice(b"\"}},");
        }
        Kind::Document => {
            let s = read_source(b, at)?;
            match s.ty.as_ref().and_then(|t| t.as_str()).as_deref() {
                Some("text") => {
                    out.extend_from_slice(b"{\"type\":\"text\",\"text\":\"");
                    out.extend_from_slice(source_str(&s.data, at, "data")?.as_bytes());
                    out.extend_from_slice(b"\"},");
                }
                Some("base64") => {
                    let media = source_str(&s.media_type, at, "media_type")?;
                    if media != "application/pdf" {
                        return Err(bad(
                            format_args!("{at}.source.media_type"),
                            "base64 documents must be application/pdf",
                        ));
                    }
                    if !opts.quirks.pdf_file_parts {
                        return Err(bad(at, "PDF documents are not supported by this upstream; send the text instead"));
                    }
                    out.extend_from_slice(b"{\"type\":\"file\",\"file\":{\"filename\":\"");
                    match b.title.as_ref().filter(|t| t.is_str()).map(raw_body) {
                        Some(title) if !title.is_empty() => out.extend_from_slice(title.as_bytes()),
                        _ => out.extend_from_slice(b"document.pdf"),
                    }
                    out.extend_from_slice(b"\",\"file_data\":\"data:application/pdf;base64,");
                    out.extend_from_slice(source_str(&s.data, at, "data")?.as_bytes());
                    out.extend_from_slice(b"\"}},");
                }
                _ => {
                    return Err(bad(
                        format_args!("{at}.source.type"),
                        "only base64 PDF and text documents can be sent to an OpenAI upstream",
                    ))
                }
            }
        }
        _ => return Err(bad(at, "not allowed here")),
    }
    Ok(())
}

/// Writes an assistant message; returns whether it carries tool_calls.
fn write_assistant(out: &mut Vec<u8>, content: Lazy<'_>, at: Loc, opts: &RequestOptions) -> Result<bool, ProxyError> {
    if content.is_str() {
        out.extend_from_slice(b"{\"role\":\"assistant\",\"content\":");
        out.extend_from_slice(content.as_raw_str().as_bytes());
        out.extend_from_slice(b"},");
        return Ok(false);
    }
    if !content.is_array() {
        return Err(bad(at.content_path(), "must be a string or an array"));
    }
    let blocks = || content.elements().into_iter().flatten().enumerate();

    let mark = out.len();
    out.extend_from_slice(b"{\"role\":\"assistant\",\"content\":\"");
    let (mut any_text, mut calls) = (false, 0usize);
    for (j, v) in blocks() {
        let bat = at.block(j);
        let (b, kind) = Block::read(v, bat)?;
        match kind {
            Kind::Text => {
                if any_text {
                    out.extend_from_slice(JOIN.as_bytes());
                }
                any_text = true;
                out.extend_from_slice(raw_body(b.text(bat)?).as_bytes());
            }
            Kind::ToolUse => calls += 1,
            Kind::Thinking => {}
            Kind::Image | Kind::Document | Kind::ToolResult => {
                return Err(bad(bat, "only text, tool_use and thinking blocks are allowed in assistant messages"))
            }
        }
    }
    if any_text {
        out.push(b'"');
    } else if calls == 0 {
        out.truncate(mark);
        return Ok(false);
    } else {
        out.pop();
        out.extend_from_slice(b"null");
    }
    if calls > 0 {
        out.extend_from_slice(b",\"tool_calls\":[");
        for (j, v) in blocks() {
            let bat = at.block(j);
            let (b, kind) = Block::read(v, bat)?;
            if kind != Kind::ToolUse {
                continue;
            }
            let id = req_str(&b.id, bat, "id")?;
            let name = req_str(&b.name, bat, "name")?;
            out.extend_from_slice(b"{\"id\":");
            let signature = write_id(out, id);
            out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
            write_name(out, name, None);
            out.extend_from_slice(b",\"arguments\":");
            match present(b.input) {
                None => out.extend_from_slice(b"\"{}\""),
                Some(input) if input.is_object() => json::write_str(out, input.as_raw_str()),
                Some(_) => return Err(bad(format_args!("{bat}.input"), "must be an object")),
            }
            out.push(b'}');
            if let (Some(sig), true) = (signature, opts.quirks.gemini) {
                out.extend_from_slice(b",\"extra_content\":{\"google\":{\"thought_signature\":");
                json::write_str(out, &sig);
                out.extend_from_slice(b"}}");
            }
            out.extend_from_slice(b"},");
        }
        close_array(out);
        if opts.quirks.deepseek_reasoning_passback {
            write_reasoning_content(out, blocks(), at)?;
        }
    }
    out.extend_from_slice(b"},");
    Ok(calls > 0)
}

/// `,"reasoning_content":"…"`: the turn's thinking texts joined, raw.
fn write_reasoning_content<'a>(
    out: &mut Vec<u8>,
    blocks: impl Iterator<Item = (usize, Lazy<'a>)>,
    at: Loc,
) -> Result<(), ProxyError> {
    out.extend_from_slice(b",\"reasoning_content\":\"");
    let mut first = true;
    for (j, v) in blocks {
        let (b, kind) = Block::read(v, at.block(j))?;
        let Some(t) = b.thinking.filter(|t| kind == Kind::Thinking && t.is_str()) else { continue };
        let text = raw_body(&t);
        if text.is_empty() {
            continue;
        }
        if !first {
            out.extend_from_slice(JOIN.as_bytes());
        }
        first = false;
        out.extend_from_slice(text.as_bytes());
    }
    out.push(b'"');
    Ok(())
}
