//! Request pacing and latency accounting for `loadgen run`, on an injectable clock.
//!
//! Receives the run's mode (closed loop, or a total rate spread over N connections), its measurement
//! window (warm-up end, run end) and the current time from a `Clock`. Emits, per connection, what to do
//! next: wait until an instant, send a request charged from an origin instant, or stop. In open loop
//! the origin is the request's INTENDED send time on a constant schedule, not the moment it actually
//! went out, so a stalled response charges its delay to every request queued behind it (coordinated
//! omission corrected, as wrk2 does). One exception: when the connection was idle and slept until the
//! intended time, the timer's own lateness (monoio timers tick in milliseconds) is loadgen's, not the
//! server's, so such a request is charged from when it actually went out. In closed loop the origin
//! is always the actual send time.

use std::time::Instant;

/// Monotonic nanoseconds since an arbitrary base. Tests use a fake one.
pub trait Clock {
    fn now_ns(&self) -> u64;
}

#[derive(Debug, Clone, Copy)]
pub struct RealClock {
    base: Instant,
}

impl RealClock {
    pub fn new(base: Instant) -> Self {
        Self { base }
    }
}

impl Clock for RealClock {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// A constant-rate schedule for one connection: `start + phase + i * interval`.
#[derive(Debug, Clone)]
pub struct Schedule {
    start_ns: u64,
    interval_ns: f64,
    next: u64,
}

impl Schedule {
    pub fn new(start_ns: u64, interval_ns: f64) -> Self {
        Self { start_ns, interval_ns, next: 0 }
    }

    /// Connection `index` of `connections` sharing `rate` req/s: each runs at rate/connections and is
    /// offset by one global interval, so together they send evenly spaced requests.
    pub fn for_connection(start_ns: u64, rate: f64, connections: usize, index: usize) -> Self {
        let global = 1e9 / rate;
        Self::new(start_ns + (global * index as f64) as u64, global * connections as f64)
    }

    pub fn peek(&self) -> u64 {
        self.start_ns + (self.interval_ns * self.next as f64) as u64
    }

    fn advance(&mut self) {
        self.next += 1;
    }
}

/// The part of the run whose results count.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub warmup_end_ns: u64,
    pub end_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing to send before this instant.
    WaitUntil(u64),
    /// Send now; charge latency from `origin_ns`; `record` says whether it falls in the window.
    Send {
        origin_ns: u64,
        record: bool,
    },
    Stop,
}

/// Decides each connection's next move.
#[derive(Debug, Clone)]
pub struct Pacer {
    schedule: Option<Schedule>,
    window: Window,
    /// The last step told the connection to sleep until the next intended time.
    slept: bool,
}

impl Pacer {
    pub fn closed(window: Window) -> Self {
        Self { schedule: None, window, slept: false }
    }

    pub fn open(window: Window, schedule: Schedule) -> Self {
        Self { schedule: Some(schedule), window, slept: false }
    }

    pub fn next(&mut self, now_ns: u64) -> Step {
        if now_ns >= self.window.end_ns {
            return Step::Stop;
        }
        let (origin_ns, intended_ns) = match &mut self.schedule {
            None => (now_ns, now_ns),
            Some(s) => {
                let t = s.peek();
                if t >= self.window.end_ns {
                    return Step::Stop;
                }
                if now_ns < t {
                    self.slept = true;
                    return Step::WaitUntil(t);
                }
                s.advance();
                // Behind schedule because the server was slow: keep the intended time as the origin.
                // Woken by our own timer: charge from now, the oversleep is not the server's doing.
                let origin = if std::mem::take(&mut self.slept) { now_ns } else { t };
                (origin, t)
            }
        };
        Step::Send { origin_ns, record: intended_ns >= self.window.warmup_end_ns }
    }
}

/// Latency in whole microseconds from `origin_ns` to `now_ns` (never negative).
pub fn elapsed_us(origin_ns: u64, now_ns: u64) -> u64 {
    now_ns.saturating_sub(origin_ns) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct FakeClock(Cell<u64>);
    impl Clock for FakeClock {
        fn now_ns(&self) -> u64 {
            self.0.get()
        }
    }

    const MS: u64 = 1_000_000;

    /// Drives a pacer against a server whose service time is `service(i)`; returns (origin, latency µs).
    fn simulate(pacer: Pacer, clock: &FakeClock, service: impl Fn(usize) -> u64) -> Vec<(u64, u64, bool)> {
        simulate_with_slop(pacer, clock, 0, service)
    }

    /// As `simulate`, with a timer that wakes `slop` ns after the instant asked for.
    fn simulate_with_slop(
        mut pacer: Pacer,
        clock: &FakeClock,
        slop: u64,
        service: impl Fn(usize) -> u64,
    ) -> Vec<(u64, u64, bool)> {
        let mut out = Vec::new();
        loop {
            match pacer.next(clock.now_ns()) {
                Step::Stop => return out,
                Step::WaitUntil(t) => {
                    assert!(t > clock.now_ns());
                    clock.0.set(t + slop);
                }
                Step::Send { origin_ns, record } => {
                    clock.0.set(clock.now_ns() + service(out.len()));
                    out.push((origin_ns, elapsed_us(origin_ns, clock.now_ns()), record));
                }
            }
        }
    }

    #[test]
    fn intended_times_are_evenly_spread_over_connections() {
        let mut all: Vec<u64> = (0..4)
            .flat_map(|c| {
                let mut s = Schedule::for_connection(5 * MS, 1000.0, 4, c);
                (0..3)
                    .map(|_| {
                        let t = s.peek();
                        s.advance();
                        t
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_unstable();
        let expect: Vec<u64> = (0..12).map(|i| 5 * MS + i * MS).collect();
        assert_eq!(all, expect);
    }

    #[test]
    fn open_loop_charges_a_stall_to_the_requests_behind_it() {
        let clock = FakeClock(Cell::new(0));
        let window = Window { warmup_end_ns: 0, end_ns: 100 * MS };
        let pacer = Pacer::open(window, Schedule::new(0, 10.0 * MS as f64));
        // Request 2 stalls for 55 ms; everything else takes 1 ms.
        let got = simulate(pacer, &clock, |i| if i == 2 { 55 * MS } else { MS });
        let origins: Vec<u64> = got.iter().map(|g| g.0 / MS).collect();
        assert_eq!(origins, (0..10).map(|i| i * 10).collect::<Vec<_>>(), "intended times, not actual sends");
        let lat_ms: Vec<u64> = got.iter().map(|g| g.1 / 1000).collect();
        // 2 sent at 20 done at 75; 3 intended 30, sent 75, done 76 → 46; 4 → 77-40; ... then back to 1.
        assert_eq!(lat_ms, vec![1, 1, 55, 46, 37, 28, 19, 10, 1, 1]);
    }

    #[test]
    fn timer_oversleep_is_not_charged_but_a_stall_still_is() {
        let clock = FakeClock(Cell::new(0));
        let window = Window { warmup_end_ns: 0, end_ns: 100 * MS };
        let pacer = Pacer::open(window, Schedule::new(0, 10.0 * MS as f64));
        // The timer wakes 700 µs late; service takes 100 µs, except request 3 which stalls 25 ms.
        let got = simulate_with_slop(pacer, &clock, 700_000, |i| if i == 3 { 25 * MS } else { 100_000 });
        let lat_us: Vec<u64> = got.iter().map(|g| g.1).collect();
        // 3 is sent at 30.7 and ends at 55.7; 4 (intended 40) and 5 (intended 50) were due while it ran.
        assert_eq!(lat_us, vec![100, 100, 100, 25_000, 15_800, 5_900, 100, 100, 100, 100]);
    }

    #[test]
    fn closed_loop_charges_from_the_actual_send() {
        let clock = FakeClock(Cell::new(0));
        let window = Window { warmup_end_ns: 3 * MS, end_ns: 10 * MS };
        let got = simulate(Pacer::closed(window), &clock, |i| if i == 2 { 4 * MS } else { MS });
        let lat_ms: Vec<u64> = got.iter().map(|g| g.1 / 1000).collect();
        assert_eq!(lat_ms, vec![1, 1, 4, 1, 1, 1, 1]);
        let recorded: Vec<bool> = got.iter().map(|g| g.2).collect();
        // Sends at 0,1,2 are warm-up; 6,7,8,9 count; nothing starts at or after 10.
        assert_eq!(recorded, vec![false, false, false, true, true, true, true]);
    }

    #[test]
    fn open_loop_warmup_and_end_follow_intended_times() {
        let clock = FakeClock(Cell::new(0));
        let window = Window { warmup_end_ns: 20 * MS, end_ns: 50 * MS };
        let got = simulate(Pacer::open(window, Schedule::new(0, 10.0 * MS as f64)), &clock, |_| MS);
        let recorded: Vec<(u64, bool)> = got.iter().map(|g| (g.0 / MS, g.2)).collect();
        assert_eq!(recorded, vec![(0, false), (10, false), (20, true), (30, true), (40, true)]);
    }

    #[test]
    fn elapsed_never_underflows() {
        assert_eq!(elapsed_us(10_000, 5_000), 0);
        assert_eq!(elapsed_us(0, 2_500_000), 2_500);
    }
}
