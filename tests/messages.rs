//! Non-streaming `POST /v1/messages` through the real proxy: the response
//! conversion (OpenAI → Anthropic) seen by the client, and the request
//! conversion (Anthropic → OpenAI) seen by the strict mock upstream. Every
//! test runs under both drivers.

mod common;

use common::*;
use serde_json::{json, Value};

fn user_text(req: &Value, i: usize) -> String {
    openai_text(&req["messages"][i]["content"])
}

#[test]
fn text_round_trip() {
    with_proxy(|mock, proxy| {
        mock.push(Reply::completion(
            json!({"role": "assistant", "content": "Hello there"}),
            "stop",
            json!({"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25,
                   "prompt_tokens_details": {"cached_tokens": 8}}),
        ));
        let r = proxy.messages(&simple_request("hi"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.header("content-type").unwrap_or("").starts_with("application/json"));
        assert_eq!(
            r.header("content-length").map(|l| l.parse::<usize>().unwrap()),
            Some(r.body.len()),
            "JSON responses carry Content-Length"
        );
        let v = r.json();
        assert!(v["id"].as_str().unwrap().starts_with("msg_"), "{v}");
        assert_eq!(v["type"], "message");
        assert_eq!(v["role"], "assistant");
        assert_eq!(v["content"], json!([{"type": "text", "text": "Hello there"}]));
        assert_eq!(v["stop_reason"], "end_turn");
        assert!(v["stop_sequence"].is_null());
        assert!(v["model"].is_string());
        assert_eq!(v["usage"]["input_tokens"], 12, "prompt - cached");
        assert_eq!(v["usage"]["cache_read_input_tokens"], 8);
        assert_eq!(v["usage"]["output_tokens"], 5);

        let up = mock.only_request();
        assert_eq!(up.method, "POST");
        assert_eq!(up.path, "/v1/chat/completions");
        assert_eq!(up.body["model"], "claude-test-1", "no route configured: the client's model is kept");
        assert_eq!(up.body["max_tokens"], 256);
        assert_eq!(up.body["messages"].as_array().unwrap().len(), 1);
        assert_eq!(up.body["messages"][0]["role"], "user");
        assert_eq!(user_text(&up.body, 0), "hi");
        assert_ne!(up.body["stream"], true);
        assert!(up.body.get("stream_options").is_none());
    });
}

#[test]
fn beta_query_string_and_unique_ids() {
    with_proxy(|mock, proxy| {
        mock.push(Reply::text("a"));
        mock.push(Reply::text("b"));
        let r1 = proxy.send(&post_json("/v1/messages?beta=true", &simple_request("x")));
        let r2 = proxy.send(&post_json("/v1/messages?beta=true", &simple_request("y")));
        assert_eq!(r1.status, 200, "{}", r1.text());
        assert_eq!(r2.status, 200, "{}", r2.text());
        assert_eq!(r1.json()["content"][0]["text"], "a");
        assert_eq!(r2.json()["content"][0]["text"], "b");
        assert_ne!(r1.json()["id"], r2.json()["id"], "message ids must be unique");
        assert_eq!(mock.request_count(), 2);
    });
}

#[test]
fn tool_calls_reasoning_and_content_order() {
    with_proxy(|mock, proxy| {
        // Gemini/Ollama style: tool calls with finish_reason "stop".
        mock.push(Reply::completion(
            json!({
                "role": "assistant",
                "content": "Checking.",
                "reasoning_content": "I should list files.",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "Bash", "arguments": "{\"command\":\"ls\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "Read", "arguments": "{\"path\":\"/tmp/a b\"}"}}
                ]
            }),
            "stop",
            json!({"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}),
        ));
        // Invalid JSON arguments must not crash: a valid object comes out.
        mock.push(Reply::completion(
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_3", "type": "function", "function": {"name": "Bash", "arguments": "{\"command\": \"ls"}}]}),
            "tool_calls",
            json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}),
        ));
        let r = proxy.messages(&simple_request("list"));
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let c = v["content"].as_array().unwrap();
        let types: Vec<&str> = c.iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["thinking", "text", "tool_use", "tool_use"], "{v}");
        assert_eq!(c[0]["thinking"], "I should list files.");
        assert_eq!(c[1]["text"], "Checking.");
        assert_eq!(c[2]["id"], "call_1");
        assert_eq!(c[2]["name"], "Bash");
        assert_eq!(c[2]["input"], json!({"command": "ls"}));
        assert_eq!(c[3]["id"], "call_2");
        assert_eq!(c[3]["input"], json!({"path": "/tmp/a b"}));
        assert_eq!(v["stop_reason"], "tool_use", "tool calls were produced: tool_use whatever finish_reason says");

        let r = proxy.messages(&simple_request("again"));
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let c = v["content"].as_array().unwrap();
        assert_eq!(c.len(), 1, "{v}");
        assert_eq!(c[0]["type"], "tool_use");
        assert!(c[0]["input"].is_object(), "invalid arguments still give an object: {v}");
        assert_eq!(v["stop_reason"], "tool_use");
    });
}

#[test]
fn finish_reason_table() {
    with_proxy(|mock, proxy| {
        let cases = [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal")];
        for (finish, _) in cases {
            mock.push(Reply::completion(
                json!({"role": "assistant", "content": "x"}),
                finish,
                json!({"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}),
            ));
        }
        for (finish, stop) in cases {
            let r = proxy.messages(&simple_request("x"));
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json()["stop_reason"], stop, "finish_reason {finish}");
        }
        for finish in ["tool_calls", "function_call"] {
            mock.push(Reply::completion(
                json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
                finish,
                json!({"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}),
            ));
            let r = proxy.messages(&simple_request("x"));
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json()["stop_reason"], "tool_use", "finish_reason {finish}");
        }
    });
}

#[test]
fn system_string_array_and_mid_list_system() {
    with_proxy(|mock, proxy| {
        mock.push(Reply::text("ok"));
        mock.push(Reply::text("ok"));
        let mut req = simple_request("hi");
        req["system"] = json!("You are terse.");
        assert_eq!(proxy.messages(&req).status, 200);
        let up = mock.last_body();
        assert_eq!(up["messages"][0]["role"], "system");
        assert_eq!(openai_text(&up["messages"][0]["content"]), "You are terse.");
        assert_eq!(up["messages"][1]["role"], "user");

        let req = json!({
            "model": "claude-test-1",
            "max_tokens": 100,
            "system": [
                {"type": "text", "text": "Block one."},
                {"type": "text", "text": "Block two.", "cache_control": {"type": "ephemeral"}}
            ],
            "messages": [
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "answer"},
                {"role": "system", "content": "Mid-list reminder."},
                {"role": "user", "content": [{"type": "text", "text": "second", "cache_control": {"type": "ephemeral"}}]}
            ]
        });
        let r = proxy.messages(&req);
        assert_eq!(r.status, 200, "{}", r.text());
        let up = mock.last_body();
        let roles: Vec<&str> = up["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "system", "user"], "{up}");
        let sys = openai_text(&up["messages"][0]["content"]);
        assert!(sys.contains("Block one.") && sys.contains("Block two."), "{sys:?}");
        assert!(sys.find("Block one.") < sys.find("Block two."));
        assert_eq!(openai_text(&up["messages"][2]["content"]), "answer");
        assert_eq!(openai_text(&up["messages"][3]["content"]), "Mid-list reminder.");
        assert_eq!(user_text(&up, 4), "second");
    });
}

#[test]
fn images_base64_and_url() {
    with_proxy(|mock, proxy| {
        mock.push(Reply::text("a cat"));
        let req = json!({
            "model": "claude-test-1",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
            ]}]
        });
        let r = proxy.messages(&req);
        assert_eq!(r.status, 200, "{}", r.text());
        let up = mock.last_body();
        let parts = up["messages"][0]["content"].as_array().expect("content parts").clone();
        assert_eq!(parts.len(), 3, "{up}");
        assert_eq!(parts[0], json!({"type": "text", "text": "what is this?"}));
        assert_eq!(parts[1]["type"], "image_url");
        assert_eq!(parts[1]["image_url"]["url"], "data:image/png;base64,iVBORw0KGgo=");
        assert_eq!(parts[2]["image_url"]["url"], "https://example.com/cat.jpg");
    });
}

#[test]
fn documents_text_and_pdf() {
    with_proxy(|mock, proxy| {
        mock.push(Reply::text("read it"));
        let req = json!({
            "model": "claude-test-1",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "DOC-BODY-123"}},
                {"type": "text", "text": "summarise"}
            ]}]
        });
        let r = proxy.messages(&req);
        assert_eq!(r.status, 200, "{}", r.text());
        let text = openai_text(&mock.last_body()["messages"][0]["content"]);
        assert!(text.contains("DOC-BODY-123") && text.contains("summarise"), "{text:?}");

        // A base64 PDF becomes a `file` part, or is refused with a clear 400
        // without calling the upstream (README says which).
        mock.set_handler(|_| Reply::text("pdf ok"));
        let before = mock.request_count();
        let req = json!({
            "model": "claude-test-1",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}},
                {"type": "text", "text": "summarise"}
            ]}]
        });
        let r = proxy.messages(&req);
        if r.status == 200 {
            let up = mock.last_body();
            let parts = up["messages"][0]["content"].as_array().expect("parts").clone();
            let file = parts.iter().find(|p| p["type"] == "file").unwrap_or_else(|| panic!("no file part: {up}"));
            let data = file["file"]["file_data"].as_str().unwrap();
            assert_eq!(data, "data:application/pdf;base64,JVBERi0xLjQK");
        } else {
            let msg = r.assert_error(400, "invalid_request_error");
            assert!(msg.to_lowercase().contains("pdf"), "the refusal names the problem: {msg}");
            assert_eq!(mock.request_count(), before, "a refused request never reaches the upstream");
        }
    });
}

#[test]
fn tool_use_and_tool_result_history() {
    with_proxy(|mock, proxy| {
        mock.push(Reply::text("done"));
        let req = json!({
            "model": "claude-test-1",
            "max_tokens": 100,
            "tools": [{"name": "Bash", "description": "run", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}},
                      {"name": "Screenshot", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "look around"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_01A", "name": "Bash", "input": {"command": "ls -la"}},
                    {"type": "tool_use", "id": "toolu_01B", "name": "Bash", "input": {"command": "false"}},
                    {"type": "tool_use", "id": "toolu_01C", "name": "Screenshot", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "file.txt", "cache_control": {"type": "ephemeral"}},
                    {"type": "tool_result", "tool_use_id": "toolu_01B", "is_error": true,
                     "content": [{"type": "text", "text": "exit status 1"}]},
                    {"type": "tool_result", "tool_use_id": "toolu_01C", "content": [
                        {"type": "text", "text": "screen captured"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}}
                    ]},
                    {"type": "text", "text": "continue please"}
                ]}
            ]
        });
        let r = proxy.messages(&req);
        assert_eq!(r.status, 200, "{}", r.text());
        let up = mock.last_body();
        let msgs = up["messages"].as_array().unwrap();
        let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles[..5], ["user", "assistant", "tool", "tool", "tool"], "{up}");
        let a = &msgs[1];
        assert_eq!(openai_text(&a["content"]), "Let me look.", "text stays, thinking dropped: {a}");
        let calls = a["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[0]["id"], "toolu_01A");
        assert_eq!(calls[0]["type"], "function");
        assert_eq!(calls[0]["function"]["name"], "Bash");
        let args: Value = serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"command": "ls -la"}));
        assert_eq!(
            calls[2]["function"]["arguments"].as_str().map(|s| serde_json::from_str::<Value>(s).unwrap()),
            Some(json!({}))
        );

        assert_eq!(msgs[2]["tool_call_id"], "toolu_01A");
        assert_eq!(msgs[2]["content"], "file.txt", "string tool results stay strings");
        assert_eq!(msgs[3]["tool_call_id"], "toolu_01B");
        let err_text = openai_text(&msgs[3]["content"]);
        assert!(err_text.contains("exit status 1"), "{err_text:?}");
        assert!(err_text.to_lowercase().contains("error"), "is_error must stay visible: {err_text:?}");
        assert_eq!(msgs[4]["tool_call_id"], "toolu_01C");
        assert!(openai_text(&msgs[4]["content"]).contains("screen captured"));
        // The image moves to a user message after the tool messages; the
        // user's own text follows.
        let rest: Vec<&Value> = msgs[5..].iter().collect();
        assert!(rest.iter().all(|m| m["role"] == "user"), "{up}");
        let all_parts: Vec<Value> = rest
            .iter()
            .flat_map(|m| match &m["content"] {
                Value::Array(p) => p.clone(),
                s => vec![json!({"type": "text", "text": s})],
            })
            .collect();
        let img = all_parts.iter().position(|p| p["type"] == "image_url").unwrap_or_else(|| panic!("image lost: {up}"));
        assert_eq!(all_parts[img]["image_url"]["url"], "data:image/jpeg;base64,/9j/4AAQ");
        let txt = all_parts.iter().position(|p| p["text"] == "continue please").expect("user text kept");
        assert!(img < txt, "tool results (and their images) come before the rest of the user turn: {up}");
        assert!(!up.to_string().contains("\"hmm\""), "thinking must be dropped: {up}");
    });
}

#[test]
fn thinking_and_redacted_thinking_dropped() {
    with_proxy(|mock, proxy| {
        mock.push(Reply::text("ok"));
        let req = json!({
            "model": "claude-test-1",
            "max_tokens": 2000,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "secret chain", "signature": "abc"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "visible answer"}
                ]},
                {"role": "user", "content": "q2"}
            ]
        });
        let r = proxy.messages(&req);
        assert_eq!(r.status, 200, "{}", r.text());
        let up = mock.last_body();
        assert_eq!(openai_text(&up["messages"][1]["content"]), "visible answer");
        let s = up.to_string();
        assert!(!s.contains("secret chain") && !s.contains("opaque"), "{s}");
        assert!(up.get("reasoning_effort").is_none(), "the generic target takes no reasoning_effort: {up}");
    });
}

#[test]
fn tools_stripped_and_tool_choice_table() {
    with_proxy(|mock, proxy| {
        let schema = json!({"type": "object", "properties": {"q": {"type": "string", "description": "query"}},
                            "required": ["q"], "additionalProperties": false});
        let tools = json!([
            {"name": "search", "description": "Search things", "input_schema": schema, "cache_control": {"type": "ephemeral"}},
            {"type": "custom", "name": "fetch", "input_schema": {"type": "object"}, "defer_loading": true}
        ]);
        let cases: Vec<(Value, Value, Option<bool>)> = vec![
            (json!({"type": "auto"}), json!("auto"), None),
            (json!({"type": "any"}), json!("required"), None),
            (
                json!({"type": "tool", "name": "search"}),
                json!({"type": "function", "function": {"name": "search"}}),
                None,
            ),
            (json!({"type": "none"}), json!("none"), None),
            (json!({"type": "auto", "disable_parallel_tool_use": true}), json!("auto"), Some(false)),
        ];
        for _ in &cases {
            mock.push(Reply::text("ok"));
        }
        for (anthropic, openai, parallel) in &cases {
            let mut req = simple_request("find");
            req["tools"] = tools.clone();
            req["tool_choice"] = anthropic.clone();
            let r = proxy.messages(&req);
            assert_eq!(r.status, 200, "tool_choice {anthropic}: {}", r.text());
            let up = mock.last_body();
            assert_eq!(&up["tool_choice"], openai, "tool_choice {anthropic}");
            match parallel {
                Some(p) => assert_eq!(up["parallel_tool_calls"], *p, "{up}"),
                None => assert_ne!(up["parallel_tool_calls"], false, "{up}"),
            }
            let t = up["tools"].as_array().unwrap();
            assert_eq!(t.len(), 2, "{up}");
            assert_eq!(
                t[0],
                json!({"type": "function", "function": {"name": "search", "description": "Search things", "parameters": schema}})
            );
            assert_eq!(t[1]["type"], "function");
            assert_eq!(t[1]["function"]["name"], "fetch");
            assert_eq!(t[1]["function"]["parameters"], json!({"type": "object"}));
        }
    });
}

#[test]
fn sampling_stop_user_and_unknown_fields() {
    with_proxy(|mock, proxy| {
        mock.push(Reply::text("ok"));
        mock.push(Reply::text("ok"));
        mock.push(Reply::text("ok"));
        let mut req = simple_request("go");
        let extra = json!({
            "stop_sequences": ["END", "STOP"],
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "metadata": {"user_id": "user-42"},
            "thinking": {"type": "adaptive"},
            "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
            "output_config": {"effort": "high"},
            "service_tier": "auto",
            "container": "cntr_1",
            "cache_control": {"type": "ephemeral"},
            "mcp_servers": [],
            "some_future_field": {"x": 1}
        });
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        let r = proxy.messages(&req);
        assert_eq!(r.status, 200, "{}", r.text());
        let up = mock.last_body();
        assert_eq!(up["stop"], json!(["END", "STOP"]));
        assert_eq!(up["temperature"], 0.5);
        assert_eq!(up["top_p"], 0.9);
        assert_eq!(up["user"], "user-42");
        for k in [
            "top_k",
            "metadata",
            "thinking",
            "context_management",
            "output_config",
            "service_tier",
            "container",
            "cache_control",
            "mcp_servers",
            "some_future_field",
            "stop_sequences",
            "system",
        ] {
            assert!(up.get(k).is_none(), "{k} must not be forwarded: {up}");
        }

        // Claude Code's user_id is a long JSON string: over OpenAI's limit,
        // so it must not be sent as is.
        let mut req = simple_request("go");
        let long_id =
            json!({"device_id": "d".repeat(64), "session_id": "5f0c7d3e-1111-2222-3333-444455556666"}).to_string();
        req["metadata"] = json!({"user_id": long_id});
        // More stop sequences than OpenAI takes.
        req["stop_sequences"] = json!(["a", "b", "c", "d", "e", "f"]);
        let r = proxy.messages(&req);
        assert_eq!(r.status, 200, "{}", r.text());
        let up = mock.last_body();
        assert!(up["user"].as_str().is_none_or(|u| u.chars().count() <= 64), "{up}");
        let stops = up["stop"].as_array().map(Vec::len).unwrap_or(0);
        assert!((1..=4).contains(&stops), "at most 4 stop sequences reach OpenAI: {up}");

        let mut req = simple_request("go");
        req["stop_sequences"] = json!([]);
        req["metadata"] = json!({});
        let r = proxy.messages(&req);
        assert_eq!(r.status, 200, "{}", r.text());
    });
}

#[test]
fn forced_model_flag() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = ProxyCmd::new(d).upstream(&mock).arg("--model").arg("forced-upstream-model").start();
        mock.push(Reply::text("ok"));
        let r = proxy.messages(&simple_request("hi"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(mock.last_body()["model"], "forced-upstream-model");
        proxy.finish();
    });
}

#[test]
fn upstream_key_from_env() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = ProxyCmd::new(d).arg("--upstream").arg(&mock.url()).env("CCPROXY_UPSTREAM_KEY", TEST_KEY).start();
        mock.push(Reply::text("ok"));
        let r = proxy.messages(&simple_request("hi"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(mock.only_request().header("authorization"), Some(format!("Bearer {TEST_KEY}").as_str()));
        proxy.finish();
    });
}

#[test]
fn upstream_json_with_any_framing() {
    with_proxy(|mock, proxy| {
        for framing in [Framing::Chunked, Framing::Close, Framing::ContentLength] {
            mock.push(Reply::text("framed \"quoted\"\nline ✓ 🎉").framing(framing));
            let r = proxy.messages(&simple_request("x"));
            assert_eq!(r.status, 200, "{framing:?}: {}", r.text());
            assert_eq!(r.json()["content"][0]["text"], "framed \"quoted\"\nline ✓ 🎉", "{framing:?}");
        }
    });
}

#[test]
fn upstream_connections_are_kept_alive() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = ProxyCmd::new(d).upstream(&mock).workers(1).start();
        for i in 0..4 {
            mock.push(Reply::text(&format!("r{i}")));
            let r = proxy.messages(&simple_request("x"));
            assert_eq!(r.json()["content"][0]["text"], format!("r{i}"));
        }
        mock.push(Reply::sse(openai::text_stream(&["s"])));
        let mut c = proxy.stream(&stream_request("x"));
        assert_eq!(c.read_response().status, 200);
        mock.push(Reply::text("after stream"));
        assert_eq!(proxy.messages(&simple_request("x")).json()["content"][0]["text"], "after stream");
        assert_eq!(mock.connections(), 1, "one worker, sequential requests: one pooled upstream connection");
        proxy.finish();
    });
}

#[test]
fn model_map_and_default_model_from_config() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let cfg = write_config(&format!(
            "[upstream]\nbase_url = \"{}\"\napi_key = \"{TEST_KEY}\"\nmodel = \"default-up\"\n\n\
             [model_map]\n\"claude-haiku-4-5\" = \"small-up\"\n\"claude-opus-4-8\" = \"big-up\"\n",
            mock.url()
        ));
        let proxy = ProxyCmd::new(d).arg("--config").arg(cfg.to_str().unwrap()).start();
        for (client, upstream) in
            [("claude-haiku-4-5", "small-up"), ("claude-opus-4-8", "big-up"), ("other", "default-up")]
        {
            mock.push(Reply::text("ok"));
            let mut req = simple_request("x");
            req["model"] = json!(client);
            assert_eq!(proxy.messages(&req).status, 200);
            assert_eq!(mock.last_body()["model"], upstream, "client model {client}");
        }
        let v = proxy.get("/v1/models").json();
        let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert!(ids.contains(&"claude-haiku-4-5") && ids.contains(&"claude-opus-4-8"), "{v}");
        proxy.finish();
    });
}

/// A JavaScript client that cuts a string inside a surrogate pair (a
/// truncated emoji in a long tool result) sends a lone `\ud83d` escape.
/// Valid JSON grammar, but not Unicode text: strict upstreams refuse the
/// request. ccproxy sends U+FFFD in its place, keeps escaped pairs intact,
/// and the rest of the text unchanged. (This mock parses with serde_json,
/// which refuses lone surrogates, as such upstreams do.)
#[test]
fn lone_surrogate_escapes_reach_the_upstream_as_replacement_characters() {
    with_proxy(|mock, proxy| {
        mock.push(Reply::text("ok"));
        let body = r#"{"model":"claude-test-1","max_tokens":50,"messages":[
            {"role":"user","content":"run it"},
            {"role":"assistant","content":[{"type":"tool_use","id":"toolu_01","name":"Bash","input":{"command":"cat log"}}]},
            {"role":"user","content":[
                {"type":"tool_result","tool_use_id":"toolu_01","content":"build ok \ud83d"},
                {"type":"text","text":"and \ude00 then \ud83d\ude00 done"}]}]}"#;
        let r = proxy.send(&post_raw("/v1/messages", body.as_bytes()));
        assert_eq!(r.status, 200, "{}", r.text());
        let up = mock.last_body();
        let msgs = up["messages"].as_array().unwrap();
        let tool = msgs.iter().find(|m| m["role"] == "tool").expect("tool message");
        assert_eq!(openai_text(&tool["content"]), "build ok \u{FFFD}", "{up}");
        let user = msgs.last().unwrap();
        assert_eq!(openai_text(&user["content"]), "and \u{FFFD} then 😀 done", "{up}");
    });
}
