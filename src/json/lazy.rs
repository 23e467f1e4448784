//! Allocation-free lazy walking of JSON text that was validated already.
//!
//! Receives the text of one JSON value that [`super::validate`] accepted
//! (request bodies, upstream responses, stream chunks) and hands out
//! borrowed views of its members: [`Lazy`] values, object entries with their
//! raw (still escaped) keys, array elements. Nothing is decoded unless asked
//! and nothing is allocated: sonic-rs's own iterators allocate a key buffer
//! per object walked, which at a few objects per stream chunk dominated the
//! stream converter's allocations.
//!
//! Given the tape [`super::validate_with_tape`] recorded for the text,
//! objects, arrays and long strings are skipped by a lookup instead of a
//! scan, so a walk costs what it visits, not what it steps over.
//!
//! Every method is total: on text that is not valid JSON after all it gives
//! wrong answers (`None`, short iterations), never a panic or an
//! out-of-bounds read. Skipping never recurses.

use std::borrow::Cow;

use super::validate::Span;

/// Where skips are looked up: the tape of the validated text and the
/// address that text starts at (tape offsets are relative to it).
#[derive(Clone, Copy, Debug, Default)]
struct Tape<'a> {
    spans: &'a [Span],
    origin: usize,
}

impl Tape<'_> {
    /// End (relative to `text`) of the value starting at `text[i]`, if the
    /// tape has it, and the tape index where its own contents start. `lo` is
    /// a lower bound on its tape index; it is moved past the value's whole
    /// subtree. Walking in document order, the entry is exactly at `lo`;
    /// `search` allows a binary search when it is not, and without it a
    /// miss means "not on the tape" (a string too short for one).
    #[inline]
    fn end(&self, text: &[u8], i: usize, lo: &mut usize, search: bool) -> Option<(usize, u32)> {
        let base = (text.as_ptr() as usize).checked_sub(self.origin)?;
        let at = u32::try_from(base + i).ok()?;
        let k = match self.spans.get(*lo) {
            Some(s) if s.0 == at => *lo,
            _ if search => *lo + self.spans.get(*lo..)?.binary_search_by_key(&at, |s| s.0).ok()?,
            _ => return None,
        };
        let span = self.spans.get(k)?;
        *lo = (span.2 as usize).max(k + 1);
        let end = (span.1 as usize).checked_sub(base)?;
        (end > i && end <= text.len()).then_some((end, k as u32 + 1))
    }

    /// Offset (in `text`) past the value starting at `text[i]`, and the tape
    /// index its contents start at (`lo` when unknown): short strings and
    /// scalars are scanned, containers and long strings are looked up
    /// (scanned if the tape lacks them).
    #[inline]
    fn skip(&self, text: &[u8], i: usize, lo: &mut usize) -> (usize, u32) {
        let here = *lo as u32;
        match text.get(i) {
            Some(b'{' | b'[') => self.end(text, i, lo, true).unwrap_or_else(|| (container_end(text, i + 1), here)),
            Some(b'"') => match short_string_end(text, i + 1) {
                Some(end) => (end, here),
                // Most strings that miss the inline probe (16-47 bytes, or
                // escaped) are not on the tape; searching for them would
                // cost more than the scan.
                None => self.end(text, i, lo, false).unwrap_or_else(|| (string_end(text, i + 1), here)),
            },
            _ => (value_end(text, i), here),
        }
    }
}

/// The raw text of one JSON value (no surrounding whitespace).
#[derive(Clone, Copy, Debug)]
pub struct Lazy<'a> {
    raw: &'a str,
    tape: Tape<'a>,
    /// A lower bound on the tape index of the first value inside this one.
    first: u32,
}

impl<'a> Lazy<'a> {
    /// The value `text` holds; `text` must have passed
    /// [`super::validate`] (surrounding whitespace is trimmed here).
    pub fn of_valid(text: &'a str) -> Self {
        Lazy { raw: text.trim_ascii(), tape: Tape::default(), first: 0 }
    }

    /// The value `text` holds, with the tape that
    /// [`super::validate_with_tape`] recorded for exactly this `text`.
    pub fn with_tape(text: &'a str, spans: &'a [Span]) -> Self {
        let raw = text.trim_ascii();
        // The root's own entry, when it has one, is the first on the tape.
        let at = raw.as_ptr() as usize - text.as_ptr() as usize;
        let first = u32::from(spans.first().is_some_and(|s| s.0 as usize == at));
        Lazy { raw, tape: Tape { spans, origin: text.as_ptr() as usize }, first }
    }

    /// The value's JSON text exactly as in the input.
    #[inline]
    pub fn as_raw_str(&self) -> &'a str {
        self.raw
    }

    #[inline]
    fn first(&self) -> u8 {
        self.raw.as_bytes().first().copied().unwrap_or(0)
    }

    #[inline]
    pub fn is_str(&self) -> bool {
        self.first() == b'"'
    }

    #[inline]
    pub fn is_object(&self) -> bool {
        self.first() == b'{'
    }

    #[inline]
    pub fn is_array(&self) -> bool {
        self.first() == b'['
    }

    #[inline]
    pub fn is_null(&self) -> bool {
        self.first() == b'n'
    }

    #[inline]
    pub fn is_number(&self) -> bool {
        matches!(self.first(), b'-' | b'0'..=b'9')
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.first() {
            b't' => Some(true),
            b'f' => Some(false),
            _ => None,
        }
    }

    /// A non-negative integer written without fraction or exponent.
    pub fn as_u64(&self) -> Option<u64> {
        self.raw.parse().ok()
    }

    /// The escaped body of a string value, without its quotes.
    #[inline]
    pub fn str_body(&self) -> Option<&'a str> {
        if !self.is_str() {
            return None;
        }
        self.raw.get(1..self.raw.len().saturating_sub(1))
    }

    /// A string value, unescaped (allocates only when it holds escapes).
    pub fn as_str(&self) -> Option<Cow<'a, str>> {
        let body = self.str_body()?;
        if !body.contains('\\') {
            return Some(Cow::Borrowed(body));
        }
        sonic_rs::from_str::<String>(self.raw).ok().map(Cow::Owned)
    }

    /// Entries of an object value.
    pub fn entries(&self) -> Option<Entries<'a>> {
        self.is_object().then_some(Entries { text: self.raw, at: 1, tape: self.tape, lo: self.first as usize })
    }

    /// Elements of an array value.
    pub fn elements(&self) -> Option<Elements<'a>> {
        self.is_array().then_some(Elements { text: self.raw, at: 1, tape: self.tape, lo: self.first as usize })
    }

    /// The member `key` of an object value (the first one, if repeated
    /// keys).
    pub fn get(&self, key: &str) -> Option<Lazy<'a>> {
        self.entries()?.find(|(k, _)| k.is(key)).map(|(_, v)| v)
    }

    /// Follows a path of object keys.
    pub fn pointer(&self, path: &[&str]) -> Option<Lazy<'a>> {
        path.iter().try_fold(*self, |v, k| v.get(k))
    }
}

/// An object key as written in the input (escaped, without quotes).
#[derive(Clone, Copy, Debug)]
pub struct Key<'a>(&'a str);

impl<'a> Key<'a> {
    /// Whether the key equals `name` once unescaped.
    #[inline]
    pub fn is(&self, name: &str) -> bool {
        if self.0.len() == name.len() {
            return self.0 == name;
        }
        // Escaped text is longer than what it encodes.
        self.0.len() > name.len() && self.0.contains('\\') && self.unescaped().as_deref() == Some(name)
    }

    /// The key unescaped, for matching against several names.
    #[inline]
    pub fn name(&self) -> Cow<'a, str> {
        if !self.0.contains('\\') {
            return Cow::Borrowed(self.0);
        }
        self.unescaped().map_or(Cow::Borrowed(""), Cow::Owned)
    }

    fn unescaped(&self) -> Option<String> {
        let mut quoted = String::with_capacity(self.0.len() + 2);
        quoted.push('"');
        quoted.push_str(self.0);
        quoted.push('"');
        sonic_rs::from_str(&quoted).ok()
    }
}

/// Iterator over an object's entries; see [`Lazy::entries`].
#[derive(Clone)]
pub struct Entries<'a> {
    text: &'a str,
    at: usize,
    tape: Tape<'a>,
    lo: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = (Key<'a>, Lazy<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.text.as_bytes();
        let mut i = skip_ws(b, self.at);
        if b.get(i) == Some(&b',') {
            i = skip_ws(b, i + 1);
        }
        if b.get(i) != Some(&b'"') {
            self.at = b.len();
            return None;
        }
        let key_end = string_end(b, i + 1);
        let key = self.text.get(i + 1..key_end.saturating_sub(1))?;
        let mut j = skip_ws(b, key_end);
        if b.get(j) == Some(&b':') {
            j = skip_ws(b, j + 1);
        }
        let (end, first) = self.tape.skip(b, j, &mut self.lo);
        self.at = end;
        Some((Key(key), Lazy { raw: self.text.get(j..end)?, tape: self.tape, first }))
    }
}

/// Iterator over an array's elements; see [`Lazy::elements`].
#[derive(Clone)]
pub struct Elements<'a> {
    text: &'a str,
    at: usize,
    tape: Tape<'a>,
    lo: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = Lazy<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.text.as_bytes();
        let mut i = skip_ws(b, self.at);
        if b.get(i) == Some(&b',') {
            i = skip_ws(b, i + 1);
        }
        match b.get(i) {
            None | Some(b']') => {
                self.at = b.len();
                return None;
            }
            Some(_) => {}
        }
        let (end, first) = self.tape.skip(b, i, &mut self.lo);
        self.at = end;
        Some(Lazy { raw: self.text.get(i..end)?, tape: self.tape, first })
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

/// Offset past the value starting at `i`.
#[inline]
fn value_end(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(b'"') => string_end(b, i + 1),
        Some(b'{' | b'[') => container_end(b, i + 1),
        Some(_) => {
            let mut j = i + 1;
            while let Some(&c) = b.get(j) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                    break;
                }
                j += 1;
            }
            j
        }
        None => i,
    }
}

/// Offset past the closing quote of a string whose body starts at `i`,
/// when that quote is among the next 16 bytes with no escape before it.
#[inline(always)]
fn short_string_end(b: &[u8], i: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if i + 16 <= b.len() {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86_64 baseline; i + 16 <= len.
        let (q, s) = unsafe {
            let v = _mm_loadu_si128(b.as_ptr().add(i) as *const __m128i);
            let q = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8))) as u32;
            let s = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8))) as u32;
            (q, s)
        };
        let first = q & q.wrapping_neg();
        return (first != 0 && s & first.wrapping_sub(1) == 0).then(|| i + q.trailing_zeros() as usize + 1);
    }
    let _ = (b, i);
    None
}

/// Offset past the closing quote of a string whose body starts at `i`.
#[inline]
fn string_end(b: &[u8], mut i: usize) -> usize {
    loop {
        i = find_quote_or_backslash(b, i);
        match b.get(i) {
            Some(b'\\') => i += 2,
            Some(_) => return i + 1,
            None => return b.len(),
        }
    }
}

/// Offset past the bracket closing a container whose contents start at `i`.
fn container_end(b: &[u8], mut i: usize) -> usize {
    let mut depth = 1usize;
    loop {
        i = find_structural(b, i);
        match b.get(i) {
            Some(b'"') => i = string_end(b, i + 1),
            Some(b'{' | b'[') => {
                depth += 1;
                i += 1;
            }
            Some(_) => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return i;
                }
            }
            None => return b.len(),
        }
    }
}

#[inline(always)]
fn find_quote_or_backslash(b: &[u8], mut i: usize) -> usize {
    // Most strings walked are keys and short values: one inline 16-byte
    // probe answers those without a call into memchr.
    #[cfg(target_arch = "x86_64")]
    if i + 16 <= b.len() {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86_64 baseline; i + 16 <= len.
        let mask = unsafe {
            let v = _mm_loadu_si128(b.as_ptr().add(i) as *const __m128i);
            let q = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let s = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            _mm_movemask_epi8(_mm_or_si128(q, s)) as u32
        };
        if mask != 0 {
            return i + mask.trailing_zeros() as usize;
        }
        i += 16;
    }
    match memchr::memchr2(b'"', b'\\', b.get(i..).unwrap_or_default()) {
        Some(off) => i + off,
        None => b.len(),
    }
}

/// First offset at or after `i` holding a quote or a bracket.
#[inline(always)]
fn find_structural(b: &[u8], mut i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SSE2 is part of the x86_64 baseline.
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            // `{`|0x20 == `{`, `[`|0x20 == `{`, `}`|0x20 == `}`, `]`|0x20 == `}`;
            // no other byte maps onto those two.
            let low = _mm_set1_epi8(0x20);
            let open = _mm_set1_epi8(b'{' as i8);
            let close = _mm_set1_epi8(b'}' as i8);
            while i + 16 <= b.len() {
                // In bounds: i + 16 <= len was just checked.
                let v = _mm_loadu_si128(b.as_ptr().add(i) as *const __m128i);
                let f = _mm_or_si128(v, low);
                let hit = _mm_or_si128(
                    _mm_cmpeq_epi8(v, quote),
                    _mm_or_si128(_mm_cmpeq_epi8(f, open), _mm_cmpeq_epi8(f, close)),
                );
                let mask = _mm_movemask_epi8(hit) as u32;
                if mask != 0 {
                    return i + mask.trailing_zeros() as usize;
                }
                i += 16;
            }
        }
    }
    while let Some(&c) = b.get(i) {
        if matches!(c, b'"' | b'{' | b'}' | b'[' | b']') {
            return i;
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#" {"a" : 1, "s":"x\"}]\\", "o":{"k":[1,{"z":"]"}],"e":{}},
        "arr":[ "a" , [ ] , { "b" : null } , -1.5e3, true ],"t\u0079pe":"esc", "last":false } "#;

    #[test]
    fn walks_objects_and_arrays_by_raw_spans() {
        assert!(super::super::validate(DOC.as_bytes(), 128).is_ok());
        let v = Lazy::of_valid(DOC);
        let keys: Vec<String> = v.entries().unwrap().map(|(k, _)| k.name().into_owned()).collect();
        assert_eq!(keys, ["a", "s", "o", "arr", "type", "last"]);
        assert_eq!(v.get("a").unwrap().as_u64(), Some(1));
        assert_eq!(v.get("s").unwrap().as_raw_str(), r#""x\"}]\\""#);
        assert_eq!(v.get("s").unwrap().as_str().unwrap(), "x\"}]\\");
        assert_eq!(v.get("o").unwrap().as_raw_str(), r#"{"k":[1,{"z":"]"}],"e":{}}"#);
        assert_eq!(v.pointer(&["o", "e"]).unwrap().as_raw_str(), "{}");
        let arr: Vec<&str> = v.get("arr").unwrap().elements().unwrap().map(|e| e.as_raw_str()).collect();
        assert_eq!(arr, ["\"a\"", "[ ]", "{ \"b\" : null }", "-1.5e3", "true"]);
        assert_eq!(v.get("type").unwrap().as_str().unwrap(), "esc");
        assert_eq!(v.get("last").unwrap().as_bool(), Some(false));
        assert!(v.get("missing").is_none());
        assert!(v.get("arr").unwrap().entries().is_none());
        assert_eq!(Lazy::of_valid("[]").elements().unwrap().count(), 0);
        assert_eq!(Lazy::of_valid("{ }").entries().unwrap().count(), 0);
    }

    #[test]
    fn agrees_with_sonic_on_long_values() {
        let long = format!(r#"{{"a":"{}","b":[{}],"c":"{}"}}"#, "x\\\"".repeat(300), "[1,{}],".repeat(200) + "0", "é");
        let v = Lazy::of_valid(&long);
        for (k, lv) in v.entries().unwrap() {
            let want = sonic_rs::get(&long, [&*k.name()]).unwrap();
            assert_eq!(lv.as_raw_str(), want.as_raw_str());
        }
    }

    #[test]
    fn tape_skips_give_the_same_spans() {
        let long = format!(
            r#"{{"a":"{}","b":[{}],"c":"{}","d":{{"e":[{{}}],"f":"{}"}}}}"#,
            "x\\\"".repeat(30),
            "[1,{}],".repeat(20) + "0",
            "é",
            "y".repeat(80)
        );
        let mut tape = Vec::new();
        super::super::validate_with_tape(long.as_bytes(), 128, &mut tape).unwrap();
        assert!(tape.len() > 20);
        let plain = Lazy::of_valid(&long);
        let taped = Lazy::with_tape(&long, &tape);
        fn walk(v: Lazy<'_>, acc: &mut Vec<String>) {
            acc.push(v.as_raw_str().to_owned());
            if let Some(e) = v.entries() {
                e.for_each(|(_, x)| walk(x, acc));
            } else if let Some(e) = v.elements() {
                e.for_each(|x| walk(x, acc));
            }
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        walk(plain, &mut a);
        walk(taped, &mut b);
        assert_eq!(a, b);
        // Partial walks: skipping a subtree moves past its part of the tape,
        // and a later sibling (or something inside it) is still found.
        let raw = |v: Option<Lazy<'_>>| v.map(|v| v.as_raw_str().to_owned());
        for path in [&["d", "f"][..], &["d", "e"], &["c"], &["b"], &["a"]] {
            assert_eq!(raw(taped.pointer(path)), raw(plain.pointer(path)), "{path:?}");
        }
        fn nth<'a>(v: Lazy<'a>, n: usize) -> Option<Lazy<'a>> {
            v.get("b").and_then(|b| b.elements()).and_then(|mut e| e.nth(n))
        }
        for n in [0, 7, 19, 20] {
            let (x, y) = (nth(taped, n), nth(plain, n));
            assert_eq!(raw(x), raw(y), "b[{n}]");
            let inner = |v: Option<Lazy<'_>>| raw(v.and_then(|v| v.elements()).and_then(|mut e| e.nth(1)));
            assert_eq!(inner(x), inner(y), "b[{n}][1]");
        }
        // A tape from other text is never followed out of bounds.
        let other = Lazy::with_tape(r#"{"a":[1,2,3]}"#, &tape);
        assert_eq!(other.get("a").map(|v| v.as_raw_str()), Some("[1,2,3]"));
    }

    #[test]
    fn broken_text_never_panics() {
        for s in ["{\"a", "{\"a\":", "[\"", "{\"a\":[1,{", "[1,", "{\"a\"1}", "\"\\"] {
            let v = Lazy::of_valid(s);
            let _ = v.entries().map(|e| e.count());
            let _ = v.elements().map(|e| e.count());
            let _ = v.get("a");
            let _ = v.as_str();
        }
    }
}
