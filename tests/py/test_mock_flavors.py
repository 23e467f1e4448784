"""The mock's vendor flavors accept what each vendor accepts and refuse what
it refuses, so the provider tests' upstream checks can fail."""

from __future__ import annotations

import copy

import pytest

from mock_upstream import validate_vendor_request

HISTORY = {"model": "deepseek-reasoner", "messages": [
    {"role": "user", "content": "x"},
    {"role": "assistant", "content": None,
     "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "a", "content": "r"}]}


def problems(body, flavor):
    return [v.message for v in validate_vendor_request(body, flavor)]


def test_deepseek_thinking_mode_needs_reasoning_content_back():
    assert problems(HISTORY, "deepseek") == [
        "Missing `reasoning_content` field in the assistant message at message index 1"]
    ok = copy.deepcopy(HISTORY)
    ok["messages"][1]["reasoning_content"] = "thought"
    assert problems(ok, "deepseek") == []
    assert problems(ok, "openai")  # plain OpenAI refuses the extra field
    chat = copy.deepcopy(HISTORY)
    chat["model"] = "deepseek-chat"
    assert problems(chat, "deepseek") == []


def test_gemini_needs_the_signature_and_a_clean_schema():
    assert any("thought_signature" in m for m in problems(HISTORY, "gemini"))
    ok = copy.deepcopy(HISTORY)
    ok["messages"][1]["tool_calls"][0]["extra_content"] = {"google": {"thought_signature": "s"}}
    assert problems(ok, "gemini") == []
    ok["tools"] = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"additionalProperties": {"type": "string"}}}}}]
    assert problems(ok, "gemini") == []  # a property may be named like a keyword
    ok["tools"][0]["function"]["parameters"]["additionalProperties"] = False
    assert any("additionalProperties" in m for m in problems(ok, "gemini"))


def test_openrouter_reasoning_parameter():
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}],
            "reasoning": {"effort": "low"}}
    assert problems(body, "openrouter") == []
    assert problems(body, "openai")
    body["reasoning"] = {"effort": "extreme"}
    assert problems(body, "openrouter")


def test_unknown_flavor():
    with pytest.raises(ValueError):
        validate_vendor_request({}, "azure")
