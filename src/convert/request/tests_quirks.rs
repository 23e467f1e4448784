//! Tests of the request side of the provider quirks and of the two-phase
//! API: route facts, reasoning parameters, OpenAI reasoning models, the
//! max_tokens cap, DeepSeek's reasoning_content, Gemini schemas and thought
//! signatures, tool ids and long tool names.

use sonic_rs::{json, JsonContainerTrait, JsonValueTrait, Value};

use super::*;
use crate::convert::tool_ids;

fn convert(body: &str, model: &str, quirks: &Quirks, cap: Option<u32>) -> (Value, RequestMeta) {
    let i = inspect(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let opts = RequestOptions { model, quirks, max_tokens_cap: cap };
    let mut out = Vec::new();
    let meta = convert_inspected(&i, &opts, &mut out).unwrap_or_else(|e| panic!("{e}"));
    let v = sonic_rs::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
    (v, meta)
}

fn req(extra: &str) -> String {
    format!(r#"{{"model":"claude-x","max_tokens":32000,"messages":[{{"role":"user","content":"hi"}}]{extra}}}"#)
}

fn with(reasoning: ReasoningParam) -> Quirks {
    Quirks { reasoning, ..Quirks::default() }
}

const THINK: &str = r#","thinking":{"type":"enabled","budget_tokens":10000}"#;

#[test]
fn inspect_exposes_route_facts() {
    let body = req(r#","thinking":{"type":"enabled","budget_tokens":2000},"stream":true,
        "tools":[{"name":"Bash","input_schema":{"type":"object"}},{"type":"web_search_20250305","name":"web_search"}]"#);
    let i = inspect(body.as_bytes()).unwrap();
    assert_eq!(
        i.facts(),
        RouteFacts { model: "claude-x", thinking_enabled: true, web_search: true, body_len: body.len() }
    );
    assert!(i.stream());
    assert_eq!(i.client_model(), "claude-x");

    // adaptive is not "think"; a custom tool merely named web_search is not a server tool.
    let body = req(
        r#","thinking":{"type":"adaptive"},"tools":[{"name":"web_search","description":"web_search","input_schema":{"type":"object"}}]"#,
    );
    let i = inspect(body.as_bytes()).unwrap();
    assert!(!i.facts().thinking_enabled && !i.facts().web_search);

    // An escaped model name is unescaped.
    let i = inspect(br#"{"model":"claude-\u0078","max_tokens":1,"messages":[]}"#).unwrap();
    assert_eq!(i.client_model(), "claude-x");

    for (body, msg) in [
        (r#"{"max_tokens":1,"messages":[]}"#, "model: required"),
        (r#"{"model":"m","messages":[]}"#, "max_tokens: required"),
        (r#"{"model":"m","max_tokens":1}"#, "messages: required"),
        (r#"{"model":"m","max_tokens":1,"messages":[],"stream":"yes"}"#, "stream: must be a boolean"),
    ] {
        assert_eq!(inspect(body.as_bytes()).err().map(|e| e.message.into_owned()), Some(msg.to_owned()), "{body}");
    }
}

#[test]
fn the_routed_model_is_sent() {
    let (v, meta) = convert(&req(""), "deepseek-chat", &Quirks::default(), None);
    assert_eq!(v["model"], json!("deepseek-chat"));
    assert_eq!(meta.client_model, "claude-x");
}

#[test]
fn reasoning_parameter_per_provider() {
    let (v, _) = convert(&req(THINK), "m", &with(ReasoningParam::Effort), None);
    assert_eq!(v["reasoning_effort"], json!("medium"));
    assert!(v.get("reasoning").is_none());

    let (v, _) = convert(&req(THINK), "m", &with(ReasoningParam::OpenRouter), None);
    assert_eq!(v["reasoning"], json!({"effort":"medium"}));
    assert!(v.get("reasoning_effort").is_none());

    let (v, _) = convert(&req(THINK), "m", &with(ReasoningParam::None), None);
    assert!(v.get("reasoning").is_none() && v.get("reasoning_effort").is_none());

    let (v, _) = convert(&req(r#","thinking":{"type":"disabled"}"#), "m", &with(ReasoningParam::OpenRouter), None);
    assert!(v.get("reasoning").is_none());
}

#[test]
fn openai_reasoning_models() {
    let q = Quirks { openai_reasoning_models: true, ..Quirks::default() };
    let body = req(&format!(r#"{THINK},"temperature":1,"top_p":0.9"#));
    let (v, _) = convert(&body, "o3", &q, None);
    assert_eq!(v["max_completion_tokens"], json!(32000));
    assert!(v.get("max_tokens").is_none());
    assert_eq!(v["reasoning_effort"], json!("medium"));
    assert!(v.get("temperature").is_none() && v.get("top_p").is_none(), "{v}");

    let (v, _) = convert(&body, "gpt-4o", &q, None);
    assert_eq!(v["max_tokens"], json!(32000));
    assert!(v.get("max_completion_tokens").is_none() && v.get("reasoning_effort").is_none());
    assert_eq!(v["temperature"], json!(1));

    // Dropped sampling fields are still validated.
    let hot = req(r#","temperature":"hot""#);
    let i = inspect(hot.as_bytes()).unwrap();
    let opts = RequestOptions { model: "o3", quirks: &q, max_tokens_cap: None };
    assert_eq!(convert_inspected(&i, &opts, &mut Vec::new()).unwrap_err().message, "temperature: must be a number");
}

#[test]
fn max_tokens_cap_takes_the_smaller() {
    assert_eq!(convert(&req(""), "m", &Quirks::default(), Some(8192)).0["max_tokens"], json!(8192));
    assert_eq!(convert(&req(""), "m", &Quirks::default(), Some(64000)).0["max_tokens"], json!(32000));
    assert_eq!(convert(&req(""), "m", &Quirks::default(), Some(0)).0["max_tokens"], json!(32000));
    let q = Quirks { openai_reasoning_models: true, ..Quirks::default() };
    assert_eq!(convert(&req(""), "gpt-5", &q, Some(100)).0["max_completion_tokens"], json!(100));
}

fn history(messages: &str, extra: &str) -> String {
    format!(r#"{{"model":"claude-x","max_tokens":100,"messages":{messages}{extra}}}"#)
}

const DEEPSEEK_HISTORY: &str = r#"[
  {"role":"user","content":"list files"},
  {"role":"assistant","content":[
    {"type":"thinking","thinking":"I should run ls.","signature":""},
    {"type":"redacted_thinking","data":"xyz"},
    {"type":"thinking","thinking":"Then \"read\" it.","signature":""},
    {"type":"text","text":"Running ls."},
    {"type":"tool_use","id":"call_0","name":"Bash","input":{"command":"ls"}}]},
  {"role":"user","content":[{"type":"tool_result","tool_use_id":"call_0","content":"a.txt"}]},
  {"role":"assistant","content":[{"type":"tool_use","id":"call_1","name":"Bash","input":{"command":"cat a.txt"}}]},
  {"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1","content":"hello"}]},
  {"role":"assistant","content":[{"type":"thinking","thinking":"Done.","signature":""},{"type":"text","text":"It says hello."}]},
  {"role":"user","content":"thanks"}]"#;

#[test]
fn deepseek_thinking_and_tool_history_carries_reasoning_content() {
    let q = Quirks { deepseek_reasoning_passback: true, reasoning: ReasoningParam::Effort, ..Quirks::default() };
    let (v, _) = convert(&history(DEEPSEEK_HISTORY, THINK), "deepseek-reasoner", &q, None);
    let ms = v["messages"].as_array().unwrap();
    assert_eq!(ms[1]["role"], json!("assistant"));
    assert_eq!(ms[1]["reasoning_content"], json!("I should run ls.\n\nThen \"read\" it."));
    assert_eq!(ms[1]["content"], json!("Running ls."));
    assert_eq!(ms[1]["tool_calls"][0]["id"], json!("call_0"));
    // A tool-call turn without thinking still carries the field (DeepSeek
    // refuses tool-call turns without it in thinking mode).
    assert_eq!(ms[3]["reasoning_content"], json!(""));
    // A final answer turn without tool calls does not.
    assert_eq!(ms[5]["content"], json!("It says hello."));
    assert!(ms[5].get("reasoning_content").is_none());

    let (v, _) = convert(&history(DEEPSEEK_HISTORY, THINK), "gpt-4o", &Quirks::default(), None);
    assert!(!v.to_string().contains("reasoning_content"), "only with the quirk");
}

#[test]
fn gemini_cleans_schemas_and_others_copy_them_raw() {
    let tools = r#","tools":[{"name":"Fetch","input_schema":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","additionalProperties":false,"properties":{"url":{"type":"string","format":"uri"},"n":{"type":"integer","exclusiveMinimum":0}},"required":["url"]}}]"#;
    let gemini = Quirks { gemini: true, ..Quirks::default() };
    let (v, _) = convert(&req(tools), "gemini-2.5-pro", &gemini, None);
    assert_eq!(
        v["tools"][0]["function"]["parameters"],
        json!({"type":"object","properties":{"url":{"type":"string"},"n":{"type":"integer"}},"required":["url"]})
    );
    let (v, _) = convert(&req(tools), "m", &Quirks::default(), None);
    assert_eq!(v["tools"][0]["function"]["parameters"]["additionalProperties"], json!(false));
}

fn encoded(id: &str, sig: Option<&str>) -> String {
    let mut s = String::new();
    tool_ids::encode(id, sig, &mut s);
    s
}

#[test]
fn encoded_tool_ids_are_decoded_and_signatures_go_back_to_gemini_only() {
    let a = encoded("function-call-1", Some("SIG/A+=="));
    let b = encoded("functions.Read:1", None);
    let messages = format!(
        r#"[{{"role":"user","content":"go"}},
        {{"role":"assistant","content":[{{"type":"tool_use","id":"{a}","name":"Read","input":{{"p":"a"}}}},
          {{"type":"tool_use","id":"{b}","name":"Read","input":{{"p":"b"}}}},
          {{"type":"tool_use","id":"toolu_plain","name":"Read","input":{{}}}}]}},
        {{"role":"user","content":[{{"type":"tool_result","tool_use_id":"{a}","content":"A"}},
          {{"type":"tool_result","tool_use_id":"{b}","content":"B"}},
          {{"type":"tool_result","tool_use_id":"toolu_plain","content":"C"}}]}}]"#
    );
    let gemini = Quirks { gemini: true, ..Quirks::default() };
    let (v, _) = convert(&history(&messages, ""), "gemini-3-pro-preview", &gemini, None);
    let ms = v["messages"].as_array().unwrap();
    let calls = ms[1]["tool_calls"].as_array().unwrap();
    assert_eq!(calls[0]["id"], json!("function-call-1"));
    assert_eq!(calls[0]["extra_content"], json!({"google":{"thought_signature":"SIG/A+=="}}));
    assert_eq!(calls[1]["id"], json!("functions.Read:1"));
    assert!(calls[1].get("extra_content").is_none());
    assert_eq!(calls[2]["id"], json!("toolu_plain"));
    let ids: Vec<&str> = ms[2..5].iter().map(|m| m["tool_call_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["function-call-1", "functions.Read:1", "toolu_plain"]);

    let (v, _) = convert(&history(&messages, ""), "gpt-4o", &Quirks::default(), None);
    assert_eq!(v["messages"][1]["tool_calls"][0]["id"], json!("function-call-1"));
    assert!(!v.to_string().contains("extra_content"), "signatures go to Gemini only");
}

#[test]
fn long_tool_names_are_shortened_everywhere() {
    let long = format!("mcp__{}__{}", "server".repeat(6), "do_something_rather_specific");
    assert!(long.len() > 64);
    let body = history(
        &format!(
            r#"[{{"role":"user","content":"go"}},
            {{"role":"assistant","content":[{{"type":"tool_use","id":"t1","name":"{long}","input":{{}}}}]}},
            {{"role":"user","content":[{{"type":"tool_result","tool_use_id":"t1","content":"ok"}}]}}]"#
        ),
        &format!(
            r#","tools":[{{"name":"{long}","input_schema":{{"type":"object"}}}},{{"name":"Bash","input_schema":{{"type":"object"}}}}],
            "tool_choice":{{"type":"tool","name":"{long}"}}"#
        ),
    );
    let (v, meta) = convert(&body, "m", &Quirks::default(), None);
    let short = v["tools"][0]["function"]["name"].as_str().unwrap().to_owned();
    assert_eq!(short.len(), 64);
    assert!(short.starts_with(&long[..55]));
    assert_eq!(v["tools"][1]["function"]["name"], json!("Bash"));
    assert_eq!(v["tool_choice"]["function"]["name"].as_str(), Some(short.as_str()));
    assert_eq!(v["messages"][1]["tool_calls"][0]["function"]["name"].as_str(), Some(short.as_str()));
    assert_eq!(meta.tool_names.original(&short), Some(long.as_str()));
    assert_eq!(meta.tool_names.original("Bash"), None);

    let (_, meta) = convert(&req(""), "m", &Quirks::default(), None);
    assert!(meta.tool_names.is_empty());
}
