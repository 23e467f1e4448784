#!/usr/bin/env python3
"""Hostile and idle clients for ccproxy's soak tests (Python 3 stdlib only, loopback only).

Modes (each writes one JSON result with --out and prints it):
  idle   open N keep-alive connections, send one GET /health on each, then hold them
         idle until SIGTERM/SIGINT or --hold seconds; counts connections the server
         closed early. Touches --ready-file once every connection is open and answered.
  slow   slowloris: N clients each trickle a request head one byte every --interval
         seconds, never finishing it; when the server closes one, it reconnects. Records
         how long after its first byte each connection was closed (should be the
         header deadline) and any connection held past deadline + slack.
  probe  a few sequential POST /v1/messages (JSON and SSE) checked strictly: every answer
         must be an Anthropic message, a complete Anthropic stream, an Anthropic error
         body ({"type":"error","error":{"type","message"}}) or a stream ending in
         `event: error`. Anything else is counted as malformed, with a sample.
"""

import argparse
import asyncio
import http.client
import json
import os
import resource
import signal
import sys
import time

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
        except (ValueError, OSError):
            pass
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        sys.exit(f"clients.py: open-files limit {soft} < {need} needed; raise `ulimit -n` (hard limit {hard})")


def pct(values, q):
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, int(q * len(v)))], 3)


def content_length(head):
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return int(v.strip())
    return 0


# --- idle ---------------------------------------------------------------------


async def idle(a):
    st = {"mode": "idle", "target": f"{a.host}:{a.port}", "requested": a.n, "opened": 0, "health_ok": 0,
          "connect_errors": 0, "bad_responses": 0, "closed_by_server_early": 0, "held_at_end": 0}
    sem = asyncio.Semaphore(a.parallel)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    held = {}
    t0 = time.monotonic()

    async def one(i):
        async with sem:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(a.host, a.port), 15)
            except (OSError, asyncio.TimeoutError):
                st["connect_errors"] += 1
                return
            st["opened"] += 1
            try:
                w.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 15)
                await asyncio.wait_for(r.readexactly(content_length(head)), 15)
                if not head.startswith(b"HTTP/1.1 200"):
                    raise ValueError(head[:40])
            except (OSError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                st["bad_responses"] += 1
                w.close()
                return
            st["health_ok"] += 1
            held[i] = (r, w)

    await asyncio.gather(*(one(i) for i in range(a.n)))
    st["open_secs"] = round(time.monotonic() - t0, 3)
    print(f"idle: {st['health_ok']}/{a.n} connections open and answered in {st['open_secs']}s", file=sys.stderr)

    async def watch(i, r):
        # Any byte or EOF while idle means the server let go of the connection.
        try:
            await r.read(1)
        except OSError:
            pass
        st["closed_by_server_early"] += 1
        held.pop(i, None)

    watchers = [asyncio.ensure_future(watch(i, r)) for i, (r, _) in list(held.items())]
    # Ready once the watchers are armed: starting 10,000 reads costs this process
    # a burst of CPU, which would land on the normal load measured next.
    await asyncio.sleep(0.5)
    if a.ready_file:
        with open(a.ready_file, "w") as f:
            f.write(str(st["health_ok"]))
    try:
        await asyncio.wait_for(stop.wait(), a.hold)
    except asyncio.TimeoutError:
        pass
    for t in watchers:
        t.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    st["held_at_end"] = len(held)
    st["held_secs"] = round(time.monotonic() - t0 - st["open_secs"], 3)
    for _, w in held.values():
        w.close()
    return st


# --- slow ---------------------------------------------------------------------

SLOW_HEAD = b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


async def slow(a):
    st = {"mode": "slow", "target": f"{a.host}:{a.port}", "clients": a.n, "interval_s": a.interval,
          "deadline_s": a.deadline, "connections": 0, "connect_errors": 0, "closed_by_server": 0,
          "answered": 0, "answers": {}, "closed_early": 0, "open_at_end": 0, "overdue_at_end": 0}
    close_after = []  # seconds from first byte to the server closing
    stop_at = time.monotonic() + a.duration
    open_since = {}  # client -> first-byte time of its current connection

    async def client(i):
        await asyncio.sleep(a.ramp * i / max(1, a.n))
        while time.monotonic() < stop_at:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(a.host, a.port), 10)
            except (OSError, asyncio.TimeoutError):
                st["connect_errors"] += 1
                await asyncio.sleep(0.5)
                continue
            st["connections"] += 1
            first = None
            k = 0
            closed = False
            try:
                while time.monotonic() < stop_at:
                    # After the request line, endless header lines keep the head unfinished.
                    b = SLOW_HEAD[k] if k < len(SLOW_HEAD) else b"X-Slow: aaaaaaaa\r\n"[(k - len(SLOW_HEAD)) % 18]
                    k += 1
                    w.write(bytes([b]))
                    await w.drain()
                    if first is None:
                        first = time.monotonic()
                        open_since[i] = first
                    try:
                        data = await asyncio.wait_for(r.read(4096), a.interval)
                    except asyncio.TimeoutError:
                        continue
                    if data:
                        # An answer (e.g. 408) before the close is fine, but note it.
                        st["answered"] += 1
                        line = data.split(b"\r\n", 1)[0].decode("latin1")[:40]
                        st["answers"][line] = st["answers"].get(line, 0) + 1
                        try:
                            await asyncio.wait_for(r.read(), a.interval)
                        except (asyncio.TimeoutError, OSError):
                            pass
                    closed = True
                    break
            except OSError:
                closed = True
            open_since.pop(i, None)
            age = time.monotonic() - first if first is not None else 0.0
            if closed and first is not None:
                st["closed_by_server"] += 1
                close_after.append(age)
                if age < a.deadline - a.slack:
                    st["closed_early"] += 1
            elif not closed:
                # Still open when the run ended: fine only while inside the deadline.
                st["open_at_end"] += 1
                if age > a.deadline + a.slack:
                    st["overdue_at_end"] += 1
            w.close()

    await asyncio.gather(*(client(i) for i in range(a.n)))
    st["close_after_first_byte_s"] = {"min": pct(close_after, 0), "p50": pct(close_after, 0.5),
                                      "p99": pct(close_after, 0.99), "max": round(max(close_after), 3) if close_after else None}
    return st


# --- probe --------------------------------------------------------------------


def classify_json(status, headers, body):
    try:
        v = json.loads(body)
    except ValueError:
        return "malformed", f"{status} non-JSON body {body[:80]!r}"
    if status == 200:
        return ("message", None) if isinstance(v, dict) and v.get("type") == "message" else ("malformed", f"200 {body[:80]!r}")
    e = v.get("error") if isinstance(v, dict) else None
    if v.get("type") == "error" and isinstance(e, dict) and isinstance(e.get("type"), str) and isinstance(e.get("message"), str):
        ra = headers.get("retry-after")
        return f"error {status} {e['type']}" + (f" retry-after={ra}" if ra else ""), None
    return "malformed", f"{status} {body[:80]!r}"


def classify_sse(status, headers, body):
    if status != 200:
        return classify_json(status, headers, body)
    events = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        ev, data = None, b""
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                ev = line[6:].strip().decode("latin1")
            elif line.startswith(b"data:"):
                data += line[5:].strip()
        if ev:
            events.append((ev, data))
    if not events or events[0][0] != "message_start":
        return "malformed", f"stream without message_start: {body[:80]!r}"
    last, data = events[-1]
    if last == "message_stop":
        return "stream", None
    if last == "error":
        try:
            e = json.loads(data)["error"]
            return f"stream event:error {e['type']}", None
        except (ValueError, KeyError, TypeError):
            return "malformed", f"bad error event {data[:80]!r}"
    return "malformed", f"stream ends with {last}"


def probe(a):
    st = {"mode": "probe", "target": f"{a.host}:{a.port}", "answers": {}, "malformed": 0, "samples": []}
    for stream in (False, True):
        for _ in range(a.n):
            body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": stream,
                               "messages": [{"role": "user", "content": "soak probe"}]})
            c = http.client.HTTPConnection(a.host, a.port, timeout=a.timeout)
            try:
                c.request("POST", "/v1/messages", body, {"content-type": "application/json", "anthropic-version": "2023-06-01"})
                resp = c.getresponse()
                raw = resp.read()
                hdrs = {k.lower(): v for k, v in resp.getheaders()}
                kind, why = (classify_sse if stream else classify_json)(resp.status, hdrs, raw)
            except Exception as e:  # noqa: BLE001 - any failure here is the finding
                kind, why = "malformed", f"{type(e).__name__}: {e}"
            finally:
                c.close()
            key = ("sse " if stream else "json ") + kind
            st["answers"][key] = st["answers"].get(key, 0) + 1
            if kind == "malformed":
                st["malformed"] += 1
                if len(st["samples"]) < 3:
                    st["samples"].append(why)
    return st


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["idle", "slow", "probe"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("-n", type=int, default=100, help="connections / clients / probes per mode")
    p.add_argument("--parallel", type=int, default=256, help="idle: connects in flight at once")
    p.add_argument("--hold", type=float, default=120, help="idle: upper bound on the hold, seconds")
    p.add_argument("--ready-file")
    p.add_argument("--interval", type=float, default=2.0, help="slow: seconds between bytes")
    p.add_argument("--deadline", type=float, default=10.0, help="slow: the server's header deadline")
    p.add_argument("--slack", type=float, default=2.5, help="slow: tolerance around the deadline")
    p.add_argument("--ramp", type=float, default=2.0, help="slow: spread client starts over this many seconds")
    p.add_argument("--duration", type=float, default=20.0, help="slow: total seconds")
    p.add_argument("--timeout", type=float, default=15.0, help="probe: per-request timeout")
    p.add_argument("--out")
    a = p.parse_args()
    if a.host not in LOOPBACK:
        sys.exit("clients.py: loopback targets only")
    raise_nofile(a.n + 64)
    if a.mode == "probe":
        st = probe(a)
    else:
        st = asyncio.run(idle(a) if a.mode == "idle" else slow(a))
    text = json.dumps(st, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
