//! Incremental HTTP/1.1 body de-framing.
//!
//! Receives body bytes as they arrive from a socket, split at any offset, for
//! either a client request body or an upstream response body, and emits the
//! decoded payload appended to a caller buffer. It stops exactly at the end of
//! the body so pipelined or keep-alive bytes that follow stay with the caller.
//! Chunked framing is parsed strictly (CRLF only, hex sizes with overflow
//! checks, bounded extension and trailer sizes) because a lenient chunked
//! parser behind or in front of another one is a request-smuggling vector.

use std::fmt;

use crate::error::{ProxyError, Side};
use crate::http::request::{body_too_large, BodyKind};

/// Longest chunk-size line (size, extensions, CRLF) accepted.
const MAX_CHUNK_LINE: u32 = 4096;
/// Most trailer bytes accepted after the last chunk; trailers are discarded.
const MAX_TRAILERS: u32 = 16 * 1024;

/// A body framing failure, before it is attributed to a side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The chunked framing is broken; the message names how.
    InvalidChunked(&'static str),
    /// The decoded body would exceed the configured limit.
    TooLarge { limit: u64 },
    /// The connection ended before the body did.
    Truncated { received: u64, expected: Option<u64> },
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::InvalidChunked(why) => write!(f, "invalid chunked body: {why}"),
            BodyError::TooLarge { limit } => write!(f, "body exceeds {limit} bytes"),
            BodyError::Truncated { received, expected: Some(n) } => {
                write!(f, "connection closed after {received} of {n} body bytes")
            }
            BodyError::Truncated { received, expected: None } => {
                write!(f, "connection closed inside a chunked body after {received} bytes")
            }
        }
    }
}

impl BodyError {
    /// As the client's fault: 400, or 413 `request_too_large` for the limit.
    pub fn client(&self) -> ProxyError {
        match self {
            BodyError::TooLarge { limit } => body_too_large(*limit),
            _ => ProxyError::bad_request(format!("request {self}")),
        }
    }

    /// As the provider's fault: 502 `api_error`.
    pub fn upstream(&self) -> ProxyError {
        ProxyError::bad_gateway(format!("upstream response {self}"))
    }

    pub fn to_proxy_error(&self, side: Side) -> ProxyError {
        match side {
            Side::Upstream => self.upstream(),
            _ => self.client(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Content-Length body with this many bytes left.
    Length(u64),
    /// Read until EOF.
    Close,
    /// Hex digits of a chunk size; `digits` counts them (at least one required).
    Size {
        size: u64,
        digits: u8,
    },
    /// Whitespace after the size, before `;` or CR.
    SizeWs {
        size: u64,
    },
    /// Inside chunk extensions, up to CR.
    Ext {
        size: u64,
    },
    /// CR of the size line seen, LF must follow.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// Incremental de-framer for one body. Build it from the head's [`BodyKind`],
/// feed it bytes with [`decode`](Self::decode) until done, and call
/// [`finish_at_eof`](Self::finish_at_eof) if the connection ends first.
#[derive(Clone, Debug)]
pub struct BodyDecoder {
    state: State,
    side: Side,
    /// Declared Content-Length, for truncation messages.
    expected: Option<u64>,
    received: u64,
    limit: Option<u64>,
    /// Bytes of the current chunk-size line or of all trailers, to bound them.
    line_bytes: u32,
}

impl BodyDecoder {
    /// A decoder whose errors are client-side (request bodies).
    pub fn new(kind: BodyKind) -> Self {
        let (state, expected) = match kind {
            BodyKind::None | BodyKind::Length(0) => (State::Done, Some(0)),
            BodyKind::Length(n) => (State::Length(n), Some(n)),
            BodyKind::Chunked => (State::Size { size: 0, digits: 0 }, None),
            BodyKind::Close => (State::Close, None),
        };
        BodyDecoder { state, side: Side::Client, expected, received: 0, limit: None, line_bytes: 0 }
    }

    /// A decoder whose errors are upstream-side (502), for provider responses.
    pub fn upstream(kind: BodyKind) -> Self {
        BodyDecoder { side: Side::Upstream, ..Self::new(kind) }
    }

    /// Caps the decoded size; exceeding it fails with [`BodyError::TooLarge`]
    /// (413 on the client side). A chunked request body needs this, since its
    /// size is unknown from the head.
    pub fn with_limit(mut self, max_bytes: u64) -> Self {
        self.limit = Some(max_bytes);
        self
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Payload bytes decoded so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Consumes a prefix of `input`, appending payload bytes to `out`.
    /// Returns `(consumed, done)`. Bytes after the end of the body are left
    /// unconsumed. Errors are attributed to the side the decoder was built for.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, bool), ProxyError> {
        self.try_decode(input, out).map_err(|e| e.to_proxy_error(self.side))
    }

    /// [`decode`](Self::decode) with the unattributed error.
    pub fn try_decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, bool), BodyError> {
        let mut pos = 0;
        while pos < input.len() {
            let rest = input.get(pos..).unwrap_or_default();
            match self.state {
                State::Done => break,
                State::Length(left) => {
                    let n = take(left, rest.len());
                    self.push(&rest[..n], out)?;
                    pos += n;
                    let left = left - n as u64;
                    self.state = if left == 0 { State::Done } else { State::Length(left) };
                }
                State::Close => {
                    self.push(rest, out)?;
                    pos = input.len();
                }
                State::Data { left } => {
                    let n = take(left, rest.len());
                    self.push(&rest[..n], out)?;
                    pos += n;
                    let left = left - n as u64;
                    self.state = if left == 0 { State::DataCr } else { State::Data { left } };
                }
                _ => {
                    self.step(rest[0])?;
                    pos += 1;
                }
            }
        }
        Ok((pos, self.is_done()))
    }

    /// At EOF: fine if the body is complete or close-delimited, else truncated.
    pub fn finish_at_eof(&self) -> Result<(), ProxyError> {
        self.try_finish_at_eof().map_err(|e| e.to_proxy_error(self.side))
    }

    pub fn try_finish_at_eof(&self) -> Result<(), BodyError> {
        match self.state {
            State::Done | State::Close => Ok(()),
            _ => Err(BodyError::Truncated { received: self.received, expected: self.expected }),
        }
    }

    fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), BodyError> {
        self.received += data.len() as u64;
        if let Some(limit) = self.limit {
            if self.received > limit {
                return Err(BodyError::TooLarge { limit });
            }
        }
        out.extend_from_slice(data);
        Ok(())
    }

    /// One byte of chunked framing.
    fn step(&mut self, b: u8) -> Result<(), BodyError> {
        use BodyError::InvalidChunked as Bad;
        self.state = match self.state {
            State::Size { size, digits } => {
                self.count_line(MAX_CHUNK_LINE, "chunk size line too long")?;
                match (hex_value(b), b) {
                    (Some(v), _) => {
                        if size > (u64::MAX >> 4) {
                            return Err(Bad("chunk size overflows 64 bits"));
                        }
                        State::Size { size: (size << 4) | u64::from(v), digits: digits.saturating_add(1) }
                    }
                    _ if digits == 0 => return Err(Bad("chunk size must start with a hex digit")),
                    (None, b'\r') => State::SizeLf { size },
                    (None, b';') => State::Ext { size },
                    (None, b' ' | b'\t') => State::SizeWs { size },
                    (None, b'\n') => return Err(Bad("chunk size line must end with CRLF")),
                    _ => return Err(Bad("invalid character after chunk size")),
                }
            }
            State::SizeWs { size } => {
                self.count_line(MAX_CHUNK_LINE, "chunk size line too long")?;
                match b {
                    b' ' | b'\t' => State::SizeWs { size },
                    b';' => State::Ext { size },
                    b'\r' => State::SizeLf { size },
                    _ => return Err(Bad("invalid character after chunk size")),
                }
            }
            State::Ext { size } => {
                self.count_line(MAX_CHUNK_LINE, "chunk extensions too long")?;
                match b {
                    b'\r' => State::SizeLf { size },
                    b'\t' => State::Ext { size },
                    b'\n' => return Err(Bad("chunk size line must end with CRLF")),
                    0..=0x1f | 0x7f => return Err(Bad("control character in chunk extension")),
                    _ => State::Ext { size },
                }
            }
            State::SizeLf { size } => {
                if b != b'\n' {
                    return Err(Bad("chunk size line must end with CRLF"));
                }
                self.line_bytes = 0;
                if size == 0 {
                    State::TrailerStart
                } else {
                    if let Some(limit) = self.limit {
                        if self.received.saturating_add(size) > limit {
                            return Err(BodyError::TooLarge { limit });
                        }
                    }
                    State::Data { left: size }
                }
            }
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::Size { size: 0, digits: 0 },
            State::DataCr | State::DataLf => return Err(Bad("chunk data must be followed by CRLF")),
            State::TrailerStart => {
                self.count_line(MAX_TRAILERS, "trailers too long")?;
                match b {
                    b'\r' => State::EndLf,
                    b':' | b' ' | b'\t' | 0..=0x1f | 0x7f => return Err(Bad("invalid trailer field")),
                    _ => State::TrailerLine,
                }
            }
            State::TrailerLine => {
                self.count_line(MAX_TRAILERS, "trailers too long")?;
                match b {
                    b'\r' => State::TrailerLf,
                    b'\t' => State::TrailerLine,
                    b'\n' => return Err(Bad("trailer line must end with CRLF")),
                    0..=0x1f | 0x7f => return Err(Bad("control character in trailer field")),
                    _ => State::TrailerLine,
                }
            }
            State::TrailerLf if b == b'\n' => State::TrailerStart,
            State::TrailerLf => return Err(Bad("trailer line must end with CRLF")),
            State::EndLf if b == b'\n' => State::Done,
            State::EndLf => return Err(Bad("chunked body must end with CRLF")),
            // Handled in bulk by try_decode, never reaches here.
            s @ (State::Length(_) | State::Close | State::Data { .. } | State::Done) => s,
        };
        Ok(())
    }

    fn count_line(&mut self, max: u32, why: &'static str) -> Result<(), BodyError> {
        self.line_bytes += 1;
        if self.line_bytes > max {
            return Err(BodyError::InvalidChunked(why));
        }
        Ok(())
    }
}

fn take(left: u64, available: usize) -> usize {
    usize::try_from(left).map_or(available, |l| l.min(available))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorType;

    /// Feeds `input` in the given pieces, carrying unconsumed bytes over like a
    /// socket loop would. Returns (payload, bytes left after the body).
    fn feed(kind: BodyKind, pieces: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>, bool), BodyError> {
        let mut d = BodyDecoder::new(kind);
        let mut pending = Vec::new();
        let mut out = Vec::new();
        for p in pieces {
            pending.extend_from_slice(p);
            let (n, _) = d.try_decode(&pending, &mut out)?;
            pending.drain(..n);
        }
        Ok((out, pending, d.is_done()))
    }

    const TAIL: &[u8] = b"GET /next HTTP/1.1\r\n\r\n";

    fn chunked_cases() -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![
            (b"5\r\nhello\r\n0\r\n\r\n".to_vec(), b"hello".to_vec()),
            (b"0\r\n\r\n".to_vec(), b"".to_vec()),
            (b"3;name=val;x\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n".to_vec(), b"abc0123456789".to_vec()),
            (
                b"004 \t;ext=\"q;uoted\"\r\nwxyz\r\n0;last\r\nTrailer: v\r\nX-Other: w\r\n\r\n".to_vec(),
                b"wxyz".to_vec(),
            ),
            (b"1\r\n\r\r\n2\r\n\r\n\r\n0\r\n\r\n".to_vec(), b"\r\r\n".to_vec()),
            (
                [b"1f\r\n".as_slice(), &[b'z'; 31], b"\r\nff\r\n", &[b'y'; 255], b"\r\n0\r\n\r\n"].concat(),
                [[b'z'; 31].as_slice(), &[b'y'; 255]].concat(),
            ),
        ]
    }

    #[test]
    fn chunked_whole_and_split_at_every_offset() {
        for (wire, payload) in chunked_cases() {
            let full = [wire.as_slice(), TAIL].concat();
            let (out, rest, done) = feed(BodyKind::Chunked, &[&full]).unwrap();
            assert_eq!((out.as_slice(), rest.as_slice(), done), (payload.as_slice(), TAIL, true));
            for cut in 0..=full.len() {
                let (out, rest, done) = feed(BodyKind::Chunked, &[&full[..cut], &full[cut..]]).unwrap();
                assert_eq!(out, payload, "cut {cut}");
                assert_eq!(rest, TAIL, "cut {cut}");
                assert!(done);
            }
            for a in 0..wire.len() {
                for b in a..=wire.len() {
                    let (out, _, done) = feed(BodyKind::Chunked, &[&wire[..a], &wire[a..b], &wire[b..]]).unwrap();
                    assert!(done && out == payload, "cuts {a},{b}");
                }
            }
            let bytes: Vec<&[u8]> = full.chunks(1).collect();
            let (out, rest, done) = feed(BodyKind::Chunked, &bytes).unwrap();
            assert_eq!((out, rest.as_slice(), done), (payload, TAIL, true));
        }
    }

    #[test]
    fn not_done_until_final_crlf() {
        let wire = b"5\r\nhello\r\n0\r\n\r\n";
        for cut in 0..wire.len() {
            let mut d = BodyDecoder::new(BodyKind::Chunked);
            let (n, done) = d.decode(&wire[..cut], &mut Vec::new()).unwrap();
            assert_eq!((n, done), (cut, false));
            assert!(d.finish_at_eof().is_err());
        }
    }

    #[test]
    fn invalid_chunked_framing() {
        let bad: &[(&[u8], &str)] = &[
            (b"\r\n", "start with a hex digit"),
            (b";x\r\n", "start with a hex digit"),
            (b"0x5\r\nhello\r\n0\r\n\r\n", "after chunk size"),
            (b"+5\r\n", "start with a hex digit"),
            (b"5\nhello\r\n0\r\n\r\n", "CRLF"),
            (b"5;x\nhello\r\n0\r\n\r\n", "CRLF"),
            (b"5\r\rhello", "CRLF"),
            (b"5\r\nhelloX\r\n", "followed by CRLF"),
            (b"5\r\nhello\n0\r\n\r\n", "followed by CRLF"),
            (b"5 5\r\n", "after chunk size"),
            (b"10000000000000000\r\n", "overflows"),
            (b"ffffffffffffffffff\r\n", "overflows"),
            (b"1;a\x00b\r\n", "control character"),
            (b"0\r\nX: y\n\r\n", "CRLF"),
            (b"0\r\n\n", "invalid trailer"),
            (b"0\r\n y: folded\r\n\r\n", "invalid trailer"),
            (b"0\r\n\r\r", "end with CRLF"),
        ];
        for (wire, needle) in bad {
            let e = feed(BodyKind::Chunked, &[wire]).unwrap_err();
            assert!(e.to_string().contains(needle), "{:?}: {e}", String::from_utf8_lossy(wire));
            let pe = e.client();
            assert_eq!((pe.status, pe.side), (400, Side::Client));
            assert!(pe.message.starts_with("request invalid chunked body"), "{}", pe.message);
            let pe = e.upstream();
            assert_eq!((pe.status, pe.side), (502, Side::Upstream));
        }
        // Largest size that fits is accepted as framing (data simply isn't there yet).
        let mut d = BodyDecoder::new(BodyKind::Chunked);
        assert_eq!(d.decode(b"ffffffffffffffff\r\nab", &mut Vec::new()).unwrap(), (20, false));
        let long_ext = [b"1;".as_slice(), &[b'e'; 5000]].concat();
        assert!(feed(BodyKind::Chunked, &[&long_ext]).unwrap_err().to_string().contains("too long"));
        let long_trailer = [b"0\r\nX: ".as_slice(), &[b'e'; 20_000]].concat();
        assert!(feed(BodyKind::Chunked, &[&long_trailer]).unwrap_err().to_string().contains("too long"));
    }

    #[test]
    fn decoder_side_picks_error_status() {
        let mut d = BodyDecoder::upstream(BodyKind::Chunked);
        let e = d.decode(b"zz\r\n", &mut Vec::new()).unwrap_err();
        assert_eq!((e.status, e.side, e.kind), (502, Side::Upstream, ErrorType::Api));
        let mut d = BodyDecoder::new(BodyKind::Chunked);
        assert_eq!(d.decode(b"zz\r\n", &mut Vec::new()).unwrap_err().status, 400);
    }

    #[test]
    fn length_bodies_stop_at_the_boundary() {
        let full = [b"hello".as_slice(), TAIL].concat();
        for cut in 0..=full.len() {
            let (out, rest, done) = feed(BodyKind::Length(5), &[&full[..cut], &full[cut..]]).unwrap();
            assert_eq!((out.as_slice(), rest.as_slice(), done), (b"hello".as_slice(), TAIL, true));
        }
        let mut d = BodyDecoder::new(BodyKind::Length(5));
        assert_eq!(d.decode(b"hel", &mut Vec::new()).unwrap(), (3, false));
        let e = d.finish_at_eof().unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("3 of 5"), "{}", e.message);
        let d = BodyDecoder::new(BodyKind::Length(0));
        assert!(d.is_done() && d.finish_at_eof().is_ok());
    }

    #[test]
    fn none_and_close_bodies() {
        let mut d = BodyDecoder::new(BodyKind::None);
        assert_eq!(d.decode(TAIL, &mut Vec::new()).unwrap(), (0, true));
        let mut d = BodyDecoder::upstream(BodyKind::Close);
        let mut out = Vec::new();
        assert_eq!(d.decode(b"data: 1\n\n", &mut out).unwrap(), (9, false));
        assert_eq!(d.decode(b"", &mut out).unwrap(), (0, false));
        assert_eq!(d.decode(b"x", &mut out).unwrap(), (1, false));
        assert_eq!(out, b"data: 1\n\nx");
        assert!(d.finish_at_eof().is_ok());
        assert_eq!(d.received(), 10);
    }

    #[test]
    fn limit_applies_to_chunked_and_close() {
        let mut d = BodyDecoder::new(BodyKind::Chunked).with_limit(8);
        let mut out = Vec::new();
        assert_eq!(d.decode(b"4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n", &mut out).unwrap(), (23, true));
        // Refused as soon as the declared chunk size would cross the limit, before its data.
        let mut d = BodyDecoder::new(BodyKind::Chunked).with_limit(8);
        let e = d.decode(b"4\r\nabcd\r\n5\r\n", &mut Vec::new()).unwrap_err();
        assert_eq!((e.status, e.kind), (413, ErrorType::RequestTooLarge));
        assert_eq!(e.message, "request body exceeds max_body_bytes (8 bytes)");
        let mut d = BodyDecoder::upstream(BodyKind::Close).with_limit(3);
        assert_eq!(d.decode(b"abcd", &mut Vec::new()).unwrap_err().status, 502);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"0123456789abcdefABCDEF;= \t\r\n:xX";
        let kinds = [BodyKind::Chunked, BodyKind::Length(17), BodyKind::Close, BodyKind::None];
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for i in 0..20_000u32 {
            buf.clear();
            out.clear();
            let len = (next() % 200) as usize;
            for _ in 0..len {
                let r = next();
                buf.push(if i % 2 == 0 { (r >> 16) as u8 } else { alphabet[(r as usize) % alphabet.len()] });
            }
            let kind = kinds[(i as usize) % kinds.len()];
            let mut d = BodyDecoder::new(kind).with_limit(64);
            let mut pos = 0;
            while pos < buf.len() {
                let step = 1 + (next() % 16) as usize;
                let end = (pos + step).min(buf.len());
                match d.decode(&buf[pos..end], &mut out) {
                    Ok((n, done)) => {
                        // Only the end of the body may leave input unconsumed.
                        assert!(n == end - pos || (done && n < end - pos));
                        pos += n;
                        if done {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = d.finish_at_eof();
            assert!(out.len() <= 64);
        }
    }
}
