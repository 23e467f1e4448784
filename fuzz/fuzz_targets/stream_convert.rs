//! Fuzz target `stream_convert`: feeds libFuzzer's input to
//! [`ccproxy_fuzz::harness::stream_convert`], which runs ccproxy's code path and
//! panics on any violated invariant (see fuzz/src/harness.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ccproxy_fuzz::harness::stream_convert(data);
});
