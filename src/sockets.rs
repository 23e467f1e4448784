//! Small socket-level helpers the async layers need but monoio lacks.
//!
//! Receives live TCP streams from the lifecycle and the upstream pool, and
//! emits facts about them (has the peer hung up? are stray bytes waiting?)
//! or performs one-shot actions on them (half-close, bounded writes, a
//! lingering close), without ever taking a buffer from the caller.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

/// What a non-blocking peek saw on a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// Nothing to read: the peer is connected and quiet.
    Quiet,
    /// Bytes are waiting.
    Data,
    /// The peer closed its side, or the socket failed.
    Closed,
}

/// Looks at the socket without consuming anything and without blocking.
pub fn peek(fd: std::os::fd::RawFd) -> Peek {
    let mut byte = [0u8; 1];
    // SAFETY: recv on a caller-owned fd into a valid 1-byte stack buffer; a
    // stale fd can only make recv fail, which reads as Closed.
    let n = unsafe { libc::recv(fd, byte.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    match n {
        0 => Peek::Closed,
        n if n > 0 => Peek::Data,
        _ => match io::Error::last_os_error().kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Peek::Quiet,
            _ => Peek::Closed,
        },
    }
}

/// Resolves once the client has hung up; never resolves while it is merely
/// quiet, or once it has sent more bytes (a pipelined request, which stays
/// in the socket for the connection loop to read later).
pub async fn hung_up(stream: &TcpStream) {
    loop {
        if stream.readable(false).await.is_err() {
            return;
        }
        match peek(stream.as_raw_fd()) {
            Peek::Closed => return,
            Peek::Data => std::future::pending::<()>().await,
            Peek::Quiet => {}
        }
    }
}

/// How long a wait on the upstream goes before the client hang-up watch is
/// armed. The watch costs a poll and a cancel on the ring per wait; a fast
/// upstream answers before it is due, and a model that is still thinking
/// after this long is stopped no later than this after its client leaves.
pub const WATCH_AFTER: Duration = Duration::from_millis(20);

/// Runs `fut` to completion, or returns None as soon as the client hangs up
/// ([`hung_up`], armed after [`WATCH_AFTER`]). Dropping the unfinished `fut`
/// is how the upstream request is abandoned.
pub async fn unless_hung_up<F: std::future::Future>(client: &TcpStream, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let quick = monoio::select! {
        r = &mut fut => Some(r),
        _ = monoio::time::sleep(WATCH_AFTER) => None,
    };
    if quick.is_some() {
        return quick;
    }
    monoio::select! {
        r = &mut fut => Some(r),
        _ = hung_up(client) => None,
    }
}

/// Writes all of `buf` within `limit`. On timeout the buffer is gone with
/// the cancelled write and an empty one comes back; the caller is about to
/// drop the connection anyway.
pub async fn write_all_within(stream: &mut TcpStream, buf: Vec<u8>, limit: Duration) -> (io::Result<()>, Vec<u8>) {
    match monoio::time::timeout(limit, stream.write_all(buf)).await {
        Ok((res, back)) => {
            // Every client write goes through here, so this is where bytes out are counted.
            if let Ok(n) = res {
                crate::metrics::add_bytes_out(n);
            }
            (res.map(|_| ()), back)
        }
        Err(_) => (Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")), Vec::new()),
    }
}

/// Closes a connection whose request body was not read, the way HTTP/1.1
/// asks: stop writing, then read and discard what the client is still
/// sending, for a bounded time and size. Closing with unread bytes would
/// make the kernel answer with a reset, and the client might never see the
/// error response that was just written.
pub async fn linger_close(stream: &mut TcpStream, max_bytes: usize, limit: Duration) {
    // SAFETY: plain shutdown(2) on an fd owned by `stream`.
    unsafe {
        libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR);
    }
    let deadline = monoio::time::Instant::now() + limit;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut drained = 0usize;
    while drained < max_bytes {
        buf.clear();
        let cap = buf.capacity();
        match monoio::time::timeout_at(deadline, stream.read(buf.slice_mut(0..cap))).await {
            Ok((Ok(n), slice)) if n > 0 => {
                drained += n;
                buf = slice.into_inner();
            }
            _ => return,
        }
    }
}
