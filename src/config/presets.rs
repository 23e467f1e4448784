//! Built-in provider presets.
//!
//! Receives a preset name from a `[[providers]]` entry (`preset = "..."`, or
//! its `name` when that is a preset and no `base_url` is given) and emits the
//! preset's base URL, API kind, auth style and converter quirks, which the
//! entry's own fields then override one by one.

use super::{Auth, ProviderKind};
use crate::convert::{Quirks, ReasoningParam};

/// What a preset contributes to a provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    pub name: &'static str,
    pub base_url: &'static str,
    pub kind: ProviderKind,
    pub auth: Auth,
    pub quirks: Quirks,
}

/// Every preset name, in the order the README documents them.
pub const NAMES: &[&str] = &[
    "openai",
    "openrouter",
    "deepseek",
    "groq",
    "mistral",
    "xai",
    "gemini",
    "ollama",
    "lmstudio",
    "vllm",
    "anthropic",
];

/// The preset called `name` (exact, lower case), if any.
pub fn find(name: &str) -> Option<Preset> {
    let plain = Quirks { pdf_file_parts: true, ..Quirks::default() };
    let openai =
        |base_url| Preset { name: "", base_url, kind: ProviderKind::OpenAi, auth: Auth::Bearer, quirks: plain.clone() };
    let mut p = match name {
        "openai" => Preset {
            quirks: Quirks { reasoning: ReasoningParam::Effort, openai_reasoning_models: true, ..plain.clone() },
            ..openai("https://api.openai.com/v1")
        },
        "openrouter" => Preset {
            quirks: Quirks { reasoning: ReasoningParam::OpenRouter, ..plain.clone() },
            ..openai("https://openrouter.ai/api/v1")
        },
        // DeepSeek's chat models take text only: a PDF is refused locally
        // with a message naming the block rather than upstream with none.
        "deepseek" => Preset {
            quirks: Quirks { deepseek_reasoning_passback: true, pdf_file_parts: false, ..Quirks::default() },
            ..openai("https://api.deepseek.com")
        },
        "groq" => openai("https://api.groq.com/openai/v1"),
        "mistral" => openai("https://api.mistral.ai/v1"),
        "xai" => openai("https://api.x.ai/v1"),
        "gemini" => Preset {
            quirks: Quirks { gemini: true, ..plain.clone() },
            ..openai("https://generativelanguage.googleapis.com/v1beta/openai")
        },
        "ollama" => openai("http://127.0.0.1:11434/v1"),
        "lmstudio" => openai("http://127.0.0.1:1234/v1"),
        "vllm" => openai("http://127.0.0.1:8000/v1"),
        "anthropic" => {
            Preset { kind: ProviderKind::Anthropic, auth: Auth::XApiKey, ..openai("https://api.anthropic.com") }
        }
        _ => return None,
    };
    p.name = NAMES.iter().find(|n| **n == name)?;
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_resolves_and_nothing_else_does() {
        for n in NAMES {
            let p = find(n).unwrap_or_else(|| panic!("{n}"));
            assert_eq!(p.name, *n);
            assert!(super::super::url::parse_base_url(p.base_url).is_ok(), "{n}");
        }
        assert_eq!(find("OpenAI"), None);
        assert_eq!(find("azure"), None);
        assert_eq!(find(""), None);
    }

    #[test]
    fn quirk_profiles() {
        let q = |n| find(n).unwrap().quirks;
        assert_eq!(q("openai").reasoning, ReasoningParam::Effort);
        assert!(q("openai").openai_reasoning_models);
        assert_eq!(q("openrouter").reasoning, ReasoningParam::OpenRouter);
        assert!(!q("openrouter").openai_reasoning_models);
        assert!(q("deepseek").deepseek_reasoning_passback);
        assert_eq!(q("deepseek").reasoning, ReasoningParam::None);
        assert!(q("gemini").gemini);
        let plain = Quirks { pdf_file_parts: true, ..Quirks::default() };
        for n in ["ollama", "lmstudio", "vllm", "groq", "mistral", "xai"] {
            assert_eq!(q(n), plain, "{n}");
        }
        let a = find("anthropic").unwrap();
        assert_eq!((a.kind, a.auth), (ProviderKind::Anthropic, Auth::XApiKey));
        assert_eq!((find("groq").unwrap().kind, find("groq").unwrap().auth), (ProviderKind::OpenAi, Auth::Bearer));
    }
}
