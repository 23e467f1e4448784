//! Strict validation of an OpenAI Chat Completions request, as OpenAI's own
//! API does it.
//!
//! Receives the JSON body the proxy POSTed to the mock upstream; emits a list
//! of violations (empty when the request would be accepted). The mock answers
//! a 400 OpenAI error and records the violations, so any conversion bug fails
//! the test loudly instead of being tolerated like a lax local model would.

use serde_json::Value;

/// Top-level parameters OpenAI accepts. Deliberately absent although OpenAI
/// knows them: `metadata` and `service_tier`, whose Anthropic meaning differs
/// (Anthropic `metadata.user_id` must become `user`; Anthropic service tiers
/// are not OpenAI's), so ccproxy must never forward them as is.
pub const ALLOWED_TOP_LEVEL: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "reasoning_effort",
    "n",
    "seed",
    "response_format",
    "frequency_penalty",
    "presence_penalty",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "store",
    "modalities",
    "prediction",
    "audio",
    "web_search_options",
    "verbosity",
    "safety_identifier",
    "prompt_cache_key",
];

/// Every violation of OpenAI's request rules found in `body`.
pub fn validate_chat_request(body: &Value) -> Vec<String> {
    let mut v = Vec::new();
    let Some(obj) = body.as_object() else {
        v.push("request body is not a JSON object".to_string());
        return v;
    };
    for k in obj.keys() {
        if !ALLOWED_TOP_LEVEL.contains(&k.as_str()) {
            v.push(format!("Unrecognized request argument supplied: {k}"));
        }
    }
    match obj.get("model") {
        Some(Value::String(s)) if !s.is_empty() => {}
        other => v.push(format!("'model' must be a non-empty string, got {other:?}")),
    }
    for k in ["max_tokens", "max_completion_tokens", "n", "top_logprobs", "seed"] {
        if let Some(x) = obj.get(k) {
            let ok = if k == "seed" {
                x.is_i64() || x.is_u64()
            } else {
                x.as_u64().is_some_and(|n| n >= 1 || k == "top_logprobs")
            };
            if !ok {
                v.push(format!("'{k}' must be a positive integer, got {x}"));
            }
        }
    }
    if obj.contains_key("max_tokens") && obj.contains_key("max_completion_tokens") {
        v.push("max_tokens and max_completion_tokens are mutually exclusive".into());
    }
    number_in(obj.get("temperature"), 0.0, 2.0, "temperature", &mut v);
    number_in(obj.get("top_p"), 0.0, 1.0, "top_p", &mut v);
    number_in(obj.get("frequency_penalty"), -2.0, 2.0, "frequency_penalty", &mut v);
    number_in(obj.get("presence_penalty"), -2.0, 2.0, "presence_penalty", &mut v);
    match obj.get("stop") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(Value::Array(a)) => {
            if a.len() > 4 {
                v.push(format!("'stop' has {} items; at most 4 are allowed", a.len()));
            }
            if a.iter().any(|s| !s.is_string()) {
                v.push("'stop' items must be strings".into());
            }
        }
        Some(other) => v.push(format!("'stop' must be a string or an array, got {other}")),
    }
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            v.push(format!("'stream' must be a boolean, got {other}"));
            false
        }
    };
    if let Some(so) = obj.get("stream_options") {
        if !so.is_null() {
            if !stream {
                v.push("The 'stream_options' parameter is only allowed when 'stream' is enabled.".into());
            }
            match so.as_object() {
                Some(o) => {
                    for (k, x) in o {
                        if !["include_usage", "include_obfuscation"].contains(&k.as_str()) || !x.is_boolean() {
                            v.push(format!("bad stream_options entry {k}: {x}"));
                        }
                    }
                }
                None => v.push("'stream_options' must be an object".into()),
            }
        }
    }
    if let Some(u) = obj.get("user") {
        match u.as_str() {
            Some(s) if s.chars().count() <= 64 => {}
            Some(s) => v.push(format!(
                "Invalid 'user': string too long. Expected a string with maximum length 64, but got a string with length {}.",
                s.chars().count()
            )),
            None => v.push(format!("'user' must be a string, got {u}")),
        }
    }
    if let Some(r) = obj.get("reasoning_effort") {
        if !["none", "minimal", "low", "medium", "high", "xhigh"].contains(&r.as_str().unwrap_or("?")) {
            v.push(format!("invalid reasoning_effort {r}"));
        }
    }
    let tool_names = validate_tools(obj.get("tools"), &mut v);
    let has_tools = !tool_names.is_empty();
    if let Some(p) = obj.get("parallel_tool_calls") {
        if !p.is_boolean() {
            v.push(format!("'parallel_tool_calls' must be a boolean, got {p}"));
        }
        if !has_tools {
            v.push("Invalid value for 'parallel_tool_calls': only allowed when 'tools' are specified.".into());
        }
    }
    if let Some(tc) = obj.get("tool_choice") {
        validate_tool_choice(tc, &tool_names, &mut v);
    }
    match obj.get("messages") {
        Some(Value::Array(msgs)) if !msgs.is_empty() => validate_messages(msgs, &mut v),
        other => v.push(format!("'messages' must be a non-empty array, got {other:?}")),
    }
    v
}

fn number_in(x: Option<&Value>, lo: f64, hi: f64, name: &str, v: &mut Vec<String>) {
    if let Some(x) = x {
        match x.as_f64() {
            Some(f) if (lo..=hi).contains(&f) => {}
            _ => v.push(format!("'{name}' must be a number in [{lo}, {hi}], got {x}")),
        }
    }
}

fn only_keys(o: &serde_json::Map<String, Value>, allowed: &[&str], what: &str, v: &mut Vec<String>) {
    for k in o.keys() {
        if !allowed.contains(&k.as_str()) {
            v.push(format!("{what}: unknown parameter '{k}'"));
        }
    }
}

/// Returns the declared function names.
fn validate_tools(tools: Option<&Value>, v: &mut Vec<String>) -> Vec<String> {
    let mut names = Vec::new();
    let Some(tools) = tools else { return names };
    let Some(arr) = tools.as_array() else {
        v.push(format!("'tools' must be an array, got {tools}"));
        return names;
    };
    if arr.is_empty() {
        v.push("[] is too short - 'tools'".into());
    }
    for (i, t) in arr.iter().enumerate() {
        let what = format!("tools[{i}]");
        let Some(o) = t.as_object() else {
            v.push(format!("{what} must be an object"));
            continue;
        };
        only_keys(o, &["type", "function"], &what, v);
        if o.get("type").and_then(Value::as_str) != Some("function") {
            v.push(format!("{what}.type must be \"function\", got {:?}", o.get("type")));
        }
        let Some(f) = o.get("function").and_then(Value::as_object) else {
            v.push(format!("{what}.function must be an object"));
            continue;
        };
        only_keys(f, &["name", "description", "parameters", "strict"], &format!("{what}.function"), v);
        match f.get("name").and_then(Value::as_str) {
            Some(n) if valid_function_name(n) => names.push(n.to_string()),
            other => v.push(format!("{what}.function.name invalid: {other:?}")),
        }
        if let Some(d) = f.get("description") {
            if !d.is_string() {
                v.push(format!("{what}.function.description must be a string"));
            }
        }
        if let Some(p) = f.get("parameters") {
            if !p.is_object() {
                v.push(format!("{what}.function.parameters must be an object"));
            } else if let Some(cc) = find_key(p, "cache_control") {
                v.push(format!("{what}.function.parameters contains Anthropic-only key {cc}"));
            }
        }
        if let Some(s) = f.get("strict") {
            if !s.is_boolean() {
                v.push(format!("{what}.function.strict must be a boolean"));
            }
        }
    }
    names
}

fn find_key(v: &Value, key: &str) -> Option<String> {
    match v {
        Value::Object(o) => {
            if o.contains_key(key) {
                return Some(key.to_string());
            }
            o.values().find_map(|x| find_key(x, key))
        }
        Value::Array(a) => a.iter().find_map(|x| find_key(x, key)),
        _ => None,
    }
}

fn valid_function_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn validate_tool_choice(tc: &Value, names: &[String], v: &mut Vec<String>) {
    if names.is_empty() {
        v.push("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.".into());
    }
    match tc {
        Value::String(s) if ["none", "auto", "required"].contains(&s.as_str()) => {}
        Value::Object(o) => {
            only_keys(o, &["type", "function"], "tool_choice", v);
            if o.get("type").and_then(Value::as_str) != Some("function") {
                v.push(format!("tool_choice.type must be \"function\": {tc}"));
            }
            match o.get("function").and_then(Value::as_object) {
                Some(f) => {
                    only_keys(f, &["name"], "tool_choice.function", v);
                    match f.get("name").and_then(Value::as_str) {
                        Some(n) if names.iter().any(|x| x == n) => {}
                        other => v.push(format!("tool_choice names an undeclared function {other:?}")),
                    }
                }
                None => v.push(format!("tool_choice.function must be an object: {tc}")),
            }
        }
        other => v.push(format!("Invalid value for 'tool_choice': {other}")),
    }
}

fn validate_messages(msgs: &[Value], v: &mut Vec<String>) {
    // Tool call ids still waiting for their `tool` message, from the
    // assistant message right before the current run of tool messages.
    let mut pending: Vec<String> = Vec::new();
    let mut in_tool_run = false;
    for (i, m) in msgs.iter().enumerate() {
        let what = format!("messages[{i}]");
        let Some(o) = m.as_object() else {
            v.push(format!("{what} must be an object"));
            continue;
        };
        let role = o.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "tool" && !pending.is_empty() {
            v.push(format!(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each \
                 'tool_call_id'. The following tool_call_ids did not have response messages: {} (before {what})",
                pending.join(", ")
            ));
            pending.clear();
        }
        if role != "tool" {
            in_tool_run = false;
        }
        match role {
            "system" | "developer" => {
                only_keys(o, &["role", "content", "name"], &what, v);
                validate_content(o.get("content"), &["text"], &what, v);
            }
            "user" => {
                only_keys(o, &["role", "content", "name"], &what, v);
                validate_content(o.get("content"), &["text", "image_url", "input_audio", "file"], &what, v);
            }
            "assistant" => {
                only_keys(o, &["role", "content", "name", "tool_calls", "refusal", "audio"], &what, v);
                let has_calls = o.get("tool_calls").is_some_and(|t| !t.is_null());
                let content = o.get("content");
                let content_absent = content.is_none_or(Value::is_null);
                if content_absent && !has_calls {
                    v.push(format!("{what}: 'content' is required unless 'tool_calls' is specified"));
                } else if !content_absent {
                    validate_content(content, &["text", "refusal"], &what, v);
                }
                if has_calls {
                    pending = validate_tool_calls(o.get("tool_calls"), &what, v);
                    in_tool_run = true;
                }
            }
            "tool" => {
                only_keys(o, &["role", "content", "tool_call_id"], &what, v);
                validate_content(o.get("content"), &["text"], &what, v);
                let id = o.get("tool_call_id").and_then(Value::as_str);
                match id {
                    None => v.push(format!("{what}: missing 'tool_call_id'")),
                    Some(id) => {
                        if !in_tool_run {
                            v.push(format!(
                                "Invalid parameter: {what} with role 'tool' must be a response to a preceeding \
                                 message with 'tool_calls' (tool_call_id {id})."
                            ));
                        } else if let Some(p) = pending.iter().position(|x| x == id) {
                            pending.remove(p);
                        } else {
                            v.push(format!("{what}: tool_call_id {id} answers no pending tool call"));
                        }
                    }
                }
            }
            other => v.push(format!("{what}: invalid role {other:?}")),
        }
    }
    if !pending.is_empty() {
        v.push(format!(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each \
             'tool_call_id'. The following tool_call_ids did not have response messages: {}",
            pending.join(", ")
        ));
    }
}

/// Returns the ids of the calls.
fn validate_tool_calls(calls: Option<&Value>, what: &str, v: &mut Vec<String>) -> Vec<String> {
    let mut ids = Vec::new();
    let Some(arr) = calls.and_then(Value::as_array) else {
        v.push(format!("{what}.tool_calls must be an array"));
        return ids;
    };
    if arr.is_empty() {
        v.push(format!("{what}.tool_calls: [] is too short"));
    }
    for (j, c) in arr.iter().enumerate() {
        let w = format!("{what}.tool_calls[{j}]");
        let Some(o) = c.as_object() else {
            v.push(format!("{w} must be an object"));
            continue;
        };
        only_keys(o, &["id", "type", "function"], &w, v);
        match o.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => {
                if ids.iter().any(|x| x == id) {
                    v.push(format!("{w}: duplicate tool call id {id}"));
                }
                ids.push(id.to_string());
            }
            other => v.push(format!("{w}.id must be a non-empty string, got {other:?}")),
        }
        if o.get("type").and_then(Value::as_str) != Some("function") {
            v.push(format!("{w}.type must be \"function\""));
        }
        match o.get("function").and_then(Value::as_object) {
            Some(f) => {
                only_keys(f, &["name", "arguments"], &format!("{w}.function"), v);
                if !f.get("name").and_then(Value::as_str).is_some_and(valid_function_name) {
                    v.push(format!("{w}.function.name invalid: {:?}", f.get("name")));
                }
                match f.get("arguments").and_then(Value::as_str) {
                    Some(a) => {
                        if serde_json::from_str::<Value>(a).map(|x| !x.is_object()).unwrap_or(true) {
                            v.push(format!("{w}.function.arguments is not a JSON object string: {a:?}"));
                        }
                    }
                    None => v.push(format!("{w}.function.arguments must be a string, got {:?}", f.get("arguments"))),
                }
            }
            None => v.push(format!("{w}.function must be an object")),
        }
    }
    ids
}

fn validate_content(content: Option<&Value>, part_types: &[&str], what: &str, v: &mut Vec<String>) {
    match content {
        Some(Value::String(_)) => {}
        Some(Value::Array(parts)) => {
            if parts.is_empty() {
                v.push(format!("{what}.content: [] is too short"));
            }
            for (k, p) in parts.iter().enumerate() {
                let w = format!("{what}.content[{k}]");
                let Some(o) = p.as_object() else {
                    v.push(format!("{w} must be an object"));
                    continue;
                };
                let ty = o.get("type").and_then(Value::as_str).unwrap_or("");
                if !part_types.contains(&ty) {
                    v.push(format!("{w}: content part type {ty:?} is not allowed here (allowed: {part_types:?})"));
                    continue;
                }
                match ty {
                    "text" => {
                        only_keys(o, &["type", "text"], &w, v);
                        if !o.get("text").is_some_and(Value::is_string) {
                            v.push(format!("{w}.text must be a string"));
                        }
                    }
                    "refusal" => only_keys(o, &["type", "refusal"], &w, v),
                    "image_url" => {
                        only_keys(o, &["type", "image_url"], &w, v);
                        match o.get("image_url").and_then(Value::as_object) {
                            Some(iu) => {
                                only_keys(iu, &["url", "detail"], &format!("{w}.image_url"), v);
                                let url = iu.get("url").and_then(Value::as_str).unwrap_or("");
                                let ok = url.starts_with("https://")
                                    || url.starts_with("http://")
                                    || (url.starts_with("data:image/") && url.contains(";base64,"));
                                if !ok {
                                    v.push(format!("{w}.image_url.url is not an http(s) or data:image URL: {url:?}"));
                                }
                                if let Some(d) = iu.get("detail") {
                                    if !["auto", "low", "high"].contains(&d.as_str().unwrap_or("?")) {
                                        v.push(format!("{w}.image_url.detail invalid: {d}"));
                                    }
                                }
                            }
                            None => v.push(format!("{w}.image_url must be an object")),
                        }
                    }
                    "file" => {
                        only_keys(o, &["type", "file"], &w, v);
                        match o.get("file").and_then(Value::as_object) {
                            Some(f) => {
                                only_keys(f, &["file_data", "file_id", "filename"], &format!("{w}.file"), v);
                                if !f.contains_key("file_data") && !f.contains_key("file_id") {
                                    v.push(format!("{w}.file needs file_data or file_id"));
                                }
                            }
                            None => v.push(format!("{w}.file must be an object")),
                        }
                    }
                    "input_audio" => only_keys(o, &["type", "input_audio"], &w, v),
                    _ => {}
                }
            }
        }
        Some(other) => v.push(format!("{what}.content must be a string or an array of parts, got {other}")),
        None => v.push(format!("{what}: missing 'content'")),
    }
}
