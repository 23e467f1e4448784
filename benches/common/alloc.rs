//! A counting global allocator around mimalloc (the allocator the release
//! binary uses) and two criterion [`Measurement`]s over its counters.
//!
//! Receives every allocation of the bench process; emits counts of
//! allocations and allocated bytes. Threads that call [`ignore_this_thread`]
//! (the mock upstream, the bench clients) are left out, so in the handler
//! benches the counters see the proxy's own threads only.
//!
//! A bench binary opts in with
//! `#[global_allocator] static GLOBAL: common::alloc::Counting = common::alloc::Counting;`.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::Throughput;
use mimalloc::MiMalloc;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // const-initialised and without Drop, so reading it inside the
    // allocator neither allocates nor recurses.
    static IGNORED: Cell<bool> = const { Cell::new(false) };
}

pub struct Counting;

#[inline]
fn count(size: usize) {
    if !IGNORED.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(size as u64, Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to MiMalloc; counting touches
// only atomics and a const thread-local.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        MiMalloc.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        MiMalloc.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A realloc is an allocator call the hot path should avoid too;
        // count it, with the bytes it grows by.
        count(new_size.saturating_sub(layout.size()));
        MiMalloc.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        MiMalloc.dealloc(ptr, layout)
    }
}

/// Leaves the calling thread's allocations out of the counters.
pub fn ignore_this_thread() {
    IGNORED.with(|c| c.set(true));
}

/// (allocations, bytes) so far, process-wide minus ignored threads.
pub fn snapshot() -> (u64, u64) {
    (ALLOCS.load(Relaxed), BYTES.load(Relaxed))
}

/// Average (allocations, bytes) per call of `f` over `n` calls.
pub fn per_call(n: u64, mut f: impl FnMut()) -> (f64, f64) {
    let (a0, b0) = snapshot();
    for _ in 0..n {
        f();
    }
    let (a1, b1) = snapshot();
    ((a1 - a0) as f64 / n as f64, (b1 - b0) as f64 / n as f64)
}

/// Criterion measurement: allocator calls (alloc, alloc_zeroed, realloc).
pub struct Allocs;
/// Criterion measurement: bytes requested from the allocator.
pub struct AllocBytes;

struct Unit(&'static str);

impl ValueFormatter for Unit {
    fn scale_values(&self, _typical: f64, _values: &mut [f64]) -> &'static str {
        self.0
    }
    fn scale_throughputs(&self, _typical: f64, _t: &Throughput, _values: &mut [f64]) -> &'static str {
        self.0
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        self.0
    }
}

static ALLOCS_UNIT: Unit = Unit("allocs");
static BYTES_UNIT: Unit = Unit("B");

impl Measurement for Allocs {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        snapshot().0
    }
    fn end(&self, i: u64) -> u64 {
        snapshot().0 - i
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &ALLOCS_UNIT
    }
}

impl Measurement for AllocBytes {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        snapshot().1
    }
    fn end(&self, i: u64) -> u64 {
        snapshot().1 - i
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &BYTES_UNIT
    }
}
