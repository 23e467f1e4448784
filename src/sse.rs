//! A sans-IO, incremental Server-Sent Events parser.
//!
//! Receives an upstream response body (already de-chunked by the HTTP layer)
//! in arbitrary splits, and emits each complete event (its `event:` name and
//! its `data`, multi-line data joined by `\n`) to a caller callback.
//!
//! Follows the WHATWG event-stream rules: `\n`, `\r\n` and `\r` line endings
//! (a `\r` ending one read and a `\n` starting the next count as one ending),
//! `:` comment lines are ignored, one leading UTF-8 BOM is dropped, `id:` and
//! `retry:` are accepted and ignored (nothing here reconnects).
//!
//! Allocation: a partial line is kept in a reusable buffer across reads; an
//! event whose single `data:` line lies whole inside one read is handed out
//! as a slice of that read, without copying.
//!
//! Memory is bounded: a line, or the data of one event, longer than
//! [`MAX_EVENT_BYTES`] makes `feed`/`finish` return [`TooLarge`], after
//! which the parser drops what it held and ignores further input.

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Longest SSE line, and longest data of one event, accepted from the
/// upstream. Without it a body that never sends a line ending (or an event
/// that never ends) grows the proxy without bound. Real chunks are a few
/// hundred bytes; a whole tool input in one chunk stays far below this.
pub const MAX_EVENT_BYTES: usize = 16 << 20;

/// A line or an event went over the parser's limit; the stream cannot be
/// parsed further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// One dispatched event. `event` is empty when the stream gave no `event:`
/// line (the SSE default type, "message").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    pub event: &'a [u8],
    pub data: &'a [u8],
}

/// Incremental parser state. One per upstream response.
#[derive(Debug)]
pub struct SseParser {
    /// Limit on one line and on one event's data ([`MAX_EVENT_BYTES`]).
    max: usize,
    /// A limit was exceeded: everything after is ignored.
    too_large: bool,
    /// Bytes of a line not yet terminated in previous reads.
    line: Vec<u8>,
    /// Data of the current event when it spans reads or several lines.
    data: Vec<u8>,
    /// Whether `data` holds at least one `data:` line.
    has_data: bool,
    /// Name from the current event's `event:` line.
    event: Vec<u8>,
    /// The previous read ended with `\r`; a leading `\n` belongs to it.
    skip_lf: bool,
    /// How many BOM bytes matched at the very start; 3 or `bom_done` ends it.
    bom_pos: u8,
    bom_done: bool,
}

/// Where the data of the event being assembled lives during one `feed`.
enum Pending<'i> {
    None,
    /// A single data line lying whole inside the current read.
    Borrowed(&'i [u8]),
    /// In `SseParser::data`.
    Owned,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::with_max(MAX_EVENT_BYTES)
    }
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// A parser with a limit other than [`MAX_EVENT_BYTES`] (for tests).
    pub fn with_max(max: usize) -> Self {
        SseParser {
            max,
            too_large: false,
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            event: Vec::new(),
            skip_lf: false,
            bom_pos: 0,
            bom_done: false,
        }
    }

    /// Consumes `input` and calls `on_event` for every event completed by it.
    /// Events completed before a limit is hit are still delivered.
    pub fn feed<F: FnMut(Event<'_>)>(&mut self, input: &[u8], on_event: &mut F) -> Result<(), TooLarge> {
        if self.too_large {
            return Err(TooLarge);
        }
        let mut input = self.strip_bom(input);
        if self.skip_lf && !input.is_empty() {
            self.skip_lf = false;
            if input[0] == b'\n' {
                input = &input[1..];
            }
        }
        let mut pending = if self.has_data { Pending::Owned } else { Pending::None };
        while let Some(pos) = memchr::memchr2(b'\n', b'\r', input) {
            let (head, rest) = input.split_at(pos);
            let terminator = rest[0];
            input = &rest[1..];
            if terminator == b'\r' {
                match input.first() {
                    Some(b'\n') => input = &input[1..],
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            if self.line.is_empty() {
                self.check(head.len())?;
                self.line_in_input(head, &mut pending, on_event);
            } else {
                self.check(self.line.len() + head.len())?;
                self.line.extend_from_slice(head);
                let line = std::mem::take(&mut self.line);
                self.owned_line(&line, &mut pending, on_event);
                self.line = line;
                self.line.clear();
            }
            if self.too_large {
                return self.overflow();
            }
        }
        if let Pending::Borrowed(d) = pending {
            self.data.clear();
            self.data.extend_from_slice(d);
            self.has_data = true;
        }
        self.check(self.line.len() + input.len())?;
        self.line.extend_from_slice(input);
        Ok(())
    }

    /// The body ended. A final unterminated line is processed and an event
    /// still being assembled is dispatched: the spec would drop it, but
    /// providers do end streams without the closing blank line, and a
    /// truncated JSON payload is caught by the consumer anyway.
    pub fn finish<F: FnMut(Event<'_>)>(&mut self, on_event: &mut F) -> Result<(), TooLarge> {
        if self.too_large {
            return Err(TooLarge);
        }
        let mut pending = if self.has_data { Pending::Owned } else { Pending::None };
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.owned_line(&line, &mut pending, on_event);
            self.line = line;
            self.line.clear();
            if self.too_large {
                return self.overflow();
            }
        }
        self.dispatch(&mut pending, on_event);
        self.skip_lf = false;
        Ok(())
    }

    /// Fails when `len` bytes would go over the limit.
    fn check(&mut self, len: usize) -> Result<(), TooLarge> {
        if len > self.max {
            return self.overflow();
        }
        Ok(())
    }

    /// Gives back what was held; the stream is over for this parser.
    fn overflow(&mut self) -> Result<(), TooLarge> {
        self.too_large = true;
        self.line = Vec::new();
        self.data = Vec::new();
        self.event = Vec::new();
        self.has_data = false;
        Err(TooLarge)
    }

    fn strip_bom<'i>(&mut self, mut input: &'i [u8]) -> &'i [u8] {
        while !self.bom_done {
            let Some(&b) = input.first() else { break };
            if b == BOM[self.bom_pos as usize] {
                input = &input[1..];
                self.bom_pos += 1;
                if self.bom_pos == 3 {
                    self.bom_done = true;
                }
            } else {
                // A partial BOM that turned out to be content: give it back.
                self.line.extend_from_slice(&BOM[..self.bom_pos as usize]);
                self.bom_done = true;
            }
        }
        input
    }

    /// A complete line that lies whole in the current read, so a data value
    /// can be borrowed from it.
    fn line_in_input<'i, F: FnMut(Event<'_>)>(&mut self, line: &'i [u8], pending: &mut Pending<'i>, f: &mut F) {
        match split_field(line) {
            Field::Blank => self.dispatch(pending, f),
            Field::Data(v) => match pending {
                Pending::None => *pending = Pending::Borrowed(v),
                _ => self.append_data(v, pending),
            },
            other => self.other_field(other),
        }
    }

    fn owned_line<F: FnMut(Event<'_>)>(&mut self, line: &[u8], pending: &mut Pending<'_>, f: &mut F) {
        match split_field(line) {
            Field::Blank => self.dispatch(pending, f),
            Field::Data(v) => self.append_data(v, pending),
            other => self.other_field(other),
        }
    }

    fn append_data(&mut self, v: &[u8], pending: &mut Pending<'_>) {
        let held = match *pending {
            Pending::None => 0,
            Pending::Borrowed(d) => d.len() + 1,
            Pending::Owned => self.data.len() + 1,
        };
        if held + v.len() > self.max {
            // Reported by the caller, which checks `too_large` per line.
            self.too_large = true;
            *pending = Pending::None;
            return;
        }
        match *pending {
            Pending::None => self.data.clear(),
            Pending::Borrowed(d) => {
                self.data.clear();
                self.data.extend_from_slice(d);
                self.data.push(b'\n');
            }
            Pending::Owned => self.data.push(b'\n'),
        }
        self.data.extend_from_slice(v);
        self.has_data = true;
        *pending = Pending::Owned;
    }

    fn other_field(&mut self, field: Field<'_>) {
        if let Field::Event(name) = field {
            self.event.clear();
            self.event.extend_from_slice(name);
        }
    }

    fn dispatch<F: FnMut(Event<'_>)>(&mut self, pending: &mut Pending<'_>, f: &mut F) {
        let data: &[u8] = match *pending {
            Pending::None => &[],
            Pending::Borrowed(d) => d,
            Pending::Owned => &self.data,
        };
        if !data.is_empty() {
            f(Event { event: &self.event, data });
        }
        *pending = Pending::None;
        self.has_data = false;
        self.data.clear();
        self.event.clear();
    }
}

enum Field<'a> {
    Blank,
    Comment,
    Data(&'a [u8]),
    Event(&'a [u8]),
    /// `id`, `retry` and unknown fields: accepted, nothing to do.
    Ignored,
}

fn split_field(line: &[u8]) -> Field<'_> {
    if line.is_empty() {
        return Field::Blank;
    }
    if line[0] == b':' {
        return Field::Comment;
    }
    let (name, value) = match line.iter().position(|&b| b == b':') {
        Some(i) => {
            let v = &line[i + 1..];
            (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
        }
        None => (line, &line[line.len()..]),
    };
    match name {
        b"data" => Field::Data(value),
        b"event" => Field::Event(value),
        _ => Field::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Collected = Vec<(String, String)>;

    fn collect(pieces: &[&[u8]]) -> Collected {
        let mut p = SseParser::new();
        let mut got = Vec::new();
        let mut f = |e: Event<'_>| {
            got.push((String::from_utf8(e.event.to_vec()).unwrap(), String::from_utf8(e.data.to_vec()).unwrap()))
        };
        for piece in pieces {
            p.feed(piece, &mut f).unwrap();
        }
        p.finish(&mut f).unwrap();
        got
    }

    /// Feeds `input` whole, split in two at every offset, and byte by byte;
    /// every way must give `expected`.
    fn check_all_splits(input: &[u8], expected: &[(&str, &str)]) {
        let expected: Collected = expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(collect(&[input]), expected, "whole input");
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(collect(&[a, b]), expected, "split at {i}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(collect(&bytes), expected, "byte by byte");
    }

    #[test]
    fn basic_events_with_every_line_ending() {
        for nl in ["\n", "\r\n", "\r"] {
            let s = "data: {\"a\":1}NLNLdata: two NLNL".replace("NL", nl);
            check_all_splits(s.as_bytes(), &[("", "{\"a\":1}"), ("", "two ")]);
        }
    }

    #[test]
    fn multi_line_data_is_joined_with_newline() {
        // `\r\r` is a line ending then a blank line; the lone `data` after it
        // makes an empty event, which is not dispatched.
        check_all_splits(b"data: a\ndata:b\r\ndata:  c\r\rdata\n\n", &[("", "a\nb\n c")]);
        // A lone `data` field line contributes an empty line.
        check_all_splits(b"data: x\ndata\n\n", &[("", "x\n")]);
    }

    #[test]
    fn comments_ids_retry_and_event_names() {
        let s = b": OPENROUTER PROCESSING\n\nid: 7\nretry: 100\nevent: error\ndata: {\"e\":1}\n\n: x\ndata: after\n\n";
        check_all_splits(s, &[("error", "{\"e\":1}"), ("", "after")]);
    }

    #[test]
    fn field_without_space_and_unknown_fields() {
        check_all_splits(b"data:x\nfoo: bar\nevent:ping\n\n", &[("ping", "x")]);
    }

    #[test]
    fn bom_at_start_is_dropped_once() {
        check_all_splits(b"\xEF\xBB\xBFdata: 1\n\n\xEF\xBB\xBFdata: 2\n\n", &[("", "1")]);
        let got = collect(&[b"\xEF\xBB\xBFdata: 1\n\ndata: 2\n\n"]);
        assert_eq!(got, vec![("".into(), "1".into()), ("".into(), "2".into())]);
        // A BOM prefix that is not a BOM is content (here: an unknown field).
        check_all_splits(b"\xEF\xBBdata: 1\n\ndata: 2\n\n", &[("", "2")]);
    }

    #[test]
    fn unterminated_tail_is_flushed_at_finish() {
        check_all_splits(b"data: 1\n\ndata: [DONE]", &[("", "1"), ("", "[DONE]")]);
        check_all_splits(b"data: 1\n\ndata: 2\n", &[("", "1"), ("", "2")]);
    }

    #[test]
    fn empty_data_is_not_dispatched() {
        check_all_splits(b"data:\n\nevent: x\n\ndata: y\n\n", &[("", "y")]);
    }

    #[test]
    fn cr_at_end_of_read_then_lf_is_one_line_ending() {
        let got = collect(&[b"data: a\r", b"\n", b"\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(got, vec![("".into(), "a".into()), ("".into(), "b".into())]);
        // An empty read between \r and \n must not lose the pairing.
        let got = collect(&[b"data: a\r", b"", b"\n\r\n"]);
        assert_eq!(got, vec![("".into(), "a".into())]);
    }

    #[test]
    fn single_line_event_inside_one_read_is_borrowed() {
        let input = b"data: hello\n\n";
        let mut p = SseParser::new();
        let mut ptr = std::ptr::null();
        p.feed(input, &mut |e: Event<'_>| ptr = e.data.as_ptr()).unwrap();
        assert_eq!(ptr, input[6..].as_ptr());
        assert!(p.data.capacity() == 0 && p.line.capacity() == 0);
    }

    /// Feeds `pieces` to a parser limited to `max`; returns the events
    /// delivered and whether (and at which piece, `pieces.len()` = finish)
    /// the limit was reported.
    fn limited(max: usize, pieces: &[&[u8]]) -> (Vec<String>, Option<usize>) {
        let mut p = SseParser::with_max(max);
        let mut got = Vec::new();
        let mut f = |e: Event<'_>| got.push(String::from_utf8(e.data.to_vec()).unwrap());
        let mut failed = None;
        for (i, piece) in pieces.iter().enumerate() {
            if p.feed(piece, &mut f).is_err() {
                failed = Some(i);
                break;
            }
        }
        if failed.is_none() && p.finish(&mut f).is_err() {
            failed = Some(pieces.len());
        }
        if failed.is_some() {
            // Once over, always over, and nothing more is delivered.
            assert_eq!(p.feed(b"data: late\n\n", &mut f), Err(TooLarge));
            assert_eq!(p.finish(&mut f), Err(TooLarge));
            assert!(p.line.capacity() == 0 && p.data.capacity() == 0, "held memory is released");
        }
        (got, failed)
    }

    #[test]
    fn lines_and_events_up_to_the_limit_pass() {
        // "data: " + 10 bytes = a 16-byte line; data of 10 + 1 + 5 = 16 bytes.
        let input = b"data: 0123456789\ndata: abcde\n\n";
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            let (got, failed) = limited(16, &[a, b]);
            assert_eq!((got, failed), (vec!["0123456789\nabcde".to_owned()], None), "split at {i}");
        }
    }

    #[test]
    fn a_line_without_end_over_the_limit_fails() {
        // The body that grew the proxy to 520 MB: no line ending at all.
        let chunk = [b'x'; 1000];
        let pieces: Vec<&[u8]> = std::iter::repeat_n(&chunk[..], 20).collect();
        let (got, failed) = limited(16 * 1024, &pieces);
        assert!(got.is_empty());
        assert_eq!(failed, Some(16), "fails as soon as the partial line passes the limit");
        // Whole inside one read, terminated or not.
        assert_eq!(limited(8, &[b"data: 0123\n\n"]), (vec![], Some(0)));
        assert_eq!(limited(8, &[b"data: 0123"]), (vec![], Some(0)));
        // Assembled from two reads.
        assert_eq!(limited(8, &[b"data", b": 0123\n\n"]), (vec![], Some(1)));
    }

    #[test]
    fn an_event_of_many_lines_over_the_limit_fails() {
        // Each line is short; the event's data grows past the limit.
        let input = b"data: ok\n\ndata: 1234\ndata: 5678\ndata: 9\n\n";
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            let (got, failed) = limited(10, &[a, b]);
            assert_eq!(got, vec!["ok".to_owned()], "split at {i}");
            assert!(failed.is_some(), "split at {i}");
        }
        // At finish: the unterminated last line pushes the event over.
        assert_eq!(limited(10, &[b"data: 1234\ndata: 5678\ndata: 9"]), (vec![], Some(1)));
    }
}
