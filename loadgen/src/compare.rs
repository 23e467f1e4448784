//! `loadgen compare`: runs side by side, as a table and as an HdrHistogram-style percentile plot.
//!
//! Receives run directories written by `loadgen run --out` (`summary.json` plus `<metric>.hgrm`).
//! Emits on stdout a table of rps, p50, p90, p99, p99.9, max and errors with ratios against the FIRST
//! run, and with `--out FILE.svg` a hand-written SVG: latency (ms, linear) against percentile on a
//! log scale of 1/(1-p) (0%, 90%, 99%, 99.9%, …), one coloured polyline per run, with a legend.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::report::parse_hgrm;

/// What one run contributes to the comparison. Latencies in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct RunData {
    pub name: String,
    pub rps: f64,
    pub errors: u64,
    /// p50, p90, p99, p99.9, max.
    pub pct: [f64; 5],
    /// (value ms, percentile 0..=1) from the `.hgrm` file.
    pub curve: Vec<(f64, f64)>,
}

const COLUMNS: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];
const PALETTE: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

pub fn load(dir: &Path, metric: &str) -> anyhow::Result<RunData> {
    let summary: Value = serde_json::from_slice(&std::fs::read(dir.join("summary.json"))?)?;
    let m = &summary["metrics"][metric];
    let us = |k: &str| m[k].as_f64().unwrap_or(f64::NAN) / 1000.0;
    let curve = match std::fs::read_to_string(dir.join(format!("{metric}.hgrm"))) {
        Ok(text) => parse_hgrm(&text),
        Err(_) => Vec::new(),
    };
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string());
    Ok(RunData {
        name,
        rps: summary["rps"].as_f64().unwrap_or(0.0),
        errors: summary["errors"]["total"].as_u64().unwrap_or(0),
        pct: [us("p50"), us("p90"), us("p99"), us("p99_9"), us("max")],
        curve,
    })
}

fn ratio(v: f64, base: f64) -> String {
    if base > 0.0 && v.is_finite() {
        format!("({:.2}x)", v / base)
    } else {
        "(n/a)".into()
    }
}

/// The comparison table; every run after the first shows its ratio to the first.
pub fn table(runs: &[RunData], metric: &str) -> String {
    let name_w = runs.iter().map(|r| r.name.len()).max().unwrap_or(3).max(3);
    let mut s = String::new();
    let _ = write!(s, "{:<name_w$}  {:>20}", "run", "rps");
    for c in COLUMNS {
        let _ = write!(s, "  {:>18}", format!("{c} ms"));
    }
    let _ = writeln!(
        s,
        "  {:>8}   ({metric}; ratios vs {})",
        "errors",
        runs.first().map(|r| r.name.as_str()).unwrap_or("")
    );
    let Some(base) = runs.first() else { return s };
    for (i, r) in runs.iter().enumerate() {
        let cell = |v: f64, b: f64, prec: usize| {
            if i == 0 {
                format!("{v:.prec$}")
            } else {
                format!("{v:.prec$} {}", ratio(v, b))
            }
        };
        let _ = write!(s, "{:<name_w$}  {:>20}", r.name, cell(r.rps, base.rps, 1));
        for (v, b) in r.pct.iter().zip(base.pct.iter()) {
            let _ = write!(s, "  {:>18}", cell(*v, *b, 3));
        }
        let _ = writeln!(s, "  {:>8}", r.errors);
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A round upper bound and tick step for a linear axis from 0.
fn nice_axis(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn pct_label(decade: u32) -> String {
    match decade {
        0 => "0%".into(),
        d => {
            let p = 100.0 - 100.0 / 10f64.powi(d as i32);
            format!("{p:.*}%", (d as usize).saturating_sub(2))
        }
    }
}

/// The percentile plot as SVG text.
pub fn svg(runs: &[RunData], title: &str) -> String {
    let (w, h) = (960.0, 560.0);
    let (left, right, top, bottom) = (80.0, 30.0, 50.0, 70.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    // Points with p = 1 sit at infinity on this axis; the max is in the table and legend instead.
    let xs = |p: f64| (1.0 / (1.0 - p)).log10();
    let finite: Vec<Vec<(f64, f64)>> =
        runs.iter().map(|r| r.curve.iter().filter(|(_, p)| *p < 1.0).map(|&(v, p)| (xs(p), v)).collect()).collect();
    let x_max_data = finite.iter().flatten().map(|(x, _)| *x).fold(0.0, f64::max);
    let decades = (x_max_data.ceil() as u32).clamp(2, 6);
    let y_max_data = finite.iter().flatten().map(|(_, v)| *v).fold(0.0, f64::max);
    let (y_max, y_step) = nice_axis(y_max_data);
    let px = |x: f64| left + pw * (x / f64::from(decades)).min(1.0);
    let py = |v: f64| top + ph * (1.0 - v / y_max);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{}" y="30" font-size="18" text-anchor="middle">{}</text>"#, w / 2.0, esc(title));
    for i in 0..=((y_max / y_step).round() as u32) {
        let v = f64::from(i) * y_step;
        let y = py(v);
        let _ = writeln!(s, r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#dddddd"/>"##, left + pw);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="end">{}</text>"#,
            left - 8.0,
            y + 4.0,
            fmt_ms(v)
        );
    }
    for d in 0..=decades {
        let x = px(f64::from(d));
        let _ = writeln!(s, r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#dddddd"/>"##, top + ph);
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" font-size="13" text-anchor="middle">{}</text>"#,
            top + ph + 20.0,
            pct_label(d)
        );
    }
    let _ = writeln!(s, r#"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" font-size="14" text-anchor="middle">Percentile (log scale of 1/(1-p))</text>"#,
        left + pw / 2.0,
        h - 20.0
    );
    let _ = writeln!(
        s,
        r#"<text x="20" y="{:.1}" font-size="14" text-anchor="middle" transform="rotate(-90 20 {:.1})">Latency (ms)</text>"#,
        top + ph / 2.0,
        top + ph / 2.0
    );
    for (i, pts) in finite.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let points: Vec<String> = pts.iter().map(|&(x, v)| format!("{:.1},{:.1}", px(x), py(v))).collect();
        let _ =
            writeln!(s, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, points.join(" "));
    }
    // Legend in the upper left of the plot, where percentile curves are low.
    let rows: Vec<String> = runs
        .iter()
        .map(|r| format!("{}: {:.0} req/s, p99 {} ms, max {} ms", r.name, r.rps, fmt_ms(r.pct[2]), fmt_ms(r.pct[4])))
        .collect();
    let lw = 40.0 + 7.5 * rows.iter().map(|r| r.chars().count()).max().unwrap_or(0) as f64;
    let lh = 10.0 + 22.0 * rows.len() as f64;
    let (lx, ly) = (left + 12.0, top + 12.0);
    let _ = writeln!(
        s,
        r##"<rect x="{lx}" y="{ly}" width="{lw:.1}" height="{lh:.1}" fill="white" fill-opacity="0.9" stroke="#888888"/>"##
    );
    for (i, row) in rows.iter().enumerate() {
        let y = ly + 20.0 + 22.0 * i as f64;
        let color = PALETTE[i % PALETTE.len()];
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="3"/>"#,
            lx + 8.0,
            y - 4.0,
            lx + 30.0,
            y - 4.0
        );
        let _ = writeln!(s, r#"<text x="{:.1}" y="{y:.1}" font-size="13">{}</text>"#, lx + 36.0, esc(row));
    }
    s.push_str("</svg>\n");
    s
}

fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

pub fn main(dirs: &[std::path::PathBuf], out: Option<&Path>, metric: &str) -> anyhow::Result<()> {
    let runs: Vec<RunData> = dirs.iter().map(|d| load(d, metric)).collect::<anyhow::Result<_>>()?;
    print!("{}", table(&runs, metric));
    if let Some(out) = out {
        std::fs::write(out, svg(&runs, &format!("{metric} by percentile")))?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Metric, Metrics, RunReport};
    use std::time::{Duration, UNIX_EPOCH};

    fn data(name: &str, rps: f64, scale: f64) -> RunData {
        RunData {
            name: name.into(),
            rps,
            errors: 0,
            pct: [1.0 * scale, 2.0 * scale, 4.0 * scale, 8.0 * scale, 10.0 * scale],
            curve: vec![
                (1.0 * scale, 0.0),
                (1.0 * scale, 0.5),
                (4.0 * scale, 0.99),
                (8.0 * scale, 0.999),
                (10.0 * scale, 1.0),
            ],
        }
    }

    #[test]
    fn table_ratios_are_against_the_first_run() {
        let t = table(&[data("base", 1000.0, 1.0), data("new", 500.0, 2.0)], "latency");
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("p99.9 ms") && lines[0].contains("ratios vs base"));
        assert!(lines[1].starts_with("base") && !lines[1].contains('x'));
        assert!(lines[2].contains("500.0 (0.50x)"), "{}", lines[2]);
        assert!(lines[2].contains("8.000 (2.00x)") && lines[2].contains("20.000 (2.00x)"), "{}", lines[2]);
    }

    #[test]
    fn svg_has_one_polyline_per_run_and_a_legend() {
        let runs = [data("a", 1.0, 1.0), data("b", 1.0, 2.0), data("c<&>", 1.0, 3.0)];
        let s = svg(&runs, "latency by percentile");
        assert_eq!(s.matches("<polyline").count(), 3);
        assert!(s.contains("c&lt;&amp;&gt;: 1 req/s"));
        for label in ["0%", "90%", "99%", "99.9%"] {
            assert!(s.contains(&format!(">{label}</text>")), "{label}");
        }
        assert!(s.contains("Latency (ms)") && s.trim_end().ends_with("</svg>"));
        // p = 1 is not plotted (it is at infinity on this axis): 4 finite points per run.
        let first = s.lines().find(|l| l.starts_with("<polyline")).unwrap();
        assert_eq!(first.split("points=\"").nth(1).unwrap().split_whitespace().count(), 4);
    }

    #[test]
    fn loads_what_run_writes() {
        let dir = std::env::temp_dir().join(format!("loadgen-compare-test-{}", std::process::id()));
        let mut m = Metrics::new();
        (1..=100u64).for_each(|i| m.record(Metric::Latency, i * 100));
        m.ok = 100;
        let r = RunReport {
            config: serde_json::json!({}),
            metrics: m,
            measured: Duration::from_secs(4),
            started: UNIX_EPOCH,
            finished: UNIX_EPOCH,
        };
        r.write(&dir).unwrap();
        let d = load(&dir, "latency").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(d.rps, 25.0);
        assert!((d.pct[0] - 5.0).abs() < 0.01 && (d.pct[4] - 10.0).abs() < 0.01, "{:?}", d.pct);
        assert!(d.curve.len() > 10);
        assert_eq!(nice_axis(9.3), (10.0, 2.0));
        assert_eq!(pct_label(3), "99.9%");
    }
}
