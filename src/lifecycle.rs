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
use monoio::io::{AsyncReadRent, CancelableAsyncReadRent, Canceller};
use monoio::net::{TcpListener, TcpStream};

use crate::config::{Config, ProviderKind, ServerLimits};
use crate::convert::{self, stream::StreamConverter, Outcome};
use crate::endpoints;
use crate::error::{ErrorType, ProxyError};
use crate::forward::{forward, Buffers, ClientHeaders, Failed};
use crate::http::body::BodyDecoder;
use crate::http::request::{parse_request_head, BodyKind, Limits, Method};
use crate::http::response::{self, Framing};
use crate::metrics::{Gauge, InFlight, Metrics, Shard};
use crate::redact::Redactor;
use crate::relay::{self, Mode, Relayed, WRITE_TIMEOUT};
use crate::upstream::{self, Pool};

/// Longest a non-streaming upstream body may be. Real answers are far below.
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;
const READ_RESERVE: usize = 16 * 1024;
/// After an early error, how much of an unread body we drain, and for how
/// long, so the client reads our answer instead of a reset.
const LINGER_BYTES: usize = 4 * 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(2);
/// Per-connection buffers above this size are released after the request
/// that grew them, so one huge request does not pin memory for the life of
/// a keep-alive connection.
const KEEP_BUFFER: usize = 1024 * 1024;
/// How long an idle keep-alive connection waits for its next request with
/// its buffers in place. A busy client's next request comes well within it;
/// past it the connection parks (see [`wait_for_request`]). With 10,000
/// clients each sending every few seconds, the connections inside this
/// window are what holds memory: at 1 s, 2,000 req/s kept 2,000 of them hot.
const HOT_IDLE: Duration = Duration::from_millis(250);

/// Everything one worker thread owns. Shared by its connections through
/// `Rc`, never across threads.
pub struct Worker {
    pub id: usize,
    pub config: std::sync::Arc<Config>,
    pub metrics: std::sync::Arc<Metrics>,
    /// One keep-alive pool per provider, index = provider index. Shared
    /// with the worker built by a reload when the provider is unchanged.
    pub pools: Vec<Rc<Pool>>,
    pub limits: Limits,
    /// Open client connections on this worker thread (kept across reloads).
    pub connections: Rc<std::cell::Cell<usize>>,
    /// Requests being handled on this worker thread (shutdown waits for them).
    pub in_flight: Rc<std::cell::Cell<usize>>,
    /// Masks every provider's key in anything relayed from an upstream.
    pub redactor: Redactor,
}

impl Worker {
    pub fn new(id: usize, config: std::sync::Arc<Config>, metrics: std::sync::Arc<Metrics>) -> Worker {
        let pools = config.providers.iter().map(|p| Rc::new(Pool::new(&p.upstream))).collect();
        Self::assemble(id, config, metrics, pools, Rc::default(), Rc::default())
    }

    /// The worker for a reloaded config. Requests in flight keep the old one
    /// (they hold an `Rc` to it); pools of providers whose name and
    /// connection settings did not change carry over with their idle
    /// connections.
    pub fn reloaded(&self, config: std::sync::Arc<Config>) -> Worker {
        let pools = config
            .providers
            .iter()
            .map(|p| {
                let same = self.config.providers.iter().position(|o| o.name == p.name && o.upstream == p.upstream);
                match same {
                    Some(i) => self.pools[i].clone(),
                    None => Rc::new(Pool::new(&p.upstream)),
                }
            })
            .collect();
        let next = Self::assemble(
            self.id,
            config,
            self.metrics.clone(),
            pools,
            self.connections.clone(),
            self.in_flight.clone(),
        );
        // Requests still running on the old config may relay errors that
        // quote an old key: scrub both generations' keys.
        fn keys(c: &Config) -> impl Iterator<Item = &str> {
            c.providers.iter().filter_map(|p| p.upstream.api_key.as_deref())
        }
        crate::redact::install_many(keys(&self.config).chain(keys(&next.config)));
        next
    }

    fn assemble(
        id: usize,
        config: std::sync::Arc<Config>,
        metrics: std::sync::Arc<Metrics>,
        pools: Vec<Rc<Pool>>,
        connections: Rc<std::cell::Cell<usize>>,
        in_flight: Rc<std::cell::Cell<usize>>,
    ) -> Worker {
        let l = &config.server.limits;
        let limits = Limits {
            max_body_bytes: config.max_body_bytes,
            max_headers: l.max_headers,
            max_head_bytes: l.max_head_bytes,
        };
        let keys = || config.providers.iter().filter_map(|p| p.upstream.api_key.as_deref());
        let redactor = Redactor::many(keys());
        crate::redact::install_many(keys());
        crate::metrics::bind_thread(&metrics, id);
        Worker { id, config, metrics, pools, limits, connections, in_flight, redactor }
    }

    pub fn shard(&self) -> &Shard {
        &self.metrics.shards[self.id]
    }
}

/// The worker of one thread as of the latest configuration. A SIGHUP
/// reload publishes a new config; each worker picks it up at its next
/// request (one relaxed load per request when nothing changed).
pub struct Slot {
    current: std::cell::RefCell<Rc<Worker>>,
    generation: std::cell::Cell<u64>,
}

impl Slot {
    pub fn new(worker: Worker) -> Slot {
        Slot { current: std::cell::RefCell::new(Rc::new(worker)), generation: std::cell::Cell::new(0) }
    }

    /// The worker new requests should use.
    pub fn get(&self) -> Rc<Worker> {
        let g = crate::server::CONFIG_GENERATION.load(std::sync::atomic::Ordering::Acquire);
        if g != self.generation.get() {
            self.generation.set(g);
            if let Some(config) = crate::server::published_config() {
                let next = self.current.borrow().reloaded(config);
                *self.current.borrow_mut() = Rc::new(next);
            }
        }
        self.current.borrow().clone()
    }
}

/// Step 1, accept: hands every connection to its own task on this worker.
pub async fn accept_loop(slot: Rc<Slot>, listener: TcpListener) {
    let worker = slot.get();
    // A pending accept is cancelled once, when shutdown begins; polling the
    // flag from a side task keeps the accept path itself untouched.
    let canceller = monoio::io::Canceller::new();
    let handle = canceller.handle();
    monoio::spawn(async move {
        let mut ticks = 0u32;
        while !shutting_down() {
            monoio::time::sleep(Duration::from_millis(100)).await;
            ticks = ticks.wrapping_add(1);
            if ticks.is_multiple_of(10) {
                // mimalloc returns freed pages to the OS only while it is
                // being called; a worker whose connections all parked goes
                // quiet, and would keep their released buffers resident.
                // SAFETY: mi_collect only walks this thread's own heap.
                unsafe { libmimalloc_sys::mi_collect(false) };
            }
        }
        canceller.cancel();
    });
    loop {
        // At the cap, stop accepting: the kernel backlog holds new clients
        // until a connection here closes.
        let max = slot.get().config.server.limits.max_connections_per_worker;
        while worker.connections.get() >= max && !shutting_down() {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        if shutting_down() {
            break;
        }
        match listener.cancelable_accept(handle.clone()).await {
            Ok((stream, _peer)) => {
                if shutting_down() {
                    // Accepted as shutdown began: close it rather than serve it.
                    drop(stream);
                    break;
                }
                let _ = stream.set_nodelay(true);
                // Counted here, not in the task: the next accept is armed
                // before the task first runs, and the cap must already see it.
                let open = Counted::enter(&worker.connections);
                monoio::spawn(CatchPanic(serve_connection(slot.clone(), stream, open)));
            }
            // EINVAL: the listener was shut down (graceful shutdown began
            // an instant before the flag became visible here).
            Err(e) if shutting_down() || e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => {
                // Usually EMFILE: back off briefly instead of spinning, and
                // let the kernel backlog hold new clients meanwhile.
                tracing::warn!(worker = worker.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    // Graceful shutdown: no new connections; requests and streams in flight
    // get `shutdown_grace` to finish. Idle keep-alive connections are simply
    // dropped with the runtime when this returns.
    drop(listener);
    let deadline = monoio::time::Instant::now() + slot.get().config.server.shutdown_grace;
    while worker.in_flight.get() > 0 && monoio::time::Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    if worker.in_flight.get() > 0 {
        tracing::warn!(worker = worker.id, in_flight = worker.in_flight.get(), "shutdown grace expired");
    }
}

fn shutting_down() -> bool {
    crate::server::SHUTDOWN.load(std::sync::atomic::Ordering::Relaxed)
}

/// Holds one unit of a per-worker count (open connections, requests in
/// flight) for as long as it lives, panics included.
struct Counted(Rc<std::cell::Cell<usize>>);

impl Counted {
    fn enter(count: &Rc<std::cell::Cell<usize>>) -> Counted {
        count.set(count.get() + 1);
        Counted(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
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
    /// SSE pings, written while an upstream read is in flight.
    ping: Vec<u8>,
    /// `x-ccproxy-route` of the current request; empty when not routed.
    label: String,
    /// The request's `anthropic-version` / `anthropic-beta`, copied out of
    /// the head (the read buffer may move while the body arrives).
    anthropic_version: String,
    anthropic_beta: String,
    /// Cancels the idle read when the connection parks; made on first use
    /// and reused until then (it costs two allocations).
    canceller: Option<Canceller>,
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
    retries: u32,
    first_byte: Option<Duration>,
    outcome: Outcome,
    /// Metrics: the provider that answered (or was tried) and a stream's
    /// first content event.
    provider: Option<usize>,
    first_token: Option<Duration>,
}

/// Steps 2 to 8 for every request on one connection.
async fn serve_connection(slot: Rc<Slot>, stream: TcpStream, _open: Counted) {
    let mut c = Conn {
        stream,
        rbuf: Vec::with_capacity(READ_RESERVE),
        pos: 0,
        body: Vec::new(),
        wbuf: Vec::new(),
        ubuf: Vec::new(),
        scratch: Vec::new(),
        events: Vec::new(),
        ping: Vec::new(),
        label: String::new(),
        anthropic_version: String::new(),
        anthropic_beta: String::new(),
        canceller: None,
    };
    loop {
        // Each request runs on the configuration current when it starts.
        let worker = slot.get();
        // Step 2, parse the head.
        let head = match read_head(&mut c, &worker.limits, &worker.config.server.limits).await {
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
        let _in_flight_gauge = InFlight::enter(Gauge::Requests);
        Shard::bump(&worker.shard().requests);
        let _in_flight = Counted::enter(&worker.in_flight);
        c.label.clear();
        // Step 3, route, decided from the head before the body is read.
        let route = route(head.method, &c.rbuf[c.pos + head.path.start..c.pos + head.path.end]);
        let authorized = route == Route::Health || authorized(&worker.config, &c.rbuf[c.pos..], &head);
        copy_header(&c.rbuf[c.pos..], head.anthropic_version.clone(), &mut c.anthropic_version);
        copy_header(&c.rbuf[c.pos..], head.anthropic_beta.clone(), &mut c.anthropic_beta);
        c.pos += head.head_len;
        let mut access = Access {
            started,
            method: head.method,
            route,
            status: 0,
            stream: false,
            model: String::new(),
            retries: 0,
            first_byte: None,
            outcome: Outcome::default(),
            provider: None,
            first_token: None,
        };
        // During shutdown every answer closes its connection, and says so.
        let keep_alive = head.keep_alive && !shutting_down();
        let head_only = head.method == Method::Head;
        if !authorized {
            // Refused before its body is read, so the connection cannot be
            // reused; a lingering close lets the client read the 401.
            let e = ProxyError::client(
                401,
                ErrorType::Authentication,
                "invalid or missing API key: send the proxy's key as x-api-key or Authorization: Bearer",
            );
            access.status = e.status;
            if respond_error(&mut c, &worker, &e, false, head_only).await {
                crate::sockets::linger_close(&mut c.stream, LINGER_BYTES, LINGER_TIME).await;
            }
            log(&access, &c.label, Some(&e));
            return;
        }
        let body_timeout = worker.config.server.limits.body_timeout;
        let body = match read_body(&mut c, &worker.limits, body_timeout, head.body, head.expect_continue).await {
            Ok(b) => b,
            Err(e) => {
                access.status = e.status;
                if respond_error(&mut c, &worker, &e, false, head_only).await {
                    crate::sockets::linger_close(&mut c.stream, LINGER_BYTES, LINGER_TIME).await;
                }
                log(&access, &c.label, Some(&e));
                return;
            }
        };
        let result = dispatch(&worker, &mut c, body, route, keep_alive, &head, &mut access).await;
        let keep = match result {
            Ok(Done::Reply { status }) => {
                access.status = status;
                log(&access, &c.label, None);
                keep_alive
            }
            Ok(Done::ClientGone) => {
                log(&access, &c.label, None);
                false
            }
            Err(mut e) => {
                // Upstream messages are relayed verbatim and may quote the key.
                worker.redactor.scrub_error(&mut e);
                access.status = e.status;
                let ok = respond_error(&mut c, &worker, &e, keep_alive, head_only).await;
                log(&access, &c.label, Some(&e));
                ok && keep_alive
            }
        };
        // During shutdown a finished request also ends its connection.
        if !keep || shutting_down() {
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
    /// Gives every buffer back to the allocator: the connection is idle and
    /// keeps only its socket and this struct until the client speaks again.
    fn park(&mut self) {
        for b in [&mut self.body, &mut self.wbuf, &mut self.ubuf, &mut self.scratch, &mut self.events, &mut self.ping] {
            *b = Vec::new();
        }
        for s in [&mut self.label, &mut self.anthropic_version, &mut self.anthropic_beta] {
            *s = String::new();
        }
        // Only called between requests, with nothing pipelined left unread.
        debug_assert_eq!(self.pos, self.rbuf.len());
        self.rbuf = Vec::new();
        self.pos = 0;
    }

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

/// Whether the request carries the configured client key (always true when
/// none is configured). Either header style is accepted.
fn authorized(config: &Config, head_bytes: &[u8], head: &Head) -> bool {
    let Some(key) = &config.server.client_key else { return true };
    let key = key.0.as_bytes();
    let value = |r: &Option<std::ops::Range<usize>>| r.clone().and_then(|r| head_bytes.get(r));
    if let Some(v) = value(&head.x_api_key) {
        if constant_time_eq(v, key) {
            return true;
        }
    }
    if let Some(v) = value(&head.authorization) {
        if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") && constant_time_eq(v[7..].trim_ascii(), key) {
            return true;
        }
    }
    false
}

/// Compares without an early exit, so response timing does not reveal how
/// much of a guessed key was right. (The length is not secret.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Copies a header value (valid UTF-8 only; anything else is dropped).
fn copy_header(head: &[u8], range: Option<std::ops::Range<usize>>, out: &mut String) {
    out.clear();
    if let Some(v) = range.and_then(|r| head.get(r)).and_then(|v| std::str::from_utf8(v).ok()) {
        out.push_str(v);
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
    /// Relative to the start of the head in `rbuf`, like `path`.
    authorization: Option<std::ops::Range<usize>>,
    x_api_key: Option<std::ops::Range<usize>>,
    anthropic_version: Option<std::ops::Range<usize>>,
    anthropic_beta: Option<std::ops::Range<usize>>,
}

/// Reads until a full request head is buffered. Ok(None) means the client
/// closed (or idled out) between requests, which is a normal end.
async fn read_head(c: &mut Conn, limits: &Limits, t: &ServerLimits) -> Result<Option<Head>, ProxyError> {
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
                authorization: h.authorization,
                x_api_key: h.x_api_key,
                anthropic_version: h.anthropic_version,
                anthropic_beta: h.anthropic_beta,
            }));
        }
        let idle = c.pos == c.rbuf.len();
        let now = monoio::time::Instant::now();
        // A deadline for the whole head, not a per-read timeout, so a
        // byte-a-minute client cannot hold the connection (slowloris).
        let limit = if idle { now + t.idle_timeout } else { *deadline.get_or_insert(now + t.header_timeout) };
        // EOF, a reset or a timeout while waiting for a head all end the
        // connection quietly: there is no request to answer.
        let got = if idle { wait_for_request(c, limit).await } else { fill(c, limit).await };
        match got {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// Waits for the first bytes of the next request on an idle connection, up
/// to `deadline` (the idle timeout). For [`HOT_IDLE`] it reads with its
/// buffers in place, which is all a busy client ever sees. Then it parks:
/// the read is cancelled, every buffer is released, and it waits for
/// readability holding none, so ten thousand idle clients cost little more
/// than their sockets. Ok(0) means EOF.
async fn wait_for_request(c: &mut Conn, deadline: monoio::time::Instant) -> std::io::Result<usize> {
    let hot = (monoio::time::Instant::now() + HOT_IDLE).min(deadline);
    make_room(c);
    let canceller = c.canceller.get_or_insert_with(Canceller::new);
    let buf = std::mem::take(&mut c.rbuf);
    let (len, cap) = (buf.len(), buf.capacity());
    let (res, slice) = {
        let read = c.stream.cancelable_read(buf.slice_mut(len..cap), canceller.handle());
        let mut read = std::pin::pin!(read);
        let quick = monoio::select! {
            r = &mut read => Some(r),
            _ = monoio::time::sleep_until(hot) => None,
        };
        match quick {
            Some(r) => r,
            None => {
                // Cancelled through the handle, then awaited: with io_uring
                // the read may complete just before the cancel lands, and
                // dropping it instead would lose the bytes it consumed. The
                // deadline still holds should the cancel itself be lost (a
                // full submission queue): then the connection just ends.
                c.canceller = c.canceller.take().map(Canceller::cancel);
                match monoio::time::timeout_at(deadline, read).await {
                    Ok(r) => r,
                    Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client idle timeout")),
                }
            }
        }
    };
    c.rbuf = slice.into_inner();
    match res {
        Ok(n) => {
            crate::metrics::add_bytes_in(n);
            return Ok(n);
        }
        Err(e) if e.raw_os_error() != Some(libc::ECANCELED) => return Err(e),
        Err(_) => {}
    }
    if monoio::time::Instant::now() >= deadline {
        return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client idle timeout"));
    }
    c.park();
    crate::metrics::with_shard(|s| Shard::bump(&s.parked));
    match monoio::time::timeout_at(deadline, c.stream.readable(false)).await {
        Ok(Ok(())) => fill(c, deadline).await,
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client idle timeout")),
    }
}

/// Makes sure `rbuf` has room for a read, reusing consumed space.
fn make_room(c: &mut Conn) {
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
}

/// Appends what the client sent next to `rbuf`. Ok(0) means EOF.
async fn fill(c: &mut Conn, deadline: monoio::time::Instant) -> std::io::Result<usize> {
    make_room(c);
    let buf = std::mem::take(&mut c.rbuf);
    let (len, cap) = (buf.len(), buf.capacity());
    // monoio's read fills from index 0 and sets the length, so appending
    // needs an explicit slice over the spare capacity.
    match monoio::time::timeout_at(deadline, c.stream.read(buf.slice_mut(len..cap))).await {
        Ok((res, slice)) => {
            c.rbuf = slice.into_inner();
            if let Ok(n) = res {
                crate::metrics::add_bytes_in(n);
            }
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
async fn read_body(
    c: &mut Conn,
    limits: &Limits,
    timeout: Duration,
    kind: BodyKind,
    expect: bool,
) -> Result<Body, ProxyError> {
    if expect && c.pos == c.rbuf.len() {
        let mut buf = std::mem::take(&mut c.wbuf);
        buf.clear();
        buf.extend_from_slice(response::CONTINUE_100);
        let (res, back) = crate::sockets::write_all_within(&mut c.stream, buf, WRITE_TIMEOUT).await;
        c.wbuf = back;
        res.map_err(|_| ProxyError::bad_request("client went away before sending the body"))?;
    }
    let deadline = monoio::time::Instant::now() + timeout;
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
    Metrics,
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
            Route::Metrics => "metrics",
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
        b"/metrics" => (Route::Metrics, &[Method::Get]),
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
    head: &Head,
    access: &mut Access,
) -> Result<Done, ProxyError> {
    let head_only = access.method == Method::Head;
    let mut json = std::mem::take(&mut c.scratch);
    json.clear();
    match route {
        Route::Messages => {
            c.scratch = json;
            // Boxed: its state (forwarding, relaying a stream) is most of a
            // connection task's size, and an idle connection should not
            // carry it. One allocation per request, freed when it ends.
            return Box::pin(messages(w, c, body, keep_alive, head.http11, access)).await;
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
        Route::Metrics => {
            endpoints::write_metrics(&mut json, &w.config, &w.metrics);
            let (s, wb) = (&mut c.stream, &mut c.wbuf);
            let done =
                write_typed(s, wb, 200, endpoints::METRICS_CONTENT_TYPE, &json, keep_alive, head_only, &[]).await;
            c.scratch = json;
            return Ok(done);
        }
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
                 GET /v1/models, GET /health, GET /status and GET /metrics",
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
    // Disjoint borrows: the client body stays borrowed from `rbuf`/`body`
    // while the other buffers are lent to forwarding and relaying.
    let Conn {
        stream,
        rbuf,
        body: decoded,
        wbuf,
        ubuf,
        scratch,
        events,
        ping,
        label,
        anthropic_version,
        anthropic_beta,
        ..
    } = c;
    let client_body: &[u8] = match body {
        Body::InPlace(s, e) => &rbuf[s..e],
        Body::Decoded => decoded,
    };
    // Step 4a, validate the request and read what routing needs.
    let req = convert::request::inspect(client_body)?;
    access.stream = req.stream();
    access.model.clear();
    access.model.push_str(req.client_model());

    // Step 3b, route (tokenizing only inside the long-context band).
    let cfg = &w.config;
    let decision =
        cfg.router.decide(&req.facts(), &cfg.providers, &mut || crate::tokens::count_tokens(client_body).unwrap_or(0));
    let reason = decision.reason.as_str();
    access.provider = Some(decision.provider);
    write_label(label, &cfg.providers[decision.provider].name, decision.upstream_model(req.client_model()), reason);

    // Steps 4b and 5, convert and send, with retries and fallbacks.
    let headers = ClientHeaders {
        anthropic_version: Some(anthropic_version.as_str()).filter(|v| !v.is_empty()),
        anthropic_beta: Some(anthropic_beta.as_str()).filter(|v| !v.is_empty()),
    };
    let bufs = Buffers { body: scratch, request: ubuf, scratch: events };
    let fwd = match forward(w, client_body, &req, headers, &decision, bufs, stream).await {
        Ok(f) => f,
        Err(Failed::ClientGone) => return Ok(Done::ClientGone),
        Err(Failed::Error(e)) => return Err(e),
    };
    let provider = &cfg.providers[fwd.provider];
    write_label(label, &provider.name, &fwd.model, if fwd.fell_back { "fallback" } else { reason });
    access.retries = fwd.retries;
    access.provider = Some(fwd.provider);
    access.first_byte = Some(access.started.elapsed());
    let mut ex = fwd.exchange;
    let pool = &w.pools[fwd.provider];
    let idle = provider.upstream.idle_timeout;
    let message_id = convert::new_message_id();
    let route_header = [("x-ccproxy-route", label.as_str())];

    if fwd.meta.stream {
        if !ex.head.is_event_stream {
            return Err(not_a_stream(&mut ex, scratch, idle).await);
        }
        Shard::bump(&w.shard().streams);
        let _streaming = InFlight::enter(Gauge::Streams);
        let first_content = std::cell::Cell::new(None);
        let mode = match provider.kind {
            ProviderKind::OpenAi => Mode::Convert(Box::new(
                StreamConverter::new(&fwd.meta.client_model, &message_id).with_tool_names(fwd.meta.tool_names),
            )),
            ProviderKind::Anthropic => Mode::Pipe,
        };
        let framing = if http11 { Framing::Chunked } else { Framing::Close };
        let client = relay::Client { stream, wbuf, events, raw: scratch, ping };
        let settings = relay::Settings {
            framing,
            keep_alive,
            idle,
            ping_every: cfg.ping_interval,
            extra_headers: &route_header,
            redactor: &w.redactor,
            first_content: &first_content,
        };
        let (how, outcome) = relay::relay(ex, pool, mode, client, settings).await;
        access.outcome = outcome;
        access.first_token = first_content.get().map(|t: Instant| t.duration_since(access.started));
        return Ok(match how {
            Relayed::Complete => Done::Reply { status: 200 },
            Relayed::Closed => Done::ClientGone,
        });
    }

    // Step 6, the whole response: read it (unless the client hangs up) and
    // convert it, or pass it through for an Anthropic-kind provider.
    scratch.clear();
    let read = crate::sockets::unless_hung_up(
        stream,
        ex.conn.read_full_body(&mut ex.decoder, scratch, idle, MAX_UPSTREAM_BODY),
    )
    .await;
    let Some(read) = read else { return Ok(Done::ClientGone) };
    read?;
    if ex.head.keep_alive {
        pool.checkin(ex.conn);
    }
    let out: &[u8] = match provider.kind {
        ProviderKind::OpenAi => {
            ubuf.clear();
            access.outcome = convert::response::convert_response(
                scratch,
                &fwd.meta.client_model,
                &message_id,
                &fwd.meta.tool_names,
                ubuf,
            )?;
            ubuf
        }
        ProviderKind::Anthropic => scratch,
    };
    // Step 7, write.
    Ok(write_response(stream, wbuf, 200, out, keep_alive, false, &route_header).await)
}

/// Fills `label` with the `x-ccproxy-route` value: `provider,model (reason)`.
fn write_label(label: &mut String, provider: &str, model: &str, reason: &str) {
    label.clear();
    label.push_str(provider);
    label.push(',');
    label.push_str(model);
    label.push_str(" (");
    label.push_str(reason);
    label.push(')');
}

/// A streaming request answered with something other than SSE (usually a
/// JSON error with status 200): the provider's own words are the best error.
async fn not_a_stream(ex: &mut upstream::Exchange, raw: &mut Vec<u8>, idle: Duration) -> ProxyError {
    raw.clear();
    let _ = ex.conn.read_full_body(&mut ex.decoder, raw, idle.min(Duration::from_secs(10)), 256 * 1024).await;
    match crate::error::upstream_message(raw) {
        Some(m) => ProxyError::bad_gateway(format!("upstream answered a streaming request without SSE: {m}")),
        None => ProxyError::bad_gateway("upstream answered a streaming request without an event stream"),
    }
}

/// Step 7 for JSON bodies: head and body in one write.
async fn write_response(
    stream: &mut TcpStream,
    wbuf: &mut Vec<u8>,
    status: u16,
    body: &[u8],
    keep_alive: bool,
    head_only: bool,
    extra: &[(&str, &str)],
) -> Done {
    write_typed(stream, wbuf, status, "application/json", body, keep_alive, head_only, extra).await
}

/// [`write_response`] with a content type of the caller's choosing.
#[allow(clippy::too_many_arguments)]
async fn write_typed(
    stream: &mut TcpStream,
    wbuf: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    head_only: bool,
    extra: &[(&str, &str)],
) -> Done {
    wbuf.clear();
    if head_only {
        response::write_head(wbuf, status, content_type, Some(body.len()), keep_alive, extra);
    } else {
        response::write_full(wbuf, status, content_type, body, keep_alive, extra);
    }
    let (res, back) = crate::sockets::write_all_within(stream, std::mem::take(wbuf), WRITE_TIMEOUT).await;
    *wbuf = back;
    match res {
        Ok(_) => Done::Reply { status },
        Err(_) => Done::ClientGone,
    }
}

/// A JSON answer from one of the small endpoints.
async fn write_json(c: &mut Conn, status: u16, body: &[u8], keep_alive: bool, head_only: bool) -> Done {
    write_response(&mut c.stream, &mut c.wbuf, status, body, keep_alive, head_only, &[]).await
}

/// The one place where an error becomes an HTTP response. Returns whether
/// the connection is still usable.
async fn respond_error(c: &mut Conn, w: &Worker, e: &ProxyError, keep_alive: bool, head_only: bool) -> bool {
    Shard::bump(&w.shard().errors);
    let mut body = Vec::with_capacity(128 + e.message.len());
    e.write_json(&mut body);
    let mut retry = itoa::Buffer::new();
    let mut extra: [(&str, &str); 2] = [("", ""); 2];
    let mut n = 0;
    if let Some(s) = e.retry_after {
        extra[n] = ("retry-after", retry.format(s));
        n += 1;
    }
    if !c.label.is_empty() {
        extra[n] = ("x-ccproxy-route", c.label.as_str());
        n += 1;
    }
    let done = write_response(&mut c.stream, &mut c.wbuf, e.status, &body, keep_alive, head_only, &extra[..n]).await;
    matches!(done, Done::Reply { .. })
}

/// Step 8, log: one access event per request.
fn log(a: &Access, upstream: &str, err: Option<&ProxyError>) {
    let dur_us = a.started.elapsed().as_micros() as u64;
    let ttfb_us = a.first_byte.map(|d| d.as_micros() as u64).unwrap_or(0);
    let ttft_us = a.first_token.map(|d| d.as_micros() as u64).unwrap_or(0);
    crate::metrics::record_request(&crate::metrics::RequestRecord {
        route: a.route as usize,
        provider: a.provider,
        status: a.status,
        duration: a.started.elapsed(),
        upstream_head: a.first_byte,
        first_token: a.first_token,
    });
    let u = a.outcome.usage;
    match err {
        None => tracing::info!(
            target: "ccproxy::access",
            route = a.route.name(),
            status = a.status,
            model = %a.model,
            upstream = %upstream,
            retries = a.retries,
            stream = a.stream,
            ttfb_us,
            ttft_us,
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
            upstream = %upstream,
            retries = a.retries,
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
    fn constant_time_eq_compares_whole_keys() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

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
        assert_eq!(route(Method::Get, b"/metrics"), Route::Metrics);
    }

    /// Every open connection, idle ones included, holds its task's future
    /// for its whole life; per-request state is boxed apart (see
    /// `dispatch`). 10,000 idle clients should cost tens of MB, not hundreds.
    #[test]
    fn a_connection_task_is_small() {
        fn size_of_future<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().unwrap();
        rt.block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let stream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let cli = crate::config::Cli::default();
            let config = std::sync::Arc::new(Config::load_with_home(&cli, None, &|_| None).unwrap());
            let worker = Worker::new(0, config, Metrics::new(1));
            let open = Rc::new(std::cell::Cell::new(0));
            let task = serve_connection(Rc::new(Slot::new(worker)), stream, Counted::enter(&open));
            let size = size_of_future(&task);
            assert!(size <= 3 * 1024, "serve_connection's future is {size} bytes");
        });
    }

    #[test]
    fn metric_route_labels_follow_the_route_enum() {
        use Route::*;
        let all = [Messages, CountTokens, Health, Status, Models, Root, Metrics, MethodNotAllowed, NotFound];
        assert_eq!(all.len(), crate::metrics::ROUTES.len());
        for r in all {
            assert_eq!(crate::metrics::ROUTES[r as usize], r.name());
        }
    }
}
