#!/usr/bin/env python3
"""Turns one benchmark-results run folder into summary.md (printed to stdout).

Reads what scripts/run-benchmarks.sh wrote: runs/<name>/summary.json from
`loadgen run` (and cpu.txt beside some of them), memory.txt, facts.txt,
machine.txt and criterion.txt. The first section lists every performance
target of the project with its measured value, its goal and a verdict; the
rest are the tables behind them. Ratios are computed within the run only:
the two cores are shared by the load generator, the mock and the proxy, so
absolute numbers are not comparable across machines or runs.
"""
import json
import os
import re
import statistics
import sys

PROFILES = ["simple", "multi-turn", "large", "tools", "claude-code"]
MODES = ["json", "sse"]
GIB = 1024 ** 3


def load(run_dir, name):
    path = os.path.join(run_dir, "runs", name, "summary.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def kv(path):
    """`key: value` lines as a dict of strings."""
    out = {}
    if os.path.exists(path):
        for line in open(path):
            k, sep, v = line.partition(":")
            if sep:
                out[k.strip()] = v.strip()
    return out


def fmt_rps(s):
    return "—" if s is None else f"{s['rps']:,.0f}"


def lat(s, key, metric="latency"):
    """A latency percentile in ms, or None."""
    if s is None:
        return None
    m = s.get("metrics", {}).get(metric)
    return None if not m or key not in m else m[key] / 1000


def ms(v):
    return "—" if v is None else f"{v:.2f}"


def ratio(a, b):
    if a is None or b is None or not b.get("rps"):
        return None
    return a["rps"] / b["rps"]


def fx(v, digits=2):
    return "—" if v is None else f"{v:.{digits}f}"


def errors(*runs):
    return sum(r.get("errors", {}).get("total", 0) for r in runs if r is not None)


def run_wait_us(run_dir, name):
    """From runs/<name>/run_delay_ns.txt: µs the proxy waited for a CPU per request (measured + warm-up)."""
    path = os.path.join(run_dir, "runs", name, "run_delay_ns.txt")
    s = load(run_dir, name)
    if not os.path.exists(path) or not s or not s.get("requests"):
        return None
    total = s["requests"] * (1 + s["config"].get("warmup_s", 0) / max(s["duration_s"], 1e-9))
    return int(open(path).read().split()[0]) / 1000 / total


def cpu_us_per_request(run_dir, name):
    """From runs/<name>/cpu.txt (`ticks hz requests`): µs of proxy CPU per request."""
    path = os.path.join(run_dir, "runs", name, "cpu.txt")
    if not os.path.exists(path):
        return None
    parts = open(path).read().split()
    ticks, hz = int(parts[0]), int(parts[1])
    if len(parts) > 2:
        n = int(parts[2])
    else:
        s = load(run_dir, name)
        n = s["requests"] if s else 0
    return None if n == 0 else ticks / hz / n * 1e6


def criterion(run_dir):
    """{bench name: (median time string, median seconds, median throughput string, per second)}."""
    path = os.path.join(run_dir, "criterion.txt")
    rows = {}
    allocs = {}
    if not os.path.exists(path):
        return rows, allocs
    unit_s = {"ps": 1e-12, "ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    rate = {"B/s": 1, "KiB/s": 1024, "MiB/s": 1024 ** 2, "GiB/s": GIB,
            "elem/s": 1, "Kelem/s": 1e3, "Melem/s": 1e6, "Gelem/s": 1e9}
    name = None
    for line in open(path):
        m = re.match(r"^([a-z_]+/\S+): ([0-9.]+) allocs/request", line)
        if m:
            allocs[m.group(1)] = float(m.group(2))
            continue
        m = re.match(r"^([a-z_]+/\S+)(\s+time:.*)?$", line.rstrip())
        if m and not line.startswith(" "):
            name = m.group(1)
        m = re.search(r"time:\s+\[(.*?)\]", line)
        # With a saved baseline criterion adds a "change:" block whose time line holds three
        # percentages; only the estimate line has (low, median, high) with units.
        if m and name and len(m.group(1).split()) == 6:
            p = m.group(1).split()
            rows[name] = [f"{p[2]} {p[3]}", float(p[2]) * unit_s.get(p[3], 0), "", None]
            continue
        m = re.search(r"thrpt:\s+\[(.*?)\]", line)
        if m and name in rows and len(m.group(1).split()) == 6:
            p = m.group(1).split()
            rows[name][2] = f"{p[2]} {p[3]}"
            rows[name][3] = float(p[2]) * rate.get(p[3], 0)
    return rows, allocs


class Targets:
    def __init__(self):
        self.rows = []

    def add(self, what, measured, goal, ok, note=""):
        verdict = "—" if ok is None else ("**met**" if ok else "**not met**")
        self.rows.append(f"| {what} | {measured} | {goal} | {verdict} | {note} |")

    def lines(self):
        return ["| target | measured | goal | verdict | notes |", "|---|---|---|---|---|"] + self.rows


def mib(kib):
    """KiB from /proc to MiB, the unit the kernel, ps and top report RSS in."""
    return kib / 1024


def main():
    run_dir = sys.argv[1]
    machine = kv(os.path.join(run_dir, "machine.txt"))
    mem = {k: int(v) for k, v in kv(os.path.join(run_dir, "memory.txt")).items() if v.isdigit()}
    facts = kv(os.path.join(run_dir, "facts.txt"))
    crit, allocs = criterion(run_dir)
    quick = machine.get("quick") == "1"
    t = Targets()

    # 1. Throughput.
    for profile, mode, goal in [("simple", "json", 0.9), ("claude-code", "json", 0.8), ("claude-code", "sse", 0.8)]:
        rounds = [ratio(load(run_dir, f"{pfx}ccproxy-{profile}-{mode}"), load(run_dir, f"{pfx}nginx-{profile}-{mode}"))
                  for pfx in [""] + [f"round{i}-" for i in range(2, 10)]]
        rounds = [x for x in rounds if x is not None]
        r = statistics.median(rounds) if rounds else None
        note = "" if len(rounds) < 2 else "median of rounds: " + ", ".join(fx(x) for x in rounds)
        t.add(f"throughput, closed loop, 32 connections: ccproxy/nginx, {profile} {mode}", fx(r), f"≥ {goal}",
              None if r is None else r >= goal, note)

    # 2. Latency, open loop.
    for profile in ["simple", "claude-code"]:
        c = load(run_dir, f"open-ccproxy-{profile}-half-nginx")
        n = load(run_dir, f"open-nginx-{profile}-half-nginx")
        rate = facts.get(f"open_rate_half_nginx_{profile}", "?")
        for key, goal, label in [("p99", 1.2, "p99"), ("p99_9", 1.5, "p99.9")]:
            a, b = lat(c, key), lat(n, key)
            r = None if a is None or not b else a / b
            t.add(f"latency at 50% of nginx's max ({rate} req/s), {profile}: ccproxy {label} / nginx {label}",
                  f"{fx(r)} ({ms(a)} / {ms(b)} ms)", f"≤ {goal}", None if r is None else r <= goal)
    for profile in ["simple", "claude-code"]:
        worst, worst_at, seen = None, None, 0
        for pct in (10, 25, 50, 80):
            d = lat(load(run_dir, f"open-direct-{profile}-sweep-{pct}"), "p99")
            c = lat(load(run_dir, f"open-ccproxy-{profile}-sweep-{pct}"), "p99")
            if d is None or c is None:
                continue
            seen += 1
            if worst is None or c - d > worst:
                worst, worst_at = c - d, pct
        wait = None if worst_at is None else run_wait_us(run_dir, f"open-ccproxy-{profile}-sweep-{worst_at}")
        t.add(f"p99 overhead over direct, every rate up to 80% of ccproxy's max, {profile}",
              "—" if worst is None else f"{worst:.2f} ms (worst, at {worst_at}%)", "< 1 ms",
              None if worst is None else worst < 1.0,
              f"{seen} rates; at the worst, the proxy waited {fx(wait, 0)} µs per request for a CPU")

    # 3. Conversion speed (criterion).
    def thr(name):
        r = crit.get(name)
        return None if r is None else r[3]
    v = thr("anthropic_to_openai/claude_code_75KB")
    t.add("conversion, claude-code request, Anthropic → OpenAI", "—" if v is None else
          f"{v / 1e9:.2f} GB/s ({crit['anthropic_to_openai/claude_code_75KB'][0]})", "≥ 3 GB/s",
          None if v is None else v >= 3e9)
    v = thr("openai_to_anthropic/large_10KB")
    t.add("conversion, 10 KB response, OpenAI → Anthropic", "—" if v is None else f"{v / 1e9:.2f} GB/s",
          "≥ 2 GB/s", None if v is None else v >= 2e9)
    streams = {k: thr(k) for k in crit if k.startswith("stream_conversion/")}
    streams = {k: v for k, v in streams.items() if v}
    if streams:
        k = min(streams, key=streams.get)
        t.add("stream conversion, upstream chunks per second, one core",
              f"{streams[k] / 1e6:.2f} M/s (slowest: {k.split('/')[1]})", "≥ 2 M/s", streams[k] >= 2e6)
    else:
        t.add("stream conversion, upstream chunks per second, one core", "—", "≥ 2 M/s", None)
    a = allocs.get("memory_allocation/simple")
    t.add("allocations per proxied simple request (proxy threads, counted)", "—" if a is None else f"{a:.2f}",
          "≤ 10", None if a is None else a <= 10)

    # 4. Memory.
    v = mem.get("ccproxy_w2_idle_rss_kb")
    t.add("RSS idle, 2 workers", "—" if v is None else f"{mib(v):.2f} MiB", "≤ 6 MB", None if v is None else mib(v) <= 6,
          "" if v is None else f"{v * 1024 / 1e6:.2f} MB in decimal units")
    ka = load(run_dir, "keepalive-ccproxy-simple")
    conns = ka["config"]["connections"] if ka else None
    v = mem.get("keepalive_rss_max_kb")
    t.add(f"RSS while holding {conns or '?'} keep-alive connections (highest sample)",
          "—" if v is None else f"{mib(v):.1f} MiB", "≤ 64 MB (10,000)", None if v is None or quick else mib(v) <= 64,
          f"mid-run: {mib(mem.get('keepalive_rss_during_kb', 0)):.1f} MiB, fds {mem.get('keepalive_open_fds', '?')}")
    st = load(run_dir, "streams-ccproxy-simple")
    v = mem.get("streams_rss_max_kb")
    t.add(f"RSS while serving {st['config']['connections'] if st else '?'} concurrent streams (highest sample)",
          "—" if v is None else f"{mib(v):.1f} MiB", "≤ 64 MB (1,000)", None if v is None or quick else mib(v) <= 64,
          f"streams in flight mid-run: {mem.get('streams_in_flight_during', '?')}")

    # 5. Concurrency.
    if ka:
        ok = errors(ka) == 0 and ka["requests"] > 0
        t.add(f"{conns} concurrent keep-alive connections", f"{ka['requests']:,} requests, {errors(ka)} errors",
              "10,000, zero errors", None if quick else ok and conns >= 10000)
    if st:
        ok = errors(st) == 0 and st["requests"] > 0
        t.add(f"{st['config']['connections']} concurrent streaming requests",
              f"{st['requests']:,} streams, {errors(st)} errors or incomplete", "1,000, zero errors, all complete",
              None if quick else ok and st["config"]["connections"] >= 1000)

    # 6. Scaling.
    w1, w2 = load(run_dir, "scale-w1-simple-json"), load(run_dir, "scale-w2-simple-json")
    r = ratio(w2, w1)
    c1, c2 = cpu_us_per_request(run_dir, "scale-w1-simple-json"), cpu_us_per_request(run_dir, "scale-w2-simple-json")
    t.add("scaling: rps with 2 workers / 1 worker (1 worker pinned apart from the load)", fx(r), "≥ 1.7",
          None if r is None else r >= 1.7,
          f"proxy CPU per request: {fx(c1, 1)} µs with 1 worker, {fx(c2, 1)} µs with 2 (see tuning.md)")

    out = [f"# Benchmark run `{os.path.basename(os.path.normpath(run_dir))}`\n"]
    if os.path.exists(os.path.join(run_dir, "machine.txt")):
        out += ["## Machine\n", "```", open(os.path.join(run_dir, "machine.txt")).read().strip(), "```\n"]
    out.append("## Targets\n")
    if quick:
        out.append("*Quick run: scaled-down counts and durations. It proves the pipeline; its verdicts "
                   "prove nothing.*\n")
    out += t.lines() + [""]

    out.append("## Throughput and latency, closed loop, 32 connections, 1 loadgen thread, mock on 1 thread\n")
    out.append("Placement: loadgen on core 0, the mock on the other core, proxies where they put themselves "
               "(ccproxy pins one worker per core, nginx's workers float).\n")
    out.append("`direct` is loadgen → mock (the floor); `ccproxy` converts Anthropic ⇄ OpenAI with 2 workers; "
               "`nginx` is a 2-worker pass-through reverse proxy doing no conversion. "
               "Latencies in ms. Ratios are within this run.\n")
    out.append("| profile | mode | direct rps | ccproxy rps | nginx rps | ccproxy/direct | ccproxy/nginx "
               "| ccproxy p50 | ccproxy p99 | nginx p99 | ccproxy p99 TTFB | errors |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p in PROFILES:
        for m in MODES:
            d, c, n = (load(run_dir, f"{x}-{p}-{m}") for x in ("direct", "ccproxy", "nginx"))
            if d is None and c is None and n is None:
                continue
            ttfb = ms(lat(c, "p99", "ttfb")) if m == "sse" else "—"
            out.append(f"| {p} | {m} | {fmt_rps(d)} | {fmt_rps(c)} | {fmt_rps(n)} | {fx(ratio(c, d))} "
                       f"| {fx(ratio(c, n))} | {ms(lat(c, 'p50'))} | {ms(lat(c, 'p99'))} | {ms(lat(n, 'p99'))} "
                       f"| {ttfb} | {errors(d, c, n)} |")
    out.append("")

    rows = []
    for p in ["simple", "claude-code"]:
        for m in MODES:
            c, n = cpu_us_per_request(run_dir, f"cpu-ccproxy-{p}-{m}"), cpu_us_per_request(run_dir, f"cpu-nginx-{p}-{m}")
            if c is not None or n is not None:
                rows.append(f"| {p} | {m} | {fx(c, 1)} | {fx(n, 1)} | {fx(None if not n or c is None else c / n)} |")
    if rows:
        out.append("## CPU time per request (user + system, the proxy's own threads)\n")
        out.append("A fixed number of requests, 32 connections. Unlike throughput on shared cores, this is the "
                   "proxy's own cost whatever else the machine runs.\n")
        out += ["| profile | mode | ccproxy µs | nginx µs | ccproxy/nginx |", "|---|---|---|---|---|"] + rows + [""]

    rows = []
    # (label, rate fact, run name suffix, targets) for each open-loop load.
    for p in ["simple", "claude-code"]:
        loads = [("50% of nginx max", f"open_rate_half_nginx_{p}", "half-nginx", ("direct", "ccproxy", "nginx"))]
        loads += [(f"{pct}% of ccproxy max", f"open_rate_{pct}pct_ccproxy_{p}", f"sweep-{pct}", ("direct", "ccproxy"))
                  for pct in (10, 25, 50, 80)]
        for label, fact_key, suffix, targets in loads:
            rate = facts.get(fact_key)
            for x in targets if rate else ():
                s = load(run_dir, f"open-{x}-{p}-{suffix}")
                wait = run_wait_us(run_dir, f"open-{x}-{p}-{suffix}")
                rows.append(f"| {p} | {label} | {rate} | {x} | {ms(lat(s, 'p50'))} | {ms(lat(s, 'p99'))} "
                            f"| {ms(lat(s, 'p99_9'))} | {fx(wait, 0)} | {errors(s) if s else '—'} |")
    if rows:
        out.append("## Latency, open loop (64 connections, latency from each request's intended send time)\n")
        out.append("`CPU wait µs/req`: time the proxy's threads spent runnable but waiting for a core, per "
                   "request (from /proc/PID/task/*/schedstat), on cores shared with the load generator and the mock.\n")
        out += ["| profile | load | req/s | target | p50 ms | p99 ms | p99.9 ms | CPU wait µs/req | errors |",
                "|---|---|---|---|---|---|---|---|---|"] + rows + [""]

    if w1 is not None or w2 is not None:
        out.append("## Worker scaling (simple, json)\n")
        out.append("| workers | placement | rps | p99 ms | proxy CPU µs/request |")
        out.append("|---|---|---|---|---|")
        out.append(f"| 1 | proxy on core 0, loadgen and mock on the other | {fmt_rps(w1)} | {ms(lat(w1, 'p99'))} "
                   f"| {fx(c1, 1)} |")
        out.append(f"| 2 | proxy on both cores, shared with loadgen and mock | {fmt_rps(w2)} | {ms(lat(w2, 'p99'))} "
                   f"| {fx(c2, 1)} |")
        out.append("")

    table(out, "## Memory (ccproxy RSS, MiB)", ["measure", "value"],
          [[k, f"{mib(v):.2f} MiB" if k.endswith("_kb") else v] for k, v in mem.items()])
    table(out, "## Criterion micro-benchmarks (median)", ["benchmark", "time", "throughput"],
          [[k, r[0], r[2] or "—"] for k, r in crit.items()])
    table(out, "", ["allocations", "per request"], [[k, f"{v:.2f}"] for k, v in allocs.items()])
    print("\n".join(out))


def table(out, title, header, rows):
    """Appends a markdown table (nothing when there are no rows)."""
    if not rows:
        return
    if title:
        out.append(title + "\n")
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "---|" * len(header))
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    out.append("")


if __name__ == "__main__":
    main()
