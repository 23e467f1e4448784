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

import re
import secrets
import time

import anthropic
import pytest

from conftest import DRIVERS, Proxy
from mock_upstream import MockControl, start_in_thread
from test_claude_code import assert_tool_round_trip, bash_round_trip, final_result, run_claude

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
    proxy = two_provider_proxy
    a, b = two_mocks
    a.reset()
    b.reset()
    marker, args, rules = bash_round_trip("route", "call_route_1", "via A", "side-a")
    a.script(*rules)
    background = {"label": "background", "repeat": True,
                  "reply": {"text": "Background OK.",
                            "usage": {"prompt_tokens": 10, "completion_tokens": 3}}}
    b.script(background)
    done = run_claude(proxy.url, tmp_path, "Print the route marker with Bash, then report its output.",
                      lambda err: f"A served {[r['served'] for r in a.requests()]}, B served "
                                  f"{[r['served'] for r in b.requests()]}; stderr: {err}")
    rec_a, rec_b = a.requests(), b.requests()
    served_a = [r["served"] for r in rec_a]
    served_b = [r["served"] for r in rec_b]
    context = (f"exit={done.returncode} A={served_a} B={served_b}\n"
               f"stderr: {done.stderr[-1500:]}\nstdout: {done.stdout[-1500:]}\n"
               f"proxy log:\n{proxy.log()[-2500:]}")
    result = final_result(done, marker, context)
    assert "(via A)" in result.get("result", ""), context

    # The main loop ran through A only, with A's model and key.
    assert served_a.count("turn1") == 1 and served_a.count("turn2") == 1, context
    assert all(r["violations"] == [] for r in rec_a + rec_b), context
    for r in rec_a:
        assert r["body"]["model"] == MODEL_A, context
        assert r["headers"]["authorization"] == f"Bearer {KEY_A}"
    turn2 = next(r for r in rec_a if r["served"] == "turn2")["body"]
    call_msg = assert_tool_round_trip(turn2, "call_route_1", args, marker)
    assert "reasoning_content" in call_msg  # deepseek preset: passback on tool-call turns

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
