//! Sans-IO HTTP/1.1 codec.
//!
//! Receives raw bytes read by the socket loops (client requests on the server
//! side, provider responses on the upstream side) and emits parsed heads with
//! byte ranges into the caller's buffer, de-framed body bytes, and serialized
//! heads/chunks appended to caller-owned `Vec<u8>`s. Nothing here performs
//! I/O; the monoio loops around it own the sockets and buffers.
//!
//! - [`request`]: server side, parses client request heads (limits, smuggling checks).
//! - [`body`]: incremental body de-framing for request and upstream response bodies.
//! - [`response`]: server side, writes response heads, full responses and chunks.
//! - [`client`]: upstream side, writes our request head and parses the provider's response head.

pub mod body;
pub mod client;
pub mod request;
pub mod response;

pub use body::{BodyDecoder, BodyError};
pub use client::{parse_response_head, write_request_head, ResponseHead};
pub use request::{parse_request_head, BodyKind, Limits, Method, RequestHead};
pub use response::{reason_phrase, write_chunk, write_full, write_head, CONTINUE_100, LAST_CHUNK};

use std::ops::Range;

/// Byte range of `part` inside `buf`. `part` must be a sub-slice of `buf`
/// (httparse hands out such slices); anything else yields an empty range
/// rather than a bogus one, so a caller indexing with it cannot panic.
pub(crate) fn range_in(buf: &[u8], part: &[u8]) -> Range<usize> {
    let base = buf.as_ptr() as usize;
    let start = (part.as_ptr() as usize).wrapping_sub(base);
    match start.checked_add(part.len()) {
        Some(end) if start <= buf.len() && end <= buf.len() => start..end,
        _ => 0..0,
    }
}

/// Strict decimal parse used for Content-Length and Retry-After: digits only,
/// no sign, no whitespace, no overflow.
pub(crate) fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// Trims optional whitespace (SP / HTAB) around a header value or list element.
pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// What the `Connection` header(s) asked for. Both may be set when a peer
/// sends nonsense like `close, keep-alive`; close wins.
#[derive(Default, Clone, Copy)]
pub(crate) struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
}

impl ConnectionTokens {
    pub(crate) fn add(&mut self, value: &[u8]) {
        for token in value.split(|&b| b == b',') {
            let token = trim_ows(token);
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            }
        }
    }

    /// HTTP/1.1 is persistent unless `close`; HTTP/1.0 only with `keep-alive`.
    pub(crate) fn keep_alive(self, http11: bool) -> bool {
        !self.close && (http11 || self.keep_alive)
    }
}

/// Appends `name: value\r\n`. CR, LF and NUL are dropped from both parts so
/// that a value coming from configuration or a client can never inject a
/// header line or end the head early.
pub(crate) fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    push_clean(out, name.as_bytes());
    out.extend_from_slice(b": ");
    push_clean(out, value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub(crate) fn push_clean(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        out.extend(bytes.iter().copied().filter(|&b| !matches!(b, b'\r' | b'\n' | 0)));
    } else {
        out.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_in_finds_subslices_and_rejects_foreign_ones() {
        let buf = b"hello world";
        assert_eq!(range_in(buf, &buf[6..11]), 6..11);
        assert_eq!(range_in(buf, &buf[0..0]), 0..0);
        let other = b"xyz";
        assert_eq!(range_in(buf, other), 0..0);
    }

    #[test]
    fn decimal_is_strict() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        for bad in [&b""[..], b"+1", b"-1", b" 1", b"1 ", b"0x10", b"1,1"] {
            assert_eq!(parse_decimal(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn connection_tokens() {
        let mut t = ConnectionTokens::default();
        t.add(b"Upgrade, Keep-Alive");
        assert!(t.keep_alive(false));
        t.add(b" CLOSE ");
        assert!(!t.keep_alive(true));
        assert!(ConnectionTokens::default().keep_alive(true));
        assert!(!ConnectionTokens::default().keep_alive(false));
    }

    #[test]
    fn header_values_cannot_inject_lines() {
        let mut out = Vec::new();
        push_header(&mut out, "X-A", "v\r\nX-Evil: 1");
        assert_eq!(out, b"X-A: vX-Evil: 1\r\n");
    }
}
