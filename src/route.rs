//! Routing: picks the provider and the upstream model for a request.
//!
//! Receives a request's [`RouteFacts`] (client model name, whether thinking
//! is enabled, whether a web-search tool is present, the body length) from
//! the lifecycle, the resolved providers, and a lazy token counter; emits a
//! [`Decision`]: provider index, upstream model (or pass-through), the rule
//! that fired and the route's fallback list. Rules, first match wins:
//!
//! 1. `forced`: `--model NAME` sends everything to (first provider, NAME).
//! 2. `explicit`: the client's model is `provider,model` naming a configured
//!    provider (Claude Code's `/model provider,model`); otherwise fall through.
//! 3. `model_map`: exact client-model-name match in `[model_map]`.
//! 4. `long_context`: tokens >= `long_context_threshold`, decided from byte
//!    bounds first (see [`Router::is_long`]).
//! 5. `background`: the client's model name contains `haiku`.
//! 6. `web_search`: a tool whose type starts with `web_search`.
//! 7. `think`: `thinking.type == "enabled"` (not `adaptive`, which Claude
//!    Code sends on every turn).
//! 8. `default`.
//!
//! Rules 4 to 7 apply only when their route is configured. Deciding never
//! allocates; it tokenizes only inside the ambiguous long-context band.

use crate::config::Provider;

/// Default `router.long_context_threshold`, in tokens.
pub const DEFAULT_LONG_CONTEXT_THRESHOLD: u64 = 60_000;
/// Below `threshold * LOW_BYTES_PER_TOKEN` bytes a request is short without
/// counting: a token of a JSON request body averages well over 2 bytes.
pub const LOW_BYTES_PER_TOKEN: u64 = 2;
/// Above `threshold * HIGH_BYTES_PER_TOKEN` bytes a request is long without
/// counting: English text and JSON average about 4 bytes a token.
pub const HIGH_BYTES_PER_TOKEN: u64 = 8;

/// A provider and a model on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Index into `Config::providers`.
    pub provider: usize,
    /// `None`: the client's model name is passed through unchanged.
    pub model: Option<String>,
}

impl Target {
    /// The upstream model name for a client's model name.
    pub fn model_for<'a>(&'a self, client_model: &'a str) -> &'a str {
        self.model.as_deref().unwrap_or(client_model)
    }
}

/// A configured route: where it goes and what to try when that fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub target: Target,
    /// `[router.fallback]`, already resolved: a route without its own list
    /// has a copy of the default route's.
    pub fallbacks: Vec<Target>,
}

/// Why a decision was made; `as_str` is what logs and `x-ccproxy-route` show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Explicit,
    Forced,
    ModelMap,
    LongContext,
    Background,
    WebSearch,
    Think,
    Default,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Explicit => "explicit",
            Reason::Forced => "forced",
            Reason::ModelMap => "model_map",
            Reason::LongContext => "long_context",
            Reason::Background => "background",
            Reason::WebSearch => "web_search",
            Reason::Think => "think",
            Reason::Default => "default",
        }
    }
}

/// What routing looks at in a request; the request converter's first pass
/// provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteFacts<'a> {
    /// The client's `model`.
    pub model: &'a str,
    /// `thinking.type == "enabled"`.
    pub thinking_enabled: bool,
    /// A tool whose `type` starts with `web_search`.
    pub web_search: bool,
    /// Length of the request body in bytes.
    pub body_len: usize,
}

/// Where one request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    /// Index into `Config::providers`.
    pub provider: usize,
    /// The upstream model; `None` passes the client's model through.
    /// Borrowed from the router, or from the request for `explicit`.
    pub model: Option<&'a str>,
    pub reason: Reason,
    /// Tried in order after the target's own retries are exhausted.
    pub fallbacks: &'a [Target],
}

impl<'a> Decision<'a> {
    /// The upstream model name for the request's model name.
    pub fn upstream_model(&self, client_model: &'a str) -> &'a str {
        self.model.unwrap_or(client_model)
    }

    /// Appends `provider,model (reason)`, the `x-ccproxy-route` value.
    pub fn write_label(&self, provider_name: &str, client_model: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(provider_name.as_bytes());
        out.push(b',');
        out.extend_from_slice(self.model.unwrap_or(client_model).as_bytes());
        out.extend_from_slice(b" (");
        out.extend_from_slice(self.reason.as_str().as_bytes());
        out.push(b')');
    }
}

/// The routing table, resolved and validated by config loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Router {
    /// `--model`.
    pub forced: Option<Target>,
    /// `[model_map]`: exact client name → target, in config order.
    pub map: Vec<(String, Target)>,
    pub default: Route,
    pub background: Option<Route>,
    pub think: Option<Route>,
    pub long_context: Option<Route>,
    pub long_context_threshold: u64,
    pub web_search: Option<Route>,
}

impl Default for Router {
    /// Everything to the first provider, client model names passed through.
    fn default() -> Router {
        Router {
            forced: None,
            map: Vec::new(),
            default: Route { target: Target { provider: 0, model: None }, fallbacks: Vec::new() },
            background: None,
            think: None,
            long_context: None,
            long_context_threshold: DEFAULT_LONG_CONTEXT_THRESHOLD,
            web_search: None,
        }
    }
}

impl Router {
    /// Routes one request. `count_tokens` is called at most once, and only
    /// when a long-context route exists and `body_len` falls in the
    /// ambiguous band around `long_context_threshold`.
    pub fn decide<'a>(
        &'a self,
        facts: &RouteFacts<'a>,
        providers: &[Provider],
        count_tokens: &mut dyn FnMut() -> u64,
    ) -> Decision<'a> {
        let on = |t: &'a Target, reason, fallbacks: &'a [Target]| Decision {
            provider: t.provider,
            model: t.model.as_deref(),
            reason,
            fallbacks,
        };
        let default_fallbacks = self.default.fallbacks.as_slice();
        if let Some(t) = &self.forced {
            return on(t, Reason::Forced, default_fallbacks);
        }
        if let Some((name, model)) = facts.model.split_once(',') {
            let model = model.trim();
            if let Some(i) = providers.iter().position(|p| p.name == name.trim()) {
                if !model.is_empty() {
                    return Decision {
                        provider: i,
                        model: Some(model),
                        reason: Reason::Explicit,
                        fallbacks: default_fallbacks,
                    };
                }
            }
        }
        if let Some((_, t)) = self.map.iter().find(|(from, _)| from == facts.model) {
            return on(t, Reason::ModelMap, default_fallbacks);
        }
        if let Some(r) = &self.long_context {
            if self.is_long(facts.body_len, count_tokens) {
                return on(&r.target, Reason::LongContext, &r.fallbacks);
            }
        }
        if let Some(r) = &self.background {
            if contains_ignore_ascii_case(facts.model.as_bytes(), b"haiku") {
                return on(&r.target, Reason::Background, &r.fallbacks);
            }
        }
        if let Some(r) = &self.web_search {
            if facts.web_search {
                return on(&r.target, Reason::WebSearch, &r.fallbacks);
            }
        }
        if let Some(r) = &self.think {
            if facts.thinking_enabled {
                return on(&r.target, Reason::Think, &r.fallbacks);
            }
        }
        on(&self.default.target, Reason::Default, default_fallbacks)
    }

    /// Tokens >= threshold, tokenizing only when the byte length cannot
    /// tell: under `threshold * 2` bytes is short, over `threshold * 8`
    /// bytes is long, in between `count_tokens` decides.
    pub fn is_long(&self, body_len: usize, count_tokens: &mut dyn FnMut() -> u64) -> bool {
        let t = self.long_context_threshold;
        let len = body_len as u64;
        if len < t.saturating_mul(LOW_BYTES_PER_TOKEN) {
            return false;
        }
        if len > t.saturating_mul(HIGH_BYTES_PER_TOKEN) {
            return true;
        }
        count_tokens() >= t
    }

    /// Model names to advertise on `GET /v1/models`: the mapped client names
    /// first, then the forced and default upstream models, without duplicates.
    pub fn advertised(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let names = self
            .map
            .iter()
            .map(|(from, _)| from.as_str())
            .chain(self.forced.as_ref().and_then(|t| t.model.as_deref()))
            .chain(self.default.target.model.as_deref());
        for n in names {
            if !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }
}

fn contains_ignore_ascii_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Legacy shim: the request converter still takes a table and resolves the
/// model itself. The lifecycle builds one from a [`Decision`]; it goes away
/// when `RequestOptions` takes the routed model name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelRoute {
    /// Every request goes to this model, whatever it asked for.
    pub force: Option<String>,
    /// Exact client-model-name → upstream-model-name pairs.
    pub map: Vec<(String, String)>,
    /// Used when the client's model is not in `map`.
    pub default: Option<String>,
}

impl ModelRoute {
    /// The upstream model for a client's model name.
    pub fn resolve<'a>(&'a self, client_model: &'a str) -> &'a str {
        if let Some(m) = &self.force {
            return m;
        }
        if let Some((_, to)) = self.map.iter().find(|(from, _)| from == client_model) {
            return to;
        }
        self.default.as_deref().unwrap_or(client_model)
    }
}
