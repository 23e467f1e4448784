//! Per-provider conversion quirks.
//!
//! Receives nothing at run time: a [`Quirks`] value is built once per
//! provider by the config (from its preset, overridable field by field) and
//! handed to the request converter in [`super::request::RequestOptions`].
//! It emits decisions: which reasoning parameter to write, whether the token
//! limit is `max_tokens` or `max_completion_tokens`, whether sampling fields
//! go out, and which history rewrites (DeepSeek, Gemini) apply.
//!
//! The response and stream converters need no quirks: what they accept
//! (`reasoning_content`/`reasoning`, index-less tool calls, thought
//! signatures, `finish_reason:"error"`) is unambiguous, so they accept it
//! from every provider.

/// How `thinking` is expressed upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReasoningParam {
    /// Dropped: the provider has no such parameter (or rejects it).
    #[default]
    None,
    /// `"reasoning_effort":"low|medium|high"` (OpenAI, Groq, xAI, Gemini, DeepSeek...).
    Effort,
    /// `"reasoning":{"effort":"low|medium|high"}` (OpenRouter).
    OpenRouter,
}

/// What a provider needs beyond plain Chat Completions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quirks {
    pub reasoning: ReasoningParam,
    /// OpenAI's reasoning models (`o1*`, `o3*`, `o4*`, `gpt-5*`): the limit
    /// is sent as `max_completion_tokens`, `reasoning_effort` is sent (and
    /// only to them), and `temperature`/`top_p` are dropped because those
    /// models refuse any value but the default.
    pub openai_reasoning_models: bool,
    /// DeepSeek thinking mode: an assistant turn with `tool_calls` carries
    /// its thinking blocks' text back as `reasoning_content`.
    pub deepseek_reasoning_passback: bool,
    /// Gemini's OpenAI endpoint: tool schemas are cleaned of the keywords it
    /// rejects, and thought signatures (kept inside tool ids) go back as
    /// `extra_content.google.thought_signature`.
    pub gemini: bool,
    /// The provider accepts `{"type":"file"}` parts for base64 PDFs.
    pub pdf_file_parts: bool,
}

/// What the quirks decide for one upstream model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModelQuirks {
    /// Where the effort goes; `None` drops `thinking`.
    pub reasoning: ReasoningParam,
    /// `max_completion_tokens` instead of `max_tokens`.
    pub completion_tokens: bool,
    /// `temperature` and `top_p` are forwarded.
    pub sampling: bool,
}

impl Quirks {
    /// Resolves the quirks for the routed upstream `model`.
    pub(crate) fn for_model(&self, model: &str) -> ModelQuirks {
        if !self.openai_reasoning_models {
            return ModelQuirks { reasoning: self.reasoning, completion_tokens: false, sampling: true };
        }
        if !is_openai_reasoning_model(model) {
            // gpt-4o and friends answer 400 to `reasoning_effort`.
            return ModelQuirks { reasoning: ReasoningParam::None, completion_tokens: false, sampling: true };
        }
        // `gpt-5-chat-latest` shares the prefix but is not a reasoning model:
        // it takes max_completion_tokens but refuses reasoning_effort.
        let chat = model.contains("-chat");
        ModelQuirks {
            reasoning: if chat { ReasoningParam::None } else { ReasoningParam::Effort },
            completion_tokens: true,
            sampling: chat,
        }
    }
}

/// `o1*`, `o3*`, `o4*` or `gpt-5*`, after an optional `vendor/` prefix.
pub(crate) fn is_openai_reasoning_model(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model);
    ["o1", "o3", "o4", "gpt-5"].iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_model_names() {
        for m in ["o1", "o1-mini", "o3-pro", "o4-mini-2025-04-16", "gpt-5", "gpt-5-mini", "openai/gpt-5.1"] {
            assert!(is_openai_reasoning_model(m), "{m}");
        }
        for m in ["gpt-4o", "gpt-4.1-mini", "omni", "chatgpt-4o-latest", "deepseek-chat", ""] {
            assert!(!is_openai_reasoning_model(m), "{m}");
        }
    }

    #[test]
    fn per_model_decisions() {
        let plain = Quirks { reasoning: ReasoningParam::OpenRouter, ..Quirks::default() };
        assert_eq!(
            plain.for_model("o3"),
            ModelQuirks { reasoning: ReasoningParam::OpenRouter, completion_tokens: false, sampling: true }
        );
        let openai = Quirks { openai_reasoning_models: true, ..Quirks::default() };
        assert_eq!(
            openai.for_model("o4-mini"),
            ModelQuirks { reasoning: ReasoningParam::Effort, completion_tokens: true, sampling: false }
        );
        assert_eq!(
            openai.for_model("gpt-4o"),
            ModelQuirks { reasoning: ReasoningParam::None, completion_tokens: false, sampling: true }
        );
        assert_eq!(
            openai.for_model("gpt-5-chat-latest"),
            ModelQuirks { reasoning: ReasoningParam::None, completion_tokens: true, sampling: true }
        );
    }
}
