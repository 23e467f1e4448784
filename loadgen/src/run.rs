//! `loadgen run`: the thread-per-core HTTP/1.1 client engine.
//!
//! Receives a `RunConfig` from the CLI (target URL, request body, connections, optional rate, threads,
//! duration, warm-up, stream flag, expected protocol). Spreads the connections over pinned monoio
//! threads; each connection sends keep-alive requests paced by `schedule.rs` (back-to-back in closed
//! loop, on a constant schedule in open loop), reads each response with loadgen's own framing
//! (`http1.rs`), validates it (`validate.rs`) and records µs latencies and error kinds. Emits a
//! merged `RunReport` (`report.rs`).

use std::cell::RefCell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use serde_json::Value;

use crate::http1::{self, BodyDecoder, Framing};
use crate::mock::read_more;
use crate::report::{Metric, Metrics, RunReport};
use crate::schedule::{elapsed_us, Clock, Pacer, RealClock, Schedule, Step, Window};
use crate::validate::{check_json_body, check_status, ErrorKind, Expect, SseValidator};

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Path and query.
    pub path: String,
}

/// Parses `http://host[:port][/path][?query]` (plain HTTP only) and resolves the host once.
pub fn parse_url(url: &str) -> anyhow::Result<Target> {
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow::anyhow!("only http:// URLs are supported: {url}"))?;
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port.to_socket_addrs()?.next().ok_or_else(|| anyhow::anyhow!("{authority} did not resolve"))?;
    Ok(Target { addr, host: authority.to_string(), path })
}

/// Appends `query` (e.g. `beta=true`) to a path that may already have one.
pub fn with_query(path: &str, query: &str) -> String {
    if path.contains('?') {
        format!("{path}&{query}")
    } else {
        format!("{path}?{query}")
    }
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: Target,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub connections: usize,
    /// Open loop at this many requests/s in total; closed loop when `None`.
    pub rate: Option<f64>,
    pub threads: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub stream: bool,
    pub expect: Expect,
    pub timeout: Duration,
    pub max_requests: Option<u64>,
    /// Echoed into `summary.json`.
    pub summary: Value,
}

/// The complete request bytes, rendered once per run.
pub fn build_request(target: &Target, body: &[u8], headers: &[(String, String)]) -> Vec<u8> {
    let mut head = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         anthropic-version: 2023-06-01\r\nx-api-key: loadgen\r\nuser-agent: loadgen/{}\r\n",
        target.path,
        target.host,
        body.len(),
        env!("CARGO_PKG_VERSION")
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

struct Shared {
    cfg: RunConfig,
    request: Vec<u8>,
    base: Instant,
    window: Window,
    issued: AtomicU64,
}

struct Ctx {
    shared: Arc<Shared>,
    request: Rc<Vec<u8>>,
    clock: RealClock,
    metrics: RefCell<Metrics>,
}

/// Runs the load and returns the merged report.
pub fn execute(cfg: RunConfig) -> anyhow::Result<RunReport> {
    let threads = cfg.threads.clamp(1, cfg.connections.max(1));
    let warmup_ns = cfg.warmup.as_nanos() as u64;
    let window = Window { warmup_end_ns: warmup_ns, end_ns: warmup_ns + cfg.duration.as_nanos() as u64 };
    let request = build_request(&cfg.target, &cfg.body, &cfg.headers);
    let started = SystemTime::now();
    let shared = Arc::new(Shared { cfg, request, base: Instant::now(), window, issued: AtomicU64::new(0) });
    let mut handles = Vec::new();
    for t in 0..threads {
        let shared = shared.clone();
        handles.push(crate::spawn_pinned(format!("run-{t}"), t, move || thread_main(shared, t, threads))?);
    }
    let mut metrics = Metrics::new();
    for h in handles {
        let m = h.join().map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        metrics.merge(&m);
    }
    let measured = Duration::from_nanos(metrics.last_done_ns.saturating_sub(window.warmup_end_ns));
    Ok(RunReport { config: shared.cfg.summary.clone(), metrics, measured, started, finished: SystemTime::now() })
}

fn thread_main(shared: Arc<Shared>, t: usize, threads: usize) -> anyhow::Result<Metrics> {
    let mut rt = crate::runtime()?;
    let ctx = Rc::new(Ctx {
        request: Rc::new(shared.request.clone()),
        clock: RealClock::new(shared.base),
        metrics: RefCell::new(Metrics::new()),
        shared,
    });
    let c = ctx.clone();
    rt.block_on(async move {
        let cfg = &c.shared.cfg;
        let tasks: Vec<_> = (t..cfg.connections)
            .step_by(threads)
            .map(|i| {
                let pacer = match cfg.rate {
                    Some(rate) => Pacer::open(c.shared.window, Schedule::for_connection(0, rate, cfg.connections, i)),
                    None => Pacer::closed(c.shared.window),
                };
                monoio::spawn(connection(c.clone(), pacer))
            })
            .collect();
        for task in tasks {
            task.await;
        }
    });
    let m = ctx.metrics.borrow().clone();
    Ok(m)
}

async fn connection(ctx: Rc<Ctx>, mut pacer: Pacer) {
    let cfg = &ctx.shared.cfg;
    let mut conn: Option<TcpStream> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut body: Vec<u8> = Vec::new();
    loop {
        let now = ctx.clock.now_ns();
        let (origin_ns, record) = match pacer.next(now) {
            Step::Stop => return,
            Step::WaitUntil(t) => {
                monoio::time::sleep(Duration::from_nanos(t - now)).await;
                continue;
            }
            Step::Send { origin_ns, record } => (origin_ns, record),
        };
        if let Some(max) = cfg.max_requests {
            if ctx.shared.issued.fetch_add(1, Ordering::Relaxed) >= max {
                return;
            }
        }
        let stream = match conn.as_mut() {
            Some(s) => s,
            None => match monoio::time::timeout(cfg.timeout, TcpStream::connect_addr(cfg.target.addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    conn.insert(s)
                }
                Ok(Err(_)) | Err(_) => {
                    ctx.metrics.borrow_mut().errors.add(ErrorKind::Connect);
                    // Do not spin: a refused connect returns at once and would count millions of errors.
                    monoio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let out = monoio::time::timeout(cfg.timeout, exchange(stream, &ctx, &mut buf, &mut body)).await;
        let done_ns = ctx.clock.now_ns();
        let mut m = ctx.metrics.borrow_mut();
        match out {
            Err(_) => {
                m.errors.add(ErrorKind::Timeout);
                conn = None;
            }
            Ok(ex) => {
                if !ex.reusable {
                    conn = None;
                }
                match ex.result {
                    Err(kind) => m.errors.add(kind),
                    Ok(()) if record => {
                        m.ok += 1;
                        m.last_done_ns = m.last_done_ns.max(done_ns);
                        m.record(Metric::Latency, elapsed_us(origin_ns, done_ns));
                        if let Some(t) = ex.ttfb_ns {
                            m.record(Metric::Ttfb, elapsed_us(origin_ns, t));
                        }
                        if let Some(t) = ex.first_delta_ns {
                            m.record(Metric::FirstDelta, elapsed_us(origin_ns, t));
                        }
                    }
                    Ok(()) => {}
                }
            }
        }
    }
}

struct Exchange {
    result: Result<(), ErrorKind>,
    reusable: bool,
    ttfb_ns: Option<u64>,
    first_delta_ns: Option<u64>,
}

impl Exchange {
    fn fail(kind: ErrorKind) -> Self {
        Self { result: Err(kind), reusable: false, ttfb_ns: None, first_delta_ns: None }
    }
}

/// One request/response on an open connection.
async fn exchange(s: &mut TcpStream, ctx: &Ctx, buf: &mut Vec<u8>, body: &mut Vec<u8>) -> Exchange {
    let cfg = &ctx.shared.cfg;
    if s.write_all(ctx.request.clone()).await.0.is_err() {
        return Exchange::fail(ErrorKind::Io);
    }
    buf.clear();
    let mut ttfb_ns = None;
    let head = loop {
        match http1::parse_response_head(buf) {
            Ok(Some(h)) => break h,
            Ok(None) => {}
            Err(_) => return Exchange::fail(ErrorKind::BadHttp),
        }
        let (res, b) = read_more(s, std::mem::take(buf)).await;
        *buf = b;
        match res {
            Ok(n) if n > 0 => ttfb_ns = ttfb_ns.or(Some(ctx.clock.now_ns())),
            _ => return Exchange::fail(ErrorKind::Io),
        }
    };
    let status = check_status(head.status);
    // Only a 200 stream is held to SSE rules; error bodies are read (to keep the connection) and ignored.
    let sse_mode = cfg.stream && status.is_ok();
    let mut sse = SseValidator::new(cfg.expect);
    let mut first_delta_ns = None;
    let mut dec = BodyDecoder::new(head.framing);
    body.clear();
    let mut pos = head.head_len;
    loop {
        let mut first = false;
        let fed = dec.feed(&buf[pos..], &mut |b| {
            if sse_mode {
                first |= sse.feed(b);
            } else {
                body.extend_from_slice(b);
            }
        });
        if first {
            first_delta_ns = Some(ctx.clock.now_ns());
        }
        if fed.is_err() {
            return Exchange::fail(ErrorKind::BadHttp);
        }
        if dec.is_done() {
            break;
        }
        buf.clear();
        pos = 0;
        let (res, b) = read_more(s, std::mem::take(buf)).await;
        *buf = b;
        match res {
            Ok(n) if n > 0 => {}
            Ok(_) if head.framing == Framing::UntilClose => break,
            _ if sse_mode => return Exchange::fail(ErrorKind::IncompleteStream),
            _ => return Exchange::fail(ErrorKind::Io),
        }
    }
    let result = status.and_then(|()| if sse_mode { sse.finish() } else { check_json_body(cfg.expect, body) });
    Exchange { result, reusable: !head.close, ttfb_ns: if cfg.stream { ttfb_ns } else { None }, first_delta_ns }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::{self, MockConfig};
    use crate::mock_profiles::{Fault, Quirks};
    use crate::payloads::Profile;

    #[test]
    fn url_parsing() {
        let t = parse_url("http://127.0.0.1:8080/v1/messages?x=1").unwrap();
        assert_eq!((t.addr.port(), t.host.as_str(), t.path.as_str()), (8080, "127.0.0.1:8080", "/v1/messages?x=1"));
        let t = parse_url("http://127.0.0.1").unwrap();
        assert_eq!((t.addr.port(), t.path.as_str()), (80, "/"));
        assert!(parse_url("https://example.com/").is_err());
        assert_eq!(with_query("/v1/messages", "beta=true"), "/v1/messages?beta=true");
        assert_eq!(with_query("/v1/messages?a=b", "beta=true"), "/v1/messages?a=b&beta=true");
    }

    fn mock(quirks: Quirks, fault: Fault) -> SocketAddr {
        mock::spawn(MockConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            threads: 1,
            quirks,
            ttfb: Duration::ZERO,
            chunks: 8,
            chunk_delay: Duration::ZERO,
            size: 300,
            fault,
            fault_every: 3,
        })
        .unwrap()
        .addr
    }

    fn cfg(addr: SocketAddr, stream: bool) -> RunConfig {
        let target = Target { addr, host: addr.to_string(), path: "/v1/chat/completions".into() };
        RunConfig {
            target,
            body: Profile::Tools.body(stream),
            headers: vec![],
            connections: 4,
            rate: None,
            threads: 2,
            duration: Duration::from_secs(60),
            warmup: Duration::ZERO,
            stream,
            expect: Expect::Openai,
            timeout: Duration::from_secs(10),
            max_requests: Some(200),
            summary: Value::Null,
        }
    }

    #[test]
    fn end_to_end_against_the_mock_has_no_errors() {
        let addr = mock(Quirks::Openrouter, Fault::None);
        for stream in [false, true] {
            let r = execute(cfg(addr, stream)).unwrap();
            assert_eq!(r.metrics.errors.total(), 0, "stream={stream}: {}", r.summary_text());
            assert_eq!(r.metrics.ok, 200, "stream={stream}");
            assert_eq!(r.metrics.hist(Metric::Latency).len(), 200);
            let stream_hists = if stream { 200 } else { 0 };
            assert_eq!(r.metrics.hist(Metric::Ttfb).len(), stream_hists);
            assert_eq!(r.metrics.hist(Metric::FirstDelta).len(), stream_hists);
        }
    }

    #[test]
    fn faults_are_counted_by_kind() {
        for (fault, kind) in [
            (Fault::Status { code: 503, retry_after: None }, ErrorKind::Status5xx),
            (Fault::Malformed, ErrorKind::BadJson),
            (Fault::ResetMidStream, ErrorKind::IncompleteStream),
        ] {
            let addr = mock(Quirks::Openai, fault);
            let mut c = cfg(addr, true);
            c.max_requests = Some(30);
            let r = execute(c).unwrap();
            assert_eq!(r.metrics.errors.get(kind), 10, "{fault:?}: {}", r.summary_text());
            assert_eq!(r.metrics.errors.total(), 10, "{fault:?}");
            assert_eq!(r.metrics.ok, 20, "{fault:?}");
        }
    }
}
