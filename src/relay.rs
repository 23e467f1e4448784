//! Relaying an upstream SSE stream to the client, event by event.
//!
//! Receives an upstream [`Exchange`] whose 2xx head has arrived (from
//! `forward`) and the client's socket and buffers (from the lifecycle).
//! Emits the HTTP head, then, for every upstream read, the converted
//! Anthropic events (OpenAI-kind providers, through [`StreamConverter`]) or
//! the upstream bytes as they are (Anthropic-kind providers), each written
//! and flushed before the next read. Pings go out while the upstream is
//! silent; a client that stops reading or hangs up ends the relay and, by
//! dropping the upstream connection, the generation.

use std::time::Duration;

use monoio::net::TcpStream;

use crate::convert::stream::{write_ping, StreamConverter};
use crate::convert::Outcome;
use crate::error::{ErrorType, ProxyError, Side};
use crate::http::response::{self, Framing};
use crate::redact::Redactor;
use crate::upstream::{Exchange, Pool};

/// Longest a client may take to accept one write before it is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// After a stream has ended for the client, how long and how much we read
/// to reach the end of the upstream body so its connection can be reused.
const DRAIN_TIME: Duration = Duration::from_secs(1);
const DRAIN_BYTES: usize = 64 * 1024;

/// What happens to upstream bytes on their way to the client.
pub enum Mode {
    /// OpenAI SSE in, Anthropic SSE out.
    Convert(Box<StreamConverter>),
    /// Anthropic SSE in and out, untouched.
    Pipe,
}

/// The client side of a relay: its socket and the connection's buffers.
pub struct Client<'a> {
    pub stream: &'a mut TcpStream,
    pub wbuf: &'a mut Vec<u8>,
    pub events: &'a mut Vec<u8>,
    pub raw: &'a mut Vec<u8>,
    pub ping: &'a mut Vec<u8>,
}

/// How the relay ended for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// The whole stream was written; the connection may serve another request.
    Complete,
    /// The client is gone or the stream was close-delimited.
    Closed,
}

/// Settings of one relay.
pub struct Settings<'a> {
    pub framing: Framing,
    pub keep_alive: bool,
    pub idle: Duration,
    pub ping_every: Duration,
    pub extra_headers: &'a [(&'a str, &'a str)],
    pub redactor: &'a Redactor,
    /// Set to the moment the first content event went to the client
    /// (time-to-first-token for metrics and the access log).
    pub first_content: &'a std::cell::Cell<Option<std::time::Instant>>,
}

/// Streams `ex` to the client. Returns how it ended and, in convert mode,
/// the stop reason and usage for the access log.
///
/// Writes are coalesced only across bytes that have already arrived: before
/// waiting on the upstream, everything converted so far is flushed, so no
/// event ever waits for the next upstream read. A fast upstream whose whole
/// answer came with its head costs one client write (head, events and the
/// final chunk), not three.
pub async fn relay(
    mut ex: Exchange,
    pool: &Pool,
    mut mode: Mode,
    mut c: Client<'_>,
    s: Settings<'_>,
) -> (Relayed, Outcome) {
    let chunked = s.framing == Framing::Chunked;
    let keep_alive = s.keep_alive && chunked;
    c.events.clear();
    c.wbuf.clear();
    response::write_head_framed(c.wbuf, 200, "text/event-stream", s.framing, keep_alive, s.extra_headers);
    if let Mode::Convert(conv) = &mut mode {
        conv.push(&[], false, c.events);
    }

    let mut upstream_done = false;
    // In pipe mode a ping may only go between upstream events.
    let mut at_boundary = true;
    loop {
        let finished = match &mode {
            Mode::Convert(conv) => conv.is_finished(),
            Mode::Pipe => upstream_done,
        };
        if finished {
            break;
        }
        c.raw.clear();
        let read = match ex.conn.decode_buffered(&mut ex.decoder, c.raw) {
            Ok(Some(done)) => Ok(done),
            Err(e) => Err(e),
            Ok(None) => {
                // About to wait: whatever is converted goes out first.
                if !flush(&mut c, &s, chunked, false).await {
                    return (Relayed::Closed, outcome(&mode));
                }
                // The read is polled across pings rather than restarted, so
                // a ping never cancels an upstream read in flight.
                let mut fut = std::pin::pin!(ex.conn.read_body(&mut ex.decoder, c.raw, s.idle));
                loop {
                    match monoio::time::timeout(s.ping_every, &mut fut).await {
                        Ok(r) => break r,
                        Err(_) if at_boundary => {
                            if !ping(c.stream, c.ping, chunked).await {
                                break Err(client_gone());
                            }
                        }
                        Err(_) => {}
                    }
                }
            }
        };
        match read {
            Ok(done) => {
                upstream_done = done;
                match &mut mode {
                    Mode::Convert(conv) => conv.push(c.raw, done, c.events),
                    Mode::Pipe => {
                        c.events.extend_from_slice(c.raw);
                        if !c.raw.is_empty() {
                            at_boundary = c.raw.ends_with(b"\n\n") || c.raw.ends_with(b"\r\n\r\n");
                        }
                    }
                }
            }
            Err(e) if e.side == Side::Client => return (Relayed::Closed, outcome(&mode)),
            Err(mut e) => {
                s.redactor.scrub_error(&mut e);
                tracing::warn!(error = %e, "upstream stream failed");
                match &mut mode {
                    Mode::Convert(conv) => conv.fail(&e, c.events),
                    Mode::Pipe => {
                        // End whatever partial event was in flight first.
                        c.events.extend_from_slice(b"\n\n");
                        e.write_sse(c.events);
                        upstream_done = true;
                    }
                }
            }
        }
        if let Mode::Convert(conv) = &mut mode {
            if upstream_done && !conv.is_finished() {
                // The converter always finishes at upstream EOF; this guards
                // against an endless loop should that contract ever break.
                conv.fail(&ProxyError::internal("stream converter did not finish at end of stream"), c.events);
            }
        }
        stage(&mut c, &s, chunked);
    }
    let out = outcome(&mode);
    // The last events and the terminating chunk leave in one write.
    let ok = flush(&mut c, &s, chunked, chunked).await;
    // The converter stops at `[DONE]`, usually just before the upstream's
    // last chunk; reading that little rest lets the connection be reused.
    if !upstream_done && ex.head.keep_alive {
        upstream_done = drain(&mut ex, c.raw).await;
    }
    if upstream_done && ex.decoder.is_done() && ex.head.keep_alive {
        pool.checkin(ex.conn);
    }
    if ok && chunked {
        (Relayed::Complete, out)
    } else {
        (Relayed::Closed, out)
    }
}

/// Moves converted events into the write buffer, framed and scrubbed.
fn stage(c: &mut Client<'_>, s: &Settings<'_>, chunked: bool) {
    if c.events.is_empty() {
        return;
    }
    // Upstream error events carry the provider's own words, which may quote
    // the key it rejected.
    s.redactor.scrub_bytes(c.events);
    if s.first_content.get().is_none() && memchr::memmem::find(c.events, b"content_block_delta").is_some() {
        s.first_content.set(Some(std::time::Instant::now()));
    }
    frame(c.wbuf, c.events, chunked);
    c.events.clear();
}

/// Writes everything staged (and the terminating chunk when `last`);
/// false when the client is gone.
async fn flush(c: &mut Client<'_>, s: &Settings<'_>, chunked: bool, last: bool) -> bool {
    stage(c, s, chunked);
    if last {
        c.wbuf.extend_from_slice(response::LAST_CHUNK);
    }
    if c.wbuf.is_empty() {
        return true;
    }
    let ok = write(c.stream, c.wbuf).await;
    c.wbuf.clear();
    ok
}

fn outcome(mode: &Mode) -> Outcome {
    match mode {
        Mode::Convert(conv) => conv.outcome(),
        Mode::Pipe => Outcome::default(),
    }
}

fn client_gone() -> ProxyError {
    ProxyError::client(499, ErrorType::InvalidRequest, "client disconnected")
}

/// Writes `buf` to the client within [`WRITE_TIMEOUT`]; false when the
/// client is gone or stopped reading.
async fn write(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let (res, back) = crate::sockets::write_all_within(stream, std::mem::take(buf), WRITE_TIMEOUT).await;
    *buf = back;
    res.is_ok()
}

/// Reads what is left of an upstream body, briefly and boundedly. Returns
/// whether the body ended cleanly.
async fn drain(ex: &mut Exchange, raw: &mut Vec<u8>) -> bool {
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

/// Frames events for the client: one chunk, or the bare bytes on a
/// close-delimited HTTP/1.0 stream.
fn frame(wbuf: &mut Vec<u8>, events: &[u8], chunked: bool) {
    if chunked {
        response::write_chunk(wbuf, events);
    } else {
        wbuf.extend_from_slice(events);
    }
}

/// Writes an SSE ping while the upstream is silent; false when the client
/// is gone (which ends the stream, and with it the upstream request).
async fn ping(stream: &mut TcpStream, buf: &mut Vec<u8>, chunked: bool) -> bool {
    let mut ev = Vec::with_capacity(48);
    write_ping(&mut ev);
    buf.clear();
    frame(buf, &ev, chunked);
    write(stream, buf).await
}
