//! ccproxy: serves the Anthropic Messages API on top of OpenAI-compatible
//! providers, converting requests, responses and SSE streams on the fly.
//!
//! The request path, in order, lives in [`lifecycle`]; the thread-per-core
//! engine that feeds it connections lives in [`server`].

pub mod config;
pub mod convert;
pub mod endpoints;
pub mod error;
pub mod forward;
pub mod http;
pub mod json;
pub mod launcher;
pub mod lifecycle;
pub mod metrics;
pub mod redact;
pub mod relay;
pub mod route;
pub mod server;
pub mod sockets;
pub mod sse;
pub mod tls;
pub mod tokens;
pub mod upstream;
