//! `loadgen mock`: a thread-per-core, OpenAI-compatible mock upstream.
//!
//! Receives HTTP/1.1 requests from the proxy (or from `loadgen run` directly) on `--listen`, one
//! SO_REUSEPORT listener per pinned thread. Emits pre-rendered answers from `mock_profiles.rs`:
//! `POST …/chat/completions` gets a chat.completion JSON, or an SSE stream when the body contains
//! `"stream":true` (found by byte search, no JSON parse), with optional time-to-first-byte, inter-chunk
//! delay and the configured fault on every Nth completion request. `GET /health` and `HEAD` answer 200.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use monoio::buf::{IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};

use crate::http1::{self, BodyDecoder, Framing, Method};
use crate::mock_profiles::{self, Fault, Quirks, Rendered};

const MAX_REQUEST: usize = 64 << 20;

#[derive(Debug, Clone)]
pub struct MockConfig {
    pub listen: SocketAddr,
    pub threads: usize,
    pub quirks: Quirks,
    pub ttfb: Duration,
    pub chunks: usize,
    pub chunk_delay: Duration,
    pub size: usize,
    pub fault: Fault,
    pub fault_every: u64,
}

struct Shared {
    cfg: MockConfig,
    r: Rendered,
    completions: AtomicU64,
}

/// A running mock; its threads live until the process exits.
#[derive(Debug, Clone, Copy)]
pub struct MockHandle {
    pub addr: SocketAddr,
}

/// Starts the mock's threads and returns once every listener is bound.
pub fn spawn(cfg: MockConfig) -> anyhow::Result<MockHandle> {
    let r = mock_profiles::render(cfg.quirks, cfg.chunks, cfg.size, cfg.fault);
    // Leaked on purpose: the rendered bytes are written as `&'static [u8]` by every connection without
    // reference counting, and a mock lives as long as its process.
    let shared: &'static Shared = Box::leak(Box::new(Shared { cfg: cfg.clone(), r, completions: AtomicU64::new(0) }));
    let threads = cfg.threads.max(1);
    let mut addr = cfg.listen;
    for i in 0..threads {
        let (tx, rx) = mpsc::channel();
        crate::spawn_pinned(format!("mock-{i}"), i, move || serve_thread(addr, shared, tx))?;
        // Thread 0 resolves port 0; the others join the same port through SO_REUSEPORT.
        addr = rx.recv().map_err(|_| anyhow::anyhow!("mock thread {i} died"))??;
    }
    Ok(MockHandle { addr })
}

fn serve_thread(addr: SocketAddr, shared: &'static Shared, tx: mpsc::Sender<std::io::Result<SocketAddr>>) {
    let mut rt = match crate::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = tx.send(Err(e));
            return;
        }
    };
    rt.block_on(async move {
        let opts = ListenerOpts::new().reuse_port(true).reuse_addr(true).backlog(4096);
        let listener = match TcpListener::bind_with_config(addr, &opts) {
            Ok(l) => l,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        let _ = tx.send(listener.local_addr());
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    monoio::spawn(connection(stream, shared));
                }
                // Out of descriptors or similar: back off instead of spinning.
                Err(_) => monoio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    });
}

/// Reads more bytes into the spare capacity of `buf`; returns bytes read (0 = EOF).
pub async fn read_more(stream: &mut TcpStream, buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
    let mut buf = buf;
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(buf.capacity().max(16 * 1024));
    }
    let len = buf.len();
    let cap = buf.capacity();
    let slice: SliceMut<Vec<u8>> = buf.slice_mut(len..cap);
    let (res, slice) = stream.read(slice).await;
    (res, slice.into_inner())
}

async fn write(stream: &mut TcpStream, bytes: &'static [u8]) -> bool {
    !bytes.is_empty() && stream.write_all(bytes).await.0.is_ok()
}

async fn connection(mut stream: TcpStream, shared: &'static Shared) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut body: Vec<u8> = Vec::new();
    loop {
        let head = loop {
            match http1::parse_request_head(&buf) {
                Ok(Some(h)) => break h,
                Ok(None) if buf.len() < MAX_REQUEST => {}
                _ => {
                    write(&mut stream, mock_profiles::BAD_REQUEST).await;
                    return;
                }
            }
            let (res, b) = read_more(&mut stream, buf).await;
            buf = b;
            if !matches!(res, Ok(n) if n > 0) {
                return;
            }
        };
        // Collect the body (Content-Length is the normal case; chunked is decoded).
        let mut dec = BodyDecoder::new(match head.framing {
            Framing::UntilClose => Framing::Length(0),
            f => f,
        });
        body.clear();
        let mut pos = head.head_len;
        loop {
            match dec.feed(&buf[pos..], &mut |b| body.extend_from_slice(b)) {
                Ok(n) => pos += n,
                Err(_) => {
                    write(&mut stream, mock_profiles::BAD_REQUEST).await;
                    return;
                }
            }
            if dec.is_done() {
                break;
            }
            if body.len() > MAX_REQUEST {
                return;
            }
            // Everything buffered is body; start over with an empty buffer to keep it small.
            buf.clear();
            pos = 0;
            let (res, b) = read_more(&mut stream, buf).await;
            buf = b;
            if !matches!(res, Ok(n) if n > 0) {
                return;
            }
        }
        buf.drain(..pos);
        let path = head.path.split('?').next().unwrap_or("");
        let keep = match head.method {
            Method::Get if path == "/health" => write(&mut stream, mock_profiles::HEALTH).await,
            Method::Head | Method::Get if path == "/" => {
                write(&mut stream, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await
            }
            Method::Post if path.ends_with("/chat/completions") => {
                answer(&mut stream, shared, http1::wants_stream(&body)).await
            }
            _ => write(&mut stream, mock_profiles::NOT_FOUND).await,
        };
        if !keep || head.close {
            return;
        }
    }
}

/// Writes one completion answer; returns whether the connection may be reused.
async fn answer(stream: &mut TcpStream, shared: &'static Shared, wants_stream: bool) -> bool {
    let cfg = &shared.cfg;
    let r = &shared.r;
    let n = shared.completions.fetch_add(1, Ordering::Relaxed) + 1;
    let fault = if n.is_multiple_of(cfg.fault_every.max(1)) { cfg.fault } else { Fault::None };
    let mut first_byte_delay = cfg.ttfb;
    match fault {
        Fault::Status { .. } => return write(stream, &r.status_fault).await,
        Fault::SlowFirstByte(d) => first_byte_delay += d,
        _ => {}
    }
    if !first_byte_delay.is_zero() {
        monoio::time::sleep(first_byte_delay).await;
    }
    match (fault, wants_stream) {
        (Fault::ResetMidStream, false) => {
            let _ = write(stream, &r.json[..r.json.len() / 2]).await;
            reset(stream);
            false
        }
        (Fault::ResetMidStream, true) => {
            let half = r.frames.len() / 2;
            if write(stream, &r.stream_head).await {
                for f in &r.frames[..half] {
                    if !write(stream, f).await {
                        break;
                    }
                }
            }
            reset(stream);
            false
        }
        (Fault::Malformed, false) => write(stream, &r.malformed_json).await,
        (Fault::Malformed, true) => stream_frames(stream, cfg, &r.stream_head, &r.malformed_frames, r.tail).await,
        (_, false) => write(stream, &r.json).await,
        (_, true) if cfg.chunk_delay.is_zero() => write(stream, &r.stream_all).await,
        (_, true) => stream_frames(stream, cfg, &r.stream_head, &r.frames, r.tail).await,
    }
}

async fn stream_frames(
    stream: &mut TcpStream,
    cfg: &MockConfig,
    head: &'static [u8],
    frames: &'static [Vec<u8>],
    tail: &'static [u8],
) -> bool {
    if !write(stream, head).await {
        return false;
    }
    for (i, f) in frames.iter().enumerate() {
        if i > 0 && !cfg.chunk_delay.is_zero() {
            monoio::time::sleep(cfg.chunk_delay).await;
        }
        if !write(stream, f).await {
            return false;
        }
    }
    write(stream, tail).await
}

/// Makes the coming close a TCP RST rather than a FIN, as a crashed upstream or middlebox would.
fn reset(stream: &TcpStream) {
    // SAFETY: the fd belongs to `stream`, which outlives this borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let _ = socket2::SockRef::from(&fd).set_linger(Some(Duration::ZERO));
}

/// `loadgen mock`: start and serve until killed.
pub fn main(cfg: MockConfig) -> anyhow::Result<()> {
    let h = spawn(cfg.clone())?;
    println!(
        "loadgen mock listening on http://{} ({} threads, profile {:?}, fault {:?} every {})",
        h.addr, cfg.threads, cfg.quirks, cfg.fault, cfg.fault_every
    );
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::parse_response_head;
    use std::io::{Read, Write};

    fn cfg(quirks: Quirks, fault: Fault, every: u64) -> MockConfig {
        MockConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            threads: 1,
            quirks,
            ttfb: Duration::ZERO,
            chunks: 4,
            chunk_delay: Duration::ZERO,
            size: 100,
            fault,
            fault_every: every,
        }
    }

    fn post(stream: bool) -> Vec<u8> {
        let body = format!(r#"{{"model":"m","messages":[],"stream":{stream}}}"#);
        format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}", body.len())
            .into_bytes()
    }

    /// Sends one request and reads one full response: (status, head text, body, reset/eof error).
    fn exchange(s: &mut std::net::TcpStream, req: &[u8]) -> (u16, String, Vec<u8>, Option<std::io::ErrorKind>) {
        s.write_all(req).unwrap();
        let mut buf = Vec::new();
        let mut tmp = [0u8; 8192];
        loop {
            if let Ok(Some(h)) = parse_response_head(&buf) {
                let mut body = Vec::new();
                let mut dec = BodyDecoder::new(h.framing);
                let mut pos = h.head_len;
                loop {
                    pos += dec.feed(&buf[pos..], &mut |b| body.extend_from_slice(b)).unwrap();
                    if dec.is_done() {
                        let head = String::from_utf8_lossy(&buf[..h.head_len]).into_owned();
                        return (h.status, head, body, None);
                    }
                    match s.read(&mut tmp) {
                        Ok(0) => return (h.status, String::new(), body, Some(std::io::ErrorKind::UnexpectedEof)),
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        Err(e) => return (h.status, String::new(), body, Some(e.kind())),
                    }
                }
            }
            match s.read(&mut tmp) {
                Ok(0) => return (0, String::new(), buf, Some(std::io::ErrorKind::UnexpectedEof)),
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
                Err(e) => return (0, String::new(), buf, Some(e.kind())),
            }
        }
    }

    fn connect(h: MockHandle) -> std::net::TcpStream {
        let s = std::net::TcpStream::connect(h.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    #[test]
    fn serves_json_stream_and_health_on_one_connection() {
        let h = spawn(cfg(Quirks::Deepseek, Fault::None, 1)).unwrap();
        let mut s = connect(h);
        let (status, _, body, err) = exchange(&mut s, &post(false));
        assert_eq!((status, err), (200, None));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["choices"][0]["message"]["reasoning_content"].is_string());
        let (status, head, body, err) = exchange(&mut s, &post(true));
        assert_eq!((status, err), (200, None));
        assert!(head.contains("text/event-stream"));
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("\"reasoning_content\"") && text.ends_with("data: [DONE]\n\n"));
        let (status, _, body, _) = exchange(&mut s, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n");
        assert_eq!((status, body.as_slice()), (200, &b"{\"status\":\"ok\"}"[..]));
        let (status, _, _, _) = exchange(&mut s, b"POST /nope HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(status, 404);
    }

    #[test]
    fn status_fault_every_second_request_with_retry_after() {
        let h = spawn(cfg(Quirks::Openai, Fault::Status { code: 429, retry_after: Some(3) }, 2)).unwrap();
        let mut s = connect(h);
        let statuses: Vec<(u16, bool)> = (0..4)
            .map(|_| {
                let (st, head, _, _) = exchange(&mut s, &post(false));
                (st, head.contains("retry-after: 3"))
            })
            .collect();
        assert_eq!(statuses, vec![(200, false), (429, true), (200, false), (429, true)]);
    }

    #[test]
    fn reset_mid_stream_cuts_the_stream() {
        let h = spawn(cfg(Quirks::Openai, Fault::ResetMidStream, 1)).unwrap();
        let mut s = connect(h);
        let (status, _, body, err) = exchange(&mut s, &post(true));
        assert_eq!(status, 200);
        assert!(
            matches!(err, Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof)),
            "{err:?}"
        );
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("data: {") && !text.contains("[DONE]"), "{text}");
    }

    #[test]
    fn malformed_keeps_framing_but_breaks_json() {
        let h = spawn(cfg(Quirks::Openai, Fault::Malformed, 1)).unwrap();
        let mut s = connect(h);
        let (status, _, body, err) = exchange(&mut s, &post(false));
        assert_eq!((status, err), (200, None));
        assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());
        let (status, _, body, err) = exchange(&mut s, &post(true));
        assert_eq!((status, err), (200, None));
        let text = String::from_utf8(body).unwrap();
        let bad = text
            .split("\n\n")
            .filter_map(|f| f.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .filter(|d| serde_json::from_str::<serde_json::Value>(d).is_err())
            .count();
        assert_eq!(bad, 1);
    }

    #[test]
    fn slow_first_byte_still_answers_correctly() {
        // Only the behaviour is asserted, never the timing.
        let h = spawn(cfg(Quirks::Gemini, Fault::SlowFirstByte(Duration::from_millis(20)), 1)).unwrap();
        let mut s = connect(h);
        let (status, _, body, err) = exchange(&mut s, &post(true));
        assert_eq!((status, err), (200, None));
        assert!(String::from_utf8(body).unwrap().contains("\"tool_calls\""));
    }
}
