//! HTTP/1.1 framing shared by the mock upstream (reading requests) and the raw
//! test client (reading responses).
//!
//! Receives bytes from a `TcpStream`; emits parsed heads, whole bodies, or body
//! pieces one read at a time so a test can observe exactly when bytes arrive.
//! Kept deliberately small and strict: anything malformed is an error, because
//! a proxy that emits malformed HTTP must fail the test.

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// A parsed request or response head.
#[derive(Debug, Clone)]
pub struct Head {
    /// `GET /x HTTP/1.1` or `HTTP/1.1 200 OK`.
    pub start_line: String,
    pub headers: Vec<(String, String)>,
    /// The exact bytes of the head, including the final blank line.
    pub raw: Vec<u8>,
}

impl Head {
    /// First value of a header, case-insensitive name match.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Every value of a header (e.g. repeated `Transfer-Encoding`).
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// Status code of a response head.
    pub fn status(&self) -> u16 {
        let mut it = self.start_line.split(' ');
        let version = it.next().unwrap_or("");
        assert!(version.starts_with("HTTP/1."), "bad status line {:?}", self.start_line);
        it.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line {:?}", self.start_line))
    }

    /// (method, target) of a request head.
    pub fn method_target(&self) -> (String, String) {
        let mut it = self.start_line.split(' ');
        let m = it.next().unwrap_or("").to_string();
        let t = it.next().unwrap_or("").to_string();
        (m, t)
    }

    /// How the body that follows this head is delimited.
    pub fn framing(&self) -> Framing {
        let te = self.headers_named("transfer-encoding");
        if te.iter().any(|v| v.to_ascii_lowercase().contains("chunked")) {
            return Framing::Chunked;
        }
        if let Some(cl) = self.header("content-length") {
            let n: usize = cl.trim().parse().unwrap_or_else(|_| panic!("bad content-length {cl:?}"));
            return Framing::Length(n);
        }
        Framing::Close
    }
}

pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// How a message body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
    /// Ends when the peer closes the connection (responses only).
    Close,
}

/// A buffered connection: bytes read but not yet consumed stay in `buf`, so
/// pipelined messages are never lost.
pub struct Wire {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    /// Set once a read returned 0.
    pub eof: bool,
}

impl Wire {
    pub fn new(stream: TcpStream) -> Wire {
        Wire { stream, buf: Vec::new(), eof: false }
    }

    /// Reads once more into `buf`; returns how many bytes arrived.
    pub fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 16384];
        // Sockets with a receive timeout fail with EINTR after the process
        // is stopped and continued, even without a signal handler.
        let n = loop {
            match self.stream.read(&mut tmp) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if n == 0 {
            self.eof = true;
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads a head. `Ok(None)` means the peer closed cleanly before sending
    /// any byte of a new message.
    pub fn read_head(&mut self) -> io::Result<Option<Head>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 4).collect();
                return parse_head(raw).map(Some);
            }
            if self.fill()? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed inside a head: {:?}", String::from_utf8_lossy(&self.buf)),
                ));
            }
        }
    }

    /// Reads a whole body with the given framing.
    pub fn read_body(&mut self, framing: Framing) -> io::Result<Vec<u8>> {
        let mut reader = BodyReader::new(framing);
        let mut out = Vec::new();
        while let Some(piece) = reader.next_piece(self)? {
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }

    fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside a body"));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn take_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let mut line: Vec<u8> = self.buf.drain(..end + 2).collect();
                line.truncate(end);
                return Ok(line);
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside chunk framing"));
            }
        }
    }
}

/// Decodes one body incrementally: each call returns what the latest read
/// made available, so a caller sees bytes as soon as the peer flushed them.
pub struct BodyReader {
    framing: Framing,
    /// Bytes left in the current chunk (chunked) or in the body (length).
    left: usize,
    done: bool,
    started: bool,
}

impl BodyReader {
    pub fn new(framing: Framing) -> BodyReader {
        let left = if let Framing::Length(n) = framing { n } else { 0 };
        BodyReader { framing, left, done: false, started: false }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next piece of body, or `None` at its end.
    pub fn next_piece(&mut self, w: &mut Wire) -> io::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        match self.framing {
            Framing::Length(_) => {
                if self.left == 0 {
                    self.done = true;
                    return Ok(None);
                }
                if w.buf.is_empty() && w.fill()? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("connection closed with {} body bytes missing", self.left),
                    ));
                }
                let n = self.left.min(w.buf.len());
                self.left -= n;
                Ok(Some(w.buf.drain(..n).collect()))
            }
            Framing::Close => {
                if w.buf.is_empty() && w.fill()? == 0 {
                    self.done = true;
                    return Ok(None);
                }
                Ok(Some(std::mem::take(&mut w.buf)))
            }
            Framing::Chunked => loop {
                if self.left == 0 {
                    if self.started {
                        let crlf = w.take(2)?;
                        if crlf != b"\r\n" {
                            return Err(bad(format!(
                                "chunk not followed by CRLF: {:?}",
                                String::from_utf8_lossy(&crlf)
                            )));
                        }
                    }
                    let line = w.take_line()?;
                    let text = String::from_utf8_lossy(&line);
                    let size_text = text.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size_text, 16)
                        .map_err(|_| bad(format!("bad chunk size line {text:?}")))?;
                    if size == 0 {
                        // Trailers (none expected) end with an empty line.
                        loop {
                            if w.take_line()?.is_empty() {
                                break;
                            }
                        }
                        self.done = true;
                        return Ok(None);
                    }
                    self.started = true;
                    self.left = size;
                }
                if w.buf.is_empty() && w.fill()? == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside a chunk"));
                }
                let n = self.left.min(w.buf.len());
                if n == 0 {
                    continue;
                }
                self.left -= n;
                return Ok(Some(w.buf.drain(..n).collect()));
            },
        }
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(raw: Vec<u8>) -> io::Result<Head> {
    let text = std::str::from_utf8(&raw).map_err(|_| bad("head is not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let start_line = lines.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once(':').ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        if k.is_empty() || k.contains(' ') {
            return Err(bad(format!("bad header name in {line:?}")));
        }
        headers.push((k.to_string(), v.trim().to_string()));
    }
    Ok(Head { start_line, headers, raw })
}

/// Encodes `body` as one chunk plus the terminator.
pub fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if !body.is_empty() {
        out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Encodes one chunk (no terminator).
pub fn chunk(body: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n");
    out
}
