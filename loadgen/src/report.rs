//! Results of `loadgen run`: the per-thread recorder, the printed summary, `summary.json` and `.hgrm` files.
//!
//! Receives latencies (µs) and error kinds from the client engine (`run.rs`) into one `Metrics` per
//! thread, merged at the end. Emits a human summary on stdout (rps, p50/p90/p99/p99.9/max per metric,
//! errors by kind, a loud ERROR line when any), and with `--out DIR` a `summary.json` (config, rps,
//! percentiles in µs, errors, timing) plus one `<metric>.hgrm` per metric in HdrHistogram's
//! percentile-distribution text format (values in milliseconds, as wrk2 prints them), which
//! `compare.rs` and HdrHistogram's own plotter can read.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::validate::{ErrorCounts, ErrorKind};

/// The histograms a run records; names are also the `.hgrm` file stems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Request start (intended start in open loop) to the end of the response.
    Latency,
    /// Request start to the first response byte (stream runs only).
    Ttfb,
    /// Request start to the first content delta event (stream runs only).
    FirstDelta,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::Latency, Metric::Ttfb, Metric::FirstDelta];
    pub fn name(self) -> &'static str {
        match self {
            Metric::Latency => "latency",
            Metric::Ttfb => "ttfb",
            Metric::FirstDelta => "first_delta",
        }
    }
}

/// The `.hgrm` files hold milliseconds; histograms hold microseconds.
pub const HGRM_SCALE: f64 = 1000.0;
const SIGFIG: u8 = 3;

#[derive(Debug, Clone)]
pub struct Metrics {
    pub hists: [Histogram<u64>; 3],
    pub errors: ErrorCounts,
    /// Successful responses inside the measurement window.
    pub ok: u64,
    /// Clock time (ns since run start) of the last recorded completion.
    pub last_done_ns: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        // 1 µs to 1 hour at 3 significant digits, like wrk2.
        let h = || Histogram::new_with_bounds(1, 3_600_000_000, SIGFIG).expect("constant, valid histogram bounds");
        Self { hists: [h(), h(), h()], errors: ErrorCounts::default(), ok: 0, last_done_ns: 0 }
    }

    pub fn record(&mut self, metric: Metric, us: u64) {
        self.hists[metric as usize].saturating_record(us);
    }

    pub fn hist(&self, metric: Metric) -> &Histogram<u64> {
        &self.hists[metric as usize]
    }

    pub fn merge(&mut self, other: &Metrics) {
        for (a, b) in self.hists.iter_mut().zip(other.hists.iter()) {
            // Same bounds on both sides, so this cannot fail; ignore rather than panic regardless.
            let _ = a.add(b);
        }
        self.errors.merge(&other.errors);
        self.ok += other.ok;
        self.last_done_ns = self.last_done_ns.max(other.last_done_ns);
    }
}

/// A finished run, ready to print or save.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub config: Value,
    pub metrics: Metrics,
    pub measured: Duration,
    pub started: SystemTime,
    pub finished: SystemTime,
}

impl RunReport {
    pub fn rps(&self) -> f64 {
        let s = self.measured.as_secs_f64();
        if s > 0.0 {
            self.metrics.ok as f64 / s
        } else {
            0.0
        }
    }

    fn metric_json(h: &Histogram<u64>) -> Value {
        json!({"unit": "us", "count": h.len(), "min": h.min(), "mean": round3(h.mean()), "stdev": round3(h.stdev()),
               "p50": h.value_at_quantile(0.5), "p90": h.value_at_quantile(0.9), "p99": h.value_at_quantile(0.99),
               "p99_9": h.value_at_quantile(0.999), "p99_99": h.value_at_quantile(0.9999), "max": h.max()})
    }

    pub fn summary_json(&self) -> Value {
        let mut metrics = serde_json::Map::new();
        for m in Metric::ALL {
            if !self.metrics.hist(m).is_empty() {
                metrics.insert(m.name().into(), Self::metric_json(self.metrics.hist(m)));
            }
        }
        let mut errors = serde_json::Map::new();
        errors.insert("total".into(), self.metrics.errors.total().into());
        for k in ErrorKind::ALL {
            errors.insert(k.name().into(), self.metrics.errors.get(k).into());
        }
        json!({
            "loadgen_version": env!("CARGO_PKG_VERSION"),
            "config": self.config,
            "started_at": rfc3339(self.started),
            "finished_at": rfc3339(self.finished),
            "started_unix": unix(self.started),
            "finished_unix": unix(self.finished),
            "duration_s": round3(self.measured.as_secs_f64()),
            "requests": self.metrics.ok,
            "rps": round3(self.rps()),
            "errors": errors,
            "metrics": metrics,
            "hgrm_unit": "ms",
        })
    }

    pub fn print(&self) {
        print!("{}", self.summary_text());
    }

    pub fn summary_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "requests {}  in {:.2}s  =>  {:.1} req/s",
            self.metrics.ok,
            self.measured.as_secs_f64(),
            self.rps()
        );
        let _ = writeln!(
            s,
            "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "metric (ms)", "p50", "p90", "p99", "p99.9", "max", "count"
        );
        for m in Metric::ALL {
            let h = self.metrics.hist(m);
            if h.is_empty() {
                continue;
            }
            let q = |x| ms(h.value_at_quantile(x));
            let _ = writeln!(
                s,
                "{:<12} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10}",
                m.name(),
                q(0.5),
                q(0.9),
                q(0.99),
                q(0.999),
                ms(h.max()),
                h.len()
            );
        }
        let total = self.metrics.errors.total();
        if total == 0 {
            let _ = writeln!(s, "errors: 0");
        } else {
            let kinds: Vec<String> = ErrorKind::ALL
                .iter()
                .filter(|k| self.metrics.errors.get(**k) > 0)
                .map(|k| format!("{}={}", k.name(), self.metrics.errors.get(*k)))
                .collect();
            let _ = writeln!(s, "!!!!!!!! ERROR: {total} requests failed: {} !!!!!!!!", kinds.join(" "));
        }
        s
    }

    /// Writes `summary.json` and one `.hgrm` per non-empty metric into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("summary.json"), serde_json::to_vec_pretty(&self.summary_json())?)?;
        for m in Metric::ALL {
            let h = self.metrics.hist(m);
            if !h.is_empty() {
                std::fs::write(dir.join(format!("{}.hgrm", m.name())), hgrm(h, HGRM_SCALE))?;
            }
        }
        Ok(())
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn unix(t: SystemTime) -> f64 {
    round3(t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0))
}

/// UTC `YYYY-MM-DDTHH:MM:SSZ` without a date crate (civil-from-days, H. Hinnant).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// HdrHistogram's `outputPercentileDistribution` text (5 ticks per half distance), values divided by `scale`.
pub fn hgrm(h: &Histogram<u64>, scale: f64) -> String {
    let mut s = String::new();
    let _ = write!(s, "{:>12} {:>14} {:>10} {:>14}\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / scale;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(s, "{value:12.3} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q));
            } else {
                let _ = writeln!(s, "{value:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let (mean, stdev) = if h.is_empty() { (0.0, 0.0) } else { (h.mean() / scale, h.stdev() / scale) };
    let _ = writeln!(s, "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]");
    let _ = writeln!(s, "#[Max     = {:12.3}, Total count    = {:12}]", h.max() as f64 / scale, h.len());
    let sub_buckets = (2.0 * 10f64.powi(i32::from(SIGFIG))).log2().ceil().exp2() as u64;
    let _ = writeln!(s, "#[Buckets = {:12}, SubBuckets     = {:12}]", h.buckets(), sub_buckets);
    s
}

/// Parses `.hgrm` text into (value, percentile 0..=1) points; comment, header and blank lines are skipped.
pub fn parse_hgrm(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let v: f64 = it.next()?.parse().ok()?;
            let p: f64 = it.next()?.parse().ok()?;
            Some((v, p))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metrics {
        let mut m = Metrics::new();
        for i in 1..=1000u64 {
            m.record(Metric::Latency, i * 10);
        }
        m.ok = 1000;
        m
    }

    #[test]
    fn hgrm_matches_hdrhistogram_layout_and_round_trips() {
        let m = sample();
        let text = hgrm(m.hist(Metric::Latency), HGRM_SCALE);
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), "       Value     Percentile TotalCount 1/(1-Percentile)");
        assert_eq!(lines.next().unwrap(), "");
        let first = lines.next().unwrap();
        assert!(first.starts_with("       0.010 0.000000000000          1           1.00"), "{first:?}");
        assert!(text.contains("#[Max     =       10.007, Total count    =         1000]"), "{text}");
        assert!(text.contains("SubBuckets     =         2048]"));
        let pts = parse_hgrm(&text);
        assert!(pts.len() > 20);
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1), "monotone");
        let last = pts.last().unwrap();
        assert_eq!(last.1, 1.0);
        let p50 = pts.iter().find(|p| p.1 >= 0.5).unwrap();
        assert!((p50.0 - 5.0).abs() < 0.01, "{p50:?}");
    }

    #[test]
    fn summary_json_and_text() {
        let mut m = sample();
        m.errors.add(ErrorKind::BadSse);
        let r = RunReport {
            config: json!({"mode": "closed"}),
            metrics: m,
            measured: Duration::from_secs(2),
            started: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            finished: UNIX_EPOCH + Duration::from_secs(1_700_000_002),
        };
        let v = r.summary_json();
        assert_eq!(v["rps"], 500.0);
        assert_eq!(v["errors"]["bad_sse"], 1);
        assert_eq!(v["errors"]["total"], 1);
        assert_eq!(v["metrics"]["latency"]["p50"], 5003);
        assert!(v["metrics"].get("ttfb").is_none());
        assert_eq!(v["started_at"], "2023-11-14T22:13:20Z");
        let text = r.summary_text();
        assert!(text.contains("ERROR: 1 requests failed: bad_sse=1"), "{text}");
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = sample();
        let mut b = sample();
        b.errors.add(ErrorKind::Timeout);
        b.last_done_ns = 7;
        a.merge(&b);
        assert_eq!((a.hist(Metric::Latency).len(), a.ok, a.errors.total(), a.last_done_ns), (2000, 2000, 1, 7));
    }
}
