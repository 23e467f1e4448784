//! Upstream HTTPS, end to end: the real `ccproxy` binary against a local
//! TLS mock upstream whose CA and certificate (for `localhost` and
//! 127.0.0.1) are generated at test time with rcgen.
//!
//! Receives nothing from outside: every test makes its own CA, mock
//! provider (std threads + rustls `ServerConnection`), optional CONNECT
//! proxy and config file, spawns the binary with `--listen 127.0.0.1:0`
//! and talks to it over plain HTTP. Every test runs under both monoio
//! drivers (io_uring where the kernel allows it, and epoll forced with
//! `MONOIO_FORCE_LEGACY_DRIVER=1`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

const IO_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- PKI

struct Pki {
    ca_pem: String,
    server: Arc<ServerConfig>,
}

fn new_ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, "ccproxy test CA");
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A CA and a server certificate it signed for `localhost` and 127.0.0.1.
fn pki() -> Pki {
    let ca = new_ca();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let chain = vec![cert.der().clone(), CertificateDer::from(ca.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Pki { ca_pem: ca.pem(), server: Arc::new(server) }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ccproxy-tls-it-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------- TLS mock

const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"mock-model","choices":[{"index":0,"message":{"role":"assistant","content":"hello over tls"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;

const SSE_EVENTS: &[&str] = &[
    r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"mock-model","choices":[{"index":0,"delta":{"role":"assistant","content":"streamed "},"finish_reason":null}]}"#,
    r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"mock-model","choices":[{"index":0,"delta":{"content":"over tls"},"finish_reason":null}]}"#,
    r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"mock-model","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
    "[DONE]",
];

/// SNI and negotiated ALPN of one TLS session.
type Session = (Option<String>, Option<Vec<u8>>);

#[derive(Default)]
struct MockLog {
    /// TCP connections accepted.
    accepted: AtomicUsize,
    /// TLS handshakes that completed.
    handshakes: AtomicUsize,
    /// SNI and ALPN of each completed handshake.
    sessions: Mutex<Vec<Session>>,
    /// Request line and Host header of each request.
    requests: Mutex<Vec<(String, String)>>,
}

struct Mock {
    port: u16,
    log: Arc<MockLog>,
}

fn start_mock(server: Arc<ServerConfig>) -> Mock {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(MockLog::default());
    let shared = log.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            shared.accepted.fetch_add(1, Ordering::SeqCst);
            let (server, log) = (server.clone(), shared.clone());
            std::thread::spawn(move || serve_tls(tcp, server, &log));
        }
    });
    Mock { port, log }
}

fn serve_tls(tcp: TcpStream, server: Arc<ServerConfig>, log: &MockLog) {
    let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
    let Ok(conn) = ServerConnection::new(server) else { return };
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        if tls.conn.complete_io(&mut tls.sock).is_err() {
            return; // e.g. the client rejected our certificate
        }
    }
    log.handshakes.fetch_add(1, Ordering::SeqCst);
    let session = (tls.conn.server_name().map(str::to_string), tls.conn.alpn_protocol().map(<[u8]>::to_vec));
    log.sessions.lock().unwrap().push(session);
    let mut buf = Vec::new();
    loop {
        let Some((line, host, body)) = read_request(&mut tls, &mut buf) else { return };
        log.requests.lock().unwrap().push((line, host));
        let stream = find(&body, b"\"stream\":true,").is_some();
        let ok = if stream {
            write_sse(&mut tls)
        } else if body.len() > BIG {
            write_big_json(&mut tls)
        } else {
            write_json(&mut tls)
        };
        if ok.is_err() {
            return;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one request with a content-length body; None at EOF or error.
fn read_request(r: &mut impl Read, buf: &mut Vec<u8>) -> Option<(String, String, Vec<u8>)> {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = r.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
            .map(str::to_string)
    };
    let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + len {
        let n = r.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    let line = head.lines().next().unwrap_or("").to_string();
    Some((line, header("host").unwrap_or_default(), body))
}

fn write_json(w: &mut impl Write) -> std::io::Result<()> {
    let head =
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", COMPLETION.len());
    w.write_all(head.as_bytes())?;
    w.write_all(COMPLETION.as_bytes())?;
    w.flush()
}

/// Request bodies past this size get a large answer.
const BIG: usize = 1 << 20;

/// A completion whose text is `BIG / 2` bytes of `x`.
fn write_big_json(w: &mut impl Write) -> std::io::Result<()> {
    let json = COMPLETION.replace("hello over tls", &"x".repeat(BIG / 2));
    write!(w, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", json.len())?;
    w.write_all(json.as_bytes())?;
    w.flush()
}

fn write_sse(w: &mut impl Write) -> std::io::Result<()> {
    w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")?;
    w.flush()?;
    for data in SSE_EVENTS {
        let event = format!("data: {data}\n\n");
        write!(w, "{:x}\r\n{event}\r\n", event.len())?;
        w.flush()?;
        std::thread::sleep(Duration::from_millis(20));
    }
    w.write_all(b"0\r\n\r\n")?;
    w.flush()
}

// ------------------------------------------------------ CONNECT proxy

struct Forward {
    port: u16,
    /// Request line of each CONNECT received.
    connects: Arc<Mutex<Vec<String>>>,
}

/// A tiny HTTP forward proxy. `answer` is its status line for CONNECT; on
/// 200 it pipes bytes both ways to the target.
fn start_forward_proxy(answer: &'static str) -> Forward {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connects = Arc::new(Mutex::new(Vec::new()));
    let seen = connects.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let seen = seen.clone();
            std::thread::spawn(move || tunnel(client, answer, &seen));
        }
    });
    Forward { port, connects }
}

fn tunnel(mut client: TcpStream, answer: &str, seen: &Mutex<Vec<String>>) {
    let _ = client.set_read_timeout(Some(IO_TIMEOUT));
    let mut buf = Vec::new();
    let Some((line, _host, _)) = read_request(&mut client, &mut buf) else { return };
    seen.lock().unwrap().push(line.clone());
    let target = line.split(' ').nth(1).unwrap_or("").to_string();
    if !answer.starts_with("200") {
        let _ = write!(client, "HTTP/1.1 {answer}\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    let Ok(upstream) = TcpStream::connect(&target) else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let _ = write!(client, "HTTP/1.1 {answer}\r\n\r\n");
    let _ = client.set_read_timeout(None);
    let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let (mut c1, mut u1) = (client, upstream);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c1, &mut u1);
        let _ = u1.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut u2, &mut c2);
    let _ = c2.shutdown(Shutdown::Write);
    let _ = up.join();
}

// ------------------------------------------------------------ ccproxy

struct Proxy {
    child: Child,
    port: u16,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on `config` and waits for its `listening on` line.
fn spawn_proxy(config: &Path, legacy: bool) -> Proxy {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccproxy"));
    cmd.args(["--listen", "127.0.0.1:0", "--config"]).arg(config);
    for var in ["HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "CCPROXY_UPSTREAM_KEY", "RUST_LOG"] {
        cmd.env_remove(var);
    }
    if legacy {
        cmd.env("MONOIO_FORCE_LEGACY_DRIVER", "1");
    } else {
        cmd.env_remove("MONOIO_FORCE_LEGACY_DRIVER");
    }
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let port = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            panic!("ccproxy exited before listening:\n{seen}");
        };
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
            let port = rest.split(' ').next().unwrap_or("").parse::<u16>().unwrap();
            if legacy {
                assert!(line.contains("driver=epoll"), "{line}");
            }
            break port;
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Proxy { child, port }
}

/// One request over a fresh connection; returns status and de-chunked body.
fn post_messages(port: u16, stream: bool) -> (u16, String) {
    post_messages_with(port, stream, "hi")
}

fn post_messages_with(port: u16, stream: bool, text: &str) -> (u16, String) {
    let body = format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":64,"stream":{stream},"messages":[{{"role":"user","content":"{text}"}}]}}"#
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        s,
        "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nx-api-key: test\r\n\
         anthropic-version: 2023-06-01\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = find(&raw, b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut body = raw[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, String::from_utf8_lossy(&body).to_string())
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = find(b, b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 2 + size + 2..];
    }
    out
}

fn config(dir: &TempDir, upstream: &str, extra: &str) -> PathBuf {
    let text = format!(
        "workers = 1\n[upstream]\nbase_url = \"{upstream}\"\nmodel = \"mock-model\"\nconnect_timeout_secs = 5\n{extra}"
    );
    dir.write("ccproxy.toml", &text)
}

fn both_drivers(test: impl Fn(bool)) {
    for legacy in [false, true] {
        test(legacy);
    }
}

fn toml_path(p: &Path) -> String {
    p.display().to_string().replace('\\', "\\\\")
}

// -------------------------------------------------------------- tests

#[test]
fn https_through_the_pool_reuses_one_tls_connection() {
    both_drivers(|legacy| {
        let pki = pki();
        let mock = start_mock(pki.server.clone());
        let dir = TempDir::new("pool");
        let ca = dir.write("ca.pem", &pki.ca_pem);
        let cfg = config(
            &dir,
            &format!("https://localhost:{}/v1", mock.port),
            &format!("ca_file = \"{}\"\n", toml_path(&ca)),
        );
        let proxy = spawn_proxy(&cfg, legacy);
        for _ in 0..2 {
            let (status, body) = post_messages(proxy.port, false);
            assert_eq!(status, 200, "{body}");
            assert!(body.contains("hello over tls"), "{body}");
        }
        assert_eq!(mock.log.accepted.load(Ordering::SeqCst), 1, "legacy={legacy}");
        assert_eq!(mock.log.handshakes.load(Ordering::SeqCst), 1, "legacy={legacy}");
        let sessions = mock.log.sessions.lock().unwrap().clone();
        assert_eq!(sessions, vec![(Some("localhost".to_string()), Some(b"http/1.1".to_vec()))]);
        let requests = mock.log.requests.lock().unwrap().clone();
        let want = ("POST /v1/chat/completions HTTP/1.1".to_string(), format!("localhost:{}", mock.port));
        assert_eq!(requests, vec![want.clone(), want]);
    });
}

#[test]
fn streaming_over_tls() {
    both_drivers(|legacy| {
        let pki = pki();
        let mock = start_mock(pki.server.clone());
        let dir = TempDir::new("sse");
        let ca = dir.write("ca.pem", &pki.ca_pem);
        let cfg = config(
            &dir,
            &format!("https://localhost:{}/v1", mock.port),
            &format!("ca_file = \"{}\"\n", toml_path(&ca)),
        );
        let proxy = spawn_proxy(&cfg, legacy);
        let (status, body) = post_messages(proxy.port, false);
        assert_eq!(status, 200, "{body}");
        {
            let (status, body) = post_messages(proxy.port, true);
            assert_eq!(status, 200, "{body}");
            let deltas: String = body
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| d.split("\"text\":\"").nth(1).filter(|_| d.contains("text_delta")))
                .map(|t| t.split('"').next().unwrap_or(""))
                .collect();
            assert_eq!(deltas, "streamed over tls", "{body}");
            assert!(body.contains("event: message_stop"), "{body}");
            assert!(body.contains("\"stop_reason\":\"end_turn\""), "{body}");
        }
        // The stream ran over the pooled TLS connection of the first request.
        assert_eq!(mock.log.handshakes.load(Ordering::SeqCst), 1, "legacy={legacy}");
    });
}

#[test]
fn untrusted_certificate_is_a_clear_502() {
    both_drivers(|legacy| {
        let pki = pki();
        let mock = start_mock(pki.server.clone());
        let dir = TempDir::new("badcert");
        let cfg = config(&dir, &format!("https://localhost:{}/v1", mock.port), "");
        let proxy = spawn_proxy(&cfg, legacy);
        let (status, body) = post_messages(proxy.port, false);
        assert_eq!(status, 502, "{body}");
        assert!(body.contains("\"type\":\"api_error\""), "{body}");
        assert!(
            body.contains("TLS handshake with localhost failed: invalid peer certificate: UnknownIssuer"),
            "{body}"
        );
        assert!(body.contains("set upstream.ca_file"), "{body}");
        assert_eq!(mock.log.handshakes.load(Ordering::SeqCst), 0);
        assert!(mock.log.requests.lock().unwrap().is_empty());
    });
}

#[test]
fn ca_file_bundles_and_ip_hosts() {
    both_drivers(|legacy| {
        let pki = pki();
        let mock = start_mock(pki.server.clone());
        let dir = TempDir::new("bundle");
        let other = new_ca().pem();
        // The right CA second in a bundle, and a server reached by IP.
        let bundle = dir.write("bundle.pem", &format!("{other}\n{}", pki.ca_pem));
        let upstream = format!("https://127.0.0.1:{}/v1", mock.port);
        let cfg = config(&dir, &upstream, &format!("ca_file = \"{}\"\n", toml_path(&bundle)));
        let proxy = spawn_proxy(&cfg, legacy);
        let (status, body) = post_messages(proxy.port, false);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("hello over tls"), "{body}");
        // No SNI is sent for an IP address.
        assert_eq!(mock.log.sessions.lock().unwrap()[0].0, None);
        drop(proxy);

        // A bundle without the right CA fails and names the file.
        let wrong = dir.write("wrong.pem", &other);
        let cfg = config(&dir, &upstream, &format!("ca_file = \"{}\"\n", toml_path(&wrong)));
        let proxy = spawn_proxy(&cfg, legacy);
        let (status, body) = post_messages(proxy.port, false);
        assert_eq!(status, 502, "{body}");
        assert!(body.contains("TLS handshake with 127.0.0.1 failed: invalid peer certificate"), "{body}");
        assert!(body.contains("wrong.pem) were used"), "{body}");
    });
}

#[test]
fn https_through_a_connect_proxy() {
    both_drivers(|legacy| {
        let pki = pki();
        let mock = start_mock(pki.server.clone());
        let forward = start_forward_proxy("200 Connection established");
        let dir = TempDir::new("connect");
        let ca = dir.write("ca.pem", &pki.ca_pem);
        let extra = format!("ca_file = \"{}\"\nproxy_url = \"http://127.0.0.1:{}\"\n", toml_path(&ca), forward.port);
        let cfg = config(&dir, &format!("https://localhost:{}/v1", mock.port), &extra);
        let proxy = spawn_proxy(&cfg, legacy);
        for stream in [false, true] {
            let (status, body) = post_messages(proxy.port, stream);
            assert_eq!(status, 200, "{body}");
            assert!(body.contains(if stream { "over tls" } else { "hello over tls" }), "{body}");
        }
        let connects = forward.connects.lock().unwrap().clone();
        assert_eq!(connects, vec![format!("CONNECT localhost:{} HTTP/1.1", mock.port)], "legacy={legacy}");
        assert_eq!(mock.log.handshakes.load(Ordering::SeqCst), 1);
        assert_eq!(mock.log.sessions.lock().unwrap()[0].0.as_deref(), Some("localhost"));
    });
}

#[test]
fn refused_connect_is_a_clear_502() {
    both_drivers(|legacy| {
        let forward = start_forward_proxy("407 Proxy Authentication Required");
        let dir = TempDir::new("refused");
        let extra = format!("proxy_url = \"http://127.0.0.1:{}\"\n", forward.port);
        let cfg = config(&dir, "https://localhost:9/v1", &extra);
        let proxy = spawn_proxy(&cfg, legacy);
        let (status, body) = post_messages(proxy.port, false);
        assert_eq!(status, 502, "{body}");
        let want = format!(
            "proxy http://127.0.0.1:{} refused CONNECT localhost:9: 407 Proxy Authentication Required",
            forward.port
        );
        assert!(body.contains(&want), "{body}");
    });
}

#[test]
fn large_bodies_cross_tls_both_ways() {
    both_drivers(|legacy| {
        let pki = pki();
        let mock = start_mock(pki.server.clone());
        let dir = TempDir::new("big");
        let ca = dir.write("ca.pem", &pki.ca_pem);
        let cfg = config(
            &dir,
            &format!("https://localhost:{}/v1", mock.port),
            &format!("ca_file = \"{}\"\n", toml_path(&ca)),
        );
        let proxy = spawn_proxy(&cfg, legacy);
        // Bigger than rustls' outgoing buffer, so the write loops.
        let (status, body) = post_messages_with(proxy.port, false, &"y".repeat(BIG + 1000));
        assert_eq!(status, 200, "{}", &body[..body.len().min(300)]);
        assert!(body.contains(&"x".repeat(BIG / 2)), "legacy={legacy}");
        // The connection stays usable after a large exchange.
        let (status, body) = post_messages(proxy.port, false);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("hello over tls"), "{body}");
        assert_eq!(mock.log.handshakes.load(Ordering::SeqCst), 1);
    });
}
