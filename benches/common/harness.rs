//! An in-process ccproxy in front of an in-process mock upstream, and a
//! blocking keep-alive HTTP/1.1 client to drive it.
//!
//! Receives bench requests (Anthropic JSON bodies); emits proxied responses.
//! The mock answers canned OpenAI JSON, an OpenAI SSE stream (when the proxy
//! asks for `text/event-stream`) or an OpenAI 400 (for model `mock-error`),
//! always with keep-alive, from one std thread per connection, reusing its
//! buffers so it allocates nothing per request. Mock and client threads are
//! left out of the allocation counters.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ccproxy::config::{Cli, Config};
use ccproxy::http::body::BodyDecoder;
use ccproxy::http::client::parse_response_head;
use ccproxy::http::request::{parse_request_head, BodyKind, Limits};

use super::alloc::ignore_this_thread;

/// The proxy and its mock upstream, started once per bench process.
pub struct Env {
    pub proxy: SocketAddr,
    pub mock: SocketAddr,
}

/// Starts (once) the mock and a proxy with `CCPROXY_BENCH_WORKERS` workers
/// (default 1) pointing at it.
pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let mock = start_mock();
        let workers = std::env::var("CCPROXY_BENCH_WORKERS").ok().and_then(|w| w.parse().ok()).unwrap_or(1);
        let cli = Cli {
            listen: Some("127.0.0.1:0".into()),
            workers: Some(workers),
            upstream: Some(format!("http://{mock}/v1")),
            ..Cli::default()
        };
        let config = Config::load_with_home(&cli, None, &|_| None).expect("bench config");
        let running = ccproxy::server::start(config).expect("proxy starts");
        let proxy = running.addr;
        // The workers run for the life of the process; their handles are
        // dropped (detached).
        drop(running);
        // Wait for the proxy's tokenizer warm-up (a OnceLock: this blocks
        // until it is built) so it neither competes with nor counts in the
        // first measurements.
        ccproxy::tokens::warm_up();
        Env { proxy, mock }
    })
}

// ---------------------------------------------------------------- mock upstream

struct Canned {
    json: Vec<u8>,
    sse: Vec<u8>,
    error: Vec<u8>,
}

fn canned() -> Canned {
    let body = super::openai_simple();
    let mut json = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: keep-alive\r\n\r\n",
        body.len()
    )
    .into_bytes();
    json.extend_from_slice(&body);

    let mut sse =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
            .to_vec();
    // Providers flush a few events per chunk; group them by four.
    for group in super::openai_text_stream(24).chunks(4) {
        let data = group.concat();
        sse.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        sse.extend_from_slice(data.as_bytes());
        sse.extend_from_slice(b"\r\n");
    }
    sse.extend_from_slice(b"0\r\n\r\n");

    let mut error = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: keep-alive\r\n\r\n",
        super::OPENAI_ERROR.len()
    )
    .into_bytes();
    error.extend_from_slice(super::OPENAI_ERROR);
    Canned { json, sse, error }
}

/// Starts the mock upstream on an ephemeral port.
pub fn start_mock() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("mock binds");
    let addr = listener.local_addr().expect("mock addr");
    let canned: &'static Canned = Box::leak(Box::new(canned()));
    std::thread::Builder::new()
        .name("mock-accept".into())
        .spawn(move || {
            ignore_this_thread();
            for stream in listener.incoming().flatten() {
                let _ = std::thread::Builder::new().name("mock-conn".into()).spawn(move || {
                    ignore_this_thread();
                    let _ = mock_conn(stream, canned);
                });
            }
        })
        .expect("mock thread");
    addr
}

fn mock_conn(mut s: TcpStream, canned: &Canned) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let limits = Limits::default();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0;
    loop {
        let head = loop {
            if let Ok(Some(h)) = parse_request_head(&buf[..len], &limits) {
                break h;
            }
            if len == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            let n = s.read(&mut buf[len..])?;
            if n == 0 {
                return Ok(());
            }
            len += n;
        };
        let body_len = match head.body {
            BodyKind::Length(n) => n as usize,
            _ => 0,
        };
        let total = head.head_len + body_len;
        while len < total {
            if buf.len() < total {
                buf.resize(total.next_power_of_two(), 0);
            }
            let n = s.read(&mut buf[len..])?;
            if n == 0 {
                return Ok(());
            }
            len += n;
        }
        let head_bytes = &buf[..head.head_len];
        let body = &buf[head.head_len..total];
        let reply = if body.starts_with(b"{\"model\":\"mock-error\"") {
            &canned.error
        } else if contains(head_bytes, b"text/event-stream") {
            &canned.sse
        } else {
            &canned.json
        };
        s.write_all(reply)?;
        buf.copy_within(total..len, 0);
        len -= total;
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------- client

/// One keep-alive connection to the proxy. Buffers are reused.
pub struct Client {
    stream: TcpStream,
    req: Vec<u8>,
    buf: Vec<u8>,
    /// The last response's decoded body.
    pub body: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to proxy");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            req: Vec::with_capacity(128 * 1024),
            buf: vec![0; 64 * 1024],
            body: Vec::with_capacity(64 * 1024),
        }
    }

    /// `POST /v1/messages` with the headers Claude Code sends; returns the status.
    pub fn messages(&mut self, body: &[u8]) -> u16 {
        self.req.clear();
        self.req.extend_from_slice(
            b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n\
              x-api-key: bench\r\nanthropic-version: 2023-06-01\r\nanthropic-beta: bench-1\r\nx-app: cli\r\n\
              connection: keep-alive\r\ncontent-length: ",
        );
        self.req.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        self.req.extend_from_slice(b"\r\n\r\n");
        self.req.extend_from_slice(body);
        self.exchange()
    }

    pub fn get(&mut self, path: &str) -> u16 {
        self.req.clear();
        self.req.extend_from_slice(b"GET ");
        self.req.extend_from_slice(path.as_bytes());
        self.req.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nconnection: keep-alive\r\n\r\n");
        self.exchange()
    }

    fn exchange(&mut self) -> u16 {
        self.stream.write_all(&self.req).expect("send request");
        self.body.clear();
        let mut len = 0;
        let head = loop {
            if let Some(h) = parse_response_head(&self.buf[..len], false).expect("valid response head") {
                break h;
            }
            len += self.read_more(len);
        };
        let mut dec = BodyDecoder::upstream(head.body);
        let mut pos = head.head_len;
        loop {
            // Everything is consumed unless the body ends, so the next read
            // can start at the front of the buffer.
            let (_, done) = dec.decode(&self.buf[pos..len], &mut self.body).expect("valid body");
            if done {
                break;
            }
            pos = 0;
            len = self.read_more(0);
        }
        assert!(head.keep_alive, "proxy closed the connection");
        head.status
    }

    /// Reads into `buf[at..]`, growing it when full; returns bytes read.
    fn read_more(&mut self, at: usize) -> usize {
        if at == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.stream.read(&mut self.buf[at..]).expect("read response");
        assert!(n > 0, "proxy closed the connection mid-response");
        n
    }
}

/// Runs `iters` calls of `f` spread over `clients` (one thread each, all in
/// flight at once) and returns the wall time. Bench threads are left out of
/// the allocation counters.
pub fn run_concurrent(clients: &mut [Client], iters: u64, f: impl Fn(&mut Client) + Sync) -> Duration {
    let n = clients.len() as u64;
    let f = &f;
    let start = Instant::now();
    std::thread::scope(|s| {
        for (i, c) in clients.iter_mut().enumerate() {
            let k = iters / n + u64::from((i as u64) < iters % n);
            s.spawn(move || {
                ignore_this_thread();
                for _ in 0..k {
                    f(c);
                }
            });
        }
    });
    start.elapsed()
}

pub fn clients(n: usize) -> Vec<Client> {
    (0..n).map(|_| Client::connect(env().proxy)).collect()
}
