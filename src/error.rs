//! The one error type of the request path.
//!
//! Receives failures from every stage (client input, upstream I/O and status,
//! our own bugs) and emits them as Anthropic-shaped error JSON. Turning an
//! error into an HTTP response happens in exactly one place, the lifecycle's
//! `respond_error`; inside an SSE stream the same JSON becomes `event: error`.

use std::borrow::Cow;
use std::fmt;

use sonic_rs::JsonValueTrait;

use crate::json;

/// Which side of the proxy a failure belongs to. Logged with every error so
/// an operator can tell a bad client from a bad provider from our own bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Internal,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Internal => "internal",
        }
    }
}

/// Anthropic's error `type` vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    InvalidRequest,
    Authentication,
    Billing,
    Permission,
    NotFound,
    RequestTooLarge,
    RateLimit,
    Api,
    Timeout,
    Overloaded,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "invalid_request_error",
            ErrorType::Authentication => "authentication_error",
            ErrorType::Billing => "billing_error",
            ErrorType::Permission => "permission_error",
            ErrorType::NotFound => "not_found_error",
            ErrorType::RequestTooLarge => "request_too_large",
            ErrorType::RateLimit => "rate_limit_error",
            ErrorType::Api => "api_error",
            ErrorType::Timeout => "timeout_error",
            ErrorType::Overloaded => "overloaded_error",
        }
    }
}

/// A failure on the request path. Construction never allocates when the
/// message is a literal; upstream-derived messages allocate, but only on the
/// error path.
#[derive(Debug, Clone)]
pub struct ProxyError {
    pub side: Side,
    pub kind: ErrorType,
    /// HTTP status the client sees when the error happens before streaming.
    pub status: u16,
    pub message: Cow<'static, str>,
    /// `retry-after` value passed through from an upstream 429/5xx.
    pub retry_after: Option<u32>,
    /// Worth retrying or falling back before anything reached the client:
    /// an unreachable upstream, a 429 or a 5xx.
    pub retryable: bool,
}

impl ProxyError {
    pub fn new(side: Side, status: u16, kind: ErrorType, message: impl Into<Cow<'static, str>>) -> Self {
        ProxyError { side, kind, status, message: message.into(), retry_after: None, retryable: false }
    }

    /// 400 `invalid_request_error` caused by what the client sent.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Side::Client, 400, ErrorType::InvalidRequest, message)
    }

    /// A client-side failure with an explicit status and type.
    pub fn client(status: u16, kind: ErrorType, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Side::Client, status, kind, message)
    }

    /// 502 `api_error`: the upstream could not be reached or answered nonsense.
    pub fn bad_gateway(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Side::Upstream, 502, ErrorType::Api, message)
    }

    /// 500 `api_error`: a bug or resource failure inside the proxy.
    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Side::Internal, 500, ErrorType::Api, message)
    }

    /// Maps an upstream HTTP error status to the Anthropic error a client
    /// expects. `body` is the upstream error body; its `error.message` (OpenAI
    /// shape) or `message`/`error` string is carried over when present so the
    /// user sees the provider's own explanation.
    pub fn from_upstream_status(status: u16, body: &[u8], retry_after: Option<u32>) -> Self {
        let (out_status, kind) = match status {
            400 | 422 => (400, ErrorType::InvalidRequest),
            401 => (401, ErrorType::Authentication),
            402 => (402, ErrorType::Billing),
            403 => (403, ErrorType::Permission),
            404 => (404, ErrorType::NotFound),
            408 | 504 => (504, ErrorType::Timeout),
            413 => (413, ErrorType::RequestTooLarge),
            429 => (429, ErrorType::RateLimit),
            503 | 529 => (529, ErrorType::Overloaded),
            500..=599 => (status, ErrorType::Api),
            _ => (502, ErrorType::Api),
        };
        let detail = upstream_message(body);
        let message = match detail {
            Some(m) => format!("upstream returned HTTP {status}: {m}"),
            None => format!("upstream returned HTTP {status}"),
        };
        let mut e = Self::new(Side::Upstream, out_status, kind, message);
        e.retry_after = retry_after;
        e.retryable = status == 429 || status >= 500;
        e
    }

    /// Writes `{"type":"error","error":{"type":..,"message":..}}`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"type\":\"error\",\"error\":{\"type\":\"");
        out.extend_from_slice(self.kind.as_str().as_bytes());
        out.extend_from_slice(b"\",\"message\":");
        json::write_str(out, &self.message);
        out.extend_from_slice(b"}}");
    }

    /// Writes the same JSON as an SSE `event: error`, for failures after the
    /// HTTP 200 head has gone out.
    pub fn write_sse(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"event: error\ndata: ");
        self.write_json(out);
        out.extend_from_slice(b"\n\n");
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error ({} {}): {}", self.side.as_str(), self.status, self.kind.as_str(), self.message)
    }
}

impl std::error::Error for ProxyError {}

/// Longest upstream error text we relay; providers sometimes echo whole
/// prompts back in their errors.
const MAX_UPSTREAM_MESSAGE: usize = 1024;

/// Extracts a human message from an upstream error body: OpenAI's
/// `{"error":{"message":..}}`, or `{"error":".."}`, or `{"message":..}`, or
/// short plain text.
pub fn upstream_message(body: &[u8]) -> Option<String> {
    if !json::depth_within(body, json::MAX_DEPTH) {
        return None;
    }
    let pick = |s: &str| -> Option<String> {
        // Scrub before cutting, or a key straddling the cut would survive
        // as a prefix that no later scrub recognises.
        let scrubbed = crate::redact::scrub_str(s);
        let s = scrubbed.trim();
        if s.is_empty() {
            return None;
        }
        let mut end = s.len().min(MAX_UPSTREAM_MESSAGE);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        Some(s[..end].to_string())
    };
    if let Ok(v) = sonic_rs::get(body, &["error", "message"]) {
        if let Some(s) = v.as_str() {
            return pick(s);
        }
    }
    // Gemini's OpenAI endpoint wraps its errors in an array.
    if let Ok(v) = sonic_rs::get(body, &sonic_rs::pointer![0, "error", "message"]) {
        if let Some(s) = v.as_str() {
            return pick(s);
        }
    }
    if let Ok(v) = sonic_rs::get(body, &["error"]) {
        if let Some(s) = v.as_str() {
            return pick(s);
        }
    }
    if let Ok(v) = sonic_rs::get(body, &["message"]) {
        if let Some(s) = v.as_str() {
            return pick(s);
        }
    }
    let text = std::str::from_utf8(body).ok()?;
    if text.trim_start().starts_with(['{', '[', '<']) {
        return None;
    }
    pick(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_of(e: &ProxyError) -> String {
        let mut v = Vec::new();
        e.write_json(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn status_mapping_follows_the_table() {
        let cases = [
            (400, 400, "invalid_request_error"),
            (401, 401, "authentication_error"),
            (403, 403, "permission_error"),
            (404, 404, "not_found_error"),
            (413, 413, "request_too_large"),
            (429, 429, "rate_limit_error"),
            (500, 500, "api_error"),
            (502, 502, "api_error"),
            (503, 529, "overloaded_error"),
            (529, 529, "overloaded_error"),
        ];
        for (up, status, kind) in cases {
            let e = ProxyError::from_upstream_status(up, b"", None);
            assert_eq!(e.status, status, "upstream {up}");
            assert_eq!(e.kind.as_str(), kind, "upstream {up}");
        }
    }

    #[test]
    fn upstream_message_is_carried_and_escaped() {
        let e = ProxyError::from_upstream_status(
            400,
            br#"{"error":{"message":"bad \"tool\"","type":"invalid_request_error"}}"#,
            None,
        );
        let s = json_of(&e);
        assert_eq!(
            s,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"upstream returned HTTP 400: bad \"tool\""}}"#
        );
        let parsed: sonic_rs::Value = sonic_rs::from_str(&s).unwrap();
        assert!(sonic_rs::JsonValueTrait::is_object(&parsed));
    }

    #[test]
    fn gemini_array_errors_keep_their_message() {
        let body = br#"[{"error":{"code":400,"message":"Invalid JSON payload received. Unknown name \"x\"","status":"INVALID_ARGUMENT"}}]"#;
        assert_eq!(upstream_message(body).as_deref(), Some("Invalid JSON payload received. Unknown name \"x\""));
    }

    #[test]
    fn plain_text_and_string_error_bodies() {
        assert_eq!(upstream_message(b"model not loaded").as_deref(), Some("model not loaded"));
        assert_eq!(upstream_message(br#"{"error":"boom"}"#).as_deref(), Some("boom"));
        assert_eq!(upstream_message(b"<html>502</html>"), None);
        assert_eq!(upstream_message(b""), None);
    }

    #[test]
    fn sse_error_event_shape() {
        let mut v = Vec::new();
        ProxyError::bad_gateway("reset").write_sse(&mut v);
        assert_eq!(
            std::str::from_utf8(&v).unwrap(),
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"reset\"}}\n\n"
        );
    }
}
