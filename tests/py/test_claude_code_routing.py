"""Real Claude Code → ccproxy with two providers → two mocks.

The config has provider A (deepseek preset, `router.default`) and provider B
(ollama preset, `router.background`: haiku-class requests), each pointed at
its own mock with its own key. Claude Code's main loop (a Bash tool round
trip, as in test_claude_code.py) must run entirely through A. Whatever
haiku-class background calls Claude Code makes in `-p` mode must reach B;
whether or not it makes any, one haiku request from the SDK through the same
proxy must reach B too, so the background route is always exercised.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time

import anthropic
import pytest

from conftest import DRIVERS, Proxy
from mock_upstream import MockControl, start_in_thread
from test_claude_code import CLAUDE, TIMEOUT, split_fragments

KEY_A = "key-a-" + secrets.token_hex(6)
KEY_B = "key-b-" + secrets.token_hex(6)
MODEL_A = "deepseek-chat"
MODEL_B = "qwen2.5-coder:7b"
# ccproxy's access line for a /v1/messages request: client model, then
# `upstream=` with the `x-ccproxy-route` value.
ACCESS = re.compile(r'route="messages" status=200 model=(\S+) upstream=(.+?) retries=')


@pytest.fixture(scope="module")
def two_mocks():
    sa, _ = start_in_thread(key=KEY_A, flavor="deepseek")
    sb, _ = start_in_thread(key=KEY_B, flavor="ollama")
    yield MockControl(sa.server_address[1]), MockControl(sb.server_address[1])
    for s in (sa, sb):
        s.shutdown()
        s.server_close()


@pytest.fixture(scope="module", params=DRIVERS)
def two_provider_proxy(request, two_mocks, tmp_path_factory):
    a, b = two_mocks
    home = tmp_path_factory.mktemp("home")
    cfg = home / "two.toml"
    cfg.write_text(
        "retries = 0\n"
        f'[[providers]]\nname = "prov-a"\npreset = "deepseek"\nbase_url = "{a.base_url}"\n'
        'api_key = "${PYROUTE_KEY_A}"\n\n'
        f'[[providers]]\nname = "prov-b"\npreset = "ollama"\nbase_url = "{b.base_url}"\n'
        'api_key = "${PYROUTE_KEY_B}"\n\n'
        f'[router]\ndefault = "prov-a,{MODEL_A}"\nbackground = "prov-b,{MODEL_B}"\n')
    px = Proxy(request.param, None, str(home), argv=["--config", str(cfg)],
               extra_env={"PYROUTE_KEY_A": KEY_A, "PYROUTE_KEY_B": KEY_B})
    if px.logged_driver != request.param:
        px.stop()
        pytest.fail(f"asked for {request.param}, ccproxy logged {px.logged_driver}")
    yield px
    px.stop()
    assert KEY_A not in px.log() and KEY_B not in px.log(), "a key leaked into the log"


def test_claude_code_through_two_providers(two_provider_proxy, two_mocks, tmp_path):
    if not CLAUDE.exists():
        pytest.fail(f"Claude Code not installed at {CLAUDE}; run `npm ci` in tests/e2e")
    proxy = two_provider_proxy
    a, b = two_mocks
    a.reset()
    b.reset()
    token = secrets.token_hex(6)
    marker = f"ccproxy-route-{token}"
    args = {"command": f"printf '%s-%s\\n' ccproxy-route {token}",
            "description": "Print the routing marker"}
    fragments = split_fragments(json.dumps(args), 7)
    a.script(
        {"label": "turn2", "match": {"has_tool": "Bash", "has_tool_message": True},
         "reply": {"text": ["The command printed: ", "{{tool_results}}", " (via A)."],
                   "usage": {"prompt_tokens": 1200, "completion_tokens": 20}}},
        {"label": "turn1", "match": {"has_tool": "Bash", "has_tool_message": False},
         "reply": {"text": "Running it now.",
                   "tool_calls": [{"id": "call_route_1", "name": "Bash", "arguments": fragments}],
                   "usage": {"prompt_tokens": 1000, "completion_tokens": 30}}},
        {"label": "side-a", "repeat": True,
         "reply": {"text": "OK.", "usage": {"prompt_tokens": 10, "completion_tokens": 2}}},
    )
    background = {"label": "background", "repeat": True,
                  "reply": {"text": "Background OK.",
                            "usage": {"prompt_tokens": 10, "completion_tokens": 3}}}
    b.script(background)
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": proxy.url,
        "ANTHROPIC_AUTH_TOKEN": "e2e-token-" + secrets.token_hex(4),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    try:
        done = subprocess.run(
            [str(CLAUDE), "-p", "Print the routing marker with Bash, then report its output.",
             "--allowedTools", "Bash", "--output-format", "json"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=work, env=env,
            timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"claude timed out after {TIMEOUT}s; A served "
                    f"{[r['served'] for r in a.requests()]}, B served "
                    f"{[r['served'] for r in b.requests()]}; stderr: {str(e.stderr)[-1500:]}")
    rec_a, rec_b = a.requests(), b.requests()
    served_a = [r["served"] for r in rec_a]
    served_b = [r["served"] for r in rec_b]
    context = (f"exit={done.returncode} A={served_a} B={served_b}\n"
               f"stderr: {done.stderr[-1500:]}\nstdout: {done.stdout[-1500:]}\n"
               f"proxy log:\n{proxy.log()[-2500:]}")

    lines = [ln for ln in done.stdout.splitlines() if ln.strip().startswith("{")]
    assert lines, f"no JSON result from claude\n{context}"
    result = json.loads(lines[-1])
    assert result.get("type") == "result", context
    assert result.get("is_error") is False, context
    assert marker in result.get("result", ""), context
    assert "(via A)" in result.get("result", ""), context
    assert done.returncode == 0, context

    # The main loop ran through A only, with A's model and key.
    assert served_a.count("turn1") == 1 and served_a.count("turn2") == 1, context
    assert all(r["violations"] == [] for r in rec_a + rec_b), context
    for r in rec_a:
        assert r["body"]["model"] == MODEL_A, context
        assert r["headers"]["authorization"] == f"Bearer {KEY_A}"
    turn2 = next(r for r in rec_a if r["served"] == "turn2")["body"]
    msgs = turn2["messages"]
    idx = next(i for i, m in enumerate(msgs) if m.get("tool_calls"))
    call = msgs[idx]["tool_calls"][0]
    assert call["id"] == "call_route_1" and call["function"]["name"] == "Bash"
    assert json.loads(call["function"]["arguments"]) == args
    assert "reasoning_content" in msgs[idx]  # deepseek preset: passback on tool-call turns
    tool_msg = msgs[idx + 1]
    assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == "call_route_1"
    content = tool_msg["content"]
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content)
    assert marker in content

    # Claude Code's own background calls, if any, went to B: never the main loop.
    for r in rec_b:
        assert r["body"]["model"] == MODEL_B, context
        assert r["headers"]["authorization"] == f"Bearer {KEY_B}"
        assert not any(m.get("role") == "tool" for m in r["body"]["messages"]), context

    # The access log names each decision: haiku-class → B, the rest → A.
    deadline = time.monotonic() + 3  # the access line follows the response
    while True:
        decisions = [(m.group(1), m.group(2)) for m in ACCESS.finditer(proxy.log())]
        if len(decisions) >= len(rec_a) + len(rec_b) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(decisions) == len(rec_a) + len(rec_b), context
    for model, upstream in decisions:
        if "haiku" in model:
            assert upstream == f"prov-b,{MODEL_B} (background)", context
        else:
            assert upstream == f"prov-a,{MODEL_A} (default)", context
    assert sum("haiku" in m for m, _ in decisions) == len(rec_b), context

    # And the background route, exercised for sure: a haiku-class request.
    b.reset()
    a.reset()
    b.script(background)
    sdk = anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-x", max_retries=0, timeout=30)
    with sdk.messages.stream(model="claude-haiku-4-5-20251001", max_tokens=512,
                             messages=[{"role": "user", "content": "Title for this chat?"}]) as s:
        assert s.response.headers["x-ccproxy-route"] == f"prov-b,{MODEL_B} (background)"
        msg = s.get_final_message()
    assert msg.content[0].text == "Background OK."
    assert msg.model == "claude-haiku-4-5-20251001"
    assert [r["served"] for r in b.requests()] == ["background"]
    assert a.requests() == []
    print(f"Claude Code background calls seen by B: {len(served_b)}; A served {served_a}")
