//! The per-worker upstream HTTP/1.1 client and its keep-alive pool.
//!
//! Receives a ready-made request (head and body bytes, built by the
//! lifecycle) and sends it over a pooled or fresh connection (plain TCP or
//! TLS, directly or through a CONNECT proxy, see [`crate::tls`]); emits the
//! provider's response head, then body bytes as they arrive, de-framed by
//! the shared sans-IO [`BodyDecoder`] so that streaming starts with the
//! first upstream byte. Every worker owns one [`Pool`]; nothing here is
//! shared across threads.

use std::cell::RefCell;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::config::{ProxyConfig, UpstreamConfig};
use crate::error::{ErrorType, ProxyError, Side};
use crate::http::body::BodyDecoder;
use crate::http::client::{parse_response_head, ResponseHead};
use crate::metrics::Shard;
use crate::tls::{self, TlsConnector, Transport};

/// Most bytes of a failed upstream response we read to find its message.
const MAX_ERROR_BODY: usize = 256 * 1024;
/// Longest wait for the rest of an error body: the status is already known,
/// so a provider that never finishes its error body must not hold the client.
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Free space we ask for before each read, so large bodies need few reads.
const READ_RESERVE: usize = 16 * 1024;

/// One live connection to the provider plus its read buffer. The buffer
/// travels with the connection so its capacity is reused across requests.
pub struct UpstreamConn {
    stream: Transport,
    buf: Vec<u8>,
    pos: usize,
}

impl UpstreamConn {
    fn new(stream: Transport) -> Self {
        UpstreamConn { stream, buf: Vec::with_capacity(READ_RESERVE), pos: 0 }
    }

    /// Reads more bytes after what is buffered. Ok(0) means the peer closed.
    async fn fill(&mut self, limit: Duration) -> Result<usize, io::Error> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.buf.capacity() - self.buf.len() < READ_RESERVE / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < READ_RESERVE / 2 {
            self.buf.reserve(READ_RESERVE);
        }
        let buf = std::mem::take(&mut self.buf);
        let (len, cap) = (buf.len(), buf.capacity());
        // monoio's read fills from index 0 and sets the length, so appending
        // needs an explicit slice over the spare capacity.
        let read = self.stream.read(buf.slice_mut(len..cap));
        match monoio::time::timeout(limit, read).await {
            Ok((res, slice)) => {
                self.buf = slice.into_inner();
                res
            }
            // The buffer went down with the cancelled read; the connection is
            // abandoned by the caller, so only its capacity is lost.
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
        }
    }

    /// Waits for and parses the response head, leaving any body bytes buffered.
    async fn read_head(&mut self, first_byte: Duration) -> Result<ResponseHead, HeadError> {
        let mut got_any = false;
        loop {
            match parse_response_head(&self.buf[self.pos..], false) {
                Ok(Some(head)) => {
                    self.pos += head.head_len;
                    return Ok(head);
                }
                Ok(None) => {}
                Err(e) => return Err(HeadError::Fatal(e)),
            }
            match self.fill(first_byte).await {
                Ok(0) if got_any => {
                    return Err(HeadError::Fatal(ProxyError::bad_gateway(
                        "upstream closed the connection in the middle of the response head",
                    )))
                }
                Ok(0) => return Err(HeadError::ClosedBeforeResponse),
                Ok(_) => got_any = true,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(HeadError::Fatal(timeout_error("waiting for the upstream response", first_byte)))
                }
                Err(e) if !got_any && is_reset(&e) => return Err(HeadError::ClosedBeforeResponse),
                Err(e) => return Err(HeadError::Fatal(io_error("reading the upstream response", &e))),
            }
        }
    }

    /// Decodes body bytes that have already been read, without waiting:
    /// `Some(done)` when the body ended or bytes were appended to `out`,
    /// `None` when only a read can make progress.
    pub fn decode_buffered(&mut self, dec: &mut BodyDecoder, out: &mut Vec<u8>) -> Result<Option<bool>, ProxyError> {
        // A body that is empty by its framing (Content-Length: 0, 204) is
        // complete before any read; waiting would hang until `idle`.
        if dec.is_done() {
            return Ok(Some(true));
        }
        if self.pos < self.buf.len() {
            let before = out.len();
            let (used, done) = dec.decode(&self.buf[self.pos..], out)?;
            self.pos += used;
            if done || out.len() > before {
                return Ok(Some(done));
            }
        }
        Ok(None)
    }

    /// Decodes the next available body bytes into `out`, reading from the
    /// socket only when nothing is buffered. Returns true once the body is
    /// complete. `idle` bounds the wait for each read.
    pub async fn read_body(
        &mut self,
        dec: &mut BodyDecoder,
        out: &mut Vec<u8>,
        idle: Duration,
    ) -> Result<bool, ProxyError> {
        loop {
            if let Some(done) = self.decode_buffered(dec, out)? {
                return Ok(done);
            }
            match self.fill(idle).await {
                Ok(0) => {
                    dec.finish_at_eof()?;
                    return Ok(true);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(timeout_error("waiting for upstream data", idle))
                }
                Err(e) => return Err(io_error("reading the upstream body", &e)),
            }
        }
    }

    /// Reads a whole body into `out`, failing past `max` bytes.
    pub async fn read_full_body(
        &mut self,
        dec: &mut BodyDecoder,
        out: &mut Vec<u8>,
        idle: Duration,
        max: usize,
    ) -> Result<(), ProxyError> {
        while !self.read_body(dec, out, idle).await? {
            if out.len() > max {
                return Err(ProxyError::bad_gateway("upstream response body is too large"));
            }
        }
        Ok(())
    }
}

enum HeadError {
    /// A reused connection that the provider had already closed: safe to
    /// resend on a fresh one, since it never saw our request.
    ClosedBeforeResponse,
    Fatal(ProxyError),
}

fn is_reset(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted)
}

fn io_error(what: &str, e: &io::Error) -> ProxyError {
    ProxyError::bad_gateway(format!("upstream I/O error while {what}: {e}"))
}

fn timeout_error(what: &str, limit: Duration) -> ProxyError {
    ProxyError::new(
        Side::Upstream,
        504,
        ErrorType::Timeout,
        format!("upstream timed out after {}s {what}", limit.as_secs()),
    )
}

/// A response whose head has arrived; the body is read through `conn`.
pub struct Exchange {
    pub conn: UpstreamConn,
    pub head: ResponseHead,
    pub decoder: BodyDecoder,
}

/// One worker's idle connections to its upstream. A pool serves exactly one
/// scheme, host and port, so its connections are interchangeable.
pub struct Pool {
    idle: RefCell<Vec<UpstreamConn>>,
    max_idle: usize,
    /// Resolved addresses of `dial`.
    addrs: Vec<SocketAddr>,
    /// `host:port` the TCP connection goes to: the proxy, or the upstream.
    dial: String,
    /// The upstream's `host:port` (IPv6 bracketed), the CONNECT target.
    authority: String,
    /// TLS server name.
    host: String,
    /// `Some` for https upstreams; `Err` if the TLS setup failed at start
    /// (reported on each request rather than killing the worker).
    tls: Option<Result<TlsConnector, String>>,
    ca_file: Option<PathBuf>,
    proxy: Option<ProxyConfig>,
    base_url: String,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    is_default: bool,
}

impl Pool {
    pub fn new(cfg: &UpstreamConfig) -> Pool {
        // Resolved once per worker at start; a name that fails now is
        // retried at connect time, so a late DNS or /etc/hosts fix still works.
        let authority = host_port(&cfg.host, cfg.port);
        let dial = match &cfg.proxy {
            Some(p) => host_port(&p.host, p.port),
            None => authority.clone(),
        };
        let addrs = dial.to_socket_addrs().map(|a| a.collect()).unwrap_or_default();
        let tls = cfg.tls.then(|| tls::client_config(cfg.ca_file.as_deref()).map(TlsConnector::from));
        Pool {
            idle: RefCell::new(Vec::new()),
            max_idle: cfg.pool_max_idle,
            addrs,
            dial,
            authority,
            host: cfg.host.clone(),
            tls,
            ca_file: cfg.ca_file.clone(),
            proxy: cfg.proxy.clone(),
            base_url: cfg.base_url.clone(),
            connect_timeout: cfg.connect_timeout,
            first_byte_timeout: cfg.first_byte_timeout,
            is_default: cfg.is_default,
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle.borrow().len()
    }

    /// Returns a connection whose last response was read completely.
    pub fn checkin(&self, conn: UpstreamConn) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < self.max_idle && conn.pos == conn.buf.len() {
            idle.push(conn);
        }
    }

    /// Pops an idle connection that is still quiet. One the provider closed,
    /// or one with stray bytes waiting (which would be misread as the next
    /// response), is dropped.
    fn checkout_idle(&self) -> Option<UpstreamConn> {
        let mut idle = self.idle.borrow_mut();
        while let Some(conn) = idle.pop() {
            if crate::sockets::peek(conn.stream.raw_fd()) == crate::sockets::Peek::Quiet {
                return Some(conn);
            }
        }
        None
    }

    /// Opens a connection ready for HTTP: TCP to the upstream or the proxy,
    /// then the CONNECT tunnel and the TLS handshake as configured. Each
    /// step is bounded by the connect timeout.
    async fn connect(&self) -> Result<UpstreamConn, ProxyError> {
        let mut tcp = self.dial_tcp().await?;
        if let Some(proxy) = &self.proxy {
            let tunnel = tls::connect_tunnel(&mut tcp, &self.authority);
            let res = match monoio::time::timeout(self.connect_timeout, tunnel).await {
                Ok(r) => r,
                Err(_) => {
                    Err(format!("did not answer CONNECT {} within {}s", self.authority, self.connect_timeout.as_secs()))
                }
            };
            res.map_err(|e| ProxyError::bad_gateway(format!("proxy {} {e}", proxy_label(proxy))))?;
        }
        let stream = match &self.tls {
            None => Transport::Plain(tcp),
            Some(Err(e)) => return Err(ProxyError::bad_gateway(format!("TLS setup failed: {e}"))),
            Some(Ok(connector)) => {
                match monoio::time::timeout(self.connect_timeout, tls::handshake(connector, &self.host, tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        return Err(ProxyError::bad_gateway(tls::handshake_error_message(
                            &self.host,
                            &e,
                            self.ca_file.as_deref(),
                        )))
                    }
                    Err(_) => {
                        return Err(ProxyError::bad_gateway(format!(
                            "TLS handshake with {} timed out after {}s",
                            self.host,
                            self.connect_timeout.as_secs()
                        )))
                    }
                }
            }
        };
        Ok(UpstreamConn::new(stream))
    }

    async fn dial_tcp(&self) -> Result<TcpStream, ProxyError> {
        let resolved;
        let addrs = if self.addrs.is_empty() {
            resolved = self.dial.to_socket_addrs().map(|a| a.collect::<Vec<_>>()).map_err(|e| self.unreachable(&e))?;
            &resolved
        } else {
            &self.addrs
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            match monoio::time::timeout(self.connect_timeout, TcpStream::connect_addr(*addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            }
        }
        Err(self.unreachable(&last))
    }

    fn unreachable(&self, e: &io::Error) -> ProxyError {
        let mut err = self.unreachable_message(e);
        err.retryable = true;
        err
    }

    fn unreachable_message(&self, e: &io::Error) -> ProxyError {
        if let Some(proxy) = &self.proxy {
            ProxyError::bad_gateway(format!(
                "cannot reach the proxy {} for the upstream at {} ({e})",
                proxy_label(proxy),
                self.base_url
            ))
        } else if self.is_default {
            ProxyError::bad_gateway(format!(
                "cannot reach the upstream at {} ({e}). No provider is configured, so ccproxy tried a local Ollama. \
                 Start Ollama, or run ccproxy with --upstream URL --upstream-key KEY --model NAME \
                 (or write ~/.config/ccproxy/config.toml); see the README",
                self.base_url
            ))
        } else {
            ProxyError::bad_gateway(format!("cannot reach the upstream at {} ({e})", self.base_url))
        }
    }

    /// Sends `req` (complete head and body) and waits for the response head.
    /// A pooled connection that turns out to be closed by the provider is
    /// replaced by a fresh one once, because the provider never saw the
    /// request. Returns the request buffer for reuse alongside the result.
    pub async fn send(&self, req: Vec<u8>, stats: &Shard) -> (Result<Exchange, ProxyError>, Vec<u8>) {
        let mut req = req;
        let mut fresh_only = false;
        loop {
            let pooled = if fresh_only { None } else { self.checkout_idle() };
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => {
                    Shard::bump(&stats.pool_hits);
                    c
                }
                None => {
                    Shard::bump(&stats.upstream_connects);
                    match self.connect().await {
                        Ok(c) => c,
                        Err(e) => return (Err(e), req),
                    }
                }
            };
            conn.buf.clear();
            conn.pos = 0;
            let (res, back) = conn.stream.write_all(req).await;
            req = back;
            if let Err(e) = res {
                if reused {
                    fresh_only = true;
                    continue;
                }
                return (Err(io_error("sending the request", &e)), req);
            }
            match conn.read_head(self.first_byte_timeout).await {
                Ok(head) => {
                    let decoder = BodyDecoder::upstream(head.body);
                    return (Ok(Exchange { conn, head, decoder }), req);
                }
                Err(HeadError::ClosedBeforeResponse) if reused => {
                    fresh_only = true;
                    continue;
                }
                Err(HeadError::ClosedBeforeResponse) => {
                    return (Err(ProxyError::bad_gateway("upstream closed the connection without a response")), req)
                }
                Err(HeadError::Fatal(e)) => return (Err(e), req),
            }
        }
    }
}

/// `host:port`, with IPv6 hosts bracketed.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The proxy's URL and, if it came from the environment, which variable.
fn proxy_label(p: &ProxyConfig) -> String {
    match p.from_env {
        Some(var) => format!("{} (from {var})", p.url),
        None => p.url.clone(),
    }
}

/// Reads the body of a non-2xx response and turns it into the Anthropic
/// error the client should see.
pub async fn error_from_response(ex: &mut Exchange, scratch: &mut Vec<u8>, idle: Duration) -> ProxyError {
    let idle = idle.min(ERROR_BODY_TIMEOUT);
    scratch.clear();
    let status = ex.head.status;
    let retry_after = ex.head.retry_after;
    // A body we cannot read still leaves the status to report.
    let _ = ex.conn.read_full_body(&mut ex.decoder, scratch, idle, MAX_ERROR_BODY).await;
    ProxyError::from_upstream_status(status, scratch, retry_after)
}
