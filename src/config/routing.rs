//! `[router]`, `[router.fallback]`, `[model_map]` and `--model`, resolved
//! into a [`Router`].
//!
//! Receives the router table as written (strings already interpolated), the
//! mapping table, the forced model and the resolved providers; emits a
//! [`Router`] whose targets are provider indexes. A target is written
//! `"provider,model"`, `"provider,"` (the client's model name passes
//! through) or a bare `"model"` (on the default route's provider).

use anyhow::{anyhow, bail};
use serde::Deserialize;

use super::{model_name, Origin, Provider};
use crate::route::{Route, Router, Target, DEFAULT_LONG_CONTEXT_THRESHOLD};

/// `[router]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRouter {
    pub default: Option<String>,
    pub background: Option<String>,
    pub think: Option<String>,
    pub long_context: Option<String>,
    pub long_context_threshold: Option<u64>,
    pub web_search: Option<String>,
    #[serde(default)]
    pub fallback: FileFallback,
}

/// `[router.fallback]`: a list of targets per route name.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileFallback {
    pub default: Option<Vec<String>>,
    pub background: Option<Vec<String>>,
    pub think: Option<Vec<String>>,
    pub long_context: Option<Vec<String>>,
    pub web_search: Option<Vec<String>>,
}

/// The legacy inputs: `--model`, whether `--upstream` was given, and
/// `upstream.model`.
pub(super) struct Legacy<'a> {
    pub force: Option<&'a str>,
    pub cli_upstream: bool,
    pub model: Option<String>,
}

/// Parses one target. `default_provider` is used for a bare model name.
fn target(raw: &str, label: &str, providers: &[Provider], default_provider: usize) -> anyhow::Result<Target> {
    let raw = raw.trim();
    if raw.is_empty() {
        bail!("{label}: empty; expected \"provider,model\"");
    }
    let Some((name, model)) = raw.split_once(',') else {
        model_name(raw, label)?;
        return Ok(Target { provider: default_provider, model: Some(raw.to_string()) });
    };
    let name = name.trim();
    let provider = providers.iter().position(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        anyhow!("{label}: unknown provider `{}` (configured: {})", name.escape_debug(), names.join(", "))
    })?;
    let model = model.trim();
    if model.is_empty() {
        return Ok(Target { provider, model: None });
    }
    model_name(model, label)?;
    Ok(Target { provider, model: Some(model.to_string()) })
}

pub(super) fn resolve(
    file: Option<FileRouter>,
    model_map: Vec<(String, String)>,
    legacy: Legacy,
    providers: &[Provider],
    origin: &Origin,
) -> anyhow::Result<Router> {
    let r = file.unwrap_or_default();
    let field = |f: &str| origin.field(&format!("router.{f}"));

    let default = match (&r.default, legacy.cli_upstream, legacy.model) {
        // The command line wins: `--upstream` takes the default route.
        (_, true, model) => Target { provider: 0, model },
        (Some(_), false, Some(_)) => {
            bail!("{}: both `router.default` and `upstream.model` are set; keep one", field("default"))
        }
        (Some(d), false, None) => target(d, &field("default"), providers, 0)?,
        (None, false, model) => Target { provider: 0, model },
    };
    let dp = default.provider;
    let list = |name: &str, v: &Option<Vec<String>>| -> anyhow::Result<Option<Vec<Target>>> {
        let Some(v) = v else { return Ok(None) };
        let targets =
            v.iter().enumerate().map(|(j, s)| target(s, &field(&format!("fallback.{name}[{j}]")), providers, dp));
        targets.collect::<anyhow::Result<Vec<_>>>().map(Some)
    };
    let fb = &r.fallback;
    let default_fallbacks = list("default", &fb.default)?.unwrap_or_default();
    let route = |name: &str, t: &Option<String>, own: &Option<Vec<String>>| -> anyhow::Result<Option<Route>> {
        let fallbacks = list(name, own)?;
        match t {
            Some(t) => Ok(Some(Route {
                target: target(t, &field(name), providers, dp)?,
                fallbacks: fallbacks.unwrap_or_else(|| default_fallbacks.clone()),
            })),
            None if fallbacks.is_some() => {
                bail!("{}: there is no `router.{name}` route to fall back from", field(&format!("fallback.{name}")))
            }
            None => Ok(None),
        }
    };
    let background = route("background", &r.background, &fb.background)?;
    let think = route("think", &r.think, &fb.think)?;
    let long_context = route("long_context", &r.long_context, &fb.long_context)?;
    let web_search = route("web_search", &r.web_search, &fb.web_search)?;
    let long_context_threshold = r.long_context_threshold.unwrap_or(DEFAULT_LONG_CONTEXT_THRESHOLD);
    if long_context_threshold == 0 {
        bail!("{}: must be greater than 0 (tokens)", field("long_context_threshold"));
    }

    let forced = match legacy.force {
        Some(m) => {
            model_name(m, "--model")?;
            Some(Target { provider: 0, model: Some(m.to_string()) })
        }
        None => None,
    };
    let mut map = Vec::with_capacity(model_map.len());
    for (from, to) in model_map {
        let label = origin.field(&format!("model_map.\"{from}\""));
        model_name(&from, &format!("{label} (client name)"))?;
        let t = target(&to, &label, providers, dp)?;
        map.push((from, t));
    }

    Ok(Router {
        forced,
        map,
        default: Route { target: default, fallbacks: default_fallbacks },
        background,
        think,
        long_context,
        long_context_threshold,
        web_search,
    })
}

/// A target as config text: `provider,model`, or `provider,` for
/// pass-through.
pub(super) fn target_text(t: &Target, providers: &[Provider]) -> String {
    let name = providers.get(t.provider).map_or("?", |p| p.name.as_str());
    format!("{name},{}", t.model.as_deref().unwrap_or(""))
}
