//! Server-side settings: client authentication, exposure and the limits that
//! protect ccproxy from hostile or broken clients.
//!
//! Receives the `api_key`, `allow_remote`, `shutdown_grace_secs` and
//! `[limits]` parts of the config file plus `--api-key` /
//! `CCPROXY_API_KEY`, and emits the validated [`ServerSettings`]. The rule it
//! enforces: a proxy that holds provider keys never listens beyond loopback
//! without a client key.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use super::mask_secret;

/// Environment variable read when `--api-key` is absent.
pub const CLIENT_KEY_ENV: &str = "CCPROXY_API_KEY";
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 75;
pub const DEFAULT_MAX_HEADERS: usize = 100;
pub const DEFAULT_MAX_HEAD_BYTES: usize = 64 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;

/// A secret whose `Debug` shows only its mask.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask_secret(&self.0))
    }
}

/// `[limits]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLimits {
    header_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    max_headers: Option<usize>,
    max_head_bytes: Option<usize>,
    max_connections_per_worker: Option<usize>,
}

/// Limits on what one client may hold or send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Deadline for a whole request head once its first byte arrived (slowloris).
    pub header_timeout: Duration,
    /// Deadline for a whole request body.
    pub body_timeout: Duration,
    /// How long an idle keep-alive connection waits for its next request.
    pub idle_timeout: Duration,
    pub max_headers: usize,
    pub max_head_bytes: usize,
    /// Beyond this many open connections a worker stops accepting and the
    /// kernel backlog holds new clients until one closes.
    pub max_connections_per_worker: usize,
}

/// Client authentication, exposure and limits, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Clients must send it as `x-api-key` or `Authorization: Bearer`.
    pub client_key: Option<Secret>,
    pub allow_remote: bool,
    pub limits: ServerLimits,
    /// How long in-flight requests may run after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
}

fn secs(v: Option<u64>, field: &str, default: u64) -> anyhow::Result<Duration> {
    let v = v.unwrap_or(default);
    if v == 0 || v > 86_400 {
        bail!("`{field}`: {v} is out of range 1..=86400 (seconds)");
    }
    Ok(Duration::from_secs(v))
}

fn count(v: Option<usize>, field: &str, default: usize, min: usize, max: usize) -> anyhow::Result<usize> {
    let v = v.unwrap_or(default);
    if v < min || v > max {
        bail!("`{field}`: {v} is out of range {min}..={max}");
    }
    Ok(v)
}

/// Resolves the settings and enforces the exposure rule for `listen`.
pub(super) fn resolve(
    listen: SocketAddr,
    cli_key: Option<String>,
    env_key: Option<String>,
    file_key: Option<String>,
    allow_remote: Option<bool>,
    shutdown_grace_secs: Option<u64>,
    limits: Option<FileLimits>,
) -> anyhow::Result<ServerSettings> {
    let non_empty = |k: Option<String>| k.filter(|k| !k.is_empty());
    let (key, from) = match (non_empty(cli_key), non_empty(env_key), non_empty(file_key)) {
        (Some(k), _, _) => (Some(k), "--api-key"),
        (None, Some(k), _) => (Some(k), CLIENT_KEY_ENV),
        (None, None, Some(k)) => (Some(k), "api_key"),
        (None, None, None) => (None, ""),
    };
    if let Some(k) = &key {
        if k.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("{from}: the client key ({}) contains whitespace or a control character", mask_secret(k));
        }
    }
    let allow_remote = allow_remote.unwrap_or(false);
    if allow_remote && key.is_none() {
        bail!(
            "`allow_remote = true` needs a client key: set `api_key` in the config file, `--api-key`, \
             or {CLIENT_KEY_ENV}, so that only your clients can spend your provider keys"
        );
    }
    if !listen.ip().is_loopback() && !allow_remote {
        bail!(
            "refusing to listen on {listen}: that address is reachable from other machines, and ccproxy \
             holds your provider keys. Listen on 127.0.0.1, or set a client key (`api_key` / `--api-key` / \
             {CLIENT_KEY_ENV}) together with `allow_remote = true`"
        );
    }
    let l = limits.unwrap_or_default();
    let limits = ServerLimits {
        header_timeout: secs(l.header_timeout_secs, "limits.header_timeout_secs", DEFAULT_HEADER_TIMEOUT_SECS)?,
        body_timeout: secs(l.body_timeout_secs, "limits.body_timeout_secs", DEFAULT_BODY_TIMEOUT_SECS)?,
        idle_timeout: secs(l.idle_timeout_secs, "limits.idle_timeout_secs", DEFAULT_IDLE_TIMEOUT_SECS)?,
        max_headers: count(l.max_headers, "limits.max_headers", DEFAULT_MAX_HEADERS, 8, 1024)?,
        max_head_bytes: count(l.max_head_bytes, "limits.max_head_bytes", DEFAULT_MAX_HEAD_BYTES, 1024, 1 << 20)?,
        max_connections_per_worker: count(
            l.max_connections_per_worker,
            "limits.max_connections_per_worker",
            DEFAULT_MAX_CONNECTIONS,
            1,
            1 << 20,
        )?,
    };
    let shutdown_grace = secs(shutdown_grace_secs, "shutdown_grace_secs", DEFAULT_SHUTDOWN_GRACE_SECS)?;
    Ok(ServerSettings { client_key: key.map(Secret), allow_remote, limits, shutdown_grace })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_needs_nothing() {
        let s = resolve(addr("127.0.0.1:3456"), None, None, None, None, None, None).unwrap();
        assert_eq!(s.client_key, None);
        assert_eq!(s.limits.header_timeout, Duration::from_secs(10));
        assert_eq!(s.limits.max_headers, 100);
        let s = resolve(addr("[::1]:3456"), None, None, None, None, None, None).unwrap();
        assert!(!s.allow_remote);
    }

    #[test]
    fn remote_listen_needs_allow_remote_and_a_key() {
        let e = resolve(addr("0.0.0.0:3456"), None, None, None, None, None, None).unwrap_err().to_string();
        assert!(e.contains("refusing to listen on 0.0.0.0:3456") && e.contains("api_key"), "{e}");
        let e = resolve(addr("0.0.0.0:3456"), None, None, None, Some(true), None, None).unwrap_err().to_string();
        assert!(e.contains("needs a client key"), "{e}");
        let e = resolve(addr("0.0.0.0:3456"), Some("k".into()), None, None, None, None, None).unwrap_err().to_string();
        assert!(e.contains("allow_remote"), "{e}");
        let s = resolve(addr("0.0.0.0:3456"), None, Some("env-key".into()), None, Some(true), None, None).unwrap();
        assert_eq!(s.client_key, Some(Secret("env-key".into())));
    }

    #[test]
    fn key_precedence_and_masking() {
        let s = resolve(
            addr("127.0.0.1:1"),
            Some("cli-key-0123456789".into()),
            Some("env".into()),
            Some("file".into()),
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(s.client_key.as_ref().unwrap().0, "cli-key-0123456789");
        assert!(!format!("{s:?}").contains("cli-key"));
        let s = resolve(addr("127.0.0.1:1"), None, Some(String::new()), Some("file".into()), None, None, None).unwrap();
        assert_eq!(s.client_key, Some(Secret("file".into())));
        let e = resolve(addr("127.0.0.1:1"), Some("a b".into()), None, None, None, None, None).unwrap_err().to_string();
        assert!(e.contains("whitespace"), "{e}");
    }

    #[test]
    fn limits_are_validated() {
        let bad = FileLimits { header_timeout_secs: Some(0), ..FileLimits::default() };
        let e = resolve(addr("127.0.0.1:1"), None, None, None, None, None, Some(bad)).unwrap_err().to_string();
        assert!(e.contains("limits.header_timeout_secs"), "{e}");
        let bad = FileLimits { max_headers: Some(2), ..FileLimits::default() };
        let e = resolve(addr("127.0.0.1:1"), None, None, None, None, None, Some(bad)).unwrap_err().to_string();
        assert!(e.contains("limits.max_headers"), "{e}");
    }
}
