//! Response validation for `loadgen run`.
//!
//! Receives, from the client engine (`run.rs`), each response's status and its de-chunked body bytes
//! (all at once for JSON, incrementally for SSE). Emits `Ok` or the `ErrorKind` the response counts
//! as, and for streams the moment the first content delta arrived (for the time-to-first-delta
//! histogram). Anthropic mode enforces what the official SDKs enforce: every event has an `event:`
//! line matching `data.type`, `message_start` comes first and only once, and the stream ends with
//! `message_stop`. OpenAI mode (used against the mock) expects chunks ending in `data: [DONE]`.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;

/// What a run counts as failed. The order is the order of the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Connect,
    Status4xx,
    Status5xx,
    BadJson,
    BadSse,
    IncompleteStream,
    /// An `event: error` (Anthropic) or `data: {"error":…}` (OpenAI) inside a 200 stream.
    StreamError,
    Timeout,
    /// Unparseable status line, headers or chunk framing.
    BadHttp,
    Io,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::Connect,
        ErrorKind::Status4xx,
        ErrorKind::Status5xx,
        ErrorKind::BadJson,
        ErrorKind::BadSse,
        ErrorKind::IncompleteStream,
        ErrorKind::StreamError,
        ErrorKind::Timeout,
        ErrorKind::BadHttp,
        ErrorKind::Io,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Status4xx => "status_4xx",
            ErrorKind::Status5xx => "status_5xx",
            ErrorKind::BadJson => "bad_json",
            ErrorKind::BadSse => "bad_sse",
            ErrorKind::IncompleteStream => "incomplete_stream",
            ErrorKind::StreamError => "stream_error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::BadHttp => "bad_http",
            ErrorKind::Io => "io",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Error counters, one slot per `ErrorKind`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts(pub [u64; 10]);

impl ErrorCounts {
    pub fn add(&mut self, kind: ErrorKind) {
        self.0[kind.index()] += 1;
    }
    pub fn merge(&mut self, other: &ErrorCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
    pub fn get(&self, kind: ErrorKind) -> u64 {
        self.0[kind.index()]
    }
}

/// Which protocol the responses must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// Anthropic Messages (what the proxy serves): `"type":"message"` or a strict Messages SSE stream.
    Anthropic,
    /// OpenAI Chat Completions (what the mock serves): `chat.completion` or chunks ending in `[DONE]`.
    Openai,
    /// Only the status (200) and the HTTP framing are checked.
    Status,
}

pub fn check_status(status: u16) -> Result<(), ErrorKind> {
    match status {
        200 => Ok(()),
        500.. => Err(ErrorKind::Status5xx),
        // Anything else that is not 200 (including 1xx/3xx) is the client's "wrong answer".
        _ => Err(ErrorKind::Status4xx),
    }
}

#[derive(Deserialize)]
struct Typed<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct OpenAiBody<'a> {
    #[serde(borrow)]
    object: Option<Cow<'a, str>>,
    choices: Option<IgnoredAny>,
}

/// Validates a complete non-streaming body.
pub fn check_json_body(expect: Expect, body: &[u8]) -> Result<(), ErrorKind> {
    match expect {
        Expect::Status => Ok(()),
        Expect::Anthropic => match serde_json::from_slice::<Typed>(body) {
            Ok(t) if t.ty.as_deref() == Some("message") => Ok(()),
            _ => Err(ErrorKind::BadJson),
        },
        Expect::Openai => match serde_json::from_slice::<OpenAiBody>(body) {
            Ok(b) if b.object.as_deref() == Some("chat.completion") && b.choices.is_some() => Ok(()),
            _ => Err(ErrorKind::BadJson),
        },
    }
}

#[derive(Deserialize)]
struct OpenAiChunk<'a> {
    #[serde(borrow)]
    choices: Option<Vec<OpenAiChoice<'a>>>,
    error: Option<IgnoredAny>,
}

/// Once the first delta has been seen only syntax and the error field matter; skipping the strings
/// instead of decoding them keeps the validator from becoming the bottleneck on long streams.
#[derive(Deserialize)]
struct OpenAiChunkLite {
    choices: Option<IgnoredAny>,
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct OpenAiChoice<'a> {
    #[serde(borrow)]
    delta: Option<OpenAiDelta<'a>>,
}

#[derive(Deserialize)]
struct OpenAiDelta<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reasoning: Option<Cow<'a, str>>,
    tool_calls: Option<IgnoredAny>,
}

/// Incremental SSE validator: feed body bytes as they arrive, then call `finish`.
#[derive(Debug)]
pub struct SseValidator {
    expect: Expect,
    line: Vec<u8>,
    event: Option<Vec<u8>>,
    data: Vec<u8>,
    has_data: bool,
    started: bool,
    done: bool,
    first_delta: bool,
    error: Option<ErrorKind>,
}

impl SseValidator {
    pub fn new(expect: Expect) -> Self {
        Self {
            expect,
            line: Vec::new(),
            event: None,
            data: Vec::new(),
            has_data: false,
            started: false,
            done: false,
            first_delta: false,
            error: None,
        }
    }

    /// Feeds body bytes; returns true if this call delivered the first content delta.
    pub fn feed(&mut self, mut bytes: &[u8]) -> bool {
        if self.expect == Expect::Status {
            return false;
        }
        let before = self.first_delta;
        while self.error.is_none() && !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(p) => {
                    if self.line.is_empty() {
                        self.on_line(&bytes[..p]);
                    } else {
                        let mut line = std::mem::take(&mut self.line);
                        line.extend_from_slice(&bytes[..p]);
                        self.on_line(&line);
                        line.clear();
                        self.line = line;
                    }
                    bytes = &bytes[p + 1..];
                }
                None => {
                    self.line.extend_from_slice(bytes);
                    break;
                }
            }
        }
        !before && self.first_delta
    }

    /// The verdict once the body has ended.
    pub fn finish(&mut self) -> Result<(), ErrorKind> {
        if self.expect == Expect::Status {
            return Ok(());
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        if !self.line.is_empty() || self.has_data || self.event.is_some() {
            // A final event without its blank line was cut off.
            return Err(ErrorKind::IncompleteStream);
        }
        if self.done {
            Ok(())
        } else {
            Err(ErrorKind::IncompleteStream)
        }
    }

    fn on_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data || self.event.is_some() {
                self.dispatch();
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(p) => {
                let v = &line[p + 1..];
                (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => self.event = Some(value.to_vec()),
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let event = self.event.take();
        let verdict = if self.done {
            Err(ErrorKind::BadSse)
        } else {
            match self.expect {
                Expect::Anthropic => self.anthropic_event(event.as_deref()),
                Expect::Openai => self.openai_event(),
                Expect::Status => Ok(()),
            }
        };
        self.data.clear();
        self.has_data = false;
        if let Err(e) = verdict {
            self.error = Some(e);
        }
    }

    fn anthropic_event(&mut self, event: Option<&[u8]>) -> Result<(), ErrorKind> {
        // The SDKs dispatch on the `event:` line; an event without one is silently lost.
        let name = event.ok_or(ErrorKind::BadSse)?;
        let typed: Typed = serde_json::from_slice(&self.data).map_err(|_| ErrorKind::BadJson)?;
        if typed.ty.as_deref().map(str::as_bytes) != Some(name) {
            return Err(ErrorKind::BadSse);
        }
        match (self.started, name) {
            (_, b"error") => Err(ErrorKind::StreamError),
            (false, b"message_start") => {
                self.started = true;
                Ok(())
            }
            (false, _) | (true, b"message_start") => Err(ErrorKind::BadSse),
            (true, b"content_block_delta") => {
                self.first_delta = true;
                Ok(())
            }
            (true, b"message_stop") => {
                self.done = true;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn openai_event(&mut self) -> Result<(), ErrorKind> {
        if self.data == b"[DONE]" {
            self.done = true;
            return Ok(());
        }
        if self.first_delta {
            let chunk: OpenAiChunkLite = serde_json::from_slice(&self.data).map_err(|_| ErrorKind::BadJson)?;
            return match (chunk.error, chunk.choices) {
                (Some(_), _) => Err(ErrorKind::StreamError),
                (None, None) => Err(ErrorKind::BadSse),
                (None, Some(_)) => Ok(()),
            };
        }
        let chunk: OpenAiChunk = serde_json::from_slice(&self.data).map_err(|_| ErrorKind::BadJson)?;
        if chunk.error.is_some() {
            return Err(ErrorKind::StreamError);
        }
        let choices = chunk.choices.ok_or(ErrorKind::BadSse)?;
        let has_delta = choices.iter().filter_map(|c| c.delta.as_ref()).any(|d| {
            let non_empty = |s: &Option<Cow<str>>| s.as_deref().is_some_and(|s| !s.is_empty());
            non_empty(&d.content)
                || non_empty(&d.reasoning_content)
                || non_empty(&d.reasoning)
                || d.tool_calls.is_some()
        });
        self.first_delta |= has_delta;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str, data: &str) -> String {
        format!("event: {name}\ndata: {data}\n\n")
    }

    fn good_stream() -> String {
        [
            ev("message_start", r#"{"type":"message_start","message":{"content":[]}}"#),
            ev("content_block_start", r#"{"type":"content_block_start","index":0}"#),
            ev("ping", r#"{"type":"ping"}"#),
            ev("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"text":"hi"}}"#),
            ev("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
            ev("message_delta", r#"{"type":"message_delta","usage":{"output_tokens":1}}"#),
            ev("message_stop", r#"{"type":"message_stop"}"#),
        ]
        .concat()
    }

    fn run(expect: Expect, body: &str, step: usize) -> (Result<(), ErrorKind>, usize) {
        let mut v = SseValidator::new(expect);
        let mut first_at = usize::MAX;
        for (i, piece) in body.as_bytes().chunks(step).enumerate() {
            if v.feed(piece) {
                first_at = i;
            }
        }
        (v.finish(), first_at)
    }

    #[test]
    fn good_anthropic_stream_passes_whatever_the_split() {
        let body = good_stream();
        for step in [1, 7, 64, body.len()] {
            let (res, first) = run(Expect::Anthropic, &body, step);
            assert_eq!(res, Ok(()), "step {step}");
            assert_ne!(first, usize::MAX, "first delta seen, step {step}");
        }
        let crlf = body.replace('\n', "\r\n");
        assert_eq!(run(Expect::Anthropic, &crlf, 5).0, Ok(()));
        // The first delta is reported in the piece that completes it, not before.
        let cut = body.find("event: content_block_delta").unwrap();
        let mut v = SseValidator::new(Expect::Anthropic);
        assert!(!v.feed(&body.as_bytes()[..cut + 30]));
        assert!(v.feed(&body.as_bytes()[cut + 30..]));
    }

    #[test]
    fn broken_anthropic_streams_are_errors() {
        let good = good_stream();
        let no_stop = good.replace(&ev("message_stop", r#"{"type":"message_stop"}"#), "");
        assert_eq!(run(Expect::Anthropic, &no_stop, 9).0, Err(ErrorKind::IncompleteStream));

        let bad_json = good.replace(r#"{"type":"ping"}"#, r#"{"type":"ping""#);
        assert_eq!(run(Expect::Anthropic, &bad_json, 9).0, Err(ErrorKind::BadJson));

        let delta = ev("content_block_delta", r#"{"type":"content_block_delta","index":0}"#);
        let before_start = format!("{delta}{good}");
        assert_eq!(run(Expect::Anthropic, &before_start, 9).0, Err(ErrorKind::BadSse));

        let second_start = good.replacen(
            "event: ping\ndata: {\"type\":\"ping\"}",
            "event: message_start\ndata: {\"type\":\"message_start\"}",
            1,
        );
        assert_eq!(run(Expect::Anthropic, &second_start, 9).0, Err(ErrorKind::BadSse));

        let mismatch = good.replace("event: ping", "event: pong");
        assert_eq!(run(Expect::Anthropic, &mismatch, 9).0, Err(ErrorKind::BadSse));

        let no_event_line = good.replace("event: content_block_stop\n", "");
        assert_eq!(run(Expect::Anthropic, &no_event_line, 9).0, Err(ErrorKind::BadSse));

        let after_stop = format!("{good}{}", ev("ping", r#"{"type":"ping"}"#));
        assert_eq!(run(Expect::Anthropic, &after_stop, 9).0, Err(ErrorKind::BadSse));

        let err = good.replace(
            &ev("message_delta", r#"{"type":"message_delta","usage":{"output_tokens":1}}"#),
            &ev("error", r#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#),
        );
        assert_eq!(run(Expect::Anthropic, &err, 9).0, Err(ErrorKind::StreamError));

        let truncated = &good[..good.len() - 1];
        assert_eq!(run(Expect::Anthropic, truncated, 9).0, Err(ErrorKind::IncompleteStream));
        assert_eq!(run(Expect::Anthropic, "", 9).0, Err(ErrorKind::IncompleteStream));
    }

    #[test]
    fn openai_streams() {
        let role = r#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        let text = r#"data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}"#;
        let usage = r#"data: {"choices":[],"usage":{"prompt_tokens":1}}"#;
        let good = format!(": OPENROUTER PROCESSING\n\n{role}\n\n{text}\n\n{usage}\n\ndata: [DONE]\n\n");
        let (res, first) = run(Expect::Openai, &good, good.len());
        assert_eq!((res, first), (Ok(()), 0));
        // The empty role delta is not a content delta.
        let mut v = SseValidator::new(Expect::Openai);
        assert!(!v.feed(format!("{role}\n\n").as_bytes()));
        let no_done = good.replace("data: [DONE]\n\n", "");
        assert_eq!(run(Expect::Openai, &no_done, 3).0, Err(ErrorKind::IncompleteStream));
        let err = format!("{role}\n\ndata: {{\"error\":{{\"message\":\"x\"}}}}\n\n");
        assert_eq!(run(Expect::Openai, &err, 3).0, Err(ErrorKind::StreamError));
        assert_eq!(run(Expect::Openai, "data: {oops\n\ndata: [DONE]\n\n", 3).0, Err(ErrorKind::BadJson));
        // After the first delta the lighter parse still catches errors and broken JSON.
        let late_err = format!("{text}\n\ndata: {{\"error\":{{\"message\":\"x\"}}}}\n\ndata: [DONE]\n\n");
        assert_eq!(run(Expect::Openai, &late_err, 4).0, Err(ErrorKind::StreamError));
        let late_bad = format!("{text}\n\ndata: {{\"choices\":[\n\ndata: [DONE]\n\n");
        assert_eq!(run(Expect::Openai, &late_bad, 4).0, Err(ErrorKind::BadJson));
    }

    #[test]
    fn json_bodies_and_status() {
        assert_eq!(check_json_body(Expect::Anthropic, br#"{"id":"m","type":"message","content":[]}"#), Ok(()));
        assert_eq!(check_json_body(Expect::Anthropic, br#"{"type":"error"}"#), Err(ErrorKind::BadJson));
        assert_eq!(check_json_body(Expect::Anthropic, br#"{"type":"message""#), Err(ErrorKind::BadJson));
        assert_eq!(check_json_body(Expect::Openai, br#"{"object":"chat.completion","choices":[]}"#), Ok(()));
        assert_eq!(check_json_body(Expect::Openai, br#"{"object":"chat.completion"}"#), Err(ErrorKind::BadJson));
        assert_eq!(check_json_body(Expect::Status, b"not json"), Ok(()));
        assert_eq!(check_status(200), Ok(()));
        assert_eq!(check_status(429), Err(ErrorKind::Status4xx));
        assert_eq!(check_status(502), Err(ErrorKind::Status5xx));
    }
}
