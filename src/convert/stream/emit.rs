//! Writers for the Anthropic SSE events the stream converter produces.
//!
//! Receives already-escaped JSON string bodies (copied raw from the upstream
//! chunk) or plain values from the converter, and appends complete events
//! (`event: <type>\ndata: <json>\n\n`, the `event:` line always equal to the
//! data's `type`, which is what the SDKs dispatch on) to the output buffer.

use crate::convert::Usage;
use crate::json;

/// Kind of an Anthropic content block; decides the start shape and the
/// delta type that may be sent into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BlockKind {
    Text,
    Thinking,
}

pub(super) fn message_start(out: &mut Vec<u8>, id: &str, model: &str, input_tokens: u64) {
    out.extend_from_slice(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":");
    json::write_str(out, id);
    out.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    json::write_str(out, model);
    out.extend_from_slice(b",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":");
    json::write_u64(out, input_tokens);
    out.extend_from_slice(
        b",\"output_tokens\":0,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0}}}\n\n",
    );
}

pub(super) fn block_start(out: &mut Vec<u8>, index: u32, kind: BlockKind) {
    out.extend_from_slice(b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":");
    json::write_u64(out, index as u64);
    out.extend_from_slice(match kind {
        BlockKind::Text => b",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".as_slice(),
        BlockKind::Thinking => b",\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n",
    });
}

/// `id` must already be sanitized; `name` is escaped here.
pub(super) fn tool_start(out: &mut Vec<u8>, index: u32, id: &str, name: &str) {
    out.extend_from_slice(b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":");
    json::write_u64(out, index as u64);
    out.extend_from_slice(b",\"content_block\":{\"type\":\"tool_use\",\"id\":");
    json::write_str(out, id);
    out.extend_from_slice(b",\"name\":");
    json::write_str(out, name);
    out.extend_from_slice(b",\"input\":{}}}\n\n");
}

/// `kind` is the delta type, `field` its string field; `escaped` is a JSON
/// string body (no quotes), valid as is because it was valid in the input.
pub(super) fn delta(out: &mut Vec<u8>, index: u32, kind: &str, field: &str, escaped: &[u8]) {
    out.extend_from_slice(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":");
    json::write_u64(out, index as u64);
    out.extend_from_slice(b",\"delta\":{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"");
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(b"\":\"");
    out.extend_from_slice(escaped);
    out.extend_from_slice(b"\"}}\n\n");
}

pub(super) fn text_delta(out: &mut Vec<u8>, index: u32, escaped: &[u8]) {
    delta(out, index, "text_delta", "text", escaped);
}

pub(super) fn thinking_delta(out: &mut Vec<u8>, index: u32, escaped: &[u8]) {
    delta(out, index, "thinking_delta", "thinking", escaped);
}

pub(super) fn input_json_delta(out: &mut Vec<u8>, index: u32, escaped: &[u8]) {
    delta(out, index, "input_json_delta", "partial_json", escaped);
}

/// Upstream reasoning carries no Anthropic signature. An empty one is sent
/// rather than a made-up value: it marks the block complete the way the real
/// API does, and cannot be mistaken for a verifiable signature if the
/// conversation is later replayed against Anthropic itself.
pub(super) fn signature_delta(out: &mut Vec<u8>, index: u32) {
    delta(out, index, "signature_delta", "signature", b"");
}

pub(super) fn block_stop(out: &mut Vec<u8>, index: u32) {
    out.extend_from_slice(b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":");
    json::write_u64(out, index as u64);
    out.extend_from_slice(b"}\n\n");
}

/// `stop_sequence` is an escaped JSON string body, when one matched.
pub(super) fn message_delta(out: &mut Vec<u8>, stop_reason: &str, stop_sequence: Option<&[u8]>, usage: &Usage) {
    out.extend_from_slice(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"");
    out.extend_from_slice(stop_reason.as_bytes());
    out.extend_from_slice(b"\",\"stop_sequence\":");
    match stop_sequence {
        Some(s) => {
            out.push(b'"');
            out.extend_from_slice(s);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"},\"usage\":{\"input_tokens\":");
    json::write_u64(out, usage.input_tokens);
    out.extend_from_slice(b",\"output_tokens\":");
    json::write_u64(out, usage.output_tokens);
    out.extend_from_slice(b",\"cache_read_input_tokens\":");
    json::write_u64(out, usage.cache_read_input_tokens);
    out.extend_from_slice(b"}}\n\n");
}

pub(super) fn message_stop(out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
}
