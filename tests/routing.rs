//! Routing rules end to end: every `[router]` rule, `[model_map]`, an
//! explicit `provider,model` and `--model`, each asserted through the
//! `x-ccproxy-route` header and through which mock provider received the
//! request with which model. Every test runs under io_uring and epoll.

mod common;

use common::{for_each_driver, write_config, Driver, Mock, Proxy, ProxyCmd, Reply, Response, TEST_KEY};
use serde_json::{json, Value};

const PROVIDERS: [&str; 5] = ["main", "bg", "think", "long", "search"];
/// Small, so request bodies of a few KB land in the tokenized band
/// (`THRESHOLD * 2` ..= `THRESHOLD * 8` bytes).
const THRESHOLD: usize = 1000;

/// One mock per provider, each answering a short text.
struct Fleet {
    mocks: Vec<Mock>,
}

impl Fleet {
    fn start() -> Fleet {
        let mocks: Vec<Mock> = PROVIDERS
            .iter()
            .map(|_| {
                let m = Mock::start();
                m.set_handler(|_| Reply::text("routed"));
                m
            })
            .collect();
        Fleet { mocks }
    }

    fn mock(&self, name: &str) -> &Mock {
        &self.mocks[PROVIDERS.iter().position(|p| *p == name).unwrap()]
    }

    fn config(&self) -> std::path::PathBuf {
        let mut s = String::from("retries = 0\n");
        for (name, m) in PROVIDERS.iter().zip(&self.mocks) {
            s.push_str(&format!(
                "[[providers]]\nname = \"{name}\"\nbase_url = \"{}\"\napi_key = \"{TEST_KEY}\"\n",
                m.url()
            ));
        }
        s.push_str(&format!(
            "[router]\ndefault = \"main,main-model\"\nbackground = \"bg,bg-model\"\nthink = \"think,think-model\"\n\
             long_context = \"long,long-model\"\nlong_context_threshold = {THRESHOLD}\n\
             web_search = \"search,search-model\"\n\
             [model_map]\n\"claude-mapped-1\" = \"search,mapped-model\"\n"
        ));
        write_config(&s)
    }

    fn counts(&self) -> Vec<usize> {
        self.mocks.iter().map(Mock::request_count).collect()
    }

    /// Sends `body` and asserts the answer, the header and that exactly
    /// provider `to` received one more request, for upstream `model`.
    fn expect(&self, proxy: &Proxy, body: &Value, to: &str, model: &str, reason: &str) -> Response {
        let before = self.counts();
        let r = proxy.messages(body);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["content"][0]["text"], "routed");
        self.check(&r, &before, to, model, reason);
        r
    }

    fn check(&self, r: &Response, before: &[usize], to: &str, model: &str, reason: &str) {
        let want = format!("{to},{model} ({reason})");
        assert_eq!(r.header("x-ccproxy-route"), Some(want.as_str()), "route header; body {}", r.text());
        let after = self.counts();
        for (i, name) in PROVIDERS.iter().enumerate() {
            let d = after[i] - before[i];
            let expected = usize::from(*name == to);
            assert_eq!(d, expected, "provider {name} received {d} requests (route {want})");
        }
        assert_eq!(self.mock(to).last_body()["model"], model, "model the provider received");
    }
}

fn start(d: Driver, fleet: &Fleet, extra: &[&str]) -> Proxy {
    let mut cmd = ProxyCmd::new(d).arg("--config").arg(fleet.config().to_str().unwrap());
    for a in extra {
        cmd = cmd.arg(a);
    }
    cmd.start()
}

fn req(model: &str) -> Value {
    json!({"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": "hi"}]})
}

/// Runs `f` per driver with a fresh fleet and proxy.
fn with_fleet(extra: &[&str], mut f: impl FnMut(&Fleet, &Proxy)) {
    for_each_driver(|d| {
        let fleet = Fleet::start();
        let proxy = start(d, &fleet, extra);
        f(&fleet, &proxy);
        proxy.finish();
    });
}

#[test]
fn default_route() {
    with_fleet(&[], |f, p| {
        f.expect(p, &req("claude-sonnet-4-5"), "main", "main-model", "default");
        // Streaming answers carry the header too.
        let before = f.counts();
        f.mock("main").push(Reply::sse(common::openai::text_stream(&["str", "eamed"])));
        let mut body = req("claude-opus-4-1");
        body["stream"] = json!(true);
        let mut c = p.stream(&body);
        let (head, mut events) = c.start_stream();
        assert_eq!(head.status(), 200);
        let acc = common::accumulate(&events.rest());
        assert_eq!(acc.content()[0]["text"], "streamed");
        let r = Response { status: 200, head, body: Vec::new(), framing: common::wire::Framing::Chunked };
        f.check(&r, &before, "main", "main-model", "default");
    });
}

#[test]
fn background_route_for_haiku_models() {
    with_fleet(&[], |f, p| {
        f.expect(p, &req("claude-haiku-4-5-20251001"), "bg", "bg-model", "background");
        f.expect(p, &req("claude-3-5-haiku-latest"), "bg", "bg-model", "background");
        f.expect(p, &req("claude-sonnet-4-5"), "main", "main-model", "default");
    });
}

#[test]
fn think_route_only_for_enabled_thinking() {
    with_fleet(&[], |f, p| {
        let mut body = req("claude-sonnet-4-5");
        body["max_tokens"] = json!(4096);
        body["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
        f.expect(p, &body, "think", "think-model", "think");
        // Claude Code sends adaptive thinking on every turn: not a think turn.
        body["thinking"] = json!({"type": "adaptive"});
        f.expect(p, &body, "main", "main-model", "default");
        body["thinking"] = json!({"type": "disabled"});
        f.expect(p, &body, "main", "main-model", "default");
    });
}

/// A request whose single user message is `text`.
fn with_text(text: &str) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": [{"role": "user", "content": text}]})
}

fn count_tokens(p: &Proxy, body: &Value) -> u64 {
    let mut b = body.clone();
    b.as_object_mut().unwrap().remove("max_tokens");
    let r = p.send(&common::post_json("/v1/messages/count_tokens", &b));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["input_tokens"].as_u64().unwrap()
}

#[test]
fn long_context_by_bytes_and_by_token_count() {
    with_fleet(&[], |f, p| {
        let t = THRESHOLD as u64;
        // Inside the band, dense text: about one token per 2 bytes.
        let dense = with_text(&" x".repeat(2200));
        let len = serde_json::to_vec(&dense).unwrap().len() as u64;
        assert!(len > 2 * t && len < 8 * t, "dense body of {len} bytes must be in the band");
        assert!(count_tokens(p, &dense) >= t, "dense body must count at least {t} tokens");
        f.expect(p, &dense, "long", "long-model", "long_context");
        // Inside the band, sparse text: about one token per 12 bytes.
        let sparse = with_text(&" information".repeat(400));
        let len = serde_json::to_vec(&sparse).unwrap().len() as u64;
        assert!(len > 2 * t && len < 8 * t, "sparse body of {len} bytes must be in the band");
        assert!(count_tokens(p, &sparse) < t, "sparse body must count fewer than {t} tokens");
        f.expect(p, &sparse, "main", "main-model", "default");
        // Above threshold * 8 bytes the length alone decides, even though
        // this body counts fewer tokens than the threshold.
        let big_sparse = with_text(&" information".repeat(720));
        let len = serde_json::to_vec(&big_sparse).unwrap().len() as u64;
        assert!(len > 8 * t, "{len}");
        assert!(count_tokens(p, &big_sparse) < t);
        f.expect(p, &big_sparse, "long", "long-model", "long_context");
        // A short request with a haiku model: background, not long.
        f.expect(p, &req("claude-haiku-4-5"), "bg", "bg-model", "background");
    });
}

#[test]
fn web_search_route_when_the_tool_is_present() {
    with_fleet(&[], |f, p| {
        let mut body = req("claude-sonnet-4-5");
        body["tools"] = json!([
            {"name": "Read", "description": "read a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
        ]);
        f.expect(p, &body, "search", "search-model", "web_search");
        // The same tools without the web search: default.
        body["tools"].as_array_mut().unwrap().pop();
        f.expect(p, &body, "main", "main-model", "default");
    });
}

#[test]
fn explicit_provider_model_in_the_request() {
    with_fleet(&[], |f, p| {
        f.expect(p, &req("think,deepseek/deepseek-r1:free"), "think", "deepseek/deepseek-r1:free", "explicit");
        // Explicit beats the haiku background rule in the model name.
        f.expect(p, &req("search,claude-haiku-ish"), "search", "claude-haiku-ish", "explicit");
        // An unknown provider is no explicit route: the name goes on as a
        // client model name to the rules below.
        f.expect(p, &req("nope,some-model"), "main", "main-model", "default");
    });
}

#[test]
fn model_map_exact_match() {
    with_fleet(&[], |f, p| {
        f.expect(p, &req("claude-mapped-1"), "search", "mapped-model", "model_map");
        f.expect(p, &req("claude-mapped-10"), "main", "main-model", "default");
        f.expect(p, &req("CLAUDE-MAPPED-1"), "main", "main-model", "default");
    });
}

#[test]
fn forced_model_wins_over_every_rule() {
    with_fleet(&["--model", "forced-model"], |f, p| {
        f.expect(p, &req("claude-sonnet-4-5"), "main", "forced-model", "forced");
        f.expect(p, &req("claude-haiku-4-5"), "main", "forced-model", "forced");
        f.expect(p, &req("claude-mapped-1"), "main", "forced-model", "forced");
        f.expect(p, &req("bg,explicit-model"), "main", "forced-model", "forced");
    });
}

#[test]
fn route_header_on_an_upstream_error_answer() {
    with_fleet(&[], |f, p| {
        f.mock("bg").push(Reply::openai_error(400, "invalid_request_error", "bad things"));
        let before = f.counts();
        let r = p.messages(&req("claude-haiku-4-5"));
        let msg = r.assert_error(400, "invalid_request_error");
        assert!(msg.contains("bad things"), "{msg}");
        f.check(&r, &before, "bg", "bg-model", "background");
        f.mock("main").push(Reply::openai_error(503, "server_error", "overloaded"));
        let before = f.counts();
        let r = p.messages(&req("claude-sonnet-4-5"));
        r.assert_error(529, "overloaded_error");
        f.check(&r, &before, "main", "main-model", "default");
    });
}
