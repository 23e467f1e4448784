//! The launcher subcommands against the real binary: `start`, `status` and
//! `stop` with a private HOME and XDG_RUNTIME_DIR, and `ccproxy code` with a
//! stub `claude` first on PATH that records its environment and arguments
//! and exits with a chosen code. Both drivers.

mod common;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use common::proxy::{temp_dir, BIN};
use common::{for_each_driver, Driver};

/// A private HOME, runtime dir and PATH for one test; stops any proxy it
/// left running when dropped.
struct Sandbox {
    driver: Driver,
    home: PathBuf,
    runtime: PathBuf,
    stubs: PathBuf,
    record: PathBuf,
    port: u16,
}

impl Sandbox {
    fn new(driver: Driver) -> Sandbox {
        let root = temp_dir("launcher");
        let (home, runtime, stubs) = (root.join("home"), root.join("run"), root.join("bin"));
        for d in [&home, &runtime, &stubs] {
            std::fs::create_dir_all(d).unwrap();
        }
        let claude = stubs.join("claude");
        std::fs::write(
            &claude,
            "#!/bin/sh\nenv > \"$CLAUDE_RECORD.env\"\nsed -n 's/^THP_enabled:[[:space:]]*/THP_enabled=/p' /proc/$$/status >> \"$CLAUDE_RECORD.env\"\n: > \"$CLAUDE_RECORD.args\"\nfor a in \"$@\"; do printf '%s\\0' \"$a\" >> \"$CLAUDE_RECORD.args\"; done\nexit \"${CLAUDE_EXIT:-0}\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o755)).unwrap();
        Sandbox { driver, home, runtime, record: root.join("claude"), stubs, port: free_port() }
    }

    fn listen(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        self.listen().parse().unwrap()
    }

    /// The proxy flags every test passes: a fixed free port and an upstream
    /// nobody calls (the launcher only talks to /health and /status).
    fn flags(&self) -> Vec<String> {
        ["--listen", &self.listen(), "--upstream", "http://127.0.0.1:9/v1", "--workers", "1"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn command<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Command {
        let mut c = Command::new(BIN);
        c.args(args);
        for k in
            ["CCPROXY_UPSTREAM_KEY", "CCPROXY_API_KEY", "MONOIO_FORCE_LEGACY_DRIVER", "XDG_CONFIG_HOME", "RUST_LOG"]
        {
            c.env_remove(k);
        }
        for k in ["ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "API_TIMEOUT_MS"] {
            c.env_remove(k);
        }
        let path = std::env::var("PATH").unwrap_or_default();
        c.env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("PATH", format!("{}:{path}", self.stubs.display()))
            .env("NO_COLOR", "1")
            .env("CLAUDE_RECORD", &self.record);
        if self.driver == Driver::Epoll {
            c.env("MONOIO_FORCE_LEGACY_DRIVER", "1");
        }
        c
    }

    fn run<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Output {
        self.command(args).output().expect("run ccproxy")
    }

    fn pidfile(&self) -> PathBuf {
        self.runtime.join("ccproxy").join("ccproxy.pid")
    }

    fn pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.pidfile()).ok()?;
        text.lines().next()?.parse().ok()
    }

    fn recorded_env(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.record.with_extension("env")).expect("claude did not run");
        text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn recorded_args(&self) -> Vec<String> {
        let bytes = std::fs::read(self.record.with_extension("args")).expect("claude did not run");
        let text = String::from_utf8(bytes).unwrap();
        let mut args: Vec<String> = text.split('\0').map(str::to_string).collect();
        args.pop(); // after the last NUL
        args
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) of the proxy this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A one-shot GET; None when nothing listens.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.get(9..12)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// Running and not a zombie.
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn start_status_stop() {
    for_each_driver(|d| {
        let sb = Sandbox::new(d);
        // Flags go before `start` under one driver and after it under the other.
        let mut args = sb.flags();
        if d == Driver::IoUring {
            args.insert(0, "start".into());
        } else {
            args.push("start".into());
        }
        let out = sb.run(&args);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(&format!("on http://{}", sb.listen())), "{}", text(&out));
        let pid = sb.pid().expect("pidfile written");
        assert!(text(&out).contains(&format!("pid {pid}")), "{}", text(&out));
        let pidfile = std::fs::read_to_string(sb.pidfile()).unwrap();
        assert_eq!(pidfile, format!("{pid}\n{}\n", sb.listen()));
        assert!(process_alive(pid));
        assert_eq!(get(sb.addr(), "/health").map(|r| r.0), Some(200));
        // The log file got the proxy's output.
        let log = std::fs::read_to_string(sb.runtime.join("ccproxy/ccproxy.log")).unwrap();
        assert!(log.contains(&format!("listening on http://{}", sb.listen())), "{log}");

        // A second start finds it running and leaves it be.
        let out = sb.run(["start"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(&format!("already running (pid {pid})")), "{}", text(&out));
        assert_eq!(sb.pid(), Some(pid));

        let out = sb.run(["status"]);
        assert!(out.status.success(), "{}", text(&out));
        let t = text(&out);
        assert!(t.contains(&format!("running (pid {pid}) on http://{}", sb.listen())), "{t}");
        let json_line = t.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no /status JSON: {t}"));
        let v: serde_json::Value = serde_json::from_str(json_line).unwrap();
        assert_eq!(v["listen"], sb.listen());
        assert_eq!(v["driver"], d.name());
        assert_eq!(v["workers"], 1);

        let out = sb.run(["stop"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(&format!("stopped (pid {pid})")), "{}", text(&out));
        assert!(!sb.pidfile().exists());
        assert!(!process_alive(pid));
        assert!(get(sb.addr(), "/health").is_none(), "still answering after stop");

        let out = sb.run(["status"]);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        assert!(text(&out).contains("not running"));
        let out = sb.run(["stop"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("not running"));
    });
}

#[test]
fn code_runs_claude_against_the_proxy() {
    for_each_driver(|d| {
        let sb = Sandbox::new(d);
        // Not running yet: `code` starts it, then runs the stub.
        let mut args = sb.flags();
        args.push("code".into());
        let claude_args = ["-p", "two words", "--model", "sonnet", "--help", "--", "-x"];
        args.extend(claude_args.iter().map(|s| s.to_string()));
        let out = sb.command(&args).env("CLAUDE_EXIT", "42").output().unwrap();
        assert_eq!(out.status.code(), Some(42), "{}", text(&out));
        let env = sb.recorded_env();
        let var = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(var("ANTHROPIC_BASE_URL"), Some(format!("http://{}", sb.listen()).as_str()));
        assert_eq!(var("ANTHROPIC_AUTH_TOKEN"), Some("ccproxy"));
        assert_eq!(var("API_TIMEOUT_MS"), Some("600000"));
        // The rest of the environment is passed through.
        assert_eq!(var("HOME"), Some(sb.home.to_str().unwrap()));
        // The server turns huge pages off for itself; claude keeps them
        // (the stub's line is absent on kernels without the field).
        if let Some(thp) = var("THP_enabled") {
            assert_eq!(thp, "1", "claude inherited the proxy's THP setting");
        }
        assert_eq!(sb.recorded_args(), claude_args);

        // The proxy stays up for the next session.
        let pid = sb.pid().expect("code wrote the pidfile");
        assert!(process_alive(pid));
        assert_eq!(get(sb.addr(), "/health").map(|r| r.0), Some(200));

        // Already running: no second proxy, plain exit code 0, no args.
        let out = sb.command(["code"]).env("CLAUDE_EXIT", "0").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(!text(&out).contains("started"), "{}", text(&out));
        assert_eq!(sb.pid(), Some(pid));
        assert!(sb.recorded_args().is_empty());
        assert_eq!(
            sb.recorded_env().iter().find(|(k, _)| k == "ANTHROPIC_BASE_URL").map(|(_, v)| v.clone()),
            Some(format!("http://{}", sb.listen()))
        );

        // Without `claude` on PATH: 127 and a hint.
        let out = sb.command(["code"]).env("PATH", &sb.home).output().unwrap();
        assert_eq!(out.status.code(), Some(127), "{}", text(&out));
        assert!(text(&out).contains("`claude` is not on PATH"), "{}", text(&out));

        let out = sb.run(["stop"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(!process_alive(pid));
    });
}

#[test]
fn invalid_flags_fail_start_without_a_pidfile() {
    let sb = Sandbox::new(Driver::IoUring);
    let out = sb.run(["start", "--listen", "not-an-address"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("invalid configuration"), "{}", text(&out));
    assert!(!sb.pidfile().exists());
}

#[test]
fn version_and_plain_flags_still_work() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("ccproxy {}", env!("CARGO_PKG_VERSION")));
    // The foreground contract: flags without a subcommand.
    let out = Command::new(BIN)
        .args(["--upstream", "http://127.0.0.1:9/v1", "--listen", "127.0.0.1:1", "--check-config"])
        .env("HOME", temp_dir("home"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("127.0.0.1:1"), "{}", text(&out));
}
