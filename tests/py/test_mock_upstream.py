"""Self-test of the mock upstream: its strict validation, scripting and
transport faults, talking to it directly (no proxy needed)."""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from mock_upstream import MockControl, start_in_thread

KEY = "k-self-test"


@pytest.fixture(scope="module")
def server():
    srv, _ = start_in_thread(key=KEY)
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def ctl(server) -> MockControl:
    c = MockControl(server.server_address[1])
    c.reset()
    return c


def post(ctl: MockControl, body, conn=None, headers=None):
    own = conn is None
    conn = conn or http.client.HTTPConnection(ctl.host, ctl.port, timeout=5)
    h = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    h.update(headers or {})
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(), headers=h)
    resp = conn.getresponse()
    data = resp.read()
    if own:
        conn.close()
    return resp, data


def base(**extra):
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    body.update(extra)
    return body


def sse_data(raw: bytes) -> list:
    out = []
    for block in raw.decode().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                payload = line[6:]
                out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def test_json_reply_and_record(ctl):
    ctl.script({"reply": {"text": "hello", "usage": {"prompt_tokens": 3, "completion_tokens": 2}}})
    resp, data = post(ctl, base())
    assert resp.status == 200
    body = json.loads(data)
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hello"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["total_tokens"] == 5
    [rec] = ctl.requests()
    assert rec["body"]["messages"][0]["content"] == "hi"
    assert rec["headers"]["authorization"] == f"Bearer {KEY}"
    assert rec["violations"] == []


@pytest.mark.parametrize("body, needle", [
    (base(context_management={}), "Unrecognized request argument supplied: context_management"),
    (base(top_k=5), "top_k"),
    (base(tool_choice="any", tools=[{"type": "function", "function": {"name": "f"}}]),
     "tool_choice"),
    (base(tool_choice="auto"), "only allowed when 'tools'"),
    (base(stream_options={"include_usage": True}), "stream_options"),
    (base(stop=["a", "b", "c", "d", "e"]), "stop"),
    (base(messages=[{"role": "user", "content": [{"type": "image", "source": {}}]}]), "type"),
    (base(messages=[{"role": "user", "content": [{"type": "text", "text": "x",
                                                  "cache_control": {}}]}]), "text parts"),
    (base(messages=[{"role": "user", "content": "q"},
                    {"role": "tool", "tool_call_id": "x", "content": "r"}]), "preceeding"),
    (base(messages=[{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "user", "content": "next"}]), "did not have response messages"),
    (base(messages=[{"role": "tool", "tool_call_id": "c", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]), "type"),
    (base(tools=[{"type": "function", "function": {"name": "f", "input_schema": {}}}]),
     "Unrecognized keys"),
    (base(metadata={"user_id": "u"}), "metadata"),
])
def test_strict_validation(ctl, body, needle):
    ctl.script({"reply": {"text": "never"}})
    resp, data = post(ctl, body)
    assert resp.status == 400
    err = json.loads(data)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error"
    [rec] = ctl.requests()
    assert any(needle in v for v in rec["violations"]), rec["violations"]
    # The scripted reply was not consumed by the invalid request.
    resp, data = post(ctl, base())
    assert resp.status == 200 and json.loads(data)["choices"][0]["message"]["content"] == "never"


def test_valid_tool_round_trip_has_no_violation(ctl):
    ctl.script({"reply": {"text": "ok"}})
    body = base(
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        tool_choice={"type": "function", "function": {"name": "f"}}, parallel_tool_calls=False,
        messages=[
            {"role": "system", "content": "s"},
            {"role": "user", "content": [{"type": "text", "text": "a"},
                                         {"type": "image_url",
                                          "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": "calling", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c2", "content": "two"},
            {"role": "tool", "tool_call_id": "c1", "content": "one"},
            {"role": "user", "content": "go on"},
        ])
    resp, _ = post(ctl, body)
    assert resp.status == 200
    assert ctl.violations() == []


def test_missing_key_is_401(ctl):
    resp, data = post(ctl, base(), headers={"Authorization": "Bearer wrong"})
    assert resp.status == 401
    assert json.loads(data)["error"]["code"] == "invalid_api_key"
    assert ctl.violations()


def test_stream_reply_chunked_with_fragmented_tool_calls(ctl):
    ctl.script({"reply": {"tool_calls": [
        {"id": "a", "name": "f", "arguments": ['{"x"', ': 1}']},
        {"id": "b", "name": "g", "arguments": ['{"y": ', '"z"}']}], "interleave": True}})
    resp, data = post(ctl, base(stream=True, stream_options={"include_usage": True}))
    assert resp.status == 200
    assert resp.getheader("Transfer-Encoding") == "chunked"
    events = sse_data(data)
    assert events[-1] == "[DONE]"
    assert events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] == 7
    assert events[-3]["choices"][0]["finish_reason"] == "tool_calls"
    args: dict[int, str] = {}
    order = []
    for ev in events[1:-3]:
        [tc] = ev["choices"][0]["delta"]["tool_calls"]
        order.append(tc["index"])
        args[tc["index"]] = args.get(tc["index"], "") + tc["function"]["arguments"]
    assert order == [0, 1, 0, 1]
    assert json.loads(args[0]) == {"x": 1} and json.loads(args[1]) == {"y": "z"}


def test_keep_alive_and_match_rules(ctl):
    ctl.script(
        {"match": {"has_tool_message": True}, "reply": {"text": "saw: {{tool_results}}"}},
        {"match": {"stream": False}, "reply": {"text": "fallback"}, "repeat": True},
    )
    conn = http.client.HTTPConnection(ctl.host, ctl.port, timeout=5)
    for _ in range(2):
        resp, data = post(ctl, base(), conn=conn)
        assert json.loads(data)["choices"][0]["message"]["content"] == "fallback"
    body = base(messages=[
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "RESULT-42"}],
        tools=[{"type": "function", "function": {"name": "f"}}])
    resp, data = post(ctl, body, conn=conn)
    assert json.loads(data)["choices"][0]["message"]["content"] == "saw: RESULT-42"
    conn.close()
    assert [r["served"] for r in ctl.requests()] == ["scripted"] * 3


def test_close_delimited_and_stream_error(ctl):
    ctl.script({"reply": {"text": "abc", "cut_after": 2, "stream_error": {"message": "boom"}},
                "framing": "close"})
    resp, data = post(ctl, base(stream=True))
    assert resp.getheader("Transfer-Encoding") is None
    events = sse_data(data)
    assert events[-1]["error"]["message"] == "boom"
    assert len(events) == 3


def test_reset_mid_stream(ctl):
    ctl.script({"sse": ['data: {"choices":[{"index":0,"delta":{"content":"par"}}]}\n\n'],
                "fault": "reset"})
    with pytest.raises((ConnectionError, http.client.HTTPException, socket.error)):
        post(ctl, base(stream=True))


def test_unscripted_request_is_recorded_as_violation(ctl):
    resp, _ = post(ctl, base())
    assert resp.status == 500
    assert ctl.violations() == ["no scripted response matched this request"]
