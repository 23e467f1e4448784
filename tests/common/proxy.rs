//! Starts the real `ccproxy` binary for a test.
//!
//! Receives the driver to run under and extra flags/env; spawns the binary on
//! `127.0.0.1:0` with a private empty HOME, reads its stderr/stdout in threads
//! (forever, so pipes never fill), parses the port, driver and worker count
//! from the startup line, and keeps the whole log for assertions. Killing the
//! process happens on drop.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::{post_json, Client, Response};
use super::mock::{Mock, TEST_KEY};

pub const BIN: &str = env!("CARGO_BIN_EXE_ccproxy");

/// Which monoio driver the proxy must run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// The default; this machine supports io_uring, so the proxy must use it.
    IoUring,
    /// Forced with `MONOIO_FORCE_LEGACY_DRIVER=1`.
    Epoll,
}

impl Driver {
    pub const ALL: [Driver; 2] = [Driver::IoUring, Driver::Epoll];

    pub fn name(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// Runs `f` once per driver.
pub fn for_each_driver(mut f: impl FnMut(Driver)) {
    for d in Driver::ALL {
        eprintln!("=== driver {}", d.name());
        f(d);
    }
}

/// The common case: per driver, a fresh mock and a proxy pointed at it with
/// the test key. After `f`, checks the log for leaks and panics.
pub fn with_proxy(mut f: impl FnMut(&Mock, &Proxy)) {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = ProxyCmd::new(d).upstream(&mock).start();
        f(&mock, &proxy);
        proxy.finish();
        drop(mock);
    });
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A private scratch directory, removed by nobody (tmp is cleaned by the OS).
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("ccproxy-itest-{}-{tag}-{n}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Writes a config file and returns its path.
pub fn write_config(text: &str) -> PathBuf {
    let p = temp_dir("cfg").join("config.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A proxy command line being assembled.
pub struct ProxyCmd {
    pub driver: Driver,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    listen: bool,
    workers: bool,
}

impl ProxyCmd {
    pub fn new(driver: Driver) -> ProxyCmd {
        ProxyCmd { driver, args: Vec::new(), env: Vec::new(), listen: true, workers: true }
    }

    /// `--upstream <mock> --upstream-key TEST_KEY --retries 0`: each scripted
    /// upstream answer is seen exactly once (retries have their own tests).
    pub fn upstream(self, mock: &Mock) -> ProxyCmd {
        self.arg("--upstream").arg(&mock.url()).arg("--upstream-key").arg(TEST_KEY).arg("--retries").arg("0")
    }

    pub fn arg(mut self, a: &str) -> ProxyCmd {
        self.args.push(a.to_string());
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> ProxyCmd {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Do not add `--listen 127.0.0.1:0` (the test passes its own, or a config).
    pub fn no_listen(mut self) -> ProxyCmd {
        self.listen = false;
        self
    }

    /// `--workers n` instead of the default 2.
    pub fn workers(mut self, n: usize) -> ProxyCmd {
        self.workers = false;
        self.arg("--workers").arg(&n.to_string())
    }

    /// Do not add `--workers 2`.
    pub fn no_workers(mut self) -> ProxyCmd {
        self.workers = false;
        self
    }

    fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        if self.listen {
            c.args(["--listen", "127.0.0.1:0"]);
        }
        if self.workers {
            c.args(["--workers", "2"]);
        }
        c.args(&self.args);
        for k in ["CCPROXY_UPSTREAM_KEY", "MONOIO_FORCE_LEGACY_DRIVER", "XDG_CONFIG_HOME", "RUST_LOG"] {
            c.env_remove(k);
        }
        c.env("HOME", temp_dir("home"));
        c.env("NO_COLOR", "1");
        if self.driver == Driver::Epoll {
            c.env("MONOIO_FORCE_LEGACY_DRIVER", "1");
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Runs a command that is expected to exit by itself (`--check-config`).
    pub fn run_to_exit(&self) -> Output {
        let mut c = self.command();
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn ccproxy");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if child.try_wait().unwrap().is_some() {
                return child.wait_with_output().unwrap();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "ccproxy {:?} did not exit within 20 s; stderr: {}",
                    self.args,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the proxy and waits for its startup line.
    pub fn start(self) -> Proxy {
        let mut c = self.command();
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn ccproxy");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let mut readers = Vec::new();
        let stderr = child.stderr.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        readers.push(spawn_reader(stderr, log.clone(), Some(tx)));
        readers.push(spawn_reader(stdout, log.clone(), None));
        let deadline = Instant::now() + Duration::from_secs(30);
        let line = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => break l,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = child.wait();
                    panic!("ccproxy exited before listening; log:\n{}", log.lock().unwrap());
                }
            }
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                let _ = child.wait();
                thread::sleep(Duration::from_millis(50));
                panic!("ccproxy did not log `listening on` in time; log:\n{}", log.lock().unwrap());
            }
        };
        let addr = parse_listen(&line).unwrap_or_else(|| panic!("no address in startup line {line:?}"));
        let driver = field(&line, "driver").unwrap_or_else(|| panic!("no driver= in startup line {line:?}"));
        let workers = field(&line, "workers")
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no workers=N in startup line {line:?}"));
        assert!(!line.contains('\u{1b}'), "ANSI escape in a non-tty log line: {line:?}");
        assert_eq!(
            driver,
            self.driver.name(),
            "the proxy reports driver={driver} but the test asked for {} (line {line:?})",
            self.driver.name()
        );
        Proxy { child: Some(child), addr, driver, workers, log, readers, startup_line: line }
    }
}

fn spawn_reader(
    r: impl Read + Send + 'static,
    log: Arc<Mutex<String>>,
    mut tx: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let l = String::from_utf8_lossy(&line).into_owned();
            log.lock().unwrap().push_str(&l);
            if l.contains("listening on") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(l.trim_end().to_string());
                }
            }
        }
    })
}

/// `listening on http://127.0.0.1:PORT` → the address.
pub fn parse_listen(line: &str) -> Option<SocketAddr> {
    let i = line.find("listening on")?;
    let rest = &line[i + "listening on".len()..];
    let rest = rest.trim_start().trim_start_matches("http://");
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == ':')).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Value of a `key=value` field in a log line (quotes stripped).
pub fn field(line: &str, key: &str) -> Option<String> {
    let pat = format!("{key}=");
    let mut from = 0;
    while let Some(i) = line[from..].find(&pat) {
        let at = from + i;
        let boundary = at == 0 || !line.as_bytes()[at - 1].is_ascii_alphanumeric();
        if boundary {
            let rest = line[at + pat.len()..].trim_start_matches('"');
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            return Some(rest[..end].to_string());
        }
        from = at + pat.len();
    }
    None
}

/// A running proxy.
pub struct Proxy {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub driver: String,
    pub workers: usize,
    pub startup_line: String,
    log: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Proxy {
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Sends raw bytes on a fresh connection and reads one response.
    pub fn send(&self, raw: &[u8]) -> Response {
        let mut c = self.client();
        c.send(raw);
        let r = c.read_response();
        assert_no_key(&r.head.raw);
        assert_no_key(&r.body);
        r
    }

    /// Sends a streaming request on a fresh connection; the caller reads the
    /// answer with `Client::start_stream`.
    pub fn stream(&self, body: &Value) -> Client {
        let mut c = self.client();
        c.send(&post_json("/v1/messages", body));
        c
    }

    /// POST /v1/messages with Anthropic headers on a fresh connection.
    pub fn messages(&self, body: &Value) -> Response {
        self.send(&post_json("/v1/messages", body))
    }

    pub fn get(&self, path: &str) -> Response {
        self.send(&super::client::request("GET", path, &[], b""))
    }

    /// The log captured so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The proxy's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the proxy was already stopped").id()
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`) to the proxy process.
    pub fn signal(&self, sig: i32) {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed: {}", std::io::Error::last_os_error());
    }

    /// Waits up to `timeout` for the proxy to exit by itself and returns its
    /// status; panics (after killing it) if it is still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("the proxy was already stopped");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return status;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!("the proxy did not exit within {timeout:?}; log:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits up to `timeout` until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log.lock().unwrap().contains(needle) {
                return true;
            }
            thread::sleep(Duration::from_millis(5));
        }
        self.log.lock().unwrap().contains(needle)
    }

    /// Stops the proxy and returns its whole log.
    pub fn stop(mut self) -> String {
        self.kill();
        self.log()
    }

    /// Stops the proxy and asserts its log never shows the upstream key or a
    /// panic.
    pub fn finish(self) {
        let log = self.stop();
        assert_log_clean(&log);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The upstream key must never reach a client.
pub fn assert_no_key(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(!text.contains(TEST_KEY), "the upstream key was sent to the client: {text}");
}

pub fn assert_log_clean(log: &str) {
    assert!(!log.contains(TEST_KEY), "the upstream key appears in the proxy log:\n{log}");
    assert!(!log.contains("panicked at"), "the proxy panicked:\n{log}");
}
