//! Converter benches (the seed's `internal/converter` list): the sans-IO
//! request, response and stream converters on synthetic payloads, plus
//! model routing.
//!
//! Receives payloads from `common`; emits criterion timings with bytes/s
//! (or SSE chunks/s) throughput, and allocations/bytes per conversion via
//! the counting allocator.

mod common;

use std::hint::black_box;

use ccproxy::config::test_provider;
use ccproxy::convert::request::{convert_request, RequestOptions};
use ccproxy::convert::response::convert_response;
use ccproxy::convert::stream::StreamConverter;
use ccproxy::convert::{Quirks, ReasoningParam, ToolNames};
use ccproxy::route::{Route, RouteFacts, Router, Target};
use common::alloc::{self, AllocBytes, Allocs};
use criterion::measurement::Measurement;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

const MSG_ID: &str = "msg_bench0000000000000000000";

fn quirks() -> &'static Quirks {
    static QUIRKS: std::sync::OnceLock<Quirks> = std::sync::OnceLock::new();
    QUIRKS.get_or_init(|| Quirks { reasoning: ReasoningParam::Effort, pdf_file_parts: true, ..Quirks::default() })
}

fn opts() -> RequestOptions<'static> {
    RequestOptions { model: common::MODEL, quirks: quirks(), max_tokens_cap: None }
}

fn to_openai(body: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let meta = convert_request(body, &opts(), out).expect("request converts");
    black_box(meta);
}

fn to_anthropic(body: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let outcome = convert_response(body, common::MODEL, MSG_ID, &ToolNames::default(), out).expect("response converts");
    black_box(outcome);
}

/// Feeds every event as its own read (the worst case for per-push costs).
fn run_stream(events: &[String], out: &mut Vec<u8>) {
    out.clear();
    let mut conv = StreamConverter::new(common::MODEL, MSG_ID);
    let last = events.len().saturating_sub(1);
    for (i, e) in events.iter().enumerate() {
        conv.push(e.as_bytes(), i == last, out);
    }
    assert!(conv.is_finished());
}

fn request_cases() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("simple", common::simple_request(false)),
        ("multi_turn", common::multi_turn_request(10)),
        ("system", common::system_request()),
        ("large_10KB", common::large_request(10 * 1024)),
        ("tools", common::tools_request()),
        ("claude_code_75KB", common::claude_code_request()),
    ]
}

fn response_cases() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("simple", common::openai_simple()),
        ("tool_call", common::openai_tool_call()),
        ("large_10KB", common::openai_large(10 * 1024)),
    ]
}

fn anthropic_to_openai(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("anthropic_to_openai");
    let mut out = Vec::with_capacity(256 * 1024);
    for (name, body) in request_cases() {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| b.iter(|| to_openai(black_box(&body), &mut out)));
    }
    g.finish();
}

fn openai_to_anthropic(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("openai_to_anthropic");
    let mut out = Vec::with_capacity(64 * 1024);
    for (name, body) in response_cases() {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| b.iter(|| to_anthropic(black_box(&body), &mut out)));
    }
    g.finish();
}

fn complex_tool_conversion(cr: &mut Criterion) {
    let req = common::complex_tool_request();
    let resp = common::openai_complex_tools();
    let stream = common::openai_tool_stream(200);
    let stream_bytes: usize = stream.iter().map(String::len).sum();
    let mut out = Vec::with_capacity(256 * 1024);
    let mut g = cr.benchmark_group("complex_tool_conversion");
    g.throughput(Throughput::Bytes(req.len() as u64));
    g.bench_function("request_parallel_calls_and_results", |b| b.iter(|| to_openai(black_box(&req), &mut out)));
    g.throughput(Throughput::Bytes(resp.len() as u64));
    g.bench_function("response_five_tool_calls", |b| b.iter(|| to_anthropic(black_box(&resp), &mut out)));
    g.throughput(Throughput::Bytes(stream_bytes as u64));
    g.bench_function("stream_two_tool_calls_200_chunks", |b| b.iter(|| run_stream(black_box(&stream), &mut out)));
    g.finish();
}

fn stream_conversion(cr: &mut Criterion) {
    let mut out = Vec::with_capacity(1024 * 1024);
    let mut g = cr.benchmark_group("stream_conversion");
    for n in [100usize, 1000] {
        let text = common::openai_text_stream(n);
        g.throughput(Throughput::Elements(text.len() as u64));
        g.bench_function(format!("text_{n}_chunks"), |b| b.iter(|| run_stream(black_box(&text), &mut out)));
        // The same events arriving in one read.
        let whole = [text.concat()];
        g.bench_function(format!("text_{n}_chunks_one_read"), |b| b.iter(|| run_stream(black_box(&whole), &mut out)));
    }
    let tools = common::openai_tool_stream(1000);
    g.throughput(Throughput::Elements(tools.len() as u64));
    g.bench_function("tool_args_1000_chunks", |b| b.iter(|| run_stream(black_box(&tools), &mut out)));
    g.finish();
}

fn model_route(cr: &mut Criterion) {
    let providers: Vec<_> = ["main", "cheap", "big", "search", "reason"].into_iter().map(test_provider).collect();
    let t = |provider: usize, model: &str| Target { provider, model: Some(model.to_string()) };
    let route = |provider: usize, model: &str| Some(Route { target: t(provider, model), fallbacks: vec![] });
    let router = Router {
        map: (0..16).map(|i| (format!("claude-model-{i}"), t(1, &format!("upstream-model-{i}")))).collect(),
        background: route(1, "small"),
        think: route(4, "reasoner"),
        long_context: route(2, "long"),
        web_search: route(3, "search"),
        ..Router::default()
    };
    let facts = |model: &'static str, thinking_enabled: bool| RouteFacts {
        model,
        thinking_enabled,
        web_search: false,
        body_len: 75_000,
    };
    let mut g = cr.benchmark_group("model_route");
    let mut never = || -> u64 { unreachable!("a 75 KB body is below the long-context band") };
    for (name, f) in [
        ("default_75KB", facts("claude-opus-4-8", false)),
        ("model_map_hit_last_of_16", facts("claude-model-15", false)),
        ("background_haiku", facts("claude-haiku-4-5", false)),
        ("think", facts("claude-opus-4-8", true)),
        ("explicit_provider_model", facts("big,some-model", false)),
    ] {
        g.bench_function(name, |b| b.iter(|| black_box(router.decide(black_box(&f), &providers, &mut never).provider)));
    }
    g.finish();
}

/// Allocations or bytes per conversion, with output buffers already sized
/// (as the proxy's per-connection buffers are after the first request).
fn memory_efficiency<M: Measurement>(cr: &mut Criterion<M>, unit: &str) {
    let mut out = Vec::with_capacity(1024 * 1024);
    let mut g: BenchmarkGroup<'_, M> = cr.benchmark_group(format!("memory_efficiency/{unit}"));
    let mut report = |name: &str, g: &mut BenchmarkGroup<'_, M>, f: &mut dyn FnMut(&mut Vec<u8>)| {
        f(&mut out);
        if unit == "allocs" {
            let (a, bytes) = alloc::per_call(200, || f(&mut out));
            println!("memory_efficiency/{name}: {a:.2} allocs, {bytes:.0} bytes per conversion");
        }
        g.bench_function(name, |b| b.iter(|| f(&mut out)));
    };
    for (name, body) in request_cases() {
        report(&format!("request_{name}"), &mut g, &mut |out| to_openai(&body, out));
    }
    for (name, body) in response_cases() {
        report(&format!("response_{name}"), &mut g, &mut |out| to_anthropic(&body, out));
    }
    let text = common::openai_text_stream(100);
    report("stream_text_100_chunks", &mut g, &mut |out| run_stream(&text, out));
    let tools = common::openai_tool_stream(100);
    report("stream_tools_100_chunks", &mut g, &mut |out| run_stream(&tools, out));
    g.finish();
}

fn memory_efficiency_count(cr: &mut Criterion<Allocs>) {
    memory_efficiency(cr, "allocs");
}

fn memory_efficiency_bytes(cr: &mut Criterion<AllocBytes>) {
    memory_efficiency(cr, "bytes");
}

criterion_group!(
    timing,
    anthropic_to_openai,
    openai_to_anthropic,
    complex_tool_conversion,
    stream_conversion,
    model_route
);
criterion_group! {
    name = allocs;
    config = Criterion::default().with_measurement(Allocs);
    targets = memory_efficiency_count
}
criterion_group! {
    name = alloc_bytes;
    config = Criterion::default().with_measurement(AllocBytes);
    targets = memory_efficiency_bytes
}
criterion_main!(timing, allocs, alloc_bytes);
