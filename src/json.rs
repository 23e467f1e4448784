//! JSON helpers shared by the converters.
//!
//! Receives raw JSON bytes (client bodies, upstream responses and stream
//! chunks) and Rust strings/numbers from the converters. Offers:
//! - [`validate`] / [`validate_with_tape`]: the one validating pass, with the
//!   nesting bound sonic-rs's recursion needs, optionally recording a tape
//!   of value spans; [`take_tape`] / [`give_tape`] reuse tape buffers.
//! - [`Lazy`]: allocation-free walking of validated text by raw spans.
//! - [`replace_lone_surrogates`]: makes escaped text acceptable to strict
//!   parsers by turning `\uD800`–`\uDFFF` escapes without a partner into
//!   `\uFFFD`, in place.
//! - writers appending JSON encodings to an output buffer. Raw subtrees
//!   copied from input are appended by the callers directly; only freshly
//!   produced strings pass through [`write_str`].

mod lazy;
mod validate;

pub use lazy::{Elements, Entries, Key, Lazy};
pub use validate::{validate, validate_str, validate_with_tape, Invalid, Span, Validated};

thread_local! {
    /// One reusable tape per worker thread (see [`take_tape`]).
    static TAPES: std::cell::Cell<Vec<Span>> = const { std::cell::Cell::new(Vec::new()) };
}

/// A tape buffer for [`validate_with_tape`], reusing the thread's last one
/// so that steady-state requests allocate nothing for it.
pub fn take_tape() -> Vec<Span> {
    TAPES.with(|t| t.take())
}

/// Gives a tape buffer back for the next [`take_tape`] on this thread.
pub fn give_tape(tape: Vec<Span>) {
    TAPES.with(|t| {
        let kept = t.take();
        t.set(if kept.capacity() >= tape.capacity() { kept } else { tape });
    });
}

/// Rewrites, in place, every `\u` escape of a UTF-16 surrogate that is not
/// half of a high-low pair into `\uFFFD` (the same six bytes). The JSON
/// grammar allows lone surrogates, but they are not Unicode text: strict
/// parsers (serde_json, Go, Python once it encodes) refuse or mangle the
/// whole body. A JavaScript client produces them when it cuts a string
/// inside a surrogate pair, e.g. a truncated emoji in a tool result.
/// `b` must be valid JSON text (or a run of complete escapes and other
/// bytes): outside strings a backslash cannot occur, so every backslash
/// starts an escape.
pub fn replace_lone_surrogates(b: &mut [u8]) {
    fn unit(b: &[u8], at: usize) -> Option<u16> {
        let h = b.get(at..at + 6)?;
        if h[0] != b'\\' || h[1] != b'u' {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&h[2..]).ok()?, 16).ok()
    }
    let mut i = 0;
    while let Some(k) = memchr::memchr(b'\\', &b[i..]) {
        let at = i + k;
        let Some(u) = unit(b, at) else {
            i = at + 2; // \" \\ \n ...: one escaped character
            continue;
        };
        match u {
            0xD800..=0xDBFF if unit(b, at + 6).is_some_and(|l| (0xDC00..=0xDFFF).contains(&l)) => i = at + 12,
            0xD800..=0xDFFF => {
                b[at + 2..at + 6].copy_from_slice(b"FFFD");
                i = at + 6;
            }
            _ => i = at + 6,
        }
    }
}

/// Appends `s` as a JSON string literal, quotes included.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_str_body(out, s);
    out.push(b'"');
}

/// Appends the escaped contents of `s` without surrounding quotes, so that
/// callers can build strings from several pieces.
#[inline]
pub fn write_str_body(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends an unsigned integer in decimal.
#[inline]
pub fn write_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(n).as_bytes());
}

/// Deepest nesting of objects and arrays we hand to sonic-rs. Its
/// validating skip recurses once per level, so an attacker-chosen depth
/// would overflow the worker's stack and abort the whole process. Real
/// requests (tool schemas included) stay far below this.
pub const MAX_DEPTH: usize = 128;

/// Checks that `bytes` nest objects and arrays at most `max` deep, without
/// parsing them. Brackets inside strings do not count; strings are skipped
/// with a SIMD search for the next quote or backslash, so text-heavy bodies
/// scan at memory speed. Malformed JSON passes through here and is refused
/// by the real parser afterwards.
pub fn depth_within(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                // Skip to the closing quote, hopping over escapes.
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &bytes[i.min(bytes.len())..]) {
                        None => return true,
                        Some(off) => {
                            let at = i + off;
                            if bytes[at] == b'\\' {
                                i = at + 2;
                            } else {
                                i = at;
                                break;
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let fix = |s: &str| {
            let mut b = s.as_bytes().to_vec();
            replace_lone_surrogates(&mut b);
            String::from_utf8(b).unwrap()
        };
        // A pair, in either case of hex digits, stays.
        assert_eq!(fix(r#"["\ud83d\ude00","\uD83D\uDE00"]"#), r#"["\ud83d\ude00","\uD83D\uDE00"]"#);
        // Lone high (at the end, before text, before another high), lone low.
        assert_eq!(
            fix(r#"["a\ud83d","\ud83dx","\ud83d\ud83d\ude00","\ude00b"]"#),
            r#"["a\uFFFD","\uFFFDx","\uFFFD\ud83d\ude00","\uFFFDb"]"#
        );
        // A high followed by a non-surrogate escape, by an escaped backslash,
        // and text that only looks like an escape.
        assert_eq!(
            fix(r#"["\ud800\u0041","\ud800\\ude00","\\ud800"]"#),
            r#"["\uFFFD\u0041","\uFFFD\\ude00","\\ud800"]"#
        );
        assert_eq!(fix(r#"{"k\udc00":1}"#), r#"{"k\uFFFD":1}"#);
        // Nothing to do, and a truncated escape at the very end is left.
        assert_eq!(fix(r#"{"a":"\n\"\u00e9"}"#), r#"{"a":"\n\"\u00e9"}"#);
        assert_eq!(fix("\\ud8"), "\\ud8");
        // The result is strictly valid for sonic-rs, which refuses lone ones.
        let fixed = fix(r#"{"t":"x\ud83d","u":"\ude00y"}"#);
        assert!(sonic_rs::from_str::<sonic_rs::Value>(r#"{"t":"x\ud83d"}"#).is_err());
        assert!(sonic_rs::from_str::<sonic_rs::Value>(&fixed).is_ok(), "{fixed}");
    }

    #[test]
    fn the_validator_notices_surrogate_escapes() {
        let seen = |s: &str| validate_with_tape(s.as_bytes(), 8, &mut Vec::new()).unwrap().surrogate_escapes;
        assert!(seen(r#"["\ud83d\ude00"]"#));
        assert!(seen(r#"{"\uDFFF":0}"#));
        assert!(!seen(r#"["\u00e9\ud7ff\ue000","\\ud800"]"#));
    }

    #[test]
    fn escapes_round_trip_through_a_real_parser() {
        let samples =
            ["plain", "q\"uote", "back\\slash", "nl\nend", "ctl\u{1}\u{1f}", "tab\t\r\u{8}\u{c}", "ünïcødé 🎉", ""];
        for s in samples {
            let mut out = Vec::new();
            write_str(&mut out, s);
            let back: String = sonic_rs::from_slice(&out).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn depth_limits_count_only_structure() {
        assert!(depth_within(br#"{"a":[1,{"b":[]}]}"#, 4));
        assert!(!depth_within(br#"{"a":[1,{"b":[]}]}"#, 3));
        let deep = "[".repeat(10_000);
        assert!(!depth_within(deep.as_bytes(), MAX_DEPTH));
        // Brackets inside strings, with escaped quotes, are text.
        let s = format!(r#"{{"t":"{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(depth_within(s.as_bytes(), 1));
        // Unterminated strings and trailing backslashes never panic.
        assert!(depth_within(br#"{"a":"\"#, 2));
        assert!(depth_within(br#"["abc"#, 2));
        assert!(depth_within(b"\"", 0));
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        write_u64(&mut out, 0);
        out.push(b',');
        write_u64(&mut out, 18446744073709551615);
        assert_eq!(out, b"0,18446744073709551615");
    }
}
