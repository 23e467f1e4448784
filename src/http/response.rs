//! Server side: serializes responses to our clients.
//!
//! Receives a status, content type, framing choice and extra headers from the
//! request lifecycle, and emits HTTP/1.1 response heads, whole responses and
//! chunked-encoding frames appended to the caller's write buffer. The socket
//! loop writes that buffer; nothing here does I/O.

use crate::http::push_header;

/// The terminating zero-size chunk with an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
/// Interim answer to `Expect: 100-continue`, sent before reading the body.
pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// Room to reserve in front of a payload for [`frame_chunk_in_place`]:
/// 16 hex digits (a 64-bit size) plus CRLF.
pub const CHUNK_PREFIX_RESERVE: usize = 18;

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        // Anthropic's overloaded status; not registered, but clients log the phrase.
        529 => "Overloaded",
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

/// How the response body is delimited.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Framing {
    /// `Content-Length: n` (also right for HEAD answers, with the GET length).
    Length(usize),
    /// `Transfer-Encoding: chunked`; end the body with [`LAST_CHUNK`].
    Chunked,
    /// No length header; the body ends when we close. Forces `Connection: close`.
    Close,
}

/// Writes the status line and headers through the blank line: Content-Type
/// (skipped when empty), `Content-Length: n` or, when `content_length` is
/// `None`, `Transfer-Encoding: chunked`, then Connection and `extra`.
/// `text/event-stream` also gets `Cache-Control: no-cache`.
pub fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    content_length: Option<usize>,
    keep_alive: bool,
    extra: &[(&str, &str)],
) {
    let framing = content_length.map_or(Framing::Chunked, Framing::Length);
    write_head_framed(out, status, content_type, framing, keep_alive, extra);
}

/// [`write_head`] with every framing choice, including close-delimited.
pub fn write_head_framed(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    framing: Framing,
    keep_alive: bool,
    extra: &[(&str, &str)],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    if !content_type.is_empty() {
        push_header(out, "Content-Type", content_type);
        if is_event_stream(content_type) {
            // Stops intermediaries from caching or buffering the stream.
            out.extend_from_slice(b"Cache-Control: no-cache\r\n");
        }
    }
    let keep_alive = match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
            keep_alive
        }
        Framing::Chunked => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            keep_alive
        }
        Framing::Close => false,
    };
    out.extend_from_slice(if keep_alive { b"Connection: keep-alive\r\n" } else { b"Connection: close\r\n" });
    for (name, value) in extra {
        push_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

fn is_event_stream(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("text/event-stream")
}

/// Head plus `body`, framed with Content-Length.
pub fn write_full(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    extra: &[(&str, &str)],
) {
    write_head(out, status, content_type, Some(body.len()), keep_alive, extra);
    out.extend_from_slice(body);
}

/// Appends `data` as one chunk. Empty data writes nothing, because an empty
/// chunk would end the body; finish with [`LAST_CHUNK`] instead.
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    write_chunk_size(out, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends just the size line `"{len:x}\r\n"`; the caller then writes `len`
/// payload bytes and `"\r\n"` (e.g. with vectored I/O over its own buffer).
pub fn write_chunk_size(out: &mut Vec<u8>, len: usize) {
    let mut tmp = [0u8; CHUNK_PREFIX_RESERVE];
    let line = size_line(len, &mut tmp);
    out.extend_from_slice(line);
}

/// Frames a chunk that was built in place. `buf` holds
/// [`CHUNK_PREFIX_RESERVE`] reserved bytes followed by the payload; the size
/// line is written right-aligned into the reserve and CRLF appended. Returns
/// the offset from which `buf` is to be written. An empty payload (or a
/// buffer shorter than the reserve) frames nothing and returns `buf.len()`.
pub fn frame_chunk_in_place(buf: &mut Vec<u8>) -> usize {
    let len = buf.len().saturating_sub(CHUNK_PREFIX_RESERVE);
    if len == 0 {
        return buf.len();
    }
    let mut tmp = [0u8; CHUNK_PREFIX_RESERVE];
    let line = size_line(len, &mut tmp);
    let start = CHUNK_PREFIX_RESERVE - line.len();
    if let Some(dst) = buf.get_mut(start..CHUNK_PREFIX_RESERVE) {
        dst.copy_from_slice(line);
    }
    buf.extend_from_slice(b"\r\n");
    start
}

/// Formats `"{len:x}\r\n"` into `tmp` without allocating; returns the used tail.
fn size_line(len: usize, tmp: &mut [u8; CHUNK_PREFIX_RESERVE]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut i = CHUNK_PREFIX_RESERVE - 2;
    tmp[i] = b'\r';
    tmp[i + 1] = b'\n';
    let mut n = len as u64;
    loop {
        i -= 1;
        tmp[i] = HEX[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &tmp[i..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body::BodyDecoder;
    use crate::http::request::BodyKind;

    fn s(v: &[u8]) -> &str {
        std::str::from_utf8(v).unwrap()
    }

    #[test]
    fn json_response_with_length() {
        let mut out = Vec::new();
        write_full(&mut out, 200, "application/json", br#"{"status":"ok"}"#, true, &[("request-id", "req_1")]);
        assert_eq!(
            s(&out),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\
             Connection: keep-alive\r\nrequest-id: req_1\r\n\r\n{\"status\":\"ok\"}"
        );
        // The head must be parseable by a real parser and agree on the length.
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(&out).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial"),
        };
        assert_eq!(out.len() - n, 15);
        assert_eq!(resp.code, Some(200));
    }

    #[test]
    fn event_stream_head_is_chunked_and_uncached() {
        let mut out = Vec::new();
        write_head(&mut out, 200, "text/event-stream; charset=utf-8", None, false, &[]);
        assert_eq!(
            s(&out),
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        out.clear();
        write_head_framed(&mut out, 200, "text/event-stream", Framing::Close, true, &[]);
        let text = s(&out);
        assert!(text.ends_with("Cache-Control: no-cache\r\nConnection: close\r\n\r\n"), "{text}");
        assert!(!text.contains("Content-Length") && !text.contains("Transfer-Encoding"));
    }

    #[test]
    fn error_statuses_and_reasons() {
        let mut out = Vec::new();
        write_full(&mut out, 431, "application/json", b"{}", false, &[]);
        assert!(s(&out).starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert_eq!(reason_phrase(413), "Content Too Large");
        assert_eq!(reason_phrase(529), "Overloaded");
        assert_eq!(reason_phrase(599), "Server Error");
        assert_eq!(reason_phrase(418), "Client Error");
        assert_eq!(reason_phrase(0), "Server Error");
        out.clear();
        write_head(&mut out, 200, "", Some(0), true, &[("X-Bad", "a\r\n\r\nInjected")]);
        assert_eq!(
            s(&out),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\nX-Bad: aInjected\r\n\r\n"
        );
    }

    #[test]
    fn chunks_round_trip_through_the_decoder() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"event: ping\n\n");
        write_chunk(&mut out, b"");
        write_chunk(&mut out, &[b'x'; 300]);
        out.extend_from_slice(LAST_CHUNK);
        assert!(out.starts_with(b"d\r\nevent: ping\n\n\r\n12c\r\n"));
        let mut d = BodyDecoder::new(BodyKind::Chunked);
        let mut payload = Vec::new();
        assert_eq!(d.decode(&out, &mut payload).unwrap(), (out.len(), true));
        assert_eq!(payload, [b"event: ping\n\n".as_slice(), &[b'x'; 300]].concat());
    }

    #[test]
    fn size_lines() {
        for (len, want) in [(1usize, "1\r\n"), (15, "f\r\n"), (16, "10\r\n"), (0xabcdef, "abcdef\r\n")] {
            let mut out = Vec::new();
            write_chunk_size(&mut out, len);
            assert_eq!(s(&out), want);
        }
        let mut out = Vec::new();
        write_chunk_size(&mut out, usize::MAX);
        assert_eq!(out.len(), if usize::BITS == 64 { 18 } else { 10 });
    }

    #[test]
    fn in_place_framing() {
        let mut buf = vec![0u8; CHUNK_PREFIX_RESERVE];
        buf.extend_from_slice(b"data: {}\n\n");
        let start = frame_chunk_in_place(&mut buf);
        assert_eq!(&buf[start..], b"a\r\ndata: {}\n\n\r\n");
        let mut empty = vec![0u8; CHUNK_PREFIX_RESERVE];
        let start = frame_chunk_in_place(&mut empty);
        assert!(empty[start..].is_empty());
        let mut short = vec![1u8, 2];
        assert_eq!(frame_chunk_in_place(&mut short), 2);
        assert_eq!(short, [1, 2]);
    }
}
