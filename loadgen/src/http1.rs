//! Minimal HTTP/1.1 framing of loadgen's own, shared by the client (`run.rs`) and the mock server (`mock.rs`).
//!
//! Receives raw bytes read from a socket; emits parsed heads (status or method/path, body framing,
//! keep-alive) and de-chunked body bytes through a callback. It deliberately shares no code with the
//! proxy's codec, so a framing bug in one cannot hide the same bug in the other. Header tokenising is
//! done by `httparse`; everything about framing (Content-Length, chunked, close) is decided here.

use std::fmt;

const MAX_HEADERS: usize = 64;

/// Why a byte stream is not valid HTTP/1.1 as far as loadgen is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError(pub &'static str);

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// How the body that follows a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
    /// Response without length or chunking: the body runs until the peer closes.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub framing: Framing,
    /// The server said `Connection: close` (or spoke HTTP/1.0 without keep-alive).
    pub close: bool,
    /// Bytes the head occupied in the buffer; the body starts right after.
    pub head_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Other,
}

/// A parsed request head. `path` includes the query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    pub path: String,
    pub framing: Framing,
    pub close: bool,
    pub head_len: usize,
}

struct Common {
    framing: Option<Framing>,
    close: bool,
    keep_alive: bool,
}

fn scan_headers(headers: &[httparse::Header<'_>]) -> Result<Common, HttpError> {
    let mut c = Common { framing: None, close: false, keep_alive: false };
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let s = std::str::from_utf8(h.value).map_err(|_| HttpError("content-length not utf-8"))?;
            let n: usize = s.trim().parse().map_err(|_| HttpError("bad content-length"))?;
            match c.framing {
                Some(Framing::Chunked) => {}
                Some(Framing::Length(m)) if m != n => return Err(HttpError("conflicting content-length")),
                _ => c.framing = Some(Framing::Length(n)),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if contains_token(h.value, b"chunked") {
                c.framing = Some(Framing::Chunked);
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            c.close |= contains_token(h.value, b"close");
            c.keep_alive |= contains_token(h.value, b"keep-alive");
        }
    }
    Ok(c)
}

fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Parses a response head from the start of `buf`. `Ok(None)` means more bytes are needed.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(HttpError("malformed response head")),
    };
    let status = resp.code.ok_or(HttpError("no status"))?;
    let c = scan_headers(resp.headers)?;
    let http10 = resp.version == Some(0);
    // 1xx, 204 and 304 never carry a body.
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Length(0)
    } else {
        c.framing.unwrap_or(Framing::UntilClose)
    };
    let close = c.close || (http10 && !c.keep_alive) || framing == Framing::UntilClose;
    Ok(Some(ResponseHead { status, framing, close, head_len }))
}

/// Parses a request head from the start of `buf`. `Ok(None)` means more bytes are needed.
pub fn parse_request_head(buf: &[u8]) -> Result<Option<RequestHead>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(HttpError("malformed request head")),
    };
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some("POST") => Method::Post,
        _ => Method::Other,
    };
    let path = req.path.unwrap_or("/").to_string();
    let c = scan_headers(req.headers)?;
    let http10 = req.version == Some(0);
    Ok(Some(RequestHead {
        method,
        path,
        framing: c.framing.unwrap_or(Framing::Length(0)),
        close: c.close || (http10 && !c.keep_alive),
        head_len,
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    Done,
}

/// Incremental decoder for `Transfer-Encoding: chunked`; bytes may arrive split anywhere.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: Chunk,
    size: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self { state: Chunk::Size, size: 0 }
    }
}

impl ChunkedDecoder {
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Consumes from `input`, passing body bytes to `out`. Returns how many input bytes were used;
    /// after the terminating chunk and trailers it stops consuming (the rest is the next message).
    pub fn decode(&mut self, input: &[u8], out: &mut dyn FnMut(&[u8])) -> Result<usize, HttpError> {
        let mut i = 0;
        while i < input.len() && self.state != Chunk::Done {
            if self.state == Chunk::Data {
                let n = self.size.min(input.len() - i);
                out(&input[i..i + n]);
                self.size -= n;
                i += n;
                if self.size == 0 {
                    self.state = Chunk::DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = match (self.state, b) {
                (Chunk::Size, b'\r') => Chunk::SizeLf,
                (Chunk::Size, b'\n') | (Chunk::SizeLf, b'\n') | (Chunk::Ext, b'\n') => self.after_size(),
                (Chunk::Size, b';' | b' ' | b'\t') => Chunk::Ext,
                (Chunk::Size, _) => {
                    let d = (b as char).to_digit(16).ok_or(HttpError("bad chunk size"))? as usize;
                    self.size =
                        self.size.checked_mul(16).and_then(|s| s.checked_add(d)).ok_or(HttpError("chunk too big"))?;
                    Chunk::Size
                }
                (Chunk::Ext, _) => Chunk::Ext,
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataCr, b'\n') | (Chunk::DataLf, b'\n') => Chunk::Size,
                (Chunk::TrailerStart, b'\r') => Chunk::TrailerLf,
                (Chunk::TrailerStart, b'\n') | (Chunk::TrailerLf, b'\n') => Chunk::Done,
                (Chunk::TrailerStart, _) | (Chunk::TrailerLine, _) if b != b'\n' => Chunk::TrailerLine,
                (Chunk::TrailerLine, b'\n') => Chunk::TrailerStart,
                _ => return Err(HttpError("bad chunk framing")),
            };
        }
        Ok(i)
    }

    fn after_size(&mut self) -> Chunk {
        if self.size == 0 {
            Chunk::TrailerStart
        } else {
            Chunk::Data
        }
    }
}

/// Body decoder for any framing, fed as bytes arrive.
#[derive(Debug, Clone)]
pub enum BodyDecoder {
    Length(usize),
    Chunked(ChunkedDecoder),
    UntilClose,
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Length(n) => BodyDecoder::Length(n),
            Framing::Chunked => BodyDecoder::Chunked(ChunkedDecoder::default()),
            Framing::UntilClose => BodyDecoder::UntilClose,
        }
    }

    pub fn is_done(&self) -> bool {
        match self {
            BodyDecoder::Length(n) => *n == 0,
            BodyDecoder::Chunked(c) => c.is_done(),
            BodyDecoder::UntilClose => false,
        }
    }

    /// Returns the number of input bytes consumed.
    pub fn feed(&mut self, input: &[u8], out: &mut dyn FnMut(&[u8])) -> Result<usize, HttpError> {
        match self {
            BodyDecoder::Length(rem) => {
                let n = (*rem).min(input.len());
                if n > 0 {
                    out(&input[..n]);
                }
                *rem -= n;
                Ok(n)
            }
            BodyDecoder::Chunked(c) => c.decode(input, out),
            BodyDecoder::UntilClose => {
                out(input);
                Ok(input.len())
            }
        }
    }
}

/// Position of `needle` in `hay`, searching by first byte (bodies here are at most a few hundred KB).
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(p) = hay.get(from..)?.iter().position(|&b| b == first) {
        let at = from + p;
        if hay.get(at + 1..at + 1 + rest.len()) == Some(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Whether a JSON request body asks for streaming, by byte search: a top-level-looking `"stream"` key
/// (not escaped inside a string, not `stream_options`) followed by `true`. No JSON parse per request.
pub fn wants_stream(body: &[u8]) -> bool {
    let mut from = 0;
    while let Some(p) = body.get(from..).and_then(|b| find(b, b"\"stream\"")) {
        let at = from + p;
        from = at + 8;
        if at > 0 && body[at - 1] == b'\\' {
            continue;
        }
        let rest = &body[from..];
        let rest = rest.trim_ascii_start();
        if let Some(rest) = rest.strip_prefix(b":") {
            if rest.trim_ascii_start().starts_with(b"true") {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(dec: &mut ChunkedDecoder, input: &[u8], step: usize) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let mut used = 0;
        for piece in input.chunks(step) {
            let n = dec.decode(piece, &mut |b| out.extend_from_slice(b)).unwrap();
            used += n;
            if n < piece.len() {
                break;
            }
        }
        (out, used)
    }

    #[test]
    fn chunked_decodes_across_any_split() {
        let wire = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in 1..wire.len() {
            let mut dec = ChunkedDecoder::default();
            let (out, used) = decode_all(&mut dec, wire, step);
            assert_eq!(out, b"hello, world", "step {step}");
            assert!(dec.is_done());
            assert_eq!(&wire[used..], b"NEXT", "step {step}");
        }
    }

    #[test]
    fn chunked_rejects_garbage_size() {
        let mut dec = ChunkedDecoder::default();
        assert!(dec.decode(b"zz\r\n", &mut |_| {}).is_err());
        let mut dec = ChunkedDecoder::default();
        assert!(dec.decode(b"3\r\nabcX", &mut |_| {}).is_err());
    }

    #[test]
    fn response_head_framing() {
        let h = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nbody").unwrap().unwrap();
        assert_eq!((h.status, h.framing, h.close, h.head_len), (200, Framing::Length(12), false, 39));
        let h =
            parse_response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!((h.framing, h.close), (Framing::Chunked, true));
        let h = parse_response_head(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.framing, h.close), (Framing::UntilClose, true));
        assert_eq!(parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap(), None);
        assert!(parse_response_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn request_head_and_stream_detection() {
        let r =
            parse_request_head(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 3\r\n\r\n").unwrap().unwrap();
        assert_eq!((r.method, r.path.as_str(), r.framing), (Method::Post, "/v1/chat/completions", Framing::Length(3)));
        assert!(wants_stream(br#"{"model":"m","stream" : true}"#));
        assert!(!wants_stream(br#"{"stream":false,"stream_options":{"include_usage":true}}"#));
        assert!(!wants_stream(br#"{"content":"say \"stream\": true","stream":false}"#));
        assert!(wants_stream(br#"{"stream_options":{},"stream":true}"#));
    }
}
