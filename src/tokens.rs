//! Local token counting for `POST /v1/messages/count_tokens`.
//!
//! Receives the raw Anthropic count_tokens request body (`{model, messages,
//! system?, tools?, tool_choice?, thinking?}`) from the lifecycle and returns
//! the estimated input token count, which the lifecycle answers as
//! `{"input_tokens": N}`. The upstream is never called.
//!
//! Text is counted with tiktoken's `o200k_base` BPE (bundled in the crate,
//! built once per process). It is not the upstream model's tokenizer, so the
//! result is an estimate; what matters to Claude Code is that it is a real,
//! positive count that grows with the conversation, because it decides when
//! to compact from it (a `0` would mean "never compact").
//!
//! What is counted: `system` (string or text blocks), every message's text,
//! `tool_use` name + input (raw JSON text), `tool_result` content (string or
//! blocks), thinking text, document text, and tool definitions (name +
//! description + raw `input_schema`). Blocks of unknown types are counted as
//! their raw JSON text. `tool_choice`, `thinking` config and `model` are not
//! counted (a handful of tokens at most). Chat formatting is approximated by
//! the `*_OVERHEAD` constants below. Images follow Anthropic's published
//! estimate, tokens ≈ width × height / 750 after its downscaling, with the
//! dimensions read from the first bytes of the base64 data.

use std::sync::OnceLock;

use sonic_rs::{JsonValueTrait, LazyValue};
use tiktoken_rs::CoreBPE;

use crate::error::ProxyError;

/// Tokens a chat template adds once per request to prime the reply (OpenAI's
/// own counting recipe uses 3).
const REQUEST_OVERHEAD: u64 = 3;
/// Role marker and separators around each message (OpenAI's recipe: 3-4).
const MESSAGE_OVERHEAD: u64 = 4;
/// Structure around a tool_use / tool_result / image / document block
/// (ids, type tags) beyond the counted text.
const BLOCK_OVERHEAD: u64 = 3;
/// JSON wrapping of one tool definition (`{"type":"function","function":…}`).
const TOOL_OVERHEAD: u64 = 10;
/// An image whose size we cannot read (URL, file id, unknown format): the
/// largest the formula gives after Anthropic's downscaling, so that we
/// over- rather than under-estimate.
const IMAGE_FALLBACK: u64 = 1600;
/// Anthropic downscales images whose long edge exceeds this many pixels.
const IMAGE_MAX_EDGE: u64 = 1568;
/// …and images whose estimate exceeds this many tokens (~1.15 megapixels).
const IMAGE_MAX_TOKENS: u64 = 1600;
/// PDFs are estimated from their size: Anthropic charges each page as text
/// plus a page image (1,500-3,000 tokens per page); we take 2,000 tokens per
/// 50 KB of PDF, at least one page.
const PDF_TOKENS_PER_PAGE: u64 = 2000;
const PDF_BYTES_PER_PAGE: u64 = 50_000;
/// Nested content (tool results holding blocks) deeper than this is counted
/// as raw JSON instead of being walked, so hostile nesting costs nothing.
const MAX_DEPTH: u32 = 4;

static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();

fn bpe() -> Option<&'static CoreBPE> {
    BPE.get_or_init(|| match tiktoken_rs::o200k_base() {
        Ok(bpe) => Some(bpe),
        Err(e) => {
            tracing::error!(error = %e, "cannot build the o200k_base tokenizer; count_tokens will fail");
            None
        }
    })
    .as_ref()
}

/// Initialise the tokenizer eagerly (the lead may call this at startup in a
/// background thread); `count_tokens` also initialises lazily.
pub fn warm_up() {
    let _ = bpe();
}

/// Returns input token count for an Anthropic count_tokens request body
/// ({model, messages, system?, tools?, tool_choice?, thinking?}).
pub fn count_tokens(body: &[u8]) -> Result<u64, ProxyError> {
    let mut messages = None;
    let mut system = None;
    let mut tools = None;
    for entry in sonic_rs::to_object_iter(body) {
        let (key, value) =
            entry.map_err(|e| ProxyError::bad_request(format!("request body must be a JSON object: {e}")))?;
        match &*key {
            "messages" => messages = Some(value),
            "system" => system = Some(value),
            "tools" => tools = Some(value),
            _ => {}
        }
    }
    let messages = messages.ok_or_else(|| ProxyError::bad_request("messages: field required"))?;
    let messages = messages.into_array_iter().ok_or_else(|| ProxyError::bad_request("messages: must be an array"))?;
    let bpe = bpe().ok_or_else(|| ProxyError::internal("token counting is unavailable: tokenizer failed to load"))?;

    let mut c = Counter { bpe, total: REQUEST_OVERHEAD };
    if let Some(system) = &system {
        if system.is_str() {
            c.text(system);
        } else if let Some(blocks) = system.clone().into_array_iter() {
            for block in blocks {
                let block = block.map_err(|e| ProxyError::bad_request(format!("system: {e}")))?;
                c.block(&block, 0);
            }
        }
    }
    for (i, message) in messages.enumerate() {
        let message = message.map_err(|e| ProxyError::bad_request(format!("messages.{i}: {e}")))?;
        if !message.is_object() {
            return Err(ProxyError::bad_request(format!("messages.{i}: must be an object")));
        }
        c.total += MESSAGE_OVERHEAD;
        if let Some(content) = message.get("content") {
            c.content(&content, 0);
        }
    }
    if let Some(tools) = tools.and_then(LazyValue::into_array_iter) {
        for tool in tools.flatten() {
            c.tool(&tool);
        }
    }
    Ok(c.total.max(1))
}

struct Counter {
    bpe: &'static CoreBPE,
    total: u64,
}

impl Counter {
    fn str(&mut self, s: &str) {
        if !s.is_empty() {
            // `encode_ordinary`: special-token text such as "<|endoftext|>"
            // in user content is counted as plain text, never interpreted.
            self.total += self.bpe.encode_ordinary(s).len() as u64;
        }
    }

    /// Counts a JSON string value's decoded text; other values count nothing.
    fn text(&mut self, v: &LazyValue<'_>) {
        if let Some(s) = v.as_str() {
            self.str(s);
        }
    }

    fn field_text(&mut self, v: &LazyValue<'_>, key: &str) {
        if let Some(f) = v.get(key) {
            self.text(&f);
        }
    }

    /// Counts a value as the JSON text the upstream will see.
    fn raw(&mut self, v: &LazyValue<'_>) {
        self.str(v.as_raw_str());
    }

    /// `content`: a string or an array of blocks.
    fn content(&mut self, content: &LazyValue<'_>, depth: u32) {
        if content.is_str() {
            self.text(content);
        } else if let Some(blocks) = content.clone().into_array_iter() {
            for block in blocks.flatten() {
                self.block(&block, depth);
            }
        } else if !content.is_null() {
            self.raw(content);
        }
    }

    fn block(&mut self, block: &LazyValue<'_>, depth: u32) {
        if depth > MAX_DEPTH {
            self.raw(block);
            return;
        }
        let kind = block.get("type");
        match kind.as_ref().and_then(|t| t.as_str()).unwrap_or("") {
            "text" => self.field_text(block, "text"),
            "thinking" => self.field_text(block, "thinking"),
            "redacted_thinking" => self.field_text(block, "data"),
            "tool_use" | "server_tool_use" => {
                self.total += BLOCK_OVERHEAD;
                self.field_text(block, "name");
                if let Some(input) = block.get("input") {
                    self.raw(&input);
                }
            }
            "tool_result" => {
                self.total += BLOCK_OVERHEAD;
                if let Some(content) = block.get("content") {
                    self.content(&content, depth + 1);
                }
            }
            "image" => {
                self.total += BLOCK_OVERHEAD;
                self.total += block.get("source").map_or(IMAGE_FALLBACK, |s| image_tokens(&s));
            }
            "document" => {
                self.total += BLOCK_OVERHEAD;
                self.field_text(block, "title");
                self.field_text(block, "context");
                if let Some(source) = block.get("source") {
                    self.document(&source, depth);
                }
            }
            _ => self.raw(block),
        }
    }

    fn document(&mut self, source: &LazyValue<'_>, depth: u32) {
        let kind = source.get("type");
        match kind.as_ref().and_then(|t| t.as_str()).unwrap_or("") {
            "text" => self.field_text(source, "data"),
            "content" => {
                if let Some(content) = source.get("content") {
                    self.content(&content, depth + 1);
                }
            }
            "base64" => {
                let len = source.get("data").map_or(0, |d| d.as_raw_str().len() as u64);
                let bytes = len / 4 * 3;
                self.total += bytes.div_ceil(PDF_BYTES_PER_PAGE).max(1) * PDF_TOKENS_PER_PAGE;
            }
            _ => self.total += PDF_TOKENS_PER_PAGE,
        }
    }

    fn tool(&mut self, tool: &LazyValue<'_>) {
        self.total += TOOL_OVERHEAD;
        match tool.get("input_schema") {
            Some(schema) => {
                self.field_text(tool, "name");
                self.field_text(tool, "description");
                self.raw(&schema);
            }
            // Server tools (`web_search_…`) have no schema: count what they say.
            None => self.raw(tool),
        }
    }
}

/// Tokens for an image `source`: base64 images by their dimensions, anything
/// else (URL, file id, unreadable header) by [`IMAGE_FALLBACK`].
fn image_tokens(source: &LazyValue<'_>) -> u64 {
    let is_base64 = source.get("type").is_some_and(|t| t.as_str() == Some("base64"));
    let data = source.get("data");
    let dims = match (&data, is_base64) {
        (Some(d), true) => d.as_str().and_then(|s| image_dimensions(s.as_bytes())),
        _ => None,
    };
    match dims {
        Some((w, h)) => tokens_for_dimensions(w, h),
        None => IMAGE_FALLBACK,
    }
}

/// Anthropic's estimate: downscale so the long edge is at most 1568 px, then
/// width × height / 750, capped at about 1,600 tokens.
fn tokens_for_dimensions(w: u32, h: u32) -> u64 {
    let (mut w, mut h) = (w as u64, h as u64);
    if w == 0 || h == 0 {
        return IMAGE_FALLBACK;
    }
    let long = w.max(h);
    if long > IMAGE_MAX_EDGE {
        w = (w * IMAGE_MAX_EDGE / long).max(1);
        h = (h * IMAGE_MAX_EDGE / long).max(1);
    }
    (w * h).div_ceil(750).clamp(1, IMAGE_MAX_TOKENS)
}

/// Random access into base64 text without decoding all of it: byte `p` of
/// the decoded data lives in the 4-character group `p / 3`. This lets the
/// JPEG walk skip large EXIF segments while decoding only a few bytes each.
struct B64<'a>(&'a [u8]);

impl B64<'_> {
    fn byte(&self, p: usize) -> Option<u8> {
        let start = (p / 3).checked_mul(4)?;
        let group = self.0.get(start..start.checked_add(4)?)?;
        let mut bits = 0u32;
        for &c in group {
            bits = (bits << 6) | sextet(c)?;
        }
        let b = (bits >> (16 - 8 * (p % 3) as u32)) & 0xff;
        // A `=` in the group stands for bytes that do not exist.
        let pads = group.iter().rev().take_while(|&&c| c == b'=').count();
        if p % 3 >= 3 - pads {
            return None;
        }
        Some(b as u8)
    }

    fn be16(&self, p: usize) -> Option<u32> {
        Some(u32::from(self.byte(p)?) << 8 | u32::from(self.byte(p + 1)?))
    }

    fn be32(&self, p: usize) -> Option<u32> {
        Some(self.be16(p)? << 16 | self.be16(p + 2)?)
    }

    fn le16(&self, p: usize) -> Option<u32> {
        Some(u32::from(self.byte(p)?) | u32::from(self.byte(p + 1)?) << 8)
    }

    fn le24(&self, p: usize) -> Option<u32> {
        Some(self.le16(p)? | u32::from(self.byte(p + 2)?) << 16)
    }

    fn starts_with(&self, at: usize, sig: &[u8]) -> bool {
        sig.iter().enumerate().all(|(i, &s)| self.byte(at + i) == Some(s))
    }
}

fn sextet(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        b'=' => 0,
        _ => return None,
    } as u32)
}

/// Reads (width, height) from the header of a base64-encoded PNG, GIF, JPEG
/// or WebP image. A `data:…;base64,` prefix is tolerated.
pub(crate) fn image_dimensions(data: &[u8]) -> Option<(u32, u32)> {
    let data = match data.strip_prefix(b"data:") {
        Some(rest) => &rest[rest.iter().position(|&c| c == b',')? + 1..],
        None => data,
    };
    let b = B64(data);
    if b.starts_with(0, b"\x89PNG\r\n\x1a\n") && b.starts_with(12, b"IHDR") {
        return Some((b.be32(16)?, b.be32(20)?));
    }
    if b.starts_with(0, b"GIF8") {
        return Some((b.le16(6)?, b.le16(8)?));
    }
    if b.starts_with(0, b"RIFF") && b.starts_with(8, b"WEBP") {
        return webp_dimensions(&b);
    }
    if b.starts_with(0, b"\xff\xd8") {
        return jpeg_dimensions(&b);
    }
    None
}

fn webp_dimensions(b: &B64<'_>) -> Option<(u32, u32)> {
    if b.starts_with(12, b"VP8X") {
        return Some((b.le24(24)? + 1, b.le24(27)? + 1));
    }
    if b.starts_with(12, b"VP8L") && b.byte(20)? == 0x2f {
        let bits = b.le16(21)? | b.le16(23)? << 16;
        return Some(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1));
    }
    if b.starts_with(12, b"VP8 ") && b.starts_with(23, b"\x9d\x01\x2a") {
        return Some((b.le16(26)? & 0x3fff, b.le16(28)? & 0x3fff));
    }
    None
}

/// Walks JPEG segments to the first start-of-frame marker.
fn jpeg_dimensions(b: &B64<'_>) -> Option<(u32, u32)> {
    let mut pos = 2usize;
    for _ in 0..256 {
        if b.byte(pos)? != 0xff {
            return None;
        }
        let marker = b.byte(pos + 1)?;
        match marker {
            0xff => pos += 1,
            0x01 | 0xd0..=0xd9 => pos += 2,
            0xc0..=0xcf if !matches!(marker, 0xc4 | 0xc8 | 0xcc) => {
                return Some((b.be16(pos + 7)?, b.be16(pos + 5)?));
            }
            _ => pos = pos.checked_add(2 + b.be16(pos + 2)? as usize)?,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(body: &str) -> u64 {
        count_tokens(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn enc(s: &str) -> u64 {
        tiktoken_rs::o200k_base_singleton().encode_ordinary(s).len() as u64
    }

    fn b64(bytes: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.len();
            let v = (chunk[0] as u32) << 16
                | (*chunk.get(1).unwrap_or(&0) as u32) << 8
                | *chunk.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= n {
                    s.push(A[((v >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }

    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        v.extend_from_slice(&w.to_be_bytes());
        v.extend_from_slice(&h.to_be_bytes());
        v.extend_from_slice(&[8, 6, 0, 0, 0, 0x12, 0x34, 0x56, 0x78]);
        v
    }

    fn user(content: &str) -> String {
        format!(r#"{{"model":"m","messages":[{{"role":"user","content":{content}}}]}}"#)
    }

    #[test]
    fn plain_string_matches_tiktoken_plus_overhead() {
        let text = "The quick brown fox jumps over the lazy dog. Ünïcödé 日本語 🎉";
        let n = count(&user(&sonic_rs::to_string(text).unwrap()));
        assert_eq!(n, REQUEST_OVERHEAD + MESSAGE_OVERHEAD + enc(text));
        assert!(enc(text) > 10);
        // Text blocks count the same text.
        let blocks = format!(r#"[{{"type":"text","text":{}}}]"#, sonic_rs::to_string(text).unwrap());
        assert_eq!(count(&user(&blocks)), n);
    }

    #[test]
    fn escaped_text_is_counted_decoded() {
        let n = count(&user(r#""line one\nline \"two\"""#));
        assert_eq!(n, REQUEST_OVERHEAD + MESSAGE_OVERHEAD + enc("line one\nline \"two\""));
    }

    #[test]
    fn counts_are_positive_and_grow_with_content() {
        let short = count(&user(r#""hi""#));
        let long = count(&user(r#""hi, please refactor the whole module and write tests for it""#));
        assert!(short > 0 && long > short, "{short} {long}");
        let two = count(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"again"}]}"#,
        );
        assert!(two > short);
        // Even an empty message list is never 0: Claude Code trusts a 0.
        assert!(count(r#"{"model":"m","messages":[]}"#) > 0);
        assert!(count(&user(r#""""#)) > 0);
    }

    #[test]
    fn special_token_text_is_plain_text() {
        let n = count(&user(r#""<|endoftext|> and <|im_start|>""#));
        assert_eq!(n, REQUEST_OVERHEAD + MESSAGE_OVERHEAD + enc("<|endoftext|> and <|im_start|>"));
    }

    #[test]
    fn system_in_both_shapes_is_counted() {
        let base = count(&user(r#""hi""#));
        let s = "You are Claude Code, a careful engineer.";
        let string = count(&format!(r#"{{"system":"{s}","messages":[{{"role":"user","content":"hi"}}]}}"#));
        assert_eq!(string, base + enc(s));
        let blocks = count(&format!(
            r#"{{"system":[{{"type":"text","text":"{s}","cache_control":{{"type":"ephemeral"}}}}],"messages":[{{"role":"user","content":"hi"}}]}}"#
        ));
        assert_eq!(blocks, string);
    }

    #[test]
    fn tools_change_the_count() {
        let base = count(&user(r#""hi""#));
        let schema = r#"{"type":"object","properties":{"command":{"type":"string"}},"required":["command"]}"#;
        let body = format!(
            r#"{{"messages":[{{"role":"user","content":"hi"}}],"tools":[{{"name":"Bash","description":"Run a shell command","input_schema":{schema}}}]}}"#
        );
        assert_eq!(count(&body), base + TOOL_OVERHEAD + enc("Bash") + enc("Run a shell command") + enc(schema));
        let server = count(
            r#"{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#,
        );
        assert!(server > base + TOOL_OVERHEAD);
    }

    #[test]
    fn tool_use_input_and_tool_result_change_the_count() {
        let turn = |input: &str, result: &str| {
            count(&format!(
                r#"{{"messages":[
                {{"role":"user","content":"list files"}},
                {{"role":"assistant","content":[{{"type":"text","text":"ok"}},{{"type":"tool_use","id":"t1","name":"Bash","input":{input}}}]}},
                {{"role":"user","content":[{{"type":"tool_result","tool_use_id":"t1","content":{result},"is_error":false}}]}}]}}"#
            ))
        };
        let small = turn(r#"{"command":"ls"}"#, r#""a.txt""#);
        let bigger_input = turn(r#"{"command":"ls -la /very/long/path/to/somewhere"}"#, r#""a.txt""#);
        let bigger_result = turn(r#"{"command":"ls"}"#, r#""a.txt\nb.txt\nc.txt\nsrc/main.rs\nsrc/lib.rs""#);
        assert!(bigger_input > small && bigger_result > small, "{small} {bigger_input} {bigger_result}");
        let as_blocks = turn(r#"{"command":"ls"}"#, r#"[{"type":"text","text":"a.txt"}]"#);
        assert_eq!(as_blocks, small);
        // The input is counted as its raw JSON text.
        let a = turn(r#"{"command":"ls"}"#, r#""""#);
        let b = turn(r#"{}"#, r#""""#);
        assert_eq!(a - b, enc(r#"{"command":"ls"}"#) - enc("{}"));
    }

    #[test]
    fn thinking_and_documents_are_counted() {
        let base = count(&user(r#"[{"type":"text","text":"x"}]"#));
        let thinking = count(&user(
            r#"[{"type":"thinking","thinking":"Let me think hard","signature":"s"},{"type":"text","text":"x"}]"#,
        ));
        assert_eq!(thinking, base + enc("Let me think hard"));
        let doc = count(&user(
            r#"[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"The annual report says revenue grew."}},{"type":"text","text":"x"}]"#,
        ));
        assert_eq!(doc, base + BLOCK_OVERHEAD + enc("The annual report says revenue grew."));
        let pdf = count(&user(
            r#"[{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0xLjQK"}}]"#,
        ));
        assert!(pdf >= PDF_TOKENS_PER_PAGE);
    }

    #[test]
    fn png_dimensions_from_a_generated_header() {
        let data = b64(&png_header(800, 600));
        assert_eq!(image_dimensions(data.as_bytes()), Some((800, 600)));
        assert_eq!(image_dimensions(format!("data:image/png;base64,{data}").as_bytes()), Some((800, 600)));
        let body = user(&format!(
            r#"[{{"type":"image","source":{{"type":"base64","media_type":"image/png","data":"{data}"}}}}]"#
        ));
        assert_eq!(count(&body), REQUEST_OVERHEAD + MESSAGE_OVERHEAD + BLOCK_OVERHEAD + 640);
        // Truncated or corrupt data falls back to the constant.
        assert_eq!(image_dimensions(&data.as_bytes()[..20]), None);
        assert_eq!(image_dimensions(b"!!!not base64!!!"), None);
        let url = user(r#"[{"type":"image","source":{"type":"url","url":"https://example.com/a.png"}}]"#);
        assert_eq!(count(&url), REQUEST_OVERHEAD + MESSAGE_OVERHEAD + BLOCK_OVERHEAD + IMAGE_FALLBACK);
    }

    #[test]
    fn gif_jpeg_and_webp_dimensions() {
        let gif = b"GIF89a\x40\x01\xf0\x00\x00\x00\x00";
        assert_eq!(image_dimensions(b64(gif).as_bytes()), Some((320, 240)));

        // SOI, an APP1 segment of 1000 bytes to skip, then SOF0.
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe1, 0x03, 0xea];
        jpeg.extend(std::iter::repeat_n(0u8, 1000));
        jpeg.extend_from_slice(&[0xff, 0xc0, 0x00, 0x11, 0x08, 0x02, 0x58, 0x04, 0x00, 0x03]);
        assert_eq!(image_dimensions(b64(&jpeg).as_bytes()), Some((1024, 600)));

        let mut webp = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
        webp.extend_from_slice(&[0x1f, 0x03, 0x00, 0xdf, 0x01, 0x00]);
        assert_eq!(image_dimensions(b64(&webp).as_bytes()), Some((800, 480)));
    }

    #[test]
    fn image_formula_downscales_and_caps() {
        assert_eq!(tokens_for_dimensions(750, 1), 1);
        assert_eq!(tokens_for_dimensions(200, 200), 54);
        assert_eq!(tokens_for_dimensions(1000, 1000), 1334);
        assert_eq!(tokens_for_dimensions(8000, 8000), IMAGE_MAX_TOKENS);
        assert_eq!(tokens_for_dimensions(0, 10), IMAGE_FALLBACK);
        assert_eq!(tokens_for_dimensions(u32::MAX, u32::MAX), IMAGE_MAX_TOKENS);
    }

    #[test]
    fn malformed_requests_are_400_naming_the_field() {
        for (body, needle) in [
            ("", "JSON object"),
            ("not json", "JSON object"),
            ("[1]", "JSON object"),
            (r#"{"messages":[{"role":"user","content":"x"}"#, "JSON object"),
            (r#"{"model":"m"}"#, "messages"),
            (r#"{"messages":"hi"}"#, "messages"),
            (r#"{"messages":{}}"#, "messages"),
            (r#"{"messages":[1]}"#, "messages.0"),
        ] {
            let e = count_tokens(body.as_bytes()).unwrap_err();
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.kind.as_str(), "invalid_request_error");
            assert!(e.message.contains(needle), "{body}: {}", e.message);
        }
    }

    #[test]
    fn odd_but_valid_shapes_never_panic_and_never_count_zero() {
        let full = r#"{"model":"m","system":[{"type":"text","text":"s"}],"tools":[{"name":"T","input_schema":{}}],
            "messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"x","content":[{"type":"image","source":{"type":"base64","data":"iVBORw0KGgo="}}]}]},
            {"role":"assistant","content":[{"type":"mystery","payload":{"a":1}},{"type":"tool_use","name":"T","input":{"k":"v"}}]},
            {"role":"system","content":null}]}"#;
        for end in 0..=full.len() {
            if let Ok(n) = count_tokens(&full.as_bytes()[..end]) {
                assert!(n > 0);
            }
        }
        assert!(count(full) > IMAGE_FALLBACK);
    }

    #[test]
    fn warm_up_is_idempotent() {
        warm_up();
        warm_up();
        assert!(bpe().is_some());
    }
}
