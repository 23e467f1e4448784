//! Tests of `[[providers]]`, presets, `[router]` and their validation, and
//! of the legacy `[upstream]` table living on as provider `default`.

use super::tests::{cli, load, with_file, TempDir};
use super::*;
use crate::convert::{Quirks, ReasoningParam};
use crate::route::{Reason, RouteFacts, Target};

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
}

fn load_env(text: &str, args: &[&str], env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
    let (_d, c) = with_file(text, args);
    Config::load_with_home(&c, None, env)
}

fn err(text: &str) -> String {
    match load_env(text, &[], &|_| None) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => format!("{e:#}"),
    }
}

fn by_name<'a>(c: &'a Config, name: &str) -> &'a Provider {
    c.providers.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no provider {name}"))
}

/// `provider,model (reason)` for a request.
fn decide(c: &Config, f: RouteFacts) -> String {
    let d = c.router.decide(&f, &c.providers, &mut || 0);
    let mut out = Vec::new();
    d.write_label(&c.providers[d.provider].name, f.model, &mut out);
    String::from_utf8(out).unwrap()
}

fn facts(model: &str) -> RouteFacts<'_> {
    RouteFacts { model, thinking_enabled: false, web_search: false, body_len: 10 }
}

const ALL_PRESETS: &str = r#"
[[providers]]
name = "openai"
api_key = "${OPENAI_API_KEY}"
[[providers]]
name = "openrouter"
api_key = "${OPENROUTER_API_KEY}"
[[providers]]
name = "ds"
preset = "deepseek"
[[providers]]
name = "groq"
[[providers]]
name = "mistral"
[[providers]]
name = "xai"
[[providers]]
name = "gemini"
[[providers]]
name = "ollama"
[[providers]]
name = "lmstudio"
[[providers]]
name = "vllm"
[[providers]]
name = "claude"
preset = "anthropic"
api_key = "sk-ant-0123456789"
"#;

#[test]
fn presets_resolve_urls_auth_and_quirks() {
    let env = env_of(&[("OPENAI_API_KEY", "sk-openai"), ("OPENROUTER_API_KEY", "sk-or")]);
    let c = load_env(ALL_PRESETS, &[], &env).unwrap();
    assert_eq!(c.providers.len(), 11, "no legacy provider when [[providers]] are given");
    let want: &[(&str, &str, &str, &str)] = &[
        ("openai", "https://api.openai.com/v1", "api.openai.com", "/v1/chat/completions"),
        ("openrouter", "https://openrouter.ai/api/v1", "openrouter.ai", "/api/v1/chat/completions"),
        ("ds", "https://api.deepseek.com", "api.deepseek.com", "/chat/completions"),
        ("groq", "https://api.groq.com/openai/v1", "api.groq.com", "/openai/v1/chat/completions"),
        ("mistral", "https://api.mistral.ai/v1", "api.mistral.ai", "/v1/chat/completions"),
        ("xai", "https://api.x.ai/v1", "api.x.ai", "/v1/chat/completions"),
        (
            "gemini",
            "https://generativelanguage.googleapis.com/v1beta/openai",
            "generativelanguage.googleapis.com",
            "/v1beta/openai/chat/completions",
        ),
        ("ollama", "http://127.0.0.1:11434/v1", "127.0.0.1:11434", "/v1/chat/completions"),
        ("lmstudio", "http://127.0.0.1:1234/v1", "127.0.0.1:1234", "/v1/chat/completions"),
        ("vllm", "http://127.0.0.1:8000/v1", "127.0.0.1:8000", "/v1/chat/completions"),
        ("claude", "https://api.anthropic.com", "api.anthropic.com", "/v1/messages"),
    ];
    for (name, base, host, path) in want {
        let p = by_name(&c, name);
        assert_eq!(
            (p.upstream.base_url.as_str(), p.upstream.host_header.as_str(), p.upstream.chat_path.as_str()),
            (*base, *host, *path),
            "{name}"
        );
        assert_eq!(p.upstream.tls, base.starts_with("https"), "{name}");
        assert!(!p.upstream.is_default);
        let anthropic = *name == "claude";
        assert_eq!(p.kind, if anthropic { ProviderKind::Anthropic } else { ProviderKind::OpenAi }, "{name}");
        assert_eq!(p.auth, if anthropic { Auth::XApiKey } else { Auth::Bearer }, "{name}");
    }
    assert_eq!(by_name(&c, "openai").upstream.api_key.as_deref(), Some("sk-openai"));
    assert_eq!(by_name(&c, "openrouter").upstream.api_key.as_deref(), Some("sk-or"));
    assert_eq!(by_name(&c, "ds").preset, Some("deepseek"));
    assert_eq!(by_name(&c, "groq").preset, Some("groq"));

    let q = |n| by_name(&c, n).quirks.clone();
    assert_eq!(q("openai").reasoning, ReasoningParam::Effort);
    assert!(q("openai").openai_reasoning_models);
    assert!(by_name(&c, "openai").upstream.reasoning_effort);
    assert_eq!(q("openrouter").reasoning, ReasoningParam::OpenRouter);
    assert!(!by_name(&c, "openrouter").upstream.reasoning_effort);
    assert!(q("ds").deepseek_reasoning_passback);
    assert_eq!(q("ds").reasoning, ReasoningParam::None);
    assert!(q("gemini").gemini);
    let plain = Quirks { pdf_file_parts: true, ..Quirks::default() };
    for n in ["ollama", "lmstudio", "vllm", "groq", "mistral", "xai"] {
        assert_eq!(q(n), plain, "{n}");
    }
    // No [router]: everything to the first provider, model passed through.
    assert_eq!(decide(&c, facts("gpt-4.1")), "openai,gpt-4.1 (default)");
}

#[test]
fn user_fields_override_the_preset() {
    let text = r#"
[[providers]]
name = "corp"
preset = "openai"
base_url = "https://llm.corp.example/openai/v1"
kind = "openai"
api_key = "k-123"
models = ["gpt-4.1", " o3 ", "gpt-4.1"]
headers = { "X-Title" = "ccproxy", "HTTP-Referer" = "https://example.com" }
max_tokens = 8192
connect_timeout_secs = 3
first_byte_timeout_secs = 30
idle_timeout_secs = 40
pool_max_idle = 5
proxy_url = "http://proxy:3128"
pdf = false
[providers.quirks]
reasoning = "openrouter"
openai_reasoning_models = false
gemini = true

[[providers]]
name = "ds"
preset = "deepseek"
reasoning_effort = true
auth = "x-api-key"
"#;
    let c = load_env(text, &[], &|_| None).unwrap();
    let p = &c.providers[0];
    assert_eq!(p.upstream.base_url, "https://llm.corp.example/openai/v1");
    assert_eq!(p.upstream.chat_path, "/openai/v1/chat/completions");
    assert_eq!(p.preset, Some("openai"));
    assert_eq!(p.models, ["gpt-4.1", "o3"]);
    assert_eq!(
        p.headers,
        [("X-Title".to_string(), "ccproxy".to_string()), ("HTTP-Referer".into(), "https://example.com".into())]
    );
    assert_eq!(p.max_tokens, Some(8192));
    let up = &p.upstream;
    assert_eq!(
        (up.connect_timeout, up.first_byte_timeout, up.idle_timeout, up.pool_max_idle),
        (Duration::from_secs(3), Duration::from_secs(30), Duration::from_secs(40), 5)
    );
    assert_eq!(up.proxy.as_ref().map(|p| p.url.as_str()), Some("http://proxy:3128"));
    assert_eq!(
        p.quirks,
        Quirks {
            reasoning: ReasoningParam::OpenRouter,
            openai_reasoning_models: false,
            deepseek_reasoning_passback: false,
            gemini: true,
            pdf_file_parts: false
        }
    );
    assert!(!up.pdf_file_parts && !up.reasoning_effort);
    let ds = &c.providers[1];
    assert_eq!((ds.quirks.reasoning, ds.auth), (ReasoningParam::Effort, Auth::XApiKey));
    assert!(ds.quirks.deepseek_reasoning_passback, "untouched preset quirks stay");

    // A kind override without a preset picks that kind's auth.
    let c = load_env("[[providers]]\nname = \"gw\"\nbase_url = \"http://gw/\"\nkind = \"anthropic\"\n", &[], &|_| None)
        .unwrap();
    let p = &c.providers[0];
    assert_eq!(
        (p.kind, p.auth, p.upstream.chat_path.as_str()),
        (ProviderKind::Anthropic, Auth::XApiKey, "/v1/messages")
    );
}

#[test]
fn router_table_with_fallbacks() {
    let text = r#"
[[providers]]
name = "deepseek"
[[providers]]
name = "openrouter"
headers = { "X-Title" = "ccproxy" }
max_tokens = 4096
[[providers]]
name = "ollama"
models = ["qwen2.5-coder:latest"]

[router]
default = "deepseek,deepseek-chat"
background = "ollama,qwen2.5-coder:latest"
think = "deepseek,deepseek-reasoner"
long_context = "openrouter,google/gemini-2.5-pro"
long_context_threshold = 1000
web_search = "openrouter,"

[router.fallback]
default = ["openrouter,anthropic/claude-sonnet-4", "deepseek-chat-v2"]
think = ["openrouter,deepseek/deepseek-r1"]

[model_map]
"claude-opus-4-8" = "openrouter,anthropic/claude-opus-4"
"claude-x" = "bare-model"
"#;
    let c = load_env(text, &[], &|_| None).unwrap();
    assert_eq!(decide(&c, facts("claude-sonnet-4-5")), "deepseek,deepseek-chat (default)");
    assert_eq!(decide(&c, facts("claude-haiku-4-5")), "ollama,qwen2.5-coder:latest (background)");
    assert_eq!(
        decide(&c, RouteFacts { thinking_enabled: true, ..facts("claude-sonnet-4-5") }),
        "deepseek,deepseek-reasoner (think)"
    );
    assert_eq!(
        decide(&c, RouteFacts { body_len: 100_000, ..facts("claude-haiku-4-5") }),
        "openrouter,google/gemini-2.5-pro (long_context)"
    );
    assert_eq!(
        decide(&c, RouteFacts { web_search: true, ..facts("claude-sonnet-4-5") }),
        "openrouter,claude-sonnet-4-5 (web_search)"
    );
    assert_eq!(decide(&c, facts("claude-opus-4-8")), "openrouter,anthropic/claude-opus-4 (model_map)");
    assert_eq!(decide(&c, facts("claude-x")), "deepseek,bare-model (model_map)", "bare = default's provider");
    assert_eq!(decide(&c, facts("ollama,llama3.3")), "ollama,llama3.3 (explicit)");

    let r = &c.router;
    let default_fb = vec![
        Target { provider: 1, model: Some("anthropic/claude-sonnet-4".into()) },
        Target { provider: 0, model: Some("deepseek-chat-v2".into()) },
    ];
    assert_eq!(r.default.fallbacks, default_fb);
    assert_eq!(
        r.think.as_ref().unwrap().fallbacks,
        [Target { provider: 1, model: Some("deepseek/deepseek-r1".into()) }]
    );
    assert_eq!(r.background.as_ref().unwrap().fallbacks, default_fb, "no own list: the default's");
    let d = r.decide(&RouteFacts { thinking_enabled: true, ..facts("m") }, &c.providers, &mut || 0);
    assert_eq!((d.reason, d.fallbacks.len()), (Reason::Think, 1));

    // --check-config output loads back to the same configuration.
    let dir = TempDir::new("router");
    let rendered = c.render_masked();
    let path = dir.write("again.toml", &rendered);
    let mut again = load(&Cli { config: Some(path), ..Cli::default() }).unwrap_or_else(|e| panic!("{e:#}\n{rendered}"));
    again.source = c.source.clone();
    assert_eq!(again.router, c.router, "{rendered}");
    assert_eq!(again.providers.len(), 3);
    assert_eq!(again.providers, c.providers, "{rendered}");
}

#[test]
fn legacy_upstream_is_one_default_provider_routing_as_before() {
    let text = "[upstream]\nbase_url = \"http://h:1/v1\"\nmodel = \"up-default\"\nreasoning_effort = true\n\
                [model_map]\n\"claude-haiku-4-5\" = \"small\"\n";
    let c = load_env(text, &[], &|_| None).unwrap();
    assert_eq!(c.providers.len(), 1);
    let p = &c.providers[0];
    assert_eq!((p.name.as_str(), p.kind, p.auth, p.preset), ("default", ProviderKind::OpenAi, Auth::Bearer, None));
    assert_eq!(p.quirks, Quirks { reasoning: ReasoningParam::Effort, pdf_file_parts: true, ..Quirks::default() });
    assert_eq!(decide(&c, facts("claude-haiku-4-5")), "default,small (model_map)");
    assert_eq!(decide(&c, facts("claude-opus")), "default,up-default (default)");
    // No background/think/... routes exist in a legacy config.
    assert_eq!(
        decide(&c, RouteFacts { thinking_enabled: true, web_search: true, body_len: 1 << 30, ..facts("x") }),
        "default,up-default (default)"
    );
    let c = load_env(text, &["--model", "forced"], &|_| None).unwrap();
    assert_eq!(decide(&c, facts("claude-haiku-4-5")), "default,forced (forced)");
    // Without upstream.model the client's model passes through.
    let c = load(&cli(&["--upstream", "http://h:2/v1"])).unwrap();
    assert_eq!(decide(&c, facts("claude-opus")), "default,claude-opus (default)");
    // Legacy tables may use [router] too, naming provider "default".
    let c = load_env("[router]\nbackground = \"default,tiny\"\n", &[], &|_| None).unwrap();
    assert_eq!(decide(&c, facts("claude-haiku-4-5")), "default,tiny (background)");
}

#[test]
fn upstream_flag_adds_a_default_provider_in_front() {
    let text = "[[providers]]\nname = \"openrouter\"\n[router]\ndefault = \"openrouter,x\"\n";
    let c = load_env(text, &["--upstream", "http://local:1/v1", "--upstream-key", "kk"], &|_| None).unwrap();
    let names: Vec<&str> = c.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["default", "openrouter"]);
    assert_eq!(c.providers[0].upstream.api_key.as_deref(), Some("kk"));
    assert_eq!(decide(&c, facts("m")), "default,m (default)", "the command line takes the default route");
    assert_eq!(decide(&c, facts("openrouter,y")), "openrouter,y (explicit)");
    // Without --upstream the key flag has nothing to apply to...
    let e = format!("{:#}", load_env(text, &["--upstream-key", "kk"], &|_| None).unwrap_err());
    assert!(e.contains("--upstream-key") && e.contains("set `api_key` on a provider"), "{e}");
    // ...but the same value from the environment is simply unused.
    let env = env_of(&[(KEY_ENV, "kk")]);
    assert!(load_env(text, &["--upstream-key", "kk"], &env).is_ok());
}

#[test]
fn provider_keys_interpolate_and_never_show() {
    let key = "sk-or-v1-0123456789abcdefghijklmnopqrstuvwxyz";
    let text = "[[providers]]\nname = \"openrouter\"\napi_key = \"${OR_KEY}\"\nheaders = { \"x-goog-api-key\" = \"${OR_KEY}\", \"X-Title\" = \"mine\" }\n";
    let c = load_env(text, &[], &env_of(&[("OR_KEY", "sk-or-v1-0123456789abcdefghijklmnopqrstuvwxyz")])).unwrap();
    assert_eq!(c.providers[0].upstream.api_key.as_deref(), Some(key));
    for out in [format!("{c:?}"), format!("{:#?}", c.providers[0]), c.render_masked()] {
        assert!(!out.contains(key) && !out.contains("0123456789abcdef"), "{out}");
        assert!(out.contains("…wxyz (masked, 45 chars)"), "{out}");
        assert!(out.contains("mine"), "{out}");
    }
    let e = format!("{:#}", load_env(text, &[], &|_| None).unwrap_err());
    assert!(e.contains("`providers[0].api_key` in ") && e.contains("`OR_KEY` is not set"), "{e}");
    let e = err("[[providers]]\nname = \"x\"\nbase_url = \"http://h/\"\napi_key = \"a b\"\n");
    assert!(e.contains("`providers[0].api_key` in ") && e.contains("whitespace"), "{e}");
}

#[test]
fn validation_errors_name_the_field() {
    let p = |extra: &str| format!("[[providers]]\nname = \"a\"\nbase_url = \"http://h/v1\"\n{extra}");
    let cases: Vec<(String, &str)> = vec![
        (p("[router]\ndefault = \"nope,m\""), "`router.default` in "),
        (p("[router]\ndefault = \"nope,m\""), "unknown provider `nope` (configured: a)"),
        (p("[router]\nthink = \"b,m\""), "`router.think` in "),
        (p("[router.fallback]\ndefault = [\"a,m\", \"z,m\"]"), "`router.fallback.default[1]` in "),
        (p("[router.fallback]\nthink = [\"a,m\"]"), "there is no `router.think` route"),
        (p("[router]\ndefault = \" \""), "`router.default` in "),
        (p("[router]\nlong_context_threshold = 0"), "`router.long_context_threshold` in "),
        (p("[router]\nweb = \"a,m\""), "unknown field `web`"),
        (p("[model_map]\n\"c\" = \"q,m\""), "`model_map.\"c\"` in "),
        (p("[[providers]]\nname = \"a\"\nbase_url = \"http://i/v1\""), "`providers[1].name` in "),
        (p("[[providers]]\nname = \"a\"\nbase_url = \"http://i/v1\""), "duplicate provider name `a`"),
        (p("[[providers]]\nname = \"b\"\nbase_url = \"ftp://i/v1\""), "`providers[1].base_url` in "),
        (p("[[providers]]\nname = \"b c\"\nbase_url = \"http://i/v1\""), "`providers[1].name` in "),
        (
            p("[[providers]]\nname = \"b\"\npreset = \"azure\""),
            "unknown preset `azure`; presets are openai, openrouter",
        ),
        (p("[[providers]]\nname = \"mine\""), "has no `base_url` and no `preset`"),
        (p("[[providers]]\nbase_url = \"http://i/v1\""), "every provider needs a `name`"),
        (p("headers = { Authorization = \"Bearer x\" }"), "`providers[0].headers.\"Authorization\"` in "),
        (p("max_tokens = 0"), "`providers[0].max_tokens` in "),
        (p("models = [\"\"]"), "`providers[0].models[0]` in "),
        (p("connect_timeout_secs = 0"), "`providers[0].connect_timeout_secs` in "),
        (p("ca_file = \"/nonexistent.pem\""), "`providers[0].ca_file` in "),
        (p("proxy_url = \"socks5://p:1\""), "`providers[0].proxy_url` in "),
        (p("reasoning_effort = true\nquirks = { reasoning = \"effort\" }"), "`providers[0].reasoning_effort` in "),
        (p("quirks = { reasoning = \"max\" }"), "unknown variant `max`"),
        (p("kind = \"gemini\""), "unknown variant `gemini`"),
        (p("[upstream]\nbase_url = \"http://x/v1\""), "`upstream` in "),
        (p("retries = 11"), "unknown field"), // top-level keys must precede tables
        ("retries = 11\n".to_string(), "`retries` in "),
        ("retry_after_cap_secs = 0\n".to_string(), "`retry_after_cap_secs` in "),
        ("[upstream]\nmodel = \"m\"\n[router]\ndefault = \"default,n\"\n".to_string(), "both `router.default` and"),
    ];
    for (text, want) in &cases {
        let e = err(text);
        assert!(e.contains(want), "{text:?}\nwant {want:?}\ngot: {e}");
    }
}

#[test]
fn retries_settings() {
    let c = load_env("retries = 0\nretry_after_cap_secs = 5\n", &[], &|_| None).unwrap();
    assert_eq!((c.retries, c.retry_after_cap), (0, Duration::from_secs(5)));
}
