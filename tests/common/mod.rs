//! Shared harness of the integration tests.
//!
//! Receives nothing on its own: each `tests/*.rs` binary includes it with
//! `mod common;`. Emits the pieces those tests are built from: the scripted
//! mock OpenAI upstream (`mock`, validated by `validate`, fed with `openai`
//! chunk builders), the raw HTTP client (`client`, over `wire` framing), and
//! the proxy launcher that runs every test under both monoio drivers (`proxy`).

// Each test binary uses a different subset of the harness.
#![allow(dead_code, unused_imports)]

pub mod anthropic;
pub mod client;
pub mod mock;
pub mod openai;
pub mod proxy;
pub mod validate;
pub mod vendor;
pub mod wire;

pub use anthropic::{accumulate, openai_text, simple_request, stream_request, Accumulated};
pub use client::{event_pairs, parse_sse, post_json, post_raw, request, Client, Response, SseEvent};
pub use mock::{End, Framing, Mock, Part, Recorded, Reply, TEST_KEY};
pub use proxy::{for_each_driver, with_proxy, write_config, Driver, Proxy, ProxyCmd};
pub use vendor::Profile;
