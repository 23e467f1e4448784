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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_provider;

    fn providers() -> Vec<Provider> {
        ["main", "cheap", "big", "search", "reason"].into_iter().map(test_provider).collect()
    }

    fn t(provider: usize, model: &str) -> Target {
        Target { provider, model: Some(model.to_string()) }
    }

    fn route(provider: usize, model: &str) -> Option<Route> {
        Some(Route { target: t(provider, model), fallbacks: vec![t(0, format!("{model}-fb").as_str())] })
    }

    /// Every rule configured.
    fn full() -> Router {
        Router {
            forced: None,
            map: vec![("claude-sonnet-4-5".into(), t(0, "mapped")), ("claude-haiku-mapped".into(), t(1, "mh"))],
            default: Route { target: t(0, "main-model"), fallbacks: vec![t(2, "default-fb"), t(1, "default-fb2")] },
            background: route(1, "small"),
            think: route(4, "r1"),
            long_context: route(2, "long"),
            long_context_threshold: 1000,
            web_search: route(3, "online"),
        }
    }

    fn facts(model: &str) -> RouteFacts<'_> {
        RouteFacts { model, thinking_enabled: false, web_search: false, body_len: 100 }
    }

    /// Decides and returns `provider,model (reason)`, asserting the
    /// tokenizer was not needed.
    fn label(r: &Router, f: &RouteFacts) -> String {
        let ps = providers();
        let d = r.decide(f, &ps, &mut || panic!("count_tokens called for body_len {}", f.body_len));
        let mut out = Vec::new();
        d.write_label(&ps[d.provider].name, f.model, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn each_rule_fires_alone() {
        let r = full();
        assert_eq!(label(&r, &facts("claude-opus-4-8")), "main,main-model (default)");
        assert_eq!(label(&r, &facts("claude-sonnet-4-5")), "main,mapped (model_map)");
        assert_eq!(label(&r, &facts("claude-3-5-HAIKU-latest")), "cheap,small (background)");
        assert_eq!(label(&r, &RouteFacts { web_search: true, ..facts("x") }), "search,online (web_search)");
        assert_eq!(label(&r, &RouteFacts { thinking_enabled: true, ..facts("x") }), "reason,r1 (think)");
        assert_eq!(label(&r, &RouteFacts { body_len: 8001, ..facts("x") }), "big,long (long_context)");
        assert_eq!(label(&r, &facts("cheap,some/model:free")), "cheap,some/model:free (explicit)");
        let forced = Router { forced: Some(t(0, "forced")), ..full() };
        assert_eq!(label(&forced, &facts("x")), "main,forced (forced)");
    }

    #[test]
    fn precedence_order() {
        let all = RouteFacts { model: "claude-sonnet-4-5", thinking_enabled: true, web_search: true, body_len: 9000 };
        let mut r = Router { forced: Some(t(1, "forced")), ..full() };
        assert_eq!(label(&r, &all), "cheap,forced (forced)");
        r.forced = None;
        assert_eq!(label(&r, &RouteFacts { model: "big,x", ..all }), "big,x (explicit)");
        assert_eq!(label(&r, &all), "main,mapped (model_map)");
        let all = RouteFacts { model: "claude-haiku-4-5", ..all };
        assert_eq!(label(&r, &all), "big,long (long_context)");
        assert_eq!(label(&r, &RouteFacts { body_len: 10, ..all }), "cheap,small (background)");
        let all = RouteFacts { model: "claude-opus", body_len: 10, ..all };
        assert_eq!(label(&r, &all), "search,online (web_search)");
        assert_eq!(label(&r, &RouteFacts { web_search: false, ..all }), "reason,r1 (think)");
        // Unconfigured routes are skipped, whatever the facts say.
        r = Router { default: r.default.clone(), ..Router::default() };
        assert_eq!(label(&r, &RouteFacts { model: "claude-haiku-4-5", ..all }), "main,main-model (default)");
    }

    #[test]
    fn explicit_needs_a_known_provider_and_a_model() {
        let r = full();
        assert_eq!(label(&r, &facts(" reason , deepseek-reasoner ")), "reason,deepseek-reasoner (explicit)");
        // Unknown provider or empty model: the other rules decide.
        assert_eq!(label(&r, &facts("nope,claude-haiku")), "cheap,small (background)");
        assert_eq!(label(&r, &facts("big,")), "main,main-model (default)");
        assert_eq!(label(&r, &facts(",x")), "main,main-model (default)");
        let ps = providers();
        let d = r.decide(&facts("big,m1"), &ps, &mut || 0);
        assert_eq!((d.provider, d.model, d.fallbacks), (2, Some("m1"), r.default.fallbacks.as_slice()));
    }

    #[test]
    fn think_means_enabled_only_and_adaptive_is_not_thinking() {
        // The caller maps `{type:"adaptive"}` to thinking_enabled = false.
        let r = full();
        assert_eq!(label(&r, &facts("claude-opus-4-8")), "main,main-model (default)");
        assert_eq!(label(&r, &RouteFacts { thinking_enabled: true, ..facts("claude-opus-4-8") }), "reason,r1 (think)");
    }

    #[test]
    fn long_context_byte_bounds() {
        let r = full(); // threshold 1000 tokens: band is 2000..=8000 bytes
        let ps = providers();
        let calls = std::cell::Cell::new(0);
        let decide = |len: usize, tokens: u64| {
            let f = RouteFacts { body_len: len, ..facts("x") };
            let d = r.decide(&f, &ps, &mut || {
                calls.set(calls.get() + 1);
                tokens
            });
            d.reason
        };
        // Outside the band the tokenizer is never called.
        assert_eq!(decide(1999, 1_000_000), Reason::Default);
        assert_eq!(decide(0, 1_000_000), Reason::Default);
        assert_eq!(decide(8001, 0), Reason::LongContext);
        assert_eq!(decide(usize::MAX, 0), Reason::LongContext);
        assert_eq!(calls.get(), 0);
        // Inside it, exactly once per decision, and the count decides.
        assert_eq!(decide(2000, 999), Reason::Default);
        assert_eq!(decide(2000, 1000), Reason::LongContext);
        assert_eq!(decide(8000, 999), Reason::Default);
        assert_eq!(decide(5000, 4000), Reason::LongContext);
        assert_eq!(calls.get(), 4);
        // Without a long-context route nothing is counted at all.
        let r = Router { long_context: None, ..full() };
        let d = r.decide(&RouteFacts { body_len: 5000, ..facts("x") }, &ps, &mut || panic!("counted"));
        assert_eq!(d.reason, Reason::Default);
        // Rules above long_context do not count either.
        let r = full();
        let d = r.decide(&RouteFacts { body_len: 5000, ..facts("claude-sonnet-4-5") }, &ps, &mut || panic!("counted"));
        assert_eq!(d.reason, Reason::ModelMap);
    }

    #[test]
    fn huge_thresholds_do_not_overflow() {
        let r = Router { long_context_threshold: u64::MAX, ..full() };
        let ps = providers();
        let d = r.decide(&RouteFacts { body_len: usize::MAX, ..facts("x") }, &ps, &mut || 0);
        assert_eq!(d.reason, Reason::Default);
    }

    #[test]
    fn fallbacks_per_route() {
        let r = full();
        let ps = providers();
        let fb = |f: &RouteFacts| -> Vec<Target> { r.decide(f, &ps, &mut || 0).fallbacks.to_vec() };
        assert_eq!(fb(&facts("x")), vec![t(2, "default-fb"), t(1, "default-fb2")]);
        assert_eq!(fb(&facts("claude-haiku")), vec![t(0, "small-fb")]);
        assert_eq!(fb(&RouteFacts { thinking_enabled: true, ..facts("x") }), vec![t(0, "r1-fb")]);
        assert_eq!(fb(&RouteFacts { web_search: true, ..facts("x") }), vec![t(0, "online-fb")]);
        assert_eq!(fb(&RouteFacts { body_len: 1 << 20, ..facts("x") }), vec![t(0, "long-fb")]);
        // Forced, explicit and mapped requests use the default route's list.
        assert_eq!(fb(&facts("claude-sonnet-4-5")), fb(&facts("x")));
        assert_eq!(fb(&facts("big,y")), fb(&facts("x")));
    }

    #[test]
    fn pass_through_targets_keep_the_client_model() {
        let r = Router::default();
        let ps = providers();
        let d = r.decide(&facts("claude-opus-4-8"), &ps, &mut || 0);
        assert_eq!((d.provider, d.model, d.reason), (0, None, Reason::Default));
        assert_eq!(d.upstream_model("claude-opus-4-8"), "claude-opus-4-8");
        assert_eq!(Target { provider: 1, model: None }.model_for("c"), "c");
        assert_eq!(t(1, "m").model_for("c"), "m");
    }

    #[test]
    fn advertised_names_are_unique() {
        let r = Router { forced: Some(t(0, "mapped")), ..full() };
        assert_eq!(r.advertised(), vec!["claude-sonnet-4-5", "claude-haiku-mapped", "mapped", "main-model"]);
    }

    #[test]
    fn reason_names() {
        let all = [
            (Reason::Explicit, "explicit"),
            (Reason::Forced, "forced"),
            (Reason::ModelMap, "model_map"),
            (Reason::LongContext, "long_context"),
            (Reason::Background, "background"),
            (Reason::WebSearch, "web_search"),
            (Reason::Think, "think"),
            (Reason::Default, "default"),
        ];
        for (r, s) in all {
            assert_eq!(r.as_str(), s);
        }
    }
}
