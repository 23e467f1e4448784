//! `[[providers]]` entries, resolved into [`Provider`]s.
//!
//! Receives one entry as written in the config file (strings already
//! `${ENV}`-interpolated) plus its position, and emits a validated
//! [`Provider`]: its preset's URL, kind, auth and quirks, overridden field by
//! field by what the entry sets. Errors name the field as
//! `providers[N].field`.

use std::fmt;
use std::path::Path;

use anyhow::{anyhow, bail};
use serde::Deserialize;

use super::{model_name, ordered_pairs, presets, url, Origin, Transport, UpstreamConfig};
use crate::convert::{Quirks, ReasoningParam};

/// Which API the provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ProviderKind {
    /// OpenAI Chat Completions: requests and responses are converted.
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic Messages: passed through, only headers rewritten.
    #[serde(rename = "anthropic")]
    Anthropic,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
        }
    }
}

/// How the key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Auth {
    /// `Authorization: Bearer <key>`.
    #[serde(rename = "bearer")]
    Bearer,
    /// `x-api-key: <key>` (plus `anthropic-version`), Anthropic's style.
    #[serde(rename = "x-api-key")]
    XApiKey,
}

impl Auth {
    pub fn as_str(self) -> &'static str {
        match self {
            Auth::Bearer => "bearer",
            Auth::XApiKey => "x-api-key",
        }
    }
}

/// One upstream provider, resolved and validated.
#[derive(Clone, PartialEq)]
pub struct Provider {
    /// Unique, `[A-Za-z0-9._-]+`; routes name it.
    pub name: String,
    /// The preset it started from, if any (shown by `--check-config`).
    pub preset: Option<&'static str>,
    pub kind: ProviderKind,
    /// Where and how to connect. For `anthropic` providers `chat_path` is
    /// the Messages endpoint (`<path>/v1/messages`).
    pub upstream: UpstreamConfig,
    pub auth: Auth,
    /// Models the provider offers (informational; routes may name others).
    pub models: Vec<String>,
    /// Extra request headers, in config order; names and values validated.
    pub headers: Vec<(String, String)>,
    /// Cap applied to the request's `max_tokens`.
    pub max_tokens: Option<u32>,
    pub quirks: Quirks,
}

// By hand: the key is masked by UpstreamConfig's Debug, header values that
// look like credentials are masked here.
impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, String)> =
            self.headers.iter().map(|(k, v)| (k.as_str(), shown_header_value(k, v))).collect();
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("preset", &self.preset)
            .field("kind", &self.kind)
            .field("upstream", &self.upstream)
            .field("auth", &self.auth)
            .field("models", &self.models)
            .field("headers", &headers)
            .field("max_tokens", &self.max_tokens)
            .field("quirks", &self.quirks)
            .finish()
    }
}

/// A header value as logs and `--check-config` may show it: masked when the
/// header's name suggests a credential.
pub(super) fn shown_header_value(name: &str, value: &str) -> String {
    let n = name.to_ascii_lowercase();
    if ["key", "token", "auth", "secret", "cookie", "password"].iter().any(|w| n.contains(w)) {
        super::mask_secret(value)
    } else {
        value.to_string()
    }
}

/// A `[[providers]]` entry as written. Not `Debug`: it holds the key.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileProvider {
    pub name: Option<String>,
    pub preset: Option<String>,
    pub kind: Option<ProviderKind>,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub auth: Option<Auth>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default, deserialize_with = "ordered_pairs")]
    pub headers: Vec<(String, String)>,
    pub max_tokens: Option<u32>,
    pub connect_timeout_secs: Option<u64>,
    pub first_byte_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub pool_max_idle: Option<usize>,
    pub ca_file: Option<String>,
    pub proxy_url: Option<String>,
    pub pdf: Option<bool>,
    pub reasoning_effort: Option<bool>,
    pub quirks: Option<FileQuirks>,
}

/// `[providers.quirks]`: each field overrides the preset's.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileQuirks {
    pub reasoning: Option<FileReasoning>,
    pub openai_reasoning_models: Option<bool>,
    pub deepseek_reasoning_passback: Option<bool>,
    pub gemini: Option<bool>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum FileReasoning {
    None,
    Effort,
    OpenRouter,
}

pub(super) fn reasoning_name(r: ReasoningParam) -> &'static str {
    match r {
        ReasoningParam::None => "none",
        ReasoningParam::Effort => "effort",
        ReasoningParam::OpenRouter => "openrouter",
    }
}

/// Headers the proxy writes itself; a config may not set them.
const RESERVED_HEADERS: &[&str] =
    &["host", "content-length", "transfer-encoding", "connection", "authorization", "x-api-key", "content-type"];

pub(super) fn valid_provider_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Resolves entry number `i` of `[[providers]]`.
pub(super) fn resolve(
    i: usize,
    p: FileProvider,
    origin: &Origin,
    source: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<super::Provider> {
    let field = |f: &str| origin.field(&format!("providers[{i}].{f}"));
    let Some(name) = p.name.map(|n| n.trim().to_string()) else {
        bail!("{}: every provider needs a `name`", origin.field(&format!("providers[{i}]")));
    };
    if !valid_provider_name(&name) {
        bail!(
            "{}: `{}` is not a valid provider name (letters, digits, `.`, `_` and `-`)",
            field("name"),
            name.escape_debug()
        );
    }
    let preset = match p.preset.as_deref().map(str::trim) {
        Some(wanted) => Some(presets::find(wanted).ok_or_else(|| {
            anyhow!("{}: unknown preset `{wanted}`; presets are {}", field("preset"), presets::NAMES.join(", "))
        })?),
        None if p.base_url.is_none() => Some(presets::find(&name).ok_or_else(|| {
            anyhow!(
                "{}: provider `{name}` has no `base_url` and no `preset`; set one (presets are {})",
                origin.field(&format!("providers[{i}]")),
                presets::NAMES.join(", ")
            )
        })?),
        None => None,
    };

    let kind = p.kind.or(preset.as_ref().map(|p| p.kind)).unwrap_or(ProviderKind::OpenAi);
    let auth = p.auth.unwrap_or(match kind {
        ProviderKind::Anthropic => Auth::XApiKey,
        ProviderKind::OpenAi => Auth::Bearer,
    });
    let (base, base_label) = match (&p.base_url, &preset) {
        (Some(b), _) => (b.clone(), field("base_url")),
        (None, Some(pr)) => (pr.base_url.to_string(), format!("preset `{}` base URL", pr.name)),
        (None, None) => bail!("{}: no `base_url`", origin.field(&format!("providers[{i}]"))),
    };
    let mut parsed = url::parse_base_url(&base).map_err(|e| anyhow!("{base_label}: {e}"))?;
    if kind == ProviderKind::Anthropic {
        parsed.chat_path = messages_path(&parsed.chat_path);
    }

    let api_key = p.api_key.filter(|k| !k.is_empty());
    if let Some(k) = &api_key {
        super::check_key(k, &field("api_key"))?;
    }

    let mut quirks = preset.as_ref().map_or(Quirks { pdf_file_parts: true, ..Quirks::default() }, |p| p.quirks.clone());
    if let Some(pdf) = p.pdf {
        quirks.pdf_file_parts = pdf;
    }
    let q = p.quirks.unwrap_or_default();
    match (p.reasoning_effort, q.reasoning) {
        (Some(_), Some(_)) => bail!(
            "{}: both `reasoning_effort` and `quirks.reasoning` are set; keep `quirks.reasoning`",
            field("reasoning_effort")
        ),
        (Some(true), None) => quirks.reasoning = ReasoningParam::Effort,
        (Some(false), None) => quirks.reasoning = ReasoningParam::None,
        (None, Some(r)) => {
            quirks.reasoning = match r {
                FileReasoning::None => ReasoningParam::None,
                FileReasoning::Effort => ReasoningParam::Effort,
                FileReasoning::OpenRouter => ReasoningParam::OpenRouter,
            }
        }
        (None, None) => {}
    }
    if let Some(v) = q.openai_reasoning_models {
        quirks.openai_reasoning_models = v;
    }
    if let Some(v) = q.deepseek_reasoning_passback {
        quirks.deepseek_reasoning_passback = v;
    }
    if let Some(v) = q.gemini {
        quirks.gemini = v;
    }

    let mut models = Vec::with_capacity(p.models.len());
    for (j, m) in p.models.into_iter().enumerate() {
        let m = m.trim().to_string();
        model_name(&m, &field(&format!("models[{j}]")))?;
        if !models.contains(&m) {
            models.push(m);
        }
    }
    for (k, v) in &p.headers {
        check_header(k, v, &field(&format!("headers.\"{}\"", k.escape_debug())))?;
    }
    if p.max_tokens == Some(0) {
        bail!("{}: must be greater than 0", field("max_tokens"));
    }

    let prefix = format!("providers[{i}]");
    let transport = Transport {
        prefix: &prefix,
        connect_timeout_secs: p.connect_timeout_secs,
        first_byte_timeout_secs: p.first_byte_timeout_secs,
        idle_timeout_secs: p.idle_timeout_secs,
        pool_max_idle: p.pool_max_idle,
        ca_file: p.ca_file.as_deref(),
        proxy_url: p.proxy_url.as_deref(),
    };
    let upstream = super::build_upstream(parsed, api_key, &transport, &quirks, false, origin, source, env)?;
    Ok(super::Provider {
        name,
        preset: preset.map(|p| p.name),
        kind,
        upstream,
        auth,
        models,
        headers: p.headers,
        max_tokens: p.max_tokens,
        quirks,
    })
}

/// The Messages endpoint under a base URL's path: `https://api.anthropic.com`
/// and `https://api.anthropic.com/v1` both mean `/v1/messages`.
fn messages_path(chat_path: &str) -> String {
    let prefix = chat_path.strip_suffix("/chat/completions").unwrap_or(chat_path);
    if prefix.ends_with("/v1") {
        format!("{prefix}/messages")
    } else {
        format!("{prefix}/v1/messages")
    }
}

fn check_header(name: &str, value: &str, label: &str) -> anyhow::Result<()> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        bail!("{label}: `{}` is not a valid header name", name.escape_debug());
    }
    if RESERVED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        bail!("{label}: `{name}` is set by the proxy itself and cannot be configured (the key goes in `api_key`)");
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        bail!("{label}: the value contains a line break or control character");
    }
    Ok(())
}

/// A provider with a name and nothing else of note, for tests and benches.
#[doc(hidden)]
pub fn test_provider(name: &str) -> Provider {
    let url = url::parse_base_url("http://127.0.0.1:9/v1").unwrap_or_else(|e| panic!("{e}"));
    Provider {
        name: name.to_string(),
        preset: None,
        kind: ProviderKind::OpenAi,
        upstream: UpstreamConfig {
            base_url: url.base_url,
            tls: false,
            host: url.host,
            port: url.port,
            host_header: url.host_header,
            ca_file: None,
            proxy: None,
            chat_path: url.chat_path,
            api_key: None,
            connect_timeout: std::time::Duration::from_secs(1),
            first_byte_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(1),
            pool_max_idle: 0,
            pdf_file_parts: true,
            reasoning_effort: false,
            is_default: false,
        },
        auth: Auth::Bearer,
        models: Vec::new(),
        headers: Vec::new(),
        max_tokens: None,
        quirks: Quirks::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_messages_path() {
        assert_eq!(messages_path("/chat/completions"), "/v1/messages");
        assert_eq!(messages_path("/v1/chat/completions"), "/v1/messages");
        assert_eq!(messages_path("/proxy/chat/completions"), "/proxy/v1/messages");
    }

    #[test]
    fn header_rules() {
        assert!(check_header("HTTP-Referer", "https://x", "l").is_ok());
        assert!(check_header("X-Title", "ccproxy\tok", "l").is_ok());
        let e = check_header("Authorization", "x", "l").unwrap_err().to_string();
        assert!(e.contains("set by the proxy itself"), "{e}");
        assert!(check_header("Host", "x", "l").is_err());
        assert!(check_header("bad name", "x", "l").is_err());
        let e = check_header("X-A", "a\r\nX-Evil: 1", "l").unwrap_err().to_string();
        assert!(e.contains("line break") && !e.contains("Evil"), "{e}");
    }

    #[test]
    fn credential_like_headers_are_masked() {
        assert_eq!(shown_header_value("X-Title", "ccproxy"), "ccproxy");
        assert_eq!(shown_header_value("x-goog-api-key", "abcdef"), "(masked, 6 chars)");
        assert_eq!(shown_header_value("X-Auth-Token", "abcdef"), "(masked, 6 chars)");
    }

    #[test]
    fn provider_names() {
        assert!(valid_provider_name("open-router_2.x"));
        assert!(!valid_provider_name(""));
        assert!(!valid_provider_name("a,b"));
        assert!(!valid_provider_name("a b"));
    }
}
