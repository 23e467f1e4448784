"""A scripted, strict, OpenAI-compatible upstream for ccproxy's Python tests.

Receives: Chat Completions requests from ccproxy (``POST /v1/chat/completions``)
and control calls from the tests. Emits: the responses the tests scripted,
as JSON bodies or SSE streams (chunked or close-delimited, flushed per
chunk), or transport faults (reset mid-stream, truncation).

Every OpenAI request is validated the way api.openai.com does it: unknown
top-level fields, message shapes, content part types, tool messages that do
not answer the preceding ``tool_calls``, ``tool_choice`` values. An invalid
request gets a 400 with an OpenAI error body, consumes no script entry, and
its violations are recorded so a test can fail on them.

Control API (JSON):
    POST /__script    a list of response specs (or {"responses": [...]}),
                      appended to the queue. Each spec is consumed by the
                      first request it matches, in order; ``repeat: true``
                      keeps it in place (use it for fallbacks).
    GET  /__requests  every recorded OpenAI request: method, path, query,
                      headers (lower-cased), parsed body, violations, served.
    POST /__reset     clears the queue and the records.

A response spec has an optional ``match`` (see ``_matches``), an optional
``label``, ``repeat``, ``delay`` (seconds before answering), and one of:
    reply  {text, reasoning_content, reasoning, tool_calls, finish_reason,
            usage, mode, split, cut_after, stream_error, fault}
           answered as SSE when the request streams (mode "auto"), else JSON.
           text / reasoning may be a string (split into ``split`` pieces) or a
           list of fragments; each tool call is {id, name, arguments} with
           arguments a string or a list of fragments; ``interleave: true``
           alternates the fragments of several calls. ``{{tool_results}}`` in
           text is replaced by the request's tool message contents.
    json   a JSON body, with ``status`` (200) and ``headers``
    body   a raw string body, with ``status`` and ``headers``
    error  {status, message, type, code, headers}: an OpenAI error response
    sse    a list of raw strings, each written and flushed as one chunk;
           ``framing`` "chunked" (default) or "close"; ``chunk_delay``;
           ``fault`` "reset" (TCP RST after the chunks) or "truncate"
           (connection closed without finishing the chunked body)
    fault  "reset" alone: reset the connection without any response

A server made with ``flavor`` (deepseek, openrouter, gemini, ...) accepts and
checks that vendor's request extensions; see ``validate_vendor_request``.

Run standalone: ``python mock_upstream.py [--port N] [--key KEY]``; it prints
``mock listening on http://127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

# Top-level parameters of POST /v1/chat/completions (OpenAI API reference).
ALLOWED_TOP_LEVEL = {
    "messages", "model", "audio", "frequency_penalty", "function_call", "functions",
    "logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "modalities", "n",
    "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key",
    "reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier",
    "stop", "store", "stream", "stream_options", "temperature", "tool_choice", "tools",
    "top_logprobs", "top_p", "user", "verbosity", "web_search_options", "metadata",
}
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MESSAGE_KEYS = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "refusal", "audio", "function_call"},
    "tool": {"role", "content", "tool_call_id"},
}
USER_PART_TYPES = {"text", "image_url", "input_audio", "file"}
# Longest `user` OpenAI accepts without complaint (conservative).
MAX_USER_LEN = 256


class Violation(Exception):
    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


# ---------------------------------------------------------------- validation


def validate_chat_request(body: Any) -> list[Violation]:
    """Returns every way ``body`` breaks OpenAI's Chat Completions contract."""
    out: list[Violation] = []

    def bad(msg: str, param: str | None = None) -> None:
        out.append(Violation(msg, param))

    if not isinstance(body, dict):
        bad("request body must be a JSON object")
        return out
    for key in body:
        if key not in ALLOWED_TOP_LEVEL:
            bad(f"Unrecognized request argument supplied: {key}", key)
    if body.get("metadata") is not None and body.get("store") is not True:
        bad("metadata is only allowed when store is enabled", "metadata")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        bad("you must provide a model parameter", "model")
    for key in ("max_tokens", "max_completion_tokens"):
        if key in body and (type(body[key]) is not int or body[key] < 1):
            bad(f"Invalid '{key}': expected a positive integer", key)
    if "temperature" in body and not _number_in(body["temperature"], 0, 2):
        bad("Invalid 'temperature': expected a number between 0 and 2", "temperature")
    if "top_p" in body and not _number_in(body["top_p"], 0, 1):
        bad("Invalid 'top_p': expected a number between 0 and 1", "top_p")
    if "stop" in body:
        stop = body["stop"]
        if isinstance(stop, list):
            if len(stop) > 4 or not all(isinstance(s, str) for s in stop):
                bad("Invalid 'stop': expected at most 4 strings", "stop")
        elif stop is not None and not isinstance(stop, str):
            bad("Invalid 'stop': expected a string or an array of strings", "stop")
    if "stream" in body and not isinstance(body["stream"], bool):
        bad("Invalid 'stream': expected a boolean", "stream")
    if "stream_options" in body:
        so = body["stream_options"]
        if body.get("stream") is not True:
            bad("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options")
        if not isinstance(so, dict) or not set(so) <= {"include_usage", "include_obfuscation"}:
            bad("Invalid 'stream_options'", "stream_options")
    if "user" in body and (not isinstance(body["user"], str) or len(body["user"]) > MAX_USER_LEN):
        bad("Invalid 'user': expected a string of at most 256 characters", "user")
    if "reasoning_effort" in body and body["reasoning_effort"] not in (
            "none", "minimal", "low", "medium", "high", "xhigh"):
        bad("Invalid 'reasoning_effort'", "reasoning_effort")
    if "service_tier" in body and body["service_tier"] not in (
            "auto", "default", "flex", "scale", "priority"):
        bad("Invalid 'service_tier'", "service_tier")
    tool_names = _validate_tools(body, bad)
    _validate_tool_choice(body, tool_names, bad)
    _validate_messages(body.get("messages"), bad)
    return out


def _number_in(v: Any, lo: float, hi: float) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi


def _validate_tools(body: dict, bad) -> set[str] | None:
    if "tools" not in body:
        return None
    tools = body["tools"]
    names: set[str] = set()
    if not isinstance(tools, list):
        bad("Invalid 'tools': expected an array", "tools")
        return names
    for i, t in enumerate(tools):
        p = f"tools[{i}]"
        if not isinstance(t, dict) or t.get("type") != "function":
            bad(f"Invalid '{p}.type': expected 'function'", p)
            continue
        if set(t) - {"type", "function"}:
            bad(f"Unrecognized keys in {p}: {sorted(set(t) - {'type', 'function'})}", p)
        fn = t.get("function")
        if not isinstance(fn, dict):
            bad(f"Missing '{p}.function'", p)
            continue
        extra = set(fn) - {"name", "description", "parameters", "strict"}
        if extra:
            bad(f"Unrecognized keys in {p}.function: {sorted(extra)}", p)
        name = fn.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            bad(f"Invalid '{p}.function.name': string does not match pattern", p)
        else:
            names.add(name)
        if "description" in fn and not isinstance(fn["description"], str):
            bad(f"Invalid '{p}.function.description'", p)
        if "parameters" in fn and not isinstance(fn["parameters"], dict):
            bad(f"Invalid '{p}.function.parameters': expected an object", p)
        if "strict" in fn and not isinstance(fn["strict"], bool):
            bad(f"Invalid '{p}.function.strict'", p)
    return names


def _validate_tool_choice(body: dict, tool_names: set[str] | None, bad) -> None:
    if "parallel_tool_calls" in body:
        if not isinstance(body["parallel_tool_calls"], bool):
            bad("Invalid 'parallel_tool_calls': expected a boolean", "parallel_tool_calls")
        if tool_names is None:
            bad("Invalid value for 'parallel_tool_calls': only allowed when 'tools' are specified.",
                "parallel_tool_calls")
    if "tool_choice" not in body:
        return
    tc = body["tool_choice"]
    if tool_names is None and tc != "none":
        bad("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.", "tool_choice")
    if isinstance(tc, str):
        if tc not in ("none", "auto", "required"):
            bad(f"Invalid value for 'tool_choice': {tc!r}", "tool_choice")
        return
    if not isinstance(tc, dict) or tc.get("type") != "function" or set(tc) != {"type", "function"}:
        bad("Invalid 'tool_choice': expected {type:'function', function:{name}}", "tool_choice")
        return
    fn = tc.get("function")
    if not isinstance(fn, dict) or set(fn) != {"name"} or not isinstance(fn.get("name"), str):
        bad("Invalid 'tool_choice.function'", "tool_choice")
    elif tool_names is not None and fn["name"] not in tool_names:
        bad(f"Invalid 'tool_choice': function {fn['name']!r} is not in tools", "tool_choice")


def _validate_text_parts(content: Any, p: str, bad, allowed: set[str]) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list) or not content:
        bad(f"Invalid '{p}.content': expected a string or a non-empty array", p)
        return
    for j, part in enumerate(content):
        pp = f"{p}.content[{j}]"
        if not isinstance(part, dict) or part.get("type") not in allowed:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            bad(f"Invalid '{pp}.type': {kind!r} is not one of {sorted(allowed)}", pp)
            continue
        kind = part["type"]
        if kind == "text":
            if not isinstance(part.get("text"), str) or set(part) != {"type", "text"}:
                bad(f"Invalid '{pp}': text parts are {{type, text}}", pp)
        elif kind == "refusal":
            if not isinstance(part.get("refusal"), str):
                bad(f"Invalid '{pp}.refusal'", pp)
        elif kind == "image_url":
            iu = part.get("image_url")
            if set(part) != {"type", "image_url"} or not isinstance(iu, dict):
                bad(f"Invalid '{pp}': image parts are {{type, image_url:{{url}}}}", pp)
                continue
            url = iu.get("url")
            if not isinstance(url, str) or set(iu) - {"url", "detail"}:
                bad(f"Invalid '{pp}.image_url'", pp)
            elif not (url.startswith(("http://", "https://"))
                      or re.match(r"^data:image/[a-z0-9.+-]+;base64,[A-Za-z0-9+/=]+$", url)):
                bad(f"Invalid '{pp}.image_url.url': not an http(s) or base64 data URL", pp)
            if iu.get("detail", "auto") not in ("auto", "low", "high"):
                bad(f"Invalid '{pp}.image_url.detail'", pp)
        elif kind == "file":
            f = part.get("file")
            if not isinstance(f, dict) or not (set(f) <= {"file_data", "file_id", "filename"}) \
                    or not ("file_data" in f or "file_id" in f):
                bad(f"Invalid '{pp}.file'", pp)
        elif kind == "input_audio":
            if not isinstance(part.get("input_audio"), dict):
                bad(f"Invalid '{pp}.input_audio'", pp)


def _validate_messages(messages: Any, bad) -> None:
    if not isinstance(messages, list) or not messages:
        bad("Invalid 'messages': expected a non-empty array", "messages")
        return
    pending: list[str] = []  # tool_call ids still owed a tool message
    for i, m in enumerate(messages):
        p = f"messages[{i}]"
        if not isinstance(m, dict):
            bad(f"Invalid '{p}': expected an object", p)
            continue
        role = m.get("role")
        if role not in MESSAGE_KEYS:
            bad(f"Invalid '{p}.role': {role!r}", p)
            continue
        extra = set(m) - MESSAGE_KEYS[role]
        if extra:
            bad(f"Additional properties are not allowed ({sorted(extra)} unexpected) - '{p}'", p)
        if role != "tool" and pending:
            bad("An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(pending)}", p)
            pending = []
        if role in ("system", "developer"):
            _validate_text_parts(m.get("content"), p, bad, {"text"})
        elif role == "user":
            _validate_text_parts(m.get("content"), p, bad, USER_PART_TYPES)
        elif role == "assistant":
            calls = m.get("tool_calls")
            content = m.get("content")
            if content is None:
                if not calls:
                    bad(f"Invalid '{p}.content': required unless tool_calls is present", p)
            else:
                _validate_text_parts(content, p, bad, {"text", "refusal"})
            if calls is not None:
                if not isinstance(calls, list) or not calls:
                    bad(f"Invalid '{p}.tool_calls': expected a non-empty array", p)
                    continue
                for j, c in enumerate(calls):
                    cp = f"{p}.tool_calls[{j}]"
                    fn = c.get("function") if isinstance(c, dict) else None
                    if (not isinstance(c, dict) or set(c) != {"id", "type", "function"}
                            or c.get("type") != "function" or not isinstance(c.get("id"), str)
                            or not isinstance(fn, dict) or set(fn) != {"name", "arguments"}
                            or not isinstance(fn.get("name"), str)
                            or not isinstance(fn.get("arguments"), str)):
                        bad(f"Invalid '{cp}': expected {{id, type:'function', "
                            "function:{name, arguments:string}}", cp)
                        continue
                    if c["id"] in pending:
                        bad(f"Duplicate tool_call id {c['id']!r}", cp)
                    pending.append(c["id"])
        elif role == "tool":
            tid = m.get("tool_call_id")
            if not isinstance(tid, str):
                bad(f"Missing '{p}.tool_call_id'", p)
            elif tid not in pending:
                bad("Invalid parameter: messages with role 'tool' must be a response to a "
                    f"preceeding message with 'tool_calls' (tool_call_id {tid!r}).", p)
            else:
                pending.remove(tid)
            _validate_text_parts(m.get("content"), p, bad, {"text"})
    if pending:
        bad("An assistant message with 'tool_calls' must be followed by tool messages responding "
            f"to each 'tool_call_id'. Missing: {', '.join(pending)}", "messages")


# ------------------------------------------------------------ vendor flavors

# Keywords Gemini's OpenAI endpoint refuses in a tool's `parameters` schema
# ("Invalid JSON payload received. Unknown name ...").
GEMINI_REJECTED_SCHEMA_KEYS = {
    "$schema", "$id", "$ref", "$defs", "definitions", "additionalProperties",
    "patternProperties", "propertyNames", "exclusiveMinimum", "exclusiveMaximum",
    "const", "examples", "allOf", "not", "if", "then", "else",
}
OPENROUTER_TOP_LEVEL = {"reasoning", "provider", "transforms", "models", "route", "usage"}
FLAVORS = (None, "openai", "deepseek", "openrouter", "gemini", "ollama")


def validate_vendor_request(body: Any, flavor: str | None) -> list[Violation]:
    """``validate_chat_request`` plus what the vendor ``flavor`` accepts on top
    of (and demands beyond) OpenAI's contract. The vendor extensions are
    checked, removed from a copy, and the rest is validated strictly.

    - deepseek: assistant ``reasoning_content`` (a string). For a
      ``*reasoner*`` model (thinking mode) every assistant turn with
      ``tool_calls`` must carry it, as DeepSeek answers 400 otherwise.
    - openrouter: top-level ``reasoning`` ({effort|max_tokens|exclude|enabled})
      and routing fields; assistant ``reasoning``/``reasoning_details``.
    - gemini: ``tool_calls[].extra_content.google.thought_signature``; the
      first call of every assistant turn must carry its signature back;
      tool schemas must not use keywords Gemini rejects.
    - openai, ollama, None: plain OpenAI.
    """
    if flavor not in FLAVORS:
        raise ValueError(f"unknown mock flavor {flavor!r}")
    if flavor in (None, "openai", "ollama") or not isinstance(body, dict):
        return validate_chat_request(body)
    out: list[Violation] = []
    body = copy.deepcopy(body)
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    assistants = [(i, m) for i, m in enumerate(messages)
                  if isinstance(m, dict) and m.get("role") == "assistant"]
    if flavor == "deepseek":
        thinking_mode = "reasoner" in str(body.get("model", ""))
        for i, m in assistants:
            if "reasoning_content" in m:
                if not isinstance(m.pop("reasoning_content"), str):
                    out.append(Violation(f"Invalid 'messages[{i}].reasoning_content'"))
            elif thinking_mode and m.get("tool_calls"):
                out.append(Violation("Missing `reasoning_content` field in the assistant "
                                     f"message at message index {i}"))
    elif flavor == "openrouter":
        r = body.get("reasoning")
        if r is not None and (not isinstance(r, dict)
                              or set(r) - {"effort", "max_tokens", "exclude", "enabled"}
                              or r.get("effort", "low") not in ("minimal", "low", "medium",
                                                                "high")):
            out.append(Violation("Invalid 'reasoning'", "reasoning"))
        for key in OPENROUTER_TOP_LEVEL & set(body):
            body.pop(key)
        for _, m in assistants:
            m.pop("reasoning", None)
            m.pop("reasoning_details", None)
    elif flavor == "gemini":
        for i, m in assistants:
            calls = m.get("tool_calls")
            if not isinstance(calls, list):
                continue
            for j, c in enumerate(calls):
                if not isinstance(c, dict) or "extra_content" not in c:
                    if j == 0:
                        out.append(Violation(
                            f"Function call is missing a thought_signature in functionCall "
                            f"parts (messages[{i}].tool_calls[{j}])"))
                    continue
                extra = c.pop("extra_content")
                sig = extra.get("google", {}).get("thought_signature") \
                    if isinstance(extra, dict) and isinstance(extra.get("google"), dict) else None
                if not isinstance(sig, str) or not sig:
                    out.append(Violation(f"Invalid 'messages[{i}].tool_calls[{j}]"
                                         ".extra_content.google.thought_signature'"))
        for t in body.get("tools") or []:
            fn = t.get("function") if isinstance(t, dict) else None
            if isinstance(fn, dict):
                for key in _schema_keys(fn.get("parameters")):
                    if key in GEMINI_REJECTED_SCHEMA_KEYS:
                        out.append(Violation(f"Invalid JSON payload received. Unknown name "
                                             f"\"{key}\" at 'tools[0].function_declarations"
                                             f"[0].parameters': Cannot find field."))
    return out + validate_chat_request(body)


def _schema_keys(schema: Any):
    """Every key used at any depth of a JSON schema (property names excluded)."""
    if isinstance(schema, dict):
        for k, v in schema.items():
            yield k
            if k == "properties" and isinstance(v, dict):
                for sub in v.values():
                    yield from _schema_keys(sub)
            else:
                yield from _schema_keys(v)
    elif isinstance(schema, list):
        for v in schema:
            yield from _schema_keys(v)


def sse_chunk(delta: dict | None, finish: str | None = None, model: str = "mock",
              **extra: Any) -> str:
    """One raw ``data:`` event of a chat.completion.chunk, for ``sse`` specs
    that need a vendor's exact shape (``delta`` None: ``choices:[]``)."""
    obj: dict[str, Any] = {"id": "chatcmpl-mock", "object": "chat.completion.chunk",
                           "created": int(time.time()), "model": model}
    obj["choices"] = [] if delta is None else [
        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    obj.update(extra)
    return "data: " + json.dumps(obj, separators=(",", ":")) + "\n\n"


# ------------------------------------------------------------------ scripting


def tool_message_text(body: Any) -> str:
    """All ``role:"tool"`` contents of a request, joined by newlines."""
    texts = []
    for m in body.get("messages", []) if isinstance(body, dict) else []:
        if isinstance(m, dict) and m.get("role") == "tool":
            c = m.get("content")
            if isinstance(c, list):
                c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
            texts.append(c if isinstance(c, str) else "")
    return "\n".join(texts)


def _tool_names(body: dict) -> set[str]:
    names = set()
    for t in body.get("tools") or []:
        if isinstance(t, dict) and isinstance(t.get("function"), dict):
            names.add(t["function"].get("name"))
    return names


def _matches(match: dict | None, body: Any, raw: str) -> bool:
    """Predicates: stream, has_tool, lacks_tool, has_tool_message, model,
    contains, not_contains. All given predicates must hold."""
    if not match:
        return True
    body = body if isinstance(body, dict) else {}
    for key, want in match.items():
        if key == "stream":
            ok = (body.get("stream") is True) == want
        elif key == "has_tool":
            ok = want in _tool_names(body)
        elif key == "lacks_tool":
            ok = want not in _tool_names(body)
        elif key == "has_tool_message":
            has = any(isinstance(m, dict) and m.get("role") == "tool"
                      for m in body.get("messages") or [])
            ok = has == want
        elif key == "model":
            ok = body.get("model") == want
        elif key == "contains":
            ok = want in raw
        elif key == "not_contains":
            ok = want not in raw
        else:
            raise ValueError(f"unknown match predicate {key!r}")
        if not ok:
            return False
    return True


def _split(value: Any, pieces: int) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return list(value)
    if not value:
        return []
    step = max(1, -(-len(value) // max(1, pieces)))
    return [value[i:i + step] for i in range(0, len(value), step)]


def _usage(reply: dict, body: dict) -> dict:
    u = dict(reply.get("usage") or {})
    prompt = u.pop("prompt_tokens", 11)
    completion = u.pop("completion_tokens", 7)
    cached = u.pop("cached_tokens", None)
    out = {"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": prompt + completion}
    if cached is not None:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    out.update(u)
    return out


def _finish_reason(reply: dict) -> str:
    if "finish_reason" in reply:
        return reply["finish_reason"]
    return "tool_calls" if reply.get("tool_calls") else "stop"


def reply_json(reply: dict, body: dict, n: int) -> dict:
    """A non-streaming chat.completion for a ``reply`` spec."""
    text = reply.get("text")
    if isinstance(text, list):
        text = "".join(text)
    message: dict[str, Any] = {"role": "assistant", "content": text}
    for key in ("reasoning_content", "reasoning"):
        if reply.get(key) is not None:
            v = reply[key]
            message[key] = "".join(v) if isinstance(v, list) else v
    if reply.get("tool_calls"):
        message["tool_calls"] = [
            {"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": "".join(_split(c["arguments"], 1))}}
            for c in reply["tool_calls"]
        ]
    return {
        "id": f"chatcmpl-mock-{n}", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", "mock"),
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": _finish_reason(reply)}],
        "usage": _usage(reply, body),
    }


def reply_sse(reply: dict, body: dict, n: int) -> list[str]:
    """The SSE events (one string each) of a streamed ``reply`` spec."""
    model = body.get("model", "mock")
    created = int(time.time())

    def chunk(delta: dict | None, finish: str | None = None, **extra: Any) -> str:
        obj: dict[str, Any] = {"id": f"chatcmpl-mock-{n}", "object": "chat.completion.chunk",
                               "created": created, "model": model}
        obj["choices"] = [] if delta is None else [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        obj.update(extra)
        return "data: " + json.dumps(obj, separators=(",", ":")) + "\n\n"

    pieces = reply.get("split", 3)
    events = [chunk({"role": "assistant", "content": ""})]
    for key in ("reasoning_content", "reasoning"):
        for frag in _split(reply.get(key), pieces):
            events.append(chunk({key: frag}))
    for frag in _split(reply.get("text"), pieces):
        events.append(chunk({"content": frag}))
    calls = reply.get("tool_calls") or []
    per_call = []
    for idx, c in enumerate(calls):
        frags = _split(c["arguments"], pieces) or [""]
        seq = [{"index": idx, "id": c["id"], "type": "function",
                "function": {"name": c["name"], "arguments": frags[0]}}]
        seq += [{"index": idx, "function": {"arguments": f}} for f in frags[1:]]
        per_call.append(seq)
    if reply.get("interleave"):
        while any(per_call):
            for seq in per_call:
                if seq:
                    events.append(chunk({"tool_calls": [seq.pop(0)]}))
    else:
        for seq in per_call:
            for d in seq:
                events.append(chunk({"tool_calls": [d]}))
    events.append(chunk({}, _finish_reason(reply)))
    so = body.get("stream_options") or {}
    if so.get("include_usage"):
        events.append(chunk(None, usage=_usage(reply, body)))
    events.append("data: [DONE]\n\n")
    if "cut_after" in reply:
        events = events[:reply["cut_after"]]
    if reply.get("stream_error"):
        err = {"error": {"message": "mock stream error", "type": "server_error", "code": None,
                         "param": None, **reply["stream_error"]}}
        events.append("data: " + json.dumps(err) + "\n\n")
    return events


def openai_error(status: int, message: str, etype: str | None = None,
                 code: Any = None, param: Any = None) -> dict:
    if etype is None:
        etype = {400: "invalid_request_error", 401: "invalid_request_error",
                 403: "permission_error", 404: "invalid_request_error",
                 429: "rate_limit_exceeded"}.get(status, "server_error")
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


# --------------------------------------------------------------------- server


class MockState:
    def __init__(self, key: str | None, flavor: str | None = None):
        self.key = key
        self.flavor = flavor
        self.lock = threading.Lock()
        self.queue: list[dict] = []
        self.records: list[dict] = []
        self.counter = 0

    def reset(self) -> None:
        with self.lock:
            self.queue.clear()
            self.records.clear()

    def take(self, body: Any, raw: str) -> dict | None:
        with self.lock:
            for i, spec in enumerate(self.queue):
                if _matches(spec.get("match"), body, raw):
                    if not spec.get("repeat"):
                        del self.queue[i]
                    return copy.deepcopy(spec)
        return None


class _Reset(Exception):
    """Raised after a deliberate TCP reset so the handler stops using the socket."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ccproxy-mock-openai/1"
    state: MockState  # set on the subclass made by make_server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _Reset:
            self.close_connection = True
        except (ConnectionError, BrokenPipeError, socket.timeout):
            self.close_connection = True

    def finish(self) -> None:
        try:
            super().finish()
        except (OSError, ValueError):
            pass

    # -- plumbing

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: dict | None = None,
              ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_json(self, status: int, obj: Any, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _reset(self) -> None:
        try:
            self.wfile.flush()
        except OSError:
            pass
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        raise _Reset()

    def _stream(self, events: list[str], spec: dict) -> None:
        framing = spec.get("framing", "chunked")
        delay = float(spec.get("chunk_delay", 0))
        self.send_response(spec.get("status", 200))
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        if framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        for k, v in (spec.get("headers") or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.flush()
        for ev in events:
            if delay:
                time.sleep(delay)
            data = ev.encode()
            if not data:
                continue
            if framing == "chunked":
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self.wfile.write(data)
            self.wfile.flush()
        fault = spec.get("fault")
        if fault == "reset":
            self._reset()
        if fault == "truncate":
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if framing == "chunked":
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    # -- verbs

    def do_HEAD(self) -> None:
        self._record_unexpected()
        self._send(404, b"")

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/__requests":
            with self.state.lock:
                self._send_json(200, self.state.records)
            return
        self._record_unexpected()
        self._send_json(404, openai_error(404, f"Invalid URL (GET {path})"))

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        raw = self._read_body()
        if parts.path == "/__script":
            specs = json.loads(raw or b"[]")
            if isinstance(specs, dict):
                specs = specs.get("responses", [])
            with self.state.lock:
                self.state.queue.extend(specs)
            self._send_json(200, {"queued": len(specs)})
            return
        if parts.path == "/__reset":
            self.state.reset()
            self._send_json(200, {"reset": True})
            return
        self._handle_openai(parts, raw)

    def _record_unexpected(self) -> None:
        with self.state.lock:
            self.state.records.append({
                "method": self.command, "path": urlsplit(self.path).path,
                "query": urlsplit(self.path).query, "headers": self._headers(), "body": None,
                "violations": [f"unexpected request {self.command} {self.path}"],
                "served": "404"})

    def _headers(self) -> dict:
        return {k.lower(): v for k, v in self.headers.items()}

    def _handle_openai(self, parts, raw: bytes) -> None:
        headers = self._headers()
        record: dict[str, Any] = {"method": "POST", "path": parts.path, "query": parts.query,
                                  "headers": headers, "body": None, "violations": [],
                                  "served": None}
        with self.state.lock:
            self.state.counter += 1
            n = self.state.counter
            self.state.records.append(record)
        text = raw.decode("utf-8", "replace")
        if parts.path != "/v1/chat/completions":
            record["violations"].append(f"unexpected path {parts.path}")
            record["served"] = "404"
            self._send_json(404, openai_error(404, f"Invalid URL (POST {parts.path})"))
            return
        if self.state.key is not None and headers.get("authorization") != f"Bearer {self.state.key}":
            record["violations"].append("missing or wrong Authorization: Bearer <key>")
            record["served"] = "401"
            self._send_json(401, openai_error(401, "Incorrect API key provided",
                                              code="invalid_api_key"))
            return
        try:
            body = json.loads(text)
        except ValueError as e:
            record["violations"].append(f"body is not JSON: {e}")
            record["served"] = "400"
            self._send_json(400, openai_error(400, "We could not parse the JSON body"))
            return
        record["body"] = body
        if "application/json" not in headers.get("content-type", ""):
            record["violations"].append("Content-Type is not application/json")
        problems = validate_vendor_request(body, self.state.flavor)
        record["violations"].extend(v.message for v in problems)
        if record["violations"]:
            first = problems[0] if problems else Violation(record["violations"][0])
            record["served"] = "400"
            self._send_json(400, openai_error(400, first.message, param=first.param))
            return
        spec = self.state.take(body, text)
        if spec is None:
            record["violations"].append("no scripted response matched this request")
            record["served"] = "unscripted"
            self._send_json(500, openai_error(500, "mock upstream: nothing scripted"))
            return
        record["served"] = spec.get("label", "scripted")
        if spec.get("delay"):
            time.sleep(float(spec["delay"]))
        self._serve(spec, body, n)

    def _serve(self, spec: dict, body: dict, n: int) -> None:
        if "reply" in spec:
            reply = spec["reply"]
            tools_text = tool_message_text(body)
            for key in ("text",):
                v = reply.get(key)
                if isinstance(v, str):
                    reply[key] = v.replace("{{tool_results}}", tools_text)
                elif isinstance(v, list):
                    reply[key] = [s.replace("{{tool_results}}", tools_text) for s in v]
            mode = reply.get("mode", "auto")
            streaming = mode == "sse" or (mode == "auto" and body.get("stream") is True)
            if streaming:
                self._stream(reply_sse(reply, body, n), {**spec, **reply})
            else:
                self._send_json(spec.get("status", 200), reply_json(reply, body, n),
                                spec.get("headers"))
        elif "sse" in spec:
            self._stream(spec["sse"], spec)
        elif "error" in spec:
            err = spec["error"]
            status = err.get("status", 500)
            self._send_json(status, openai_error(status, err.get("message", f"mock {status}"),
                                                 err.get("type"), err.get("code")),
                            err.get("headers"))
        elif "json" in spec:
            self._send_json(spec.get("status", 200), spec["json"], spec.get("headers"))
        elif "body" in spec:
            self._send(spec.get("status", 200), spec["body"].encode(), spec.get("headers"),
                       spec.get("content_type", "application/json"))
        elif spec.get("fault") == "reset":
            self._reset()
        else:
            raise ValueError(f"mock: unusable response spec {sorted(spec)}")


class MockServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_server(host: str = "127.0.0.1", port: int = 0, key: str | None = None,
                flavor: str | None = None) -> MockServer:
    handler = type("BoundHandler", (Handler,), {"state": MockState(key, flavor)})
    return MockServer((host, port), handler)


def start_in_thread(host: str = "127.0.0.1", port: int = 0, key: str | None = None,
                    flavor: str | None = None) -> tuple[MockServer, threading.Thread]:
    server = make_server(host, port, key, flavor)
    t = threading.Thread(target=server.serve_forever, name="mock-upstream", daemon=True)
    t.start()
    return server, t


# --------------------------------------------------------------- test client


class MockControl:
    """Talks to a running mock over its control API."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.host, self.port = host, port
        self.base_url = f"http://{host}:{port}/v1"

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            data = None if payload is None else json.dumps(payload).encode()
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            out = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"mock control {method} {path}: {resp.status} {out[:200]!r}")
            return json.loads(out)
        finally:
            conn.close()

    def script(self, *specs: dict) -> None:
        self._call("POST", "/__script", list(specs))

    def reset(self) -> None:
        self._call("POST", "/__reset", {})

    def requests(self) -> list[dict]:
        return self._call("GET", "/__requests")

    def violations(self) -> list[str]:
        return [v for r in self.requests() for v in r["violations"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--key", default=None, help="require Authorization: Bearer KEY")
    args = ap.parse_args()
    server = make_server(args.host, args.port, args.key)
    print(f"mock listening on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
