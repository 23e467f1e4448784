//! Keeps the upstream API key out of everything a client or a log sees.
//!
//! Receives the configured key once per worker and, on the request path,
//! bytes or messages that came from the upstream (error bodies, mid-stream
//! error events); emits them with every occurrence of the key replaced.
//! Some providers echo the key they rejected ("Incorrect API key provided:
//! sk-..."), so relaying their words verbatim would leak it.

use std::borrow::Cow;
use std::cell::RefCell;

use memchr::memmem::Finder;

use crate::error::ProxyError;

/// What the key is replaced with.
pub const MASK: &str = "[redacted]";

/// A precompiled search for one secret.
pub struct Redactor {
    finders: Vec<Finder<'static>>,
}

impl Redactor {
    /// `key` of `None` or empty redacts nothing.
    pub fn new(key: Option<&str>) -> Self {
        Self::many(key.into_iter())
    }

    /// Redacts every one of `keys` (one per provider); empty ones are skipped.
    pub fn many<'a>(keys: impl Iterator<Item = &'a str>) -> Self {
        let finders = keys.filter(|k| !k.is_empty()).map(|k| Finder::new(k.as_bytes()).into_owned()).collect();
        Redactor { finders }
    }

    /// Whether `bytes` contain the secret.
    #[inline]
    pub fn hits(&self, bytes: &[u8]) -> bool {
        self.finders.iter().any(|f| f.find(bytes).is_some())
    }

    /// Replaces every occurrence of the secret in `buf`, in place. The happy
    /// path is a single SIMD scan that finds nothing and allocates nothing.
    pub fn scrub_bytes(&self, buf: &mut Vec<u8>) {
        for f in &self.finders {
            Self::scrub_one(f, buf);
        }
    }

    fn scrub_one(f: &Finder<'_>, buf: &mut Vec<u8>) {
        if f.find(buf).is_none() {
            return;
        }
        let mut out = Vec::with_capacity(buf.len());
        let mut rest: &[u8] = buf;
        while let Some(i) = f.find(rest) {
            out.extend_from_slice(&rest[..i]);
            out.extend_from_slice(MASK.as_bytes());
            rest = &rest[i + f.needle().len()..];
        }
        out.extend_from_slice(rest);
        *buf = out;
    }

    /// Replaces the secret in an error's message.
    pub fn scrub_error(&self, e: &mut ProxyError) {
        if self.hits(e.message.as_bytes()) {
            let mut bytes = e.message.as_bytes().to_vec();
            self.scrub_bytes(&mut bytes);
            e.message = Cow::Owned(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
}

thread_local! {
    /// The key of the worker running on this thread, so that code far from
    /// the worker (error construction) can scrub before it truncates.
    static ACTIVE: RefCell<Option<Redactor>> = const { RefCell::new(None) };
}

/// Makes `key` the secret scrubbed by [`scrub_str`] on this thread.
pub fn install(key: Option<&str>) {
    install_many(key.into_iter());
}

/// Makes `keys` the secrets scrubbed by [`scrub_str`] on this thread.
pub fn install_many<'a>(keys: impl Iterator<Item = &'a str>) {
    let r = Redactor::many(keys);
    ACTIVE.with(|a| *a.borrow_mut() = if r.finders.is_empty() { None } else { Some(r) });
}

/// Replaces this thread's installed secret in `s`.
pub fn scrub_str(s: &str) -> Cow<'_, str> {
    ACTIVE.with(|a| {
        let a = a.borrow();
        let Some(r) = a.as_ref() else { return Cow::Borrowed(s) };
        if !r.hits(s.as_bytes()) {
            return Cow::Borrowed(s);
        }
        let mut bytes = s.as_bytes().to_vec();
        r.scrub_bytes(&mut bytes);
        Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_occurrence() {
        let r = Redactor::new(Some("sk-secret"));
        let mut b = b"a sk-secret b sk-secretsk-secret".to_vec();
        r.scrub_bytes(&mut b);
        assert_eq!(b, b"a [redacted] b [redacted][redacted]");
    }

    #[test]
    fn no_key_no_change() {
        let r = Redactor::new(None);
        let mut b = b"sk-secret".to_vec();
        r.scrub_bytes(&mut b);
        assert_eq!(b, b"sk-secret");
        assert!(!Redactor::new(Some("")).hits(b"anything"));
    }

    #[test]
    fn installed_key_is_scrubbed_before_truncation() {
        install(Some("sk-secret-key-0123456789"));
        let mut body = br#"{"error":{"message":""#.to_vec();
        body.extend(std::iter::repeat_n(b'a', 1010));
        body.extend_from_slice(br#"sk-secret-key-0123456789"}}"#);
        let e = ProxyError::from_upstream_status(401, &body, None);
        assert!(!e.message.contains("sk-secret"), "{}", e.message);
        install(None);
    }

    #[test]
    fn errors_are_scrubbed() {
        let r = Redactor::new(Some("sk-secret"));
        let mut e = ProxyError::from_upstream_status(
            401,
            br#"{"error":{"message":"Incorrect API key provided: sk-secret"}}"#,
            None,
        );
        r.scrub_error(&mut e);
        assert!(!e.message.contains("sk-secret"));
        assert!(e.message.contains("[redacted]"));
    }
}
