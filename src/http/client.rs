//! Upstream side: our request head out, the provider's response head in.
//!
//! Receives the upstream path, host, key and body length from the upstream
//! connector and emits the request head into its write buffer; then receives
//! the bytes read back from the provider and emits a [`ResponseHead`] with the
//! status, body framing (for [`crate::http::BodyDecoder::upstream`]),
//! persistence and `retry-after`. Failures here are the provider's, so they
//! are `ProxyError::bad_gateway`.

use crate::error::ProxyError;
use crate::http::request::BodyKind;
use crate::http::{parse_decimal, push_clean, push_header, trim_ows, ConnectionTokens};

/// Largest response head accepted from upstream, interim 1xx heads included.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const MAX_RESPONSE_HEADERS: usize = 128;

/// Writes the head of our `POST` to the provider. `path` and `host` come from
/// configuration; bytes that would break the request line or a header line
/// (controls, and spaces in the path) are dropped rather than sent.
pub fn write_request_head(
    out: &mut Vec<u8>,
    path: &str,
    host: &str,
    api_key: Option<&str>,
    stream: bool,
    content_length: usize,
    extra: &[(&str, &str)],
) {
    out.extend_from_slice(b"POST ");
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        out.extend(path.bytes().filter(|&b| b > b' ' && b != 0x7f));
    } else {
        out.extend_from_slice(path.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    push_clean(out, host.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(key) = api_key {
        out.extend_from_slice(b"Authorization: Bearer ");
        push_clean(out, key.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Type: application/json\r\n");
    out.extend_from_slice(if stream { b"Accept: text/event-stream\r\n" } else { b"Accept: application/json\r\n" });
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(content_length).as_bytes());
    out.extend_from_slice(b"\r\nConnection: keep-alive\r\n");
    for (name, value) in extra {
        push_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

/// The provider's final response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// Bytes to drain before the body: the final head plus any interim 1xx
    /// heads before it.
    pub head_len: usize,
    pub body: BodyKind,
    /// Whether the connection can go back to the pool once the body is read.
    pub keep_alive: bool,
    /// `retry-after` in seconds (integer form only; an HTTP-date gives `None`).
    pub retry_after: Option<u32>,
    pub is_event_stream: bool,
}

/// Parses the response head at the start of `buf`.
///
/// `Ok(None)` means more bytes are needed. Interim 1xx responses (e.g. a
/// stray `100 Continue`) are consumed: they are skipped and counted in
/// `head_len` of the final head, so the caller drains `head_len` bytes and
/// never sees them. `101 Switching Protocols` is an error since we never ask
/// for an upgrade.
///
/// Body framing: HEAD request, 204 or 304 -> `None`; `Transfer-Encoding:
/// chunked` -> `Chunked` (when Content-Length is also present, chunked wins
/// and the connection is not reused); Content-Length -> `Length`; otherwise
/// `Close` (read to EOF, connection not reused).
pub fn parse_response_head(buf: &[u8], request_was_head: bool) -> Result<Option<ResponseHead>, ProxyError> {
    let mut offset = 0;
    loop {
        let end = buf.len().min(MAX_RESPONSE_HEAD + 1);
        let window = buf.get(offset..end).unwrap_or_default();
        let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(window) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => return Err(head_too_large()),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ProxyError::bad_gateway(format!(
                    "upstream response has more than {MAX_RESPONSE_HEADERS} header fields"
                )))
            }
            Err(e) => {
                return Err(ProxyError::bad_gateway(format!("upstream sent a malformed HTTP response head: {e}")))
            }
        };
        let head_len = offset + n;
        if head_len > MAX_RESPONSE_HEAD {
            return Err(head_too_large());
        }
        let status = resp.code.unwrap_or(0);
        match status {
            101 => {
                return Err(ProxyError::bad_gateway(
                    "upstream answered 101 Switching Protocols, which was not requested",
                ))
            }
            100..=199 => {
                offset = head_len;
                continue;
            }
            200..=999 => {}
            _ => return Err(ProxyError::bad_gateway(format!("upstream sent invalid HTTP status {status}"))),
        }
        return final_head(&resp, status, head_len, request_was_head).map(Some);
    }
}

fn final_head(
    resp: &httparse::Response<'_, '_>,
    status: u16,
    head_len: usize,
    request_was_head: bool,
) -> Result<ResponseHead, ProxyError> {
    let http11 = resp.version == Some(1);
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut conn = ConnectionTokens::default();
    let mut retry_after = None;
    let mut is_event_stream = false;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        let value = trim_ows(h.value);
        if name.eq_ignore_ascii_case(b"content-length") {
            // Identical repeats ("5, 5" or two equal headers) are tolerated from
            // upstream as RFC 9112 §6.3 allows; differing ones are not.
            for part in value.split(|&b| b == b',') {
                let n = parse_decimal(trim_ows(part)).ok_or_else(|| {
                    ProxyError::bad_gateway(format!(
                        "upstream sent invalid Content-Length {:?}",
                        String::from_utf8_lossy(value)
                    ))
                })?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(ProxyError::bad_gateway("upstream sent conflicting Content-Length headers"));
                }
                content_length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if transfer_encoding || !value.eq_ignore_ascii_case(b"chunked") {
                return Err(ProxyError::bad_gateway(format!(
                    "upstream sent unsupported Transfer-Encoding {:?} (only chunked is supported)",
                    String::from_utf8_lossy(value)
                )));
            }
            transfer_encoding = true;
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            conn.add(value);
        } else if name.eq_ignore_ascii_case(b"retry-after") {
            retry_after = parse_decimal(value).and_then(|s| u32::try_from(s).ok());
        } else if name.eq_ignore_ascii_case(b"content-type") {
            let media = value.split(|&b| b == b';').next().unwrap_or_default();
            is_event_stream = trim_ows(media).eq_ignore_ascii_case(b"text/event-stream");
        }
    }

    let mut keep_alive = conn.keep_alive(http11);
    let body = if request_was_head || status == 204 || status == 304 {
        BodyKind::None
    } else if chunked {
        // Both headers at once is how smuggling starts; use the safe reading
        // and never reuse this connection.
        if content_length.is_some() {
            keep_alive = false;
        }
        BodyKind::Chunked
    } else if let Some(n) = content_length {
        BodyKind::Length(n)
    } else {
        keep_alive = false;
        BodyKind::Close
    };
    Ok(ResponseHead { status, head_len, body, keep_alive, retry_after, is_event_stream })
}

fn head_too_large() -> ProxyError {
    ProxyError::bad_gateway(format!("upstream response head exceeds {MAX_RESPONSE_HEAD} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Side;

    fn ok(buf: &[u8]) -> ResponseHead {
        match parse_response_head(buf, false) {
            Ok(Some(h)) => h,
            other => panic!("expected a head for {:?}, got {:?}", String::from_utf8_lossy(buf), other),
        }
    }

    fn err(buf: &[u8]) -> ProxyError {
        match parse_response_head(buf, false) {
            Err(e) => e,
            other => panic!("expected an error for {:?}, got {:?}", String::from_utf8_lossy(buf), other),
        }
    }

    #[test]
    fn request_head_layout() {
        let mut out = Vec::new();
        write_request_head(
            &mut out,
            "/v1/chat/completions",
            "127.0.0.1:11434",
            Some("sk-x"),
            true,
            42,
            &[("User-Agent", "ccproxy")],
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:11434\r\nAuthorization: Bearer sk-x\r\n\
             Content-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: 42\r\n\
             Connection: keep-alive\r\nUser-Agent: ccproxy\r\n\r\n"
        );
        // It is a valid request by our own server-side parser.
        let h = crate::http::parse_request_head(&out, &Default::default()).unwrap().unwrap();
        assert_eq!(h.body, BodyKind::Length(42));
        assert_eq!(&out[h.authorization.unwrap()], b"Bearer sk-x");
        out.clear();
        write_request_head(&mut out, "/a b\r\n", "h\r\nX: y", None, false, 0, &[]);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("POST /ab HTTP/1.1\r\nHost: hX: y\r\nContent-Type"), "{text}");
        assert!(text.contains("Accept: application/json\r\n") && !text.contains("Authorization"));
    }

    #[test]
    fn framing_kinds() {
        let h = ok(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!((h.body, h.keep_alive, h.is_event_stream), (BodyKind::Chunked, true, true));
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: application/json\r\n\r\n{\"a\":1}";
        let h = ok(buf);
        assert_eq!((h.body, h.keep_alive, h.is_event_stream), (BodyKind::Length(12), true, false));
        assert_eq!(&buf[h.head_len..], b"{\"a\":1}");
        let h = ok(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: x\n\n");
        assert_eq!((h.body, h.keep_alive), (BodyKind::Close, false));
        let h = ok(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n");
        assert_eq!((h.status, h.body, h.keep_alive), (204, BodyKind::None, true));
        assert_eq!(ok(b"HTTP/1.1 304 Not Modified\r\n\r\n").body, BodyKind::None);
        let h = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true).unwrap().unwrap();
        assert_eq!(h.body, BodyKind::None);
        // Both headers: chunked wins, the connection is not reused.
        let h = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!((h.body, h.keep_alive), (BodyKind::Chunked, false));
        assert_eq!(
            ok(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n").body,
            BodyKind::Length(5)
        );
    }

    #[test]
    fn persistence() {
        assert!(!ok(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(!ok(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(ok(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").keep_alive);
    }

    #[test]
    fn retry_after_and_error_status() {
        let h = ok(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 17\r\nContent-Length: 2\r\n\r\n{}");
        assert_eq!((h.status, h.retry_after), (429, Some(17)));
        let h = ok(b"HTTP/1.1 503 x\r\nretry-after: Wed, 21 Oct 2015 07:28:00 GMT\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.retry_after, None);
        assert_eq!(ok(b"HTTP/1.1 503 x\r\nRetry-After: 99999999999\r\n\r\n").retry_after, None);
        assert_eq!(ok(b"HTTP/1.1 500 \r\n\r\n").status, 500);
    }

    #[test]
    fn interim_responses_are_consumed() {
        let buf = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n\
                    HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let h = ok(buf);
        assert_eq!((h.status, h.body), (200, BodyKind::Length(2)));
        assert_eq!(&buf[h.head_len..], b"ok");
        // Only the interim head so far: need more.
        assert_eq!(parse_response_head(b"HTTP/1.1 100 Continue\r\n\r\n", false).unwrap(), None);
        assert_eq!(parse_response_head(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2", false).unwrap(), None);
        assert!(err(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").message.contains("101"));
    }

    #[test]
    fn partial_heads_at_every_offset() {
        let buf = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        for cut in 0..buf.len() {
            assert_eq!(parse_response_head(&buf[..cut], false).unwrap(), None, "cut {cut}");
        }
        assert_eq!(ok(buf).head_len, buf.len());
    }

    #[test]
    fn bad_heads_are_bad_gateway() {
        let cases: &[(&[u8], &str)] = &[
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "Transfer-Encoding"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                "Transfer-Encoding",
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "conflicting"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length"),
            (b"HTTP/1.1 099 Odd\r\n\r\n", "invalid HTTP status"),
            (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "malformed"),
            (b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n", "malformed"),
        ];
        for (buf, needle) in cases {
            let e = err(buf);
            assert_eq!((e.status, e.side), (502, Side::Upstream), "{}", String::from_utf8_lossy(buf));
            assert!(e.message.contains(needle), "{:?}: {}", String::from_utf8_lossy(buf), e.message);
        }
        let huge = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &vec![b'a'; MAX_RESPONSE_HEAD]].concat();
        assert!(err(&huge).message.contains("exceeds"));
        let huge = [huge.as_slice(), b"\r\n\r\n"].concat();
        assert!(err(&huge).message.contains("exceeds"));
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..200 {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        assert!(err(&many).message.contains("header fields"));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state: u64 = 0xDEAD_BEEF_CAFE_F00D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"HTTP/1.1 100 200 204 Continue\r\n:Content-Length: Transfer-Encoding chunked 5";
        let mut buf = Vec::new();
        for i in 0..20_000 {
            buf.clear();
            let len = (next() % 250) as usize;
            for _ in 0..len {
                let r = next();
                buf.push(if i % 2 == 0 { (r >> 24) as u8 } else { alphabet[(r as usize) % alphabet.len()] });
            }
            if let Ok(Some(h)) = parse_response_head(&buf, i % 5 == 0) {
                assert!(h.head_len <= buf.len());
            }
        }
    }
}
