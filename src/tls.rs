//! Upstream TLS and CONNECT tunnelling.
//!
//! Receives, from the upstream pool, freshly connected TCP streams, the
//! upstream's host name (for SNI and certificate checks) and, when a forward
//! proxy is configured, the `host:port` to tunnel to. Emits a [`Transport`]:
//! one stream type for plain and TLS connections, so the HTTP client above
//! it has a single code path. The rustls client configuration (Mozilla roots
//! from webpki-roots, plus the CAs of an optional `ca_file`; ALPN
//! `http/1.1`; the `ring` provider) is built once per process and shared by
//! every worker. Also parses `ca_file` bundles for config validation.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;
use monoio_rustls::ClientTlsStream;
pub use monoio_rustls::TlsConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// The largest CONNECT answer head we wait for.
const MAX_CONNECT_HEAD: usize = 16 * 1024;

/// A connection to the upstream, with or without TLS. Plain reads and
/// writes go straight to the socket; TLS ones through rustls.
pub enum Transport {
    Plain(TcpStream),
    // Boxed: a rustls session is far bigger than a socket.
    // The fd is kept beside the session because the TLS stream hides its
    // socket, and the pool must peek at idle connections.
    Tls(Box<ClientTlsStream<TcpStream>>, RawFd),
}

impl Transport {
    /// The underlying socket, for readiness checks that move no data.
    pub fn raw_fd(&self) -> RawFd {
        match self {
            Transport::Plain(s) => s.as_raw_fd(),
            Transport::Tls(_, fd) => *fd,
        }
    }
}

/// Many servers close the TCP connection without a TLS close_notify. HTTP
/// framing (content-length, chunked) already detects a truncated body, so
/// that end is reported as a plain end of stream, exactly as over TCP.
fn eof_is_close(res: io::Result<usize>) -> io::Result<usize> {
    match res {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        other => other,
    }
}

impl AsyncReadRent for Transport {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Transport::Plain(s) => s.read(buf).await,
            Transport::Tls(s, _) => {
                let (res, buf) = s.read(buf).await;
                (eof_is_close(res), buf)
            }
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Transport::Plain(s) => s.readv(buf).await,
            Transport::Tls(s, _) => {
                let (res, buf) = s.readv(buf).await;
                (eof_is_close(res), buf)
            }
        }
    }
}

impl AsyncWriteRent for Transport {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Transport::Plain(s) => s.write(buf).await,
            Transport::Tls(s, _) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Transport::Plain(s) => s.writev(buf).await,
            Transport::Tls(s, _) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush().await,
            Transport::Tls(s, _) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.shutdown().await,
            Transport::Tls(s, _) => s.shutdown().await,
        }
    }
}

/// Reads a PEM bundle of CA certificates and checks that each one is usable
/// as a trust anchor. The error text names the file and the problem.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(&text) {
        certs.push(item.map_err(|e| format!("{} is not a valid PEM file ({e})", path.display()))?);
    }
    if certs.is_empty() {
        return Err(format!(
            "{} holds no `-----BEGIN CERTIFICATE-----` block; expected a PEM bundle of CA certificates",
            path.display()
        ));
    }
    let mut store = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        store
            .add(cert.clone())
            .map_err(|e| format!("{}: certificate #{} is not a usable CA certificate ({e})", path.display(), i + 1))?;
    }
    Ok(certs)
}

fn build_client_config(ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        for cert in load_ca_file(path)? {
            roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // The client above speaks HTTP/1.1 only; saying so stops a server that
    // would otherwise pick h2.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The shared client configuration for `ca_file` (or the built-in roots
/// alone). Built on first use and cached for the process: parsing ~150 roots
/// per worker or per connection would be waste.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    static CONFIGS: Mutex<Vec<(Option<PathBuf>, Arc<ClientConfig>)>> = Mutex::new(Vec::new());
    // Only start-up code gets here; a panic elsewhere cannot leave the list
    // half-updated, so a poisoned lock is still safe to use.
    let mut cache = CONFIGS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, cfg)) = cache.iter().find(|(p, _)| p.as_deref() == ca_file) {
        return Ok(cfg.clone());
    }
    let cfg = Arc::new(build_client_config(ca_file)?);
    cache.push((ca_file.map(Path::to_path_buf), cfg.clone()));
    Ok(cfg)
}

/// Runs the TLS handshake over `tcp` with SNI and certificate checks for
/// `host` (a DNS name or an IP literal, IPv6 without brackets).
pub async fn handshake(connector: &TlsConnector, host: &str, tcp: TcpStream) -> io::Result<Transport> {
    let name = ServerName::try_from(host.to_string()).map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("`{host}` is not a valid TLS server name ({e})"))
    })?;
    let fd = tcp.as_raw_fd();
    match connector.connect(name, tcp).await {
        Ok(s) => Ok(Transport::Tls(Box::new(s), fd)),
        Err(e) => Err(e.into()),
    }
}

/// The message for a failed handshake: rustls' own words, plus what to do
/// about an untrusted certificate.
pub fn handshake_error_message(host: &str, e: &io::Error, ca_file: Option<&Path>) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    let mut msg = format!("TLS handshake with {host} failed: ");
    match inner {
        Some(err) => {
            msg.push_str(&err.to_string());
            if matches!(err, rustls::Error::InvalidCertificate(_)) {
                match ca_file {
                    None => msg.push_str(
                        ". The built-in public roots were used; if the provider's certificate comes from a \
                         private CA, set upstream.ca_file to that CA's PEM bundle",
                    ),
                    Some(p) => msg.push_str(&format!(
                        ". The built-in public roots and the CAs in upstream.ca_file ({}) were used",
                        p.display()
                    )),
                }
            }
        }
        None => msg.push_str(&e.to_string()),
    }
    msg
}

/// An HTTP forward proxy's answer to CONNECT.
#[derive(Debug, PartialEq, Eq)]
pub struct ConnectReply {
    pub status: u16,
    pub reason: String,
    /// Bytes of the answer head, including the blank line.
    pub head_len: usize,
}

/// Parses the head of a CONNECT answer. `Ok(None)` means more bytes are
/// needed; the error text says what is wrong with the answer.
pub fn parse_connect_response(buf: &[u8]) -> Result<Option<ConnectReply>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) => Ok(Some(ConnectReply {
            status: resp.code.unwrap_or(0),
            reason: resp.reason.unwrap_or("").to_string(),
            head_len,
        })),
        Ok(httparse::Status::Partial) if buf.len() > MAX_CONNECT_HEAD => {
            Err(format!("sent a CONNECT answer head larger than {MAX_CONNECT_HEAD} bytes"))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(format!("did not answer CONNECT with an HTTP response ({e})")),
    }
}

/// Asks the proxy on `tcp` for a tunnel to `target` (`host:port`, IPv6
/// bracketed) and waits for its answer. On success the stream is a raw pipe
/// to the target. The error text completes "proxy <url> ...".
pub async fn connect_tunnel(tcp: &mut TcpStream, target: &str) -> Result<(), String> {
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").into_bytes();
    let (res, _) = tcp.write_all(req).await;
    res.map_err(|e| format!("failed while sending CONNECT {target} ({e})"))?;
    let mut head: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let chunk = vec![0u8; 1024];
        let (res, chunk) = tcp.read(chunk).await;
        let n = res.map_err(|e| format!("failed while answering CONNECT {target} ({e})"))?;
        if n == 0 {
            return Err(format!("closed the connection before answering CONNECT {target}"));
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let Some(reply) = parse_connect_response(&head)? else { continue };
        if !(200..300).contains(&reply.status) {
            return Err(format!("refused CONNECT {target}: {} {}", reply.status, reply.reason));
        }
        // The client speaks first in TLS and HTTP, so nothing may follow the
        // answer yet; bytes here would be lost or misread.
        if head.len() > reply.head_len {
            return Err(format!("sent unexpected data after its answer to CONNECT {target}"));
        }
        return Ok(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_replies() {
        let ok = b"HTTP/1.1 200 Connection established\r\nProxy-Agent: x\r\n\r\n";
        let r = parse_connect_response(ok).unwrap().unwrap();
        assert_eq!(r, ConnectReply { status: 200, reason: "Connection established".into(), head_len: ok.len() });
        let r = parse_connect_response(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!((r.status, r.head_len), (200, 19));
        let r = parse_connect_response(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\nbody").unwrap().unwrap();
        assert_eq!((r.status, r.reason.as_str()), (407, "Proxy Authentication Required"));
        assert_eq!(parse_connect_response(b"HTTP/1.1 200 Connection est").unwrap(), None);
        assert_eq!(parse_connect_response(b"").unwrap(), None);
        let e = parse_connect_response(b"SSH-2.0-OpenSSH\r\n\r\n").unwrap_err();
        assert!(e.contains("did not answer CONNECT with an HTTP response"), "{e}");
        let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_CONNECT_HEAD));
        let e = parse_connect_response(&huge).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
    }

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("ccproxy-tls-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn ca_file_errors_name_the_problem() {
        let missing = Path::new("/nonexistent/ccproxy-ca.pem");
        assert!(load_ca_file(missing).unwrap_err().contains("cannot read /nonexistent/ccproxy-ca.pem"));
        let empty = temp_file("empty.pem", "no pem here\n");
        assert!(load_ca_file(&empty).unwrap_err().contains("holds no `-----BEGIN CERTIFICATE-----` block"));
        let broken = temp_file("broken.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n");
        assert!(load_ca_file(&broken).unwrap_err().contains("is not a valid PEM file"));
        let junk = temp_file("junk.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert!(load_ca_file(&junk).unwrap_err().contains("certificate #1 is not a usable CA certificate"));
        for p in [empty, broken, junk] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn client_config_is_shared_and_speaks_http11() {
        let a = client_config(None).unwrap();
        let b = client_config(None).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn certificate_failures_point_at_ca_file() {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let m = handshake_error_message("api.example.com", &e, None);
        assert!(
            m.starts_with("TLS handshake with api.example.com failed: invalid peer certificate: UnknownIssuer"),
            "{m}"
        );
        assert!(m.contains("set upstream.ca_file"), "{m}");
        let m = handshake_error_message("h", &e, Some(Path::new("/etc/ca.pem")));
        assert!(m.contains("upstream.ca_file (/etc/ca.pem) were used"), "{m}");
        let other = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(handshake_error_message("h", &other, None), "TLS handshake with h failed: tls handshake eof");
    }
}
