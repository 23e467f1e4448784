//! Command line and config file, resolved into one validated [`Config`].
//!
//! Receives the parsed [`Cli`] (clap, from `main`), the TOML config file it
//! names (or `$HOME/.config/ccproxy/config.toml` when that exists) and the
//! environment (for `${VAR}` interpolation, `CCPROXY_UPSTREAM_KEY` and
//! `HTTPS_PROXY` / `NO_PROXY`).
//! Emits a [`Config`] the server and the upstream client read at start-up:
//! the providers (`[[providers]]`, or the legacy `[upstream]` table and
//! flags as one provider named `default`), the [`Router`], retry settings.
//! Precedence is command line > config file > built-in defaults, and every
//! error names the flag or the file field it came from. Keys are masked in
//! every `Debug` output and in [`Config::render_masked`].

mod interp;
pub mod presets;
mod providers;
mod render;
mod routing;
mod server;
mod url;

#[doc(hidden)]
pub use providers::test_provider;
pub use providers::{Auth, Provider, ProviderKind};
pub use server::{Secret, ServerLimits, ServerSettings, CLIENT_KEY_ENV};

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;

use crate::route::Router;

/// Listen address when neither `--listen` nor `listen` is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3456";
/// The upstream used when nothing configures one: local Ollama.
pub const DEFAULT_UPSTREAM: &str = "http://127.0.0.1:11434/v1";
/// Anthropic's own request size limit.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;
pub const DEFAULT_PING_INTERVAL_SECS: u64 = 15;
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_FIRST_BYTE_TIMEOUT_SECS: u64 = 600;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 300;
pub const DEFAULT_POOL_MAX_IDLE: usize = 64;
pub const DEFAULT_RETRIES: u32 = 2;
pub const DEFAULT_RETRY_AFTER_CAP_SECS: u64 = 20;
/// Name of the provider the legacy `[upstream]` table and flags define.
pub const LEGACY_PROVIDER: &str = "default";
const MAX_RETRIES: u32 = 10;
/// Environment variable read when `--upstream-key` is absent.
pub const KEY_ENV: &str = "CCPROXY_UPSTREAM_KEY";
const MAX_WORKERS: usize = 1024;
/// Durations are capped at a day so that `Instant + Duration` can never
/// overflow (which would panic) anywhere downstream.
const MAX_SECS: u64 = 86_400;

/// The command line. These flag names are a contract: other tools start the
/// proxy with them.
#[derive(clap::Parser, Clone, Default)]
#[command(name = "ccproxy", version, about = "Serves the Anthropic Messages API on top of OpenAI-compatible providers")]
pub struct Cli {
    /// TOML config file [default: ~/.config/ccproxy/config.toml when it exists]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:3456]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Worker threads, 0 = one per available core [default: 0]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// OpenAI-compatible base URL; /chat/completions is appended [default: http://127.0.0.1:11434/v1]
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// API key sent to the upstream as `Authorization: Bearer <KEY>`
    #[arg(long, value_name = "KEY", env = KEY_ENV, hide_env_values = true)]
    pub upstream_key: Option<String>,
    /// Force this upstream model for every request, whatever the client asks for
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Key clients must present (`x-api-key` or `Authorization: Bearer`); required to listen beyond loopback
    #[arg(long, value_name = "KEY", env = CLIENT_KEY_ENV, hide_env_values = true)]
    pub api_key: Option<String>,
    /// Log format of every line, access log included: text or json
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Retries of a failed upstream attempt (connect error, 429, 5xx) before falling back [default: 2]
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Print the resolved configuration (secrets masked) and exit; non-zero on any error
    #[arg(long)]
    pub check_config: bool,
}

// Hand-written so that logging the command line cannot leak the key.
impl fmt::Debug for Cli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cli")
            .field("config", &self.config)
            .field("listen", &self.listen)
            .field("workers", &self.workers)
            .field("upstream", &self.upstream)
            .field("upstream_key", &self.upstream_key.as_deref().map(mask_secret))
            .field("model", &self.model)
            .field("retries", &self.retries)
            .field("api_key", &self.api_key.as_deref().map(mask_secret))
            .field("log_format", &self.log_format)
            .field("check_config", &self.check_config)
            .finish()
    }
}

/// The resolved, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    /// Client authentication, exposure, limits and shutdown grace.
    pub server: ServerSettings,
    /// Resolved worker count, >= 1 (0 in the input means one per core).
    pub workers: usize,
    pub max_body_bytes: u64,
    /// SSE `event: ping` interval while the upstream is silent.
    pub ping_interval: Duration,
    /// At least one; routes refer to them by index.
    pub providers: Vec<Provider>,
    pub router: Router,
    /// Retries of one target on connect errors, 429 and 5xx before any byte
    /// reached the client.
    pub retries: u32,
    /// Longest `retry-after` honoured.
    pub retry_after_cap: Duration,
    /// The config file that was read, if any.
    pub source: Option<PathBuf>,
}

/// A forward proxy that upstream connections tunnel through (CONNECT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Normalized `http://host:port`.
    pub url: String,
    /// Host to dial (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// The environment variable it came from; `None` for `upstream.proxy_url`.
    pub from_env: Option<&'static str>,
}

/// Where and how to reach one provider.
#[derive(Clone, PartialEq)]
pub struct UpstreamConfig {
    /// Normalized: `http[s]://host[:port][/prefix]`, no trailing slash.
    pub base_url: String,
    /// The base URL is `https://`: connections speak TLS.
    pub tls: bool,
    /// Host to dial (IPv6 without brackets); also the TLS server name.
    pub host: String,
    pub port: u16,
    /// `host` or `host:port` (the scheme's default port omitted, IPv6 bracketed).
    pub host_header: String,
    /// Extra CA certificates (PEM) trusted besides the built-in roots;
    /// checked to exist and parse at load time.
    pub ca_file: Option<PathBuf>,
    /// Tunnel through this proxy: `upstream.proxy_url`, or `HTTPS_PROXY`
    /// for an https upstream not excluded by `NO_PROXY`.
    pub proxy: Option<ProxyConfig>,
    /// URL path prefix + `/chat/completions`, e.g. `/v1/chat/completions`.
    pub chat_path: String,
    /// Sent as the provider's [`Auth`] says; never logged.
    pub api_key: Option<String>,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    /// Idle keep-alive connections kept per worker.
    pub pool_max_idle: usize,
    /// The target accepts OpenAI `file` content parts (base64 PDFs).
    pub pdf_file_parts: bool,
    /// The target accepts `reasoning_effort`.
    pub reasoning_effort: bool,
    /// Nothing configured the upstream: the built-in Ollama default is in use.
    pub is_default: bool,
}

impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("base_url", &self.base_url)
            .field("tls", &self.tls)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("host_header", &self.host_header)
            .field("ca_file", &self.ca_file)
            .field("proxy", &self.proxy)
            .field("chat_path", &self.chat_path)
            .field("api_key", &self.api_key.as_deref().map(mask_secret))
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("pool_max_idle", &self.pool_max_idle)
            .field("pdf_file_parts", &self.pdf_file_parts)
            .field("reasoning_effort", &self.reasoning_effort)
            .field("is_default", &self.is_default)
            .finish()
    }
}

/// A secret as it may be shown: its length, plus its last 4 characters only
/// when the secret is long enough (16+) for those to give nothing away.
pub fn mask_secret(secret: &str) -> String {
    let n = secret.chars().count();
    if n >= 16 {
        let tail: String = secret.chars().skip(n - 4).collect();
        format!("…{tail} (masked, {n} chars)")
    } else {
        format!("(masked, {n} chars)")
    }
}

/// The config file as written. Every field is optional so that "absent"
/// can fall through to the default; unknown keys are errors. Not `Debug`:
/// it holds keys.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    workers: Option<usize>,
    max_body_bytes: Option<u64>,
    ping_interval_secs: Option<u64>,
    retries: Option<u32>,
    retry_after_cap_secs: Option<u64>,
    api_key: Option<String>,
    allow_remote: Option<bool>,
    shutdown_grace_secs: Option<u64>,
    limits: Option<server::FileLimits>,
    upstream: Option<FileUpstream>,
    #[serde(default)]
    providers: Vec<providers::FileProvider>,
    router: Option<routing::FileRouter>,
    #[serde(default, deserialize_with = "ordered_pairs")]
    model_map: Vec<(String, String)>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileUpstream {
    base_url: Option<String>,
    api_key: Option<String>,
    model: Option<String>,
    connect_timeout_secs: Option<u64>,
    first_byte_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    pool_max_idle: Option<usize>,
    pdf: Option<bool>,
    reasoning_effort: Option<bool>,
    ca_file: Option<String>,
    proxy_url: Option<String>,
}

/// Reads a TOML table of strings keeping document order (toml's own `Table`
/// would sort it), so `/v1/models` lists mappings as the user wrote them.
fn ordered_pairs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    struct Pairs;
    impl<'de> serde::de::Visitor<'de> for Pairs {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a table of client model name = upstream model name")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(pair) = map.next_entry::<String, String>()? {
                out.push(pair);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Pairs)
}

/// Names where a value came from, for error messages.
struct Origin<'a> {
    file: Option<&'a Path>,
}

impl Origin<'_> {
    fn field(&self, name: &str) -> String {
        match self.file {
            Some(p) => format!("`{name}` in {}", p.display()),
            None => format!("`{name}`"),
        }
    }
}

impl Config {
    /// Resolves the configuration from the command line, the real `$HOME`
    /// and the process environment.
    pub fn load(cli: &Cli) -> anyhow::Result<Config> {
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        Self::load_with_home(cli, home.as_deref(), &|name| std::env::var(name).ok())
    }

    /// [`Config::load`] with the home directory and the environment injected.
    pub fn load_with_home(
        cli: &Cli,
        home: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
        let source = find_config_file(cli, home)?;
        let file = match &source {
            Some(path) => read_config_file(path, env)?,
            None => FileConfig::default(),
        };
        resolve(cli, file, source, env)
    }

    /// The resolved configuration as TOML, for `--check-config`. The key is
    /// masked; the output is itself a valid config file.
    pub fn render_masked(&self) -> String {
        render::render(self)
    }
}

fn find_config_file(cli: &Cli, home: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(path) = &cli.config {
        if !path.exists() {
            bail!("config file {} (from --config) does not exist", path.display());
        }
        return Ok(Some(path.clone()));
    }
    Ok(home.map(|h| h.join(".config/ccproxy/config.toml")).filter(|p| p.exists()))
}

/// A TOML error as "file: line L, column C: message". toml's own Display
/// quotes the offending source line, which may be the `api_key` line, so the
/// snippet is deliberately left out.
fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            // Name the key of the offending line, never its value.
            let line_text = text[before.rfind('\n').map_or(0, |i| i + 1)..].lines().next().unwrap_or("");
            let key = line_text.split('=').next().unwrap_or("").trim();
            if line_text.contains('=') && !key.is_empty() {
                anyhow!("config file {}: line {line}, column {column} (`{key}`): {message}", path.display())
            } else {
                anyhow!("config file {}: line {line}, column {column}: {message}", path.display())
            }
        }
        None => anyhow!("config file {}: {message}", path.display()),
    }
}

fn read_config_file(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    let mut file: FileConfig = toml::from_str(&text).map_err(|e| toml_error(path, &text, &e))?;
    let origin = Origin { file: Some(path) };
    let one = |name: &str, s: &mut String| -> anyhow::Result<()> {
        *s = interp::interpolate(s, env).map_err(|e| anyhow!("{}: {e}", origin.field(name)))?;
        Ok(())
    };
    let expand = |name: &str, v: &mut Option<String>| -> anyhow::Result<()> {
        match v {
            Some(s) => one(name, s),
            None => Ok(()),
        }
    };
    expand("listen", &mut file.listen)?;
    expand("api_key", &mut file.api_key)?;
    if let Some(up) = &mut file.upstream {
        expand("upstream.base_url", &mut up.base_url)?;
        expand("upstream.api_key", &mut up.api_key)?;
        expand("upstream.model", &mut up.model)?;
        expand("upstream.ca_file", &mut up.ca_file)?;
        expand("upstream.proxy_url", &mut up.proxy_url)?;
    }
    for (i, p) in file.providers.iter_mut().enumerate() {
        let f = |name: &str| format!("providers[{i}].{name}");
        expand(&f("name"), &mut p.name)?;
        expand(&f("preset"), &mut p.preset)?;
        expand(&f("base_url"), &mut p.base_url)?;
        expand(&f("api_key"), &mut p.api_key)?;
        expand(&f("ca_file"), &mut p.ca_file)?;
        expand(&f("proxy_url"), &mut p.proxy_url)?;
        for (j, m) in p.models.iter_mut().enumerate() {
            one(&f(&format!("models[{j}]")), m)?;
        }
        for (k, v) in &mut p.headers {
            one(&f(&format!("headers.\"{k}\"")), v)?;
        }
    }
    if let Some(r) = &mut file.router {
        for (name, v) in [
            ("default", &mut r.default),
            ("background", &mut r.background),
            ("think", &mut r.think),
            ("long_context", &mut r.long_context),
            ("web_search", &mut r.web_search),
        ] {
            expand(&format!("router.{name}"), v)?;
        }
        let fb = &mut r.fallback;
        for (name, v) in [
            ("default", &mut fb.default),
            ("background", &mut fb.background),
            ("think", &mut fb.think),
            ("long_context", &mut fb.long_context),
            ("web_search", &mut fb.web_search),
        ] {
            for (j, s) in v.iter_mut().flatten().enumerate() {
                one(&format!("router.fallback.{name}[{j}]"), s)?;
            }
        }
    }
    for (from, to) in &mut file.model_map {
        one(&format!("model_map.\"{from}\""), to)?;
    }
    Ok(file)
}

/// `cli` if given, else the file value, else the default; plus the name of
/// where it came from.
fn pick<T>(cli: Option<T>, flag: &str, file: Option<T>, field: &str, origin: &Origin, default: T) -> (T, String) {
    match (cli, file) {
        (Some(v), _) => (v, flag.to_string()),
        (None, Some(v)) => (v, origin.field(field)),
        (None, None) => (default, format!("default `{field}`")),
    }
}

fn secs(value: Option<u64>, field: &str, origin: &Origin, default: u64) -> anyhow::Result<Duration> {
    let (v, label) = pick(None, "", value, field, origin, default);
    if v == 0 || v > MAX_SECS {
        bail!("{label}: {v} is out of range 1..={MAX_SECS} (seconds)");
    }
    Ok(Duration::from_secs(v))
}

fn model_name(name: &str, label: &str) -> anyhow::Result<()> {
    if name.trim().is_empty() {
        bail!("{label}: the model name is empty");
    }
    if name.chars().any(char::is_control) {
        bail!("{label}: the model name `{}` contains a control character", name.escape_debug());
    }
    Ok(())
}

/// A key goes into a header line: a CR/LF would split the request.
fn check_key(key: &str, label: &str) -> anyhow::Result<()> {
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!(
            "{label}: the key ({}) contains whitespace or a control character; it must fit in one header line",
            mask_secret(key)
        );
    }
    Ok(())
}

/// Connection settings shared by `[upstream]` and `[[providers]]`; `prefix`
/// names the table for error messages.
struct Transport<'a> {
    prefix: &'a str,
    connect_timeout_secs: Option<u64>,
    first_byte_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    pool_max_idle: Option<usize>,
    ca_file: Option<&'a str>,
    proxy_url: Option<&'a str>,
}

#[allow(clippy::too_many_arguments)]
fn build_upstream(
    url: url::ParsedUrl,
    api_key: Option<String>,
    t: &Transport,
    quirks: &crate::convert::Quirks,
    is_default: bool,
    origin: &Origin,
    source: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<UpstreamConfig> {
    let f = |name: &str| format!("{}.{name}", t.prefix);
    let ca_file = match t.ca_file.map(str::trim) {
        None | Some("") => None,
        Some(p) => {
            let path = relative_to_file(Path::new(p), source);
            crate::tls::load_ca_file(&path).map_err(|e| anyhow!("{}: {e}", origin.field(&f("ca_file"))))?;
            Some(path)
        }
    };
    let proxy = resolve_proxy(t.proxy_url, url.tls, &url.host, &origin.field(&f("proxy_url")), env)?;
    Ok(UpstreamConfig {
        base_url: url.base_url,
        tls: url.tls,
        host: url.host,
        port: url.port,
        host_header: url.host_header,
        ca_file,
        proxy,
        chat_path: url.chat_path,
        api_key,
        connect_timeout: secs(
            t.connect_timeout_secs,
            &f("connect_timeout_secs"),
            origin,
            DEFAULT_CONNECT_TIMEOUT_SECS,
        )?,
        first_byte_timeout: secs(
            t.first_byte_timeout_secs,
            &f("first_byte_timeout_secs"),
            origin,
            DEFAULT_FIRST_BYTE_TIMEOUT_SECS,
        )?,
        idle_timeout: secs(t.idle_timeout_secs, &f("idle_timeout_secs"), origin, DEFAULT_IDLE_TIMEOUT_SECS)?,
        pool_max_idle: t.pool_max_idle.unwrap_or(DEFAULT_POOL_MAX_IDLE),
        pdf_file_parts: quirks.pdf_file_parts,
        reasoning_effort: quirks.reasoning == crate::convert::ReasoningParam::Effort,
        is_default,
    })
}

/// The provider the legacy `[upstream]` table and `--upstream` /
/// `--upstream-key` define, named [`LEGACY_PROVIDER`].
fn legacy_provider(
    cli: &Cli,
    up: &FileUpstream,
    origin: &Origin,
    source: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Provider> {
    let is_default = cli.upstream.is_none() && up.base_url.is_none();
    let (base, label) = pick(
        cli.upstream.clone(),
        "--upstream",
        up.base_url.clone(),
        "upstream.base_url",
        origin,
        DEFAULT_UPSTREAM.into(),
    );
    let url = url::parse_base_url(&base).map_err(|e| anyhow!("{label}: {e}"))?;

    // An empty key counts as absent, so `CCPROXY_UPSTREAM_KEY=` can unset it.
    let non_empty = |k: Option<String>| k.filter(|k| !k.is_empty());
    let key_from_env = non_empty(env(KEY_ENV));
    let (api_key, label) = match (non_empty(cli.upstream_key.clone()), key_from_env, non_empty(up.api_key.clone())) {
        (Some(k), _, _) => (Some(k), "--upstream-key".to_string()),
        (None, Some(k), _) => (Some(k), KEY_ENV.to_string()),
        (None, None, Some(k)) => (Some(k), origin.field("upstream.api_key")),
        (None, None, None) => (None, String::new()),
    };
    if let Some(key) = &api_key {
        check_key(key, &label)?;
    }
    let quirks = crate::convert::Quirks {
        reasoning: if up.reasoning_effort.unwrap_or(false) {
            crate::convert::ReasoningParam::Effort
        } else {
            crate::convert::ReasoningParam::None
        },
        pdf_file_parts: up.pdf.unwrap_or(true),
        ..Default::default()
    };
    let transport = Transport {
        prefix: "upstream",
        connect_timeout_secs: up.connect_timeout_secs,
        first_byte_timeout_secs: up.first_byte_timeout_secs,
        idle_timeout_secs: up.idle_timeout_secs,
        pool_max_idle: up.pool_max_idle,
        ca_file: up.ca_file.as_deref(),
        proxy_url: up.proxy_url.as_deref(),
    };
    let upstream = build_upstream(url, api_key, &transport, &quirks, is_default, origin, source, env)?;
    Ok(Provider {
        name: LEGACY_PROVIDER.to_string(),
        preset: None,
        kind: ProviderKind::OpenAi,
        upstream,
        auth: Auth::Bearer,
        models: Vec::new(),
        headers: Vec::new(),
        max_tokens: None,
        quirks,
    })
}

fn resolve(
    cli: &Cli,
    file: FileConfig,
    source: Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Config> {
    let origin = Origin { file: source.as_deref() };

    let (listen, label) = pick(cli.listen.clone(), "--listen", file.listen, "listen", &origin, DEFAULT_LISTEN.into());
    let listen: SocketAddr = listen.trim().parse().map_err(|_| {
        anyhow!("{label}: `{listen}` is not a socket address like 127.0.0.1:3456 (an IP and a port; names are not resolved)")
    })?;

    let (workers, label) = pick(cli.workers, "--workers", file.workers, "workers", &origin, 0);
    if workers > MAX_WORKERS {
        bail!("{label}: {workers} is out of range 0..={MAX_WORKERS} (0 = one per available core)");
    }
    let workers = match workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };

    let (max_body_bytes, label) =
        pick(None, "", file.max_body_bytes, "max_body_bytes", &origin, DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        bail!("{label}: must be greater than 0");
    }
    let ping_interval = secs(file.ping_interval_secs, "ping_interval_secs", &origin, DEFAULT_PING_INTERVAL_SECS)?;
    let (retries, label) = pick(cli.retries, "--retries", file.retries, "retries", &origin, DEFAULT_RETRIES);
    if retries > MAX_RETRIES {
        bail!("{label}: {retries} is out of range 0..={MAX_RETRIES}");
    }
    let retry_after_cap =
        secs(file.retry_after_cap_secs, "retry_after_cap_secs", &origin, DEFAULT_RETRY_AFTER_CAP_SECS)?;

    // The legacy table and flags define a provider when the file defines
    // none, or when `--upstream` asks for one on the command line.
    let legacy = file.providers.is_empty() || cli.upstream.is_some();
    if !legacy {
        if file.upstream.is_some() {
            bail!(
                "{}: `[upstream]` cannot be combined with `[[providers]]`; move it into a `[[providers]]` entry",
                origin.field("upstream")
            );
        }
        // The flag is refused, but the same value arriving through the
        // environment (clap fills the flag from it) is merely unused.
        let flag = cli.upstream_key.as_deref().filter(|k| !k.is_empty());
        if flag.is_some() && flag != env(KEY_ENV).as_deref() {
            bail!("--upstream-key: the config file defines `[[providers]]`; set `api_key` on a provider instead");
        }
    }
    let up = file.upstream.unwrap_or_default();
    if let Some(m) = &up.model {
        model_name(m, &origin.field("upstream.model"))?;
    }
    let mut list: Vec<Provider> = Vec::with_capacity(file.providers.len() + 1);
    let mut labels: Vec<String> = Vec::with_capacity(file.providers.len() + 1);
    if legacy {
        list.push(legacy_provider(cli, &up, &origin, source.as_deref(), env)?);
        labels.push(if cli.upstream.is_some() { "--upstream".into() } else { origin.field("upstream") });
    }
    for (i, p) in file.providers.into_iter().enumerate() {
        let p = providers::resolve(i, p, &origin, source.as_deref(), env)?;
        let label = origin.field(&format!("providers[{i}].name"));
        if let Some(j) = list.iter().position(|q| q.name == p.name) {
            bail!("{label}: duplicate provider name `{}` (also {})", p.name, labels[j]);
        }
        list.push(p);
        labels.push(label);
    }

    let legacy_inputs = routing::Legacy {
        force: cli.model.as_deref(),
        cli_upstream: cli.upstream.is_some() && !list.is_empty(),
        model: up.model,
    };
    let router = routing::resolve(file.router, file.model_map, legacy_inputs, &list, &origin)?;

    let server = server::resolve(
        listen,
        cli.api_key.clone(),
        env(CLIENT_KEY_ENV),
        file.api_key,
        file.allow_remote,
        file.shutdown_grace_secs,
        file.limits,
    )
    .map_err(|e| {
        anyhow!("{}", e).context(match &source {
            Some(p) => format!("config file {}", p.display()),
            None => "command line".to_string(),
        })
    })?;
    Ok(Config {
        listen,
        server,
        workers,
        max_body_bytes,
        ping_interval,
        providers: list,
        router,
        retries,
        retry_after_cap,
        source,
    })
}

/// A relative path in a config file means relative to that file, so the
/// file and its CA bundle can move together.
fn relative_to_file(path: &Path, source: Option<&Path>) -> PathBuf {
    match source.and_then(Path::parent) {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

/// `upstream.proxy_url` when present (an empty string means "no proxy,
/// ignore the environment"); otherwise, for https upstreams only,
/// `HTTPS_PROXY` / `https_proxy` unless `NO_PROXY` / `no_proxy` or a
/// loopback host excludes the upstream.
fn resolve_proxy(
    configured: Option<&str>,
    tls: bool,
    host: &str,
    label: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<ProxyConfig>> {
    if let Some(raw) = configured {
        if raw.trim().is_empty() {
            return Ok(None);
        }
        let p = url::parse_proxy_url(raw).map_err(|e| anyhow!("{label}: {e}"))?;
        return Ok(Some(ProxyConfig { url: p.url, host: p.host, port: p.port, from_env: None }));
    }
    if !tls {
        return Ok(None);
    }
    let non_empty = |name: &'static str| env(name).filter(|v| !v.trim().is_empty()).map(|v| (name, v));
    let Some((var, raw)) = non_empty("HTTPS_PROXY").or_else(|| non_empty("https_proxy")) else {
        return Ok(None);
    };
    let no_proxy = env("NO_PROXY").or_else(|| env("no_proxy")).unwrap_or_default();
    if url::bypasses_proxy(host, &no_proxy) {
        return Ok(None);
    }
    let p = url::parse_proxy_url(&raw)
        .map_err(|e| anyhow!("{var}: {e} (set proxy_url to override it, or `proxy_url = \"\"` to connect directly)"))?;
    Ok(Some(ProxyConfig { url: p.url, host: p.host, port: p.port, from_env: Some(var) }))
}

#[cfg(test)]
mod provider_tests;
#[cfg(test)]
mod tests;
