"""Fixtures: the scripted mock upstream and a running ccproxy per I/O driver.

The mock runs in-process on 127.0.0.1:0 for the whole session and is reset
before every test. ccproxy is started once per driver (io_uring by default,
epoll with MONOIO_FORCE_LEGACY_DRIVER=1) from CCPROXY_BIN, else
``${CARGO_TARGET_DIR:-<repo>/target}/debug/ccproxy``; the logged driver must
be the one asked for. Its output is drained into memory so tests can inspect
the log, and the upstream key must never appear in it.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from mock_upstream import MockControl, start_in_thread  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
UPSTREAM_KEY = "test-key-" + secrets.token_hex(8)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
LISTEN = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
DRIVER = re.compile(r"driver\W{0,3}(io_uring|epoll|legacy)")
DRIVERS = ("io_uring", "epoll")


def proxy_binary() -> Path:
    if os.environ.get("CCPROXY_BIN"):
        return Path(os.environ["CCPROXY_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    if not target.is_absolute():
        target = REPO / target
    return target / "debug" / "ccproxy"


class Proxy:
    def __init__(self, driver: str, mock: MockControl | None, home: str,
                 argv: list[str] | None = None, extra_env: dict[str, str] | None = None):
        """``argv`` replaces the default upstream flags (``--upstream`` to
        ``mock``, key, no retries), e.g. ``["--config", FILE]``; ``--listen``
        is always given. ``extra_env`` is added after the scrub."""
        self.driver = driver
        self.log_lines: list[str] = []
        self._lock = threading.Lock()
        binary = proxy_binary()
        if not binary.exists():
            pytest.exit(f"ccproxy binary not found at {binary}; run `cargo build` first", 2)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CCPROXY_", "MONOIO_", "ANTHROPIC_", "OPENAI_"))}
        env["NO_COLOR"] = "1"
        env["HOME"] = home  # an empty home: no ~/.config/ccproxy/config.toml
        if driver == "epoll":
            env["MONOIO_FORCE_LEGACY_DRIVER"] = "1"
        env.update(extra_env or {})
        if argv is None:
            assert mock is not None
            argv = ["--upstream", mock.base_url, "--upstream-key", UPSTREAM_KEY, "--retries", "0"]
        self.proc = subprocess.Popen(
            [str(binary), "--listen", "127.0.0.1:0", *argv],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, text=True, errors="replace")
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        self.port, self.logged_driver = self._wait_ready()
        self.url = f"http://127.0.0.1:{self.port}"

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.log_lines.append(ANSI.sub("", line.rstrip("\n")))

    def log(self) -> str:
        with self._lock:
            return "\n".join(self.log_lines)

    def _wait_ready(self) -> tuple[int, str]:
        deadline = time.monotonic() + 15
        port = driver = None
        while time.monotonic() < deadline:
            text = self.log()
            if port is None and (m := LISTEN.search(text)):
                port = int(m.group(1))
            if driver is None and (m := DRIVER.search(text)):
                driver = m.group(1)
            if port is not None and driver is not None:
                return port, driver
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        pytest.fail(f"ccproxy ({self.driver}) did not report its port and driver; "
                    f"exit={self.proc.poll()} log:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="session")
def mock_server():
    server, thread = start_in_thread(key=UPSTREAM_KEY)
    yield MockControl(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def mock(mock_server: MockControl):
    """The mock, emptied before the test. Tests that expect the proxy to send
    an invalid request must check and clear violations themselves; any left
    over fails the test."""
    mock_server.reset()
    yield mock_server
    left = mock_server.violations()
    mock_server.reset()
    assert not left, f"mock upstream saw invalid OpenAI requests: {left}"


@pytest.fixture(scope="session", params=DRIVERS)
def proxy(request, mock_server: MockControl, tmp_path_factory):
    p = Proxy(request.param, mock_server, str(tmp_path_factory.mktemp("home")))
    if p.logged_driver != request.param:
        p.stop()
        pytest.fail(f"asked for the {request.param} driver, ccproxy logged driver="
                    f"{p.logged_driver}:\n{p.log()[-2000:]}")
    yield p
    p.stop()
    assert UPSTREAM_KEY not in p.log(), "the upstream key leaked into the proxy log"


@pytest.fixture
def client(proxy: Proxy, mock: MockControl):
    anthropic = pytest.importorskip("anthropic")
    return anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-anything", max_retries=0,
                               timeout=30)
