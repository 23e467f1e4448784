//! Scenario tests for what the stream converter holds back: text arriving
//! while a tool call's arguments are incomplete (held, then sent after the
//! tool block), and the limits on held-back bytes and on SSE lines/events,
//! which end the stream with `event: error` instead of growing without bound.

use super::testkit::*;

fn frag(i: u32, a: &str) -> String {
    chunk(&format!(r#"{{"tool_calls":[{{"index":{i},"function":{{"arguments":"{a}"}}}}]}}"#))
}

fn call_start(i: u32, id: &str, name: &str) -> String {
    chunk(&format!(
        r#"{{"tool_calls":[{{"index":{i},"id":"{id}","type":"function","function":{{"name":"{name}","arguments":""}}}}]}}"#
    ))
}

#[test]
fn text_mid_tool_call_is_held_until_the_arguments_complete() {
    let body = [
        call_start(0, "call_a", "Bash"),
        frag(0, r#"{\"x\":"#),
        chunk(r#"{"content":"…"}"#),
        frag(0, "1}"),
        chunk(r#"{"content":" more"}"#),
        finish("tool_calls"),
        DONE.to_owned(),
    ]
    .concat();
    let want = vec![
        message_start(),
        start_tool(0, "call_a", "Bash"),
        args(0, r#"{"x":"#),
        args(0, "1}"),
        stop(0),
        start_text(1),
        text(1, "…"),
        // The block the held text opened goes on taking text.
        text(1, " more"),
        stop(1),
        message_delta("tool_use", (0, 0, 0)),
        message_stop(),
    ];
    check(&body, &want, &[r#"{"x":1}"#]);
}

#[test]
fn blank_text_while_a_tool_call_is_open_is_dropped() {
    let body = [
        call_start(0, "call_a", "Bash"),
        frag(0, r#"{\"x\":"#),
        chunk(r#"{"content":"\n\n"}"#),
        frag(0, "1}"),
        chunk(r#"{"content":" \n"}"#),
        finish("tool_calls"),
        DONE.to_owned(),
    ]
    .concat();
    let want = vec![
        message_start(),
        start_tool(0, "call_a", "Bash"),
        args(0, r#"{"x":"#),
        args(0, "1}"),
        stop(0),
        message_delta("tool_use", (0, 0, 0)),
        message_stop(),
    ];
    check(&body, &want, &[r#"{"x":1}"#]);
}

#[test]
fn held_text_keeps_inner_blanks_and_kinds_in_order() {
    let body = [
        call_start(0, "call_a", "Bash"),
        frag(0, r#"{\"x\":"#),
        chunk(r#"{"content":"\n"}"#),
        chunk(r#"{"reasoning_content":"hm"}"#),
        chunk(r#"{"content":"a"}"#),
        chunk(r#"{"content":" "}"#),
        chunk(r#"{"content":"b"}"#),
        frag(0, r#"[2]}"#),
        finish("tool_calls"),
        DONE.to_owned(),
    ]
    .concat();
    let want = vec![
        message_start(),
        start_tool(0, "call_a", "Bash"),
        args(0, r#"{"x":"#),
        args(0, "[2]}"),
        stop(0),
        start_thinking(1),
        thinking(1, "hm"),
        signature(1),
        stop(1),
        start_text(2),
        text(2, "a b"),
        stop(2),
        message_delta("tool_use", (0, 0, 0)),
        message_stop(),
    ];
    check(&body, &want, &[r#"{"x":[2]}"#]);
}

#[test]
fn held_text_goes_between_the_open_call_and_the_next() {
    let body = [
        call_start(0, "call_a", "Read"),
        frag(0, r#"{\"p\":"#),
        chunk(r#"{"content":"hi"}"#),
        call_start(1, "call_b", "Bash"),
        frag(1, "{}"),
        frag(0, "1}"),
        finish("tool_calls"),
        DONE.to_owned(),
    ]
    .concat();
    let want = vec![
        message_start(),
        start_tool(0, "call_a", "Read"),
        args(0, r#"{"p":"#),
        args(0, "1}"),
        stop(0),
        start_text(1),
        text(1, "hi"),
        stop(1),
        start_tool(2, "call_b", "Bash"),
        args(2, "{}"),
        stop(2),
        message_delta("tool_use", (0, 0, 0)),
        message_stop(),
    ];
    check(&body, &want, &[r#"{"p":1}"#, "{}"]);
}

#[test]
fn held_text_follows_a_call_left_incomplete_at_the_end() {
    let body = [
        call_start(0, "call_a", "Read"),
        frag(0, r#"{\"p\":"#),
        chunk(r#"{"content":"hi"}"#),
        finish("tool_calls"),
        DONE.to_owned(),
    ]
    .concat();
    let want = vec![
        message_start(),
        start_tool(0, "call_a", "Read"),
        args(0, r#"{"p":"#),
        stop(0),
        start_text(1),
        text(1, "hi"),
        stop(1),
        message_delta("tool_use", (0, 0, 0)),
        message_stop(),
    ];
    check(&body, &want, &[r#"{"p":"#]);
}

/// Runs the converter over `body` in 64 KiB reads, as the network would.
fn run_big(body: &[u8]) -> Vec<Ev> {
    let pieces: Vec<&[u8]> = body.chunks(64 << 10).collect();
    let events = parse_events(&run(&pieces, true));
    validate(&events, &[]);
    events
}

#[test]
fn endless_line_from_upstream_is_an_error() {
    let body = vec![b'x'; crate::sse::MAX_EVENT_BYTES + 1];
    let events = run_big(&body);
    assert_eq!(
        events,
        vec![message_start(), error("api_error", "upstream sent an SSE line or event larger than 16 MiB")]
    );
}

#[test]
fn endless_event_of_short_lines_is_an_error() {
    let mut body = chunk(r#"{"content":"a"}"#).into_bytes();
    let line = format!("data: {}\n", "y".repeat(1000));
    while body.len() < crate::sse::MAX_EVENT_BYTES + (256 << 10) {
        body.extend_from_slice(line.as_bytes());
    }
    let events = run_big(&body);
    let want = vec![
        message_start(),
        start_text(0),
        text(0, "a"),
        stop(0),
        error("api_error", "upstream sent an SSE line or event larger than 16 MiB"),
    ];
    assert_eq!(events, want);
}

const HELD_ERROR: &str = "upstream stream held back more than 16 MiB while a tool call was incomplete";

#[test]
fn held_back_arguments_are_bounded() {
    let mut body = [call_start(0, "call_a", "Read"), frag(0, r#"{\"p\":"#), call_start(1, "call_b", "Bash")].concat();
    let piece = frag(1, &"a".repeat(1 << 20));
    for _ in 0..17 {
        body.push_str(&piece);
    }
    let events = run_big(body.as_bytes());
    let want = vec![
        message_start(),
        start_tool(0, "call_a", "Read"),
        args(0, r#"{"p":"#),
        stop(0),
        error("api_error", HELD_ERROR),
    ];
    assert_eq!(events, want);
}

#[test]
fn held_back_text_is_bounded() {
    let mut body = [call_start(0, "call_a", "Read"), frag(0, r#"{\"p\":"#)].concat();
    let piece = chunk(&format!(r#"{{"content":"{}"}}"#, "t".repeat(1 << 20)));
    for _ in 0..17 {
        body.push_str(&piece);
    }
    let events = run_big(body.as_bytes());
    let want = vec![
        message_start(),
        start_tool(0, "call_a", "Read"),
        args(0, r#"{"p":"#),
        stop(0),
        error("api_error", HELD_ERROR),
    ];
    assert_eq!(events, want);
}
