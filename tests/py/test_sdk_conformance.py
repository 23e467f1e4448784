"""Official `anthropic` Python SDK → ccproxy → scripted OpenAI mock.

The SDK's own parsers and stream accumulator judge the proxy's output; the
mock judges (strictly, as OpenAI does) what the proxy sent upstream. Every
test runs on both I/O drivers through the `client` fixture.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import anthropic
import pytest

from conftest import UPSTREAM_KEY

MODEL = "claude-conformance-test"
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"},
                                                       "unit": {"type": "string"}},
                     "required": ["location"]},
}
CLOCK = {"name": "get_time", "description": "Local time",
         "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}}


def ask(text: str = "hi") -> list[dict]:
    return [{"role": "user", "content": text}]


def oa_text(content) -> str:
    """OpenAI message content (string or text parts) as one string."""
    if isinstance(content, list):
        assert all(p.get("type") == "text" for p in content), content
        return "".join(p["text"] for p in content)
    return content or ""


def received(mock) -> list[dict]:
    return [r["body"] for r in mock.requests()]


def only_request(mock) -> dict:
    reqs = mock.requests()
    assert len(reqs) == 1, [r["served"] for r in reqs]
    assert reqs[0]["violations"] == []
    return reqs[0]


def blocks(message) -> list[tuple]:
    out = []
    for b in message.content:
        if b.type == "text":
            out.append(("text", b.text))
        elif b.type == "tool_use":
            out.append(("tool_use", b.id, b.name, b.input))
        elif b.type == "thinking":
            out.append(("thinking", b.thinking))
        else:
            out.append((b.type,))
    return out


# ---------------------------------------------------------------- non-stream


def test_non_streaming_text(client, mock):
    mock.script({"reply": {"text": "Hello from the mock.",
                           "usage": {"prompt_tokens": 21, "completion_tokens": 5}}})
    msg = client.messages.create(
        model=MODEL, max_tokens=300, system="Be brief.", messages=ask("Say hello"),
        stop_sequences=["END"], metadata={"user_id": "user-123"},
        # This SDK version no longer has sampling keywords; the API still takes them.
        extra_body={"temperature": 0.5, "top_p": 0.9, "top_k": 40})
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.id.startswith("msg_")
    assert blocks(msg) == [("text", "Hello from the mock.")]
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == 21 and msg.usage.output_tokens == 5

    rec = only_request(mock)
    assert rec["path"] == "/v1/chat/completions"
    assert rec["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    body = rec["body"]
    assert body["model"] == MODEL
    assert body["max_tokens"] == 300
    assert body.get("stream") in (None, False)
    assert [(m["role"], oa_text(m["content"])) for m in body["messages"]] == [
        ("system", "Be brief."), ("user", "Say hello")]
    assert body["temperature"] == 0.5 and body["top_p"] == 0.9
    assert body["stop"] in ("END", ["END"])
    assert body["user"] == "user-123"
    assert "top_k" not in body and "metadata" not in body


def test_ids_are_unique(client, mock):
    mock.script({"reply": {"text": "x"}, "repeat": True})
    ids = {client.messages.create(model=MODEL, max_tokens=10, messages=ask()).id
           for _ in range(5)}
    assert len(ids) == 5


def test_non_streaming_cached_usage(client, mock):
    mock.script({"reply": {"text": "cached",
                           "usage": {"prompt_tokens": 100, "completion_tokens": 3,
                                     "cached_tokens": 40}}})
    msg = client.messages.create(model=MODEL, max_tokens=10, messages=ask())
    assert msg.usage.input_tokens == 60
    assert msg.usage.cache_read_input_tokens == 40
    assert msg.usage.output_tokens == 3


@pytest.mark.parametrize("finish, expected", [
    ("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal")])
def test_non_streaming_stop_reasons(client, mock, finish, expected):
    mock.script({"reply": {"text": "t", "finish_reason": finish}})
    msg = client.messages.create(model=MODEL, max_tokens=10, messages=ask())
    assert msg.stop_reason == expected


def test_non_streaming_tool_use(client, mock):
    mock.script({"reply": {"text": "Checking.", "tool_calls": [
        {"id": "call_abc", "name": "get_weather", "arguments": '{"location": "Paris"}'}]}})
    msg = client.messages.create(model=MODEL, max_tokens=100, messages=ask("weather?"),
                                 tools=[WEATHER], tool_choice={"type": "any"})
    assert blocks(msg) == [("text", "Checking."),
                           ("tool_use", "call_abc", "get_weather", {"location": "Paris"})]
    assert msg.stop_reason == "tool_use"
    body = only_request(mock)["body"]
    assert body["tool_choice"] == "required"
    [tool] = body["tools"]
    assert tool == {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city",
        "parameters": WEATHER["input_schema"]}}


# ----------------------------------------------------------------- streaming


def test_streaming_text(client, mock):
    mock.script({"reply": {"text": ["Hel", "lo, ", "wor", "ld! ", "ünï", "cødé ✓"],
                           "usage": {"prompt_tokens": 17, "completion_tokens": 9}}})
    with client.messages.stream(model=MODEL, max_tokens=100, messages=ask()) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "Hello, world! ünïcødé ✓"
    assert len(pieces) >= 2, "text was not streamed incrementally"
    assert blocks(final) == [("text", "Hello, world! ünïcødé ✓")]
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == 17 and final.usage.output_tokens == 9
    body = only_request(mock)["body"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_streaming_close_delimited_upstream(client, mock):
    mock.script({"reply": {"text": "close framed"}, "framing": "close"})
    with client.messages.stream(model=MODEL, max_tokens=100, messages=ask()) as stream:
        final = stream.get_final_message()
    assert blocks(final) == [("text", "close framed")]


def test_streaming_tool_use_fragmented_arguments(client, mock):
    frags = ['', '{"loc', 'ation": "Par', 'is, Fr', 'ance", "un', 'it": "c', 'elsius"}']
    mock.script({"reply": {"text": "Let me check.", "tool_calls": [
        {"id": "call_w1", "name": "get_weather", "arguments": frags}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 20}}})
    partial = []
    with client.messages.stream(model=MODEL, max_tokens=100, messages=ask("weather?"),
                                tools=[WEATHER]) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                partial.append(event.delta.partial_json)
        final = stream.get_final_message()
    assert "".join(partial) == "".join(frags)
    assert blocks(final) == [
        ("text", "Let me check."),
        ("tool_use", "call_w1", "get_weather", {"location": "Paris, France", "unit": "celsius"})]
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens == 20


def test_streaming_tool_call_with_finish_stop_is_tool_use(client, mock):
    mock.script({"reply": {"tool_calls": [
        {"id": "call_g", "name": "get_weather", "arguments": '{"location": "Oslo"}'}],
        "finish_reason": "stop"}})
    with client.messages.stream(model=MODEL, max_tokens=100, messages=ask(),
                                tools=[WEATHER]) as stream:
        final = stream.get_final_message()
    assert blocks(final) == [("tool_use", "call_g", "get_weather", {"location": "Oslo"})]
    assert final.stop_reason == "tool_use"


@pytest.mark.parametrize("interleave", [False, True], ids=["sequential", "interleaved"])
def test_streaming_parallel_tool_calls(client, mock, interleave):
    mock.script({"reply": {"tool_calls": [
        {"id": "call_1", "name": "get_weather", "arguments": ['{"location"', ': "Rome"}']},
        {"id": "call_2", "name": "get_time", "arguments": ['{"tz": "Eu', 'rope/Rome"}']}],
        "interleave": interleave}})
    with client.messages.stream(model=MODEL, max_tokens=100, messages=ask(),
                                tools=[WEATHER, CLOCK]) as stream:
        final = stream.get_final_message()
    assert blocks(final) == [
        ("tool_use", "call_1", "get_weather", {"location": "Rome"}),
        ("tool_use", "call_2", "get_time", {"tz": "Europe/Rome"})]
    assert final.stop_reason == "tool_use"


def test_non_streaming_parallel_tool_calls(client, mock):
    mock.script({"reply": {"tool_calls": [
        {"id": "call_1", "name": "get_weather", "arguments": '{"location": "Rome"}'},
        {"id": "call_2", "name": "get_time", "arguments": '{"tz": "UTC"}'}]}})
    msg = client.messages.create(model=MODEL, max_tokens=100, messages=ask(),
                                 tools=[WEATHER, CLOCK])
    assert blocks(msg) == [("tool_use", "call_1", "get_weather", {"location": "Rome"}),
                           ("tool_use", "call_2", "get_time", {"tz": "UTC"})]


def test_tool_results_round_trip(client, mock):
    """History with parallel tool_use and their results reaches the upstream in
    OpenAI's order: assistant tool_calls, one tool message per id, then text."""
    mock.script({"reply": {"text": "It is sunny in Rome."}})
    history = [
        {"role": "user", "content": "weather and time in Rome?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "toolu_a", "name": "get_weather",
             "input": {"location": "Rome"}},
            {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {"tz": "CET"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "sunny, 24C"},
            {"type": "tool_result", "tool_use_id": "toolu_b",
             "content": [{"type": "text", "text": "clock unavailable"}], "is_error": True},
            {"type": "text", "text": "Summarize."}]},
    ]
    msg = client.messages.create(
        model=MODEL, max_tokens=100, messages=history, tools=[WEATHER, CLOCK],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True})
    assert blocks(msg) == [("text", "It is sunny in Rome.")]
    body = only_request(mock)["body"]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "assistant", "tool", "tool", "user"]
    assistant = body["messages"][1]
    assert oa_text(assistant["content"]) == "Looking."
    calls = assistant["tool_calls"]
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in calls] == [("toolu_a", "get_weather", {"location": "Rome"}),
                                ("toolu_b", "get_time", {"tz": "CET"})]
    t1, t2 = body["messages"][2], body["messages"][3]
    assert (t1["tool_call_id"], oa_text(t1["content"])) == ("toolu_a", "sunny, 24C")
    assert t2["tool_call_id"] == "toolu_b"
    assert "clock unavailable" in oa_text(t2["content"])
    assert "error" in oa_text(t2["content"]).lower()
    assert oa_text(body["messages"][4]["content"]) == "Summarize."


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def test_images_become_openai_parts(client, mock):
    """Images in user turns become image_url parts; an image inside a
    tool_result moves to a user message after the tool message."""
    mock.script({"reply": {"text": "a red dot"}})
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    client.messages.create(model=MODEL, max_tokens=50, tools=[WEATHER], messages=[
        {"role": "user", "content": [image, {"type": "text", "text": "what is this?"}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_i", "name": "get_weather", "input": {"location": "X"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_i", "content": [
            {"type": "text", "text": "radar attached"}, image]}]},
    ])
    msgs = only_request(mock)["body"]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "user"]
    parts = msgs[0]["content"]
    assert parts[0] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}} \
        or (parts[0]["type"] == "image_url"
            and parts[0]["image_url"]["url"] == f"data:image/png;base64,{PNG}")
    assert oa_text([p for p in parts if p["type"] == "text"]) == "what is this?"
    assert "radar attached" in oa_text(msgs[2]["content"])
    moved = msgs[3]["content"]
    assert any(p["type"] == "image_url" and p["image_url"]["url"].endswith(PNG) for p in moved)


# ------------------------------------------------------------------ thinking


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_streaming_thinking(client, mock, field):
    mock.script({"reply": {field: ["Let me ", "think about ", "it."], "text": ["The answer ", "is 4."],
                           "usage": {"prompt_tokens": 9, "completion_tokens": 30}}})
    with client.messages.stream(model=MODEL, max_tokens=2000, messages=ask("2+2?"),
                                thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
        final = stream.get_final_message()
    assert blocks(final) == [("thinking", "Let me think about it."), ("text", "The answer is 4.")]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 30
    body = only_request(mock)["body"]
    assert "thinking" not in body


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_non_streaming_thinking(client, mock, field):
    mock.script({"reply": {field: "Pondering.", "text": "Done."}})
    msg = client.messages.create(model=MODEL, max_tokens=2000, messages=ask(),
                                 thinking={"type": "adaptive"})
    assert blocks(msg) == [("thinking", "Pondering."), ("text", "Done.")]


def test_thinking_history_is_dropped(client, mock):
    mock.script({"reply": {"text": "ok"}})
    client.messages.create(model=MODEL, max_tokens=100, messages=[
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "secret musings", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "a"}]},
        {"role": "user", "content": "q2"}])
    body = only_request(mock)["body"]
    assert [(m["role"], oa_text(m["content"])) for m in body["messages"]] == [
        ("user", "q"), ("assistant", "a"), ("user", "q2")]


# -------------------------------------------------------------------- errors

ERRORS = [
    # upstream status, SDK exception, client-visible status, Anthropic error type
    (400, anthropic.BadRequestError, 400, "invalid_request_error"),
    (401, anthropic.AuthenticationError, 401, "authentication_error"),
    (403, anthropic.PermissionDeniedError, 403, "permission_error"),
    (404, anthropic.NotFoundError, 404, "not_found_error"),
    (413, getattr(anthropic, "RequestTooLargeError", anthropic.APIStatusError), 413,
     "request_too_large"),
    (429, anthropic.RateLimitError, 429, "rate_limit_error"),
    (500, anthropic.InternalServerError, 500, "api_error"),
    (503, anthropic.InternalServerError, None, ("overloaded_error", "api_error")),
]


@pytest.mark.parametrize("status, exc, client_status, etype", ERRORS,
                         ids=[str(e[0]) for e in ERRORS])
def test_error_status(client, mock, status, exc, client_status, etype):
    headers = {"retry-after": "7"} if status == 429 else {}
    mock.script({"error": {"status": status, "message": f"upstream says {status}",
                           "headers": headers}})
    with pytest.raises(exc) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=ask())
    err = info.value
    if client_status is not None:
        assert err.status_code == client_status
    else:
        assert err.status_code in (503, 529)
    assert err.body["type"] == "error"
    if isinstance(etype, tuple):
        assert err.body["error"]["type"] in etype
    else:
        assert err.body["error"]["type"] == etype
    assert f"upstream says {status}" in err.body["error"]["message"]
    assert UPSTREAM_KEY not in json.dumps(err.body)
    if status == 429:
        assert err.response.headers.get("retry-after") == "7"


@pytest.mark.parametrize("status, exc", [(429, anthropic.RateLimitError),
                                         (500, anthropic.InternalServerError)])
def test_error_status_when_streaming(client, mock, status, exc):
    mock.script({"error": {"status": status, "message": "nope"}})
    with pytest.raises(exc):
        with client.messages.stream(model=MODEL, max_tokens=10, messages=ask()) as stream:
            stream.get_final_message()


def test_unparseable_upstream_body_is_502(client, mock):
    mock.script({"body": "<html>bad gateway</html>", "content_type": "text/html"})
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=ask())
    assert info.value.status_code == 502
    assert info.value.body["error"]["type"] == "api_error"


def test_mid_stream_error_raises(client, mock):
    mock.script({"reply": {"text": ["partial ", "answer ", "never finished"], "cut_after": 3,
                           "stream_error": {"message": "upstream exploded"}}})
    seen = []
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(model=MODEL, max_tokens=10, messages=ask()) as stream:
            for text in stream.text_stream:
                seen.append(text)
    assert "".join(seen) == "partial answer "
    assert info.value.body["type"] == "error"
    assert "upstream exploded" in info.value.body["error"]["message"]


@pytest.mark.parametrize("fault", ["reset", "truncate", None], ids=["reset", "truncate", "eof"])
def test_broken_upstream_stream_is_an_error_not_end_turn(client, mock, fault):
    """A reset, a chunked body cut off, or a clean end without finish_reason
    or [DONE]: all are truncations, never a silent end_turn."""
    mock.script({"reply": {"text": ["one ", "two ", "three"], "cut_after": 3, "fault": fault}})
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(model=MODEL, max_tokens=10, messages=ask()) as stream:
            stream.get_final_message()
    assert info.value.body["type"] == "error"


def test_unknown_anthropic_fields_are_not_forwarded(client, mock):
    mock.script({"reply": {"text": "fine"}})
    msg = client.messages.create(
        model=MODEL, max_tokens=10, messages=ask(),
        system=[{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
        tools=[{**WEATHER, "cache_control": {"type": "ephemeral"}}],
        extra_body={"context_management": {"edits": []}, "output_config": {"effort": "high"},
                    "service_tier": "auto", "container": None})
    assert blocks(msg) == [("text", "fine")]
    body = only_request(mock)["body"]  # the mock fixture fails on any unknown field
    assert oa_text(body["messages"][0]["content"]) == "sys"


def test_raw_sse_event_discipline(proxy, mock):
    """What the SDKs rely on, checked on the wire: an `event:` line equal to
    data.type on every event, message_start first with empty content,
    contiguous block indices each closed before the next opens, final usage
    in message_delta, message_stop last."""
    mock.script({"reply": {"reasoning_content": "hm", "text": "hi", "tool_calls": [
        {"id": "c1", "name": "get_weather", "arguments": ['{"location"', ': "X"}']},
        {"id": "c2", "name": "get_time", "arguments": '{}'}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 8}}})
    u = urlsplit(proxy.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    body = {"model": MODEL, "max_tokens": 100, "stream": True, "messages": ask(),
            "tools": [WEATHER, CLOCK]}
    conn.request("POST", "/v1/messages?beta=true", body=json.dumps(body),
                 headers={"content-type": "application/json", "x-api-key": "k",
                          "anthropic-version": "2023-06-01"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("content-type", "").startswith("text/event-stream")
    raw = resp.read().decode()
    conn.close()
    events = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        lines = [ln for ln in block.split("\n") if ln and not ln.startswith(":")]
        if not lines:
            continue
        name = next((ln[6:].strip() for ln in lines if ln.startswith("event:")), None)
        data = json.loads("".join(ln[5:].strip() for ln in lines if ln.startswith("data:")))
        assert name == data["type"], block
        events.append(data)
    events = [e for e in events if e["type"] != "ping"]
    assert events[0]["type"] == "message_start"
    assert events[0]["message"]["content"] == []
    assert events[-1]["type"] == "message_stop"
    assert events[-2]["type"] == "message_delta"
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert events[-2]["usage"]["output_tokens"] == 8
    assert events[-2]["usage"]["input_tokens"] == 30
    open_index, starts = None, []
    for e in events[1:-2]:
        if e["type"] == "content_block_start":
            assert open_index is None, "block opened before the previous one closed"
            open_index = e["index"]
            starts.append((e["index"], e["content_block"]["type"]))
            if e["content_block"]["type"] == "tool_use":
                assert e["content_block"]["input"] == {}
        elif e["type"] == "content_block_delta":
            assert e["index"] == open_index
        elif e["type"] == "content_block_stop":
            assert e["index"] == open_index
            open_index = None
        else:
            pytest.fail(f"unexpected event inside the message: {e['type']}")
    assert open_index is None
    assert starts == [(0, "thinking"), (1, "text"), (2, "tool_use"), (3, "tool_use")]


# -------------------------------------------------------------- count_tokens


def test_count_tokens_is_local(client, mock):
    short = client.messages.count_tokens(model=MODEL, messages=ask("hello"))
    longer = client.messages.count_tokens(
        model=MODEL, system="You are a careful assistant.",
        messages=ask("hello " + "the quick brown fox jumps over the lazy dog " * 20),
        tools=[WEATHER])
    assert short.input_tokens > 0
    assert longer.input_tokens > short.input_tokens + 150
    assert mock.requests() == []
