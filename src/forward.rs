//! Sending one client request upstream: build the provider's request, send
//! it, retry, fall back.
//!
//! Receives the validated client request ([`Inspected`]), the routing
//! [`Decision`] and the worker's pools from the lifecycle; emits the first
//! upstream [`Exchange`] that answered 2xx, with the target that produced
//! it, or the error the client should see. For OpenAI-kind providers the
//! body is converted (`convert::request`); for Anthropic-kind providers it is
//! passed through with only the model name replaced. Connect failures, 429s
//! and 5xx are retried with backoff (honouring `retry-after` up to
//! `retry_after_cap`), then the route's fallbacks are tried in order. All of
//! this happens before any byte reaches the client, so a retry can never
//! duplicate output; once streaming starts, nothing is retried.

use std::time::Duration;

use monoio::net::TcpStream;

use crate::config::{Auth, Provider, ProviderKind};
use crate::convert::request::{convert_inspected, Inspected, RequestMeta, RequestOptions};
use crate::convert::ToolNames;
use crate::error::ProxyError;
use crate::http::client::write_request_head;
use crate::json;
use crate::lifecycle::Worker;
use crate::metrics::Shard;
use crate::route::Decision;
use crate::upstream::{self, Exchange};

/// First retry waits this long; each further retry doubles it.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Anthropic-kind providers need a version header; clients usually send one.
const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// Client headers forwarded to Anthropic-kind providers.
#[derive(Default, Clone, Copy)]
pub struct ClientHeaders<'a> {
    pub anthropic_version: Option<&'a str>,
    pub anthropic_beta: Option<&'a str>,
}

/// The upstream exchange that will answer the client, and where it went.
pub struct Forwarded {
    pub exchange: Exchange,
    pub provider: usize,
    pub model: String,
    pub meta: RequestMeta,
    /// 0 when the routed target answered on its first try.
    pub retries: u32,
    /// The answer came from a fallback target.
    pub fell_back: bool,
}

/// Why forwarding stopped without an exchange.
pub enum Failed {
    /// Answer the client with this error.
    Error(ProxyError),
    /// The client hung up while we waited; nobody to answer.
    ClientGone,
}

impl From<ProxyError> for Failed {
    fn from(e: ProxyError) -> Self {
        Failed::Error(e)
    }
}

/// Reusable buffers of the connection, lent for the duration of forwarding.
pub struct Buffers<'a> {
    pub body: &'a mut Vec<u8>,
    pub request: &'a mut Vec<u8>,
    pub scratch: &'a mut Vec<u8>,
}

/// Tries the decided target, its retries, then each fallback.
pub async fn forward(
    w: &Worker,
    client_body: &[u8],
    req: &Inspected<'_>,
    headers: ClientHeaders<'_>,
    decision: &Decision<'_>,
    bufs: Buffers<'_>,
    client: &TcpStream,
) -> Result<Forwarded, Failed> {
    let cfg = &w.config;
    let client_model = req.client_model();
    let targets = std::iter::once((decision.provider, decision.upstream_model(client_model)))
        .chain(decision.fallbacks.iter().map(|t| (t.provider, t.model_for(client_model))));
    let mut last: Option<ProxyError> = None;
    let mut retries = 0;
    for (n, (p, model)) in targets.enumerate() {
        let Some(provider) = cfg.providers.get(p) else { continue };
        if n > 0 {
            Shard::bump(&w.shard().fallbacks);
            tracing::info!(provider = %provider.name, model, "falling back");
        }
        for attempt in 0..=cfg.retries {
            if attempt > 0 {
                let wait = match backoff(attempt, last.as_ref(), cfg.retry_after_cap) {
                    Some(d) => d,
                    // The provider asks for a longer pause than we may hold
                    // the client: go to the next target instead.
                    None => break,
                };
                Shard::bump(&w.shard().retries);
                retries += 1;
                if crate::sockets::unless_hung_up(client, monoio::time::sleep(wait)).await.is_none() {
                    return Err(Failed::ClientGone);
                }
            }
            let meta = build(provider, model, client_body, req, headers, bufs.body, bufs.request)?;
            let request = std::mem::take(bufs.request);
            let sent = crate::sockets::unless_hung_up(client, w.pools[p].send(request, w.shard())).await;
            let Some((sent, back)) = sent else { return Err(Failed::ClientGone) };
            *bufs.request = back;
            let err = match sent {
                Ok(ex) if (200..300).contains(&ex.head.status) => {
                    return Ok(Forwarded {
                        exchange: ex,
                        provider: p,
                        model: model.to_string(),
                        meta,
                        retries,
                        fell_back: n > 0,
                    });
                }
                Ok(mut ex) => {
                    let e = upstream::error_from_response(&mut ex, bufs.scratch, provider.upstream.idle_timeout).await;
                    if ex.decoder.is_done() && ex.head.keep_alive {
                        w.pools[p].checkin(ex.conn);
                    }
                    e
                }
                Err(e) => e,
            };
            tracing::warn!(provider = %provider.name, model, attempt, error = %err, "upstream attempt failed");
            if !err.retryable {
                return Err(Failed::Error(err));
            }
            last = Some(err);
        }
    }
    Err(Failed::Error(last.unwrap_or_else(|| ProxyError::internal("no upstream target to try"))))
}

/// How long to wait before retry number `attempt` (1-based); `None` when
/// the provider's `retry-after` exceeds `cap`.
fn backoff(attempt: u32, last: Option<&ProxyError>, cap: Duration) -> Option<Duration> {
    if let Some(secs) = last.and_then(|e| e.retry_after) {
        let d = Duration::from_secs(secs.into());
        return (d <= cap).then_some(d);
    }
    let exp = BACKOFF_BASE.saturating_mul(1 << (attempt - 1).min(10));
    Some(exp.min(BACKOFF_MAX))
}

/// Writes the complete upstream request (head and body) for one target.
fn build(
    provider: &Provider,
    model: &str,
    client_body: &[u8],
    req: &Inspected<'_>,
    headers: ClientHeaders<'_>,
    body: &mut Vec<u8>,
    request: &mut Vec<u8>,
) -> Result<RequestMeta, ProxyError> {
    body.clear();
    let meta = match provider.kind {
        ProviderKind::OpenAi => {
            let opts = RequestOptions { model, quirks: &provider.quirks, max_tokens_cap: provider.max_tokens };
            convert_inspected(req, &opts, body)?
        }
        ProviderKind::Anthropic => {
            replace_model(client_body, model, body)?;
            RequestMeta {
                client_model: req.client_model().to_string(),
                stream: req.stream(),
                tool_names: ToolNames::default(),
            }
        }
    };
    let up = &provider.upstream;
    let key = up.api_key.as_deref();
    // At most: x-api-key, anthropic-version, anthropic-beta, plus the
    // provider's own headers; the common case allocates nothing.
    let mut extra: Vec<(&str, &str)> = Vec::new();
    let bearer = match provider.auth {
        Auth::Bearer => key,
        Auth::XApiKey => {
            if let Some(k) = key {
                extra.push(("x-api-key", k));
            }
            None
        }
    };
    if provider.kind == ProviderKind::Anthropic {
        extra.push(("anthropic-version", headers.anthropic_version.unwrap_or(DEFAULT_ANTHROPIC_VERSION)));
        if let Some(b) = headers.anthropic_beta {
            extra.push(("anthropic-beta", b));
        }
    }
    for (k, v) in &provider.headers {
        extra.push((k.as_str(), v.as_str()));
    }
    request.clear();
    write_request_head(request, &up.chat_path, &up.host_header, bearer, meta.stream, body.len(), &extra);
    request.extend_from_slice(body);
    Ok(meta)
}

/// Copies an Anthropic request body with its top-level `model` replaced:
/// a splice of raw bytes, the rest of the body untouched.
fn replace_model(body: &[u8], model: &str, out: &mut Vec<u8>) -> Result<(), ProxyError> {
    let value = sonic_rs::get(body, ["model"]).map_err(|_| ProxyError::bad_request("model: required"))?;
    let raw = value.as_raw_str();
    let start = (raw.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    if start > body.len() || start + raw.len() > body.len() {
        return Err(ProxyError::internal("cannot locate `model` in the request body"));
    }
    out.reserve(body.len() + model.len());
    out.extend_from_slice(&body[..start]);
    json::write_str(out, model);
    out.extend_from_slice(&body[start + raw.len()..]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_spliced_and_nothing_else_changes() {
        let body = br#"{"max_tokens":5,"model":"claude-x","messages":[{"role":"user","content":"model"}]}"#;
        let mut out = Vec::new();
        replace_model(body, "up\"stream", &mut out).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"max_tokens":5,"model":"up\"stream","messages":[{"role":"user","content":"model"}]}"#
        );
    }

    #[test]
    fn backoff_doubles_and_honours_retry_after_up_to_the_cap() {
        let cap = Duration::from_secs(20);
        assert_eq!(backoff(1, None, cap), Some(Duration::from_millis(250)));
        assert_eq!(backoff(2, None, cap), Some(Duration::from_millis(500)));
        assert_eq!(backoff(30, None, cap), Some(BACKOFF_MAX));
        let mut e = ProxyError::from_upstream_status(429, b"", Some(3));
        assert_eq!(backoff(1, Some(&e), cap), Some(Duration::from_secs(3)));
        e.retry_after = Some(60);
        assert_eq!(backoff(1, Some(&e), cap), None);
    }
}
