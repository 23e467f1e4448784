//! Per-worker counters and process-wide facts for `/status`.
//!
//! Receives increments from the request path of the worker that owns each
//! shard, and emits sums across shards when `/status` asks. A worker only
//! ever writes its own shard, with relaxed atomics, so the request path takes
//! no lock and shares no cache line it writes with another worker.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// One worker's counters. Padded to its own cache lines so that two workers
/// bumping their counters never contend.
#[repr(align(128))]
#[derive(Default)]
pub struct Shard {
    pub requests: AtomicU64,
    pub messages: AtomicU64,
    pub streams: AtomicU64,
    pub errors: AtomicU64,
    pub upstream_connects: AtomicU64,
    pub pool_hits: AtomicU64,
    pub retries: AtomicU64,
    pub fallbacks: AtomicU64,
}

impl Shard {
    #[inline]
    pub fn bump(counter: &AtomicU64) {
        // Only the owning worker writes, so a load+store is enough and avoids
        // a locked read-modify-write instruction on the hot path.
        counter.store(counter.load(Relaxed) + 1, Relaxed);
    }
}

/// Sums of every shard at one moment.
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
        }
        t
    }

    pub fn driver(&self) -> &'static str {
        self.driver.get().copied().unwrap_or("unknown")
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
}
