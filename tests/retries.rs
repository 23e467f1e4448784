//! Retries and fallbacks end to end: a primary provider that fails in
//! scripted ways, a backup provider on the default route's fallback list.
//! Asserted through what each mock received, the `x-ccproxy-route` header,
//! elapsed time (retry-after honoured or not) and `/status` counters. Every
//! test runs under io_uring and epoll.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::openai::{done, finish, role, text, usage};
use common::{accumulate, for_each_driver, write_config, End, Mock, Proxy, ProxyCmd, Reply, TEST_KEY};
use serde_json::{json, Value};

/// `retries = 2` (backoff 250 ms then 500 ms), `retry-after` honoured up
/// to 2 s, fallback to `backup,backup-model`.
fn config(primary_url: &str, backup: &Mock) -> std::path::PathBuf {
    write_config(&format!(
        "retries = 2\nretry_after_cap_secs = 2\n\
         [[providers]]\nname = \"primary\"\nbase_url = \"{primary_url}\"\napi_key = \"{TEST_KEY}\"\n\
         [[providers]]\nname = \"backup\"\nbase_url = \"{}\"\napi_key = \"{TEST_KEY}\"\n\
         [router]\ndefault = \"primary,primary-model\"\n\
         [router.fallback]\ndefault = [\"backup,backup-model\"]\n",
        backup.url()
    ))
}

fn start(d: common::Driver, primary_url: &str, backup: &Mock) -> Proxy {
    ProxyCmd::new(d).arg("--config").arg(config(primary_url, backup).to_str().unwrap()).start()
}

fn req() -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": [{"role": "user", "content": "hi"}]})
}

fn status(p: &Proxy) -> Value {
    let r = p.get("/status");
    assert_eq!(r.status, 200);
    r.json()
}

/// Per driver: a primary and a backup mock and a proxy over both.
fn with_pair(mut f: impl FnMut(&Mock, &Mock, &Proxy)) {
    for_each_driver(|d| {
        let primary = Mock::start();
        let backup = Mock::start();
        let proxy = start(d, &primary.url(), &backup);
        f(&primary, &backup, &proxy);
        proxy.finish();
    });
}

#[test]
fn rate_limited_then_ok_succeeds_after_one_retry_honouring_retry_after() {
    with_pair(|primary, backup, proxy| {
        primary.push(Reply::openai_error(429, "rate_limit_exceeded", "slow down").header("retry-after", "1"));
        primary.push(Reply::text("second time lucky"));
        let t0 = Instant::now();
        let r = proxy.messages(&req());
        let took = t0.elapsed();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["content"][0]["text"], "second time lucky");
        assert_eq!(r.header("x-ccproxy-route"), Some("primary,primary-model (default)"));
        assert_eq!(primary.request_count(), 2);
        assert_eq!(backup.request_count(), 0);
        // retry-after: 1 replaces the 250 ms backoff.
        assert!(took >= Duration::from_millis(950), "retried after {took:?}, before retry-after");
        assert!(took < Duration::from_secs(5), "{took:?}");
        let s = status(proxy);
        assert!(s["retries"].as_u64().unwrap() >= 1, "{s}");
        assert_eq!(s["fallbacks"], 0, "{s}");
    });
}

#[test]
fn three_server_errors_then_the_fallback_answers() {
    with_pair(|primary, backup, proxy| {
        for _ in 0..3 {
            primary.push(Reply::openai_error(500, "server_error", "boom"));
        }
        backup.push(Reply::text("from the backup"));
        let r = proxy.messages(&req());
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["content"][0]["text"], "from the backup");
        assert_eq!(r.header("x-ccproxy-route"), Some("backup,backup-model (fallback)"));
        assert_eq!(primary.request_count(), 3, "one try and two retries");
        assert_eq!(backup.only_request().body["model"], "backup-model");
        let s = status(proxy);
        assert!(s["fallbacks"].as_u64().unwrap() >= 1, "{s}");
        assert!(s["retries"].as_u64().unwrap() >= 2, "{s}");
    });
}

#[test]
fn every_target_failing_gives_the_last_error_with_the_route() {
    with_pair(|primary, backup, proxy| {
        for _ in 0..3 {
            primary.push(Reply::openai_error(500, "server_error", "primary down"));
            backup.push(Reply::openai_error(502, "server_error", "backup down"));
        }
        let r = proxy.messages(&req());
        let msg = r.assert_error(502, "api_error");
        assert!(msg.contains("backup down"), "{msg}");
        assert_eq!(primary.request_count(), 3);
        assert_eq!(backup.request_count(), 3);
        assert!(r.header("x-ccproxy-route").is_some(), "an error answer still names the route");
    });
}

#[test]
fn a_failure_mid_stream_is_an_error_event_and_never_retried() {
    with_pair(|primary, backup, proxy| {
        primary.push(Reply::sse(vec![role(), text("partial "), text("answer")]).end(End::Reset));
        let mut body = req();
        body["stream"] = json!(true);
        let mut c = proxy.stream(&body);
        let (head, mut events) = c.start_stream();
        assert_eq!(head.status(), 200);
        assert_eq!(head.header("x-ccproxy-route"), Some("primary,primary-model (default)"));
        let acc = accumulate(&events.rest());
        let err = acc.error.as_ref().expect("the stream must end with an error event");
        assert!(!acc.saw_message_stop, "no fake end_turn: {:?}", acc.names);
        assert_eq!(err["type"], "error");
        assert_eq!(acc.content()[0]["text"], "partial answer", "what was streamed before the failure stays");
        // Give a (wrong) retry time to happen before counting.
        std::thread::sleep(Duration::from_millis(900));
        assert_eq!(primary.request_count(), 1, "a started stream must never be retried");
        assert_eq!(backup.request_count(), 0, "nor fall back");
        assert_eq!(status(proxy)["retries"], 0);
    });
}

#[test]
fn a_stream_failing_before_its_first_byte_is_retried() {
    with_pair(|primary, backup, proxy| {
        primary.push(Reply::openai_error(503, "server_error", "warming up"));
        primary.push(Reply::sse(vec![role(), text("ok"), finish("stop"), usage(5, 1, 0), done()]));
        let mut body = req();
        body["stream"] = json!(true);
        let mut c = proxy.stream(&body);
        let (head, mut events) = c.start_stream();
        assert_eq!(head.status(), 200);
        let acc = accumulate(&events.rest());
        assert!(acc.error.is_none(), "{:?}", acc.error);
        assert_eq!(acc.content()[0]["text"], "ok");
        assert_eq!(primary.request_count(), 2);
        assert_eq!(backup.request_count(), 0);
    });
}

#[test]
fn retry_after_above_the_cap_goes_to_the_fallback_without_waiting() {
    with_pair(|primary, backup, proxy| {
        primary.push(Reply::openai_error(429, "rate_limit_exceeded", "come back later").header("retry-after", "30"));
        backup.push(Reply::text("backup now"));
        let t0 = Instant::now();
        let r = proxy.messages(&req());
        let took = t0.elapsed();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["content"][0]["text"], "backup now");
        assert_eq!(r.header("x-ccproxy-route"), Some("backup,backup-model (fallback)"));
        assert_eq!(primary.request_count(), 1, "no retry when retry-after exceeds the cap");
        assert!(took < Duration::from_millis(1500), "waited {took:?}");
        assert!(status(proxy)["fallbacks"].as_u64().unwrap() >= 1);
    });
}

#[test]
fn connection_refused_on_the_primary_goes_to_the_fallback() {
    for_each_driver(|d| {
        // A port nobody listens on any more.
        let dead = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let backup = Mock::start();
        backup.push(Reply::text("backup answers"));
        let proxy = start(d, &format!("http://{dead}/v1"), &backup);
        let r = proxy.messages(&req());
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["content"][0]["text"], "backup answers");
        assert_eq!(r.header("x-ccproxy-route"), Some("backup,backup-model (fallback)"));
        assert_eq!(backup.only_request().body["model"], "backup-model");
        let s = status(&proxy);
        assert!(s["retries"].as_u64().unwrap() >= 2, "connect errors are retried: {s}");
        assert!(s["fallbacks"].as_u64().unwrap() >= 1, "{s}");
        proxy.finish();
    });
}
