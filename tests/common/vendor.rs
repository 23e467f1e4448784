//! What each provider accepts beyond strict OpenAI Chat Completions.
//!
//! Receives the JSON body (and headers) the proxy sent to a mock that plays
//! one vendor; emits that vendor's violations. Each vendor's documented
//! extension is checked for shape and then removed, and the rest must pass
//! the strict OpenAI validation, so an extension sent to the wrong vendor
//! (OpenRouter's `reasoning` to OpenAI, DeepSeek's `reasoning_content` to
//! Groq) still fails. The `Anthropic` profile checks a Messages API request
//! instead: the pass-through provider kind.

use serde_json::Value;

use super::validate::validate_chat_request;

/// The dialect a mock upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Plain OpenAI Chat Completions (also Groq, Mistral, xAI, Ollama...).
    Strict,
    /// Top-level `reasoning: {effort | max_tokens | enabled | exclude}`.
    OpenRouter,
    /// `reasoning_content` (a string) on assistant messages.
    DeepSeek,
    /// `extra_content.google.thought_signature` on assistant tool calls;
    /// tool schemas restricted to the OpenAPI `Schema` subset.
    Gemini,
    /// Anthropic Messages: `POST /v1/messages`, `x-api-key`,
    /// `anthropic-version`, no `Authorization`; the body is not validated.
    Anthropic,
}

/// Keywords Gemini's OpenAI endpoint answers 400 to inside `parameters`.
pub const GEMINI_REJECTED: &[&str] = &[
    "$schema",
    "$id",
    "$ref",
    "$defs",
    "definitions",
    "additionalProperties",
    "patternProperties",
    "propertyNames",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "const",
    "examples",
    "allOf",
    "oneOf",
    "not",
];

/// Violations of a chat completion request for `profile` (not `Anthropic`).
pub fn validate_for(body: &Value, profile: Profile) -> Vec<String> {
    let mut v = Vec::new();
    let mut body = body.clone();
    match profile {
        Profile::Strict | Profile::Anthropic => {}
        Profile::OpenRouter => {
            if let Some(r) = body.as_object_mut().and_then(|o| o.remove("reasoning")) {
                check_openrouter_reasoning(&r, &mut v);
            }
        }
        Profile::DeepSeek => {
            for m in messages_mut(&mut body) {
                if let Some(rc) = m.as_object_mut().and_then(|o| o.remove("reasoning_content")) {
                    if m["role"] != "assistant" || !rc.is_string() {
                        v.push(format!("reasoning_content must be a string on an assistant message: {rc} in {m}"));
                    }
                }
            }
        }
        Profile::Gemini => {
            if let Some(tools) = body["tools"].as_array() {
                for (i, t) in tools.iter().enumerate() {
                    if let Some(p) = t["function"].get("parameters") {
                        gemini_schema(p, &format!("tools[{i}].function.parameters"), &mut v);
                    }
                }
            }
            for m in messages_mut(&mut body) {
                let Some(calls) = m.get_mut("tool_calls").and_then(Value::as_array_mut) else { continue };
                for c in calls {
                    let Some(extra) = c.as_object_mut().and_then(|o| o.remove("extra_content")) else { continue };
                    let ok = extra.as_object().is_some_and(|o| o.len() == 1)
                        && extra["google"].as_object().is_some_and(|g| g.len() == 1)
                        && extra["google"]["thought_signature"].as_str().is_some_and(|s| !s.is_empty());
                    if !ok {
                        v.push(format!("bad extra_content on a tool call: {extra}"));
                    }
                }
            }
        }
    }
    v.extend(validate_chat_request(&body));
    v
}

fn messages_mut(body: &mut Value) -> impl Iterator<Item = &mut Value> {
    body.get_mut("messages").and_then(Value::as_array_mut).into_iter().flatten()
}

fn check_openrouter_reasoning(r: &Value, v: &mut Vec<String>) {
    let Some(o) = r.as_object() else {
        v.push(format!("'reasoning' must be an object, got {r}"));
        return;
    };
    for (k, x) in o {
        let ok = match k.as_str() {
            "effort" => ["minimal", "low", "medium", "high"].contains(&x.as_str().unwrap_or("?")),
            "max_tokens" => x.as_u64().is_some_and(|n| n > 0),
            "enabled" | "exclude" => x.is_boolean(),
            _ => false,
        };
        if !ok {
            v.push(format!("invalid reasoning.{k}: {x}"));
        }
    }
    if o.contains_key("effort") && o.contains_key("max_tokens") {
        v.push("reasoning.effort and reasoning.max_tokens are mutually exclusive".into());
    }
}

/// Walks a schema; names under `properties` are not keywords.
fn gemini_schema(s: &Value, at: &str, v: &mut Vec<String>) {
    match s {
        Value::Object(o) => {
            for (k, x) in o {
                if GEMINI_REJECTED.contains(&k.as_str()) {
                    v.push(format!("Invalid JSON payload received. Unknown name \"{k}\" at {at}"));
                }
                if k == "type" && !x.is_string() {
                    v.push(format!("{at}.type must be a single string, got {x}"));
                }
                if k == "properties" {
                    if let Some(props) = x.as_object() {
                        for (name, sub) in props {
                            gemini_schema(sub, &format!("{at}.properties.{name}"), v);
                        }
                    }
                } else if x.is_object() || x.is_array() {
                    gemini_schema(x, &format!("{at}.{k}"), v);
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                gemini_schema(x, &format!("{at}[{i}]"), v);
            }
        }
        _ => {}
    }
}

/// Violations of an Anthropic Messages request as a pass-through provider
/// receives it.
pub fn check_anthropic(
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &Value,
    key: Option<&str>,
) -> Vec<String> {
    let find = |n: &str| super::wire::find_header(headers, n);
    let mut v = Vec::new();
    if method != "POST" || path.split('?').next() != Some("/v1/messages") {
        v.push(format!("unexpected request {method} {path} to an Anthropic upstream"));
    }
    if let Some(key) = key {
        if find("x-api-key") != Some(key) {
            v.push(format!("x-api-key is {:?}, expected the test key", find("x-api-key")));
        }
    }
    if find("anthropic-version").is_none_or(str::is_empty) {
        v.push("missing anthropic-version".into());
    }
    if find("authorization").is_some() {
        v.push("an Authorization header was sent to an Anthropic upstream".into());
    }
    if !body.is_object() || !body["model"].is_string() {
        v.push("body is not a Messages request with a model".into());
    }
    v
}
