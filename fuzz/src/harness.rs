//! The code paths the fuzz targets drive, and the invariants they assert.
//!
//! Receives one fuzzer input (raw bytes) per call, from a libFuzzer target in
//! `fuzz/fuzz_targets/` or from `tests/fuzz_regressions.rs` (which includes
//! this file by path, so a committed crash or corpus file replays through
//! exactly the code the fuzzer ran). Emits nothing: a panic (from ccproxy
//! itself or from a violated invariant below) is the crash.
//!
//! Input layout: the first byte steers the run (where the input is split,
//! which limits or quirks apply); the rest is the payload. An empty input
//! does nothing. Split schedules come from [`splits`], so the same control
//! byte always splits the same payload the same way.
//!
//! Only `ccproxy` and `sonic_rs` are used, both available to the fuzz crate
//! and to the root crate's integration tests.

use ccproxy::convert::request::{convert_inspected, convert_request, inspect, RequestOptions};
use ccproxy::convert::response::convert_response;
use ccproxy::convert::stream::StreamConverter;
use ccproxy::convert::{Quirks, ReasoningParam, ToolNames};
use ccproxy::http::{parse_request_head, BodyDecoder, BodyKind, Limits};
use ccproxy::sse::{Event, SseParser};
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};

/// The fuzz targets, by the names used for `fuzz/fuzz_targets/<name>.rs`
/// and `fuzz/corpus/<name>/`.
pub const TARGETS: [&str; 6] =
    ["http_request", "chunked", "sse", "request_convert", "response_convert", "stream_convert"];

/// Runs `data` through the named target's code path. Panics on unknown
/// names. Returns whether the input was accepted all the way (parsed, or
/// converted), so tests can tell that seeds reach the deep paths.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "http_request" => http_request(data),
        "chunked" => chunked(data),
        "sse" => sse(data),
        "request_convert" => request_convert(data),
        "response_convert" => response_convert(data),
        "stream_convert" => stream_convert(data),
        other => panic!("unknown fuzz target {other:?}"),
    }
}

/// Piece lengths for splitting `len` bytes, chosen by `ctrl`: 0 = one piece;
/// otherwise a xorshift walk whose piece size is bounded by `ctrl`'s high
/// bits, so both byte-at-a-time and coarse splits are reachable.
pub fn splits(ctrl: u8, len: usize) -> Vec<usize> {
    if ctrl == 0 || len == 0 {
        return vec![len];
    }
    let max = match ctrl >> 6 {
        0 => 1,
        1 => 4,
        2 => 32,
        _ => 512,
    };
    let mut x = u32::from(ctrl) | 0x9E37_7900;
    let mut left = len;
    let mut out = Vec::new();
    while left > 0 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = (x as usize % max + 1).min(left);
        out.push(n);
        left -= n;
    }
    out
}

fn pieces(ctrl: u8, data: &[u8]) -> Vec<&[u8]> {
    let mut rest = data;
    let mut v = Vec::new();
    for n in splits(ctrl, data.len()) {
        let (a, b) = rest.split_at(n);
        v.push(a);
        rest = b;
    }
    v
}

// ---------------------------------------------------------------- HTTP

/// Limits chosen by the control byte: the defaults, or small ones so the
/// 431/413 paths are reachable with short inputs.
fn limits(ctrl: u8) -> Limits {
    if ctrl & 1 == 0 {
        Limits::default()
    } else {
        Limits {
            max_head_bytes: 64 + usize::from(ctrl & 0x70),
            max_headers: usize::from(ctrl >> 4 & 7),
            max_body_bytes: u64::from(ctrl >> 2 & 0x3f),
        }
    }
}

/// Target 1: request heads, then each body, for up to 4 pipelined requests.
pub fn http_request(data: &[u8]) -> bool {
    let Some((&ctrl, mut buf)) = data.split_first() else { return false };
    let limits = limits(ctrl);
    let mut served = false;
    for _ in 0..4 {
        let head = match parse_request_head(buf, &limits) {
            Ok(Some(h)) => h,
            Ok(None) | Err(_) => return served,
        };
        let hl = head.head_len;
        assert!(hl <= buf.len() && hl <= limits.max_head_bytes, "head_len {hl} out of bounds");
        for r in [Some(&head.path), head.query.as_ref(), head.authorization.as_ref(), head.x_api_key.as_ref()]
            .into_iter()
            .chain([head.anthropic_version.as_ref(), head.anthropic_beta.as_ref()])
            .flatten()
        {
            assert!(r.start <= r.end && r.end <= hl, "range {r:?} outside the head ({hl} bytes)");
        }
        // Reading the head in two reads must not complete it early.
        let cut = usize::from(ctrl) * hl / 256;
        if cut < hl {
            if let Ok(Some(early)) = parse_request_head(&buf[..cut], &limits) {
                panic!("prefix of {cut} bytes parsed as a complete head: {early:?} (full head is {hl} bytes)");
            }
        }
        if let BodyKind::Length(n) = head.body {
            assert!(n <= limits.max_body_bytes, "Content-Length {n} over the limit was accepted");
        }
        let rest = &buf[hl..];
        let mut dec = head.body_decoder(&limits);
        let mut out = Vec::new();
        let mut used = 0;
        let mut done = dec.is_done();
        for piece in pieces(ctrl.rotate_left(3), rest) {
            if done {
                break;
            }
            match dec.try_decode(piece, &mut out) {
                Ok((n, d)) => {
                    assert!(n <= piece.len());
                    assert!(d || n == piece.len(), "decoder stopped early without finishing");
                    used += n;
                    done = d;
                }
                Err(_) => return served,
            }
        }
        assert_eq!(out.len() as u64, dec.received(), "decoded bytes vs received()");
        assert!(out.len() as u64 <= limits.max_body_bytes, "body over the limit was accepted");
        if let BodyKind::Length(n) = head.body {
            assert_eq!(done, rest.len() as u64 >= n, "Content-Length body done-ness");
            if done {
                assert_eq!(out.len() as u64, n);
                assert_eq!(out, rest[..n as usize], "Content-Length body altered");
            }
        }
        if !done {
            return served;
        }
        assert!(dec.try_finish_at_eof().is_ok(), "finished body rejected at EOF");
        served = true;
        buf = &rest[used..];
    }
    served
}

/// One decode of `pieces` (stopping at the first error or at the end of the
/// body): the payload, total bytes consumed, done, and whether it failed.
fn decode_pieces(limit: u64, pieces: &[&[u8]]) -> (Vec<u8>, usize, bool, bool) {
    let mut dec = BodyDecoder::upstream(BodyKind::Chunked).with_limit(limit);
    let mut out = Vec::new();
    let mut used = 0;
    for piece in pieces {
        match dec.try_decode(piece, &mut out) {
            Ok((n, done)) => {
                assert!(n <= piece.len());
                assert!(done || n == piece.len(), "chunked decoder stopped early without finishing");
                used += n;
                if done {
                    assert!(dec.try_finish_at_eof().is_ok());
                    return (out, used, true, false);
                }
            }
            Err(_) => return (out, used, false, true),
        }
    }
    assert!(dec.try_finish_at_eof().is_err(), "unfinished chunked body accepted at EOF");
    (out, used, false, false)
}

/// Target 2: the chunked decoder gives the same result whether the body
/// arrives whole or split at a fuzzer-chosen point.
pub fn chunked(data: &[u8]) -> bool {
    let Some((&ctrl, body)) = data.split_first() else { return false };
    let limit = if ctrl & 0x80 == 0 { u64::MAX } else { u64::from(ctrl & 0x3f) * 4 };
    let at = usize::from(ctrl) * body.len() / 256;
    let whole = decode_pieces(limit, &[body]);
    let split = decode_pieces(limit, &[&body[..at], &body[at..]]);
    let fail = whole.3;
    assert_eq!(whole.3, split.3, "error depends on the split at {at}");
    if !fail {
        assert_eq!(whole, split, "result depends on the split at {at}");
    }
    assert!(whole.0.len() as u64 <= limit);
    whole.2
}

// ---------------------------------------------------------------- SSE

#[derive(Debug, PartialEq, Eq)]
struct Owned {
    event: Vec<u8>,
    data: Vec<u8>,
}

fn parse_sse(pieces: &[&[u8]], max: usize) -> (Vec<Owned>, bool) {
    let mut p = SseParser::with_max(max);
    let mut evs = Vec::new();
    let mut on = |e: Event<'_>| {
        assert!(!e.event.iter().any(|&b| b == b'\n' || b == b'\r'), "line break in an event name");
        assert!(!e.data.contains(&b'\r'), "CR in event data");
        evs.push(Owned { event: e.event.to_vec(), data: e.data.to_vec() });
    };
    for piece in pieces {
        if p.feed(piece, &mut on).is_err() {
            return (evs, true);
        }
    }
    let err = p.finish(&mut on).is_err();
    (evs, err)
}

/// Target 3: the SSE parser yields the same events however its input is
/// split, with the default limit and with a small one.
pub fn sse(data: &[u8]) -> bool {
    let Some((&ctrl, body)) = data.split_first() else { return false };
    let max = if ctrl & 1 == 0 { ccproxy::sse::MAX_EVENT_BYTES } else { usize::from(ctrl >> 1) };
    let whole = parse_sse(&[body], max);
    let split = parse_sse(&pieces(ctrl, body), max);
    assert_eq!(whole.1, split.1, "TooLarge depends on the split");
    if !whole.1 {
        assert_eq!(whole.0, split.0, "events depend on the split");
    }
    !whole.1 && !whole.0.is_empty()
}

// ---------------------------------------------------------------- converters

/// Where converted JSON goes, which decides what it may contain.
#[derive(Clone, Copy, PartialEq, Eq)]
enum To {
    /// An upstream, possibly a strict parser: lone surrogate escapes must
    /// have been replaced (ccproxy does it).
    Upstream,
    /// The client: the SDKs' parsers accept lone surrogates, and ccproxy
    /// passes a provider's text through as it came.
    Client,
}

fn json(bytes: &[u8], what: &str, to: To) -> Value {
    let first = match sonic_rs::from_slice::<Value>(bytes) {
        Ok(v) => return v,
        Err(e) => e,
    };
    // A number beyond f64 range (`1e999`) is valid JSON, and ccproxy rightly
    // passes a model's tool arguments through untouched; JavaScript and
    // Python parse it as Infinity. sonic-rs refuses it, so such numbers are
    // zeroed for the structural checks, and only they. Likewise lone
    // surrogates in what goes to the client.
    let mut copy = bytes.to_vec();
    if to == To::Client {
        ccproxy::json::replace_lone_surrogates(&mut copy);
    }
    let copy = finite_numbers(&copy).unwrap_or(copy);
    match sonic_rs::from_slice::<Value>(&copy) {
        Ok(v) => v,
        _ => panic!("{what} is not valid JSON ({first}): {}", String::from_utf8_lossy(bytes)),
    }
}

/// `bytes` with every number token (outside strings) that overflows f64
/// replaced by `0`, or None when there is none.
pub fn finite_numbers(bytes: &[u8]) -> Option<Vec<u8>> {
    let (mut out, mut changed, mut i) = (Vec::with_capacity(bytes.len()), false, 0);
    let mut in_str = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_str {
            out.push(b);
            match b {
                b'\\' if i + 1 < bytes.len() => {
                    out.push(bytes[i + 1]);
                    i += 1;
                }
                b'"' => in_str = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_str = true;
        } else if b == b'-' || b.is_ascii_digit() {
            let end = bytes[i..].iter().position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'));
            let end = i + end.unwrap_or(bytes.len() - i);
            let tok = &bytes[i..end];
            let inf = std::str::from_utf8(tok).ok().and_then(|t| t.parse::<f64>().ok()).is_some_and(f64::is_infinite);
            out.extend_from_slice(if inf { b"0" } else { tok });
            changed |= inf;
            i = end;
            continue;
        }
        out.push(b);
        i += 1;
    }
    changed.then_some(out)
}

fn is_valid_tool_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

const STOP_REASONS: [&str; 6] = ["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"];

/// Routed model and quirks variants the request converter runs with.
fn quirk_variants() -> [(&'static str, Quirks, Option<u32>); 4] {
    [
        ("gpt-4o", Quirks::default(), None),
        ("o3-mini", Quirks { openai_reasoning_models: true, ..Quirks::default() }, Some(1000)),
        (
            "deepseek-reasoner",
            Quirks { reasoning: ReasoningParam::Effort, deepseek_reasoning_passback: true, ..Quirks::default() },
            None,
        ),
        (
            "google/gemini-2.5-pro",
            Quirks { reasoning: ReasoningParam::OpenRouter, gemini: true, pdf_file_parts: true, ..Quirks::default() },
            Some(8),
        ),
    ]
}

/// Target 4: an Anthropic request body becomes a valid Chat Completions body.
pub fn request_convert(data: &[u8]) -> bool {
    let Some((&ctrl, body)) = data.split_first() else { return false };
    let Ok(inspected) = inspect(body) else { return false };
    let variants = quirk_variants();
    let (model, quirks, cap) = &variants[usize::from(ctrl) % variants.len()];
    let opts = RequestOptions { model, quirks, max_tokens_cap: *cap };
    let mut out = Vec::new();
    let Ok(meta) = convert_inspected(&inspected, &opts, &mut out) else { return false };
    assert_eq!(meta.stream, inspected.stream());
    let v = json(&out, "converted request", To::Upstream);
    assert_eq!(v.get("model").and_then(|m| m.as_str()), Some(*model));
    let msgs = v.get("messages").and_then(|m| m.as_array()).expect("messages array");
    assert!(!msgs.is_empty(), "converted request has no messages");
    for m in msgs.iter() {
        let role = m.get("role").and_then(|r| r.as_str());
        assert!(matches!(role, Some("system" | "user" | "assistant" | "tool")), "bad role {role:?}");
    }
    if let Some(tools) = v.get("tools").and_then(|t| t.as_array()) {
        for t in tools.iter() {
            let name = t.get("function").and_then(|f| f.get("name")).and_then(|n| n.as_str()).unwrap_or("");
            assert!(name.chars().count() <= 64, "tool name over 64 characters upstream: {name}");
        }
    }
    // The one-call form must agree with inspect + convert_inspected.
    let mut again = Vec::new();
    let meta2 = convert_request(body, &opts, &mut again).expect("convert_request disagrees with convert_inspected");
    assert_eq!(meta2.stream, meta.stream);
    assert_eq!(meta2.tool_names, meta.tool_names);
    true
}

/// Tool names as a request with one over-long tool name leaves them, so the
/// response converters' name mapping is exercised too.
fn long_tool_names() -> ToolNames {
    let long = "mcp__a_very_long_server_name_for_fuzzing__and_an_even_longer_tool_name_x";
    let body = format!(
        r#"{{"model":"m","max_tokens":5,"messages":[{{"role":"user","content":"x"}}],
        "tools":[{{"name":"{long}","input_schema":{{"type":"object"}}}}]}}"#
    );
    let q = Quirks::default();
    let opts = RequestOptions { model: "gpt-4o", quirks: &q, max_tokens_cap: None };
    let meta = convert_request(body.as_bytes(), &opts, &mut Vec::new()).expect("long tool name request converts");
    assert!(!meta.tool_names.is_empty());
    meta.tool_names
}

fn check_message(v: &Value) {
    assert_eq!(v.get("type").and_then(|t| t.as_str()), Some("message"));
    assert_eq!(v.get("role").and_then(|t| t.as_str()), Some("assistant"));
    assert_eq!(v.get("model").and_then(|t| t.as_str()), Some("claude-fuzz"));
    let stop = v.get("stop_reason").and_then(|s| s.as_str()).expect("stop_reason string");
    assert!(STOP_REASONS.contains(&stop), "stop_reason {stop}");
    let usage = v.get("usage").expect("usage");
    assert!(usage.get("input_tokens").and_then(|n| n.as_u64()).is_some());
    assert!(usage.get("output_tokens").and_then(|n| n.as_u64()).is_some());
    for b in v.get("content").and_then(|c| c.as_array()).expect("content array").iter() {
        match b.get("type").and_then(|t| t.as_str()) {
            Some("text") => assert!(b.get("text").and_then(|t| t.as_str()).is_some()),
            Some("thinking") => assert!(b.get("thinking").and_then(|t| t.as_str()).is_some()),
            Some("tool_use") => {
                let id = b.get("id").and_then(|i| i.as_str()).unwrap_or("");
                assert!(is_valid_tool_id(id), "tool_use id {id:?}");
                assert!(b.get("name").and_then(|n| n.as_str()).is_some());
                assert!(b.get("input").is_some_and(|i| i.is_object()), "tool_use input is not an object");
            }
            other => panic!("unexpected content block type {other:?}"),
        }
    }
}

/// Target 5: a Chat Completions body becomes a well-formed Anthropic message,
/// or an error that leaves the output buffer untouched.
pub fn response_convert(data: &[u8]) -> bool {
    let Some((&ctrl, body)) = data.split_first() else { return false };
    let names = if ctrl & 1 == 0 { ToolNames::default() } else { long_tool_names() };
    let mut out = b"prefix".to_vec();
    match convert_response(body, "claude-fuzz", "msg_fuzz", &names, &mut out) {
        Ok(_) => {
            check_message(&json(&out[6..], "converted response", To::Client));
            true
        }
        Err(e) => {
            assert_eq!(out, b"prefix", "failed conversion left bytes in the output");
            assert!(e.status >= 400, "error with status {}", e.status);
            false
        }
    }
}

// ---------------------------------------------------------------- stream

/// Checks Anthropic SSE output: every event is `event: T\ndata: <JSON with
/// type T>\n\n`, and the sequence follows the Messages streaming grammar.
/// Returns the type of the last event.
pub fn check_stream(out: &[u8]) -> String {
    let text = std::str::from_utf8(out).expect("stream output is UTF-8");
    assert!(text.is_empty() || text.ends_with("\n\n"), "output does not end with a blank line");
    let mut started = false;
    let mut open: Option<(u64, &'static str)> = None;
    let mut next_index = 0u64;
    let mut delta_sent = false;
    let mut last = String::new();
    for ev in text.split_terminator("\n\n") {
        assert!(last != "message_stop" && last != "error", "event after {last}: {ev}");
        let mut lines = ev.split('\n');
        let name =
            lines.next().and_then(|l| l.strip_prefix("event: ")).unwrap_or_else(|| panic!("no event line: {ev:?}"));
        let data =
            lines.next().and_then(|l| l.strip_prefix("data: ")).unwrap_or_else(|| panic!("no data line: {ev:?}"));
        assert!(lines.next().is_none(), "extra lines in event: {ev:?}");
        let v = json(data.as_bytes(), "stream event data", To::Client);
        assert_eq!(v.get("type").and_then(|t| t.as_str()), Some(name), "event line vs data type");
        if name != "message_start" {
            assert!(started, "{name} before message_start");
        }
        let index = v.get("index").and_then(|i| i.as_u64());
        match name {
            "message_start" => {
                assert!(!started, "second message_start");
                started = true;
            }
            "content_block_start" => {
                assert!(open.is_none(), "block opened while another is open");
                assert!(!delta_sent, "block after message_delta");
                assert_eq!(index, Some(next_index), "block index not contiguous");
                next_index += 1;
                let block = v.get("content_block").expect("content_block");
                let kind = match block.get("type").and_then(|t| t.as_str()) {
                    Some("text") => "text",
                    Some("thinking") => "thinking",
                    Some("tool_use") => {
                        let id = block.get("id").and_then(|i| i.as_str()).unwrap_or("");
                        assert!(is_valid_tool_id(id), "tool_use id {id:?}");
                        "tool_use"
                    }
                    other => panic!("block type {other:?}"),
                };
                open = Some((next_index - 1, kind));
            }
            "content_block_delta" => {
                let (i, kind) = open.expect("delta without an open block");
                assert_eq!(index, Some(i), "delta index");
                let dt = v.get("delta").and_then(|d| d.get("type")).and_then(|t| t.as_str());
                let ok = matches!(
                    (kind, dt),
                    ("text", Some("text_delta"))
                        | ("thinking", Some("thinking_delta" | "signature_delta"))
                        | ("tool_use", Some("input_json_delta"))
                );
                assert!(ok, "{dt:?} delta in a {kind} block");
            }
            "content_block_stop" => {
                let (i, _) = open.take().expect("stop without an open block");
                assert_eq!(index, Some(i), "stop index");
            }
            "message_delta" => {
                assert!(open.is_none(), "message_delta with a block open");
                assert!(!delta_sent, "second message_delta");
                delta_sent = true;
                let stop = v.get("delta").and_then(|d| d.get("stop_reason")).and_then(|s| s.as_str());
                assert!(stop.is_some_and(|s| STOP_REASONS.contains(&s)), "stop_reason {stop:?}");
            }
            "message_stop" => assert!(delta_sent, "message_stop without message_delta"),
            "error" => {
                assert!(open.is_none(), "error with a block open");
                assert!(v.get("error").and_then(|e| e.get("type")).and_then(|t| t.as_str()).is_some());
            }
            other => panic!("unexpected event {other:?}"),
        }
        last = name.to_owned();
    }
    last
}

/// Target 6: upstream SSE fed in fuzzer-chosen splits, then EOF, always
/// yields a well-formed Anthropic stream that ends in message_stop or error.
pub fn stream_convert(data: &[u8]) -> bool {
    let Some((&ctrl, body)) = data.split_first() else { return false };
    let names = if ctrl & 1 == 0 { ToolNames::default() } else { long_tool_names() };
    let mut conv = StreamConverter::new("claude-fuzz", "msg_fuzz").with_input_tokens(7).with_tool_names(names);
    let mut out = Vec::new();
    for piece in pieces(ctrl, body) {
        conv.push(piece, false, &mut out);
        // Output handed to the client so far must already be whole events
        // (the full check runs once at the end: per piece it is quadratic).
        assert!(out.is_empty() || out.ends_with(b"\n\n"), "partial event written");
    }
    conv.push(&[], true, &mut out);
    assert!(conv.is_finished(), "not finished after EOF");
    let last = check_stream(&out);
    assert!(last == "message_stop" || last == "error", "stream ends with {last:?}");
    let len = out.len();
    conv.push(b"data: {}\n\n", true, &mut out);
    assert_eq!(out.len(), len, "output after the stream finished");
    last == "message_stop"
}
