//! The launcher subcommands, in the manner of `ccr code`: `start`, `stop`,
//! `status` and `code`.
//!
//! Receives a [`Command`] and the proxy flags from `main` (the flags given
//! before the subcommand, plus those after `start`), and emits a background
//! proxy (the same binary re-executed with those flags, detached into its
//! own session, stdout/stderr appended to a log file, its pid and address in
//! a pidfile), signals to it, a status report, or a `claude` process pointed
//! at the proxy. State lives in `$XDG_RUNTIME_DIR/ccproxy/` when that is set,
//! else in `~/.ccproxy/`.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Parser;

use crate::config::{Cli, Config};

/// Token given to `claude` when the proxy has no client key: Claude Code
/// wants one to skip its login, and ccproxy ignores it.
pub const PLACEHOLDER_TOKEN: &str = "ccproxy";
/// Claude Code's own default is shorter than a long generation may take.
pub const API_TIMEOUT_MS: &str = "600000";
/// How long `start` waits for `/health` to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `stop` waits after SIGTERM before SIGKILL: the default shutdown
/// grace plus a margin.
const STOP_TIMEOUT: Duration = Duration::from_secs(35);
const POLL: Duration = Duration::from_millis(50);
/// `status` exit code when the proxy is not running (LSB convention).
const NOT_RUNNING: u8 = 3;

/// The subcommands. Without one, `ccproxy` runs the proxy in the foreground.
#[derive(clap::Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start the proxy in the background (pidfile and log file) with the given flags
    Start {
        /// Proxy flags, as for the foreground `ccproxy`
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "FLAGS")]
        flags: Vec<OsString>,
    },
    /// Stop the background proxy (SIGTERM, then wait for it to exit)
    Stop,
    /// Tell whether the background proxy runs: pid, address and its /status
    Status,
    /// Run Claude Code through the proxy, starting the proxy first when needed
    #[command(disable_help_flag = true)]
    Code {
        /// Arguments passed to `claude` unchanged
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "CLAUDE_ARGS")]
        args: Vec<OsString>,
    },
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Start { .. } => "start",
            Command::Stop => "stop",
            Command::Status => "status",
            Command::Code { .. } => "code",
        }
    }
}

/// Runs a subcommand. `argv` is the whole command line, used to recover the
/// proxy flags given before the subcommand.
pub fn run(command: Command, argv: &[OsString]) -> ExitCode {
    let mut flags = flags_before(argv, command.name());
    let result = match command {
        Command::Start { flags: after } => {
            flags.extend(after);
            start(&flags).map(|(state, fresh)| {
                if !fresh {
                    println!("ccproxy is already running (pid {}) on http://{}", state.pid, state.addr);
                }
                ExitCode::SUCCESS
            })
        }
        Command::Stop => stop(),
        Command::Status => status(&flags),
        Command::Code { args } => code(&flags, &args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("ccproxy: {e:#}");
        ExitCode::FAILURE
    })
}

/// The arguments between the program name and the subcommand. The
/// subcommand is the first occurrence of its name that is not the value of a
/// flag, which is exactly where the flags before it parse on their own.
fn flags_before(argv: &[OsString], name: &str) -> Vec<OsString> {
    for i in 1..argv.len() {
        if argv[i] == name && Cli::try_parse_from(&argv[..i]).is_ok() {
            return argv[1..i].to_vec();
        }
    }
    Vec::new()
}

/// Parses proxy flags and resolves the configuration they select.
fn load(flags: &[OsString]) -> anyhow::Result<(Cli, Config)> {
    let argv = std::iter::once(OsString::from("ccproxy")).chain(flags.iter().cloned());
    let cli = Cli::try_parse_from(argv).map_err(|e| anyhow!("{e}"))?;
    let config = Config::load(&cli).context("invalid configuration")?;
    Ok((cli, config))
}

/// The key clients must present, if one is configured.
fn client_key(config: &Config) -> Option<String> {
    config.server.client_key.as_ref().map(|k| k.0.clone())
}

/// Where the pidfile and log live.
pub fn state_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("ccproxy"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".ccproxy")),
        None => bail!("neither XDG_RUNTIME_DIR nor HOME is set; cannot place the pidfile"),
    }
}

pub fn pidfile() -> anyhow::Result<PathBuf> {
    Ok(state_dir()?.join("ccproxy.pid"))
}

pub fn logfile() -> anyhow::Result<PathBuf> {
    Ok(state_dir()?.join("ccproxy.log"))
}

/// A background proxy as its pidfile records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub pid: i32,
    /// Where clients reach it (a wildcard listen address becomes loopback).
    pub addr: SocketAddr,
}

impl State {
    fn render(&self) -> String {
        format!("{}\n{}\n", self.pid, self.addr)
    }

    fn parse(text: &str) -> Option<State> {
        let mut lines = text.lines();
        let pid = lines.next()?.trim().parse().ok().filter(|&p: &i32| p > 0)?;
        let addr = lines.next()?.trim().parse().ok()?;
        Some(State { pid, addr })
    }
}

/// The recorded proxy if it is still alive; a stale pidfile is removed.
fn running() -> anyhow::Result<Option<State>> {
    let path = pidfile()?;
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    match State::parse(&text) {
        Some(s) if alive(s.pid) && is_ccproxy(s.pid) => Ok(Some(s)),
        _ => {
            let _ = std::fs::remove_file(&path);
            Ok(None)
        }
    }
}

/// Whether `pid` exists and is not a zombie waiting to be reaped.
fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    if r != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => !stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

/// Guards against a recycled pid: the process must be a ccproxy binary.
fn is_ccproxy(pid: i32) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => {
            let argv0 = cmd.split(|&b| b == 0).next().unwrap_or_default();
            Path::new(std::str::from_utf8(argv0).unwrap_or_default())
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains("ccproxy"))
        }
        Err(_) => true,
    }
}

/// The address a local client uses for a listen address.
fn client_addr(listen: SocketAddr) -> SocketAddr {
    let mut a = listen;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    a
}

/// `ccproxy start`: returns the running proxy and whether this call started it.
fn start(flags: &[OsString]) -> anyhow::Result<(State, bool)> {
    if let Some(s) = running()? {
        return Ok((s, false));
    }
    let (cli, config) = load(flags)?;
    if cli.check_config {
        bail!("--check-config does not start anything; run it without `start`");
    }
    let dir = state_dir()?;
    create_private_dir(&dir)?;
    let log_path = logfile()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open the log file {}", log_path.display()))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().context("cannot find the ccproxy binary")?;
    let mut cmd = Process::new(exe);
    cmd.args(flags).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    detach(&mut cmd);
    let mut child = cmd.spawn().context("cannot start the background proxy")?;
    let pid = child.id() as i32;

    let deadline = Instant::now() + START_TIMEOUT;
    let configured = (config.listen.port() != 0).then(|| client_addr(config.listen));
    let addr = loop {
        if let Ok(Some(st)) = child.try_wait() {
            bail!(
                "the proxy exited during start-up ({st}); log {}:\n{}",
                log_path.display(),
                tail(&log_path, log_start)
            );
        }
        let addr = configured.or_else(|| listening_in_log(&log_path, log_start));
        if let Some(addr) = addr {
            if get(addr, "/health", None).is_ok_and(|(status, _)| status == 200) {
                break addr;
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the proxy did not answer /health within {START_TIMEOUT:?}; log {}", log_path.display());
        }
        std::thread::sleep(POLL);
    };
    let state = State { pid, addr };
    std::fs::write(pidfile()?, state.render()).context("cannot write the pidfile")?;
    eprintln!("ccproxy started (pid {pid}) on http://{addr}; log: {}", log_path.display());
    Ok((state, true))
}

/// Puts the child in a session of its own, so that the terminal's hangup
/// and Ctrl-C never reach the background proxy.
fn detach(cmd: &mut Process) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// The address from the proxy's startup line, for `--listen` port 0.
fn listening_in_log(path: &Path, from: u64) -> Option<SocketAddr> {
    let text = read_from(path, from);
    let at = text.find("listening on http://")? + "listening on http://".len();
    let rest = &text[at..];
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    rest[..end].parse().ok().map(client_addr)
}

fn read_from(path: &Path, from: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let from = usize::try_from(from).unwrap_or(0).min(bytes.len());
    String::from_utf8_lossy(&bytes[from..]).into_owned()
}

/// The last lines the child logged, for an error message.
fn tail(path: &Path, from: u64) -> String {
    let text = read_from(path, from);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `ccproxy stop`.
fn stop() -> anyhow::Result<ExitCode> {
    let Some(s) = running()? else {
        println!("ccproxy is not running");
        return Ok(ExitCode::SUCCESS);
    };
    // SAFETY: plain kill(2) on the recorded, just-verified pid.
    unsafe { libc::kill(s.pid, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    while alive(s.pid) {
        if Instant::now() > deadline {
            eprintln!("ccproxy: pid {} did not exit within {STOP_TIMEOUT:?} of SIGTERM; sending SIGKILL", s.pid);
            // SAFETY: as above.
            unsafe { libc::kill(s.pid, libc::SIGKILL) };
            break;
        }
        std::thread::sleep(POLL);
    }
    let _ = std::fs::remove_file(pidfile()?);
    println!("ccproxy stopped (pid {})", s.pid);
    Ok(ExitCode::SUCCESS)
}

/// `ccproxy status`: 0 running and answering, 1 running but not answering,
/// 3 not running.
fn status(flags: &[OsString]) -> anyhow::Result<ExitCode> {
    let Some(s) = running()? else {
        println!("ccproxy is not running");
        return Ok(ExitCode::from(NOT_RUNNING));
    };
    println!("ccproxy is running (pid {}) on http://{}", s.pid, s.addr);
    let key = load(flags).ok().and_then(|(_, c)| client_key(&c));
    match get(s.addr, "/status", key.as_deref()) {
        Ok((200, body)) => {
            println!("{}", String::from_utf8_lossy(&body));
            Ok(ExitCode::SUCCESS)
        }
        Ok((code, body)) => {
            println!("/status answered {code}: {}", String::from_utf8_lossy(&body));
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            println!("/status does not answer: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `ccproxy code`: starts the proxy when needed, runs `claude` against it
/// and exits with claude's exit code.
fn code(flags: &[OsString], args: &[OsString]) -> anyhow::Result<ExitCode> {
    let (state, _) = start(flags)?;
    let key = load(flags).ok().and_then(|(_, c)| client_key(&c));
    let mut cmd = Process::new("claude");
    cmd.args(args);
    for (k, v) in claude_env(state.addr, key.as_deref()) {
        cmd.env(k, v);
    }
    let status = match cmd.status() {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "ccproxy: `claude` is not on PATH; install Claude Code (npm install -g @anthropic-ai/claude-code). \
                 The proxy keeps running on http://{}",
                state.addr
            );
            return Ok(ExitCode::from(127));
        }
        Err(e) => return Err(e).context("cannot run `claude`"),
    };
    Ok(ExitCode::from(exit_code(status)))
}

/// The environment that points Claude Code at the proxy.
pub fn claude_env(addr: SocketAddr, key: Option<&str>) -> [(&'static str, String); 3] {
    [
        ("ANTHROPIC_BASE_URL", format!("http://{addr}")),
        ("ANTHROPIC_AUTH_TOKEN", key.unwrap_or(PLACEHOLDER_TOKEN).to_string()),
        ("API_TIMEOUT_MS", API_TIMEOUT_MS.to_string()),
    ]
}

/// A child's exit status as a shell reports it (128 + signal when killed).
fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => (128 + sig) as u8,
        (None, None) => 1,
    }
}

/// A one-shot `GET` on loopback: (status, body).
fn get(addr: SocketAddr, path: &str, key: Option<&str>) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let auth = key.map(|k| format!("x-api-key: {k}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\r\n")?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP response"))?;
    let body = resp.windows(4).position(|w| w == b"\r\n\r\n").map(|i| resp[i + 4..].to_vec()).unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn flags_before_the_subcommand_skip_flag_values() {
        let argv = os(&["ccproxy", "--listen", "127.0.0.1:1", "code", "-p", "hi"]);
        assert_eq!(flags_before(&argv, "code"), os(&["--listen", "127.0.0.1:1"]));
        // `start` as the value of --model is not the subcommand.
        let argv = os(&["ccproxy", "--model", "start", "start", "--workers", "1"]);
        assert_eq!(flags_before(&argv, "start"), os(&["--model", "start"]));
        assert!(flags_before(&os(&["ccproxy", "stop"]), "stop").is_empty());
    }

    #[test]
    fn pidfile_round_trips_and_rejects_junk() {
        let s = State { pid: 4242, addr: "127.0.0.1:3456".parse().unwrap() };
        assert_eq!(State::parse(&s.render()), Some(s));
        assert_eq!(State::parse("0\n127.0.0.1:1\n"), None);
        assert_eq!(State::parse("12\n"), None);
        assert_eq!(State::parse("x\n127.0.0.1:1\n"), None);
    }

    #[test]
    fn wildcard_listen_becomes_loopback() {
        assert_eq!(client_addr("0.0.0.0:3456".parse().unwrap()), "127.0.0.1:3456".parse().unwrap());
        assert_eq!(client_addr("[::]:7".parse().unwrap()), "[::1]:7".parse().unwrap());
        assert_eq!(client_addr("10.1.2.3:7".parse().unwrap()), "10.1.2.3:7".parse().unwrap());
    }

    #[test]
    fn claude_env_has_url_token_and_timeout() {
        let env = claude_env("127.0.0.1:9".parse().unwrap(), None);
        assert_eq!(env[0], ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9".to_string()));
        assert_eq!(env[1], ("ANTHROPIC_AUTH_TOKEN", PLACEHOLDER_TOKEN.to_string()));
        assert_eq!(env[2], ("API_TIMEOUT_MS", "600000".to_string()));
        assert_eq!(claude_env("127.0.0.1:9".parse().unwrap(), Some("k1")).get(1).map(|e| e.1.as_str()), Some("k1"));
    }

    #[test]
    fn this_process_is_alive_and_a_dead_pid_is_not() {
        assert!(alive(std::process::id() as i32));
        let mut child = Process::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(!alive(pid));
    }

    #[test]
    fn startup_line_gives_the_address() {
        let dir = std::env::temp_dir().join(format!("ccproxy-launcher-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("log");
        std::fs::write(&p, "old ccproxy listening on http://127.0.0.1:1 x\n").unwrap();
        let from = std::fs::metadata(&p).unwrap().len();
        assert_eq!(listening_in_log(&p, from), None);
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"INFO ccproxy listening on http://0.0.0.0:4567 workers=2\n").unwrap();
        assert_eq!(listening_in_log(&p, from), Some("127.0.0.1:4567".parse().unwrap()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
