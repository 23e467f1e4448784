//! `loadgen`: command line of the load generator, the mock upstream and the run comparison.
//!
//! Receives argv; dispatches to `run.rs` (load a URL, print and save histograms), `mock.rs` (serve a
//! fast OpenAI-compatible upstream) or `compare.rs` (table and SVG across saved runs). Also owns the
//! two pieces of plumbing every subcommand shares: pinned thread spawning and the monoio runtime.

mod compare;
mod http1;
mod mock;
mod mock_profiles;
mod payloads;
mod report;
mod run;
mod schedule;
mod validate;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "loadgen", version, about = "HTTP/1.1 load generator, mock upstream and run comparison for ccproxy")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load a URL with Anthropic Messages requests and record latency histograms.
    Run(RunArgs),
    /// Serve a fast OpenAI-compatible upstream with provider quirks and faults.
    Mock(MockArgs),
    /// Compare saved runs: a table with ratios against the first, and an SVG percentile plot.
    Compare(CompareArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Target, e.g. http://127.0.0.1:8080/v1/messages (plain HTTP only).
    #[arg(long)]
    url: String,
    /// Keep-alive connections (closed loop: each sends back-to-back).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Open loop: total requests/s on a constant schedule; latency counts from the intended send time.
    #[arg(long)]
    rate: Option<f64>,
    /// Pinned client threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Measured duration, after the warm-up.
    #[arg(long, default_value = "10s", value_parser = mock_profiles::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "2s", value_parser = mock_profiles::parse_duration)]
    warmup: Duration,
    #[arg(long, value_enum, default_value = "simple")]
    profile: payloads::Profile,
    /// Send this file as the body instead of a profile.
    #[arg(long)]
    body: Option<PathBuf>,
    /// Ask for SSE (`"stream":true`) and record time to first byte and to first content delta.
    #[arg(long)]
    stream: bool,
    /// Which protocol responses must follow (`openai` when loading the mock directly).
    #[arg(long, value_enum, default_value = "anthropic")]
    expect: validate::Expect,
    /// Write summary.json and <metric>.hgrm files here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Stop after this many requests in total.
    #[arg(long)]
    max_requests: Option<u64>,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = mock_profiles::parse_duration)]
    timeout: Duration,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Exit with status 1 when any request failed.
    #[arg(long)]
    fail_on_error: bool,
}

#[derive(Args)]
struct MockArgs {
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: std::net::SocketAddr,
    /// Pinned server threads (default: 1).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long, value_enum, default_value = "openai")]
    profile: mock_profiles::Quirks,
    /// Delay before the first response byte.
    #[arg(long, default_value = "0ms", value_parser = mock_profiles::parse_duration)]
    ttfb: Duration,
    /// Content deltas per streamed answer (reasoning quirks add chunks/4 reasoning deltas before them).
    #[arg(long, default_value_t = 20)]
    chunks: usize,
    #[arg(long, default_value = "0ms", value_parser = mock_profiles::parse_duration)]
    chunk_delay: Duration,
    /// Response text size in bytes.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// none | status:CODE[:RETRY_AFTER] | reset-mid-stream | malformed | slow-first-byte:DURATION
    #[arg(long, default_value = "none")]
    fault: mock_profiles::Fault,
    /// Apply the fault to every Nth completion request.
    #[arg(long, default_value_t = 1)]
    fault_every: u64,
}

#[derive(Args)]
struct CompareArgs {
    /// Run directories (each with summary.json and .hgrm files); ratios are against the first.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Write the percentile plot here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Which histogram to compare.
    #[arg(long, default_value = "latency")]
    metric: String,
}

/// Spawns a named thread pinned to core `index % cores`.
pub fn spawn_pinned<T: Send + 'static>(
    name: String,
    index: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new().name(name).spawn(move || {
        if let Some(ids) = core_affinity::get_core_ids().filter(|ids| !ids.is_empty()) {
            core_affinity::set_for_current(ids[index % ids.len()]);
        }
        f()
    })
}

pub type Runtime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

/// io_uring when the kernel allows it, epoll otherwise; timers enabled.
pub fn runtime() -> std::io::Result<Runtime> {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build()
}

fn run_cmd(a: RunArgs) -> anyhow::Result<bool> {
    let mut target = run::parse_url(&a.url)?;
    let (body, headers) = match &a.body {
        Some(path) => (std::fs::read(path)?, vec![]),
        None => {
            if let Some(q) = a.profile.query() {
                target.path = run::with_query(&target.path, q);
            }
            (
                a.profile.body(a.stream),
                a.profile.headers().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            )
        }
    };
    let mut headers: Vec<(String, String)> = headers;
    for h in &a.headers {
        let (k, v) = h.split_once(':').ok_or_else(|| anyhow::anyhow!("header must be `Name: value`: {h}"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = a.threads.unwrap_or(cores).clamp(1, a.connections.max(1));
    let summary = serde_json::json!({
        "url": a.url, "mode": if a.rate.is_some() { "open" } else { "closed" }, "connections": a.connections,
        "rate": a.rate, "threads": threads, "duration_s": a.duration.as_secs_f64(), "warmup_s": a.warmup.as_secs_f64(),
        "profile": if a.body.is_some() { serde_json::Value::Null } else { serde_json::to_value(a.profile)? },
        "body_file": a.body.as_ref().map(|p| p.display().to_string()), "body_bytes": body.len(),
        "stream": a.stream, "expect": a.expect, "max_requests": a.max_requests, "timeout_s": a.timeout.as_secs_f64(),
    });
    let mode = match a.rate {
        Some(r) => format!("open loop {r} req/s"),
        None => "closed loop".into(),
    };
    println!(
        "loadgen run {} — {mode}, {} connections, {threads} threads, {}s (+{}s warm-up), {} bytes body, stream={}",
        a.url,
        a.connections,
        a.duration.as_secs_f64(),
        a.warmup.as_secs_f64(),
        body.len(),
        a.stream
    );
    let report = run::execute(run::RunConfig {
        target,
        body,
        headers,
        connections: a.connections.max(1),
        rate: a.rate.filter(|r| *r > 0.0),
        threads,
        duration: a.duration,
        warmup: a.warmup,
        stream: a.stream,
        expect: a.expect,
        timeout: a.timeout,
        max_requests: a.max_requests,
        summary,
    })?;
    report.print();
    if let Some(rate) = a.rate.filter(|r| report.rps() < 0.95 * r) {
        // Latencies are still honest (charged from intended times), but the target was not reached.
        println!("WARNING: open loop reached {:.1} of {rate} req/s; more --connections may be needed", report.rps());
    }
    if let Some(dir) = &a.out {
        report.write(dir)?;
        println!("wrote {}", dir.display());
    }
    Ok(report.metrics.errors.total() == 0 || !a.fail_on_error)
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Run(a) => {
            if !run_cmd(a)? {
                std::process::exit(1);
            }
        }
        Cmd::Mock(a) => mock::main(mock::MockConfig {
            listen: a.listen,
            threads: a.threads.max(1),
            quirks: a.profile,
            ttfb: a.ttfb,
            chunks: a.chunks.max(1),
            chunk_delay: a.chunk_delay,
            size: a.size,
            fault: a.fault,
            fault_every: a.fault_every.max(1),
        })?,
        Cmd::Compare(a) => compare::main(&a.runs, a.out.as_deref(), &a.metric)?,
    }
    Ok(())
}
