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


def test_claude_code_runs_a_bash_tool_through_the_proxy(proxy, mock, tmp_path):
    if not CLAUDE.exists():
        pytest.fail(f"Claude Code not installed at {CLAUDE}; run `npm ci` in tests/e2e")
    token = secrets.token_hex(6)
    marker = f"ccproxy-e2e-{token}"
    args = {"command": f"printf '%s-%s\\n' ccproxy-e2e {token}",
            "description": "Print the end-to-end marker"}
    arg_json = json.dumps(args)
    fragments = split_fragments(arg_json, 7)
    assert len(fragments) >= 5 and "".join(fragments) == arg_json
    mock.script(
        {"label": "turn2", "match": {"has_tool": "Bash", "has_tool_message": True},
         "reply": {"text": ["The command printed: ", "{{tool_results}}", " (via ccproxy)."],
                   "usage": {"prompt_tokens": 1200, "completion_tokens": 20}}},
        {"label": "turn1", "match": {"has_tool": "Bash", "has_tool_message": False},
         "reply": {"text": "Running it now.",
                   "tool_calls": [{"id": "call_e2e_1", "name": "Bash", "arguments": fragments}],
                   "usage": {"prompt_tokens": 1000, "completion_tokens": 30}}},
        {"label": "side", "repeat": True,
         "reply": {"text": "OK.", "usage": {"prompt_tokens": 10, "completion_tokens": 2}}},
    )
    home = tmp_path / "home"
    work = tmp_path / "work"
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
            [str(CLAUDE), "-p", "Print the end-to-end marker with Bash, then report its output.",
             "--allowedTools", "Bash", "--output-format", "json"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=work, env=env,
            timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"claude timed out after {TIMEOUT}s; served: "
                    f"{[r['served'] for r in mock.requests()]}; stderr: {str(e.stderr)[-1500:]}")
    served = [r["served"] for r in mock.requests()]
    context = (f"exit={done.returncode} served={served}\nstderr: {done.stderr[-1500:]}\n"
               f"stdout: {done.stdout[-1500:]}\nproxy log:\n{proxy.log()[-2000:]}")
    lines = [ln for ln in done.stdout.splitlines() if ln.strip().startswith("{")]
    assert lines, f"no JSON result from claude\n{context}"
    result = json.loads(lines[-1])
    assert result.get("type") == "result", context
    assert result.get("is_error") is False, context
    assert marker in result.get("result", ""), context
    assert done.returncode == 0, context

    records = mock.requests()
    assert served.count("turn1") == 1 and served.count("turn2") == 1, context
    turn1 = next(r for r in records if r["served"] == "turn1")
    assert turn1["body"]["stream"] is True
    turn2 = next(r for r in records if r["served"] == "turn2")["body"]
    msgs = turn2["messages"]
    idx = next(i for i, m in enumerate(msgs) if m.get("tool_calls"))
    call = msgs[idx]["tool_calls"][0]
    assert call["id"] == "call_e2e_1" and call["function"]["name"] == "Bash"
    assert json.loads(call["function"]["arguments"]) == args
    tool_msg = msgs[idx + 1]
    assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == "call_e2e_1"
    content = tool_msg["content"]
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content)
    assert marker in content
