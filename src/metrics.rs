//! Per-worker counters, gauges and histograms, and the process-wide facts
//! `/status` and `/metrics` report.
//!
//! Receives increments from the request path of the worker that owns each
//! shard (the lifecycle's access-log step, the client socket reads and
//! writes, the upstream pool, forwarding and the stream relay), and emits
//! sums across shards ([`Metrics::totals`], [`Metrics::snapshot`]) when
//! `/status` or `/metrics` asks. A worker only ever writes its own shard,
//! with relaxed atomics, so the request path takes no lock and shares no
//! cache line it writes with another worker; a scrape only reads.
//!
//! Code that has no `&Worker` at hand (socket helpers, the access log)
//! reaches its shard through a thread-local binding set once per worker
//! thread by [`bind_thread`]; outside a worker thread those calls do nothing.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Route labels, indexed by the lifecycle's `Route as usize` (a lifecycle
/// test keeps the two in step).
pub const ROUTES: [&str; 9] =
    ["messages", "count_tokens", "health", "status", "models", "root", "metrics", "method_not_allowed", "not_found"];
/// Status codes with a label of their own; anything else is "other". 499
/// (nginx's "client closed request") stands for a request whose client went
/// away before the answer was complete.
pub const STATUSES: [u16; 16] = [200, 400, 401, 403, 404, 405, 408, 413, 429, 431, 499, 500, 502, 503, 504, 529];
const STATUS_SLOTS: usize = STATUSES.len() + 1;
/// Providers with a label of their own (by config index); later ones share
/// "other". One more slot, "none", holds requests that never reached routing.
pub const MAX_PROVIDERS: usize = 16;
const PROVIDER_OTHER: usize = MAX_PROVIDERS;
const PROVIDER_NONE: usize = MAX_PROVIDERS + 1;
const PROVIDER_SLOTS: usize = MAX_PROVIDERS + 2;
const REQUEST_SLOTS: usize = ROUTES.len() * PROVIDER_SLOTS * STATUS_SLOTS;

/// Histogram upper bounds in seconds. LLM answers take from milliseconds
/// (cached, tiny) to minutes (long generations), hence the wide range.
pub const BUCKETS: [f64; 16] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];
const BUCKETS_US: [u64; 16] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
    300_000_000,
    600_000_000,
];

/// Adds `n` to a counter only the owning worker writes: a load and a store
/// avoid a locked read-modify-write instruction on the hot path.
#[inline]
fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Fixed-bucket histogram of durations; per-bucket (not cumulative) counts.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: std::array::from_fn(|_| AtomicU64::new(0)), sum_us: AtomicU64::new(0) }
    }
}

impl Histogram {
    #[inline]
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS_US.partition_point(|&b| b < us);
        if let Some(b) = self.buckets.get(i) {
            add(b, 1);
        }
        add(&self.sum_us, us);
    }
}

/// Summed histogram: cumulative counts per bound (the last is +Inf).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HistogramTotals {
    pub cumulative: [u64; BUCKETS.len() + 1],
    pub sum_secs: f64,
}

impl HistogramTotals {
    pub fn count(&self) -> u64 {
        self.cumulative[BUCKETS.len()]
    }
}

/// One worker's counters. Padded to its own cache lines so that two workers
/// bumping their counters never contend.
#[repr(align(128))]
pub struct Shard {
    pub requests: AtomicU64,
    pub messages: AtomicU64,
    pub streams: AtomicU64,
    pub errors: AtomicU64,
    pub upstream_connects: AtomicU64,
    pub pool_hits: AtomicU64,
    pub retries: AtomicU64,
    pub fallbacks: AtomicU64,
    /// Idle keep-alive connections that released their buffers.
    pub parked: AtomicU64,
    /// Gauges: raised and lowered by the owning worker only, so never below 0.
    pub in_flight: AtomicU64,
    pub in_flight_streams: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Completed requests by route × provider × status.
    by_label: [AtomicU64; REQUEST_SLOTS],
    pub upstream_latency: Histogram,
    pub first_token: Histogram,
    pub duration: Histogram,
}

impl Default for Shard {
    fn default() -> Self {
        let z = || AtomicU64::new(0);
        Shard {
            requests: z(),
            messages: z(),
            streams: z(),
            errors: z(),
            upstream_connects: z(),
            pool_hits: z(),
            retries: z(),
            fallbacks: z(),
            parked: z(),
            in_flight: z(),
            in_flight_streams: z(),
            bytes_in: z(),
            bytes_out: z(),
            by_label: std::array::from_fn(|_| z()),
            upstream_latency: Histogram::default(),
            first_token: Histogram::default(),
            duration: Histogram::default(),
        }
    }
}

/// What the access-log step knows about a finished request.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestRecord {
    /// `Route as usize` of the lifecycle, an index into [`ROUTES`].
    pub route: usize,
    /// Config index of the provider that answered (or was tried last).
    pub provider: Option<usize>,
    /// 0 when the client went away before a complete answer.
    pub status: u16,
    pub duration: Duration,
    /// Request start to the upstream's response head.
    pub upstream_head: Option<Duration>,
    /// Request start to the first content event of a stream.
    pub first_token: Option<Duration>,
}

impl Shard {
    #[inline]
    pub fn bump(counter: &AtomicU64) {
        add(counter, 1);
    }

    /// Counts a finished request and feeds its histograms.
    pub fn record_request(&self, r: &RequestRecord) {
        let route = r.route.min(ROUTES.len() - 1);
        let provider = match r.provider {
            Some(p) if p < MAX_PROVIDERS => p,
            Some(_) => PROVIDER_OTHER,
            None => PROVIDER_NONE,
        };
        let status = if r.status == 0 { 499 } else { r.status };
        let status = STATUSES.iter().position(|&s| s == status).unwrap_or(STATUSES.len());
        if let Some(c) = self.by_label.get((route * PROVIDER_SLOTS + provider) * STATUS_SLOTS + status) {
            add(c, 1);
        }
        self.duration.observe(r.duration);
        if let Some(d) = r.upstream_head {
            self.upstream_latency.observe(d);
        }
        if let Some(d) = r.first_token {
            self.first_token.observe(d);
        }
    }
}

/// Sums of the plain counters of every shard at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub messages: u64,
    pub streams: u64,
    pub errors: u64,
    pub upstream_connects: u64,
    pub pool_hits: u64,
    pub retries: u64,
    pub fallbacks: u64,
    pub parked: u64,
    pub in_flight: u64,
    pub in_flight_streams: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// One non-zero request series of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSeries {
    pub route: &'static str,
    /// Config index; `None` for requests never routed to a provider.
    pub provider: Option<usize>,
    /// `true` when the provider index is beyond [`MAX_PROVIDERS`].
    pub provider_other: bool,
    /// `None` is the "other" status.
    pub status: Option<u16>,
    pub count: u64,
}

/// Everything `/metrics` renders, summed across shards.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub totals: Totals,
    pub requests: Vec<RequestSeries>,
    pub upstream_latency: HistogramTotals,
    pub first_token: HistogramTotals,
    pub duration: HistogramTotals,
}

/// Every worker's shard plus the process facts `/status` reports.
pub struct Metrics {
    pub shards: Box<[Shard]>,
    pub started: Instant,
    /// "io_uring" or "epoll", set once when the workers have started.
    pub driver: OnceLock<&'static str>,
}

impl Metrics {
    pub fn new(workers: usize) -> Arc<Metrics> {
        let shards = (0..workers.max(1)).map(|_| Shard::default()).collect();
        Arc::new(Metrics { shards, started: Instant::now(), driver: OnceLock::new() })
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in self.shards.iter() {
            t.requests += s.requests.load(Relaxed);
            t.messages += s.messages.load(Relaxed);
            t.streams += s.streams.load(Relaxed);
            t.errors += s.errors.load(Relaxed);
            t.upstream_connects += s.upstream_connects.load(Relaxed);
            t.pool_hits += s.pool_hits.load(Relaxed);
            t.retries += s.retries.load(Relaxed);
            t.fallbacks += s.fallbacks.load(Relaxed);
            t.parked += s.parked.load(Relaxed);
            t.in_flight += s.in_flight.load(Relaxed);
            t.in_flight_streams += s.in_flight_streams.load(Relaxed);
            t.bytes_in += s.bytes_in.load(Relaxed);
            t.bytes_out += s.bytes_out.load(Relaxed);
        }
        t
    }

    /// Sums every shard; request series that are still zero are left out.
    pub fn snapshot(&self) -> Snapshot {
        let mut by_label = vec![0u64; REQUEST_SLOTS];
        let mut snap = Snapshot { totals: self.totals(), ..Snapshot::default() };
        for s in self.shards.iter() {
            for (sum, c) in by_label.iter_mut().zip(s.by_label.iter()) {
                *sum += c.load(Relaxed);
            }
            sum_histogram(&mut snap.upstream_latency, &s.upstream_latency);
            sum_histogram(&mut snap.first_token, &s.first_token);
            sum_histogram(&mut snap.duration, &s.duration);
        }
        for h in [&mut snap.upstream_latency, &mut snap.first_token, &mut snap.duration] {
            for i in 1..h.cumulative.len() {
                h.cumulative[i] += h.cumulative[i - 1];
            }
        }
        for (i, &count) in by_label.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let status = i % STATUS_SLOTS;
            let provider = (i / STATUS_SLOTS) % PROVIDER_SLOTS;
            let route = i / (STATUS_SLOTS * PROVIDER_SLOTS);
            snap.requests.push(RequestSeries {
                route: ROUTES[route],
                provider: (provider < PROVIDER_NONE).then_some(provider),
                provider_other: provider == PROVIDER_OTHER,
                status: STATUSES.get(status).copied(),
                count,
            });
        }
        snap
    }

    pub fn driver(&self) -> &'static str {
        self.driver.get().copied().unwrap_or("unknown")
    }
}

fn sum_histogram(into: &mut HistogramTotals, h: &Histogram) {
    for (sum, b) in into.cumulative.iter_mut().zip(h.buckets.iter()) {
        *sum += b.load(Relaxed);
    }
    into.sum_secs += h.sum_us.load(Relaxed) as f64 / 1e6;
}

thread_local! {
    /// The shard of the worker running on this thread.
    static LOCAL: RefCell<Option<(Arc<Metrics>, usize)>> = const { RefCell::new(None) };
}

/// Binds this thread to worker `id`'s shard; called once by each worker
/// thread before it serves anything (again after a reload is harmless).
pub fn bind_thread(metrics: &Arc<Metrics>, id: usize) {
    if id < metrics.shards.len() {
        LOCAL.with(|l| *l.borrow_mut() = Some((metrics.clone(), id)));
    }
}

/// Runs `f` on this thread's shard; nothing outside a worker thread.
#[inline]
pub fn with_shard(f: impl FnOnce(&Shard)) {
    LOCAL.with(|l| {
        if let Some((m, i)) = l.borrow().as_ref() {
            if let Some(s) = m.shards.get(*i) {
                f(s);
            }
        }
    });
}

/// Bytes read from a client.
#[inline]
pub fn add_bytes_in(n: usize) {
    with_shard(|s| add(&s.bytes_in, n as u64));
}

/// Bytes written to a client.
#[inline]
pub fn add_bytes_out(n: usize) {
    with_shard(|s| add(&s.bytes_out, n as u64));
}

/// The access-log step's one call per finished request.
#[inline]
pub fn record_request(r: &RequestRecord) {
    with_shard(|s| s.record_request(r));
}

/// Which gauge an [`InFlight`] guard holds up.
#[derive(Debug, Clone, Copy)]
pub enum Gauge {
    Requests,
    Streams,
}

/// Raises an in-flight gauge of this thread's shard for as long as it lives
/// (a panic unwinding through the request lowers it too).
pub struct InFlight(Gauge);

impl InFlight {
    pub fn enter(g: Gauge) -> InFlight {
        with_shard(|s| add(gauge(s, g), 1));
        InFlight(g)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        with_shard(|s| {
            let c = gauge(s, self.0);
            c.store(c.load(Relaxed).saturating_sub(1), Relaxed);
        });
    }
}

fn gauge(s: &Shard, g: Gauge) -> &AtomicU64 {
    match g {
        Gauge::Requests => &s.in_flight,
        Gauge::Streams => &s.in_flight_streams,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_all_shards() {
        let m = Metrics::new(3);
        Shard::bump(&m.shards[0].requests);
        Shard::bump(&m.shards[2].requests);
        Shard::bump(&m.shards[2].streams);
        let t = m.totals();
        assert_eq!(t.requests, 2);
        assert_eq!(t.streams, 1);
        assert_eq!(t.errors, 0);
        assert_eq!(m.driver(), "unknown");
        m.driver.set("epoll").unwrap();
        assert_eq!(m.driver(), "epoll");
    }

    #[test]
    fn shards_do_not_share_cache_lines() {
        assert!(std::mem::align_of::<Shard>() >= 128);
    }

    #[test]
    fn bucket_bounds_agree() {
        for (s, us) in BUCKETS.iter().zip(BUCKETS_US) {
            assert_eq!((s * 1e6).round() as u64, us);
        }
    }

    #[test]
    fn requests_are_labelled_and_summed_across_shards() {
        let m = Metrics::new(2);
        let rec = |route, provider, status| RequestRecord {
            route,
            provider,
            status,
            duration: Duration::from_millis(30),
            upstream_head: Some(Duration::from_millis(7)),
            first_token: None,
        };
        m.shards[0].record_request(&rec(0, Some(1), 200));
        m.shards[1].record_request(&rec(0, Some(1), 200));
        m.shards[1].record_request(&rec(0, Some(40), 777));
        m.shards[0].record_request(&rec(2, None, 0));
        m.shards[0].record_request(&rec(99, None, 404));
        let s = m.snapshot();
        let find = |route: &str, provider: Option<usize>, status: Option<u16>| {
            s.requests
                .iter()
                .find(|r| r.route == route && r.provider == provider && r.status == status)
                .map(|r| r.count)
        };
        assert_eq!(find("messages", Some(1), Some(200)), Some(2));
        let other = s.requests.iter().find(|r| r.provider_other).unwrap();
        assert_eq!((other.route, other.status, other.count), ("messages", None, 1));
        assert_eq!(find("health", None, Some(499)), Some(1));
        // Out-of-range routes land in the last label rather than panicking.
        assert_eq!(find("not_found", None, Some(404)), Some(1));
        assert_eq!(s.requests.len(), 4);

        // 30 ms falls in the 0.05 bucket; 7 ms in the 0.01 bucket.
        assert_eq!(s.duration.count(), 5);
        assert_eq!(s.duration.cumulative[2], 0); // le 0.025
        assert_eq!(s.duration.cumulative[3], 5); // le 0.05
        assert_eq!(s.upstream_latency.cumulative[0], 0);
        assert_eq!(s.upstream_latency.cumulative[1], 5);
        assert!((s.duration.sum_secs - 0.15).abs() < 1e-9);
        assert_eq!(s.first_token.count(), 0);
    }

    #[test]
    fn huge_durations_go_to_inf() {
        let h = Histogram::default();
        h.observe(Duration::from_secs(10_000));
        h.observe(Duration::MAX);
        let mut t = HistogramTotals::default();
        sum_histogram(&mut t, &h);
        assert_eq!(t.cumulative[BUCKETS.len()], 2);
        assert_eq!(t.cumulative[BUCKETS.len() - 1], 0);
    }

    #[test]
    fn thread_binding_routes_calls_to_the_shard() {
        let m = Metrics::new(2);
        // Unbound: nothing happens, nothing panics.
        std::thread::spawn(|| add_bytes_in(5)).join().unwrap();
        let m2 = m.clone();
        std::thread::spawn(move || {
            bind_thread(&m2, 1);
            add_bytes_in(10);
            add_bytes_out(20);
            let g = InFlight::enter(Gauge::Requests);
            let s = InFlight::enter(Gauge::Streams);
            assert_eq!(m2.totals().in_flight, 1);
            assert_eq!(m2.totals().in_flight_streams, 1);
            drop(s);
            drop(g);
            record_request(&RequestRecord { route: 1, status: 200, ..Default::default() });
        })
        .join()
        .unwrap();
        let t = m.totals();
        assert_eq!((t.bytes_in, t.bytes_out, t.in_flight, t.in_flight_streams), (10, 20, 0, 0));
        assert_eq!(m.shards[1].bytes_in.load(Relaxed), 10);
        assert_eq!(m.snapshot().requests[0].route, "count_tokens");
    }
}
