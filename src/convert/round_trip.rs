//! Round trips across the three converters (tests only): what the response
//! and stream converters hand the client must come back through the request
//! converter as the upstream first sent it.
//!
//! Receives upstream bodies/streams shaped like Gemini's, Kimi's and any
//! provider's with long tool names; feeds the client-side result into the
//! next turn's request and checks the upstream-side ids, signatures and
//! names.

use sonic_rs::{json, JsonContainerTrait, JsonValueTrait, Value};

use super::request::{convert_inspected, inspect, RequestMeta, RequestOptions};
use super::response::convert_response;
use super::stream::StreamConverter;
use super::{tool_ids, Quirks, ToolNames};

/// A client-side tool_use block: (id, name, input).
type ToolUse = (String, String, Value);

fn gemini() -> Quirks {
    Quirks { gemini: true, ..Quirks::default() }
}

fn respond(body: &str, names: &ToolNames) -> (Value, Vec<ToolUse>) {
    let mut out = Vec::new();
    convert_response(body.as_bytes(), "claude-x", "msg_1", names, &mut out).unwrap();
    let v: Value = sonic_rs::from_slice(&out).unwrap();
    let uses = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == json!("tool_use"))
        .map(|b| (b["id"].as_str().unwrap().to_owned(), b["name"].as_str().unwrap().to_owned(), b["input"].clone()))
        .collect();
    (v, uses)
}

/// Runs a stream split at every offset; every split must give the same
/// tool_use blocks and stop reason, which are returned.
fn stream(body: &str, names: &ToolNames) -> (String, Vec<ToolUse>) {
    let mut first: Option<(String, Vec<ToolUse>)> = None;
    for at in 0..=body.len() {
        let (a, b) = body.as_bytes().split_at(at);
        let mut conv = StreamConverter::new("claude-x", "msg_1").with_tool_names(names.clone());
        let mut out = Vec::new();
        conv.push(a, false, &mut out);
        conv.push(b, true, &mut out);
        let got = stream_result(&out);
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(&got, f, "split at {at}"),
        }
    }
    first.unwrap()
}

fn stream_result(out: &[u8]) -> (String, Vec<ToolUse>) {
    let text = std::str::from_utf8(out).unwrap();
    let (mut uses, mut args, mut reason): (Vec<ToolUse>, Vec<String>, String) = Default::default();
    for ev in text.split_terminator("\n\n") {
        let data = ev.split_once("\ndata: ").unwrap().1;
        let v: Value = sonic_rs::from_str(data).unwrap();
        match v["type"].as_str().unwrap() {
            "content_block_start" if v["content_block"]["type"] == json!("tool_use") => {
                let b = &v["content_block"];
                uses.push((b["id"].as_str().unwrap().into(), b["name"].as_str().unwrap().into(), Value::new()));
                args.push(String::new());
            }
            "content_block_delta" if v["delta"]["type"] == json!("input_json_delta") => {
                args.last_mut().unwrap().push_str(v["delta"]["partial_json"].as_str().unwrap());
            }
            "message_delta" => reason = v["delta"]["stop_reason"].as_str().unwrap().to_owned(),
            "error" => panic!("stream failed: {v}"),
            _ => {}
        }
    }
    for (u, a) in uses.iter_mut().zip(args) {
        u.2 = sonic_rs::from_str(&a).unwrap_or_else(|e| panic!("invalid tool input {a:?}: {e}"));
    }
    (reason, uses)
}

/// The next turn: the assistant's tool_use blocks, then their results.
fn next_turn(uses: &[ToolUse], tools: &str, model: &str, quirks: &Quirks) -> (Value, RequestMeta) {
    let blocks: Vec<Value> =
        uses.iter().map(|(id, name, input)| json!({"type":"tool_use","id":id,"name":name,"input":input})).collect();
    let results: Vec<Value> =
        uses.iter().map(|(id, ..)| json!({"type":"tool_result","tool_use_id":id,"content":"done"})).collect();
    let body = format!(
        r#"{{"model":"claude-x","max_tokens":100,"tools":{tools},"messages":[{{"role":"user","content":"go"}},
        {{"role":"assistant","content":{}}},{{"role":"user","content":{}}}]}}"#,
        sonic_rs::to_string(&blocks).unwrap(),
        sonic_rs::to_string(&results).unwrap()
    );
    let i = inspect(body.as_bytes()).unwrap();
    let mut out = Vec::new();
    let meta = convert_inspected(&i, &RequestOptions { model, quirks, max_tokens_cap: None }, &mut out).unwrap();
    (sonic_rs::from_slice(&out).unwrap(), meta)
}

const READ_TOOL: &str = r#"[{"name":"Read","input_schema":{"type":"object","properties":{"path":{"type":"string"}}}}]"#;

fn assert_valid_ids(uses: &[ToolUse]) {
    for (id, ..) in uses {
        assert!(tool_ids::is_valid_id(id), "{id}");
    }
}

/// Checks the upstream side of the next turn: ids and signatures in order.
fn assert_calls(v: &Value, want: &[(&str, Option<&str>)]) {
    let ms = v["messages"].as_array().unwrap();
    let calls = ms[1]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), want.len());
    for (k, (call, (id, sig))) in calls.iter().zip(want).enumerate() {
        assert_eq!(call["id"].as_str(), Some(*id), "call {k}");
        let got = call.pointer(&sonic_rs::pointer!["extra_content", "google", "thought_signature"]);
        assert_eq!(got.and_then(|s| s.as_str()), *sig, "signature of call {k}");
        assert_eq!(ms[2 + k]["tool_call_id"].as_str(), Some(*id), "tool message {k}");
    }
}

#[test]
fn gemini_batched_calls_round_trip_non_streaming() {
    let body = r#"{"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":null,
        "tool_calls":[
          {"id":"function-call-1","type":"function","function":{"name":"Read","arguments":"{\"path\":\"a.txt\"}"},
           "extra_content":{"google":{"thought_signature":"CsQBAVSoXO+sigA/1=="}}},
          {"id":"function-call-2","type":"function","function":{"name":"Read","arguments":"{\"path\":\"b.txt\"}"}},
          {"id":"function-call-3","type":"function","function":{"name":"Read","arguments":"{\"path\":\"c.txt\"}"},
           "extra_content":{"google":{"thought_signature":"sigC"}}}]}}]}"#;
    let (v, uses) = respond(body, &ToolNames::default());
    assert_eq!(v["stop_reason"], json!("tool_use"));
    assert_eq!(uses.len(), 3);
    assert_valid_ids(&uses);
    assert_eq!(uses[1].0, "function-call-2", "plain valid ids pass through");
    let inputs: Vec<&Value> = uses.iter().map(|u| &u.2).collect();
    assert_eq!(inputs, [&json!({"path":"a.txt"}), &json!({"path":"b.txt"}), &json!({"path":"c.txt"})]);

    let (next, _) = next_turn(&uses, READ_TOOL, "gemini-3-pro-preview", &gemini());
    assert_calls(
        &next,
        &[
            ("function-call-1", Some("CsQBAVSoXO+sigA/1==")),
            ("function-call-2", None),
            ("function-call-3", Some("sigC")),
        ],
    );
}

#[test]
fn gemini_batched_index_less_stream_round_trip() {
    let body = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[",
        "{\"id\":\"fc-1\",\"type\":\"function\",\"function\":{\"name\":\"Read\",\"arguments\":\"{\\\"path\\\":\\\"a.txt\\\"}\"},",
        "\"extra_content\":{\"google\":{\"thought_signature\":\"c2lnQQ==\"}}},",
        "{\"id\":\"fc-2\",\"type\":\"function\",\"function\":{\"name\":\"Read\",\"arguments\":\"{\\\"path\\\":\\\"b.txt\\\"}\"},",
        "\"extra_content\":{\"google\":{\"thought_signature\":\"c2lnQg==\"}}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],",
        "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}}\n\n",
        "data: [DONE]\n\n",
    );
    let (reason, uses) = stream(body, &ToolNames::default());
    assert_eq!(reason, "tool_use");
    assert_eq!(uses.len(), 2, "one block per batched call");
    assert_valid_ids(&uses);
    assert_eq!((&uses[0].2, &uses[1].2), (&json!({"path":"a.txt"}), &json!({"path":"b.txt"})));

    let (next, _) = next_turn(&uses, READ_TOOL, "gemini-2.5-flash", &gemini());
    assert_calls(&next, &[("fc-1", Some("c2lnQQ==")), ("fc-2", Some("c2lnQg=="))]);

    // The same history sent to another provider (a fallback) keeps the
    // original ids but no Gemini field.
    let (other, _) = next_turn(&uses, READ_TOOL, "gpt-4o", &Quirks::default());
    assert_calls(&other, &[("fc-1", None), ("fc-2", None)]);
}

#[test]
fn kimi_ids_round_trip_through_the_stream() {
    let body = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"functions.Read:0\",",
        "\"type\":\"function\",\"function\":{\"name\":\"Read\",\"arguments\":\"{\\\"path\\\":\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"x\\\"}\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let (reason, uses) = stream(body, &ToolNames::default());
    assert_eq!(reason, "tool_use");
    assert_valid_ids(&uses);
    let (next, _) = next_turn(&uses, READ_TOOL, "kimi-k2", &Quirks::default());
    assert_calls(&next, &[("functions.Read:0", None)]);
}

#[test]
fn long_tool_names_round_trip_through_response_and_stream() {
    let long = format!("mcp__{}__fetch_everything_there_is", "a_rather_long_server_name".repeat(2));
    assert!(long.len() > 64);
    let tools = format!(r#"[{{"name":"{long}","input_schema":{{"type":"object"}}}}]"#);
    // First turn: learn the upstream name and the pairs.
    let (first, meta) = next_turn(&[], &tools, "m", &Quirks::default());
    let short = first["tools"][0]["function"]["name"].as_str().unwrap().to_owned();
    assert_ne!(short, long);

    let body = format!(
        r#"{{"choices":[{{"message":{{"tool_calls":[{{"id":"c1","type":"function","function":{{"name":"{short}","arguments":"{{}}"}}}}]}},"finish_reason":"tool_calls"}}]}}"#
    );
    let (_, uses) = respond(&body, &meta.tool_names);
    assert_eq!(uses[0].1, long, "response maps the name back");

    let sse = format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"tool_calls\":[{{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\
         \"function\":{{\"name\":\"{short}\",\"arguments\":\"{{}}\"}}}}]}}}}]}}\n\n\
         data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"tool_calls\"}}]}}\n\ndata: [DONE]\n\n"
    );
    let (_, streamed) = stream(&sse, &meta.tool_names);
    assert_eq!(streamed[0].1, long, "stream maps the name back");
    let (_, unmapped) = stream(&sse, &ToolNames::default());
    assert_eq!(unmapped[0].1, short);

    // Next turn: the history's long name goes upstream shortened again.
    let (next, _) = next_turn(&streamed, &tools, "m", &Quirks::default());
    assert_eq!(next["messages"][1]["tool_calls"][0]["function"]["name"].as_str(), Some(short.as_str()));
}
