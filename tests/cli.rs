//! The command-line contract: `--check-config` (secrets masked, non-zero exit
//! with a precise message on a bad config), config files with `${ENV}`
//! interpolation, and the startup log line. Run under both drivers like every
//! integration test, though `--check-config` starts no runtime.

mod common;

use common::*;

fn output_text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn check_config_masks_the_key() {
    for_each_driver(|d| {
        let out = ProxyCmd::new(d)
            .arg("--upstream")
            .arg("http://127.0.0.1:9/v1")
            .arg("--upstream-key")
            .arg(TEST_KEY)
            .arg("--model")
            .arg("some-model")
            .arg("--check-config")
            .run_to_exit();
        let text = output_text(&out);
        assert!(out.status.success(), "exit {:?}: {text}", out.status);
        assert!(!text.contains(TEST_KEY), "the key is printed in clear: {text}");
        assert!(!text.contains(&TEST_KEY[8..]), "a large part of the key is printed: {text}");
        assert!(text.contains("http://127.0.0.1:9/v1"), "the resolved upstream is shown: {text}");
        assert!(text.contains("some-model"), "{text}");

        // The same key from the environment.
        let out = ProxyCmd::new(d)
            .arg("--upstream")
            .arg("http://127.0.0.1:9/v1")
            .env("CCPROXY_UPSTREAM_KEY", TEST_KEY)
            .arg("--check-config")
            .run_to_exit();
        let text = output_text(&out);
        assert!(out.status.success(), "{text}");
        assert!(!text.contains(TEST_KEY), "{text}");
    });
}

#[test]
fn check_config_file_with_env_interpolation() {
    for_each_driver(|d| {
        let cfg = write_config(
            "max_body_bytes = 4096\n\n[upstream]\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key = \"${CCPROXY_ITEST_SECRET}\"\n",
        );
        let out = ProxyCmd::new(d)
            .arg("--config")
            .arg(cfg.to_str().unwrap())
            .env("CCPROXY_ITEST_SECRET", TEST_KEY)
            .arg("--check-config")
            .run_to_exit();
        let text = output_text(&out);
        assert!(out.status.success(), "{text}");
        assert!(!text.contains(TEST_KEY), "{text}");
        assert!(!text.contains("${CCPROXY_ITEST_SECRET}"), "the variable was not interpolated: {text}");
        assert!(text.contains("4096"), "{text}");
    });
}

#[test]
fn check_config_rejects_bad_configs() {
    for_each_driver(|d| {
        let cases = [
            ("not toml", "[upstream\nurl = ", "config.toml"),
            ("wrong type", "max_body_bytes = \"lots\"\n", "max_body_bytes"),
            (
                "unset variable",
                "[upstream]\napi_key = \"${CCPROXY_ITEST_SURELY_UNSET_VAR}\"\n",
                "CCPROXY_ITEST_SURELY_UNSET_VAR",
            ),
        ];
        for (what, text, must_mention) in cases {
            let cfg = write_config(text);
            let out = ProxyCmd::new(d).arg("--config").arg(cfg.to_str().unwrap()).arg("--check-config").run_to_exit();
            let t = output_text(&out);
            assert!(!out.status.success(), "{what}: a bad config must exit non-zero: {t}");
            assert!(t.contains(must_mention), "{what}: the message must be precise (mention {must_mention:?}): {t}");
            assert!(!t.contains("panicked"), "{what}: {t}");
        }
        let out = ProxyCmd::new(d).arg("--config").arg("/nonexistent/ccproxy.toml").arg("--check-config").run_to_exit();
        let t = output_text(&out);
        assert!(!out.status.success(), "a missing --config file is an error: {t}");
        assert!(t.contains("/nonexistent/ccproxy.toml"), "{t}");
    });
}

#[test]
fn startup_line_reports_driver_workers_and_address() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = ProxyCmd::new(d).upstream(&mock).start();
        // ProxyCmd::start already asserted the driver; check the rest.
        assert_eq!(proxy.workers, 2, "{}", proxy.startup_line);
        assert_ne!(proxy.addr.port(), 0);
        let h = proxy.get("/health");
        assert_eq!(h.status, 200);
        proxy.finish();

        // Default worker count: one per core.
        let proxy = ProxyCmd::new(d).upstream(&mock).no_workers().start();
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        assert_eq!(proxy.workers, cores, "{}", proxy.startup_line);
        proxy.finish();
    });
}

#[test]
fn key_never_logged_even_at_debug() {
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = ProxyCmd::new(d).upstream(&mock).env("RUST_LOG", "trace").env("CCPROXY_LOG", "trace").start();
        mock.push(Reply::text("ok"));
        mock.push(Reply::openai_error(401, "invalid_api_key", &format!("Incorrect API key provided: {TEST_KEY}")));
        assert_eq!(proxy.messages(&simple_request("x")).status, 200);
        // Not `proxy.messages`: that also asserts on the response, which
        // errors.rs covers; this test is about the log.
        let mut c = proxy.client();
        c.send(&post_json("/v1/messages", &simple_request("x")));
        assert_eq!(c.read_response().status, 401);
        let _ = proxy.get("/status");
        let log = proxy.stop();
        proxy::assert_log_clean(&log);
    });
}

/// The serving process runs without transparent huge pages (set before the
/// runtime's first allocation), which halves idle memory with mimalloc; an
/// explicit MIMALLOC_ALLOW_THP=1 (or another spelling of "on") keeps them.
/// Launcher subcommands hand `claude` the setting they were started with
/// (tests/launcher.rs).
#[test]
fn huge_pages_are_off_unless_asked_for() {
    let thp = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status.lines().find_map(|l| l.strip_prefix("THP_enabled:")).map(|v| v.trim().to_owned())
    };
    for_each_driver(|d| {
        let mock = Mock::start();
        let proxy = ProxyCmd::new(d).upstream(&mock).start();
        let Some(off) = thp(proxy.pid()) else { return }; // kernel without the field
        assert_eq!(off, "0");
        // Every spelling mimalloc itself reads as "on" keeps them.
        for on in ["1", "YES", "on"] {
            let proxy = ProxyCmd::new(d).upstream(&mock).env("MIMALLOC_ALLOW_THP", on).start();
            assert_eq!(thp(proxy.pid()).as_deref(), Some("1"), "MIMALLOC_ALLOW_THP={on}");
        }
        let proxy = ProxyCmd::new(d).upstream(&mock).env("MIMALLOC_ALLOW_THP", "off").start();
        assert_eq!(thp(proxy.pid()).as_deref(), Some("0"));
    });
}
