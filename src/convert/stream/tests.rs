//! Scenario tests for the stream converter: each upstream body is fed whole,
//! split at every byte offset and byte by byte (see `testkit::check`), and
//! the output must pass the SDK-invariant validator and equal the expected
//! Anthropic events exactly.

use super::testkit::*;

fn text_reply() -> String {
    [
        chunk(r#"{"role":"assistant","content":"Hello"}"#),
        chunk(r#"{"content":", world"}"#),
        finish("stop"),
        usage(10, 3, 0),
        DONE.to_owned(),
    ]
    .concat()
}

fn text_reply_events() -> Vec<Ev> {
    vec![
        message_start(),
        start_text(0),
        text(0, "Hello"),
        text(0, ", world"),
        stop(0),
        message_delta("end_turn", (10, 3, 0)),
        message_stop(),
    ]
}

#[test]
fn plain_text() {
    check(&text_reply(), &text_reply_events(), &[]);
}

#[test]
fn crlf_line_endings() {
    check(&text_reply().replace('\n', "\r\n"), &text_reply_events(), &[]);
}

#[test]
fn cr_line_endings() {
    check(&text_reply().replace('\n', "\r"), &text_reply_events(), &[]);
}

#[test]
fn comment_lines_and_other_fields() {
    let body = text_reply()
        .replace("data: {", ": OPENROUTER PROCESSING\n\nid: 1\nretry: 3000\ndata: {")
        .replace("data: [DONE]", ":keepalive\ndata: [DONE]");
    check(&body, &text_reply_events(), &[]);
}

#[test]
fn leading_empty_deltas_open_no_block() {
    let body = [
        chunk(r#"{"role":"assistant","content":""}"#),
        chunk(r#"{"role":"assistant","content":null,"reasoning_content":null}"#),
        chunk(r#"{}"#),
        chunk(r#"{"content":"","reasoning":"","tool_calls":[]}"#),
        chunk(r#"{"content":"Hi"}"#),
        finish("stop"),
        DONE.to_owned(),
    ]
    .concat();
    let want = vec![
        message_start(),
        start_text(0),
        text(0, "Hi"),
        stop(0),
        message_delta("end_turn", (0, 0, 0)),
        message_stop(),
    ];
    check(&body, &want, &[]);
}

#[test]
fn deepseek_reasoning_content_then_text() {
    let body = [
        chunk(r#"{"role":"assistant","content":null,"reasoning_content":""}"#),
        chunk(r#"{"content":null,"reasoning_content":"Let me"}"#),
        chunk(r#"{"content":null,"reasoning_content":" think."}"#),
        chunk(r#"{"content":"Answer","reasoning_content":null}"#),
        finish("stop"),
        usage(20, 8, 5),
        DONE.to_owned(),
    ]
    .concat();
    let want = vec![
        message_start(),
        start_thinking(0),
        thinking(0, "Let me"),
        thinking(0, " think."),
        signature(0),
        stop(0),
        start_text(1),
        text(1, "Answer"),
        stop(1),
        message_delta("end_turn", (15, 8, 5)),
        message_stop(),
    ];
    check(&body, &want, &[]);
}

#[test]
fn ollama_and_openrouter_reasoning_then_text() {
    let body = [
        chunk(r#"{"role":"assistant","content":"","reasoning":"Hmm"}"#),
        chunk(r#"{"content":"","reasoning":" ok","reasoning_details":[{"type":"reasoning.text","text":" ok"}]}"#),
        // Both names carrying the same text must not duplicate it.
        chunk(r#"{"reasoning_content":"!","reasoning":"!"}"#),
        chunk(r#"{"content":"Yes"}"#),
        finish("stop"),
        DONE.to_owned(),
    ]
    .concat();
    let want = vec![
        message_start(),
        start_thinking(0),
        thinking(0, "Hmm"),
        thinking(0, " ok"),
        thinking(0, "!"),
        signature(0),
        stop(0),
        start_text(1),
        text(1, "Yes"),
        stop(1),
        message_delta("end_turn", (0, 0, 0)),
        message_stop(),
    ];
    check(&body, &want, &[]);
}

#[test]
fn single_tool_call_with_fragmented_arguments() {
    let body = [
        chunk(
            r#"{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_abc","type":"function","function":{"name":"Bash","arguments":""}}]}"#,
        ),
        chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"comm"}}]}"#),
        chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"and\":\"ls -la \\\"/tmp\\\"\"}"}}]}"#),
        finish("tool_calls"),
        usage(100, 20, 0),
        DONE.to_owned(),
    ]
    .concat();
    let want = vec![
        message_start(),
        start_tool(0, "call_abc", "Bash"),
        args(0, "{\"comm"),
        args(0, "and\":\"ls -la \\\"/tmp\\\"\"}"),
        stop(0),
        message_delta("tool_use", (100, 20, 0)),
        message_stop(),
    ];
    check(&body, &want, &[r#"{"command":"ls -la \"/tmp\""}"#]);
}

#[test]
fn two_tool_calls_interleaved_by_index() {
    let frag =
        |i: u32, a: &str| chunk(&format!(r#"{{"tool_calls":[{{"index":{i},"function":{{"arguments":"{a}"}}}}]}}"#));
    let body = [
        chunk(
            r#"{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"Read","arguments":""}}]}"#,
        ),
        chunk(
            r#"{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"Bash","arguments":""}}]}"#,
        ),
        frag(0, r#"{\"path\":"#),
        frag(1, r#"{\"command\":"#),
        // A brace inside a string does not end the first call.
        frag(0, r#"\"/a}\""#),
        frag(1, r#"\"ls\""#),
        frag(0, r#"}"#),
        frag(1, r#"}"#),
        finish("tool_calls"),
        DONE.to_owned(),
    ]
    .concat();
    let want = vec![
        message_start(),
        start_tool(0, "call_a", "Read"),
        args(0, r#"{"path":"#),
        args(0, r#""/a}""#),
        args(0, "}"),
        stop(0),
        start_tool(1, "call_b", "Bash"),
        args(1, r#"{"command":"ls""#),
        args(1, "}"),
        stop(1),
        message_delta("tool_use", (0, 0, 0)),
        message_stop(),
    ];
    check(&body, &want, &[r#"{"path":"/a}"}"#, r#"{"command":"ls"}"#]);
}

#[test]
fn sequential_parallel_calls_are_forwarded_as_they_arrive() {
    let body = [
        chunk(r#"{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"Read","arguments":"{\"p\""}}]}"#),
        chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}"#),
        chunk(r#"{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"Read","arguments":"{\"p\""}}]}"#),
        chunk(r#"{"tool_calls":[{"index":1,"function":{"arguments":":2}"}}]}"#),
        finish("tool_calls"),
        DONE.to_owned(),
    ]
    .concat();
    let want = vec![
        message_start(),
        start_tool(0, "call_a", "Read"),
        args(0, r#"{"p""#),
        args(0, ":1}"),
        stop(0),
        start_tool(1, "call_b", "Read"),
        args(1, r#"{"p""#),
        args(1, ":2}"),
        stop(1),
        message_delta("tool_use", (0, 0, 0)),
        message_stop(),
    ];
    check(&body, &want, &[r#"{"p":1}"#, r#"{"p":2}"#]);
}

#[test]
fn text_then_tool_call_with_unsafe_id() {
    let body = [
        chunk(r#"{"role":"assistant","content":"Let me check."}"#),
        chunk(
            r#"{"tool_calls":[{"index":0,"id":"functions.Bash:0","type":"function","function":{"name":"Bash","arguments":""}}]}"#,
        ),
        chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"command\":\"pwd\"}"}}]}"#),
        finish("tool_calls"),
        usage(50, 9, 40),
        DONE.to_owned(),
    ]
    .concat();
    let want = vec![
        message_start(),
        start_text(0),
        text(0, "Let me check."),
        stop(0),
        start_tool(1, &client_id("functions.Bash:0", None), "Bash"),
        args(1, r#"{"command":"pwd"}"#),
        stop(1),
        message_delta("tool_use", (10, 9, 40)),
        message_stop(),
    ];
    check(&body, &want, &[r#"{"command":"pwd"}"#]);
}

#[test]
fn gemini_batched_calls_without_index_and_finish_stop() {
    let body = [
        chunk(
            r#"{"role":"assistant","tool_calls":[{"id":"g1","type":"function","function":{"name":"Read","arguments":"{\"path\":\"a.txt\"}"},"extra_content":{"google":{"thought_signature":"c2ln"}}},{"id":"g2","type":"function","function":{"name":"Read","arguments":"{\"path\":\"b.txt\"}"}}]}"#,
        ),
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":\"stop\"}],\
         \"usage\":{\"prompt_tokens\":7,\"completion_tokens\":4,\"total_tokens\":11}}\n\n"
            .to_owned(),
        DONE.to_owned(),
    ]
    .concat();
    let want = vec![
        message_start(),
        start_tool(0, &client_id("g1", Some("c2ln")), "Read"),
        args(0, r#"{"path":"a.txt"}"#),
        stop(0),
        start_tool(1, "g2", "Read"),
        args(1, r#"{"path":"b.txt"}"#),
        stop(1),
        message_delta("tool_use", (7, 4, 0)),
        message_stop(),
    ];
    check(&body, &want, &[r#"{"path":"a.txt"}"#, r#"{"path":"b.txt"}"#]);
}

#[test]
fn multibyte_utf8_and_escapes_survive_any_split() {
    let body = [
        chunk(r#"{"content":"héllo 🎉 "}"#),
        chunk(r#"{"content":"日本語 \ud83d\ude00 \u00e9 \"q\" \\ \n\t\/"}"#),
        finish("stop"),
        DONE.to_owned(),
    ]
    .concat();
    let want = vec![
        message_start(),
        start_text(0),
        text(0, "héllo 🎉 "),
        text(0, "日本語 😀 é \"q\" \\ \n\t/"),
        stop(0),
        message_delta("end_turn", (0, 0, 0)),
        message_stop(),
    ];
    check(&body, &want, &[]);
}

#[test]
fn done_without_finish_reason_is_end_turn_and_later_data_is_ignored() {
    let body = [chunk(r#"{"content":"A"}"#), DONE.to_owned(), chunk(r#"{"content":"B"}"#)].concat();
    let want = vec![
        message_start(),
        start_text(0),
        text(0, "A"),
        stop(0),
        message_delta("end_turn", (0, 0, 0)),
        message_stop(),
    ];
    check(&body, &want, &[]);
}

#[test]
fn finish_then_eof_without_done_ends_normally() {
    let body = [chunk(r#"{"content":"A"}"#), finish("length"), usage(4, 1, 0)].concat();
    let want = vec![
        message_start(),
        start_text(0),
        text(0, "A"),
        stop(0),
        message_delta("max_tokens", (4, 1, 0)),
        message_stop(),
    ];
    check(&body, &want, &[]);
    // The same when the last event lacks its closing blank line.
    let body = [chunk(r#"{"content":"A"}"#), finish("length"), usage(4, 1, 0)].concat();
    check(body.trim_end(), &want, &[]);
}

#[test]
fn mid_stream_error_object() {
    let body = [
        chunk(r#"{"content":"Par"}"#),
        "data: {\"error\":{\"message\":\"Provider overloaded\",\"type\":\"overloaded_error\",\"code\":529}}\n\n"
            .to_owned(),
        chunk(r#"{"content":"never"}"#),
        DONE.to_owned(),
    ]
    .concat();
    let want = vec![
        message_start(),
        start_text(0),
        text(0, "Par"),
        stop(0),
        error("overloaded_error", "upstream error: Provider overloaded"),
    ];
    check(&body, &want, &[]);
}

#[test]
fn sse_error_event_and_rate_limit_code() {
    let body = [
        chunk(r#"{"content":"x"}"#),
        "event: error\ndata: {\"error\":{\"message\":\"slow down\",\"code\":\"429\"}}\n\n".to_owned(),
    ]
    .concat();
    let want = vec![
        message_start(),
        start_text(0),
        text(0, "x"),
        stop(0),
        error("rate_limit_error", "upstream error: slow down"),
    ];
    check(&body, &want, &[]);
}

#[test]
fn truncated_stream_is_an_error_never_end_turn() {
    let want = vec![
        message_start(),
        start_text(0),
        text(0, "Hal"),
        stop(0),
        error("api_error", "upstream stream ended before completion"),
    ];
    check(&chunk(r#"{"content":"Hal"}"#), &want, &[]);
    // Cut in the middle of the next chunk.
    let body =
        [chunk(r#"{"content":"Hal"}"#), "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"f".to_owned()]
            .concat();
    check(&body, &want, &[]);
    // Inside a tool call: the block is closed, then the error.
    let body = chunk(r#"{"tool_calls":[{"index":0,"id":"c1","function":{"name":"Bash","arguments":"{\"a\":"}}]}"#);
    let want = vec![
        message_start(),
        start_tool(0, "c1", "Bash"),
        args(0, r#"{"a":"#),
        stop(0),
        error("api_error", "upstream stream ended before completion"),
    ];
    check(&body, &want, &[]);
    check("", &[message_start(), error("api_error", "upstream stream ended before completion")], &[]);
}

#[test]
fn openrouter_finish_reason_error() {
    let body = [
        chunk(r#"{"content":"Partial"}"#),
        "data: {\"id\":\"gen-1\",\"object\":\"chat.completion.chunk\",\"error\":{\"code\":502,\"message\":\"Upstream provider crashed\"},\
         \"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\",\"native_finish_reason\":\"error\"}]}\n\n"
            .to_owned(),
        DONE.to_owned(),
    ]
    .concat();
    let want = vec![
        message_start(),
        start_text(0),
        text(0, "Partial"),
        stop(0),
        error("api_error", "upstream error: Upstream provider crashed"),
    ];
    check(&body, &want, &[]);
    // Without an error object.
    let body = [chunk(r#"{"content":"Partial"}"#), finish("error"), DONE.to_owned()].concat();
    let mut want = want;
    want[4] = error("api_error", "upstream reported finish_reason \"error\"");
    check(&body, &want, &[]);
}
