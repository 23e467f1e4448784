//! Replays fuzzer inputs through the fuzz targets' code paths under `cargo test`.
//!
//! Receives the committed seed corpora (`fuzz/corpus/<target>/seed-*`) and
//! the crashing inputs found by fuzzing (inline below, one test each), and
//! runs them through `fuzz/src/harness.rs`, included by path, so a crash
//! found by libFuzzer stays fixed and the corpus stays meaningful without
//! the nightly-flag build of `scripts/fuzz.sh`.

#[path = "../fuzz/src/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::path::Path;

/// Every committed seed replays cleanly, every target has a few, and some
/// of each target's seeds are accepted all the way (not only rejected early).
#[test]
fn corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for target in harness::TARGETS {
        let dir = root.join(target);
        let (mut n, mut accepted) = (0, 0);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.starts_with("seed-")))
            .collect();
        entries.sort();
        for path in entries {
            let data = std::fs::read(&path).expect("read seed");
            match std::panic::catch_unwind(|| harness::run(target, &data)) {
                Ok(ok) => accepted += usize::from(ok),
                Err(_) => panic!("{target}: {} fails", path.display()),
            }
            n += 1;
        }
        assert!(n >= 3, "{target}: only {n} seed files in {}", dir.display());
        assert!(accepted >= 2, "{target}: {accepted} of {n} seeds accepted");
    }
}

/// The split schedules reach both extremes: whole input and single bytes.
#[test]
fn splits_cover_whole_and_bytewise() {
    assert_eq!(harness::splits(0, 10), vec![10]);
    assert_eq!(harness::splits(5, 10), vec![1; 10]);
    for ctrl in 0..=255u8 {
        assert_eq!(harness::splits(ctrl, 1000).iter().sum::<usize>(), 1000, "ctrl {ctrl}");
    }
}

/// The stream checker itself rejects a malformed stream (guards the guard).
#[test]
fn stream_checker_rejects_bad_streams() {
    let ok = b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n";
    assert_eq!(harness::check_stream(ok), "message_start");
    let bad: [&[u8]; 3] = [
        b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        b"event: message_start\ndata: {\"type\":\"ping\"}\n\n",
        b"event: message_start\ndata: {\"type\":\"message_start\"}\n",
    ];
    for b in bad {
        assert!(std::panic::catch_unwind(|| harness::check_stream(b)).is_err(), "{}", String::from_utf8_lossy(b));
    }
}

// ---- crashes found by fuzzing, one test each (the fix belongs in src/) ----

/// response_convert, found 2026-11-28 (fuzz/regressions/response_convert/crash-383d…):
/// an upstream string with an invalid `\u` escape (`\uing`, non-hex digits)
/// is not rejected by sonic-rs's lazy walk, and `write_raw_json`
/// (src/convert/response.rs) copies it verbatim, so the client gets an HTTP
/// 200 body that is not valid JSON. The original input had it in a tool name;
/// the minimal case below has it in text content.
#[test]
fn response_invalid_unicode_escape_in_tool_name() {
    harness::response_convert(include_bytes!(
        "../fuzz/regressions/response_convert/crash-383d78b9f089932a6e487eb70da7c75ddadfab1c"
    ));
}

/// Minimal form of the crash above: `\uZZZZ` in `choices[0].message.content`.
#[test]
fn response_invalid_unicode_escape_in_text() {
    harness::response_convert(
        b"\x00{\"choices\":[{\"message\":{\"content\":\"a\\uZZZZ\"},\"finish_reason\":\"stop\"}]}",
    );
}

/// response_convert, found 2026-11-28 after 336 s: tool `arguments` given as
/// a JSON object holding a number beyond f64 range. ccproxy copies the
/// model's arguments raw, which is right: the text is valid JSON, and the
/// SDKs' parsers (JavaScript, Python) read it as Infinity. The harness's
/// strict parser refused it, so the harness now zeroes such numbers for its
/// structural checks. This asserts both halves: the proxy's output keeps
/// the number verbatim, and the harness accepts it.
#[test]
fn response_tool_arguments_with_a_number_beyond_f64() {
    let big = "9".repeat(40) + "E9999";
    let body = format!(
        r#"{{"choices":[{{"message":{{"tool_calls":[{{"id":"call_1","type":"function",
        "function":{{"name":"calc","arguments":{{"n":{big},"s":"1e999"}}}}}}]}},"finish_reason":"tool_calls"}}]}}"#
    );
    let names = ccproxy::convert::ToolNames::default();
    let mut out = Vec::new();
    ccproxy::convert::response::convert_response(body.as_bytes(), "claude-fuzz", "msg_fuzz", &names, &mut out)
        .expect("converts");
    let text = String::from_utf8(out).expect("utf-8");
    assert!(text.contains(&format!(r#""input":{{"n":{big},"s":"1e999"}}"#)), "{text}");
    let fixed = harness::finite_numbers(text.as_bytes()).expect("the big number is found");
    let fixed = String::from_utf8(fixed).unwrap();
    assert!(fixed.contains(r#""input":{"n":0,"s":"1e999"}"#), "only the number token changes: {fixed}");
    let mut input = vec![0u8];
    input.extend_from_slice(body.as_bytes());
    assert!(harness::response_convert(&input), "accepted all the way");
}

/// request_convert, found 2026-11-28 after 752 s: a message with duplicate
/// `role` keys (the last wins) whose only content is a thinking block
/// converted to an OpenAI body with an empty `messages` array, which every
/// upstream refuses. It is now a 400 naming `messages`.
#[test]
fn request_with_only_thinking_left_is_refused() {
    let body = br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","role":"assistant",
        "content":[{"type":"thinking","thinking":"hmm","signature":"sig"}]}]}"#;
    for ctrl in 0..4u8 {
        let mut input = vec![ctrl];
        input.extend_from_slice(body);
        assert!(!harness::request_convert(&input), "variant {ctrl}: must be refused, not converted");
    }
    let q = ccproxy::convert::Quirks::default();
    let opts = ccproxy::convert::request::RequestOptions { model: "gpt-4o", quirks: &q, max_tokens_cap: None };
    let e = ccproxy::convert::request::convert_request(body, &opts, &mut Vec::new()).expect_err("refused");
    assert_eq!((e.status, e.kind.as_str()), (400, "invalid_request_error"));
    assert!(e.message.starts_with("messages: "), "{}", e.message);
}

/// request_convert, found 2026-12-01 in a 1,256 s run (4 inputs): client
/// text with a lone surrogate escape (`\uDAAA`, `\ud9AA`: in a tool name, a
/// schema key) was copied upstream as it was; strict parsers refuse the
/// whole body. ccproxy now sends `\uFFFD` in its place (see
/// `json::replace_lone_surrogates`), and the harness checks the upstream
/// body with a strict parser.
#[test]
fn request_lone_surrogates_are_replaced_before_going_upstream() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/request_convert");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("regression dir") {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("read");
        harness::run("request_convert", &data);
        n += 1;
    }
    assert!(n >= 4, "{n} inputs in {}", dir.display());
}
