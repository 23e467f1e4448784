#!/usr/bin/env python3
"""Samples the machine and one process every 100 ms until SIGTERM; writes CSV and a JSON digest.

Usage: sample.py PID OUT_PREFIX. Columns: t (s), lag_ms (how late this sampler woke: a
large lag means the whole machine stalled, not just the proxy), busy_pct (all cores),
procs_running, proc_cpu_pct (PID, 100 = one core). Used by scripts/soak.sh to tell a
proxy stall from a starved machine during the latency runs.

Open fds are not sampled: listing /proc/PID/fd of a proxy holding 10,000 connections costs the
kernel about 8 ms, and doing it every tick put that stall on the very load being measured (p99
0.3 -> 2.8 ms). soak.sh counts fds before, during and after instead.
"""
import json
import os
import signal
import sys
import time

pid, prefix = int(sys.argv[1]), sys.argv[2]
tick = os.sysconf("SC_CLK_TCK")
stop = False


def _stop(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, _stop)
signal.signal(signal.SIGINT, _stop)


def machine():
    busy = total = running = 0
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                v = [int(x) for x in line.split()[1:]]
                total, busy = sum(v), sum(v) - v[3] - v[4]
            elif line.startswith("procs_running"):
                running = int(line.split()[1])
    return busy, total, running


def proc():
    try:
        with open(f"/proc/{pid}/stat") as f:
            v = f.read().rsplit(")", 1)[1].split()
        return int(v[11]) + int(v[12])
    except OSError:
        return 0


rows = []
t0 = time.monotonic()
b0, tot0, _ = machine()
c0 = proc()
last = t0
while not stop:
    before = time.monotonic()
    time.sleep(0.1)
    now = time.monotonic()
    b, tot, run = machine()
    c = proc()
    dt = now - last
    # Lag is the sleep's overshoot alone, not this loop's own reading time.
    rows.append((round(now - t0, 2), round((now - before - 0.1) * 1000, 1),
                 round(100 * (b - b0) / max(1, tot - tot0), 1), run, round(100 * (c - c0) / tick / dt, 1)))
    last, b0, tot0, c0 = now, b, tot, c
with open(prefix + ".csv", "w") as f:
    f.write("t,lag_ms,busy_pct,procs_running,proc_cpu_pct\n")
    f.writelines(",".join(map(str, r)) + "\n" for r in rows)
digest = {
    "samples": len(rows),
    "max_sampler_lag_ms": max((r[1] for r in rows), default=None),
    "machine_busy_pct_mean": round(sum(r[2] for r in rows) / max(1, len(rows)), 1),
    "procs_running_max": max((r[3] for r in rows), default=None),
    "procs_running_mean": round(sum(r[3] for r in rows) / max(1, len(rows)), 1),
    "proxy_cpu_pct_mean": round(sum(r[4] for r in rows) / max(1, len(rows)), 1),
    "proxy_cpu_pct_max": max((r[4] for r in rows), default=None),
}
with open(prefix + ".json", "w") as f:
    json.dump(digest, f, indent=1)
