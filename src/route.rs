//! Model routing: picks the upstream model for a request.
//!
//! Receives the model name the client sent (from the request converter) and
//! emits the model name to put in the upstream request. Precedence: a forced
//! model (`--model`), then the exact-name mapping table, then the configured
//! default, then the client's own name unchanged.

/// The routing table of one upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelRoute {
    /// `--model`: every request goes to this model, whatever it asked for.
    pub force: Option<String>,
    /// Exact client-model-name → upstream-model-name pairs, in config order.
    pub map: Vec<(String, String)>,
    /// Used when the client's model is not in `map`.
    pub default: Option<String>,
}

impl ModelRoute {
    /// The upstream model for a client's model name. Never allocates.
    pub fn resolve<'a>(&'a self, client_model: &'a str) -> &'a str {
        if let Some(m) = &self.force {
            return m;
        }
        if let Some((_, to)) = self.map.iter().find(|(from, _)| from == client_model) {
            return to;
        }
        if let Some(m) = &self.default {
            return m;
        }
        client_model
    }

    /// Model names to advertise on `GET /v1/models`: the mapped client names
    /// first, then the forced/default upstream models, without duplicates.
    pub fn advertised(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let names =
            self.map.iter().map(|(from, _)| from.as_str()).chain(self.force.as_deref()).chain(self.default.as_deref());
        for n in names {
            if !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ModelRoute {
        ModelRoute {
            force: None,
            map: vec![("claude-haiku-4-5".into(), "small".into()), ("claude-opus-4-8".into(), "big".into())],
            default: Some("fallback".into()),
        }
    }

    #[test]
    fn precedence_force_map_default_passthrough() {
        let mut r = table();
        assert_eq!(r.resolve("claude-haiku-4-5"), "small");
        assert_eq!(r.resolve("claude-opus-4-8"), "big");
        assert_eq!(r.resolve("other"), "fallback");
        r.default = None;
        assert_eq!(r.resolve("other"), "other");
        r.force = Some("forced".into());
        assert_eq!(r.resolve("claude-haiku-4-5"), "forced");
    }

    #[test]
    fn advertised_names_are_unique() {
        let mut r = table();
        r.force = Some("small".into());
        assert_eq!(r.advertised(), vec!["claude-haiku-4-5", "claude-opus-4-8", "small", "fallback"]);
    }
}
