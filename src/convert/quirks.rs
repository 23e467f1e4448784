//! Per-provider converter quirks.
//!
//! Receives nothing at run time: a [`Quirks`] value is built once per
//! provider by config resolution (from its preset, then the user's
//! `[providers.quirks]` overrides) and handed to the converters, which read
//! it to shape the upstream request and to interpret the upstream's answer.
//! (Placeholder definition owned by the "quirks" helper; fields per the
//! issue 4 design.)

/// How an Anthropic `thinking` request is expressed upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReasoningParam {
    /// The provider takes no reasoning parameter: thinking is dropped.
    #[default]
    None,
    /// OpenAI's `reasoning_effort`.
    Effort,
    /// OpenRouter's `reasoning: {effort}` object.
    OpenRouter,
}

/// What a provider does differently from plain Chat Completions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quirks {
    pub reasoning: ReasoningParam,
    /// For o1*/o3*/o4*/gpt-5* models: `max_completion_tokens` instead of
    /// `max_tokens`, and `reasoning_effort` allowed.
    pub openai_reasoning_models: bool,
    /// Assistant turns with `tool_calls` carry `reasoning_content` (from the
    /// turn's thinking blocks).
    pub deepseek_reasoning_passback: bool,
    /// Clean JSON schemas of rejected keywords; `thought_signature` round
    /// trip through tool ids.
    pub gemini: bool,
    /// The provider accepts OpenAI `file` content parts (base64 PDFs).
    pub pdf_file_parts: bool,
}
