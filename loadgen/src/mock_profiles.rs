//! What the mock upstream says: provider-quirk profiles and injected faults, rendered to bytes once.
//!
//! Receives the `loadgen mock` options (quirk profile, chunk count, response text size, fault spec);
//! emits pre-rendered HTTP responses that `mock.rs` writes verbatim: a chat.completion JSON response,
//! the head and chunk-framed SSE frames of a streamed answer, and the fault variants. Nothing is
//! rendered per request. Quirks follow the protocol notes: deepseek `reasoning_content`, openrouter
//! `reasoning` plus `: OPENROUTER PROCESSING` comments, gemini whole tool calls without `index`
//! batched in one chunk with `finish_reason:"stop"`, ollama `delta.reasoning`.

use std::str::FromStr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::payloads::Lorem;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Quirks {
    Openai,
    Deepseek,
    Openrouter,
    Gemini,
    Ollama,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Answer with this status (and `retry-after` seconds) instead of a completion.
    Status {
        code: u16,
        retry_after: Option<u32>,
    },
    /// Send half of the answer, then reset the connection (TCP RST).
    ResetMidStream,
    /// A 200 whose JSON (or one SSE frame) is not valid JSON; HTTP framing stays correct.
    Malformed,
    /// Hold the first byte back this long (on top of `--ttfb`).
    SlowFirstByte(Duration),
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.splitn(3, ':');
        match parts.next() {
            Some("none") => Ok(Fault::None),
            Some("reset-mid-stream") => Ok(Fault::ResetMidStream),
            Some("malformed") => Ok(Fault::Malformed),
            Some("slow-first-byte") => {
                parse_duration(parts.next().unwrap_or("")).map(Fault::SlowFirstByte).map_err(|e| e.to_string())
            }
            Some("status") => {
                let code: u16 = parts.next().and_then(|c| c.parse().ok()).ok_or("status:CODE needs a code")?;
                if !(100..=999).contains(&code) {
                    return Err(format!("bad status {code}"));
                }
                let retry_after = match parts.next() {
                    Some(r) => Some(r.parse().map_err(|_| format!("bad retry-after {r:?}"))?),
                    None => None,
                };
                Ok(Fault::Status { code, retry_after })
            }
            _ => Err(format!(
                "unknown fault {s:?}: none | status:CODE[:RETRY_AFTER] | reset-mid-stream | malformed | slow-first-byte:DURATION"
            )),
        }
    }
}

/// Parses `250ms`, `2s`, `1.5s`, `100us`, `1m`; a bare number is milliseconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| anyhow::anyhow!("bad duration {s:?}"))?;
    let secs = match unit {
        "" | "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "ns" => n / 1e9,
        "s" => n,
        "m" => n * 60.0,
        _ => anyhow::bail!("bad duration unit in {s:?}"),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Everything the mock writes, rendered at start-up.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Complete `200` response with a chat.completion body.
    pub json: Vec<u8>,
    /// Head of a streamed `200` response (chunked).
    pub stream_head: Vec<u8>,
    /// Chunk-framed SSE frames, one per flush.
    pub frames: Vec<Vec<u8>>,
    /// The last-chunk marker.
    pub tail: &'static [u8],
    /// Head, frames and tail in one buffer, written at once when there is no inter-chunk delay.
    pub stream_all: Vec<u8>,
    /// Fault variants.
    pub status_fault: Vec<u8>,
    pub malformed_json: Vec<u8>,
    pub malformed_frames: Vec<Vec<u8>>,
}

pub const HEALTH: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}";
pub const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 56\r\n\r\n{\"error\":{\"message\":\"not found\",\"type\":\"not_found_error\"}}";
pub const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
const STREAM_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";

pub fn render(quirks: Quirks, chunks: usize, size: usize, fault: Fault) -> Rendered {
    let frames_text = sse_frames(quirks, chunks, size);
    let frames: Vec<Vec<u8>> = frames_text.iter().map(|f| chunk(f.as_bytes())).collect();
    let mut stream_all = STREAM_HEAD.to_vec();
    frames.iter().for_each(|f| stream_all.extend_from_slice(f));
    stream_all.extend_from_slice(b"0\r\n\r\n");
    let body = serde_json::to_vec(&completion(quirks, size)).unwrap_or_default();
    let mut malformed_frames = frames.clone();
    let bad = chunk(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"oops\"}\n\n");
    malformed_frames.insert(2.min(frames.len()), bad);
    let malformed_body = &body[..body.len() / 2];
    Rendered {
        json: response(200, "application/json", &[], &body),
        stream_head: STREAM_HEAD.to_vec(),
        frames,
        tail: b"0\r\n\r\n",
        stream_all,
        status_fault: status_response(fault),
        malformed_json: response(200, "application/json", &[], malformed_body),
        malformed_frames,
    }
}

fn status_response(fault: Fault) -> Vec<u8> {
    let Fault::Status { code, retry_after } = fault else { return Vec::new() };
    let kind = match code {
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    };
    let body = json!({"error": {"message": format!("mock fault: status {code}"), "type": kind, "code": code}});
    let ra = retry_after.map(|s| s.to_string());
    let extra: Vec<(&str, &str)> = ra.as_deref().map(|s| ("retry-after", s)).into_iter().collect();
    response(code, "application/json", &extra, body.to_string().as_bytes())
}

pub fn response(status: u16, content_type: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Mock",
    };
    let mut out =
        format!("HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// One HTTP chunk.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

fn chunk_json(delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000u64, "model": "mock-model",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

fn data(v: &Value) -> String {
    format!("data: {v}\n\n")
}

/// Splits `text` into `n` pieces of near-equal byte length (the text is ASCII).
fn split(text: &str, n: usize) -> Vec<&str> {
    let n = n.max(1);
    let step = text.len().div_ceil(n).max(1);
    (0..n).map(|i| text.get((i * step).min(text.len())..((i + 1) * step).min(text.len())).unwrap_or("")).collect()
}

fn usage(size: usize) -> Value {
    json!({"prompt_tokens": 100, "completion_tokens": size / 4 + 1, "total_tokens": 100 + size / 4 + 1})
}

fn gemini_calls(with_index: bool) -> Value {
    let mut calls = json!([
        {"id": "call_mock_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
        {"id": "call_mock_1", "type": "function", "function": {"name": "get_time", "arguments": "{\"zone\":\"UTC\"}"}}
    ]);
    if with_index {
        if let Some(a) = calls.as_array_mut() {
            a.iter_mut().enumerate().for_each(|(i, c)| c["index"] = json!(i));
        }
    }
    calls
}

/// The SSE frames of a streamed answer (comments included), before chunk framing.
pub fn sse_frames(quirks: Quirks, chunks: usize, size: usize) -> Vec<String> {
    let text = Lorem::new(7).text(size);
    let text = &text[..size.min(text.len())];
    let reasoning = Lorem::new(8).text(size / 4 + 1);
    let mut out = Vec::new();
    if quirks == Quirks::Openrouter {
        out.push(": OPENROUTER PROCESSING\n\n".to_string());
        out.push(": OPENROUTER PROCESSING\n\n".to_string());
    }
    out.push(data(&chunk_json(json!({"role": "assistant", "content": ""}), None)));
    let reasoning_field = match quirks {
        Quirks::Deepseek => Some("reasoning_content"),
        Quirks::Openrouter | Quirks::Ollama => Some("reasoning"),
        Quirks::Openai | Quirks::Gemini => None,
    };
    if let Some(field) = reasoning_field {
        for piece in split(&reasoning, (chunks / 4).max(1)) {
            out.push(data(&chunk_json(json!({ field: piece }), None)));
        }
    }
    for piece in split(text, chunks) {
        out.push(data(&chunk_json(json!({"content": piece}), None)));
    }
    if quirks == Quirks::Gemini {
        // Whole calls, several in one chunk, no `index`, and "stop" although tools were called; usage rides
        // on the finish chunk as Gemini does.
        out.push(data(&chunk_json(json!({"tool_calls": gemini_calls(false)}), None)));
        let mut fin = chunk_json(json!({}), Some("stop"));
        fin["usage"] = usage(size);
        out.push(data(&fin));
    } else {
        out.push(data(&chunk_json(json!({}), Some("stop"))));
        let mut u = chunk_json(json!({}), None);
        u["choices"] = json!([]);
        u["usage"] = usage(size);
        out.push(data(&u));
    }
    out.push("data: [DONE]\n\n".to_string());
    out
}

/// The non-streamed chat.completion body.
pub fn completion(quirks: Quirks, size: usize) -> Value {
    let text = Lorem::new(7).text(size);
    let mut message = json!({"role": "assistant", "content": &text[..size.min(text.len())]});
    let reasoning = Lorem::new(8).text(size / 4 + 1);
    match quirks {
        Quirks::Deepseek => message["reasoning_content"] = json!(reasoning),
        Quirks::Openrouter | Quirks::Ollama => message["reasoning"] = json!(reasoning),
        Quirks::Gemini => message["tool_calls"] = gemini_calls(false),
        Quirks::Openai => {}
    }
    json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 1_700_000_000u64, "model": "mock-model",
           "choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": usage(size)})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{parse_response_head, BodyDecoder};

    /// De-chunks a rendered stream and returns (comment lines, parsed data payloads, saw [DONE]).
    fn parse_stream(all: &[u8]) -> (Vec<String>, Vec<Value>, bool) {
        let head = parse_response_head(all).unwrap().unwrap();
        assert_eq!(head.status, 200);
        let mut body = Vec::new();
        let mut dec = BodyDecoder::new(head.framing);
        let used = dec.feed(&all[head.head_len..], &mut |b| body.extend_from_slice(b)).unwrap();
        assert!(dec.is_done());
        assert_eq!(head.head_len + used, all.len());
        let text = String::from_utf8(body).unwrap();
        let (mut comments, mut datas, mut done) = (Vec::new(), Vec::new(), false);
        for frame in text.split("\n\n").filter(|f| !f.is_empty()) {
            if let Some(c) = frame.strip_prefix(':') {
                comments.push(c.trim().to_string());
            } else if frame == "data: [DONE]" {
                done = true;
            } else {
                datas.push(serde_json::from_str(frame.strip_prefix("data: ").unwrap()).unwrap());
            }
        }
        (comments, datas, done)
    }

    fn deltas<'a>(datas: &'a [Value], field: &str) -> Vec<&'a Value> {
        datas
            .iter()
            .filter_map(|d| d["choices"].get(0))
            .map(|c| &c["delta"])
            .filter(|d| d.get(field).is_some())
            .collect()
    }

    #[test]
    fn openai_standard_shape() {
        let r = render(Quirks::Openai, 5, 200, Fault::None);
        let (comments, datas, done) = parse_stream(&r.stream_all);
        assert!(comments.is_empty() && done);
        assert_eq!(datas[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = deltas(&datas, "content").iter().filter_map(|d| d["content"].as_str()).collect();
        assert_eq!(text.len(), 200);
        assert_eq!(deltas(&datas, "content").len(), 6, "role chunk + 5 content chunks");
        let n = datas.len();
        assert_eq!(datas[n - 2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(datas[n - 1]["choices"], json!([]));
        assert!(datas[n - 1]["usage"]["completion_tokens"].is_u64());
        let body: Value = serde_json::from_slice(
            &r.json[r.json.len() - serde_json::to_vec(&completion(Quirks::Openai, 200)).unwrap().len()..],
        )
        .unwrap();
        assert_eq!(body["object"], "chat.completion");
    }

    #[test]
    fn reasoning_quirks_come_before_content() {
        for (q, field) in
            [(Quirks::Deepseek, "reasoning_content"), (Quirks::Openrouter, "reasoning"), (Quirks::Ollama, "reasoning")]
        {
            let (comments, datas, done) = parse_stream(&render(q, 8, 100, Fault::None).stream_all);
            assert!(done);
            let first_reasoning = datas.iter().position(|d| d["choices"][0]["delta"].get(field).is_some()).unwrap();
            let first_text = datas
                .iter()
                .position(|d| d["choices"][0]["delta"]["content"].as_str().is_some_and(|s| !s.is_empty()))
                .unwrap();
            assert!(first_reasoning < first_text, "{q:?}");
            assert_eq!(deltas(&datas, field).len(), 2, "{q:?}: chunks/4 reasoning deltas");
            assert_eq!(
                comments.iter().filter(|c| *c == "OPENROUTER PROCESSING").count(),
                if q == Quirks::Openrouter { 2 } else { 0 }
            );
            assert!(completion(q, 100)["choices"][0]["message"].get(field).is_some(), "{q:?} non-stream");
        }
    }

    #[test]
    fn gemini_batches_whole_calls_without_index_and_says_stop() {
        let (_, datas, done) = parse_stream(&render(Quirks::Gemini, 3, 50, Fault::None).stream_all);
        assert!(done);
        let calls = deltas(&datas, "tool_calls");
        assert_eq!(calls.len(), 1, "all calls in one chunk");
        let calls = calls[0]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 2);
        for c in calls {
            assert!(c.get("index").is_none());
            assert!(c["id"].is_string() && c["function"]["name"].is_string());
            let _: Value = serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap();
        }
        let last = datas.last().unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert!(last["usage"].is_object());
        let msg = &completion(Quirks::Gemini, 50)["choices"][0];
        assert_eq!(
            (msg["finish_reason"].as_str(), msg["message"]["tool_calls"].as_array().map(Vec::len)),
            (Some("stop"), Some(2))
        );
    }

    #[test]
    fn fault_parsing_and_rendering() {
        assert_eq!("status:429:7".parse::<Fault>(), Ok(Fault::Status { code: 429, retry_after: Some(7) }));
        assert_eq!("status:500".parse::<Fault>(), Ok(Fault::Status { code: 500, retry_after: None }));
        assert_eq!("slow-first-byte:250ms".parse::<Fault>(), Ok(Fault::SlowFirstByte(Duration::from_millis(250))));
        assert!("status:abc".parse::<Fault>().is_err());
        assert!("explode".parse::<Fault>().is_err());
        let r = render(Quirks::Openai, 4, 64, Fault::Status { code: 429, retry_after: Some(7) });
        let s = String::from_utf8(r.status_fault).unwrap();
        assert!(
            s.starts_with("HTTP/1.1 429 ") && s.contains("\r\nretry-after: 7\r\n") && s.contains("rate_limit_error"),
            "{s}"
        );
        let head = parse_response_head(&r.malformed_json).unwrap().unwrap();
        assert!(serde_json::from_slice::<Value>(&r.malformed_json[head.head_len..]).is_err());
        assert_eq!(r.malformed_frames.len(), r.frames.len() + 1);
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("20").unwrap(), Duration::from_millis(20));
    }
}
