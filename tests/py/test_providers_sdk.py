"""Presets and their quirk profiles, through the official `anthropic` SDK.

One ccproxy per I/O driver runs a config file with five `[[providers]]`,
each built from a preset (deepseek, openrouter, gemini, ollama, openai) and
pointed (`base_url` override) at its own in-process mock. Each mock has its
own key (given to ccproxy as `${ENV}`) and a vendor flavor: it accepts that
vendor's request extensions and enforces what the vendor demands on the next
turn (DeepSeek's `reasoning_content`, Gemini's `thought_signature`). The
mocks answer in each vendor's exact stream shape (raw SSE), so the SDK's own
stream accumulator judges the conversion.

Requests pick their provider with an explicit `provider,model` model name;
`x-ccproxy-route` and "only that mock saw a request" both prove the route.
For every preset: a streamed tool round trip (turn 2 is checked upstream),
thinking, and an upstream error mapped to the right SDK exception.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

import anthropic
import pytest

from conftest import DRIVERS, Proxy
from mock_upstream import MockControl, sse_chunk, start_in_thread

TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
# Gemini rejects `$schema` and `additionalProperties`: the gemini preset must
# strip them, the others pass them through.
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                     "additionalProperties": False,
                     "properties": {"location": {"type": "string"},
                                    "unit": {"type": "string", "enum": ["c", "f"]}},
                     "required": ["location"]},
}
CLOCK = {"name": "get_time", "description": "Local time",
         "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}},
                          "required": ["tz"]}}
THINKING = {"type": "enabled", "budget_tokens": 2048}  # -> effort "low"
REASONING = "The user wants the weather. I should call the tool."
DONE = "data: [DONE]\n\n"
OR_COMMENT = ": OPENROUTER PROCESSING\n\n"


@dataclass(frozen=True)
class Profile:
    provider: str          # [[providers]] name
    preset: str
    model: str
    reasoning_key: str | None  # where the vendor streams thinking; None: no thinking text
    extra_toml: str = ""

    @property
    def route(self) -> str:
        return f"{self.provider},{self.model}"


PROFILES = [
    Profile("my-deepseek", "deepseek", "deepseek-reasoner", "reasoning_content",
            "max_tokens = 8192\n"),
    Profile("my-openrouter", "openrouter", "moonshotai/kimi-k2", "reasoning",
            'headers = { "HTTP-Referer" = "https://example.test/app", "X-Title" = "ccproxy-tests" }\n'),
    Profile("my-gemini", "gemini", "gemini-3-pro-preview", None),
    Profile("my-ollama", "ollama", "qwen3:8b", "reasoning"),
    Profile("my-openai", "openai", "o3", None),
]
BY_PRESET = {p.preset: p for p in PROFILES}
KEYS = {p.provider: "key-" + p.preset + "-" + secrets.token_hex(6) for p in PROFILES}


def env_name(p: Profile) -> str:
    return "PYROUTE_KEY_" + p.preset.upper()


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def vendor_mocks():
    servers, controls = [], {}
    for p in PROFILES:
        server, _ = start_in_thread(key=KEYS[p.provider], flavor=p.preset)
        servers.append(server)
        controls[p.provider] = MockControl(server.server_address[1])
    yield controls
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture(scope="module", params=DRIVERS)
def routed_proxy(request, vendor_mocks, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    toml = ["retries = 0\n"]
    for p in PROFILES:
        toml.append(f'[[providers]]\nname = "{p.provider}"\npreset = "{p.preset}"\n'
                    f'base_url = "{vendor_mocks[p.provider].base_url}"\n'
                    f'api_key = "${{{env_name(p)}}}"\n{p.extra_toml}\n')
    toml.append('[router]\ndefault = "my-ollama,qwen3:8b"\n')
    cfg = home / "providers.toml"
    cfg.write_text("".join(toml))
    px = Proxy(request.param, None, str(home), argv=["--config", str(cfg)],
               extra_env={env_name(p): KEYS[p.provider] for p in PROFILES})
    if px.logged_driver != request.param:
        px.stop()
        pytest.fail(f"asked for {request.param}, ccproxy logged {px.logged_driver}")
    yield px
    px.stop()
    log = px.log()
    for key in KEYS.values():
        assert key not in log, "a provider key leaked into the proxy log"


@pytest.fixture
def mocks(vendor_mocks):
    for m in vendor_mocks.values():
        m.reset()
    yield vendor_mocks
    left = {name: m.violations() for name, m in vendor_mocks.items()}
    for m in vendor_mocks.values():
        m.reset()
    assert not any(left.values()), f"mocks saw invalid requests: {left}"


@pytest.fixture
def sdk(routed_proxy, mocks):
    return anthropic.Anthropic(base_url=routed_proxy.url, api_key="sk-ant-anything",
                               max_retries=0, timeout=30)


def only_seen_by(mocks: dict, p: Profile, count: int) -> list[dict]:
    """The records of `p`'s mock; every other mock must have seen nothing."""
    for name, m in mocks.items():
        if name != p.provider:
            assert m.requests() == [], f"{name} got a request meant for {p.provider}"
    recs = mocks[p.provider].requests()
    assert len(recs) == count, [r["served"] for r in recs]
    for r in recs:
        assert r["headers"]["authorization"] == f"Bearer {KEYS[p.provider]}"
        assert r["body"]["model"] == p.model
    return recs


def assert_reasoning_param(p: Profile, body: dict) -> None:
    """What `thinking: enabled, budget 2048` becomes for each preset."""
    if p.preset == "openrouter":
        assert body["reasoning"] == {"effort": "low"}
    else:
        assert "reasoning" not in body
    if p.preset == "openai":  # o3 is an OpenAI reasoning model
        assert body["reasoning_effort"] == "low"
        assert "max_tokens" not in body and body["max_completion_tokens"] > 0
    else:
        assert "reasoning_effort" not in body
        assert "max_completion_tokens" not in body


# ------------------------------------------------------- vendor stream shapes


def pieces(s: str, n: int) -> list[str]:
    step = max(1, -(-len(s) // n))
    return [s[i:i + step] for i in range(0, len(s), step)]


def turn1_events(p: Profile, calls: list[dict]) -> list[str]:
    """Turn 1 in the vendor's own shape: thinking (where the vendor streams
    it), a short text, then the tool calls. `calls`: {id, name, args, sig}."""
    c = lambda delta, finish=None, **kw: sse_chunk(delta, finish, model=p.model, **kw)  # noqa: E731
    text = "Let me check."
    usage = {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160}
    if p.preset == "gemini":
        # Each call whole, several in one chunk, no `index`, the first with
        # its thought signature, and finish_reason "stop" despite the calls.
        batch = []
        for call in calls:
            tc = {"id": call["id"], "type": "function",
                  "function": {"name": call["name"], "arguments": call["args"]}}
            if call.get("sig"):
                tc["extra_content"] = {"google": {"thought_signature": call["sig"]}}
            batch.append(tc)
        return [c({"role": "assistant", "content": text}),
                c({"role": "assistant", "tool_calls": batch}, "stop", usage=usage), DONE]
    ev = []
    if p.preset == "openrouter":
        ev += [OR_COMMENT, OR_COMMENT]
    ev.append(c({"role": "assistant", "content": None if p.preset == "deepseek" else ""}))
    if p.reasoning_key:
        for frag in pieces(REASONING, 4):
            delta = {"content": None if p.preset == "deepseek" else "", p.reasoning_key: frag}
            if p.preset == "openrouter":
                delta["reasoning_details"] = [{"type": "reasoning.text", "text": frag,
                                               "format": "unknown", "index": 0}]
            ev.append(c(delta))
        if p.preset == "openrouter":
            ev.append(OR_COMMENT)
    for frag in pieces(text, 2):
        ev.append(c({"content": frag}))
    for i, call in enumerate(calls):
        if p.preset == "ollama":  # whole call, with index
            ev.append(c({"tool_calls": [{"id": call["id"], "index": i, "type": "function",
                                         "function": {"name": call["name"],
                                                      "arguments": call["args"]}}]}))
            continue
        ev.append(c({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                     "function": {"name": call["name"], "arguments": ""}}]}))
        for frag in pieces(call["args"], 5):
            ev.append(c({"tool_calls": [{"index": i, "function": {"arguments": frag}}]}))
    if p.preset == "deepseek":  # usage rides on the finish chunk
        ev.append(c({"content": ""}, "tool_calls", usage=usage))
    elif p.preset == "openrouter":
        ev.append(c({"role": "assistant", "content": ""}, "tool_calls",
                    native_finish_reason="tool_calls"))
        ev.append(c(None, usage=usage))
    elif p.preset == "ollama":  # Ollama may say "stop" after tool calls
        ev.append(c({"role": "assistant", "content": ""}, "stop"))
        ev.append(c(None, usage=usage))
    else:
        ev.append(c({}, "tool_calls"))
        ev.append(c(None, usage={**usage, "completion_tokens_details": {"reasoning_tokens": 30}}))
    return ev + [DONE]


def calls_for(p: Profile) -> list[dict]:
    weather = {"location": "Paris, \"FR\"", "unit": "c"}
    clock = {"tz": "Europe/Paris"}
    if p.preset == "gemini":
        # Gemini 3: only the first of parallel calls carries a signature.
        return [{"id": "function-call-8231", "name": "get_weather", "args": json.dumps(weather),
                 "sig": "CiQB0e2Kb+sig/AAA=" + secrets.token_hex(4)},
                {"id": "function-call-8232", "name": "get_time", "args": json.dumps(clock)}]
    if p.preset == "openrouter":
        # Kimi through OpenRouter: ids that break Anthropic's id pattern.
        return [{"id": "functions.get_weather:0", "name": "get_weather",
                 "args": json.dumps(weather)}]
    ids = {"deepseek": "call_00_dsk8Jx2", "ollama": "call_ollama01", "openai": "call_oai_77"}
    return [{"id": ids[p.preset], "name": "get_weather", "args": json.dumps(weather)}]


def dump(block) -> dict:
    """A response content block as a request content block."""
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    if block.type == "thinking":
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    assert block.type == "text", block.type
    return {"type": "text", "text": block.text}


# --------------------------------------------------------------------- tests


@pytest.mark.parametrize("p", PROFILES, ids=[p.preset for p in PROFILES])
def test_streaming_tool_round_trip(sdk, mocks, p: Profile):
    calls = calls_for(p)
    mock = mocks[p.provider]
    mock.script(
        {"label": "turn2", "match": {"has_tool_message": True},
         "reply": {"text": ["Result: ", "{{tool_results}}"],
                   "usage": {"prompt_tokens": 200, "completion_tokens": 9}}},
        {"label": "turn1", "match": {"has_tool_message": False},
         "sse": turn1_events(p, calls)},
    )
    question = [{"role": "user", "content": "Weather and time in Paris?"}]
    with sdk.messages.stream(model=p.route, max_tokens=64000, messages=question,
                             tools=[WEATHER, CLOCK], thinking=THINKING) as s:
        assert s.response.headers["x-ccproxy-route"] == f"{p.route} (explicit)"
        first = s.get_final_message()

    assert first.stop_reason == "tool_use"
    kinds = [b.type for b in first.content]
    want = (["thinking"] if p.reasoning_key else []) + ["text"] + ["tool_use"] * len(calls)
    assert kinds == want
    if p.reasoning_key:
        assert first.content[0].thinking == REASONING
    uses = [b for b in first.content if b.type == "tool_use"]
    for use, call in zip(uses, calls):
        assert TOOL_ID.match(use.id), use.id
        assert use.name == call["name"]
        assert use.input == json.loads(call["args"])
    assert first.usage.output_tokens == 40

    results = [{"type": "tool_result", "tool_use_id": u.id,
                "content": f"{u.name} says ok-{i}"} for i, u in enumerate(uses)]
    history = question + [{"role": "assistant", "content": [dump(b) for b in first.content]},
                          {"role": "user", "content": results}]
    with sdk.messages.stream(model=p.route, max_tokens=64000, messages=history,
                             tools=[WEATHER, CLOCK], thinking=THINKING) as s:
        second = s.get_final_message()
    assert second.stop_reason == "end_turn"
    assert second.content[0].text.startswith("Result: ")
    assert all(f"says ok-{i}" in second.content[0].text for i in range(len(uses)))

    t1, t2 = (r["body"] for r in only_seen_by(mocks, p, 2))
    assert [r["served"] for r in mock.requests()] == ["turn1", "turn2"]
    for body in (t1, t2):
        assert body["stream"] is True
        assert_reasoning_param(p, body)
        if p.preset == "deepseek":
            assert body["max_tokens"] == 8192  # the provider's cap
    if p.preset == "openrouter":
        h = mock.requests()[0]["headers"]
        assert h["http-referer"] == "https://example.test/app"
        assert h["x-title"] == "ccproxy-tests"
    params = {t["function"]["name"]: t["function"]["parameters"] for t in t1["tools"]}
    if p.preset == "gemini":
        assert "$schema" not in params["get_weather"]
        assert "additionalProperties" not in params["get_weather"]
        assert params["get_weather"]["properties"]["unit"]["enum"] == ["c", "f"]
    else:
        assert params["get_weather"] == WEATHER["input_schema"]

    # Turn 2 upstream: the vendor's own ids, and the vendor's history quirk.
    msgs = t2["messages"]
    ai = next(i for i, m in enumerate(msgs) if m.get("tool_calls"))
    assistant = msgs[ai]
    sent = assistant["tool_calls"]
    assert [tc["id"] for tc in sent] == [c["id"] for c in calls]
    assert [json.loads(tc["function"]["arguments"]) for tc in sent] == \
        [json.loads(c["args"]) for c in calls]
    tools_back = msgs[ai + 1:ai + 1 + len(calls)]
    assert [(m["role"], m["tool_call_id"]) for m in tools_back] == \
        [("tool", c["id"]) for c in calls]
    if p.preset == "deepseek":
        assert assistant["reasoning_content"] == REASONING
    else:
        assert "reasoning_content" not in assistant
    if p.preset == "gemini":
        assert sent[0]["extra_content"] == {"google": {"thought_signature": calls[0]["sig"]}}
        assert "extra_content" not in sent[1]
    else:
        assert all("extra_content" not in tc for tc in sent)


@pytest.mark.parametrize("p", PROFILES, ids=[p.preset for p in PROFILES])
def test_thinking(sdk, mocks, p: Profile):
    reply = {"text": "Forty-two.", "usage": {"prompt_tokens": 30, "completion_tokens": 12}}
    if p.reasoning_key:
        reply[p.reasoning_key] = "Deep thought about the question."
    mocks[p.provider].script({"reply": reply})
    raw = sdk.messages.with_raw_response.create(
        model=p.route, max_tokens=4096, thinking=THINKING,
        messages=[{"role": "user", "content": "The answer?"}])
    assert raw.headers["x-ccproxy-route"] == f"{p.route} (explicit)"
    msg = raw.parse()
    if p.reasoning_key:
        assert [b.type for b in msg.content] == ["thinking", "text"]
        assert msg.content[0].thinking == "Deep thought about the question."
        assert isinstance(msg.content[0].signature, str)
    else:
        assert [b.type for b in msg.content] == ["text"]
    assert msg.content[-1].text == "Forty-two."
    assert msg.stop_reason == "end_turn"
    (rec,) = only_seen_by(mocks, p, 1)
    assert_reasoning_param(p, rec["body"])


ERRORS = {
    "deepseek": (402, {"error": {"message": "Insufficient Balance", "type": "unknown_error",
                                 "param": None, "code": "invalid_request_error"}}, {},
                 anthropic.PaymentRequiredError, "billing_error", "Insufficient Balance"),
    "openrouter": (429, {"error": {"message": "Rate limit exceeded: free-models-per-min",
                                   "code": 429}}, {"Retry-After": "7"},
                   anthropic.RateLimitError, "rate_limit_error", "free-models-per-min"),
    # Gemini's OpenAI endpoint wraps its error in a JSON array.
    "gemini": (400, [{"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                "message": "Invalid JSON payload received. Unknown name "
                                           "\"frobnicate\": Cannot find field."}}], {},
               anthropic.BadRequestError, "invalid_request_error", "Unknown name"),
    "ollama": (404, {"error": {"message": "model \"qwen3:8b\" not found, try pulling it first",
                               "type": "api_error", "param": None, "code": None}}, {},
               anthropic.NotFoundError, "not_found_error", "try pulling it first"),
    "openai": (401, {"error": {"message": "Incorrect API key provided: sk-abc***xyz.",
                               "type": "invalid_request_error", "param": None,
                               "code": "invalid_api_key"}}, {},
               anthropic.AuthenticationError, "authentication_error", "Incorrect API key"),
}


@pytest.mark.parametrize("p", PROFILES, ids=[p.preset for p in PROFILES])
def test_upstream_error_maps_to_sdk_exception(sdk, mocks, p: Profile):
    status, body, headers, exc, etype, text = ERRORS[p.preset]
    mocks[p.provider].script({"json": body, "status": status, "headers": headers})
    with pytest.raises(exc) as info:
        with sdk.messages.stream(model=p.route, max_tokens=100,
                                 messages=[{"role": "user", "content": "hi"}]) as s:
            s.get_final_message()
    e = info.value
    assert e.status_code == status
    assert e.body["error"]["type"] == etype
    assert e.response.headers["x-ccproxy-route"] == f"{p.route} (explicit)"
    if p.preset == "openrouter":
        assert e.response.headers["retry-after"] == "7"
    only_seen_by(mocks, p, 1)  # retries = 0: exactly one attempt
    if p.preset != "gemini":  # see test_gemini_error_array_keeps_its_message
        assert text in e.body["error"]["message"], e.body


def test_gemini_error_array_keeps_its_message(sdk, mocks):
    """Gemini's OpenAI endpoint answers errors as `[{"error":{...}}]`. The
    message says what Gemini refused (an unknown field, a schema keyword):
    the client must see it, not only `upstream returned HTTP 400`."""
    p = BY_PRESET["gemini"]
    status, body, headers, exc, etype, text = ERRORS["gemini"]
    mocks[p.provider].script({"json": body, "status": status})
    with pytest.raises(exc) as info:
        sdk.messages.create(model=p.route, max_tokens=100,
                            messages=[{"role": "user", "content": "hi"}])
    assert text in info.value.body["error"]["message"], info.value.body


def test_openrouter_mid_stream_error(sdk, mocks):
    """OpenRouter reports a provider failure after the 200 as a `data:` chunk
    with `error` and `finish_reason:"error"`: the SDK must raise, not see a
    clean end_turn."""
    p = BY_PRESET["openrouter"]
    c = lambda delta, finish=None, **kw: sse_chunk(delta, finish, model=p.model, **kw)  # noqa: E731
    mocks[p.provider].script({"sse": [
        OR_COMMENT, c({"role": "assistant", "content": "Partial ans"}), OR_COMMENT,
        c({"content": ""}, "error", native_finish_reason="error",
          error={"code": 502, "message": "Provider returned error"}),
        DONE]})
    got = []
    with pytest.raises(anthropic.APIStatusError) as info:
        with sdk.messages.stream(model=p.route, max_tokens=100,
                                 messages=[{"role": "user", "content": "hi"}]) as s:
            for text in s.text_stream:
                got.append(text)
    assert "".join(got) == "Partial ans"
    assert "Provider returned error" in str(info.value.body), info.value.body
    only_seen_by(mocks, p, 1)


def test_default_route_goes_to_ollama(sdk, mocks):
    """A plain Claude model name takes `router.default` (my-ollama)."""
    p = BY_PRESET["ollama"]
    mocks[p.provider].script({"reply": {"text": "hello"}})
    raw = sdk.messages.with_raw_response.create(
        model="claude-opus-4-8", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-ccproxy-route"] == "my-ollama,qwen3:8b (default)"
    assert raw.parse().content[0].text == "hello"
    only_seen_by(mocks, p, 1)
