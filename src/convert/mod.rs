//! Conversion between the Anthropic Messages API and OpenAI Chat Completions.
//!
//! Receives raw JSON/SSE bytes from the lifecycle and emits converted bytes
//! into caller-owned buffers:
//! - [`request`]: Anthropic request body → OpenAI request body
//! - [`response`]: OpenAI non-streaming response → Anthropic message
//! - [`stream`]: OpenAI SSE stream → Anthropic SSE events
//!
//! This file holds the vocabulary the three share: usage, stop reasons and
//! the ids we mint.

pub mod quirks;
pub mod request;
pub mod response;
pub mod stream;

pub use quirks::{Quirks, ReasoningParam};

use std::cell::Cell;

/// Token usage as Anthropic reports it. `input_tokens` excludes cached tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl Usage {
    /// Builds Anthropic usage from OpenAI's `prompt_tokens`,
    /// `completion_tokens` and `prompt_tokens_details.cached_tokens`.
    pub fn from_openai(prompt: u64, completion: u64, cached: u64) -> Self {
        Usage {
            input_tokens: prompt.saturating_sub(cached),
            output_tokens: completion,
            cache_read_input_tokens: cached,
        }
    }
}

/// What a conversion produced, for the access log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    pub stop_reason: Option<&'static str>,
    pub usage: Usage,
}

/// Maps OpenAI's `finish_reason` to Anthropic's `stop_reason`. Any produced
/// tool call wins, because Gemini and Ollama report `stop` after tool calls
/// and Claude Code only runs tools when it sees `tool_use`.
pub fn stop_reason(finish_reason: Option<&str>, saw_tool_call: bool) -> &'static str {
    if saw_tool_call {
        return "tool_use";
    }
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

thread_local! {
    static ID_STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS once per process and varies per
    // instance; mixing in the thread id keeps workers apart.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.write(format!("{:?}", std::thread::current().id()).as_bytes());
    h.finish() | 1
}

fn next_random() -> u64 {
    ID_STATE.with(|s| {
        // xorshift64*: unique per thread, cheap, never repeats within 2^64 - 1 draws.
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn write_id(prefix: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + 24);
    s.push_str(prefix);
    for _ in 0..2 {
        let mut r = next_random();
        for _ in 0..11 {
            s.push(ALPHABET[(r % 62) as usize] as char);
            r /= 62;
        }
    }
    s
}

/// A fresh `msg_…` id, unique across workers and concurrent requests.
pub fn new_message_id() -> String {
    write_id("msg_")
}

/// A fresh `toolu_…` id for tool calls whose upstream gave none.
pub fn new_tool_id() -> String {
    write_id("toolu_")
}

/// Makes an upstream tool-call id valid for Anthropic (`^[a-zA-Z0-9_-]+$`):
/// other characters become `_`; an empty id gets a fresh one.
pub fn sanitize_tool_id(id: &str, out: &mut String) {
    out.clear();
    if id.is_empty() {
        out.push_str(&new_tool_id());
        return;
    }
    for c in id.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reason_table() {
        assert_eq!(stop_reason(Some("stop"), false), "end_turn");
        assert_eq!(stop_reason(Some("length"), false), "max_tokens");
        assert_eq!(stop_reason(Some("tool_calls"), false), "tool_use");
        assert_eq!(stop_reason(Some("function_call"), false), "tool_use");
        assert_eq!(stop_reason(Some("content_filter"), false), "refusal");
        assert_eq!(stop_reason(Some("stop"), true), "tool_use");
        assert_eq!(stop_reason(None, false), "end_turn");
    }

    #[test]
    fn usage_subtracts_cached() {
        assert_eq!(
            Usage::from_openai(100, 7, 30),
            Usage { input_tokens: 70, output_tokens: 7, cache_read_input_tokens: 30 }
        );
    }

    #[test]
    fn ids_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = new_message_id();
            assert!(id.starts_with("msg_") && id.len() == 26, "{id}");
            assert!(seen.insert(id));
        }
        let t = new_tool_id();
        assert!(t.starts_with("toolu_"));
    }

    #[test]
    fn tool_ids_are_sanitized() {
        let mut s = String::new();
        sanitize_tool_id("functions.Bash:0", &mut s);
        assert_eq!(s, "functions_Bash_0");
        sanitize_tool_id("call_ok-1", &mut s);
        assert_eq!(s, "call_ok-1");
        sanitize_tool_id("", &mut s);
        assert!(s.starts_with("toolu_"));
    }
}
