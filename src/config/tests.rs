//! Tests of config resolution: flags, file discovery, precedence,
//! interpolation, validation messages and secret masking. Files go to unique
//! temp dirs; the environment is always injected, never mutated.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Parser;

use super::*;
use crate::route::Target;

/// A fresh directory, removed on drop.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ccproxy-config-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(super) fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

pub(super) fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("ccproxy").chain(args.iter().copied())).unwrap()
}

pub(super) fn with_file(text: &str, args: &[&str]) -> (TempDir, Cli) {
    let dir = TempDir::new("file");
    let path = dir.write("ccproxy.toml", text);
    let mut c = cli(args);
    c.config = Some(path);
    (dir, c)
}

pub(super) fn load(c: &Cli) -> anyhow::Result<Config> {
    Config::load_with_home(c, None, &no_env)
}

fn load_err(c: &Cli) -> String {
    match load(c) {
        Ok(cfg) => panic!("expected an error, got {cfg:?}"),
        Err(e) => format!("{e:#}"),
    }
}

/// Routes a plain request for `model`: `provider,model (reason)`.
fn route_of(cfg: &Config, model: &str) -> String {
    let facts = crate::route::RouteFacts { model, thinking_enabled: false, web_search: false, body_len: 100 };
    let d = cfg.router.decide(&facts, &cfg.providers, &mut || panic!("no tokenizing for short bodies"));
    let mut out = Vec::new();
    d.write_label(&cfg.providers[d.provider].name, model, &mut out);
    String::from_utf8(out).unwrap()
}

fn file_err(text: &str) -> String {
    let (_dir, c) = with_file(text, &[]);
    load_err(&c)
}

#[test]
fn flags_keep_their_contract_names() {
    let c = cli(&[
        "--config",
        "/x/c.toml",
        "--listen",
        "0.0.0.0:1",
        "--workers",
        "3",
        "--upstream",
        "http://h/v1",
        "--upstream-key",
        "k",
        "--model",
        "m",
        "--check-config",
    ]);
    assert_eq!(c.config, Some(PathBuf::from("/x/c.toml")));
    assert_eq!(c.listen.as_deref(), Some("0.0.0.0:1"));
    assert_eq!(c.workers, Some(3));
    assert_eq!(c.upstream.as_deref(), Some("http://h/v1"));
    assert_eq!(c.upstream_key.as_deref(), Some("k"));
    assert_eq!(c.model.as_deref(), Some("m"));
    assert!(c.check_config);
    let version = Cli::try_parse_from(["ccproxy", "--version"]).unwrap_err();
    assert_eq!(version.kind(), clap::error::ErrorKind::DisplayVersion);
    assert!(Cli::try_parse_from(["ccproxy", "--workers", "-1"]).is_err());
    assert!(Cli::try_parse_from(["ccproxy", "--bogus"]).is_err());
}

#[test]
fn nothing_configured_means_local_ollama_and_defaults() {
    let c = load(&Cli::default()).unwrap();
    assert_eq!(c.listen, "127.0.0.1:3456".parse().unwrap());
    assert!(c.workers >= 1);
    assert_eq!(c.max_body_bytes, 33_554_432);
    assert_eq!(c.ping_interval, Duration::from_secs(15));
    assert_eq!(c.source, None);
    assert_eq!(c.router, Router::default());
    assert_eq!((c.retries, c.retry_after_cap), (2, Duration::from_secs(20)));
    assert_eq!(c.providers.len(), 1);
    assert_eq!(c.providers[0].name, "default");
    let up = &c.providers[0].upstream;
    assert!(up.is_default);
    assert_eq!(up.base_url, "http://127.0.0.1:11434/v1");
    assert_eq!((up.host.as_str(), up.port), ("127.0.0.1", 11434));
    assert_eq!(up.host_header, "127.0.0.1:11434");
    assert_eq!(up.chat_path, "/v1/chat/completions");
    assert_eq!(up.api_key, None);
    assert_eq!(up.connect_timeout, Duration::from_secs(10));
    assert_eq!(up.first_byte_timeout, Duration::from_secs(600));
    assert_eq!(up.idle_timeout, Duration::from_secs(300));
    assert_eq!(up.pool_max_idle, 64);
    assert!(up.pdf_file_parts);
    assert!(!up.reasoning_effort);
}

#[test]
fn is_default_only_when_no_base_url_anywhere() {
    let c = load(&cli(&["--upstream", "http://127.0.0.1:11434/v1"])).unwrap();
    assert!(!c.providers[0].upstream.is_default, "an explicit --upstream, even equal to the default, is configured");
    let (_d, c) = with_file("[upstream]\nbase_url = \"http://10.1.2.3:8000/v1\"\n", &[]);
    assert!(!load(&c).unwrap().providers[0].upstream.is_default);
    let (_d, c) = with_file("[upstream]\napi_key = \"k\"\n", &[]);
    let cfg = load(&c).unwrap();
    assert!(cfg.providers[0].upstream.is_default);
    assert_eq!(cfg.providers[0].upstream.api_key.as_deref(), Some("k"));
}

#[test]
fn precedence_is_cli_then_file_then_defaults() {
    let text = r#"
listen = "127.0.0.2:4000"
workers = 2
max_body_bytes = 1000
ping_interval_secs = 5
[upstream]
base_url = "http://file-host:8000/v1/"
api_key = "file-key"
model = "file-model"
connect_timeout_secs = 1
first_byte_timeout_secs = 2
idle_timeout_secs = 3
pool_max_idle = 0
pdf = false
reasoning_effort = true
[model_map]
"claude-haiku-4-5" = "small"
"#;
    let (_d, c) = with_file(text, &[]);
    let f = load(&c).unwrap();
    assert_eq!(f.listen, "127.0.0.2:4000".parse().unwrap());
    assert_eq!(f.workers, 2);
    assert_eq!(f.max_body_bytes, 1000);
    assert_eq!(f.ping_interval, Duration::from_secs(5));
    assert_eq!(f.providers[0].upstream.base_url, "http://file-host:8000/v1");
    assert_eq!(f.providers[0].upstream.api_key.as_deref(), Some("file-key"));
    assert_eq!(
        (
            f.providers[0].upstream.connect_timeout,
            f.providers[0].upstream.first_byte_timeout,
            f.providers[0].upstream.idle_timeout
        ),
        (Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(3))
    );
    assert_eq!(f.providers[0].upstream.pool_max_idle, 0);
    assert!(!f.providers[0].upstream.pdf_file_parts);
    assert!(f.providers[0].upstream.reasoning_effort);
    assert_eq!(route_of(&f, "other"), "default,file-model (default)");
    assert_eq!(f.router.forced, None);
    assert_eq!(route_of(&f, "claude-haiku-4-5"), "default,small (model_map)");
    assert_eq!(f.source.as_deref(), c.config.as_deref());

    let args = [
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "5",
        "--upstream",
        "http://cli-host/v2",
        "--upstream-key",
        "cli-key",
        "--model",
        "forced",
    ];
    let (_d, c) = with_file(text, &args);
    let both = load(&c).unwrap();
    assert_eq!(both.listen, "127.0.0.1:0".parse().unwrap());
    assert_eq!(both.workers, 5);
    assert_eq!(both.providers[0].upstream.base_url, "http://cli-host/v2");
    assert_eq!(both.providers[0].upstream.chat_path, "/v2/chat/completions");
    assert_eq!(both.providers[0].upstream.api_key.as_deref(), Some("cli-key"));
    assert_eq!(route_of(&both, "claude-haiku-4-5"), "default,forced (forced)");
    // What the command line does not cover still comes from the file.
    assert_eq!(both.max_body_bytes, 1000);
    assert_eq!(both.router.default.target.model.as_deref(), Some("file-model"));
    assert!(both.providers[0].upstream.reasoning_effort);
}

#[test]
fn key_comes_from_flag_then_env_then_file_and_empty_is_absent() {
    let env = |k: &str| (k == KEY_ENV).then(|| "env-key".to_string());
    let (_d, c) = with_file("[upstream]\napi_key = \"file-key\"\n", &[]);
    let key = |c: &Cli, env: &dyn Fn(&str) -> Option<String>| {
        Config::load_with_home(c, None, env).unwrap().providers[0].upstream.api_key.clone()
    };
    assert_eq!(key(&c, &no_env).as_deref(), Some("file-key"));
    assert_eq!(key(&c, &env).as_deref(), Some("env-key"));
    let mut flag = c.clone();
    flag.upstream_key = Some("flag-key".into());
    assert_eq!(key(&flag, &env).as_deref(), Some("flag-key"));
    flag.upstream_key = Some(String::new());
    assert_eq!(key(&flag, &no_env).as_deref(), Some("file-key"));
    let empty_env = |k: &str| (k == KEY_ENV).then(String::new);
    assert_eq!(key(&Cli::default(), &empty_env), None);
    let (_d, c) = with_file("[upstream]\napi_key = \"\"\n", &[]);
    assert_eq!(key(&c, &no_env), None);
}

#[test]
fn env_interpolation_in_string_values() {
    let text = r#"
listen = "127.0.0.1:${PORT}"
[upstream]
base_url = "http://${HOST}:8080/v1"
api_key = "${OPENAI_API_KEY}"
model = "lit$${X}"
[model_map]
"claude-x" = "${SMALL}"
"#;
    let env = |k: &str| match k {
        "PORT" => Some("9999".to_string()),
        "HOST" => Some("10.0.0.7".to_string()),
        "OPENAI_API_KEY" => Some("sk-from-env".to_string()),
        "SMALL" => Some("llama3.2:3b".to_string()),
        _ => None,
    };
    let (_d, c) = with_file(text, &[]);
    let cfg = Config::load_with_home(&c, None, &env).unwrap();
    assert_eq!(cfg.listen, "127.0.0.1:9999".parse().unwrap());
    assert_eq!(cfg.providers[0].upstream.host, "10.0.0.7");
    assert_eq!(cfg.providers[0].upstream.api_key.as_deref(), Some("sk-from-env"));
    assert_eq!(cfg.router.default.target.model.as_deref(), Some("lit${X}"));
    assert_eq!(
        cfg.router.map,
        vec![("claude-x".to_string(), Target { provider: 0, model: Some("llama3.2:3b".into()) })]
    );

    let (_d, c) = with_file("[upstream]\napi_key = \"${OPENAI_API_KEY}\"\n", &[]);
    let e = load_err(&c);
    assert!(e.contains("environment variable `OPENAI_API_KEY` is not set"), "{e}");
    assert!(e.contains("`upstream.api_key` in "), "{e}");
    assert!(e.contains("ccproxy.toml"), "{e}");
    let e = file_err("[model_map]\n\"a\" = \"${NOPE}\"\n");
    assert!(e.contains("`model_map.\"a\"`") && e.contains("`NOPE` is not set"), "{e}");
}

#[test]
fn unknown_keys_are_errors_with_line_and_column() {
    let e = file_err("listen = \"127.0.0.1:1\"\ncolour = \"blue\"\n");
    assert!(e.contains("unknown field `colour`"), "{e}");
    assert!(e.contains("line 2, column 1"), "{e}");
    let e = file_err("[upstream]\nbase_url = \"http://h/v1\"\napi_kee = \"x\"\n");
    assert!(e.contains("unknown field `api_kee`") && e.contains("line 3"), "{e}");
    let e = file_err("workers = -1\n");
    assert!(e.contains("line 1") && e.contains("workers"), "{e}");
    let e = file_err("[model_map]\n\"a\" = 3\n");
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn every_validation_error_names_its_field() {
    let cases: &[(&str, &str)] = &[
        ("listen = \"localhost:80\"", "`listen` in "),
        ("workers = 1025", "1025 is out of range 0..=1024"),
        ("max_body_bytes = 0", "`max_body_bytes` in "),
        ("ping_interval_secs = 0", "`ping_interval_secs` in "),
        ("ping_interval_secs = 86401", "86401 is out of range 1..=86400"),
        ("[upstream]\nconnect_timeout_secs = 0", "`upstream.connect_timeout_secs` in "),
        ("[upstream]\nfirst_byte_timeout_secs = 0", "`upstream.first_byte_timeout_secs` in "),
        ("[upstream]\nidle_timeout_secs = 0", "`upstream.idle_timeout_secs` in "),
        ("[upstream]\nbase_url = \"ftp://api.openai.com/v1\"", "unsupported scheme `ftp`"),
        ("[upstream]\nca_file = \"/nonexistent/ca.pem\"", "`upstream.ca_file` in "),
        ("[upstream]\nproxy_url = \"socks5://p:1080\"", "`upstream.proxy_url` in "),
        ("[upstream]\nbase_url = \"http://h:99999/v1\"", "`upstream.base_url` in "),
        ("[upstream]\nmodel = \"\"", "`upstream.model` in "),
        ("[model_map]\n\"\" = \"x\"", "(client name): the model name is empty"),
        ("[model_map]\n\"a\" = \" \"", "`model_map.\"a\"` in "),
    ];
    for (text, want) in cases {
        let e = file_err(text);
        assert!(e.contains(want), "{text:?}: {e}");
    }
    let flag_cases: &[(&[&str], &str)] = &[
        (&["--listen", "nope"], "--listen: `nope` is not a socket address"),
        (&["--workers", "2000"], "--workers: 2000 is out of range 0..=1024"),
        (&["--upstream", "ftp://x/v1"], "--upstream: `ftp://x/v1`: unsupported scheme `ftp`"),
        (&["--upstream", "http:///v1"], "--upstream: `http:///v1` has no host"),
        (&["--model", ""], "--model: the model name is empty"),
    ];
    for (args, want) in flag_cases {
        let e = load_err(&cli(args));
        assert!(e.contains(want), "{args:?}: {e}");
    }
}

#[test]
fn key_with_line_breaks_is_refused_without_echoing_it() {
    let c = Cli { upstream_key: Some("sk-secret\r\nX-Evil: 1".into()), ..Cli::default() };
    let e = load_err(&c);
    assert!(e.contains("--upstream-key") && e.contains("whitespace or a control character"), "{e}");
    assert!(!e.contains("sk-secret"), "{e}");
}

#[test]
fn home_config_is_discovered_and_overridden_by_flag() {
    let home = TempDir::new("home");
    let c = Config::load_with_home(&Cli::default(), Some(&home.0), &no_env).unwrap();
    assert_eq!(c.source, None, "no file under HOME: defaults");

    let path = home.write(".config/ccproxy/config.toml", "listen = \"127.0.0.1:7777\"\n");
    let c = Config::load_with_home(&Cli::default(), Some(&home.0), &no_env).unwrap();
    assert_eq!(c.source.as_deref(), Some(path.as_path()));
    assert_eq!(c.listen.port(), 7777);

    let other = home.write("other.toml", "listen = \"127.0.0.1:8888\"\n");
    let mut flag = Cli { config: Some(other.clone()), ..Cli::default() };
    let c = Config::load_with_home(&flag, Some(&home.0), &no_env).unwrap();
    assert_eq!((c.source.as_deref(), c.listen.port()), (Some(other.as_path()), 8888));

    flag.config = Some(home.0.join("missing.toml"));
    let e = match Config::load_with_home(&flag, Some(&home.0), &no_env) {
        Ok(c) => panic!("{c:?}"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("missing.toml (from --config) does not exist"), "{e}");

    // A broken home config is an error, not silently skipped.
    home.write(".config/ccproxy/config.toml", "listen = \n");
    assert!(Config::load_with_home(&Cli::default(), Some(&home.0), &no_env).is_err());
}

#[test]
fn model_map_keeps_document_order() {
    let (_d, c) = with_file("[model_map]\n\"z\" = \"1\"\n\"a\" = \"2\"\n\"m\" = \"3\"\n", &[]);
    let map = load(&c).unwrap().router.map;
    let keys: Vec<&str> = map.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["z", "a", "m"]);
}

#[test]
fn workers_zero_means_one_per_core() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(load(&cli(&["--workers", "0"])).unwrap().workers, cores);
    assert_eq!(load(&cli(&["--workers", "7"])).unwrap().workers, 7);
}

#[test]
fn the_key_never_appears_in_debug_or_render() {
    let key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL";
    let mut c = cli(&["--model", "m"]);
    c.upstream_key = Some(key.into());
    let cfg = load(&c).unwrap();
    let outputs = [format!("{cfg:?}"), format!("{cfg:#?}"), format!("{c:?}"), cfg.render_masked()];
    for out in &outputs {
        assert!(!out.contains(key), "{out}");
        assert!(!out.contains("sk-proj"), "{out}");
        assert!(out.contains("…IJKL (masked, 56 chars)"), "{out}");
    }
    // Short keys show no characters at all.
    assert_eq!(mask_secret("abcd"), "(masked, 4 chars)");
    assert_eq!(mask_secret("日本語のキー列ですよ十五文字"), "(masked, 14 chars)");
    assert_eq!(mask_secret("0123456789abcdef"), "…cdef (masked, 16 chars)");
}

#[test]
fn render_is_toml_that_loads_back_to_the_same_config() {
    let text = r#"
listen = "127.0.0.1:4567"
workers = 3
max_body_bytes = 1234
ping_interval_secs = 9
[upstream]
base_url = "http://[::1]:8000/openai/v1/"
model = "qwen \"quoted\""
connect_timeout_secs = 4
pdf = false
[model_map]
"claude-haiku-4-5" = "llama3.2:3b"
"weird key.with dots" = "b"
"#;
    let (dir, c) = with_file(text, &[]);
    let cfg = load(&c).unwrap();
    let rendered = cfg.render_masked();
    let again_path = dir.write("again.toml", &rendered);
    let again_cli = Cli { config: Some(again_path.clone()), ..Cli::default() };
    let mut again = load(&again_cli).unwrap_or_else(|e| panic!("{e:#}\n{rendered}"));
    assert_eq!(again.source.as_deref(), Some(again_path.as_path()));
    again.source = cfg.source.clone();
    assert_eq!(again, cfg, "{rendered}");
    assert!(rendered.contains("# api_key: not set"), "{rendered}");
    assert!(!rendered.contains("built-in local Ollama"), "{rendered}");

    // With a key, the default upstream and a forced model: still valid TOML.
    let mut c = cli(&["--model", "forced"]);
    c.upstream_key = Some("0123456789abcdef-secret".into());
    let rendered = load(&c).unwrap().render_masked();
    let parsed: FileConfig = toml::from_str(&rendered).unwrap_or_else(|e| panic!("{e}\n{rendered}"));
    assert_eq!(parsed.providers[0].api_key.as_deref(), Some("…cret (masked, 23 chars)"));
    assert!(rendered.contains("built-in local Ollama"), "{rendered}");
    assert!(rendered.contains("# --model \"forced\""), "{rendered}");
    assert!(rendered.contains("# requests: POST http://127.0.0.1:11434/v1/chat/completions"), "{rendered}");
}

#[test]
fn origin_labels_without_a_file() {
    let o = Origin { file: None };
    assert_eq!(o.field("listen"), "`listen`");
    let p = Path::new("/etc/x.toml");
    assert_eq!(Origin { file: Some(p) }.field("listen"), "`listen` in /etc/x.toml");
}

/// A freshly generated self-signed CA certificate, as PEM.
fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
}

#[test]
fn https_upstream_with_a_ca_file_next_to_the_config() {
    let dir = TempDir::new("tls");
    dir.write("certs/ca.pem", &ca_pem());
    let path = dir.write(
        "ccproxy.toml",
        "[upstream]\nbase_url = \"https://llm.internal/v1\"\nca_file = \"certs/ca.pem\"\nproxy_url = \"http://proxy.corp:3128/\"\n",
    );
    let c = Cli { config: Some(path), ..Cli::default() };
    let cfg = load(&c).unwrap();
    let up = &cfg.providers[0].upstream;
    assert!(up.tls);
    assert_eq!((up.host.as_str(), up.port, up.host_header.as_str()), ("llm.internal", 443, "llm.internal"));
    assert_eq!(up.base_url, "https://llm.internal/v1");
    assert_eq!(up.ca_file.as_deref(), Some(dir.0.join("certs/ca.pem").as_path()));
    let proxy = up.proxy.as_ref().unwrap();
    assert_eq!((proxy.url.as_str(), proxy.host.as_str(), proxy.port), ("http://proxy.corp:3128", "proxy.corp", 3128));
    assert_eq!(proxy.from_env, None);

    // Round trip through --check-config output keeps both fields.
    let rendered = cfg.render_masked();
    assert!(rendered.contains("# requests: POST https://llm.internal/v1/chat/completions"), "{rendered}");
    let again_path = dir.write("again.toml", &rendered);
    let mut again = load(&Cli { config: Some(again_path), ..Cli::default() }).unwrap();
    again.source = cfg.source.clone();
    assert_eq!(again, cfg, "{rendered}");
}

#[test]
fn ca_file_must_hold_certificates() {
    let dir = TempDir::new("badca");
    dir.write("ca.pem", "not a certificate\n");
    let path = dir.write("ccproxy.toml", "[upstream]\nca_file = \"${CA}\"\n");
    let c = Cli { config: Some(path.clone()), ..Cli::default() };
    let env = |name: &str| (name == "CA").then(|| "ca.pem".to_string());
    let e = format!("{:#}", Config::load_with_home(&c, None, &env).unwrap_err());
    assert!(e.starts_with(&format!("`upstream.ca_file` in {}: ", path.display())), "{e}");
    assert!(e.contains("holds no `-----BEGIN CERTIFICATE-----` block"), "{e}");
    // An empty value means "not set".
    let (_d, c) = with_file("[upstream]\nca_file = \"\"\n", &[]);
    assert_eq!(load(&c).unwrap().providers[0].upstream.ca_file, None);
}

#[test]
fn https_proxy_from_the_environment() {
    let https = cli(&["--upstream", "https://api.example.com/v1"]);
    let load_env = |c: &Cli, pairs: &'static [(&'static str, &'static str)]| {
        Config::load_with_home(c, None, &env_of(pairs)).map(|cfg| cfg.providers[0].upstream.proxy.clone())
    };
    let p = load_env(&https, &[("HTTPS_PROXY", "http://p:3128")]).unwrap().unwrap();
    assert_eq!((p.url.as_str(), p.from_env), ("http://p:3128", Some("HTTPS_PROXY")));
    let p = load_env(&https, &[("https_proxy", "p:8080")]).unwrap().unwrap();
    assert_eq!((p.url.as_str(), p.from_env), ("http://p:8080", Some("https_proxy")));
    // Plain http upstreams, NO_PROXY hosts and loopback hosts go direct.
    assert_eq!(load_env(&cli(&["--upstream", "http://api.example.com/v1"]), &[("HTTPS_PROXY", "p:1")]).unwrap(), None);
    let no = &[("HTTPS_PROXY", "p:1"), ("NO_PROXY", "other, api.example.com")];
    assert_eq!(load_env(&https, no).unwrap(), None);
    let no = &[("HTTPS_PROXY", "p:1"), ("no_proxy", "api.example.com")];
    assert_eq!(load_env(&https, no).unwrap(), None);
    assert_eq!(load_env(&cli(&["--upstream", "https://localhost:8443/v1"]), &[("HTTPS_PROXY", "p:1")]).unwrap(), None);
    // A bad value names its variable; proxy_url = "" ignores it.
    let e = format!("{:#}", load_env(&https, &[("HTTPS_PROXY", "socks5://p:1080")]).unwrap_err());
    assert!(e.starts_with("HTTPS_PROXY: `socks5://p:1080`: unsupported proxy scheme"), "{e}");
    let (_d, mut c) = with_file("[upstream]\nproxy_url = \"\"\n", &[]);
    c.upstream = https.upstream.clone();
    assert_eq!(load_env(&c, &[("HTTPS_PROXY", "socks5://p:1080")]).unwrap(), None);
    // An explicit proxy_url wins over the environment, whatever the scheme.
    let (_d, mut c) = with_file("[upstream]\nproxy_url = \"http://mine:1\"\n", &[]);
    c.upstream = Some("http://localhost:8000/v1".into());
    let p = load_env(&c, &[("HTTPS_PROXY", "p:2")]).unwrap().unwrap();
    assert_eq!((p.url.as_str(), p.from_env), ("http://mine:1", None));
    let rendered = Config::load_with_home(&https, None, &env_of(&[("HTTPS_PROXY", "p:3")])).unwrap().render_masked();
    assert!(rendered.contains("# proxy_url: not set; HTTPS_PROXY is used: http://p:3"), "{rendered}");
}
