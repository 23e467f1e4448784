//! End-to-end handler benches (the seed's `internal/handlers` list): real
//! requests through an in-process ccproxy to an in-process mock upstream
//! over loopback TCP with keep-alive.
//!
//! Receives synthetic Anthropic requests from `common`; emits criterion
//! timings (and requests/s), plus allocations per proxied request counted
//! on the proxy's threads only.

mod common;

use std::hint::black_box;

use common::alloc::{self, AllocBytes, Allocs};
use common::harness::{clients, env, run_concurrent, Client};
use criterion::measurement::Measurement;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

fn client() -> Client {
    // The criterion thread is a bench client here: not the proxy.
    alloc::ignore_this_thread();
    Client::connect(env().proxy)
}

fn ok(c: &mut Client, body: &[u8]) {
    let status = c.messages(body);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&c.body));
}

/// One request per iteration on a keep-alive connection.
fn one<M: Measurement>(g: &mut BenchmarkGroup<'_, M>, name: &str, body: &[u8]) {
    let mut c = client();
    ok(&mut c, body);
    g.bench_function(name, |b| b.iter(|| ok(&mut c, body)));
}

fn proxy_messages_simple(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("proxy_messages_simple");
    g.throughput(Throughput::Elements(1));
    one(&mut g, "json", &common::simple_request(false));
    one(&mut g, "stream", &common::simple_request(true));
    g.finish();
}

fn proxy_messages_large_payload(cr: &mut Criterion) {
    let body = common::large_request(24 * 1024);
    let mut g = cr.benchmark_group("proxy_messages_large_payload");
    g.throughput(Throughput::Bytes(body.len() as u64));
    one(&mut g, "24KB", &body);
    let cc = common::claude_code_request();
    g.throughput(Throughput::Bytes(cc.len() as u64));
    one(&mut g, "claude_code_stream", &cc);
    g.finish();
}

fn proxy_messages_multi_turn(cr: &mut Criterion) {
    let body = common::multi_turn_request(10);
    let mut g = cr.benchmark_group("proxy_messages_multi_turn");
    g.throughput(Throughput::Elements(1));
    one(&mut g, "10_messages", &body);
    g.finish();
}

/// `n` clients in flight at once; criterion reports requests/s.
fn concurrent(cr: &mut Criterion, group: &str, ns: &[usize]) {
    let body = common::simple_request(false);
    let mut g = cr.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    // Each sample spawns one thread per client; few long samples keep that
    // cost negligible.
    g.sample_size(10);
    for &n in ns {
        let mut cs = clients(n);
        g.bench_function(format!("{n}_clients"), |b| {
            b.iter_custom(|iters| run_concurrent(&mut cs, iters, |c| ok(c, &body)))
        });
    }
    g.finish();
}

fn proxy_messages_concurrent(cr: &mut Criterion) {
    concurrent(cr, "proxy_messages_concurrent", &[4, 16]);
}

fn high_concurrency(cr: &mut Criterion) {
    concurrent(cr, "high_concurrency", &[100]);
}

fn health_check(cr: &mut Criterion) {
    let mut c = client();
    let mut g = cr.benchmark_group("health_check");
    g.throughput(Throughput::Elements(1));
    g.bench_function("GET /health", |b| b.iter(|| assert_eq!(c.get("/health"), 200)));
    g.finish();
}

/// sonic-rs encode and decode of an Anthropic message: the DOM round trip
/// ccproxy avoids on the hot path, for scale.
fn json_marshaling(cr: &mut Criterion) {
    let msg = common::multi_turn_request(10);
    let value: sonic_rs::Value = sonic_rs::from_slice(&msg).expect("valid json");
    let mut g = cr.benchmark_group("json_marshaling");
    g.throughput(Throughput::Bytes(msg.len() as u64));
    g.bench_function("decode_value", |b| {
        b.iter(|| black_box(sonic_rs::from_slice::<sonic_rs::Value>(black_box(&msg)).expect("json")))
    });
    g.bench_function("encode_value", |b| b.iter(|| black_box(sonic_rs::to_vec(black_box(&value)).expect("json"))));
    g.bench_function("lazy_get_model", |b| {
        b.iter(|| black_box(sonic_rs::get(black_box(&msg[..]), ["model"]).expect("model").as_raw_str().len()))
    });
    g.finish();
}

fn error_handling(cr: &mut Criterion) {
    let mut c = client();
    let invalid = common::invalid_request();
    let upstream = common::upstream_error_request();
    assert_eq!(c.messages(&invalid), 400);
    assert_eq!(c.messages(&upstream), 400, "{}", String::from_utf8_lossy(&c.body));
    let mut g = cr.benchmark_group("error_handling");
    g.throughput(Throughput::Elements(1));
    g.bench_function("invalid_request_400", |b| b.iter(|| assert_eq!(c.messages(&invalid), 400)));
    g.bench_function("upstream_400", |b| b.iter(|| assert_eq!(c.messages(&upstream), 400)));
    g.finish();
}

/// Allocations (and bytes) per proxied request on the proxy's threads, under
/// criterion and as one plain printed line per case.
fn memory_allocation<M: Measurement>(cr: &mut Criterion<M>, unit: &str) {
    let cases = [
        ("simple", common::simple_request(false)),
        ("simple_stream", common::simple_request(true)),
        ("claude_code_stream", common::claude_code_request()),
    ];
    let mut c = client();
    let mut g = cr.benchmark_group(format!("memory_allocation/{unit}"));
    for (name, body) in &cases {
        for _ in 0..200 {
            ok(&mut c, body);
        }
        if unit == "allocs" {
            let (a, bytes) = alloc::per_call(1000, || ok(&mut c, body));
            println!("memory_allocation/{name}: {a:.2} allocs/request, {bytes:.0} bytes/request (proxy threads)");
        }
        g.bench_function(*name, |b| b.iter(|| ok(&mut c, body)));
    }
    g.finish();
}

fn memory_allocation_count(cr: &mut Criterion<Allocs>) {
    memory_allocation(cr, "allocs");
}

fn memory_allocation_bytes(cr: &mut Criterion<AllocBytes>) {
    memory_allocation(cr, "bytes");
}

criterion_group!(
    timing,
    proxy_messages_simple,
    proxy_messages_large_payload,
    proxy_messages_multi_turn,
    proxy_messages_concurrent,
    health_check,
    json_marshaling,
    error_handling,
    high_concurrency
);
criterion_group! {
    name = allocs;
    config = Criterion::default().with_measurement(Allocs);
    targets = memory_allocation_count
}
criterion_group! {
    name = alloc_bytes;
    config = Criterion::default().with_measurement(AllocBytes);
    targets = memory_allocation_bytes
}
criterion_main!(timing, allocs, alloc_bytes);
