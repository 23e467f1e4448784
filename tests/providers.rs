//! Every preset's quirk profile end to end, against a mock that plays that
//! vendor (its base URL overridden, so the preset's quirks apply):
//! a streamed tool round trip in the vendor's shape (turn 2 must carry the
//! tool call and its result back the way the vendor accepts), thinking
//! output in the vendor's field, and an error in the vendor's error shape.
//! Then the preset-specific quirks: Gemini's index-less batched tool calls,
//! thought signatures and schema cleaning; DeepSeek's reasoning passback;
//! OpenAI reasoning models; OpenRouter's `reasoning`, comments and headers;
//! the `max_tokens` cap; and the Anthropic pass-through provider kind.
//! Every test runs under io_uring and epoll.

mod common;

use common::openai::{chunk, data, data_part, done, finish, role, text_stream, tool_args, tool_start, usage};
use common::{
    accumulate, for_each_driver, openai_text, post_raw, write_config, Accumulated, Mock, Part, Profile, Proxy,
    ProxyCmd, Reply, TEST_KEY,
};
use serde_json::{json, Value};

/// How one vendor talks, as far as these tests care.
struct Vendor {
    preset: &'static str,
    profile: Profile,
    model: &'static str,
    /// The delta field thinking arrives in, if the vendor streams it.
    reasoning: Option<&'static str>,
    /// The vendor's tool call id (vLLM's is one Anthropic would refuse).
    tool_id: &'static str,
    /// The finish reason the vendor sends after tool calls.
    finish: &'static str,
    /// `: OPENROUTER PROCESSING` keep-alive comments in the stream.
    comments: bool,
    /// An error status and body in the vendor's shape, and the Anthropic
    /// status and type it must become, and words its message must keep.
    error: (u16, &'static str, u16, &'static str, &'static str),
}

const VENDORS: &[Vendor] = &[
    Vendor {
        preset: "openai",
        profile: Profile::Strict,
        model: "gpt-4.1",
        reasoning: None,
        tool_id: "call_8hQm2kTq0s1Z",
        finish: "tool_calls",
        comments: false,
        error: (
            401,
            r#"{"error":{"message":"Incorrect API key provided: sk-abc***.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
            401,
            "authentication_error",
            "Incorrect API key provided",
        ),
    },
    Vendor {
        preset: "openrouter",
        profile: Profile::OpenRouter,
        model: "anthropic/claude-sonnet-4",
        reasoning: Some("reasoning"),
        tool_id: "toolu_vrtx_01Xq2",
        finish: "tool_calls",
        comments: true,
        error: (
            402,
            r#"{"error":{"message":"Insufficient credits","code":402}}"#,
            402,
            "billing_error",
            "Insufficient credits",
        ),
    },
    Vendor {
        preset: "deepseek",
        profile: Profile::DeepSeek,
        model: "deepseek-reasoner",
        reasoning: Some("reasoning_content"),
        tool_id: "call_00_kq3Zb9",
        finish: "tool_calls",
        comments: false,
        error: (
            402,
            r#"{"error":{"message":"Insufficient Balance","type":"unknown_error","param":null,"code":"invalid_request_error"}}"#,
            402,
            "billing_error",
            "Insufficient Balance",
        ),
    },
    Vendor {
        preset: "groq",
        profile: Profile::Strict,
        model: "qwen/qwen3-32b",
        reasoning: Some("reasoning"),
        tool_id: "call_4x9d",
        finish: "tool_calls",
        comments: false,
        error: (
            429,
            r#"{"error":{"message":"Rate limit reached for model qwen/qwen3-32b","type":"tokens","code":"rate_limit_exceeded"}}"#,
            429,
            "rate_limit_error",
            "Rate limit reached",
        ),
    },
    Vendor {
        preset: "mistral",
        profile: Profile::Strict,
        model: "magistral-medium-latest",
        reasoning: Some("reasoning_content"),
        tool_id: "D681PevKs",
        finish: "tool_calls",
        comments: false,
        error: (
            422,
            r#"{"object":"error","message":"Input should be a valid string","type":"invalid_request_error","param":null,"code":null}"#,
            400,
            "invalid_request_error",
            "Input should be a valid string",
        ),
    },
    Vendor {
        preset: "xai",
        profile: Profile::Strict,
        model: "grok-3-mini",
        reasoning: Some("reasoning_content"),
        tool_id: "call_37104922",
        finish: "tool_calls",
        comments: false,
        error: (
            400,
            r#"{"code":"Client specified an invalid argument","error":"Model grok-9 does not exist"}"#,
            400,
            "invalid_request_error",
            "Model grok-9 does not exist",
        ),
    },
    Vendor {
        preset: "gemini",
        profile: Profile::Gemini,
        model: "gemini-2.5-flash",
        reasoning: Some("reasoning_content"),
        tool_id: "function-call-1234567",
        // Gemini ends tool calls with "stop".
        finish: "stop",
        comments: false,
        error: (
            400,
            r#"{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT"}}"#,
            400,
            "invalid_request_error",
            "Request contains an invalid argument.",
        ),
    },
    Vendor {
        preset: "ollama",
        profile: Profile::Strict,
        model: "qwen3:8b",
        reasoning: Some("reasoning"),
        tool_id: "call_ollama_0",
        // Ollama may end tool calls with "stop".
        finish: "stop",
        comments: false,
        error: (
            404,
            r#"{"error":{"message":"model \"qwen3:8b\" not found, try pulling it first","type":"api_error","param":null,"code":null}}"#,
            404,
            "not_found_error",
            "try pulling it first",
        ),
    },
    Vendor {
        preset: "lmstudio",
        profile: Profile::Strict,
        model: "qwen3-8b",
        reasoning: Some("reasoning_content"),
        tool_id: "365174485",
        finish: "tool_calls",
        comments: false,
        error: (
            400,
            r#"{"error":"No models loaded. Please load a model."}"#,
            400,
            "invalid_request_error",
            "No models loaded",
        ),
    },
    Vendor {
        preset: "vllm",
        profile: Profile::Strict,
        model: "Qwen/Qwen3-32B",
        reasoning: Some("reasoning_content"),
        tool_id: "functions.get_weather:0",
        finish: "tool_calls",
        comments: false,
        error: (
            400,
            r#"{"object":"error","message":"This model's maximum context length is 32768 tokens.","type":"BadRequestError","param":null,"code":400}"#,
            400,
            "invalid_request_error",
            "maximum context length is 32768",
        ),
    },
];

fn vendor(preset: &str) -> &'static Vendor {
    VENDORS.iter().find(|v| v.preset == preset).unwrap()
}

/// A one-provider config: the preset, pointed at `url`, routed to `model`.
fn config(preset: &str, url: &str, model: &str, extra: &str) -> std::path::PathBuf {
    write_config(&format!(
        "retries = 0\n[[providers]]\nname = \"p\"\npreset = \"{preset}\"\nbase_url = \"{url}\"\n\
         api_key = \"{TEST_KEY}\"\n{extra}\n[router]\ndefault = \"p,{model}\"\n"
    ))
}

/// Per driver: a mock playing `v` and a proxy with `extra` provider lines.
fn with_vendor(v: &Vendor, extra: &str, model: &str, mut f: impl FnMut(&Mock, &Proxy)) {
    for_each_driver(|d| {
        let mock = Mock::start_profile(Some(TEST_KEY), v.profile);
        let cfg = config(v.preset, &mock.url(), model, extra);
        let proxy = ProxyCmd::new(d).arg("--config").arg(cfg.to_str().unwrap()).start();
        f(&mock, &proxy);
        proxy.finish();
        drop(mock);
    });
}

fn weather_tool() -> Value {
    json!({
        "name": "get_weather",
        "description": "Current weather of a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    })
}

fn turn1(thinking: bool) -> Value {
    let mut r = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "stream": true,
        "tools": [weather_tool()],
        "messages": [{"role": "user", "content": "Weather in Paris?"}]
    });
    if thinking {
        r["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    }
    r
}

/// Streams `body` and returns the accumulated message and the route header.
fn stream(proxy: &Proxy, body: &Value) -> (Accumulated, String) {
    let mut c = proxy.stream(body);
    let (head, mut events) = c.start_stream();
    assert_eq!(head.status(), 200, "{:?}", String::from_utf8_lossy(&head.raw));
    let route = head.header("x-ccproxy-route").unwrap_or("").to_string();
    (accumulate(&events.rest()), route)
}

fn comment() -> Part {
    Part::bytes(b": OPENROUTER PROCESSING\n\n")
}

fn reasoning_part(field: &str, t: &str) -> Part {
    data_part(&chunk(json!({ field: t }), None))
}

/// Turn 1 in `v`'s shape: (thinking), a tool call whose arguments arrive
/// in three fragments, the vendor's finish reason, usage.
fn tool_call_stream(v: &Vendor) -> Vec<Part> {
    let mut parts = vec![];
    if v.comments {
        parts.push(comment());
    }
    parts.push(role());
    if let Some(field) = v.reasoning {
        parts.push(reasoning_part(field, "The user wants "));
        parts.push(reasoning_part(field, "the weather."));
    }
    if v.comments {
        parts.push(comment());
    }
    parts.push(tool_start(0, v.tool_id, "get_weather", "{\"ci"));
    parts.push(tool_args(0, "ty\": \"Pa"));
    parts.push(tool_args(0, "ris\"}"));
    parts.push(finish(v.finish));
    parts.push(usage(40, 12, 0));
    parts.push(done());
    parts
}

fn round_trip(v: &Vendor) {
    with_vendor(v, "", v.model, |mock, proxy| {
        let thinking = v.reasoning.is_some();
        mock.push(Reply::sse(tool_call_stream(v)));
        let (acc, route) = stream(proxy, &turn1(thinking));
        assert_eq!(route, format!("p,{} (default)", v.model));
        assert!(acc.error.is_none(), "{}: {:?}", v.preset, acc.error);
        assert_eq!(acc.stop_reason.as_deref(), Some("tool_use"), "{}", v.preset);
        let blocks = acc.content().clone();
        let tool = blocks.last().unwrap();
        assert_eq!(tool["type"], "tool_use", "{}: {blocks:?}", v.preset);
        assert_eq!(tool["name"], "get_weather");
        assert_eq!(tool["input"], json!({"city": "Paris"}), "{}", v.preset);
        if thinking {
            assert_eq!(blocks.len(), 2, "{}: {blocks:?}", v.preset);
            assert_eq!(blocks[0]["type"], "thinking");
            assert_eq!(blocks[0]["thinking"], "The user wants the weather.");
        } else {
            assert_eq!(blocks.len(), 1, "{}: {blocks:?}", v.preset);
        }
        let sent1 = mock.only_request().body;
        assert_eq!(sent1["model"], v.model);
        assert!(sent1.get("thinking").is_none(), "{}: {sent1}", v.preset);
        match (v.preset, thinking) {
            ("openrouter", true) => {
                assert!(sent1["reasoning"]["effort"].is_string(), "OpenRouter gets `reasoning`: {sent1}")
            }
            _ => assert!(sent1.get("reasoning").is_none(), "{}: {sent1}", v.preset),
        }

        // Turn 2: the history goes back; the tool result answers the call.
        let client_id = tool["id"].as_str().unwrap().to_string();
        let mut body = turn1(thinking);
        body["messages"] = json!([
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": blocks},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": client_id, "content": "18C, sunny"}]}
        ]);
        mock.push(Reply::sse(text_stream(&["It is ", "sunny."])));
        let (acc2, _) = stream(proxy, &body);
        assert_eq!(acc2.content()[0]["text"], "It is sunny.");
        assert_eq!(acc2.stop_reason.as_deref(), Some("end_turn"));
        let sent = mock.last_body();
        let msgs = sent["messages"].as_array().unwrap();
        let (asst, result) = (&msgs[msgs.len() - 2], &msgs[msgs.len() - 1]);
        assert_eq!(asst["role"], "assistant", "{sent}");
        let call = &asst["tool_calls"][0];
        assert_eq!(call["id"], v.tool_id, "{}: the vendor's own id goes back", v.preset);
        assert_eq!(call["function"]["name"], "get_weather");
        let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"city": "Paris"}));
        assert_eq!(result["role"], "tool");
        assert_eq!(result["tool_call_id"], v.tool_id);
        assert_eq!(openai_text(&result["content"]), "18C, sunny");
        if v.preset == "deepseek" {
            assert_eq!(
                asst["reasoning_content"], "The user wants the weather.",
                "DeepSeek thinking mode needs reasoning_content on the tool-call turn: {asst}"
            );
        } else {
            assert!(asst.get("reasoning_content").is_none(), "{}: {asst}", v.preset);
        }
    });
}

fn error_status(v: &Vendor) {
    with_vendor(v, "", v.model, |mock, proxy| {
        let (up_status, up_body, status, kind, words) = v.error;
        mock.push(Reply::raw(up_status, "application/json", up_body));
        let mut c = proxy.stream(&turn1(false));
        let r = c.read_response();
        let msg = r.assert_error(status, kind);
        assert!(msg.contains(words), "{}: message {msg:?} lost the vendor's words {words:?}", v.preset);
        assert_eq!(r.header("x-ccproxy-route"), Some(format!("p,{} (default)", v.model).as_str()));
        assert_eq!(mock.request_count(), 1);
    });
}

macro_rules! preset_tests {
    ($($name:ident => $preset:literal),* $(,)?) => {
        mod round_trip {
            $( #[test] fn $name() { super::round_trip(super::vendor($preset)); } )*
        }
        mod error_status {
            $( #[test] fn $name() { super::error_status(super::vendor($preset)); } )*
        }
    };
}

preset_tests! {
    openai => "openai",
    openrouter => "openrouter",
    deepseek => "deepseek",
    groq => "groq",
    mistral => "mistral",
    xai => "xai",
    gemini => "gemini",
    ollama => "ollama",
    lmstudio => "lmstudio",
    vllm => "vllm",
}

#[test]
fn every_preset_is_covered() {
    let names: Vec<&str> = VENDORS.iter().map(|v| v.preset).collect();
    assert_eq!(
        names,
        ["openai", "openrouter", "deepseek", "groq", "mistral", "xai", "gemini", "ollama", "lmstudio", "vllm"]
    );
}

// ---- Gemini ----

fn gemini_call(id: &str, city: &str, sig: &str) -> Value {
    json!({"id": id, "type": "function", "function": {"name": "get_weather", "arguments": format!("{{\"city\":\"{city}\"}}")},
           "extra_content": {"google": {"thought_signature": sig}}})
}

#[test]
fn gemini_batched_index_less_tool_calls_and_thought_signatures_round_trip() {
    with_vendor(vendor("gemini"), "", "gemini-2.5-pro", |mock, proxy| {
        // Gemini: both calls whole in one chunk, no `index`, finish "stop".
        let calls = json!([
            gemini_call("function-call-111", "Paris", "CsQBAVSoXO+sigA/1=="),
            gemini_call("function-call-222", "Tokyo", "c2lnQg==")
        ]);
        mock.push(Reply::sse(vec![
            role(),
            data_part(&chunk(json!({"role": "assistant", "tool_calls": calls}), None)),
            finish("stop"),
            usage(30, 20, 0),
            done(),
        ]));
        let (acc, _) = stream(proxy, &turn1(false));
        assert!(acc.error.is_none(), "{:?}", acc.error);
        assert_eq!(acc.stop_reason.as_deref(), Some("tool_use"));
        let blocks = acc.content().clone();
        assert_eq!(blocks.len(), 2, "{blocks:?}");
        assert_eq!(blocks[0]["type"], "tool_use");
        assert_eq!(blocks[1]["type"], "tool_use");
        assert_eq!(blocks[0]["input"], json!({"city": "Paris"}));
        assert_eq!(blocks[1]["input"], json!({"city": "Tokyo"}));
        assert_ne!(blocks[0]["id"], blocks[1]["id"]);

        let mut body = turn1(false);
        body["messages"] = json!([
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            {"role": "assistant", "content": blocks},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": blocks[0]["id"], "content": "18C"},
                {"type": "tool_result", "tool_use_id": blocks[1]["id"], "content": "25C"}
            ]}
        ]);
        mock.push(Reply::sse(text_stream(&["Done."])));
        let (acc2, _) = stream(proxy, &body);
        assert_eq!(acc2.content()[0]["text"], "Done.");
        let sent = mock.last_body();
        let msgs = sent["messages"].as_array().unwrap();
        let asst = &msgs[1];
        let tc = asst["tool_calls"].as_array().unwrap();
        assert_eq!(tc.len(), 2, "{asst}");
        for (call, (id, sig)) in
            tc.iter().zip([("function-call-111", "CsQBAVSoXO+sigA/1=="), ("function-call-222", "c2lnQg==")])
        {
            assert_eq!(call["id"], id, "{asst}");
            assert_eq!(
                call["extra_content"]["google"]["thought_signature"], sig,
                "signature on the right call: {asst}"
            );
        }
        assert_eq!(msgs[2]["tool_call_id"], "function-call-111");
        assert_eq!(openai_text(&msgs[2]["content"]), "18C");
        assert_eq!(msgs[3]["tool_call_id"], "function-call-222");
        assert_eq!(openai_text(&msgs[3]["content"]), "25C");
    });
}

#[test]
fn gemini_tool_schemas_are_cleaned() {
    with_vendor(vendor("gemini"), "", "gemini-2.5-pro", |mock, proxy| {
        mock.push(Reply::text("ok"));
        let body = json!({
            "model": "claude-sonnet-4-5", "max_tokens": 256,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "WebFetch", "description": "fetch", "input_schema": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "url": {"type": "string", "format": "uri"},
                    "mode": {"const": "fast"},
                    "limit": {"type": "integer", "exclusiveMinimum": 0},
                    "note": {"type": ["string", "null"]},
                    "$ref": {"type": "string", "description": "a property called $ref"}
                },
                "required": ["url"]
            }}]
        });
        let r = proxy.messages(&body);
        assert_eq!(r.status, 200, "{}", r.text());
        let p = &mock.only_request().body["tools"][0]["function"]["parameters"];
        assert_eq!(p["type"], "object");
        assert_eq!(p["required"], json!(["url"]));
        assert_eq!(p["properties"]["url"]["type"], "string");
        assert!(p["properties"]["url"].get("format").is_none(), "format uri is refused by Gemini: {p}");
        assert_eq!(p["properties"]["mode"]["enum"], json!(["fast"]));
        assert_eq!(p["properties"]["note"], json!({"type": "string", "nullable": true}));
        assert_eq!(p["properties"]["$ref"]["type"], "string", "property names are not keywords: {p}");
    });
}

// ---- DeepSeek ----

#[test]
fn deepseek_non_stream_reasoning_becomes_thinking_and_goes_back() {
    with_vendor(vendor("deepseek"), "", "deepseek-reasoner", |mock, proxy| {
        mock.push(Reply::completion(
            json!({"role": "assistant", "content": null, "reasoning_content": "Need the tool.",
                   "tool_calls": [{"id": "call_0_x", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}),
            "tool_calls",
            json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}),
        ));
        let mut body = turn1(true);
        body["stream"] = json!(false);
        let r = proxy.messages(&body);
        assert_eq!(r.status, 200, "{}", r.text());
        let m = r.json();
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(m["content"][0]["type"], "thinking");
        assert_eq!(m["content"][0]["thinking"], "Need the tool.");
        assert_eq!(m["content"][1]["input"], json!({"city": "Oslo"}));
        body["messages"] = json!([
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": m["content"]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": m["content"][1]["id"], "content": "-3C"}]}
        ]);
        mock.push(Reply::text("Cold."));
        let r = proxy.messages(&body);
        assert_eq!(r.status, 200, "{}", r.text());
        let sent = mock.last_body();
        assert_eq!(sent["messages"][1]["reasoning_content"], "Need the tool.", "{sent}");
        assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], "call_0_x");
    });
}

// ---- OpenAI ----

#[test]
fn openai_reasoning_models_get_max_completion_tokens() {
    with_vendor(vendor("openai"), "", "o3-mini", |mock, proxy| {
        mock.set_handler(|_| Reply::text("ok"));
        let mut body = turn1(true);
        body["stream"] = json!(false);
        body["temperature"] = json!(1);
        let r = proxy.messages(&body);
        assert_eq!(r.status, 200, "{}", r.text());
        let sent = mock.only_request().body;
        assert_eq!(sent["max_completion_tokens"], 4096, "{sent}");
        assert!(sent.get("max_tokens").is_none(), "{sent}");
        assert!(sent["reasoning_effort"].is_string(), "thinking becomes reasoning_effort: {sent}");
        assert!(sent.get("temperature").is_none(), "o-series models refuse temperature: {sent}");
    });
    with_vendor(vendor("openai"), "", "gpt-4.1", |mock, proxy| {
        mock.push(Reply::text("ok"));
        let mut body = turn1(true);
        body["stream"] = json!(false);
        let r = proxy.messages(&body);
        assert_eq!(r.status, 200, "{}", r.text());
        let sent = mock.only_request().body;
        assert_eq!(sent["max_tokens"], 4096, "{sent}");
        assert!(sent.get("max_completion_tokens").is_none() && sent.get("reasoning_effort").is_none(), "{sent}");
    });
}

// ---- OpenRouter ----

#[test]
fn openrouter_headers_reasoning_param_and_comments() {
    let extra = "headers = { \"HTTP-Referer\" = \"https://github.com/me/app\", \"X-Title\" = \"my-app\" }";
    with_vendor(vendor("openrouter"), extra, "deepseek/deepseek-r1", |mock, proxy| {
        mock.push(Reply::sse(vec![
            comment(),
            role(),
            comment(),
            reasoning_part("reasoning", "hmm"),
            comment(),
            common::openai::text("Hello"),
            finish("stop"),
            usage(9, 3, 0),
            done(),
        ]));
        let mut body = turn1(true);
        body.as_object_mut().unwrap().remove("tools");
        let (acc, _) = stream(proxy, &body);
        assert!(acc.error.is_none(), "{:?}", acc.error);
        assert_eq!(acc.content()[0]["thinking"], "hmm");
        assert_eq!(acc.content()[1]["text"], "Hello");
        let rec = mock.only_request();
        assert_eq!(rec.header("HTTP-Referer"), Some("https://github.com/me/app"));
        assert_eq!(rec.header("X-Title"), Some("my-app"));
        assert!(rec.body["reasoning"].is_object(), "{}", rec.body);
        // Without thinking, no reasoning parameter.
        mock.push(Reply::sse(text_stream(&["plain"])));
        body.as_object_mut().unwrap().remove("thinking");
        let (acc, _) = stream(proxy, &body);
        assert_eq!(acc.content()[0]["text"], "plain");
        assert!(mock.last_body().get("reasoning").is_none());
    });
}

#[test]
fn openrouter_mid_stream_error_event_becomes_an_error() {
    with_vendor(vendor("openrouter"), "", "openai/gpt-4o", |mock, proxy| {
        let err = json!({"id": "gen-1", "object": "chat.completion.chunk", "created": 1, "model": "openai/gpt-4o",
                         "error": {"code": "server_error", "message": "Provider disconnected"},
                         "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]});
        mock.push(Reply::sse(vec![role(), common::openai::text("Half"), Part::Bytes(data(&err)), done()]));
        let (acc, _) = stream(proxy, &stream_text_request());
        let e = acc.error.as_ref().expect("an error event");
        assert!(!acc.saw_message_stop);
        assert!(e["error"]["message"].as_str().unwrap().contains("Provider disconnected"), "{e}");
    });
}

fn stream_text_request() -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

// ---- max_tokens cap ----

#[test]
fn provider_max_tokens_cap_is_applied() {
    with_vendor(vendor("deepseek"), "max_tokens = 1000", "deepseek-chat", |mock, proxy| {
        mock.set_handler(|_| Reply::text("ok"));
        for (asked, sent) in [(4096, 1000), (500, 500)] {
            let body = json!({"model": "claude-sonnet-4-5", "max_tokens": asked, "messages": [{"role": "user", "content": "hi"}]});
            let r = proxy.messages(&body);
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(mock.last_body()["max_tokens"], sent);
        }
    });
}

// ---- Anthropic pass-through ----

/// A client body with formatting a converter would not preserve.
const ANTHROPIC_BODY: &str = "{ \"max_tokens\" : 1024,\n  \"model\": \"claude-sonnet-4-5\", \"messages\":[{\"role\":\"user\",\"content\":\"caf\\u00e9 \u{1F600}\"}],\"metadata\":{\"user_id\":\"u1\"},\"thinking\":{\"type\":\"adaptive\"},\"context_management\":{\"edits\":[]} ,\"stream\":STREAM}";

fn anthropic_proxy(d: common::Driver, mock: &Mock) -> Proxy {
    let cfg = write_config(&format!(
        "retries = 0\n[[providers]]\nname = \"anth\"\nkind = \"anthropic\"\nbase_url = \"{}\"\napi_key = \"{TEST_KEY}\"\n\
         [router]\ndefault = \"anth,claude-opus-4-1\"\n",
        mock.url()
    ));
    ProxyCmd::new(d).arg("--config").arg(cfg.to_str().unwrap()).start()
}

#[test]
fn anthropic_kind_passes_requests_and_streams_through() {
    for_each_driver(|d| {
        let mock = Mock::start_profile(Some(TEST_KEY), Profile::Anthropic);
        let proxy = anthropic_proxy(d, &mock);
        // Streaming: the upstream's SSE bytes reach the client unchanged.
        let sse = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01A\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-opus-4-1\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: ping\ndata: {\"type\": \"ping\"}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Bonjour\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":3}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        );
        let (a, b) = sse.split_at(200);
        mock.push(Reply::sse(vec![Part::bytes(a), Part::bytes(b)]));
        let body = ANTHROPIC_BODY.replace("STREAM", "true");
        let mut c = proxy.client();
        c.send(&post_raw("/v1/messages", body.as_bytes()));
        let r = c.read_response();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-ccproxy-route"), Some("anth,claude-opus-4-1 (default)"));
        assert!(r.header("content-type").unwrap_or("").starts_with("text/event-stream"));
        assert_eq!(r.text(), sse, "the Anthropic stream is piped byte for byte");
        let rec = mock.only_request();
        let want = body.replace("\"model\": \"claude-sonnet-4-5\"", "\"model\": \"claude-opus-4-1\"");
        assert_eq!(String::from_utf8_lossy(&rec.raw_body), want, "only the model is replaced");
        assert_eq!(rec.path, "/v1/messages");
        assert_eq!(rec.header("x-api-key"), Some(TEST_KEY));
        assert_eq!(rec.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(rec.header("anthropic-beta"), Some("interleaved-thinking-2025-05-14"));
        assert!(rec.header("authorization").is_none());

        // Non-streaming: the JSON answer passes through as is.
        let answer = "{\"id\":\"msg_02B\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-opus-4-1\",\"content\":[{\"type\":\"text\",\"text\":\"Salut\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":9,\"output_tokens\":2,\"service_tier\":\"standard\"}}";
        mock.push(Reply::raw(200, "application/json", answer));
        let body = ANTHROPIC_BODY.replace("STREAM", "false");
        let r = proxy.send(&post_raw("/v1/messages", body.as_bytes()));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), answer);
        assert_eq!(r.header("x-ccproxy-route"), Some("anth,claude-opus-4-1 (default)"));
        let rec = mock.requests().pop().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&rec.raw_body),
            body.replace("\"model\": \"claude-sonnet-4-5\"", "\"model\": \"claude-opus-4-1\"")
        );

        // An Anthropic error answer keeps its status and type.
        mock.push(Reply::raw(
            529,
            "application/json",
            "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}",
        ));
        let r = proxy.send(&post_raw("/v1/messages", body.as_bytes()));
        let msg = r.assert_error(529, "overloaded_error");
        assert!(msg.contains("Overloaded"), "{msg}");
        proxy.finish();
    });
}
