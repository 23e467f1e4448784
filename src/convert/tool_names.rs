//! Reversible shortening of tool names longer than OpenAI accepts.
//!
//! Receives tool names from the request converter (tool definitions,
//! `tool_choice`, assistant `tool_use` history) and emits the name sent
//! upstream: unchanged when it has at most [`MAX_LEN`] characters, else the
//! first [`KEEP`] characters + `_` + 8 lowercase hex digits of the FNV-1a
//! (32-bit) hash of the full name. The mapping is a pure function of the
//! name, so history and `tool_choice` shorten the same way as the
//! definitions without shared state. The definitions' pairs are collected in
//! a [`ToolNames`] that travels to the response and stream converters, which
//! map the upstream's answer back to the client's name.
//!
//! Two long names sharing their first 55 characters and their 32-bit hash
//! would collide; at one in four billion per pair this is accepted.

use std::borrow::Cow;

/// OpenAI's limit on function names, in characters.
pub const MAX_LEN: usize = 64;
/// Characters kept from a long name (55 + `_` + 8 hex = 64).
pub const KEEP: usize = 55;

/// Shortened → original name pairs of one request. Empty (and without any
/// allocation) unless the request defines a tool with a long name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolNames {
    pairs: Vec<(String, String)>,
}

impl ToolNames {
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The client's name for an upstream tool name, when it was shortened.
    pub fn original(&self, upstream: &str) -> Option<&str> {
        self.pairs.iter().find(|(short, _)| short == upstream).map(|(_, long)| long.as_str())
    }

    /// Like [`Self::original`], falling back to `upstream` itself.
    pub fn client_name<'a>(&'a self, upstream: &'a str) -> &'a str {
        if self.pairs.is_empty() {
            return upstream;
        }
        self.original(upstream).unwrap_or(upstream)
    }

    pub(crate) fn record(&mut self, short: &str, long: &str) {
        if self.original(short).is_none() {
            self.pairs.push((short.to_owned(), long.to_owned()));
        }
    }
}

/// The upstream name for `name`: borrowed when short enough.
pub fn upstream_name(name: &str) -> Cow<'_, str> {
    if name.len() <= MAX_LEN || name.chars().nth(MAX_LEN).is_none() {
        return Cow::Borrowed(name);
    }
    let keep_end = name.char_indices().nth(KEEP).map_or(name.len(), |(i, _)| i);
    let mut s = String::with_capacity(keep_end + 9);
    s.push_str(&name[..keep_end]);
    s.push('_');
    let h = fnv1a32(name.as_bytes());
    for shift in (0..8).rev() {
        s.push(char::from_digit((h >> (shift * 4)) & 15, 16).unwrap_or('0'));
    }
    Cow::Owned(s)
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_borrowed() {
        let n64 = "a".repeat(64);
        assert!(matches!(upstream_name(&n64), Cow::Borrowed(_)));
        assert!(matches!(upstream_name("Bash"), Cow::Borrowed(_)));
    }

    #[test]
    fn long_names_shorten_stably_and_distinctly() {
        let base = "mcp__very_long_server_name_for_testing__and_an_even_longer_tool_name";
        let a = upstream_name(base).into_owned();
        assert_eq!(a.chars().count(), 64);
        assert!(a.starts_with(&base[..55]));
        assert_eq!(&a[55..56], "_");
        assert!(a[56..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(upstream_name(base), a, "stable");
        let b = upstream_name(&format!("{base}2")).into_owned();
        assert_ne!(a, b, "same prefix, different hash");
        // Multi-byte characters are cut on a character boundary.
        let wide = "é".repeat(70);
        assert_eq!(upstream_name(&wide).chars().count(), 64);
    }

    #[test]
    fn fnv_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn pairs_map_back() {
        let mut names = ToolNames::default();
        assert_eq!(names.client_name("x"), "x");
        names.record("short", "long");
        names.record("short", "long");
        assert_eq!(names.pairs.len(), 1);
        assert_eq!(names.original("short"), Some("long"));
        assert_eq!(names.client_name("other"), "other");
    }
}
