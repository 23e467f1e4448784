"""Real Claude Code (pinned in tests/e2e/package.json) → ccproxy → mock.

The mock plays the model: the main-loop turn 1 (a request offering the Bash
tool, with no tool result yet) gets a streamed Bash tool call whose JSON
arguments arrive in fragments; turn 2 (the request carrying the
``role:"tool"`` message) gets a streamed text echoing that tool message.
Claude Code's side requests (titles, quota probes, ...) get a short text.

The command prints a marker that appears only in its *output*, never in the
command text, so finding it in the final result proves the whole loop ran:
tool call parsed by Claude Code, command executed, result converted to an
OpenAI tool message, echoed back. Request bodies stay in memory: Claude
Code's prompts are never written anywhere.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

CLAUDE = Path(os.environ.get("CLAUDE_BIN") or REPO / "tests/e2e/node_modules/.bin/claude")
TIMEOUT = 120


def split_fragments(s: str, n: int) -> list[str]:
    step = max(1, len(s) // n)
    return [s[i:i + step] for i in range(0, len(s), step)]


def bash_round_trip(name: str, call_id: str, via: str, side_label: str):
    """The marker, the Bash arguments and the mock rules of one Bash tool
    round trip: turn 1 gets a streamed tool call in 7+ fragments, turn 2
    (carrying the tool message) echoes the tool result, side requests a
    short text."""
    token = secrets.token_hex(6)
    marker = f"ccproxy-{name}-{token}"
    args = {"command": f"printf '%s-%s\\n' ccproxy-{name} {token}",
            "description": f"Print the {name} marker"}
    arg_json = json.dumps(args)
    fragments = split_fragments(arg_json, 7)
    assert len(fragments) >= 5 and "".join(fragments) == arg_json
    rules = [
        {"label": "turn2", "match": {"has_tool": "Bash", "has_tool_message": True},
         "reply": {"text": ["The command printed: ", "{{tool_results}}", f" ({via})."],
                   "usage": {"prompt_tokens": 1200, "completion_tokens": 20}}},
        {"label": "turn1", "match": {"has_tool": "Bash", "has_tool_message": False},
         "reply": {"text": "Running it now.",
                   "tool_calls": [{"id": call_id, "name": "Bash", "arguments": fragments}],
                   "usage": {"prompt_tokens": 1000, "completion_tokens": 30}}},
        {"label": side_label, "repeat": True,
         "reply": {"text": "OK.", "usage": {"prompt_tokens": 10, "completion_tokens": 2}}},
    ]
    return marker, args, rules


def run_claude(proxy_url: str, tmp_path: Path, prompt: str, on_timeout) -> subprocess.CompletedProcess:
    """Runs `claude -p PROMPT` in a fresh home against the proxy; on a
    timeout fails with `on_timeout(stderr)` as the message."""
    if not CLAUDE.exists():
        pytest.fail(f"Claude Code not installed at {CLAUDE}; run `npm ci` in tests/e2e")
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": proxy_url,
        "ANTHROPIC_AUTH_TOKEN": "e2e-token-" + secrets.token_hex(4),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    try:
        return subprocess.run(
            [str(CLAUDE), "-p", prompt, "--allowedTools", "Bash", "--output-format", "json"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=work, env=env,
            timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"claude timed out after {TIMEOUT}s; {on_timeout(str(e.stderr)[-1500:])}")


def assert_tool_round_trip(turn2: dict, call_id: str, args: dict, marker: str) -> dict:
    """Turn 2's OpenAI body carries the assistant's Bash call with `args`,
    followed at once by its tool message holding `marker`; returns the
    assistant message."""
    msgs = turn2["messages"]
    idx = next(i for i, m in enumerate(msgs) if m.get("tool_calls"))
    call = msgs[idx]["tool_calls"][0]
    assert call["id"] == call_id and call["function"]["name"] == "Bash"
    assert json.loads(call["function"]["arguments"]) == args
    tool_msg = msgs[idx + 1]
    assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == call_id
    content = tool_msg["content"]
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content)
    assert marker in content
    return msgs[idx]


def final_result(done: subprocess.CompletedProcess, marker: str, context: str) -> dict:
    """Claude Code's JSON result line, asserted successful and holding `marker`."""
    lines = [ln for ln in done.stdout.splitlines() if ln.strip().startswith("{")]
    assert lines, f"no JSON result from claude\n{context}"
    result = json.loads(lines[-1])
    assert result.get("type") == "result", context
    assert result.get("is_error") is False, context
    assert marker in result.get("result", ""), context
    assert done.returncode == 0, context
    return result


def test_claude_code_runs_a_bash_tool_through_the_proxy(proxy, mock, tmp_path):
    marker, args, rules = bash_round_trip("e2e", "call_e2e_1", "via ccproxy", "side")
    mock.script(*rules)
    done = run_claude(proxy.url, tmp_path, "Print the e2e marker with Bash, then report its output.",
                      lambda err: f"served: {[r['served'] for r in mock.requests()]}; stderr: {err}")
    served = [r["served"] for r in mock.requests()]
    context = (f"exit={done.returncode} served={served}\nstderr: {done.stderr[-1500:]}\n"
               f"stdout: {done.stdout[-1500:]}\nproxy log:\n{proxy.log()[-2000:]}")
    final_result(done, marker, context)

    records = mock.requests()
    assert served.count("turn1") == 1 and served.count("turn2") == 1, context
    turn1 = next(r for r in records if r["served"] == "turn1")
    assert turn1["body"]["stream"] is True
    turn2 = next(r for r in records if r["served"] == "turn2")["body"]
    assert_tool_round_trip(turn2, "call_e2e_1", args, marker)
