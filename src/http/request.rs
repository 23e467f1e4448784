//! Server side: parses a client's HTTP/1.1 request head.
//!
//! Receives the bytes read so far from a client connection (possibly several
//! pipelined requests, possibly a partial head) and emits a [`RequestHead`]
//! holding byte ranges into that buffer, the body framing, and the
//! connection-persistence decision. Anything ambiguous about the body length
//! (the classic request-smuggling vectors) is rejected with a client-side
//! [`ProxyError`] carrying the status to answer with.

use std::ops::Range;

use crate::error::{ErrorType, ProxyError};
use crate::http::body::BodyDecoder;
use crate::http::{parse_decimal, range_in, trim_ows, ConnectionTokens};

/// Resource limits for one request.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request head (request line + headers + final CRLF) accepted; 431 beyond.
    pub max_head_bytes: usize,
    /// Most header fields accepted; 431 beyond.
    pub max_headers: usize,
    /// Largest request body accepted; 413 `request_too_large` beyond.
    pub max_body_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_head_bytes: 64 * 1024, max_headers: 100, max_body_bytes: 32 * 1024 * 1024 }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Method {
    Get,
    Head,
    Post,
    Options,
    Other,
}

impl Method {
    /// Methods are case-sensitive (RFC 9110 §9.1): `get` is not `GET`.
    fn from_token(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// How the message body is delimited.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
    /// Response only: the body runs until the peer closes the connection.
    Close,
}

/// A parsed request head. Ranges index the buffer given to [`parse_request_head`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The request target up to (not including) `?`.
    pub path: Range<usize>,
    /// Everything after the first `?`, without it.
    pub query: Option<Range<usize>>,
    pub body: BodyKind,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent by an HTTP/1.1 client with a body to send:
    /// write [`crate::http::CONTINUE_100`] before reading the body (or answer the
    /// final error right away, e.g. 401, and close).
    pub expect_continue: bool,
    /// Bytes of the head including the final CRLFCRLF; the body starts here.
    pub head_len: usize,
    pub authorization: Option<Range<usize>>,
    pub x_api_key: Option<Range<usize>>,
    /// Forwarded to Anthropic-kind providers as they are.
    pub anthropic_version: Option<Range<usize>>,
    pub anthropic_beta: Option<Range<usize>>,
    /// True for HTTP/1.1, false for HTTP/1.0.
    pub http11: bool,
}

impl RequestHead {
    /// The decoder for this request's body, capped at `max_body_bytes` so a
    /// chunked body over the limit fails with 413 as it arrives.
    pub fn body_decoder(&self, limits: &Limits) -> BodyDecoder {
        BodyDecoder::new(self.body).with_limit(limits.max_body_bytes)
    }
}

/// Header slots kept on the stack; larger `max_headers` limits fall back to the heap.
const STACK_HEADERS: usize = 128;

/// Parses one request head from the start of `buf`.
///
/// `Ok(None)` means the head is not complete yet: read more and call again
/// with the grown buffer. Errors carry the status to answer with, after which
/// the connection must be closed (the framing of what follows is unknown):
/// - 431 `invalid_request_error`: head over `max_head_bytes` (checked before
///   the head is complete too), more than `max_headers` fields;
/// - 400: malformed syntax, obsolete line folding, both Content-Length and
///   Transfer-Encoding, repeated or non-numeric Content-Length, any
///   Transfer-Encoding other than exactly `chunked` (400 rather than 501:
///   with an unknown coding the body length cannot be determined at all);
/// - 413 `request_too_large`: Content-Length over `max_body_bytes`.
pub fn parse_request_head(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, ProxyError> {
    let n = limits.max_headers;
    if n <= STACK_HEADERS {
        let mut headers = [httparse::EMPTY_HEADER; STACK_HEADERS];
        parse_with(buf, limits, headers.get_mut(..n).unwrap_or_default())
    } else {
        let mut headers = vec![httparse::EMPTY_HEADER; n];
        parse_with(buf, limits, &mut headers)
    }
}

fn parse_with<'b>(
    buf: &'b [u8],
    limits: &Limits,
    headers: &mut [httparse::Header<'b>],
) -> Result<Option<RequestHead>, ProxyError> {
    // Parse at most one byte past the limit: a head that is still incomplete
    // there is over the limit, and we never scan an unbounded buffer.
    let window = buf.get(..limits.max_head_bytes.saturating_add(1)).unwrap_or(buf);
    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head_bytes {
                return Err(head_too_large(limits));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ProxyError::client(
                431,
                ErrorType::InvalidRequest,
                format!("request has more than {} header fields", limits.max_headers),
            ))
        }
        Err(e) => return Err(malformed(window, e)),
    };
    if head_len > limits.max_head_bytes {
        return Err(head_too_large(limits));
    }

    let http11 = req.version == Some(1);
    let method = Method::from_token(req.method.unwrap_or(""));
    let target = req.path.unwrap_or("").as_bytes();
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(q) => (&target[..q], Some(&target[q + 1..])),
        None => (target, None),
    };

    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut conn = ConnectionTokens::default();
    let mut expect_continue = false;
    let mut authorization = None;
    let mut x_api_key = None;
    let mut anthropic_version = None;
    let mut anthropic_beta = None;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let value = trim_ows(h.value);
        if name.eq_ignore_ascii_case(b"content-length") {
            if content_length.is_some() {
                return Err(ProxyError::bad_request("request has more than one Content-Length header"));
            }
            content_length = Some(parse_decimal(value).ok_or_else(|| {
                ProxyError::bad_request(format!(
                    "invalid Content-Length {:?}: expected a single non-negative integer",
                    String::from_utf8_lossy(value)
                ))
            })?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // A second Transfer-Encoding line means a coding list, which we refuse below anyway.
            if chunked || !value.eq_ignore_ascii_case(b"chunked") {
                return Err(ProxyError::bad_request(format!(
                    "unsupported Transfer-Encoding {:?}: only a single \"chunked\" is accepted",
                    String::from_utf8_lossy(value)
                )));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            conn.add(value);
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"authorization") {
            authorization.get_or_insert_with(|| range_in(buf, value));
        } else if name.eq_ignore_ascii_case(b"x-api-key") {
            x_api_key.get_or_insert_with(|| range_in(buf, value));
        } else if name.eq_ignore_ascii_case(b"anthropic-version") {
            anthropic_version.get_or_insert_with(|| range_in(buf, value));
        } else if name.eq_ignore_ascii_case(b"anthropic-beta") {
            anthropic_beta.get_or_insert_with(|| range_in(buf, value));
        }
    }

    let body = match (content_length, chunked) {
        (Some(_), true) => {
            return Err(ProxyError::bad_request(
                "request has both Content-Length and Transfer-Encoding; refusing ambiguous body framing",
            ))
        }
        (None, true) if !http11 => {
            return Err(ProxyError::bad_request("Transfer-Encoding is not allowed in an HTTP/1.0 request"))
        }
        (None, true) => BodyKind::Chunked,
        (Some(n), false) if n > limits.max_body_bytes => return Err(body_too_large(limits.max_body_bytes)),
        (Some(n), false) => BodyKind::Length(n),
        (None, false) => BodyKind::None,
    };

    Ok(Some(RequestHead {
        method,
        path: range_in(buf, path),
        query: query.map(|q| range_in(buf, q)),
        body,
        keep_alive: conn.keep_alive(http11),
        expect_continue: expect_continue && http11 && body != BodyKind::None,
        head_len,
        authorization,
        x_api_key,
        anthropic_version,
        anthropic_beta,
        http11,
    }))
}

/// The 413 for a body over the limit; shared with the chunked decoder, which
/// finds out only while reading.
pub(crate) fn body_too_large(max_body_bytes: u64) -> ProxyError {
    ProxyError::client(
        413,
        ErrorType::RequestTooLarge,
        format!("request body exceeds max_body_bytes ({max_body_bytes} bytes)"),
    )
}

fn head_too_large(limits: &Limits) -> ProxyError {
    ProxyError::client(
        431,
        ErrorType::InvalidRequest,
        format!("request head exceeds {} bytes (request line plus headers)", limits.max_head_bytes),
    )
}

fn malformed(window: &[u8], e: httparse::Error) -> ProxyError {
    let msg = match e {
        // httparse reports a folded continuation line as a bad header name;
        // name the real problem so the client author can fix it.
        httparse::Error::HeaderName if has_obs_fold(window) => {
            "malformed request head: obsolete line folding (header continuation line) is not allowed"
        }
        httparse::Error::Version => "malformed request head: unsupported HTTP version (only HTTP/1.0 and HTTP/1.1)",
        httparse::Error::HeaderName => "malformed request head: invalid header name",
        httparse::Error::HeaderValue => "malformed request head: invalid byte in a header value",
        httparse::Error::NewLine => "malformed request head: invalid line ending",
        httparse::Error::Token => "malformed request head: invalid method or request target",
        _ => "malformed request head",
    };
    ProxyError::bad_request(msg)
}

/// A header line starting with SP/HTAB after the request line.
fn has_obs_fold(window: &[u8]) -> bool {
    window.windows(2).any(|w| matches!(w, [b'\n', b' ' | b'\t']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Result<Option<RequestHead>, ProxyError> {
        parse_request_head(buf, &Limits::default())
    }

    fn ok(buf: &[u8]) -> RequestHead {
        match parse(buf) {
            Ok(Some(h)) => h,
            other => panic!("expected a head for {:?}, got {:?}", String::from_utf8_lossy(buf), other),
        }
    }

    fn err(buf: &[u8]) -> ProxyError {
        match parse(buf) {
            Err(e) => e,
            other => panic!("expected an error for {:?}, got {:?}", String::from_utf8_lossy(buf), other),
        }
    }

    #[test]
    fn claude_code_post_with_query_and_auth() {
        let buf = b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: x\r\nx-api-key: sk-1\r\n\
                    Authorization:  Bearer tok \r\nContent-Length: 2\r\n\r\n{}";
        let h = ok(buf);
        assert_eq!(h.method, Method::Post);
        assert_eq!(&buf[h.path.clone()], b"/v1/messages");
        assert_eq!(&buf[h.query.clone().unwrap()], b"beta=true");
        assert_eq!(&buf[h.x_api_key.clone().unwrap()], b"sk-1");
        assert_eq!(&buf[h.authorization.clone().unwrap()], b"Bearer tok");
        assert_eq!(h.body, BodyKind::Length(2));
        assert_eq!(h.head_len, buf.len() - 2);
        assert!(h.keep_alive && h.http11 && !h.expect_continue);
    }

    #[test]
    fn query_edge_cases() {
        let buf = b"GET /a?b?c HTTP/1.1\r\n\r\n";
        let h = ok(buf);
        assert_eq!(&buf[h.path.clone()], b"/a");
        assert_eq!(&buf[h.query.clone().unwrap()], b"b?c");
        let buf = b"GET /a? HTTP/1.1\r\n\r\n";
        let h = ok(buf);
        assert_eq!(&buf[h.path.clone()], b"/a");
        assert_eq!(h.query.clone().map(|q| q.len()), Some(0));
        let h = ok(b"HEAD / HTTP/1.1\r\n\r\n");
        assert_eq!((h.method, h.query.clone(), h.body), (Method::Head, None, BodyKind::None));
    }

    #[test]
    fn methods() {
        assert_eq!(ok(b"GET / HTTP/1.1\r\n\r\n").method, Method::Get);
        assert_eq!(ok(b"OPTIONS * HTTP/1.1\r\n\r\n").method, Method::Options);
        assert_eq!(ok(b"DELETE / HTTP/1.1\r\n\r\n").method, Method::Other);
        assert_eq!(ok(b"get / HTTP/1.1\r\n\r\n").method, Method::Other);
    }

    #[test]
    fn keep_alive_rules() {
        assert!(ok(b"GET / HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").http11);
    }

    #[test]
    fn expect_continue_flag() {
        let h = ok(b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n");
        assert!(h.expect_continue);
        // No body, nothing to wait for; HTTP/1.0 clients do not understand 100.
        assert!(!ok(b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n").expect_continue);
        assert!(!ok(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").expect_continue);
        assert!(!ok(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").expect_continue);
    }

    #[test]
    fn partial_heads_need_more() {
        let full = b"POST /v1/messages HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        for cut in 0..full.len() {
            assert!(matches!(parse(&full[..cut]), Ok(None)), "cut at {cut}");
        }
        assert_eq!(ok(full).head_len, full.len());
    }

    #[test]
    fn pipelined_requests_in_one_buffer() {
        let buf = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b?x=1 HTTP/1.1\r\n\r\n\
                    POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let a = ok(buf);
        assert_eq!(a.body, BodyKind::Length(5));
        let body_end = a.head_len + 5;
        assert_eq!(&buf[a.head_len..body_end], b"hello");
        let rest = &buf[body_end..];
        let b = ok(rest);
        assert_eq!(&rest[b.path.clone()], b"/b");
        assert_eq!(&rest[b.query.clone().unwrap()], b"x=1");
        assert_eq!(b.body, BodyKind::None);
        let rest = &rest[b.head_len..];
        let c = ok(rest);
        assert_eq!(&rest[c.path.clone()], b"/c");
        assert_eq!(c.body, BodyKind::Chunked);
        assert_eq!(&rest[c.head_len..], b"0\r\n\r\n");
    }

    #[test]
    fn smuggling_vectors_are_rejected() {
        let cases: &[(&[u8], &str)] = &[
            (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "both"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", "both"),
            (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", "more than one"),
            (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "more than one"),
            (b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", "invalid Content-Length"),
            (b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", "invalid Content-Length"),
            (b"POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n", "invalid Content-Length"),
            (b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", "invalid Content-Length"),
            (b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", "invalid Content-Length"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "Transfer-Encoding"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", "Transfer-Encoding"),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                "Transfer-Encoding",
            ),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", "Transfer-Encoding"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", "Transfer-Encoding"),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.0"),
            (b"POST / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", "obsolete line folding"),
            (b"POST / HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n", "obsolete line folding"),
            (b"POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\n", "invalid header name"),
            (b"POST / HTTP/2.0\r\n\r\n", "HTTP version"),
            (b"POST /a b HTTP/1.1\r\n\r\n", "malformed"),
            (b"\x00\x01 / HTTP/1.1\r\n\r\n", "malformed"),
        ];
        for (buf, needle) in cases {
            let e = err(buf);
            assert_eq!(e.status, 400, "{:?}: {}", String::from_utf8_lossy(buf), e);
            assert_eq!(e.kind, ErrorType::InvalidRequest);
            assert!(
                e.message.contains(needle),
                "{:?}: message {:?} lacks {needle:?}",
                String::from_utf8_lossy(buf),
                e.message
            );
        }
    }

    #[test]
    fn transfer_encoding_is_case_insensitive_and_trimmed() {
        assert_eq!(ok(b"POST / HTTP/1.1\r\nTransfer-Encoding:  Chunked \r\n\r\n").body, BodyKind::Chunked);
        assert_eq!(ok(b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n").body, BodyKind::Length(0));
    }

    #[test]
    fn body_over_limit_is_413() {
        let limits = Limits { max_body_bytes: 10, ..Limits::default() };
        let h = parse_request_head(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n", &limits).unwrap().unwrap();
        assert_eq!(h.body, BodyKind::Length(10));
        let e = parse_request_head(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", &limits).unwrap_err();
        assert_eq!((e.status, e.kind), (413, ErrorType::RequestTooLarge));
        assert_eq!(e.message, "request body exceeds max_body_bytes (10 bytes)");
        let e = err(b"POST / HTTP/1.1\r\nContent-Length: 33554433\r\n\r\n");
        assert_eq!(e.status, 413);
    }

    #[test]
    fn chunked_request_body_limit_via_head() {
        let limits = Limits { max_body_bytes: 4, ..Limits::default() };
        let buf = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let h = parse_request_head(buf, &limits).unwrap().unwrap();
        let e = h.body_decoder(&limits).decode(&buf[h.head_len..], &mut Vec::new()).unwrap_err();
        assert_eq!((e.status, e.kind), (413, ErrorType::RequestTooLarge));
        let roomy = Limits::default();
        let mut out = Vec::new();
        let (n, done) = h.body_decoder(&roomy).decode(&buf[h.head_len..], &mut out).unwrap();
        assert_eq!((n, done, out.as_slice()), (buf.len() - h.head_len, true, b"hello".as_slice()));
    }

    #[test]
    fn head_limits_are_431() {
        let limits = Limits { max_head_bytes: 64, ..Limits::default() };
        let mut exact = b"GET / HTTP/1.1\r\nX: ".to_vec();
        exact.resize(64 - 4, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(exact.len(), 64);
        assert_eq!(parse_request_head(&exact, &limits).unwrap().unwrap().head_len, 64);
        // A complete head one byte over.
        let mut over = exact.clone();
        over.insert(20, b'a');
        assert_eq!(parse_request_head(&over, &limits).unwrap_err().status, 431);
        // An incomplete head already over the limit is refused without waiting.
        let partial = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 100]].concat();
        let e = parse_request_head(&partial, &limits).unwrap_err();
        assert_eq!(e.status, 431);
        assert!(e.message.contains("64 bytes"), "{}", e.message);
        // Incomplete but under the limit: wait.
        assert!(parse_request_head(&partial[..64], &limits).unwrap().is_none());
        // The body after a head at the limit does not count.
        let mut with_body = exact.clone();
        with_body.extend_from_slice(&[b'z'; 500]);
        assert_eq!(parse_request_head(&with_body, &limits).unwrap().unwrap().head_len, 64);
        // The default is 64 KiB.
        let big = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &vec![b'a'; 70_000], b"\r\n\r\n"].concat();
        assert_eq!(err(&big).status, 431);
    }

    #[test]
    fn too_many_headers_is_431() {
        let limits = Limits { max_headers: 3, ..Limits::default() };
        let three = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert!(parse_request_head(three, &limits).unwrap().is_some());
        let four = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        let e = parse_request_head(four, &limits).unwrap_err();
        assert_eq!(e.status, 431);
        assert!(e.message.contains("more than 3 header fields"), "{}", e.message);
        // Default 100; a limit beyond the stack array uses the heap.
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..150 {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(err(&many).status, 431);
        let roomy = Limits { max_headers: 200, ..Limits::default() };
        assert!(parse_request_head(&many, &roomy).unwrap().is_some());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"GETPOST /?HTTP/1.01\r\n:;, Content-Length: Transfer-Encoding chunked\t\x00\xff0123456789";
        let limits = Limits { max_head_bytes: 200, max_headers: 8, max_body_bytes: 1000 };
        let mut buf = Vec::new();
        for i in 0..20_000 {
            buf.clear();
            let len = (next() % 300) as usize;
            for _ in 0..len {
                let r = next();
                // Half the inputs draw from HTTP-ish bytes so the parser gets past the request line.
                let b = if i % 2 == 0 { (r >> 8) as u8 } else { alphabet[(r as usize) % alphabet.len()] };
                buf.push(b);
            }
            if i % 3 == 0 {
                let prefix = b"POST /x?y HTTP/1.1\r\n";
                buf.splice(0..0, prefix.iter().copied());
            }
            if let Ok(Some(h)) = parse_request_head(&buf, &limits) {
                assert!(h.head_len <= buf.len());
                let _ = &buf[h.path.clone()];
                if let Some(q) = h.query {
                    let _ = &buf[q];
                }
            }
        }
    }
}
