//! SIGHUP reload through the real binary: a changed config file takes effect
//! for new requests, an invalid one is rejected and the running
//! configuration stays. Both drivers.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn config(mock: &Mock, model: &str) -> String {
    format!("retries = 0\n[upstream]\nbase_url = \"{}\"\napi_key = \"{TEST_KEY}\"\nmodel = \"{model}\"\n", mock.url())
}

fn sighup(proxy: &Proxy) {
    // SAFETY: kill(2) on the child's pid.
    let rc = unsafe { libc::kill(proxy.pid() as i32, libc::SIGHUP) };
    assert_eq!(rc, 0, "kill -HUP");
}

/// The route header of one request, answering it from the mock.
fn routed(mock: &Mock, proxy: &Proxy) -> String {
    mock.push(Reply::completion(
        json!({"role": "assistant", "content": "ok"}),
        "stop",
        json!({"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}),
    ));
    let r = proxy.messages(&simple_request("hi"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("x-ccproxy-route").unwrap_or_default().to_string()
}

/// Waits until the proxy's log shows `needle` (the signal is handled
/// asynchronously); bounded, and the assertion is on the log, not on time.
fn wait_log(proxy: &Proxy, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !proxy.log().contains(needle) {
        assert!(Instant::now() < deadline, "log never showed {needle:?}:\n{}", proxy.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_applies_a_new_config_and_rejects_an_invalid_one() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let path = write_config(&config(&mock, "first-model"));
        let proxy = ProxyCmd::new(d).arg("--config").arg(path.to_str().unwrap()).start();
        assert_eq!(routed(&mock, &proxy), "default,first-model (default)");
        assert_eq!(mock.last_body()["model"], "first-model");

        std::fs::write(&path, config(&mock, "second-model")).unwrap();
        sighup(&proxy);
        wait_log(&proxy, "configuration reloaded");
        // Both workers pick it up at their next request, whichever serves it.
        for _ in 0..4 {
            assert_eq!(routed(&mock, &proxy), "default,second-model (default)");
            assert_eq!(mock.last_body()["model"], "second-model");
        }

        std::fs::write(&path, "[upstream]\nbase_urll = \"oops\"\n").unwrap();
        sighup(&proxy);
        wait_log(&proxy, "configuration reload rejected");
        assert!(proxy.log().contains("base_urll"), "the rejection names the problem");
        assert_eq!(routed(&mock, &proxy), "default,second-model (default)", "the running config stays");
        proxy.finish();
    });
}

#[test]
fn reload_keeps_the_pool_of_an_unchanged_provider() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let path = write_config(&config(&mock, "first-model"));
        let proxy = ProxyCmd::new(d).workers(1).arg("--config").arg(path.to_str().unwrap()).start();
        routed(&mock, &proxy);
        assert_eq!(mock.connections(), 1);
        // Same provider settings, different model: the pooled upstream
        // connection carries over to the reloaded worker.
        std::fs::write(&path, config(&mock, "second-model")).unwrap();
        sighup(&proxy);
        wait_log(&proxy, "configuration reloaded");
        assert_eq!(routed(&mock, &proxy), "default,second-model (default)");
        assert_eq!(mock.connections(), 1, "the reloaded worker reused the pooled connection");
        proxy.finish();
    });
}
