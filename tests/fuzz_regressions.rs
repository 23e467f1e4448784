//! Replays fuzzer inputs through the fuzz targets' code paths under `cargo test`.
//!
//! Receives the committed seed corpora (`fuzz/corpus/<target>/seed-*`) and
//! the crashing inputs found by fuzzing (inline below, one test each), and
//! runs them through `fuzz/src/harness.rs`, included by path, so a crash
//! found by libFuzzer stays fixed and the corpus stays meaningful without
//! the nightly-flag build of `scripts/fuzz.sh`.

#[path = "../fuzz/src/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::path::Path;

/// Every committed seed replays cleanly, every target has a few, and some
/// of each target's seeds are accepted all the way (not only rejected early).
#[test]
fn corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for target in harness::TARGETS {
        let dir = root.join(target);
        let (mut n, mut accepted) = (0, 0);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.starts_with("seed-")))
            .collect();
        entries.sort();
        for path in entries {
            let data = std::fs::read(&path).expect("read seed");
            match std::panic::catch_unwind(|| harness::run(target, &data)) {
                Ok(ok) => accepted += usize::from(ok),
                Err(_) => panic!("{target}: {} fails", path.display()),
            }
            n += 1;
        }
        assert!(n >= 3, "{target}: only {n} seed files in {}", dir.display());
        assert!(accepted >= 2, "{target}: {accepted} of {n} seeds accepted");
    }
}

/// The split schedules reach both extremes: whole input and single bytes.
#[test]
fn splits_cover_whole_and_bytewise() {
    assert_eq!(harness::splits(0, 10), vec![10]);
    assert_eq!(harness::splits(5, 10), vec![1; 10]);
    for ctrl in 0..=255u8 {
        assert_eq!(harness::splits(ctrl, 1000).iter().sum::<usize>(), 1000, "ctrl {ctrl}");
    }
}

/// The stream checker itself rejects a malformed stream (guards the guard).
#[test]
fn stream_checker_rejects_bad_streams() {
    let ok = b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n";
    assert_eq!(harness::check_stream(ok), "message_start");
    let bad: [&[u8]; 3] = [
        b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        b"event: message_start\ndata: {\"type\":\"ping\"}\n\n",
        b"event: message_start\ndata: {\"type\":\"message_start\"}\n",
    ];
    for b in bad {
        assert!(std::panic::catch_unwind(|| harness::check_stream(b)).is_err(), "{}", String::from_utf8_lossy(b));
    }
}

// ---- crashes found by fuzzing, one test each (the fix belongs in src/) ----

/// response_convert, found 2026-11-28 (fuzz/regressions/response_convert/crash-383d…):
/// an upstream string with an invalid `\u` escape (`\uing`, non-hex digits)
/// is not rejected by sonic-rs's lazy walk, and `write_raw_json`
/// (src/convert/response.rs) copies it verbatim, so the client gets an HTTP
/// 200 body that is not valid JSON. The original input had it in a tool name;
/// the minimal case below has it in text content.
#[test]
fn response_invalid_unicode_escape_in_tool_name() {
    harness::response_convert(include_bytes!(
        "../fuzz/regressions/response_convert/crash-383d78b9f089932a6e487eb70da7c75ddadfab1c"
    ));
}

/// Minimal form of the crash above: `\uZZZZ` in `choices[0].message.content`.
#[test]
fn response_invalid_unicode_escape_in_text() {
    harness::response_convert(
        b"\x00{\"choices\":[{\"message\":{\"content\":\"a\\uZZZZ\"},\"finish_reason\":\"stop\"}]}",
    );
}
