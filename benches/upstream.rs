//! Upstream-side benches (the seed's `internal/provider/common` list): the
//! sans-IO HTTP client pieces, error creation, body de-framing of 1 KB to
//! 1 MB bodies, and concurrent and health round trips through the proxy.
//!
//! Receives canned heads/bodies built here and from `common`; emits
//! criterion timings with bytes/s throughput where it applies.

mod common;

use std::hint::black_box;

use ccproxy::error::ProxyError;
use ccproxy::http::body::BodyDecoder;
use ccproxy::http::client::{parse_response_head, write_request_head};
use ccproxy::http::request::BodyKind;
use common::alloc;
use common::harness::{clients, env, run_concurrent, Client};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ndate: Mon, 01 Jan 2029 00:00:00 GMT\r\ncontent-type: text/event-stream; charset=utf-8\r\n\
transfer-encoding: chunked\r\nconnection: keep-alive\r\ncache-control: no-cache\r\nx-request-id: req_0123456789abcdef\r\n\
openai-processing-ms: 143\r\nx-ratelimit-remaining-requests: 9999\r\nx-ratelimit-remaining-tokens: 1999000\r\n\r\n";

const JSON_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ndate: Mon, 01 Jan 2029 00:00:00 GMT\r\ncontent-type: application/json\r\n\
content-length: 1234\r\nconnection: keep-alive\r\nx-request-id: req_0123456789abcdef\r\n\r\n";

const ERROR_HEAD: &[u8] =
    b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: 140\r\n\
retry-after: 5\r\nconnection: keep-alive\r\n\r\n";

/// Frames `payload` as chunked transfer encoding with `chunk`-byte chunks.
fn chunked(payload: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload.len() / chunk.max(1) * 8 + 16);
    for c in payload.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// De-frames `wire` fed in `read`-byte reads, as socket reads deliver it.
fn decode(kind: BodyKind, wire: &[u8], read: usize, out: &mut Vec<u8>) {
    out.clear();
    let mut dec = BodyDecoder::upstream(kind);
    for piece in wire.chunks(read) {
        let (used, done) = dec.decode(piece, out).expect("valid body");
        debug_assert_eq!(used, piece.len());
        if done {
            break;
        }
    }
    assert!(dec.is_done());
}

fn http_client(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("http_client");
    let mut head = Vec::with_capacity(512);
    g.bench_function("write_request_head", |b| {
        b.iter(|| {
            head.clear();
            write_request_head(
                &mut head,
                black_box("/v1/chat/completions"),
                black_box("api.example.com"),
                Some(black_box("sk-bench-0123456789abcdef0123456789abcdef")),
                true,
                black_box(75_000),
                &[],
            );
            black_box(head.len())
        })
    });
    for (name, h) in [("parse_response_head_sse", SSE_HEAD), ("parse_response_head_json", JSON_HEAD)] {
        g.throughput(Throughput::Bytes(h.len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(parse_response_head(black_box(h), false).expect("head"))));
    }
    // A whole streamed answer as a provider frames it: 4 events per chunk.
    let events = common::openai_text_stream(400);
    let groups: Vec<String> = events.chunks(4).map(<[String]>::concat).collect();
    let mut wire = Vec::new();
    for gr in &groups {
        wire.extend_from_slice(format!("{:x}\r\n", gr.len()).as_bytes());
        wire.extend_from_slice(gr.as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let mut out = Vec::with_capacity(wire.len());
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("body_decoder_chunked_sse_400_events", |b| {
        b.iter(|| decode(BodyKind::Chunked, black_box(&wire), 16 * 1024, &mut out))
    });
    g.finish();
}

fn error_creation(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("error_creation");
    let mut out = Vec::with_capacity(1024);
    g.bench_function("from_upstream_status_429_write_json", |b| {
        b.iter(|| {
            let e = ProxyError::from_upstream_status(black_box(429), black_box(common::OPENAI_ERROR), Some(5));
            out.clear();
            e.write_json(&mut out);
            black_box(out.len())
        })
    });
    g.bench_function("from_upstream_status_empty_body", |b| {
        b.iter(|| black_box(ProxyError::from_upstream_status(black_box(503), b"", None)))
    });
    g.bench_function("bad_request_write_json", |b| {
        b.iter(|| {
            let e = ProxyError::bad_request(black_box("messages.3.content.0: unknown block type"));
            out.clear();
            e.write_json(&mut out);
            black_box(out.len())
        })
    });
    g.bench_function("parse_error_head", |b| {
        b.iter(|| black_box(parse_response_head(black_box(ERROR_HEAD), false).expect("head")))
    });
    g.finish();
}

fn large_payload(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("large_payload");
    let mut out = Vec::with_capacity(2 * 1024 * 1024);
    for size in [1024usize, 10 * 1024, 100 * 1024, 1024 * 1024] {
        let payload = common::lorem(size, 5).into_bytes();
        let label = if size >= 1024 * 1024 { format!("{}MB", size >> 20) } else { format!("{}KB", size >> 10) };
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("content_length_{label}"), |b| {
            b.iter(|| decode(BodyKind::Length(payload.len() as u64), black_box(&payload), 16 * 1024, &mut out))
        });
        let wire = chunked(&payload, 8 * 1024);
        g.bench_function(format!("chunked_8KB_{label}"), |b| {
            b.iter(|| decode(BodyKind::Chunked, black_box(&wire), 16 * 1024, &mut out))
        });
    }
    g.finish();
}

fn concurrent_requests(cr: &mut Criterion) {
    let body = common::simple_request(true);
    let mut g = cr.benchmark_group("concurrent_requests");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    for n in [2usize, 8, 32] {
        alloc::ignore_this_thread();
        let mut cs = clients(n);
        g.bench_function(format!("stream_{n}_clients"), |b| {
            b.iter_custom(|iters| run_concurrent(&mut cs, iters, |c| assert_eq!(c.messages(&body), 200)))
        });
    }
    g.finish();
}

fn health_check(cr: &mut Criterion) {
    alloc::ignore_this_thread();
    let mut c = Client::connect(env().proxy);
    let mut direct = Client::connect(env().mock);
    let probe = common::simple_request(false);
    // Same group as the handler bench; the `upstream_` prefix keeps the
    // criterion result directories apart.
    let mut g = cr.benchmark_group("health_check");
    g.throughput(Throughput::Elements(1));
    g.bench_function("upstream_proxy_health", |b| b.iter(|| assert_eq!(c.get("/health"), 200)));
    g.bench_function("upstream_proxy_status", |b| b.iter(|| assert_eq!(c.get("/status"), 200)));
    // The floor: one keep-alive round trip straight to the mock provider.
    g.bench_function("upstream_mock_direct", |b| b.iter(|| assert_eq!(direct.messages(&probe), 200)));
    g.finish();
}

criterion_group!(benches, http_client, error_creation, large_payload, concurrent_requests, health_check);
criterion_main!(benches);
