//! Support crate of the fuzz targets: re-exports the shared harness, which
//! `tests/fuzz_regressions.rs` also includes by path so crashes and corpus
//! files replay through the same code outside libFuzzer.

pub mod harness;
