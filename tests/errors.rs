//! Error paths through the real proxy: upstream HTTP errors mapped to
//! Anthropic errors, an unreachable or nonsensical upstream, and malformed
//! client requests. Every error must be `{"type":"error","error":{..}}` with
//! the right status, and must never carry the upstream key. Both drivers.

mod common;

use std::net::TcpListener;

use common::*;
use serde_json::json;

#[test]
fn upstream_status_mapping() {
    with_proxy(|mock, proxy| {
        // (upstream status, client status, Anthropic type)
        let table = [
            (400, 400, "invalid_request_error"),
            (401, 401, "authentication_error"),
            (403, 403, "permission_error"),
            (404, 404, "not_found_error"),
            (413, 413, "request_too_large"),
            (429, 429, "rate_limit_error"),
            (500, 500, "api_error"),
            (503, 529, "overloaded_error"),
        ];
        for (up, _, _) in table {
            let mut reply = Reply::openai_error(up, "some_error", &format!("upstream says {up}"));
            if up == 429 {
                reply = reply.header("Retry-After", "7");
            }
            mock.push(reply);
        }
        for (up, status, kind) in table {
            let r = proxy.messages(&simple_request("x"));
            let msg = r.assert_error(status, kind);
            assert!(msg.contains(&format!("upstream says {up}")), "the provider's message is kept: {msg}");
            if up == 429 {
                assert_eq!(r.header("retry-after"), Some("7"), "retry-after passed through");
            }
        }
    });
}

#[test]
fn upstream_error_echoing_the_key_is_not_leaked() {
    with_proxy(|mock, proxy| {
        // Some providers echo the bad key back in their 401 message.
        mock.push(Reply::openai_error(401, "invalid_api_key", &format!("Incorrect API key provided: {TEST_KEY}")));
        let r = proxy.send(&post_json("/v1/messages", &simple_request("x")));
        r.assert_error(401, "authentication_error");
    });
}

fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/v1")
}

#[test]
fn unreachable_upstream_is_502() {
    for_each_driver(|d| {
        let proxy =
            ProxyCmd::new(d).arg("--upstream").arg(&closed_port_url()).arg("--upstream-key").arg(TEST_KEY).start();
        let r = proxy.messages(&simple_request("x"));
        r.assert_error(502, "api_error");
        let mut c = proxy.stream(&stream_request("x"));
        let r = c.read_response();
        r.assert_error(502, "api_error");
        proxy::assert_no_key(&r.body);
        // The connection survives an upstream failure.
        c.send(&request("GET", "/health", &[], b""));
        assert_eq!(c.read_response().status, 200);
        proxy.finish();
    });
}

#[test]
fn default_upstream_unreachable_explains_configuration() {
    for_each_driver(|d| {
        // No --upstream: local Ollama. Either it is not running here (the
        // normal case in CI) and the error must explain how to configure a
        // provider, or it is, and we skip.
        if std::net::TcpStream::connect("127.0.0.1:11434").is_ok() {
            return;
        }
        let proxy = ProxyCmd::new(d).start();
        let r = proxy.messages(&simple_request("x"));
        let msg = r.assert_error(502, "api_error");
        let lower = msg.to_lowercase();
        assert!(lower.contains("upstream") || lower.contains("provider"), "{msg}");
        assert!(msg.contains("11434") || lower.contains("ollama"), "the message says what was tried: {msg}");
        proxy.finish();
    });
}

#[test]
fn unparseable_upstream_body_is_502() {
    with_proxy(|mock, proxy| {
        mock.push(Reply::raw(200, "application/json", b"this is not json"));
        mock.push(Reply::raw(200, "text/html", b"<html>gateway page</html>"));
        for _ in 0..2 {
            let r = proxy.messages(&simple_request("x"));
            r.assert_error(502, "api_error");
        }
    });
}

#[test]
fn client_request_errors_name_the_problem() {
    with_proxy(|mock, proxy| {
        let r = proxy.send(&post_raw("/v1/messages", b"{\"model\": \"x\", \"max_tokens\": 1, \"messages\": ["));
        r.assert_error(400, "invalid_request_error");
        let r = proxy.send(&post_raw("/v1/messages", b"[1,2,3]"));
        r.assert_error(400, "invalid_request_error");
        let r = proxy.send(&post_raw("/v1/messages", b""));
        r.assert_error(400, "invalid_request_error");

        let full = simple_request("x");
        for field in ["model", "messages", "max_tokens"] {
            let mut req = full.clone();
            req.as_object_mut().unwrap().remove(field);
            let r = proxy.messages(&req);
            let msg = r.assert_error(400, "invalid_request_error");
            assert!(msg.contains(field), "the error names the missing field {field}: {msg}");
        }
        let mut req = full.clone();
        req["messages"] = json!("not a list");
        proxy.messages(&req).assert_error(400, "invalid_request_error");
        let mut req = full.clone();
        req["max_tokens"] = json!("many");
        proxy.messages(&req).assert_error(400, "invalid_request_error");
        assert_eq!(mock.request_count(), 0, "invalid requests never reach the upstream");
    });
}

#[test]
fn unknown_path_is_404() {
    with_proxy(|mock, proxy| {
        proxy.get("/v2/nothing").assert_error(404, "not_found_error");
        proxy.send(&post_json("/v1/complete", &simple_request("x"))).assert_error(404, "not_found_error");
        assert_eq!(mock.request_count(), 0);
    });
}
