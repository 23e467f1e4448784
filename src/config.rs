//! Command line and config file, resolved into one validated [`Config`].
//!
//! Receives the parsed [`Cli`] (clap, from `main`), the TOML config file it
//! names (or `$HOME/.config/ccproxy/config.toml` when that exists) and the
//! environment (for `${VAR}` interpolation, `CCPROXY_UPSTREAM_KEY` and
//! `HTTPS_PROXY` / `NO_PROXY`).
//! Emits a [`Config`] the server and the upstream client read at start-up:
//! precedence is command line > config file > built-in defaults, and every
//! error names the flag or the file field it came from. The upstream key is
//! masked in every `Debug` output and in [`Config::render_masked`].

mod interp;
mod render;
mod url;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;

use crate::route::ModelRoute;

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
            .field("check_config", &self.check_config)
            .finish()
    }
}

/// The resolved, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    /// Resolved worker count, >= 1 (0 in the input means one per core).
    pub workers: usize,
    pub max_body_bytes: u64,
    /// SSE `event: ping` interval while the upstream is silent.
    pub ping_interval: Duration,
    pub upstream: UpstreamConfig,
    /// force = `--model`; map = `[model_map]`; default = `upstream.model`.
    pub route: ModelRoute,
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

/// Where and how to reach the OpenAI-compatible provider.
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
    /// Sent as `Authorization: Bearer <key>`; never logged.
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
/// can fall through to the default; unknown keys are errors.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    workers: Option<usize>,
    max_body_bytes: Option<u64>,
    ping_interval_secs: Option<u64>,
    #[serde(default)]
    upstream: FileUpstream,
    #[serde(default, deserialize_with = "ordered_pairs")]
    model_map: Vec<(String, String)>,
}

#[derive(Deserialize, Default, Debug)]
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
    let expand = |name: &str, v: &mut Option<String>| -> anyhow::Result<()> {
        if let Some(s) = v {
            *s = interp::interpolate(s, env).map_err(|e| anyhow!("{}: {e}", origin.field(name)))?;
        }
        Ok(())
    };
    expand("listen", &mut file.listen)?;
    expand("upstream.base_url", &mut file.upstream.base_url)?;
    expand("upstream.api_key", &mut file.upstream.api_key)?;
    expand("upstream.model", &mut file.upstream.model)?;
    expand("upstream.ca_file", &mut file.upstream.ca_file)?;
    expand("upstream.proxy_url", &mut file.upstream.proxy_url)?;
    for (from, to) in &mut file.model_map {
        *to = interp::interpolate(to, env)
            .map_err(|e| anyhow!("{}: {e}", origin.field(&format!("model_map.\"{from}\""))))?;
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

    let up = file.upstream;
    let is_default = cli.upstream.is_none() && up.base_url.is_none();
    let (base, label) =
        pick(cli.upstream.clone(), "--upstream", up.base_url, "upstream.base_url", &origin, DEFAULT_UPSTREAM.into());
    let url = url::parse_base_url(&base).map_err(|e| anyhow!("{label}: {e}"))?;

    // An empty key counts as absent, so `CCPROXY_UPSTREAM_KEY=` can unset it.
    let non_empty = |k: Option<String>| k.filter(|k| !k.is_empty());
    let key_from_env = non_empty(env(KEY_ENV));
    let (api_key, label) = match (non_empty(cli.upstream_key.clone()), key_from_env, non_empty(up.api_key)) {
        (Some(k), _, _) => (Some(k), "--upstream-key".to_string()),
        (None, Some(k), _) => (Some(k), KEY_ENV.to_string()),
        (None, None, Some(k)) => (Some(k), origin.field("upstream.api_key")),
        (None, None, None) => (None, String::new()),
    };
    if let Some(key) = &api_key {
        // It goes into a header line: a CR/LF would split the request.
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!(
                "{label}: the key ({}) contains whitespace or a control character; it must fit in an \
                 `Authorization: Bearer` header",
                mask_secret(key)
            );
        }
    }

    let ca_file = match up.ca_file.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(p) => {
            let path = relative_to_file(Path::new(p), source.as_deref());
            crate::tls::load_ca_file(&path).map_err(|e| anyhow!("{}: {e}", origin.field("upstream.ca_file")))?;
            Some(path)
        }
    };
    let proxy = resolve_proxy(up.proxy_url.as_deref(), url.tls, &url.host, &origin, env)?;

    let upstream = UpstreamConfig {
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
            up.connect_timeout_secs,
            "upstream.connect_timeout_secs",
            &origin,
            DEFAULT_CONNECT_TIMEOUT_SECS,
        )?,
        first_byte_timeout: secs(
            up.first_byte_timeout_secs,
            "upstream.first_byte_timeout_secs",
            &origin,
            DEFAULT_FIRST_BYTE_TIMEOUT_SECS,
        )?,
        idle_timeout: secs(up.idle_timeout_secs, "upstream.idle_timeout_secs", &origin, DEFAULT_IDLE_TIMEOUT_SECS)?,
        pool_max_idle: up.pool_max_idle.unwrap_or(DEFAULT_POOL_MAX_IDLE),
        pdf_file_parts: up.pdf.unwrap_or(true),
        reasoning_effort: up.reasoning_effort.unwrap_or(false),
        is_default,
    };

    if let Some(m) = &cli.model {
        model_name(m, "--model")?;
    }
    if let Some(m) = &up.model {
        model_name(m, &origin.field("upstream.model"))?;
    }
    for (from, to) in &file.model_map {
        let label = origin.field(&format!("model_map.\"{from}\""));
        model_name(from, &format!("{label} (client name)"))?;
        model_name(to, &label)?;
    }
    let route = ModelRoute { force: cli.model.clone(), map: file.model_map, default: up.model };

    Ok(Config { listen, workers, max_body_bytes, ping_interval, upstream, route, source })
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
    origin: &Origin,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<ProxyConfig>> {
    if let Some(raw) = configured {
        if raw.trim().is_empty() {
            return Ok(None);
        }
        let p = url::parse_proxy_url(raw).map_err(|e| anyhow!("{}: {e}", origin.field("upstream.proxy_url")))?;
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
    let p = url::parse_proxy_url(&raw).map_err(|e| {
        anyhow!("{var}: {e} (set upstream.proxy_url to override it, or `proxy_url = \"\"` to connect directly)")
    })?;
    Ok(Some(ProxyConfig { url: p.url, host: p.host, port: p.port, from_env: Some(var) }))
}

#[cfg(test)]
mod tests;
