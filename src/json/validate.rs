//! A one-pass, non-recursive JSON validator with a nesting limit.
//!
//! Receives raw JSON bytes (request bodies, upstream responses and stream
//! chunks) from the converters, before any sonic-rs call sees them; answers
//! whether they are one well-formed JSON value (RFC 8259, UTF-8) nested at
//! most `max` deep, and where the top-level value ends.
//!
//! Why it exists: sonic-rs's validating skip recurses once per nesting level
//! (so depth must be bounded before it runs) and allocates a key buffer per
//! object. Validating once here, iteratively, lets every later walk use the
//! unchecked (non-validating, non-recursive) sonic-rs paths, so each byte is
//! validated exactly once. Strings, the bulk of every body, are scanned 16
//! bytes at a time for the only bytes that matter inside them.

/// Why a body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Objects/arrays nest deeper than allowed.
    Depth,
    /// Not one well-formed JSON value (the callers ask sonic-rs for the
    /// detailed message, on this error path only).
    Syntax,
}

/// Deepest nesting the bit stack below can track.
const STACK_BITS: usize = 128;

/// Strings at least this long (quotes included) get a tape entry; shorter
/// ones are cheaper to scan than to look up.
pub(super) const TAPE_MIN_STRING: usize = 48;

/// One value in the validated text: start and end offsets (end exclusive),
/// and the tape index just past the entries of everything inside it, so a
/// walker that skips the value also skips its part of the tape; see
/// [`validate_with_tape`].
pub type Span = (u32, u32, u32);

/// Validates `b` as exactly one JSON value (surrounding whitespace allowed),
/// with objects and arrays nested at most `max` (capped at 128) deep.
pub fn validate(b: &[u8], max: usize) -> Result<(), Invalid> {
    validate_str(b, max).map(|_| ())
}

/// [`validate`], returning the text as `str`.
pub fn validate_str(b: &[u8], max: usize) -> Result<&str, Invalid> {
    validate_full::<false>(b, max, &mut Vec::new()).map(|v| v.text)
}

/// A text [`validate_with_tape`] accepted, and what it noticed on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validated<'a> {
    pub text: &'a str,
    /// Some string holds a `\uD800`–`\uDFFF` escape: paired or not, the
    /// caller decides (see [`super::replace_lone_surrogates`]).
    pub surrogate_escapes: bool,
}

/// What the scan saw besides the grammar.
#[derive(Default)]
struct Seen {
    /// Non-zero once a string holds a byte >= 0x80.
    high: u32,
    surrogate: bool,
}

/// [`validate`], also recording into `tape` (cleared first) the span of
/// every object, array and long string value, sorted by start offset, so
/// that a later walk ([`super::Doc`]) skips them without scanning. Nothing
/// is recorded for texts of 4 GiB or more. Returns the text as `str`.
pub fn validate_with_tape<'a>(b: &'a [u8], max: usize, tape: &mut Vec<Span>) -> Result<Validated<'a>, Invalid> {
    tape.clear();
    if b.len() >= u32::MAX as usize {
        return validate_full::<false>(b, max, tape);
    }
    validate_full::<true>(b, max, tape)
}

fn validate_full<'a, const TAPE: bool>(
    b: &'a [u8],
    max: usize,
    tape: &mut Vec<Span>,
) -> Result<Validated<'a>, Invalid> {
    // Outside strings only ASCII passes the grammar; inside, the string scan
    // notes any byte >= 0x80. All-ASCII text (the usual body) is then UTF-8
    // without a second pass; otherwise the whole text is checked.
    let mut seen = Seen::default();
    let end = validate_prefix::<TAPE>(b, max, tape, &mut seen)?;
    if skip_ws(b, end) != b.len() {
        return Err(Invalid::Syntax);
    }
    let text = if seen.high == 0 {
        // SAFETY: every byte is ASCII (see above), which is valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(b) }
    } else {
        std::str::from_utf8(b).map_err(|_| Invalid::Syntax)?
    };
    Ok(Validated { text, surrogate_escapes: seen.surrogate })
}

/// Validates the first JSON value in `b` and returns the offset just past
/// it, noting in `seen` what [`Seen`] records. The AVX2
/// build of the same code is used where the CPU has it.
fn validate_prefix<const TAPE: bool>(
    b: &[u8],
    max: usize,
    tape: &mut Vec<Span>,
    seen: &mut Seen,
) -> Result<usize, Invalid> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, just checked.
        return unsafe { validate_prefix_avx2::<TAPE>(b, max, tape, seen) };
    }
    validate_prefix_impl::<TAPE, false>(b, max, tape, seen)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn validate_prefix_avx2<const TAPE: bool>(
    b: &[u8],
    max: usize,
    tape: &mut Vec<Span>,
    seen: &mut Seen,
) -> Result<usize, Invalid> {
    validate_prefix_impl::<TAPE, true>(b, max, tape, seen)
}

#[inline(always)]
fn validate_prefix_impl<const TAPE: bool, const AVX2: bool>(
    b: &[u8],
    max: usize,
    tape: &mut Vec<Span>,
    seen: &mut Seen,
) -> Result<usize, Invalid> {
    let max = max.min(STACK_BITS);
    // Bit d set: the container at depth d+1 is an object.
    let mut stack: u128 = 0;
    // Tape index of the container open at each depth.
    let mut open = [0u32; STACK_BITS];
    let mut depth = 0usize;
    let mut i = skip_ws(b, 0);
    'value: loop {
        // A value starts at `i`.
        match b.get(i) {
            Some(b'{') => {
                if depth >= max {
                    return Err(Invalid::Depth);
                }
                stack |= 1 << depth;
                if TAPE {
                    open[depth] = tape.len() as u32;
                    tape.push((i as u32, 0, 0));
                }
                depth += 1;
                i = skip_ws(b, i + 1);
                if b.get(i) == Some(&b'}') {
                    i += 1;
                    depth -= 1;
                    close::<TAPE>(tape, &open, depth, i);
                } else {
                    i = key::<AVX2>(b, i, seen)?;
                    continue 'value;
                }
            }
            Some(b'[') => {
                if depth >= max {
                    return Err(Invalid::Depth);
                }
                stack &= !(1 << depth);
                if TAPE {
                    open[depth] = tape.len() as u32;
                    tape.push((i as u32, 0, 0));
                }
                depth += 1;
                i = skip_ws(b, i + 1);
                if b.get(i) == Some(&b']') {
                    i += 1;
                    depth -= 1;
                    close::<TAPE>(tape, &open, depth, i);
                } else {
                    continue 'value;
                }
            }
            Some(b'"') => {
                let start = i;
                i = string::<AVX2>(b, i + 1, seen)?;
                if TAPE && i - start >= TAPE_MIN_STRING {
                    let next = tape.len() as u32 + 1;
                    tape.push((start as u32, i as u32, next));
                }
            }
            Some(b't') => i = literal(b, i, b"true")?,
            Some(b'f') => i = literal(b, i, b"false")?,
            Some(b'n') => i = literal(b, i, b"null")?,
            Some(b'-' | b'0'..=b'9') => i = number(b, i)?,
            _ => return Err(Invalid::Syntax),
        }
        // After a complete value: close containers or move to the next one.
        loop {
            if depth == 0 {
                return Ok(i);
            }
            i = skip_ws(b, i);
            let in_object = stack >> (depth - 1) & 1 == 1;
            match b.get(i) {
                Some(b',') => {
                    i = skip_ws(b, i + 1);
                    if in_object {
                        i = key::<AVX2>(b, i, seen)?;
                    }
                    continue 'value;
                }
                Some(b'}') if in_object => {
                    i += 1;
                    depth -= 1;
                    close::<TAPE>(tape, &open, depth, i);
                }
                Some(b']') if !in_object => {
                    i += 1;
                    depth -= 1;
                    close::<TAPE>(tape, &open, depth, i);
                }
                _ => return Err(Invalid::Syntax),
            }
        }
    }
}

/// Records where the container at `depth` (now closed) ends.
#[inline(always)]
fn close<const TAPE: bool>(tape: &mut [Span], open: &[u32; STACK_BITS], depth: usize, end: usize) {
    if TAPE {
        let next = tape.len() as u32;
        if let Some(slot) = open.get(depth).and_then(|&k| tape.get_mut(k as usize)) {
            slot.1 = end as u32;
            slot.2 = next;
        }
    }
}

#[inline(always)]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            break;
        }
        i += 1;
    }
    i
}

/// `"key"` ws `:` ws at `i`; returns where the value starts.
#[inline(always)]
fn key<const AVX2: bool>(b: &[u8], i: usize, seen: &mut Seen) -> Result<usize, Invalid> {
    if b.get(i) != Some(&b'"') {
        return Err(Invalid::Syntax);
    }
    let i = skip_ws(b, string::<AVX2>(b, i + 1, seen)?);
    if b.get(i) != Some(&b':') {
        return Err(Invalid::Syntax);
    }
    Ok(skip_ws(b, i + 1))
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Result<usize, Invalid> {
    match b.get(i..i + word.len()) {
        Some(w) if w == word => Ok(i + word.len()),
        _ => Err(Invalid::Syntax),
    }
}

fn number(b: &[u8], mut i: usize) -> Result<usize, Invalid> {
    let digits = |b: &[u8], mut i: usize| {
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i, i > start)
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(b, i).0,
        _ => return Err(Invalid::Syntax),
    }
    if b.get(i) == Some(&b'.') {
        let (j, any) = digits(b, i + 1);
        if !any {
            return Err(Invalid::Syntax);
        }
        i = j;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let (j, any) = digits(b, i);
        if !any {
            return Err(Invalid::Syntax);
        }
        i = j;
    }
    Ok(i)
}

/// The rest of a string whose opening quote is just before `i`; returns the
/// offset past its closing quote.
#[inline(always)]
fn string<const AVX2: bool>(b: &[u8], mut i: usize, seen: &mut Seen) -> Result<usize, Invalid> {
    loop {
        i = find_special::<AVX2>(b, i, &mut seen.high);
        match b.get(i) {
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => {
                i = match b.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i + 2,
                    Some(b'u') => match b.get(i + 2..i + 6) {
                        Some(h) if h.iter().all(u8::is_ascii_hexdigit) => {
                            // D800-DFFF: the first digit is d, the second 8-f.
                            seen.surrogate |= h[0] | 0x20 == b'd' && matches!(h[1] | 0x20, b'8'..=b'9' | b'a'..=b'f');
                            i + 6
                        }
                        _ => return Err(Invalid::Syntax),
                    },
                    _ => return Err(Invalid::Syntax),
                }
            }
            // A control character, or the end of input.
            _ => return Err(Invalid::Syntax),
        }
    }
}

/// First offset at or after `i` holding `"`, `\` or a control character
/// (`b.len()` if none); ORs into `high` a non-zero value if a byte >= 0x80
/// comes before it.
#[inline(always)]
fn find_special<const AVX2: bool>(b: &[u8], mut i: usize, high: &mut u32) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // Bits of `m` below its lowest set bit.
        let below = |m: u32| m.wrapping_sub(1) & !m;
        if AVX2 {
            // SAFETY: AVX2 is only requested from `validate_prefix_avx2`,
            // which runs after the CPU was found to have it; loads stay
            // within `b` (i + 32 <= len).
            unsafe {
                let quote = _mm256_set1_epi8(b'"' as i8);
                let slash = _mm256_set1_epi8(b'\\' as i8);
                let ctl = _mm256_set1_epi8(0x1f);
                while i + 32 <= b.len() {
                    let v = _mm256_loadu_si256(b.as_ptr().add(i) as *const __m256i);
                    let q = _mm256_cmpeq_epi8(v, quote);
                    let s = _mm256_cmpeq_epi8(v, slash);
                    // Unsigned v <= 0x1f  <=>  max(v, 0x1f) == 0x1f.
                    let c = _mm256_cmpeq_epi8(_mm256_max_epu8(v, ctl), ctl);
                    let mask = _mm256_movemask_epi8(_mm256_or_si256(_mm256_or_si256(q, s), c)) as u32;
                    let hi = _mm256_movemask_epi8(v) as u32;
                    if mask != 0 {
                        *high |= hi & below(mask);
                        return i + mask.trailing_zeros() as usize;
                    }
                    *high |= hi;
                    i += 32;
                }
            }
        }
        // SAFETY: SSE2 is part of the x86_64 baseline; loads stay within
        // `b` (i + 16 <= len).
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            let slash = _mm_set1_epi8(b'\\' as i8);
            let ctl = _mm_set1_epi8(0x1f);
            while i + 16 <= b.len() {
                let v = _mm_loadu_si128(b.as_ptr().add(i) as *const __m128i);
                let q = _mm_cmpeq_epi8(v, quote);
                let s = _mm_cmpeq_epi8(v, slash);
                let c = _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl);
                let mask = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(q, s), c)) as u32;
                let hi = _mm_movemask_epi8(v) as u32;
                if mask != 0 {
                    *high |= hi & below(mask);
                    return i + mask.trailing_zeros() as usize;
                }
                *high |= hi;
                i += 16;
            }
        }
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        *high |= (c >= 0x80) as u32;
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> bool {
        validate(s.as_bytes(), 128).is_ok()
    }

    #[test]
    fn accepts_what_a_real_parser_accepts() {
        let samples = [
            "{}",
            "[]",
            " { } ",
            "0",
            "-0.5e+10",
            "1E3",
            "\"\"",
            "true",
            "null",
            r#"{"a":[1,2,{"b":null,"c":"x\"y\\z\/\u00e9\n"}],"d":false}"#,
            "[\"ünïcødé 🎉 and a string longer than sixteen bytes with \\\"escapes\\\" inside\"]",
            "{\"k\" : [ 1 , 2 ] , \"l\" : { } }\r\n",
        ];
        for s in samples {
            assert!(ok(s), "{s}");
            assert!(sonic_rs::from_str::<sonic_rs::Value>(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn refuses_what_a_real_parser_refuses() {
        let samples = [
            "",
            " ",
            "{",
            "}",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{a:1}",
            "{\"a\":1} x",
            "{} {}",
            "01",
            "1.",
            "-",
            "1e",
            ".5",
            "tru",
            "nul",
            "\"abc",
            "\"a\\x\"",
            "\"\\u12G4\"",
            "\"tab\there\"",
            "[\"a very long string that goes past sixteen bytes \u{1} with a control\"]",
            "[1 2]",
            "{\"a\":1]",
            "[1}",
            "\"unterminated and longer than sixteen bytes\\",
        ];
        for s in samples {
            assert_eq!(validate(s.as_bytes(), 128), Err(Invalid::Syntax), "{s:?}");
            assert!(sonic_rs::from_str::<sonic_rs::Value>(s).is_err(), "{s:?}");
        }
        assert_eq!(validate(b"\"\xff\"", 128), Err(Invalid::Syntax));
        // Bad UTF-8 anywhere inside a string, at every offset around the
        // 16- and 32-byte blocks, before and after escapes and quotes.
        for pad in 0..70 {
            let mut bad = b"[\"".to_vec();
            bad.extend(std::iter::repeat_n(b'a', pad));
            bad.extend_from_slice(b"\xc3\x28 \\n\"]");
            assert_eq!(validate(&bad, 128), Err(Invalid::Syntax), "pad {pad}");
            let mut good = b"[\"".to_vec();
            good.extend(std::iter::repeat_n(b'a', pad));
            good.extend_from_slice("é\\n\",\"ü\"]".as_bytes());
            assert!(validate(&good, 128).is_ok(), "pad {pad}");
        }
        // Non-ASCII outside strings is a syntax error, not a UTF-8 question.
        assert_eq!(validate("[1,é]".as_bytes(), 128), Err(Invalid::Syntax));
    }

    #[test]
    fn tape_holds_containers_and_long_strings_in_start_order() {
        let long = "x".repeat(60);
        let text = format!(r#"{{"a":[1,{{"b":"{long}"}}],"short":"s","c":{{}}}}"#);
        let mut tape = vec![(9, 9, 9)];
        assert_eq!(validate_with_tape(text.as_bytes(), 128, &mut tape).map(|v| v.text), Ok(text.as_str()));
        let spans: Vec<&str> = tape.iter().map(|&(s, e, _)| &text[s as usize..e as usize]).collect();
        let want = [
            text.as_str(),
            &format!(r#"[1,{{"b":"{long}"}}]"#),
            &format!(r#"{{"b":"{long}"}}"#),
            &format!("\"{long}\""),
            "{}",
        ];
        assert_eq!(spans, want);
        // Each entry's third field is the index past its own subtree.
        let next: Vec<u32> = tape.iter().map(|s| s.2).collect();
        assert_eq!(next, [5, 4, 4, 4, 5]);
    }

    #[test]
    fn depth_counts_only_structure() {
        assert!(validate(br#"{"a":[1,{"b":[]}]}"#, 4).is_ok());
        assert_eq!(validate(br#"{"a":[1,{"b":[]}]}"#, 3), Err(Invalid::Depth));
        let deep = "[".repeat(100_000);
        assert_eq!(validate(deep.as_bytes(), 128), Err(Invalid::Depth));
        let exact = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert!(validate(exact.as_bytes(), 128).is_ok());
        let over = format!("{}{}", "[".repeat(129), "]".repeat(129));
        assert_eq!(validate(over.as_bytes(), 1000), Err(Invalid::Depth), "capped at 128");
        let s = format!(r#"{{"t":"{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(validate(s.as_bytes(), 1).is_ok());
        // Objects and arrays interleaved deep down keep their kinds apart.
        let mixed = format!("{}1{}", "{\"k\":[".repeat(60), "]}".repeat(60));
        assert!(validate(mixed.as_bytes(), 128).is_ok());
        let wrong = format!("{}1{}", "{\"k\":[".repeat(60), "}]".repeat(60));
        assert_eq!(validate(wrong.as_bytes(), 128), Err(Invalid::Syntax));
    }
}
