#!/usr/bin/env python3
"""Turns one benchmark-results run folder into summary.md (printed to stdout).

Reads runs/<target>-<profile>-<mode>/summary.json written by `loadgen run`,
memory.txt and machine.txt written by scripts/run-benchmarks.sh, and
criterion.txt when the criterion benches ran. Ratios are computed within the
run only, since the two cores are shared by the load generator, the mock and
the proxy: absolute numbers are not comparable across machines or runs.
"""
import json
import os
import re
import sys

PROFILES = ["simple", "multi-turn", "large", "tools", "claude-code"]
MODES = ["json", "sse"]


def load(run_dir, name):
    path = os.path.join(run_dir, "runs", name, "summary.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def fmt_rps(s):
    return "—" if s is None else f"{s['rps']:,.0f}"


def pct(s, key, metric="latency"):
    if s is None:
        return "—"
    m = s.get("metrics", {}).get(metric)
    if not m:
        return "—"
    return f"{m[key] / 1000:.2f}"


def ratio(a, b):
    if a is None or b is None or not b.get("rps"):
        return "—"
    return f"{a['rps'] / b['rps']:.2f}"


def errors(*runs):
    total = 0
    for r in runs:
        if r is not None:
            total += r.get("errors", {}).get("total", 0)
    return total


def main():
    run_dir = sys.argv[1]
    out = []
    out.append(f"# Benchmark run `{os.path.basename(os.path.normpath(run_dir))}`\n")
    machine = os.path.join(run_dir, "machine.txt")
    if os.path.exists(machine):
        out.append("## Machine\n")
        out.append("```")
        out.append(open(machine).read().strip())
        out.append("```\n")
    out.append("## Throughput and latency, closed loop, 32 connections, 1 loadgen thread, mock on 1 thread\n")
    out.append("`direct` is loadgen → mock (the floor); `ccproxy` converts Anthropic ⇄ OpenAI with 2 workers; "
               "`nginx` is a 2-worker pass-through reverse proxy doing no conversion. "
               "Latencies in ms. Ratios are within this run.\n")
    out.append("| profile | mode | direct rps | ccproxy rps | nginx rps | ccproxy/direct | ccproxy/nginx "
               "| ccproxy p50 | ccproxy p99 | nginx p99 | ccproxy p99 TTFB | errors |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p in PROFILES:
        for m in MODES:
            d = load(run_dir, f"direct-{p}-{m}")
            c = load(run_dir, f"ccproxy-{p}-{m}")
            n = load(run_dir, f"nginx-{p}-{m}")
            if d is None and c is None and n is None:
                continue
            ttfb = pct(c, "p99", "ttfb") if m == "sse" else "—"
            out.append(f"| {p} | {m} | {fmt_rps(d)} | {fmt_rps(c)} | {fmt_rps(n)} | {ratio(c, d)} | {ratio(c, n)} "
                       f"| {pct(c, 'p50')} | {pct(c, 'p99')} | {pct(n, 'p99')} | {ttfb} | {errors(d, c, n)} |")
    out.append("")

    w1 = load(run_dir, "ccproxy-w1-simple-json")
    w2 = load(run_dir, "ccproxy-simple-json")
    if w1 is not None and w2 is not None:
        out.append("## Worker scaling (simple, json)\n")
        out.append("| workers | rps | p99 ms |")
        out.append("|---|---|---|")
        out.append(f"| 1 | {fmt_rps(w1)} | {pct(w1, 'p99')} |")
        out.append(f"| 2 | {fmt_rps(w2)} | {pct(w2, 'p99')} |")
        out.append(f"\n2 workers / 1 worker: **{ratio(w2, w1)}×** (the load generator and the mock share the same two cores).\n")

    mem = os.path.join(run_dir, "memory.txt")
    if os.path.exists(mem):
        out.append("## Memory (ccproxy RSS)\n")
        out.append("| measure | MB |")
        out.append("|---|---|")
        for line in open(mem):
            k, _, v = line.partition(":")
            v = v.strip()
            if v.isdigit():
                out.append(f"| {k.strip()} | {int(v) / 1024:.1f} |")
        out.append("")

    crit = os.path.join(run_dir, "criterion.txt")
    if os.path.exists(crit):
        rows = []
        name = None
        for line in open(crit):
            m = re.match(r"^(\S.*?)\s+time:\s+\[(.*?)\]", line)
            if m:
                name = m.group(1).strip()
                rows.append([name, m.group(2).split()[2] + " " + m.group(2).split()[3], ""])
                continue
            m = re.match(r"^\s+thrpt:\s+\[(.*?)\]", line)
            if m and rows:
                parts = m.group(1).split()
                rows[-1][2] = parts[2] + " " + parts[3]
        if rows:
            out.append("## Criterion micro-benchmarks (median)\n")
            out.append("| benchmark | time | throughput |")
            out.append("|---|---|---|")
            for r in rows:
                out.append(f"| {r[0]} | {r[1]} | {r[2] or '—'} |")
            out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
