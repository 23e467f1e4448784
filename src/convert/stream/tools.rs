//! Tool-call bookkeeping for the stream converter.
//!
//! Receives tool-call fragments (`delta.tool_calls[]` entries) as the
//! converter parses them, and keeps, per upstream call: its ids, its name,
//! the escaped argument bytes not yet forwarded, and a scanner telling when
//! the arguments seen so far form a complete JSON value.
//!
//! Why the scanner: Anthropic blocks cannot interleave, OpenAI tool calls
//! can. The converter keeps the current call's block open and buffers other
//! calls; it moves on to the next call as soon as the current one's
//! arguments are a complete JSON value, which is the only safe moment before
//! the end of the stream (a complete value cannot take more non-blank text).

use crate::convert::tool_ids;

/// Most escaped bytes the stream converter holds back at once: arguments of
/// tool calls waiting for their block, plus text that arrived while the open
/// call's arguments were incomplete. Bounded so an upstream that never
/// completes a call cannot grow the proxy without limit; far above any real
/// tool input.
pub(super) const MAX_HELD_BYTES: usize = 16 << 20;

/// One upstream tool call, in first-appearance order (= block order).
#[derive(Debug)]
pub(super) struct ToolCall {
    /// Upstream `index`; `None` for index-less (Gemini) calls.
    pub key: Option<u64>,
    /// Id as the upstream sent it, to recognise repeats.
    pub upstream_id: String,
    /// Gemini thought signature, kept inside the client id.
    pub signature: Option<String>,
    /// Id as sent to the client (`^[a-zA-Z0-9_-]+$`), set when the block
    /// opens ([`Self::assign_id`]); empty before.
    pub id: String,
    pub name: String,
    /// Escaped argument bytes received while the call's block was not open.
    pub pending: Vec<u8>,
    pub scan: ArgScan,
}

impl ToolCall {
    pub fn new(key: Option<u64>, upstream_id: &str, name: &str) -> Self {
        ToolCall {
            key,
            upstream_id: upstream_id.to_owned(),
            signature: None,
            id: String::new(),
            name: name.to_owned(),
            pending: Vec::new(),
            scan: ArgScan::default(),
        }
    }

    /// Late id, name or signature (some providers send them after the first
    /// fragment). The first non-empty value wins: several providers repeat
    /// them on every fragment, so appending would duplicate them.
    pub fn fill(&mut self, upstream_id: Option<&str>, name: Option<&str>, signature: Option<&str>) {
        if let Some(uid) = upstream_id.filter(|s| !s.is_empty()) {
            if self.upstream_id.is_empty() {
                self.upstream_id.push_str(uid);
            }
        }
        if let Some(sig) = signature.filter(|s| !s.is_empty()) {
            if self.signature.is_none() {
                self.signature = Some(sig.to_owned());
            }
        }
        if let Some(n) = name.filter(|s| !s.is_empty()) {
            if self.name.is_empty() {
                self.name.push_str(n);
            }
        }
    }
}

impl ToolCall {
    /// Fixes the client id, once: valid upstream ids pass through, others
    /// (and any with a signature) are encoded, a missing one is minted.
    pub fn assign_id(&mut self) {
        if self.id.is_empty() {
            tool_ids::encode(&self.upstream_id, self.signature.as_deref(), &mut self.id);
        }
    }
}

/// Finds which call a fragment belongs to; `None` means a new call.
///
/// - With `index`: the latest call with that index, unless the fragment
///   brings a different id (Ollama-style "index 0 for every call").
/// - Without `index` (Gemini): a fragment with an id is the call with that
///   id or a new one; with only a name, a new call; with neither, a
///   continuation of the latest call.
pub(super) fn locate(calls: &[ToolCall], index: Option<u64>, id: Option<&str>, name: Option<&str>) -> Option<usize> {
    let id = id.filter(|s| !s.is_empty());
    match index {
        Some(k) => {
            let i = calls.iter().rposition(|c| c.key == Some(k))?;
            match id {
                Some(id) if !calls[i].upstream_id.is_empty() && calls[i].upstream_id != id => None,
                _ => Some(i),
            }
        }
        None => match id {
            Some(id) => calls.iter().rposition(|c| c.upstream_id == id),
            None if name.is_some_and(|n| !n.is_empty()) => None,
            None => calls.len().checked_sub(1),
        },
    }
}

/// Tracks the JSON structure of a call's arguments, fed with the escaped
/// JSON-string form in which they arrive (so `\"` is a quote of the
/// arguments, `\\` a backslash, `\u007b` a brace).
#[derive(Debug, Default, Clone)]
pub(super) struct ArgScan {
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// A top-level object or array has been closed.
    closed: bool,
}

impl ArgScan {
    pub fn feed(&mut self, escaped: &[u8]) {
        let mut i = 0;
        while i < escaped.len() {
            let mut c = escaped[i];
            i += 1;
            if c == b'\\' {
                let Some(&e) = escaped.get(i) else { return };
                i += 1;
                c = match e {
                    b'u' => {
                        let code = escaped.get(i..i + 4).and_then(hex4).unwrap_or(0xFFFF);
                        i += 4;
                        if code < 0x80 {
                            code as u8
                        } else {
                            b'x'
                        }
                    }
                    b'n' | b'r' | b't' | b'b' | b'f' => b' ',
                    other => other,
                };
            }
            self.step(c);
        }
    }

    fn step(&mut self, c: u8) {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if c == b'\\' {
                self.escaped = true;
            } else if c == b'"' {
                self.in_string = false;
            }
            return;
        }
        match c {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 0 {
                    self.closed = true;
                }
            }
            _ => {}
        }
    }

    /// The arguments so far are a complete object or array.
    pub fn complete(&self) -> bool {
        self.closed && self.depth == 0 && !self.in_string
    }
}

fn hex4(s: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(s).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// Whether an escaped fragment is only JSON whitespace once unescaped.
pub(super) fn is_blank(escaped: &[u8]) -> bool {
    let mut i = 0;
    while i < escaped.len() {
        match escaped[i] {
            b' ' => i += 1,
            b'\\' if matches!(escaped.get(i + 1), Some(b'n' | b'r' | b't')) => i += 2,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete_after(pieces: &[&str]) -> bool {
        let mut s = ArgScan::default();
        for p in pieces {
            s.feed(p.as_bytes());
        }
        s.complete()
    }

    #[test]
    fn scanner_follows_escaped_arguments() {
        assert!(!complete_after(&[""]));
        assert!(!complete_after(&["{\\\"a\\\":"]));
        assert!(complete_after(&["{\\\"a\\\":", "1}"]));
        // Braces inside argument strings do not count, even escaped ones.
        assert!(!complete_after(&["{\\\"a\\\":\\\"}"]));
        assert!(complete_after(&["{\\\"a\\\":\\\"}\\\\\\\"\\\"}"]));
        // An argument-level backslash split across fragments.
        assert!(!complete_after(&["{\\\"a\\\":\\\"x\\\\", "\\\"}"]));
        assert!(complete_after(&["{\\\"a\\\":\\\"x\\\\", "\\\"\\\"}"]));
        // \u escapes of structural characters.
        assert!(complete_after(&["\\u007b\\\"k\\\":[1,2]\\u007D"]));
        assert!(complete_after(&["{\\\"e\\\":\\\"\\u00e9\\\"}", "\\n"]));
        assert!(complete_after(&["[]"]));
    }

    #[test]
    fn blank_fragments() {
        assert!(is_blank(b""));
        assert!(is_blank(b" \\n\\t\\r "));
        assert!(!is_blank(b"\\\\n"));
        assert!(!is_blank(b"}"));
    }

    fn call(key: Option<u64>, id: &str) -> ToolCall {
        ToolCall::new(key, id, "f")
    }

    #[test]
    fn locating_calls() {
        let calls = vec![call(Some(0), "a"), call(Some(1), "b")];
        assert_eq!(locate(&calls, Some(1), None, None), Some(1));
        assert_eq!(locate(&calls, Some(0), Some("a"), Some("f")), Some(0));
        assert_eq!(locate(&calls, Some(0), Some("c"), Some("g")), None);
        assert_eq!(locate(&calls, Some(2), None, None), None);
        let gem = vec![call(None, "x"), call(None, "y")];
        assert_eq!(locate(&gem, None, Some("x"), None), Some(0));
        assert_eq!(locate(&gem, None, Some("z"), Some("g")), None);
        assert_eq!(locate(&gem, None, None, Some("g")), None);
        assert_eq!(locate(&gem, None, None, None), Some(1));
        assert_eq!(locate(&[], None, None, None), None);
    }

    #[test]
    fn ids_are_encoded_and_filled_once() {
        let mut c = ToolCall::new(Some(0), "", "");
        c.fill(Some("functions.Bash:0"), Some("Bash"), None);
        c.fill(Some("other"), Some("Other"), Some("sig"));
        c.fill(None, None, Some("later"));
        assert_eq!((c.upstream_id.as_str(), c.name.as_str()), ("functions.Bash:0", "Bash"));
        c.assign_id();
        let d = tool_ids::decode(&c.id).expect("encoded");
        assert_eq!((d.id.as_str(), d.signature.as_deref()), ("functions.Bash:0", Some("sig")));
        let first = c.id.clone();
        c.assign_id();
        assert_eq!(c.id, first, "assigned once");

        let mut minted = ToolCall::new(None, "", "f");
        minted.assign_id();
        assert!(minted.id.starts_with("toolu_"));
    }
}
