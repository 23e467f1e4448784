//! Small JSON writing helpers shared by the converters.
//!
//! Receives Rust strings and numbers from the converters and appends their
//! JSON encoding to an output buffer. Raw subtrees copied from input are
//! appended by the callers directly; only freshly produced strings pass here.

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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn numbers() {
        let mut out = Vec::new();
        write_u64(&mut out, 0);
        out.push(b',');
        write_u64(&mut out, 18446744073709551615);
        assert_eq!(out, b"0,18446744073709551615");
    }
}
