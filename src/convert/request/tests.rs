//! Tests of the request converter: one per mapping rule, a large Claude Code
//! shaped request, error messages, truncated input and text fidelity.

use sonic_rs::{json, JsonContainerTrait, JsonValueTrait, Value};

use super::messages::TOOL_ERROR_PREFIX;
use super::*;

/// The test routing table: `claude-x` maps to `gpt-up`, anything else
/// passes through.
fn routed(client: &str) -> &str {
    if client == "claude-x" {
        "gpt-up"
    } else {
        client
    }
}

pub(super) fn quirks(reasoning: bool, pdf: bool) -> Quirks {
    Quirks {
        reasoning: if reasoning { ReasoningParam::Effort } else { ReasoningParam::None },
        pdf_file_parts: pdf,
        ..Quirks::default()
    }
}

/// Inspects, routes with the test table, converts.
pub(super) fn convert_routed(body: &[u8], quirks: &Quirks, out: &mut Vec<u8>) -> Result<RequestMeta, ProxyError> {
    let i = inspect(body)?;
    let opts = RequestOptions { model: routed(i.client_model()), quirks, max_tokens_cap: None };
    convert_inspected(&i, &opts, out)
}

fn run(body: &str, reasoning: bool, pdf: bool) -> Result<(Value, RequestMeta), ProxyError> {
    let mut out = b"prefix".to_vec();
    let meta = convert_routed(body.as_bytes(), &quirks(reasoning, pdf), &mut out)?;
    assert_eq!(&out[..6], b"prefix", "output must be appended");
    let v: Value = sonic_rs::from_slice(&out[6..])
        .unwrap_or_else(|e| panic!("invalid output JSON: {e}\n{}", String::from_utf8_lossy(&out)));
    Ok((v, meta))
}

fn conv(body: &str) -> Value {
    run(body, false, false).unwrap_or_else(|e| panic!("{e}")).0
}

fn err(body: &str) -> String {
    match run(body, false, false) {
        Ok((v, _)) => panic!("expected an error, got {v}"),
        Err(e) => {
            assert_eq!(e.status, 400);
            assert_eq!(e.kind.as_str(), "invalid_request_error");
            e.message.into_owned()
        }
    }
}

/// A request with `messages` and extra top-level fields (each with a leading comma).
fn req(messages: &str, extra: &str) -> String {
    format!(r#"{{"model":"claude-x","max_tokens":100,"messages":{messages}{extra}}}"#)
}

const HI: &str = r#"[{"role":"user","content":"hi"}]"#;

fn msgs(v: &Value) -> Vec<Value> {
    v["messages"].as_array().map(|a| a.iter().cloned().collect()).unwrap_or_default()
}

#[test]
fn minimal_request_resolves_model_and_keeps_max_tokens() {
    let (v, meta) = run(&req(HI, ""), false, false).unwrap();
    assert_eq!(v, json!({"model":"gpt-up","messages":[{"role":"user","content":"hi"}],"max_tokens":100}));
    assert_eq!(meta, RequestMeta { client_model: "claude-x".into(), stream: false, tool_names: ToolNames::default() });
    let unmapped = conv(r#"{"model":"other","max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#);
    assert_eq!(unmapped["model"], json!("other"));
}

#[test]
fn top_level_keys_in_any_order() {
    let body = r#"{"messages":[{"role":"user","content":"hi"}],"system":"sys","stream":true,"max_tokens":5,"model":"claude-x"}"#;
    let v = conv(body);
    assert_eq!(v["model"], json!("gpt-up"));
    assert_eq!(v["max_tokens"], json!(5));
    assert_eq!(msgs(&v), vec![json!({"role":"system","content":"sys"}), json!({"role":"user","content":"hi"})]);
}

#[test]
fn system_string_and_blocks_become_one_leading_message() {
    let v = conv(&req(HI, r#","system":"be brief""#));
    assert_eq!(msgs(&v)[0], json!({"role":"system","content":"be brief"}));

    let blocks = r#","system":[{"type":"text","text":"a","cache_control":{"type":"ephemeral"}},{"text":"b","type":"text"},{"type":"text","text":"c"}]"#;
    let v = conv(&req(HI, blocks));
    assert_eq!(msgs(&v), vec![json!({"role":"system","content":"a\n\nb\n\nc"}), json!({"role":"user","content":"hi"})]);

    for empty in [r#","system":"""#, r#","system":[]"#, r#","system":null"#] {
        assert_eq!(msgs(&conv(&req(HI, empty))).len(), 1, "{empty}");
    }
    assert_eq!(
        err(&req(HI, r#","system":[{"type":"image","source":{}}]"#)),
        "system.0: system content must be text blocks"
    );
    assert_eq!(err(&req(HI, r#","system":5"#)), "system: must be a string or an array");
}

#[test]
fn mid_list_system_message_stays_in_place() {
    let m = r#"[{"role":"user","content":"a"},{"role":"system","content":[{"type":"text","text":"note"}]},{"role":"assistant","content":"b"},{"role":"system","content":"s2"}]"#;
    let v = conv(&req(m, r#","system":"top""#));
    assert_eq!(
        msgs(&v),
        vec![
            json!({"role":"system","content":"top"}),
            json!({"role":"user","content":"a"}),
            json!({"role":"system","content":"note"}),
            json!({"role":"assistant","content":"b"}),
            json!({"role":"system","content":"s2"}),
        ]
    );
}

#[test]
fn system_between_tool_calls_and_results_moves_after_the_tool_messages() {
    let m = r#"[{"role":"user","content":"go"},
        {"role":"assistant","content":[{"type":"tool_use","id":"a","name":"X","input":{}}]},
        {"role":"system","content":"reminder"},
        {"role":"user","content":[{"type":"text","text":"more"},{"type":"tool_result","tool_use_id":"a","content":"ok"}]},
        {"role":"assistant","content":[{"type":"tool_use","id":"b","name":"X","input":{}}]},
        {"role":"system","content":"tail"}]"#;
    let v = conv(&req(m, ""));
    let roles: Vec<String> = msgs(&v).iter().map(|m| m["role"].as_str().unwrap().to_owned()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "system", "user", "assistant", "system"]);
    assert_eq!(msgs(&v)[3]["content"], json!("reminder"));
}

#[test]
fn user_text_blocks() {
    let one = r#"[{"role":"user","content":[{"type":"text","text":"only","cache_control":{"type":"ephemeral"}}]}]"#;
    assert_eq!(msgs(&conv(&req(one, ""))), vec![json!({"role":"user","content":"only"})]);
    let two = r#"[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]"#;
    assert_eq!(
        msgs(&conv(&req(two, ""))),
        vec![json!({"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]})]
    );
}

#[test]
fn images_base64_and_url() {
    let m = r#"[{"role":"user","content":[
        {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
        {"type":"image","source":{"url":"https://x.test/a.png","type":"url"}},
        {"type":"text","text":"what is this?"}]}]"#;
    assert_eq!(
        msgs(&conv(&req(m, ""))),
        vec![json!({"role":"user","content":[
            {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},
            {"type":"image_url","image_url":{"url":"https://x.test/a.png"}},
            {"type":"text","text":"what is this?"}]})]
    );
    let bad_src = r#"[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]"#;
    assert_eq!(err(&req(bad_src, "")), "messages.0.content.0.source.type: image source must be \"base64\" or \"url\"");
}

#[test]
fn documents_text_and_pdf() {
    let text = r#"[{"role":"user","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"doc body"}},{"type":"text","text":"sum"}]}]"#;
    assert_eq!(
        msgs(&conv(&req(text, ""))),
        vec![json!({"role":"user","content":[{"type":"text","text":"doc body"},{"type":"text","text":"sum"}]})]
    );
    let pdf = r#"[{"role":"user","content":[{"type":"text","text":"read"},{"type":"document","title":"r.pdf","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="}}]}]"#;
    let (v, _) = run(&req(pdf, ""), false, true).unwrap();
    assert_eq!(
        msgs(&v)[0]["content"][1],
        json!({"type":"file","file":{"filename":"r.pdf","file_data":"data:application/pdf;base64,JVBERi0="}})
    );
    let msg = err(&req(pdf, ""));
    assert!(msg.starts_with("messages.0.content.1: PDF documents are not supported"), "{msg}");
    let url = r#"[{"role":"user","content":[{"type":"document","source":{"type":"url","url":"https://x/a.pdf"}}]}]"#;
    assert!(err(&req(url, "")).starts_with("messages.0.content.0.source.type: "));
}

#[test]
fn assistant_text_and_tool_use_share_one_message() {
    let m = r#"[{"role":"user","content":"go"},{"role":"assistant","content":[
        {"type":"thinking","thinking":"hmm","signature":"sig"},
        {"type":"text","text":"Running it."},
        {"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"ls -la","n":[1,2]}},
        {"type":"tool_use","id":"toolu_2","name":"Read","input":{}}]}]"#;
    let v = conv(&req(m, ""));
    let a = &msgs(&v)[1];
    assert_eq!(a["role"], json!("assistant"));
    assert_eq!(a["content"], json!("Running it."));
    let calls = a["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["id"], json!("toolu_1"));
    assert_eq!(calls[0]["type"], json!("function"));
    assert_eq!(calls[0]["function"]["name"], json!("Bash"));
    let args: Value = sonic_rs::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"command":"ls -la","n":[1,2]}));
    assert_eq!(calls[1]["function"]["arguments"], json!("{}"));
    assert_eq!(a.as_object().unwrap().len(), 3, "only role, content, tool_calls: {a}");

    let only_tool = r#"[{"role":"user","content":"go"},{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"X","input":{"a":"b"}}]}]"#;
    let a = &msgs(&conv(&req(only_tool, "")))[1];
    assert!(a["content"].is_null(), "{a}");
    assert_eq!(a["tool_calls"][0]["function"]["arguments"], json!(r#"{"a":"b"}"#));
}

#[test]
fn tool_results_become_tool_messages_first_in_order() {
    let m = r#"[{"role":"user","content":"go"},
        {"role":"assistant","content":[{"type":"tool_use","id":"a","name":"X","input":{}},{"type":"tool_use","id":"b","name":"X","input":{}},{"type":"tool_use","id":"c","name":"X","input":{}}]},
        {"role":"user","content":[
            {"type":"text","text":"after"},
            {"type":"tool_result","tool_use_id":"a","content":"out a","is_error":false,"cache_control":{"type":"ephemeral"}},
            {"type":"tool_result","tool_use_id":"b","content":[{"type":"text","text":"l1"},{"type":"text","text":"l2"}]},
            {"type":"tool_result","tool_use_id":"c"}]}]"#;
    let v = conv(&req(m, ""));
    let ms = msgs(&v);
    assert_eq!(ms.len(), 6);
    assert_eq!(ms[2], json!({"role":"tool","tool_call_id":"a","content":"out a"}));
    assert_eq!(ms[3], json!({"role":"tool","tool_call_id":"b","content":"l1\n\nl2"}));
    assert_eq!(ms[4], json!({"role":"tool","tool_call_id":"c","content":""}));
    assert_eq!(ms[5], json!({"role":"user","content":"after"}));
    assert_tools_follow_calls(&v);
}

#[test]
fn tool_error_stays_visible() {
    let m = r#"[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"X","input":{}}]},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"a","content":"exit 1","is_error":true}]}]"#;
    let ms = msgs(&conv(&req(m, "")));
    assert_eq!(ms[1]["content"], json!(format!("{TOOL_ERROR_PREFIX}exit 1")));
    assert_eq!(ms[1]["content"], json!("[tool error] exit 1"));
}

#[test]
fn tool_result_images_move_to_a_following_user_message() {
    let m = r#"[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"Shot","input":{}}]},
        {"role":"user","content":[
            {"type":"tool_result","tool_use_id":"a","content":[{"type":"text","text":"see"},{"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"AAAA"}}]},
            {"type":"text","text":"and?"}]}]"#;
    let ms = msgs(&conv(&req(m, "")));
    assert_eq!(ms.len(), 3);
    assert_eq!(ms[1], json!({"role":"tool","tool_call_id":"a","content":"see"}));
    assert_eq!(
        ms[2],
        json!({"role":"user","content":[
            {"type":"image_url","image_url":{"url":"data:image/jpeg;base64,AAAA"}},
            {"type":"text","text":"and?"}]})
    );
}

#[test]
fn thinking_blocks_are_dropped() {
    let m = r#"[{"role":"user","content":"q"},
        {"role":"assistant","content":[{"type":"redacted_thinking","data":"xx"},{"type":"thinking","thinking":"t","signature":"s"}]},
        {"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s"},{"type":"text","text":"ans"}]}]"#;
    let ms = msgs(&conv(&req(m, "")));
    assert_eq!(ms, vec![json!({"role":"user","content":"q"}), json!({"role":"assistant","content":"ans"})]);
}

#[test]
fn unknown_block_types_and_bad_shapes_name_the_field() {
    let m = r#"[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"},{"role":"user","content":[{"type":"foo"}]}]"#;
    assert_eq!(err(&req(m, "")), "messages.3.content.0: unknown content block type \"foo\"");
    let cases = [
        (r#"[{"role":"bot","content":"x"}]"#, "messages.0.role: must be \"user\", \"assistant\" or \"system\""),
        (r#"[{"content":"x"}]"#, "messages.0.role: required"),
        (r#"[{"role":"user"}]"#, "messages.0.content: required"),
        (r#"[{"role":"user","content":5}]"#, "messages.0.content: must be a string or an array"),
        (r#"[5]"#, "messages.0: must be an object"),
        (r#"[{"role":"user","content":[{"text":"x"}]}]"#, "messages.0.content.0.type: required"),
        (r#"[{"role":"user","content":[{"type":"text"}]}]"#, "messages.0.content.0.text: required string"),
        (
            r#"[{"role":"user","content":[{"type":"tool_use","id":"a","name":"b","input":{}}]}]"#,
            "messages.0.content.0: tool_use blocks are only allowed in assistant messages",
        ),
        (
            r#"[{"role":"user","content":[{"type":"tool_result","content":"x"}]}]"#,
            "messages.0.content.0.tool_use_id: required string",
        ),
        (
            r#"[{"role":"user","content":[{"type":"tool_result","tool_use_id":"a","content":[{"type":"bar"}]}]}]"#,
            "messages.0.content.0.content.0: unknown content block type \"bar\"",
        ),
        (
            r#"[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"b","input":[1]}]}]"#,
            "messages.0.content.0.input: must be an object",
        ),
        (
            r#"[{"role":"assistant","content":[{"type":"tool_use","name":"b"}]}]"#,
            "messages.0.content.0.id: required string",
        ),
        ("{}", "messages: must be an array"),
        ("[]", "messages: must contain at least one message"),
    ];
    for (m, want) in cases {
        assert_eq!(err(&req(m, "")), want, "{m}");
    }
    // Turns that convert to nothing (thinking is not sent upstream, empty
    // turns are dropped) must not leave an empty or system-only request.
    let nothing_left = "messages: nothing for the model to answer: every user and assistant turn is empty or \
                        holds only thinking blocks (which are not sent upstream), or there are only system messages";
    let cases = [
        r#"[{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s"}]}]"#,
        // Found by fuzzing: the last of duplicate keys wins, as in serde.
        r#"[{"role":"user","role":"assistant","content":[{"type":"redacted_thinking","data":"d"}]}]"#,
        r#"[{"role":"user","content":[]}]"#,
        r#"[{"role":"system","content":"be brief"},{"role":"assistant","content":[]}]"#,
    ];
    for m in cases {
        assert_eq!(err(&req(m, "")), nothing_left, "{m}");
    }
}

#[test]
fn required_fields_and_types() {
    assert_eq!(err(r#"{"max_tokens":1,"messages":[]}"#), "model: required");
    assert_eq!(err(r#"{"model":"m","messages":[]}"#), "max_tokens: required");
    assert_eq!(err(r#"{"model":"m","max_tokens":1}"#), "messages: required");
    assert_eq!(err(r#"{"model":5,"max_tokens":1,"messages":[]}"#), "model: must be a non-empty string");
    assert_eq!(err(&req(HI, "").replace("100", "\"100\"")), "max_tokens: must be a positive integer");
    assert_eq!(err(&req(HI, "").replace("100", "0")), "max_tokens: must be a positive integer");
    assert_eq!(err(&req(HI, r#","stream":"yes""#)), "stream: must be a boolean");
    assert_eq!(err(&req(HI, r#","temperature":"hot""#)), "temperature: must be a number");
}

#[test]
fn invalid_json_is_a_400_naming_the_body() {
    for body in ["", "[]", "nope", "{\"model\":", "{\"model\":\"m\",}", "{\"a\":1} trailing", "{} {}"] {
        let m = err(body);
        assert!(m.starts_with("body is not valid JSON: "), "{body:?} -> {m}");
        assert!(!m.contains('\n'), "{m}");
    }
    assert_eq!(err("  {}  "), "model: required");
    assert_eq!(err(""), "body is not valid JSON: Expected this character to be '{' at line 1 column 1");
    assert!(run(&format!(" {} \n", req(HI, "")), false, false).is_ok());
}

#[test]
fn stop_sequences_first_four_only_when_non_empty() {
    let v = conv(&req(HI, r#","stop_sequences":["a","b"]"#));
    assert_eq!(v["stop"], json!(["a", "b"]));
    let v = conv(&req(HI, r#","stop_sequences":["1","2","3","4","5","6"]"#));
    assert_eq!(v["stop"], json!(["1", "2", "3", "4"]));
    for none in [r#","stop_sequences":[]"#, r#","stop_sequences":null"#] {
        assert!(conv(&req(HI, none)).get("stop").is_none(), "{none}");
    }
    assert_eq!(err(&req(HI, r#","stop_sequences":["a",1]"#)), "stop_sequences.1: must be a string");
}

#[test]
fn sampling_fields_kept_top_k_dropped() {
    let v = conv(&req(HI, r#","temperature":0.7,"top_p":0.95,"top_k":40"#));
    assert_eq!(v["temperature"], json!(0.7));
    assert_eq!(v["top_p"], json!(0.95));
    assert!(v.get("top_k").is_none());
}

#[test]
fn metadata_user_id_only_when_short() {
    let v = conv(&req(HI, r#","metadata":{"user_id":"user-123"}"#));
    assert_eq!(v["user"], json!("user-123"));
    let long = "x".repeat(MAX_USER_LEN + 1);
    let v = conv(&req(HI, &format!(r#","metadata":{{"user_id":"{long}"}}"#)));
    assert!(v.get("user").is_none());
    let exact = "é".repeat(MAX_USER_LEN);
    let v = conv(&req(HI, &format!(r#","metadata":{{"user_id":"{exact}"}}"#)));
    assert_eq!(v["user"].as_str(), Some(exact.as_str()));
    assert!(conv(&req(HI, r#","metadata":{}"#)).get("user").is_none());
}

const TOOLS: &str =
    r#","tools":[{"name":"Bash","description":"run","input_schema":{"type":"object","properties":{}}}]"#;

#[test]
fn tool_choice_table() {
    let cases = [
        (r#"{"type":"auto"}"#, json!("auto")),
        (r#"{"type":"any"}"#, json!("required")),
        (r#"{"type":"none"}"#, json!("none")),
        (r#"{"type":"tool","name":"Bash"}"#, json!({"type":"function","function":{"name":"Bash"}})),
    ];
    for (choice, want) in cases {
        let v = conv(&req(HI, &format!(r#"{TOOLS},"tool_choice":{choice}"#)));
        assert_eq!(v["tool_choice"], want, "{choice}");
        assert!(v.get("parallel_tool_calls").is_none());
    }
    let v = conv(&req(HI, &format!(r#"{TOOLS},"tool_choice":{{"type":"auto","disable_parallel_tool_use":true}}"#)));
    assert_eq!(v["parallel_tool_calls"], json!(false));
    let v = conv(&req(HI, r#","tool_choice":{"type":"any","disable_parallel_tool_use":true}"#));
    assert!(v.get("tool_choice").is_none() && v.get("parallel_tool_calls").is_none(), "{v}");
    assert_eq!(
        err(&req(HI, r#","tool_choice":{"type":"tool"}"#)),
        "tool_choice.name: required string when type is \"tool\""
    );
    assert!(err(&req(HI, r#","tool_choice":{"type":"some"}"#)).starts_with("tool_choice.type: "));
}

#[test]
fn tools_are_stripped_and_server_tools_skipped() {
    let schema =
        r#"{ "type" : "object","properties":{"q":{"type":"string","description":"é \"x\""}},"required":["q"] }"#;
    let tools = format!(
        r#","tools":[{{"name":"Search","description":"find","input_schema":{schema},"cache_control":{{"type":"ephemeral"}},"defer_loading":true,"strict":true,"type":"custom"}},
        {{"type":"web_search_20250305","name":"web_search","max_uses":5}},
        {{"input_schema":{{"type":"object"}},"name":"NoDesc"}}]"#
    );
    let mut out = Vec::new();
    convert_routed(req(HI, &tools).as_bytes(), &quirks(false, false), &mut out).unwrap();
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.contains(&format!("\"parameters\":{schema}")), "schema not raw: {text}");
    let v: Value = sonic_rs::from_slice(&out).unwrap();
    assert_eq!(
        v["tools"],
        json!([
            {"type":"function","function":{"name":"Search","description":"find","parameters":sonic_rs::from_str::<Value>(schema).unwrap()}},
            {"type":"function","function":{"name":"NoDesc","parameters":{"type":"object"}}}
        ])
    );
    let only_server = r#","tools":[{"type":"web_search_20250305","name":"web_search"}],"tool_choice":{"type":"auto"}"#;
    let v = conv(&req(HI, only_server));
    assert!(v.get("tools").is_none() && v.get("tool_choice").is_none(), "{v}");
    assert_eq!(err(&req(HI, r#","tools":[{"name":"X"}]"#)), "tools.0.input_schema: required object");
}

#[test]
fn thinking_maps_to_reasoning_effort_only_when_accepted() {
    let effort = |extra: &str| run(&req(HI, extra), true, false).unwrap().0.get("reasoning_effort").cloned();
    let t = |b: u64| format!(r#","thinking":{{"type":"enabled","budget_tokens":{b}}}"#);
    assert_eq!(effort(&t(1024)), Some(json!("low")));
    assert_eq!(effort(&t(4000)), Some(json!("low")));
    assert_eq!(effort(&t(10000)), Some(json!("medium")));
    assert_eq!(effort(&t(31999)), Some(json!("high")));
    assert_eq!(effort(r#","thinking":{"type":"adaptive"}"#), Some(json!("high")));
    assert_eq!(effort(r#","output_config":{"effort":"low"},"thinking":{"type":"adaptive"}"#), Some(json!("low")));
    assert_eq!(effort(r#","thinking":{"type":"adaptive"},"output_config":{"effort":"max"}"#), Some(json!("high")));
    assert_eq!(effort(r#","thinking":{"type":"disabled"}"#), None);
    assert!(conv(&req(HI, &t(10000))).get("reasoning_effort").is_none());
    assert_eq!(err(&req(HI, r#","thinking":{"type":"enabled"}"#)).split(':').next(), Some("thinking.budget_tokens"));
    assert!(err(&req(HI, r#","thinking":{"type":"deep"}"#)).starts_with("thinking.type: "));
}

#[test]
fn stream_adds_include_usage() {
    let (v, meta) = run(&req(HI, r#","stream":true"#), false, false).unwrap();
    assert!(meta.stream);
    assert_eq!(v["stream"], json!(true));
    assert_eq!(v["stream_options"], json!({"include_usage":true}));
    let (v, meta) = run(&req(HI, r#","stream":false"#), false, false).unwrap();
    assert!(!meta.stream && v.get("stream").is_none() && v.get("stream_options").is_none());
}

const ALLOWED_TOP: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "stop",
    "user",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
];

fn assert_only_openai_keys(v: &Value) {
    for (k, _) in v.as_object().unwrap().iter() {
        assert!(ALLOWED_TOP.contains(&k), "forwarded unknown key {k:?}");
    }
}

/// OpenAI's ordering rule: an assistant message with tool_calls is followed
/// immediately by one tool message per id.
fn assert_tools_follow_calls(v: &Value) {
    let ms = msgs(v);
    let mut i = 0;
    while i < ms.len() {
        let m = &ms[i];
        if m["role"] == json!("tool") {
            panic!("tool message {i} does not follow tool_calls");
        }
        i += 1;
        if let Some(calls) = m.get("tool_calls").and_then(|c| c.as_array()) {
            for c in calls.iter() {
                let t = ms.get(i).unwrap_or_else(|| panic!("missing tool message for {c}"));
                assert_eq!(t["role"], json!("tool"));
                assert_eq!(t["tool_call_id"], c["id"]);
                i += 1;
            }
        }
    }
}

/// A synthetic request shaped like Claude Code's first turns.
pub(super) fn claude_code_body() -> String {
    let mut tools = String::new();
    for i in 0..24 {
        tools.push_str(&format!(
            r#"{{"name":"Tool{i}","description":"Does thing {i}.\nUsage:\n - \"quoted\" \\ path","input_schema":{{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","additionalProperties":false,"properties":{{"command":{{"type":"string","description":"The command"}},"opts":{{"type":"object","properties":{{"depth":{{"type":"integer","minimum":0}},"tags":{{"type":"array","items":{{"type":"string","enum":["a","b"]}}}}}}}}}},"required":["command"]}}}},"#
        ));
    }
    tools.push_str(r#"{"type":"web_search_20250305","name":"web_search","max_uses":8}"#);
    let long = "Lorem ipsum \\\"dolor\\\" sit amet, ünïcødé 🎉 \\u00e9 \\n".repeat(200);
    format!(
        r#"{{"model":"claude-x","messages":[
  {{"role":"user","content":[{{"type":"text","text":"<system-reminder>{long}</system-reminder>"}},{{"type":"text","text":"list files","cache_control":{{"type":"ephemeral"}}}}]}},
  {{"role":"assistant","content":[{{"type":"thinking","thinking":"plan","signature":"EqQBCkgI"}},{{"type":"text","text":"Listing."}},{{"type":"tool_use","id":"toolu_01A","name":"Tool0","input":{{"command":"ls -la \"dir\"","opts":{{"depth":2}}}}}},{{"type":"tool_use","id":"toolu_01B","name":"Tool1","input":{{"command":"pwd"}}}}]}},
  {{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_01A","content":"a.txt\nb.txt","is_error":false,"cache_control":{{"type":"ephemeral"}}}},{{"type":"tool_result","tool_use_id":"toolu_01B","content":[{{"type":"text","text":"denied"}}],"is_error":true}}]}},
  {{"role":"system","content":"<system-reminder>mid-list note</system-reminder>"}},
  {{"role":"assistant","content":[{{"type":"redacted_thinking","data":"abc"}},{{"type":"text","text":"Done: {long}"}}]}},
  {{"role":"user","content":"thanks"}}
],"system":[{{"type":"text","text":"You are Claude Code, Anthropic's official CLI for Claude.","cache_control":{{"type":"ephemeral"}}}},{{"type":"text","text":"{long}"}},{{"type":"text","text":"env: linux","cache_control":{{"type":"ephemeral"}}}}],
"tools":[{tools}],
"metadata":{{"user_id":"{{\"device_id\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"session_id\":\"5f1c\"}}"}},
"max_tokens":64000,"thinking":{{"type":"adaptive"}},
"context_management":{{"edits":[{{"type":"clear_thinking_20251015","keep":"all"}}]}},
"output_config":{{"effort":"medium"}},"service_tier":"auto","container":null,"cache_control":{{"type":"ephemeral"}},
"top_k":5,"stream":true}}"#
    )
}

#[test]
fn claude_code_shaped_request() {
    let body = claude_code_body();
    assert!(body.len() > 20_000, "{}", body.len());
    let src: Value = sonic_rs::from_str(&body).expect("test body must be valid JSON");
    let mut out = Vec::new();
    let meta = convert_routed(body.as_bytes(), &quirks(true, false), &mut out).unwrap();
    assert_eq!(meta, RequestMeta { client_model: "claude-x".into(), stream: true, tool_names: ToolNames::default() });
    let v: Value = sonic_rs::from_slice(&out).unwrap();
    assert_only_openai_keys(&v);
    assert_tools_follow_calls(&v);
    assert_eq!(v["reasoning_effort"], json!("medium"));
    assert!(v.get("user").is_none(), "long user_id must be dropped");
    let text = std::str::from_utf8(&out).unwrap();
    for gone in [
        "cache_control",
        "context_management",
        "output_config",
        "service_tier",
        "container",
        "top_k",
        "signature",
        "thinking",
        "is_error",
        "tool_use_id",
        "input_schema",
        "web_search",
        "max_uses",
        "metadata",
        "\"system\":[",
    ] {
        assert!(!text.contains(gone), "output still mentions {gone:?}");
    }

    // Raw schemas are copied byte for byte.
    for i in 0..24 {
        let raw = sonic_rs::get(body.as_bytes(), &sonic_rs::pointer!["tools", i, "input_schema"]).unwrap();
        assert!(text.contains(&format!("\"parameters\":{}", raw.as_raw_str())), "tool {i}");
    }
    assert_eq!(v["tools"].as_array().unwrap().len(), 24);

    let ms = msgs(&v);
    let roles: Vec<&str> = ms.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "tool", "system", "assistant", "user"]);
    let sys_want = format!(
        "You are Claude Code, Anthropic's official CLI for Claude.\n\n{}\n\nenv: linux",
        src["system"][1]["text"].as_str().unwrap()
    );
    assert_eq!(ms[0]["content"].as_str(), Some(sys_want.as_str()));
    assert_eq!(ms[1]["content"][0]["text"], src["messages"][0]["content"][0]["text"]);
    assert_eq!(ms[2]["content"], json!("Listing."));
    let args: Value = sonic_rs::from_str(ms[2]["tool_calls"][0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, src["messages"][1]["content"][2]["input"]);
    assert_eq!(ms[3]["content"], json!("a.txt\nb.txt"));
    assert_eq!(ms[4]["content"], json!("[tool error] denied"));
    assert_eq!(
        ms[6]["content"].as_str().unwrap().len(),
        src["messages"][4]["content"][1]["text"].as_str().unwrap().len()
    );
}

#[test]
fn every_prefix_of_a_valid_request_is_handled_without_panic() {
    let body = req(
        r#"[{"role":"user","content":[{"type":"text","text":"h\u00e9 🎉"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}}]},{"role":"assistant","content":[{"type":"text","text":"x"},{"type":"tool_use","id":"t1","name":"B","input":{"c":"ls"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"ok"},{"type":"image","source":{"type":"url","url":"http://i"}}],"is_error":true}]}]"#,
        &format!(
            r#","system":[{{"type":"text","text":"s"}}]{TOOLS},"tool_choice":{{"type":"any"}},"stop_sequences":["x"],"thinking":{{"type":"enabled","budget_tokens":5000}},"stream":true"#
        ),
    );
    assert!(run(&body, true, true).is_ok());
    let bytes = body.as_bytes();
    let q = quirks(true, true);
    let opts = RequestOptions { model: "m", quirks: &q, max_tokens_cap: None };
    let mut out = Vec::new();
    for n in 0..bytes.len() {
        out.clear();
        let res = convert_request(&bytes[..n], &opts, &mut out);
        assert!(res.is_err(), "prefix of {n} bytes accepted: {}", String::from_utf8_lossy(&out));
    }
    // Invalid UTF-8 inside a string is refused, not passed on.
    let mut broken = body.clone().into_bytes();
    let at = body.find("h\\u00e9").unwrap();
    broken[at] = 0xff;
    assert!(convert_request(&broken, &opts, &mut out).is_err());
}

#[test]
fn unicode_and_escapes_survive() {
    let text = r#"quote \" backslash \\ nl \n tab \t unicode \u00e9\ud83d\ude00 raw é 🎉 ctl \u0001 slash \/"#;
    let m = format!(
        r#"[{{"role":"user","content":[{{"type":"text","text":"{text}"}},{{"type":"text","text":"2"}}]}},{{"role":"assistant","content":[{{"type":"text","text":"{text}"}},{{"type":"tool_use","id":"t","name":"X","input":{{"k":"{text}"}}}}]}},{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"t","content":"{text}","is_error":true}}]}}]"#
    );
    let v = conv(&req(&m, &format!(r#","system":[{{"type":"text","text":"{text}"}}]"#)));
    let want: String = sonic_rs::from_str(&format!("\"{text}\"")).unwrap();
    assert!(want.contains("😀") && want.contains('"') && want.contains('\u{1}'));
    let ms = msgs(&v);
    assert_eq!(ms[0]["content"].as_str(), Some(want.as_str()));
    assert_eq!(ms[1]["content"][0]["text"].as_str(), Some(want.as_str()));
    assert_eq!(ms[2]["content"].as_str(), Some(want.as_str()));
    let args: Value = sonic_rs::from_str(ms[2]["tool_calls"][0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["k"].as_str(), Some(want.as_str()));
    assert_eq!(ms[3]["content"].as_str(), Some(format!("[tool error] {want}").as_str()));
}
