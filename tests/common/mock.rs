//! A scripted mock OpenAI upstream.
//!
//! Receives the HTTP/1.1 requests ccproxy sends upstream (keep-alive, one
//! thread per connection); records each one (method, path, headers, body as
//! JSON), validates chat completion requests strictly (see `validate`), and
//! emits the next scripted `Reply`: a JSON answer, or a stream written piece by
//! piece with flushes, with any framing, optionally truncated or reset.
//! Violations are answered with an OpenAI 400 and also recorded; dropping a
//! mock that saw violations panics, so a test can never pass over them.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::vendor::{check_anthropic, validate_for, Profile};
use super::wire::{chunk, Framing as WireFraming, Wire};

/// The upstream key the tests configure; it must never reach a client or a log.
pub const TEST_KEY: &str = "sk-ccproxy-TEST-7f3a9c21d5e84b60";

/// How long a scripted `Wait` blocks before giving up (a test bug or a proxy
/// that never delivered what the test waits for).
const GATE_TIMEOUT: Duration = Duration::from_secs(15);

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Request target, including any query string.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub raw_body: Vec<u8>,
    /// The body parsed as JSON; `Value::Null` when empty or unparseable.
    pub body: Value,
    pub violations: Vec<String>,
    /// Index of the TCP connection it arrived on (0-based, in accept order).
    pub conn: usize,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        super::wire::find_header(&self.headers, name)
    }
}

/// How a scripted response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    ContentLength,
    Chunked,
    /// No length, no chunking: the body ends when the mock closes.
    Close,
}

/// How a scripted response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Complete,
    /// Close (FIN) without finishing the framing: no final chunk, fewer bytes
    /// than Content-Length. With `Framing::Close` it is a plain close.
    Truncate,
    /// Abort the connection with a TCP RST after the scripted parts.
    Reset,
}

/// One step of a scripted body.
pub enum Part {
    /// Written and flushed as one chunk (one `write` call).
    Bytes(Vec<u8>),
    Sleep(Duration),
    /// Tells the test that everything before this point has been flushed.
    Signal(Sender<()>),
    /// Blocks until the test says go (or `GATE_TIMEOUT`).
    Wait(Receiver<()>),
}

impl Part {
    pub fn bytes(b: impl AsRef<[u8]>) -> Part {
        Part::Bytes(b.as_ref().to_vec())
    }
}

/// A scripted answer.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub parts: Vec<Part>,
    pub framing: Framing,
    pub end: End,
    /// Close the connection before reading the request body / sending anything.
    pub drop_without_answer: bool,
}

impl Reply {
    pub fn raw(status: u16, content_type: &str, body: impl AsRef<[u8]>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            parts: vec![Part::bytes(body)],
            framing: Framing::ContentLength,
            end: End::Complete,
            drop_without_answer: false,
        }
    }

    pub fn json(status: u16, body: &Value) -> Reply {
        Reply::raw(status, "application/json", serde_json::to_vec(body).unwrap())
    }

    /// An OpenAI-shaped error.
    pub fn openai_error(status: u16, kind: &str, message: &str) -> Reply {
        Reply::json(status, &json!({"error": {"message": message, "type": kind, "param": null, "code": null}}))
    }

    /// A complete non-streaming chat completion.
    pub fn completion(message: Value, finish_reason: &str, usage: Value) -> Reply {
        Reply::json(
            200,
            &json!({
                "id": "chatcmpl-mock1",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": "mock-model",
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": null}],
                "usage": usage,
            }),
        )
    }

    /// A plain text completion with a simple usage block.
    pub fn text(text: &str) -> Reply {
        Reply::completion(
            json!({"role": "assistant", "content": text}),
            "stop",
            json!({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}),
        )
    }

    /// A `text/event-stream` answer, chunked by default.
    pub fn sse(parts: Vec<Part>) -> Reply {
        Reply {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "text/event-stream".into()),
                ("Cache-Control".into(), "no-cache".into()),
            ],
            parts,
            framing: Framing::Chunked,
            end: End::Complete,
            drop_without_answer: false,
        }
    }

    /// Accept the request, then close the connection without any answer.
    pub fn hang_up() -> Reply {
        let mut r = Reply::raw(200, "text/plain", b"");
        r.drop_without_answer = true;
        r
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn framing(mut self, f: Framing) -> Reply {
        self.framing = f;
        self
    }

    pub fn end(mut self, e: End) -> Reply {
        self.end = e;
        self
    }
}

type Handler = Box<dyn FnMut(&Recorded) -> Reply + Send>;

struct State {
    requests: Vec<Recorded>,
    queue: VecDeque<Reply>,
    handler: Option<Handler>,
    violations: Vec<String>,
    connections: usize,
    /// Streams during which the proxy closed the connection on us.
    aborted_streams: usize,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
    expected_key: Option<String>,
    profile: Profile,
    stop: AtomicBool,
}

/// The mock server. Lives as long as this value.
pub struct Mock {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Mock {
    /// A mock that requires `Authorization: Bearer TEST_KEY`.
    pub fn start() -> Mock {
        Mock::start_with_key(Some(TEST_KEY))
    }

    /// `None`: any (or no) Authorization header is accepted.
    pub fn start_with_key(key: Option<&str>) -> Mock {
        Mock::start_profile(key, Profile::Strict)
    }

    /// A mock playing one vendor's dialect (see `vendor::Profile`); `key`
    /// is checked as that dialect sends it (bearer, or `x-api-key`).
    pub fn start_profile(key: Option<&str>, profile: Profile) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").expect("mock bind");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                requests: Vec::new(),
                queue: VecDeque::new(),
                handler: None,
                violations: Vec::new(),
                connections: 0,
                aborted_streams: 0,
            }),
            cond: Condvar::new(),
            expected_key: key.map(str::to_string),
            profile,
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let idx = {
                    let mut st = s.state.lock().unwrap();
                    st.connections += 1;
                    st.connections - 1
                };
                let s2 = s.clone();
                thread::spawn(move || serve_connection(s2, conn, idx));
            }
        });
        Mock { addr, shared }
    }

    /// The base URL to pass as `--upstream`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues the answer to the next request.
    pub fn push(&self, r: Reply) {
        self.shared.state.lock().unwrap().queue.push_back(r);
    }

    /// Answers every request the queue does not cover.
    pub fn set_handler(&self, f: impl FnMut(&Recorded) -> Reply + Send + 'static) {
        self.shared.state.lock().unwrap().handler = Some(Box::new(f));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.state.lock().unwrap().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.state.lock().unwrap().requests.len()
    }

    pub fn connections(&self) -> usize {
        self.shared.state.lock().unwrap().connections
    }

    /// The only request received so far; panics unless there is exactly one.
    pub fn only_request(&self) -> Recorded {
        let r = self.requests();
        assert_eq!(r.len(), 1, "expected exactly one upstream request, got {}: {:#?}", r.len(), r);
        r.into_iter().next().unwrap()
    }

    /// The body of the last request.
    pub fn last_body(&self) -> Value {
        self.requests().last().expect("the mock received no request").body.clone()
    }

    /// Waits until at least `n` requests arrived.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock().unwrap();
        while st.requests.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "waited for {n} upstream requests, got {}", st.requests.len());
            st = self.shared.cond.wait_timeout(st, left).unwrap().0;
        }
        st.requests.clone()
    }

    /// Waits until the proxy has closed a stream connection on us.
    pub fn wait_aborted_stream(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock().unwrap();
        while st.aborted_streams == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self.shared.cond.wait_timeout(st, left).unwrap().0;
        }
        true
    }

    pub fn violations(&self) -> Vec<String> {
        self.shared.state.lock().unwrap().violations.clone()
    }

    /// Returns and forgets the recorded violations (for tests of the mock).
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut self.shared.state.lock().unwrap().violations)
    }

    pub fn assert_clean(&self) {
        let v = self.violations();
        assert!(v.is_empty(), "the mock upstream saw invalid OpenAI requests:\n  {}", v.join("\n  "));
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so its thread ends.
        let _ = TcpStream::connect(self.addr);
        if !thread::panicking() {
            let st = self.shared.state.lock().unwrap();
            let unused = st.queue.len();
            let v = st.violations.clone();
            drop(st);
            assert!(v.is_empty(), "the mock upstream saw invalid OpenAI requests:\n  {}", v.join("\n  "));
            assert_eq!(unused, 0, "{unused} scripted upstream replies were never requested");
        }
    }
}

fn serve_connection(shared: Arc<Shared>, stream: TcpStream, conn: usize) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut wire = Wire::new(stream);
    loop {
        let head = match wire.read_head() {
            Ok(Some(h)) => h,
            Ok(None) | Err(_) => return,
        };
        let (method, path) = head.method_target();
        let mut violations = Vec::new();
        if head.header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
            let _ = wire.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let framing = match head.framing() {
            WireFraming::Close => WireFraming::Length(0),
            f => f,
        };
        let raw_body = match wire.read_body(framing) {
            Ok(b) => b,
            Err(e) => {
                record_violation(&shared, format!("mock could not read the request body: {e}"));
                return;
            }
        };
        let body: Value = serde_json::from_slice(&raw_body).unwrap_or(Value::Null);
        if shared.profile == Profile::Anthropic {
            violations.extend(check_anthropic(&method, &path, &head.headers, &body, shared.expected_key.as_deref()));
        } else if method == "POST" && path.split('?').next() == Some("/v1/chat/completions") {
            check_headers(&head.headers, shared.expected_key.as_deref(), &mut violations);
            if body.is_null() {
                violations.push(format!(
                    "request body is not JSON: {:?}",
                    String::from_utf8_lossy(&raw_body[..raw_body.len().min(200)])
                ));
            } else {
                violations.extend(validate_for(&body, shared.profile));
            }
        } else {
            violations.push(format!("unexpected upstream request {method} {path}"));
        }
        let rec = Recorded { method, path, headers: head.headers.clone(), raw_body, body, violations, conn };
        let reply = {
            let mut st = shared.state.lock().unwrap();
            st.requests.push(rec.clone());
            let n = st.requests.len();
            for v in &rec.violations {
                st.violations.push(format!("request #{n}: {v}"));
            }
            let reply = if !rec.violations.is_empty() {
                None
            } else if let Some(r) = st.queue.pop_front() {
                Some(r)
            } else {
                st.handler.as_mut().map(|h| h(&rec))
            };
            if reply.is_none() && rec.violations.is_empty() {
                st.violations.push(format!("request #{n}: no scripted reply for {} {}", rec.method, rec.path));
            }
            shared.cond.notify_all();
            reply
        };
        let reply = match reply {
            Some(r) => r,
            None if !rec.violations.is_empty() => {
                Reply::openai_error(400, "invalid_request_error", &rec.violations.join("; "))
            }
            None => Reply::openai_error(500, "server_error", "mock: no scripted reply"),
        };
        match write_reply(&mut wire, reply) {
            Ok(true) => {}
            Ok(false) => return,
            Err(_) => {
                let mut st = shared.state.lock().unwrap();
                st.aborted_streams += 1;
                shared.cond.notify_all();
                return;
            }
        }
    }
}

fn record_violation(shared: &Shared, v: String) {
    let mut st = shared.state.lock().unwrap();
    st.violations.push(v);
    shared.cond.notify_all();
}

fn check_headers(headers: &[(String, String)], key: Option<&str>, v: &mut Vec<String>) {
    let find = |n: &str| super::wire::find_header(headers, n);
    if let Some(key) = key {
        let want = format!("Bearer {key}");
        match find("authorization") {
            Some(a) if a == want => {}
            other => v.push(format!("Authorization header is {other:?}, expected \"Bearer <test key>\"")),
        }
    }
    match find("content-type") {
        Some(ct) if ct.to_ascii_lowercase().starts_with("application/json") => {}
        other => v.push(format!("Content-Type is {other:?}, expected application/json")),
    }
    if find("host").is_none() {
        v.push("missing Host header".into());
    }
    for anthropic_only in ["x-api-key", "anthropic-version", "anthropic-beta"] {
        if find(anthropic_only).is_some() {
            v.push(format!("the client's {anthropic_only} header was forwarded upstream"));
        }
    }
}

/// Writes a scripted reply. `Ok(true)`: the connection can serve another
/// request; `Ok(false)`: it was closed on purpose; `Err`: the peer went away.
fn write_reply(wire: &mut Wire, reply: Reply) -> std::io::Result<bool> {
    if reply.drop_without_answer {
        return Ok(false);
    }
    let total: usize = reply.parts.iter().map(|p| if let Part::Bytes(b) = p { b.len() } else { 0 }).sum();
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match reply.framing {
        Framing::ContentLength => {
            let declared = if reply.end == End::Complete { total } else { total + 64 };
            head.push_str(&format!("Content-Length: {declared}\r\n"));
        }
        Framing::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
        Framing::Close => head.push_str("Connection: close\r\n"),
    }
    head.push_str("\r\n");
    let s = &mut wire.stream;
    s.write_all(head.as_bytes())?;
    s.flush()?;
    for p in reply.parts {
        match p {
            Part::Bytes(b) => {
                if b.is_empty() {
                    continue;
                }
                if reply.framing == Framing::Chunked {
                    s.write_all(&chunk(&b))?;
                } else {
                    s.write_all(&b)?;
                }
                s.flush()?;
            }
            Part::Sleep(d) => thread::sleep(d),
            Part::Signal(tx) => {
                let _ = tx.send(());
            }
            Part::Wait(rx) => {
                let _ = rx.recv_timeout(GATE_TIMEOUT);
            }
        }
    }
    match reply.end {
        End::Complete => {
            if reply.framing == Framing::Chunked {
                s.write_all(b"0\r\n\r\n")?;
                s.flush()?;
            }
            Ok(reply.framing != Framing::Close)
        }
        End::Truncate => {
            let _ = s.shutdown(std::net::Shutdown::Write);
            // Let the proxy see the FIN before the socket is dropped.
            thread::sleep(Duration::from_millis(50));
            Ok(false)
        }
        End::Reset => {
            let _ = socket2::SockRef::from(&*s).set_linger(Some(Duration::ZERO));
            Ok(false)
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
