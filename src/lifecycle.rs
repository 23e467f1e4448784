//! The life of one client connection and of each request on it, in order:
//! accept → parse → route → convert request → upstream → convert
//! response/stream → write → log.
//!
//! Receives accepted TCP connections from the worker's accept loop
//! ([`accept_loop`]) and emits HTTP/1.1 responses on them. Every function
//! below is one step of that path; errors from any step become an HTTP
//! response in exactly one place, [`respond_error`].

use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use monoio::net::{TcpListener, TcpStream};

use crate::config::Config;
use crate::convert::{self, request::RequestOptions, stream::StreamConverter, Outcome};
use crate::endpoints;
use crate::error::{ErrorType, ProxyError, Side};
use crate::http::body::BodyDecoder;
use crate::http::request::{parse_request_head, BodyKind, Limits, Method};
use crate::http::response::Framing;
use crate::http::{client, response};
use crate::metrics::{Metrics, Shard};
use crate::redact::Redactor;
use crate::upstream::{self, Pool};

/// Longest a non-streaming upstream body may be. Real answers are far below.
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;
const READ_RESERVE: usize = 16 * 1024;
/// Wait for the next request on an idle keep-alive connection.
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(75);
/// Deadline for a whole request head once its first byte has arrived; a
/// deadline, not a per-read timeout, so a byte-a-minute client cannot hold
/// the connection (slowloris).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for a whole request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a client may take to accept one write before it is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// After an early error, how much of an unread body we drain, and for how
/// long, so the client reads our answer instead of a reset.
const LINGER_BYTES: usize = 4 * 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(2);
/// Per-connection buffers above this size are released after the request
/// that grew them, so one huge request does not pin memory for the life of
/// a keep-alive connection.
const KEEP_BUFFER: usize = 1024 * 1024;
/// After a stream has ended for the client, how long and how much we read
/// to reach the end of the upstream body so its connection can be reused.
const DRAIN_TIME: Duration = Duration::from_secs(1);
const DRAIN_BYTES: usize = 64 * 1024;

/// Everything one worker thread owns. Shared by its connections through
/// `Rc`, never across threads.
pub struct Worker {
    pub id: usize,
    pub config: std::sync::Arc<Config>,
    pub metrics: std::sync::Arc<Metrics>,
    pub pool: Pool,
    pub limits: Limits,
    /// Masks the upstream key in anything relayed from the upstream.
    pub redactor: Redactor,
}

impl Worker {
    pub fn new(id: usize, config: std::sync::Arc<Config>, metrics: std::sync::Arc<Metrics>) -> Worker {
        // TODO(lead): one pool and one key per provider.
        let up = &config.providers[0].upstream;
        let pool = Pool::new(up);
        let limits = Limits { max_body_bytes: config.max_body_bytes, ..Limits::default() };
        let redactor = Redactor::new(up.api_key.as_deref());
        crate::redact::install(up.api_key.as_deref());
        Worker { id, config, metrics, pool, limits, redactor }
    }

    fn shard(&self) -> &Shard {
        &self.metrics.shards[self.id]
    }
}

/// Step 1, accept: hands every connection to its own task on this worker.
pub async fn accept_loop(worker: Rc<Worker>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                monoio::spawn(CatchPanic(serve_connection(worker.clone(), stream)));
            }
            Err(e) => {
                // Usually EMFILE: back off briefly instead of spinning, and
                // let the kernel backlog hold new clients meanwhile.
                tracing::warn!(worker = worker.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Runs a connection task and contains a panic inside it, so that a bug hit
/// by one request costs that connection, not the worker thread with its
/// listener and every other connection on it.
struct CatchPanic<F>(F);

impl<F: std::future::Future<Output = ()>> std::future::Future for CatchPanic<F> {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        // SAFETY: structural pinning of the only field; it is never moved out.
        let inner = unsafe { self.map_unchecked_mut(|s| &mut s.0) };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(p) => p,
            Err(_) => {
                tracing::error!("a connection task panicked; the connection was dropped");
                std::task::Poll::Ready(())
            }
        }
    }
}

/// The per-connection buffers, reused by every request on the connection.
struct Conn {
    stream: TcpStream,
    /// Bytes read from the client; `pos` marks what has been consumed.
    rbuf: Vec<u8>,
    pos: usize,
    /// Decoded chunked request body (Content-Length bodies are used in place).
    body: Vec<u8>,
    /// Response bytes on their way out.
    wbuf: Vec<u8>,
    /// Converted upstream request, then the converted response.
    ubuf: Vec<u8>,
    /// Converted request body, then raw upstream response bytes.
    scratch: Vec<u8>,
    /// Converted Anthropic SSE events not yet framed.
    events: Vec<u8>,
}

/// Why a request handler stopped.
enum Done {
    /// The response is complete; the connection may serve another request.
    Reply { status: u16 },
    /// The client can no longer be written to; drop the connection.
    ClientGone,
}

/// The access-log facts of one request, filled in as the request goes.
struct Access {
    started: Instant,
    method: Method,
    route: Route,
    status: u16,
    stream: bool,
    model: String,
    first_byte: Option<Duration>,
    outcome: Outcome,
}

/// Steps 2 to 8 for every request on one connection.
async fn serve_connection(worker: Rc<Worker>, stream: TcpStream) {
    let mut c = Conn {
        stream,
        rbuf: Vec::with_capacity(READ_RESERVE),
        pos: 0,
        body: Vec::new(),
        wbuf: Vec::with_capacity(4096),
        ubuf: Vec::new(),
        scratch: Vec::new(),
        events: Vec::new(),
    };
    loop {
        // Step 2, parse the head.
        let head = match read_head(&mut c, &worker.limits).await {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(e) => {
                if respond_error(&mut c, &worker, &e, false, false).await {
                    crate::sockets::linger_close(&mut c.stream, LINGER_BYTES, LINGER_TIME).await;
                }
                return;
            }
        };
        let started = Instant::now();
        Shard::bump(&worker.shard().requests);
        // Step 3, route, decided from the head before the body is read.
        let route = route(head.method, &c.rbuf[c.pos + head.path.start..c.pos + head.path.end]);
        c.pos += head.head_len;
        let mut access = Access {
            started,
            method: head.method,
            route,
            status: 0,
            stream: false,
            model: String::new(),
            first_byte: None,
            outcome: Outcome::default(),
        };
        let keep_alive = head.keep_alive;
        let head_only = head.method == Method::Head;
        let body = match read_body(&mut c, &worker.limits, head.body, head.expect_continue).await {
            Ok(b) => b,
            Err(e) => {
                access.status = e.status;
                if respond_error(&mut c, &worker, &e, false, head_only).await {
                    crate::sockets::linger_close(&mut c.stream, LINGER_BYTES, LINGER_TIME).await;
                }
                log(&access, Some(&e));
                return;
            }
        };
        let result = dispatch(&worker, &mut c, body, route, keep_alive, head.http11, &mut access).await;
        let keep = match result {
            Ok(Done::Reply { status }) => {
                access.status = status;
                log(&access, None);
                keep_alive
            }
            Ok(Done::ClientGone) => {
                log(&access, None);
                false
            }
            Err(mut e) => {
                // Upstream messages are relayed verbatim and may quote the key.
                worker.redactor.scrub_error(&mut e);
                access.status = e.status;
                let ok = respond_error(&mut c, &worker, &e, keep_alive, head_only).await;
                log(&access, Some(&e));
                ok && keep_alive
            }
        };
        if !keep {
            return;
        }
        if c.pos == c.rbuf.len() {
            c.rbuf.clear();
            c.pos = 0;
        }
        c.release_large_buffers();
    }
}

impl Conn {
    fn release_large_buffers(&mut self) {
        for b in [&mut self.body, &mut self.wbuf, &mut self.ubuf, &mut self.scratch, &mut self.events] {
            if b.capacity() > KEEP_BUFFER {
                *b = Vec::new();
            }
        }
        if self.rbuf.capacity() > KEEP_BUFFER && self.pos == self.rbuf.len() {
            self.rbuf = Vec::with_capacity(READ_RESERVE);
            self.pos = 0;
        }
    }
}

/// What the connection loop needs from a request head, copied out so the
/// read buffer can grow while the body arrives.
struct Head {
    method: Method,
    /// Relative to the start of the head in `rbuf`.
    path: std::ops::Range<usize>,
    head_len: usize,
    body: BodyKind,
    keep_alive: bool,
    expect_continue: bool,
    http11: bool,
}

/// Reads until a full request head is buffered. Ok(None) means the client
/// closed (or idled out) between requests, which is a normal end.
async fn read_head(c: &mut Conn, limits: &Limits) -> Result<Option<Head>, ProxyError> {
    let mut deadline = None;
    loop {
        if let Some(h) = parse_request_head(&c.rbuf[c.pos..], limits)? {
            return Ok(Some(Head {
                method: h.method,
                path: h.path,
                head_len: h.head_len,
                body: h.body,
                keep_alive: h.keep_alive,
                expect_continue: h.expect_continue,
                http11: h.http11,
            }));
        }
        let idle = c.pos == c.rbuf.len();
        let now = monoio::time::Instant::now();
        let limit = if idle { now + KEEP_ALIVE_IDLE } else { *deadline.get_or_insert(now + HEAD_TIMEOUT) };
        // EOF, a reset or a timeout while waiting for a head all end the
        // connection quietly: there is no request to answer.
        match fill(c, limit).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// Appends what the client sent next to `rbuf`. Ok(0) means EOF.
async fn fill(c: &mut Conn, deadline: monoio::time::Instant) -> std::io::Result<usize> {
    if c.pos > 0 && c.pos == c.rbuf.len() {
        c.rbuf.clear();
        c.pos = 0;
    }
    if c.rbuf.capacity() - c.rbuf.len() < READ_RESERVE / 2 {
        if c.pos > 0 {
            c.rbuf.drain(..c.pos);
            c.pos = 0;
        }
        c.rbuf.reserve(READ_RESERVE);
    }
    let buf = std::mem::take(&mut c.rbuf);
    let (len, cap) = (buf.len(), buf.capacity());
    // monoio's read fills from index 0 and sets the length, so appending
    // needs an explicit slice over the spare capacity.
    match monoio::time::timeout_at(deadline, c.stream.read(buf.slice_mut(len..cap))).await {
        Ok((res, slice)) => {
            c.rbuf = slice.into_inner();
            res
        }
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client read timed out")),
    }
}

/// Where a request body lives once read.
#[derive(Clone, Copy)]
enum Body {
    /// `rbuf[start..end]`: a Content-Length body, used without copying.
    InPlace(usize, usize),
    /// `c.body`: a decoded chunked body.
    Decoded,
}

/// Reads the request body, answering `Expect: 100-continue` first.
async fn read_body(c: &mut Conn, limits: &Limits, kind: BodyKind, expect: bool) -> Result<Body, ProxyError> {
    if expect && c.pos == c.rbuf.len() {
        let mut buf = std::mem::take(&mut c.wbuf);
        buf.clear();
        buf.extend_from_slice(response::CONTINUE_100);
        let (res, back) = crate::sockets::write_all_within(&mut c.stream, buf, WRITE_TIMEOUT).await;
        c.wbuf = back;
        res.map_err(|_| ProxyError::bad_request("client went away before sending the body"))?;
    }
    let deadline = monoio::time::Instant::now() + BODY_TIMEOUT;
    match kind {
        BodyKind::None | BodyKind::Close => Ok(Body::InPlace(c.pos, c.pos)),
        BodyKind::Length(n) => {
            // parse_request_head already refused lengths over max_body_bytes.
            let n = n as usize;
            while c.rbuf.len() - c.pos < n {
                let want = n - (c.rbuf.len() - c.pos);
                if c.rbuf.capacity() - c.rbuf.len() < want {
                    c.rbuf.reserve(want);
                }
                match fill(c, deadline).await {
                    Ok(0) | Err(_) => return Err(ProxyError::bad_request("request body ended before Content-Length")),
                    Ok(_) => {}
                }
            }
            let start = c.pos;
            c.pos += n;
            Ok(Body::InPlace(start, start + n))
        }
        BodyKind::Chunked => {
            c.body.clear();
            let mut dec = BodyDecoder::new(kind).with_limit(limits.max_body_bytes);
            loop {
                let (used, done) = dec.decode(&c.rbuf[c.pos..], &mut c.body)?;
                c.pos += used;
                if done {
                    return Ok(Body::Decoded);
                }
                match fill(c, deadline).await {
                    Ok(0) | Err(_) => return Err(ProxyError::bad_request("chunked request body ended early")),
                    Ok(_) => {}
                }
            }
        }
    }
}

/// The endpoints ccproxy serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Messages,
    CountTokens,
    Health,
    Status,
    Models,
    Root,
    MethodNotAllowed,
    NotFound,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Messages => "messages",
            Route::CountTokens => "count_tokens",
            Route::Health => "health",
            Route::Status => "status",
            Route::Models => "models",
            Route::Root => "root",
            Route::MethodNotAllowed => "method_not_allowed",
            Route::NotFound => "not_found",
        }
    }
}

/// Step 3, route: method and path (query already split off) to an endpoint.
fn route(method: Method, path: &[u8]) -> Route {
    let path = path.strip_suffix(b"/").filter(|p| !p.is_empty()).unwrap_or(path);
    let (route, allowed): (Route, &[Method]) = match path {
        b"/v1/messages" => (Route::Messages, &[Method::Post]),
        b"/v1/messages/count_tokens" => (Route::CountTokens, &[Method::Post]),
        b"/health" => (Route::Health, &[Method::Get]),
        b"/status" => (Route::Status, &[Method::Get]),
        b"/v1/models" => (Route::Models, &[Method::Get]),
        b"/" => (Route::Root, &[Method::Get]),
        _ => return Route::NotFound,
    };
    // HEAD is GET without the body, wherever GET is allowed.
    let method = if method == Method::Head { Method::Get } else { method };
    if allowed.contains(&method) {
        route
    } else {
        Route::MethodNotAllowed
    }
}

async fn dispatch(
    w: &Worker,
    c: &mut Conn,
    body: Body,
    route: Route,
    keep_alive: bool,
    http11: bool,
    access: &mut Access,
) -> Result<Done, ProxyError> {
    let head_only = access.method == Method::Head;
    let mut json = std::mem::take(&mut c.scratch);
    json.clear();
    match route {
        Route::Messages => {
            c.scratch = json;
            return messages(w, c, body, keep_alive, http11, access).await;
        }
        Route::CountTokens => match crate::tokens::count_tokens(body_bytes(c, body)) {
            Ok(n) => {
                json.extend_from_slice(b"{\"input_tokens\":");
                crate::json::write_u64(&mut json, n);
                json.push(b'}');
            }
            Err(e) => {
                c.scratch = json;
                return Err(e);
            }
        },
        Route::Health => json.extend_from_slice(endpoints::HEALTH_BODY),
        Route::Root => json.extend_from_slice(endpoints::ROOT_BODY),
        Route::Status => endpoints::write_status(&mut json, &w.config, &w.metrics),
        Route::Models => endpoints::write_models(&mut json, &w.config),
        Route::MethodNotAllowed => {
            c.scratch = json;
            return Err(ProxyError::client(405, ErrorType::InvalidRequest, "method not allowed on this path"));
        }
        Route::NotFound => {
            c.scratch = json;
            return Err(ProxyError::client(
                404,
                ErrorType::NotFound,
                "not found: ccproxy serves POST /v1/messages, POST /v1/messages/count_tokens, \
                 GET /v1/models, GET /health and GET /status",
            ));
        }
    }
    let done = write_json(c, 200, &json, keep_alive, head_only).await;
    c.scratch = json;
    Ok(done)
}

fn body_bytes(c: &Conn, body: Body) -> &[u8] {
    match body {
        Body::InPlace(s, e) => &c.rbuf[s..e],
        Body::Decoded => &c.body,
    }
}

/// Steps 4 to 7 for `POST /v1/messages`.
async fn messages(
    w: &Worker,
    c: &mut Conn,
    body: Body,
    keep_alive: bool,
    http11: bool,
    access: &mut Access,
) -> Result<Done, ProxyError> {
    Shard::bump(&w.shard().messages);
    // Step 4, convert the request.
    let mut ubody = std::mem::take(&mut c.scratch);
    ubody.clear();
    let cfg = &w.config.providers[0].upstream;
    // TODO(lead): route from the converter's first pass, send to the decided
    // provider's pool, fall back, and set x-ccproxy-route.
    let mut client_model = String::new();
    let facts = route_facts(body_bytes(c, body), &mut client_model);
    let decision = w
        .config
        .router
        .decide(&facts, &w.config.providers, &mut || crate::tokens::count_tokens(body_bytes(c, body)).unwrap_or(0));
    if decision.provider != 0 {
        c.scratch = ubody;
        return Err(ProxyError::internal("routing to a provider other than the first is not wired yet"));
    }
    let route = crate::route::ModelRoute { force: decision.model.map(str::to_string), ..Default::default() };
    let opts =
        RequestOptions { route: &route, reasoning_effort: cfg.reasoning_effort, pdf_file_parts: cfg.pdf_file_parts };
    let converted = convert::request::convert_request(body_bytes(c, body), &opts, &mut ubody);
    let meta = match converted {
        Ok(m) => m,
        Err(e) => {
            c.scratch = ubody;
            return Err(e);
        }
    };
    access.stream = meta.stream;
    access.model.clear();
    access.model.push_str(&meta.client_model);
    let mut ureq = std::mem::take(&mut c.ubuf);
    ureq.clear();
    let key = cfg.api_key.as_deref();
    client::write_request_head(&mut ureq, &cfg.chat_path, &cfg.host_header, key, meta.stream, ubody.len(), &[]);
    ureq.extend_from_slice(&ubody);
    c.scratch = ubody;

    // Step 5, upstream. A client that hangs up while the provider is still
    // thinking cancels the request: dropping the exchange closes the
    // upstream connection, which is how an HTTP/1.1 provider learns to stop.
    let sent = monoio::select! {
        r = w.pool.send(ureq, w.shard()) => Some(r),
        _ = crate::sockets::hung_up(&c.stream) => None,
    };
    let Some((sent, back)) = sent else { return Ok(Done::ClientGone) };
    c.ubuf = back;
    let mut ex = sent?;
    access.first_byte = Some(access.started.elapsed());
    if !(200..300).contains(&ex.head.status) {
        let e = upstream::error_from_response(&mut ex, &mut c.scratch, cfg.idle_timeout).await;
        if ex.decoder.is_done() && ex.head.keep_alive {
            w.pool.checkin(ex.conn);
        }
        return Err(e);
    }
    let message_id = convert::new_message_id();
    if meta.stream && !ex.head.is_event_stream {
        return Err(not_a_stream(w, c, &mut ex).await);
    }

    if !meta.stream {
        // Step 6, convert the whole response.
        let mut raw = std::mem::take(&mut c.scratch);
        raw.clear();
        let read = monoio::select! {
            r = ex.conn.read_full_body(&mut ex.decoder, &mut raw, cfg.idle_timeout, MAX_UPSTREAM_BODY) => Some(r),
            _ = crate::sockets::hung_up(&c.stream) => None,
        };
        let Some(read) = read else {
            c.scratch = raw;
            return Ok(Done::ClientGone);
        };
        if read.is_ok() && ex.head.keep_alive {
            w.pool.checkin(ex.conn);
        }
        let mut out = std::mem::take(&mut c.ubuf);
        out.clear();
        let converted =
            read.and_then(|_| convert::response::convert_response(&raw, &meta.client_model, &message_id, &mut out));
        c.scratch = raw;
        let outcome = match converted {
            Ok(o) => o,
            Err(e) => {
                c.ubuf = out;
                return Err(e);
            }
        };
        access.outcome = outcome;
        // Step 7, write.
        let done = write_json(c, 200, &out, keep_alive, false).await;
        c.ubuf = out;
        return Ok(done);
    }

    Shard::bump(&w.shard().streams);
    let framing = if http11 { Framing::Chunked } else { Framing::Close };
    stream_response(w, c, ex, &meta.client_model, &message_id, keep_alive, framing, access).await
}

/// Routing facts read cheaply from the body; the converter validates it.
/// TODO(lead): replaced by `convert::inspect(..).facts()`.
fn route_facts<'a>(body: &[u8], model: &'a mut String) -> crate::route::RouteFacts<'a> {
    use sonic_rs::JsonValueTrait;
    if let Some(m) = sonic_rs::get(body, ["model"]).ok().as_ref().and_then(|m| m.as_str()) {
        model.push_str(m);
    }
    let thinking = sonic_rs::get(body, ["thinking", "type"]).ok();
    let thinking_enabled = thinking.as_ref().and_then(|t| t.as_str()) == Some("enabled");
    let web_search = sonic_rs::get(body, ["tools"]).ok().and_then(|t| t.into_array_iter()).is_some_and(|tools| {
        tools
            .flatten()
            .any(|t| t.get("type").and_then(|ty| ty.as_str().map(|s| s.starts_with("web_search"))) == Some(true))
    });
    crate::route::RouteFacts { model: model.as_str(), thinking_enabled, web_search, body_len: body.len() }
}

/// A streaming request answered with something other than SSE (usually a
/// JSON error with status 200): the provider's own words are the best error.
async fn not_a_stream(w: &Worker, c: &mut Conn, ex: &mut upstream::Exchange) -> ProxyError {
    let mut raw = std::mem::take(&mut c.scratch);
    raw.clear();
    let idle = w.config.providers[0].upstream.idle_timeout.min(Duration::from_secs(10));
    let _ = ex.conn.read_full_body(&mut ex.decoder, &mut raw, idle, 256 * 1024).await;
    let e = match crate::error::upstream_message(&raw) {
        Some(m) => ProxyError::bad_gateway(format!("upstream answered a streaming request without SSE: {m}")),
        None => ProxyError::bad_gateway("upstream answered a streaming request without an event stream"),
    };
    c.scratch = raw;
    e
}

/// Steps 6 and 7 for a stream: every upstream read is converted and the
/// resulting Anthropic events are written and flushed before the next read.
#[allow(clippy::too_many_arguments)]
async fn stream_response(
    w: &Worker,
    c: &mut Conn,
    mut ex: upstream::Exchange,
    model: &str,
    message_id: &str,
    keep_alive: bool,
    framing: Framing,
    access: &mut Access,
) -> Result<Done, ProxyError> {
    let cfg = &w.config.providers[0].upstream;
    let chunked = framing == Framing::Chunked;
    let keep_alive = keep_alive && chunked;
    let mut conv = StreamConverter::new(model, message_id);
    let mut events = std::mem::take(&mut c.events);
    events.clear();
    let mut wbuf = std::mem::take(&mut c.wbuf);
    wbuf.clear();
    response::write_head_framed(&mut wbuf, 200, "text/event-stream", framing, keep_alive, &[]);
    conv.push(&[], false, &mut events);
    frame(&mut wbuf, &events, chunked);
    events.clear();
    let (res, back) = crate::sockets::write_all_within(&mut c.stream, wbuf, WRITE_TIMEOUT).await;
    wbuf = back;
    if res.is_err() {
        c.events = events;
        c.wbuf = wbuf;
        return Ok(Done::ClientGone);
    }

    let mut raw = std::mem::take(&mut c.scratch);
    let mut upstream_done = false;
    let mut client_gone = false;
    let ping_every = w.config.ping_interval;
    while !conv.is_finished() {
        raw.clear();
        let read = {
            // The read is polled across pings rather than restarted, so a
            // ping never cancels an upstream read in flight.
            let mut fut = std::pin::pin!(ex.conn.read_body(&mut ex.decoder, &mut raw, cfg.idle_timeout));
            loop {
                match monoio::time::timeout(ping_every, &mut fut).await {
                    Ok(r) => break r,
                    Err(_) => {
                        if let Err(e) = ping(&mut c.stream, &mut c.body, chunked).await {
                            break Err(e);
                        }
                    }
                }
            }
        };
        match read {
            Ok(done) => {
                upstream_done = done;
                conv.push(&raw, done, &mut events);
            }
            Err(e) if e.side == Side::Client => {
                client_gone = true;
                break;
            }
            Err(mut e) => {
                w.redactor.scrub_error(&mut e);
                tracing::warn!(error = %e, "upstream stream failed");
                conv.fail(&e, &mut events);
            }
        }
        if upstream_done && !conv.is_finished() {
            // The converter always finishes at upstream EOF; this guards
            // against an endless loop should that contract ever break.
            conv.fail(&ProxyError::internal("stream converter did not finish at end of stream"), &mut events);
        }
        if !events.is_empty() {
            // Upstream error events carry the provider's own words, which
            // may quote the key it rejected.
            w.redactor.scrub_bytes(&mut events);
            wbuf.clear();
            frame(&mut wbuf, &events, chunked);
            events.clear();
            let (res, back) = crate::sockets::write_all_within(&mut c.stream, wbuf, WRITE_TIMEOUT).await;
            wbuf = back;
            if res.is_err() {
                client_gone = true;
                break;
            }
        }
    }
    access.outcome = conv.outcome();
    c.events = events;
    if client_gone {
        // Dropping the upstream connection closes it, which is how an
        // HTTP/1.1 provider learns to stop generating.
        c.scratch = raw;
        c.wbuf = wbuf;
        return Ok(Done::ClientGone);
    }
    let res = if chunked {
        wbuf.clear();
        wbuf.extend_from_slice(response::LAST_CHUNK);
        let (res, back) = crate::sockets::write_all_within(&mut c.stream, wbuf, WRITE_TIMEOUT).await;
        c.wbuf = back;
        res
    } else {
        c.wbuf = wbuf;
        Ok(())
    };
    // The converter stops at `[DONE]`, usually just before the upstream's
    // last chunk; reading that little rest lets the connection be reused.
    if !upstream_done && ex.head.keep_alive {
        upstream_done = drain(&mut ex, &mut raw).await;
    }
    c.scratch = raw;
    if upstream_done && ex.decoder.is_done() && ex.head.keep_alive {
        w.pool.checkin(ex.conn);
    }
    if res.is_err() || !chunked {
        return Ok(Done::ClientGone);
    }
    Ok(Done::Reply { status: 200 })
}

/// Reads what is left of an upstream body, briefly and boundedly. Returns
/// whether the body ended cleanly.
async fn drain(ex: &mut upstream::Exchange, raw: &mut Vec<u8>) -> bool {
    let deadline = monoio::time::Instant::now() + DRAIN_TIME;
    let mut total = 0;
    loop {
        raw.clear();
        match monoio::time::timeout_at(deadline, ex.conn.read_body(&mut ex.decoder, raw, DRAIN_TIME)).await {
            Ok(Ok(true)) => return true,
            Ok(Ok(false)) => {
                total += raw.len();
                if total > DRAIN_BYTES {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// Frames converted events for the client: one chunk, or the bare bytes on
/// a close-delimited HTTP/1.0 stream.
fn frame(wbuf: &mut Vec<u8>, events: &[u8], chunked: bool) {
    if chunked {
        response::write_chunk(wbuf, events);
    } else {
        wbuf.extend_from_slice(events);
    }
}

/// Writes an SSE ping while the upstream is silent. A failed write means the
/// client left; that ends the stream (and with it the upstream request).
async fn ping(stream: &mut TcpStream, buf: &mut Vec<u8>, chunked: bool) -> Result<(), ProxyError> {
    let mut b = std::mem::take(buf);
    b.clear();
    let mut ev = Vec::with_capacity(64);
    convert::stream::write_ping(&mut ev);
    frame(&mut b, &ev, chunked);
    let (res, back) = crate::sockets::write_all_within(stream, b, WRITE_TIMEOUT).await;
    *buf = back;
    res.map_err(|_| ProxyError::client(499, ErrorType::InvalidRequest, "client disconnected"))
}

/// Step 7 for JSON bodies: head and body in one write.
async fn write_json(c: &mut Conn, status: u16, body: &[u8], keep_alive: bool, head_only: bool) -> Done {
    let mut wbuf = std::mem::take(&mut c.wbuf);
    wbuf.clear();
    if head_only {
        response::write_head(&mut wbuf, status, "application/json", Some(body.len()), keep_alive, &[]);
    } else {
        response::write_full(&mut wbuf, status, "application/json", body, keep_alive, &[]);
    }
    let (res, back) = crate::sockets::write_all_within(&mut c.stream, wbuf, WRITE_TIMEOUT).await;
    c.wbuf = back;
    match res {
        Ok(_) => Done::Reply { status },
        Err(_) => Done::ClientGone,
    }
}

/// The one place where an error becomes an HTTP response. Returns whether
/// the connection is still usable.
async fn respond_error(c: &mut Conn, w: &Worker, e: &ProxyError, keep_alive: bool, head_only: bool) -> bool {
    Shard::bump(&w.shard().errors);
    let mut body = Vec::with_capacity(128 + e.message.len());
    e.write_json(&mut body);
    let mut retry = itoa::Buffer::new();
    let extra: &[(&str, &str)] = match e.retry_after {
        Some(s) => &[("retry-after", retry.format(s))],
        None => &[],
    };
    let mut wbuf = std::mem::take(&mut c.wbuf);
    wbuf.clear();
    if head_only {
        response::write_head(&mut wbuf, e.status, "application/json", Some(body.len()), keep_alive, extra);
    } else {
        response::write_full(&mut wbuf, e.status, "application/json", &body, keep_alive, extra);
    }
    let (res, back) = crate::sockets::write_all_within(&mut c.stream, wbuf, WRITE_TIMEOUT).await;
    c.wbuf = back;
    res.is_ok()
}

/// Step 8, log: one access event per request.
fn log(a: &Access, err: Option<&ProxyError>) {
    let dur_us = a.started.elapsed().as_micros() as u64;
    let ttfb_us = a.first_byte.map(|d| d.as_micros() as u64).unwrap_or(0);
    let u = a.outcome.usage;
    match err {
        None => tracing::info!(
            target: "ccproxy::access",
            route = a.route.name(),
            status = a.status,
            model = %a.model,
            stream = a.stream,
            ttfb_us,
            dur_us,
            input_tokens = u.input_tokens,
            output_tokens = u.output_tokens,
            cache_read_tokens = u.cache_read_input_tokens,
            stop_reason = a.outcome.stop_reason.unwrap_or(""),
            "request"
        ),
        Some(e) => tracing::info!(
            target: "ccproxy::access",
            route = a.route.name(),
            status = a.status,
            model = %a.model,
            stream = a.stream,
            ttfb_us,
            dur_us,
            side = e.side.as_str(),
            error_type = e.kind.as_str(),
            error = %e.message,
            "request failed"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path() {
        assert_eq!(route(Method::Post, b"/v1/messages"), Route::Messages);
        assert_eq!(route(Method::Post, b"/v1/messages/"), Route::Messages);
        assert_eq!(route(Method::Post, b"/v1/messages/count_tokens"), Route::CountTokens);
        assert_eq!(route(Method::Get, b"/v1/messages"), Route::MethodNotAllowed);
        assert_eq!(route(Method::Head, b"/"), Route::Root);
        assert_eq!(route(Method::Get, b"/health"), Route::Health);
        assert_eq!(route(Method::Get, b"/status"), Route::Status);
        assert_eq!(route(Method::Get, b"/v1/models"), Route::Models);
        assert_eq!(route(Method::Get, b"/nope"), Route::NotFound);
    }
}
