//! A raw HTTP/1.1 client for exact byte assertions against the proxy.
//!
//! Receives the bytes the test wants to send (built with `request`/`post_json`
//! or written by hand for malformed and pipelined cases); emits parsed
//! responses (status, headers, decoded body, the raw bytes) and SSE events as
//! (event name, JSON data) pairs, either all at once or one at a time as they
//! arrive, so tests can prove the proxy flushes each event immediately.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use super::wire::{BodyReader, Framing, Head, Wire};

/// How long any single read from the proxy may block before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A response as the client saw it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub head: Head,
    /// The body after de-chunking.
    pub body: Vec<u8>,
    /// How the body was delimited.
    pub framing: Framing,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body text when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): status {} {:?}", self.status, self.text()))
    }

    /// The body as SSE events.
    pub fn events(&self) -> Vec<SseEvent> {
        parse_sse(&self.body)
    }

    /// Asserts the response is an Anthropic error with this status and type,
    /// and returns its message.
    pub fn assert_error(&self, status: u16, kind: &str) -> String {
        assert_eq!(self.status, status, "status; body: {}", self.text());
        let ct = self.header("content-type").unwrap_or("");
        assert!(ct.starts_with("application/json"), "error content-type {ct:?}");
        let v = self.json();
        assert_eq!(v["type"], "error", "top-level type of error body {v}");
        assert_eq!(v["error"]["type"], kind, "error type in {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_else(|| panic!("error.message missing in {v}"));
        assert!(!msg.is_empty(), "empty error message");
        msg.to_string()
    }
}

/// One SSE event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// The `event:` line, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

impl SseEvent {
    pub fn name(&self) -> &str {
        self.event.as_deref().unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {:?}", self.data))
    }
}

/// Splits an SSE body into events. Comment lines and retry/id fields are
/// ignored; an event with neither name nor data (a lone comment) is skipped.
pub fn parse_sse(body: &[u8]) -> Vec<SseEvent> {
    let text = std::str::from_utf8(body).expect("SSE body is not UTF-8");
    let mut out = Vec::new();
    let mut cur = SseEvent { event: None, data: String::new() };
    let mut has_data = false;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if cur.event.is_some() || has_data {
                out.push(std::mem::replace(&mut cur, SseEvent { event: None, data: String::new() }));
                has_data = false;
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => cur.event = Some(value.to_string()),
            "data" => {
                if has_data {
                    cur.data.push('\n');
                }
                cur.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    assert!(cur.event.is_none() && !has_data, "SSE body ends inside an event (no blank line after it): {cur:?}");
    out
}

/// (event name, data JSON) pairs, the form most assertions want.
pub fn event_pairs(events: &[SseEvent]) -> Vec<(String, Value)> {
    events.iter().map(|e| (e.name().to_string(), e.json())).collect()
}

/// A raw connection to the proxy.
pub struct Client {
    pub wire: Wire,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        // Every worker binds its own SO_REUSEPORT listener; give a worker that
        // logged its address a moment to be accepting.
        let mut tries = 0;
        let s = loop {
            match TcpStream::connect(addr) {
                Ok(s) => break s,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("connect to proxy {addr}: {e}"),
            }
        };
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        Client { wire: Wire::new(s) }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.wire.write_all(bytes).expect("write to proxy");
    }

    /// Like `send`, but returns the error: the proxy may legitimately close
    /// the connection while a large request is still being written.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.wire.write_all(bytes)
    }

    /// Reads a response head, skipping any `100 Continue`.
    pub fn read_head(&mut self) -> Head {
        loop {
            let h = self
                .wire
                .read_head()
                .unwrap_or_else(|e| panic!("reading a response head: {e}"))
                .expect("the proxy closed the connection instead of answering");
            if h.status() != 100 {
                return h;
            }
        }
    }

    /// Reads a head that may be `100 Continue` (does not skip it).
    pub fn read_any_head(&mut self) -> Head {
        self.wire
            .read_head()
            .unwrap_or_else(|e| panic!("reading a response head: {e}"))
            .expect("the proxy closed the connection instead of answering")
    }

    /// Reads one whole response.
    pub fn read_response(&mut self) -> Response {
        let head = self.read_head();
        self.read_body_of(head, false)
    }

    /// Reads the response to a HEAD request (no body whatever the headers say).
    pub fn read_head_response(&mut self) -> Response {
        let head = self.read_head();
        self.read_body_of(head, true)
    }

    fn read_body_of(&mut self, head: Head, no_body: bool) -> Response {
        let status = head.status();
        let framing = head.framing();
        let body = if no_body || status == 204 || status == 304 {
            Vec::new()
        } else {
            self.wire.read_body(framing).unwrap_or_else(|e| panic!("reading the body of a {status} response: {e}"))
        };
        Response { status, head, body, framing }
    }

    /// Starts reading a streamed response: returns its head and an event
    /// reader that yields events as soon as their bytes arrive.
    pub fn start_stream(&mut self) -> (Head, EventReader<'_>) {
        let head = self.read_head();
        let framing = head.framing();
        (head, EventReader { client: self, body: BodyReader::new(framing), pending: Vec::new(), raw: Vec::new() })
    }

    /// True when the proxy closed the connection (reads EOF) within the
    /// read timeout, with no further bytes.
    pub fn is_closed(&mut self) -> bool {
        if !self.wire.buf.is_empty() {
            return false;
        }
        matches!(self.wire.fill(), Ok(0) | Err(_)) && self.wire.buf.is_empty()
    }
}

/// Yields SSE events of a response body one at a time.
pub struct EventReader<'a> {
    client: &'a mut Client,
    body: BodyReader,
    pending: Vec<u8>,
    /// Every body byte received so far.
    pub raw: Vec<u8>,
}

impl EventReader<'_> {
    /// The next complete event, `Ok(None)` at the end of the body, `Err` when
    /// the connection fails or a read times out.
    pub fn next_event(&mut self) -> io::Result<Option<SseEvent>> {
        loop {
            if let Some(end) = event_end(&self.pending) {
                let bytes: Vec<u8> = self.pending.drain(..end).collect();
                let mut evs = parse_sse(&bytes);
                if evs.is_empty() {
                    continue;
                }
                assert_eq!(
                    evs.len(),
                    1,
                    "event splitter found several events in {:?}",
                    String::from_utf8_lossy(&bytes)
                );
                return Ok(evs.pop());
            }
            match self.body.next_piece(&mut self.client.wire)? {
                Some(p) => {
                    self.raw.extend_from_slice(&p);
                    self.pending.extend_from_slice(&p);
                }
                None => {
                    let rest = String::from_utf8_lossy(&self.pending).trim().to_string();
                    assert!(rest.is_empty(), "stream ended inside an event: {rest:?}");
                    return Ok(None);
                }
            }
        }
    }

    /// The next event; panics on end of body or timeout.
    pub fn expect_event(&mut self) -> SseEvent {
        match self.next_event() {
            Ok(Some(e)) => e,
            Ok(None) => panic!("the stream ended early; got so far: {:?}", String::from_utf8_lossy(&self.raw)),
            Err(e) => panic!("no further SSE event ({e}); got so far: {:?}", String::from_utf8_lossy(&self.raw)),
        }
    }

    /// Reads events until (and including) the first one named `name`,
    /// skipping pings. Panics if the stream ends or stalls first.
    pub fn until(&mut self, name: &str) -> Vec<SseEvent> {
        let mut out = Vec::new();
        loop {
            let e = self.expect_event();
            let done = e.name() == name;
            out.push(e);
            if done {
                return out;
            }
        }
    }

    /// Every remaining event up to the end of the body.
    pub fn rest(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        loop {
            match self.next_event() {
                Ok(Some(e)) => out.push(e),
                Ok(None) => return out,
                Err(e) => panic!("stream failed ({e}); got so far: {:?}", String::from_utf8_lossy(&self.raw)),
            }
        }
    }

    pub fn is_done(&self) -> bool {
        self.body.is_done()
    }
}

/// Length of the first complete event in `buf` (through its blank line).
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            let rest = &buf[i + 1..];
            if rest.first() == Some(&b'\n') {
                return Some(i + 2);
            }
            if rest.starts_with(b"\r\n") {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// Builds a request with Content-Length (or none when `body` is empty and
/// the method is not POST).
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Headers a real Anthropic client sends. The client key is the client's, not
/// the upstream's: it must not be forwarded either.
pub const ANTHROPIC_HEADERS: &[(&str, &str)] = &[
    ("Content-Type", "application/json"),
    ("anthropic-version", "2023-06-01"),
    ("x-api-key", "client-side-key"),
    ("anthropic-beta", "interleaved-thinking-2025-05-14"),
];

/// A POST of a JSON body with Anthropic client headers.
pub fn post_json(path: &str, body: &Value) -> Vec<u8> {
    request("POST", path, ANTHROPIC_HEADERS, &serde_json::to_vec(body).unwrap())
}

/// A POST with a raw body and Anthropic client headers.
pub fn post_raw(path: &str, body: &[u8]) -> Vec<u8> {
    request("POST", path, ANTHROPIC_HEADERS, body)
}
