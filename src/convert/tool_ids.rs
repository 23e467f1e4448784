//! Reversible tool-call ids.
//!
//! Receives upstream tool-call ids (and Gemini thought signatures) from the
//! response and stream converters, and the ids the client sends back in
//! `tool_use.id` / `tool_result.tool_use_id` from the request converter.
//! Emits ids valid for Anthropic (`^[a-zA-Z0-9_-]+$`) and, on the way back,
//! the upstream's original id and signature.
//!
//! A valid upstream id with no signature passes through unchanged (the
//! common case, no work). Anything else (an id Anthropic would refuse, such
//! as Kimi's `functions.Bash:0`, or any id carrying a Gemini
//! `thought_signature` that must come back on the next turn) becomes
//! `ccpx_` + base64url (no padding) of `id bytes, 0x00, signature bytes`.
//! Decoding splits at the last 0x00, so ids may contain any byte and
//! signatures (base64 in practice) only must not hold a NUL. A valid id that
//! itself starts with `ccpx_` is encoded too, so it can never be mistaken
//! for an encoded one on the way back.

use super::new_tool_id;

/// Prefix of encoded ids.
pub const PREFIX: &str = "ccpx_";

/// `^[a-zA-Z0-9_-]+$`
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The client-side id for an upstream tool call, into `out` (cleared first).
/// An empty upstream id gets a fresh `toolu_` id (then encoded with the
/// signature when there is one).
pub fn encode(upstream_id: &str, signature: Option<&str>, out: &mut String) {
    out.clear();
    let signature = signature.filter(|s| !s.is_empty());
    let minted;
    let id = if upstream_id.is_empty() {
        minted = new_tool_id();
        if signature.is_none() {
            out.push_str(&minted);
            return;
        }
        minted.as_str()
    } else {
        upstream_id
    };
    if signature.is_none() && is_valid_id(id) && !id.starts_with(PREFIX) {
        out.push_str(id);
        return;
    }
    let sig = signature.unwrap_or("");
    out.reserve(PREFIX.len() + (id.len() + 1 + sig.len()).div_ceil(3) * 4);
    out.push_str(PREFIX);
    let mut enc = Base64Url::new(out);
    enc.feed(id.as_bytes());
    enc.feed(&[0]);
    enc.feed(sig.as_bytes());
    enc.finish();
}

/// An id the request converter must send upstream in place of the client's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub id: String,
    /// Gemini thought signature that came with the call, if any.
    pub signature: Option<String>,
}

/// Decodes a `ccpx_` id; `None` means the id is not one of ours and goes
/// upstream as it is.
pub fn decode(client_id: &str) -> Option<Decoded> {
    let b64 = client_id.strip_prefix(PREFIX)?;
    let bytes = base64url_decode(b64)?;
    let nul = bytes.iter().rposition(|&b| b == 0)?;
    let (id, sig) = (bytes.get(..nul)?, bytes.get(nul + 1..)?);
    let id = String::from_utf8(id.to_vec()).ok()?;
    let signature = match sig {
        [] => None,
        s => Some(String::from_utf8(s.to_vec()).ok()?),
    };
    Some(Decoded { id, signature })
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Streaming base64url encoder (no padding) into a `String`.
struct Base64Url<'o> {
    out: &'o mut String,
    acc: u32,
    bits: u32,
}

impl<'o> Base64Url<'o> {
    fn new(out: &'o mut String) -> Self {
        Base64Url { out, acc: 0, bits: 0 }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.acc = (self.acc << 8) | b as u32;
            self.bits += 8;
            while self.bits >= 6 {
                self.bits -= 6;
                self.out.push(B64[((self.acc >> self.bits) & 63) as usize] as char);
            }
            self.acc &= (1 << self.bits) - 1;
        }
    }

    fn finish(self) {
        if self.bits > 0 {
            self.out.push(B64[((self.acc << (6 - self.bits)) & 63) as usize] as char);
        }
    }
}

fn sextet(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    } as u32)
}

/// Strict unpadded base64url: a length of 1 mod 4 or non-zero leftover
/// bits are refused, so every encoded id has exactly one decoding.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        acc = (acc << 6) | sextet(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(id: &str, sig: Option<&str>) -> String {
        let mut s = String::new();
        encode(id, sig, &mut s);
        s
    }

    #[test]
    fn valid_ids_pass_through() {
        for id in ["toolu_01ABC", "call_x-1", "a"] {
            assert_eq!(enc(id, None), id);
            assert_eq!(enc(id, Some("")), id);
            assert_eq!(decode(id), None);
        }
    }

    #[test]
    fn invalid_ids_and_signatures_are_encoded_and_decoded() {
        let kimi = enc("functions.Bash:0", None);
        assert!(kimi.starts_with(PREFIX) && is_valid_id(&kimi), "{kimi}");
        assert_eq!(decode(&kimi), Some(Decoded { id: "functions.Bash:0".into(), signature: None }));

        let gem = enc("function-call-1", Some("CiQBcsjafX+/=="));
        assert!(is_valid_id(&gem), "{gem}");
        assert_eq!(
            decode(&gem),
            Some(Decoded { id: "function-call-1".into(), signature: Some("CiQBcsjafX+/==".into()) })
        );

        // A valid id that looks like ours is encoded, so it comes back intact.
        let tricky = enc("ccpx_AAAA", None);
        assert_ne!(tricky, "ccpx_AAAA");
        assert_eq!(decode(&tricky).unwrap().id, "ccpx_AAAA");

        // No id but a signature: a fresh id travels with it.
        let minted = decode(&enc("", Some("sig"))).unwrap();
        assert!(minted.id.starts_with("toolu_"));
        assert_eq!(minted.signature.as_deref(), Some("sig"));
        assert!(enc("", None).starts_with("toolu_"));
    }

    #[test]
    fn foreign_ccpx_ids_are_left_alone() {
        for id in ["ccpx_", "ccpx_A", "ccpx_!!!!", "ccpx_AB", "ccpx_QUJD"] {
            // "QUJD" = "ABC" without a NUL: not one of ours.
            assert_eq!(decode(id), None, "{id}");
        }
    }

    #[test]
    fn base64url_matches_the_rfc_vectors() {
        let cases: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"),
            (&[0xfb, 0xff, 0xfe], "-__-"),
        ];
        for (raw, want) in cases {
            let mut s = String::new();
            let mut e = Base64Url::new(&mut s);
            e.feed(raw);
            e.finish();
            assert_eq!(s, want);
            assert_eq!(base64url_decode(want).as_deref(), Some(raw));
        }
        assert_eq!(base64url_decode("Zh"), None, "non-zero leftover bits");
    }

    /// Property-style: many random ids and signatures round trip, and every
    /// produced id is valid for Anthropic.
    #[test]
    fn round_trip_over_random_ids() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet: Vec<char> = "abcXYZ019_-.:/ +=é🎉\u{0}\"\\".chars().collect();
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let id: String = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
            let sig: Option<String> = match next() % 3 {
                0 => None,
                _ => Some((0..(next() % 300) as usize).map(|_| B64[(next() % 64) as usize] as char).collect()),
            };
            let out = enc(&id, sig.as_deref());
            assert!(is_valid_id(&out), "{id:?} -> {out:?}");
            let sig = sig.filter(|s| !s.is_empty());
            match decode(&out) {
                None => {
                    assert!(sig.is_none());
                    if id.is_empty() {
                        assert!(out.starts_with("toolu_"));
                    } else {
                        assert_eq!(out, id);
                    }
                }
                Some(d) => {
                    if id.is_empty() {
                        assert!(d.id.starts_with("toolu_"));
                    } else {
                        assert_eq!(d.id, id);
                    }
                    assert_eq!(d.signature, sig);
                }
            }
        }
    }
}
