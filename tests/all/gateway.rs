//! The gateway in front of functions (issue 24), on a real host over real HTTP: CORS answered by the host.

use crate::support::{Host, component_arg, send};

fn config_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("edgefn.toml");
    std::fs::write(&path, text).expect("write config");
    let path = path.to_str().expect("utf-8").to_owned();
    (dir, path)
}

const CORS: &str = r#"
[components.hello.cors]
allowed_origins = ["https://app.example.com", "https://*.shop.test"]
allowed_methods = ["GET", "POST"]
allowed_headers = ["content-type"]
expose_headers = ["x-request-id"]
max_age_s = 600

[components.hello.functions.get_order.cors]
allowed_origins = ["https://orders.example.com"]
"#;

#[test]
fn the_host_answers_cors_preflights_and_adds_the_headers_to_allowed_origins_only() {
    let (_dir, config) = config_file(CORS);
    let host = Host::start(&["--config", &config, &component_arg("hello")]);
    let preflight = |origin: &str, method: &str, headers: &str| {
        send(
            "OPTIONS",
            &host.url("/orders"),
            &[
                ("origin", origin),
                ("access-control-request-method", method),
                ("access-control-request-headers", headers),
            ],
            b"",
        )
    };
    // Allowed: answered by the host (the function has no OPTIONS route), with what the browser needs.
    let allowed = preflight("https://app.example.com", "POST", "Content-Type");
    assert_eq!(allowed.status, 204, "{}", allowed.body);
    assert_eq!(allowed.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(allowed.header("access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(allowed.header("access-control-allow-headers"), Some("content-type"));
    assert_eq!(allowed.header("access-control-max-age"), Some("600"));
    assert_eq!(allowed.header("vary"), Some("Origin"));
    assert_eq!(preflight("https://a.shop.test", "POST", "").status, 204, "a one-label wildcard origin");
    // Refused: no CORS headers, and the host's log says why.
    for (origin, method, headers, why) in [
        ("https://evil.test", "POST", "", "origin `https://evil.test` is not in cors.allowed_origins"),
        ("https://app.example.com", "PUT", "", "no route"),
        ("https://app.example.com", "POST", "x-secret", "request header `x-secret` is not in cors.allowed_headers"),
    ] {
        let refused = preflight(origin, method, headers);
        assert_eq!(refused.header("access-control-allow-origin"), None, "{origin} {method} {headers}");
        if why != "no route" {
            assert_eq!(refused.status, 403, "{}", refused.body);
            host.wait_for_log(why);
        }
    }
    // An actual request from an allowed origin gets the headers on the function's own response.
    let body = br#"{"item": "tea", "quantity": 2}"#;
    let created = send(
        "POST",
        &host.url("/orders"),
        &[("origin", "https://app.example.com"), ("content-type", "application/json")],
        body,
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(created.header("access-control-expose-headers"), Some("x-request-id"));
    let foreign = send("POST", &host.url("/orders"), &[("origin", "https://evil.test")], body);
    assert_eq!(foreign.status, 201, "the function still answers; the browser will not show it");
    assert_eq!(foreign.header("access-control-allow-origin"), None);
    // A function's own policy replaces the component's.
    let order = send("GET", &host.url("/orders/7"), &[("origin", "https://orders.example.com")], b"");
    assert_eq!(order.header("access-control-allow-origin"), Some("https://orders.example.com"));
    let other = send("GET", &host.url("/orders/7"), &[("origin", "https://app.example.com")], b"");
    assert_eq!(other.header("access-control-allow-origin"), None);
    // Without an Origin, nothing changes.
    let plain = send("GET", &host.url("/hello/ada"), &[], b"");
    assert_eq!((plain.status, plain.header("access-control-allow-origin")), (200, None));
}

#[test]
fn a_cors_policy_that_would_open_every_site_with_credentials_is_refused_at_start_naming_it() {
    let (_dir, config) = config_file("[components.hello.cors]\nallowed_origins = [\"*\"]\nallow_credentials = true\n");
    let Err((_, output)) = Host::try_start(&["--config", &config, &component_arg("hello")], &[]) else {
        panic!("the host started with a wildcard origin and credentials");
    };
    assert!(output.contains("[components.hello]: cors.allow_credentials with allowed_origins \"*\""), "{output}");
}

const RATE_LIMITS: &str = r#"
[components.hello.functions.hello.rate_limit]
requests = 1
window_s = 2
burst = 3

[components.hello.functions.get_order.rate_limit]
requests = 1
window_s = 60
burst = 2
key = "header:x-api-key"
"#;

#[test]
fn a_rate_limited_route_answers_429_after_its_burst_and_recovers_and_keys_by_client() {
    let (_dir, config) = config_file(RATE_LIMITS);
    let host = Host::start(&["--config", &config, &component_arg("hello")]);
    let hello = || send("GET", &host.url("/hello/ada"), &[], b"");
    for remaining in ["2", "1", "0"] {
        let allowed = hello();
        assert_eq!(allowed.status, 200, "{}", allowed.body);
        assert_eq!(allowed.header("ratelimit-limit"), Some("3"));
        assert_eq!(allowed.header("ratelimit-remaining"), Some(remaining));
    }
    let refused = hello();
    assert_eq!(refused.status, 429, "{}", refused.body);
    let retry_after = refused.header("retry-after").and_then(|s| s.parse::<u64>().ok());
    assert!(matches!(retry_after, Some(1 | 2)), "a token every 2 s: {retry_after:?}");
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
    assert!(refused.body.contains("too many requests to hello/hello"), "{}", refused.body);
    // Counted as a throttled invocation of the function, which did not run.
    let metrics = host.admin("GET", "/metrics", None).body;
    assert!(
        metrics.contains(r#"edgefn_invocations_total{function="hello/hello",trigger="http",outcome="throttled"} 1"#),
        "{metrics}"
    );
    // A token comes back within 2 s (one request per 2 s).
    crate::support::poll_until("the bucket refills", std::time::Duration::from_secs(10), || hello().status == 200);
    // By API key: one client's burst does not touch another's, and requests without a key share a bucket.
    let order = |key: Option<&str>| {
        let headers: Vec<(&str, &str)> = key.map(|k| vec![("x-api-key", k)]).unwrap_or_default();
        send("GET", &host.url("/orders/7"), &headers, b"").status
    };
    assert_eq!([order(Some("a")), order(Some("a")), order(Some("a"))], [404, 404, 429]);
    assert_eq!(order(Some("b")), 404, "another key has its own bucket");
    assert_eq!([order(None), order(None), order(None)], [404, 404, 429]);
}

#[test]
fn a_function_checks_a_named_limiter_of_the_host_per_key() {
    let (_dir, config) = config_file("[rate_limits.per-user]\nrequests = 1\nwindow_s = 60\nburst = 2\n");
    let host = Host::start(&["--config", &config, &component_arg("gateway_probe")]);
    let call = |who: &str| send("GET", &host.url(&format!("/limited/per-user/{who}")), &[], b"");
    let first = call("ada");
    assert_eq!((first.status, first.json()["remaining"].as_u64()), (200, Some(1)), "{}", first.body);
    assert_eq!(call("ada").status, 200);
    let refused = call("ada");
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.json()["allowed"], false);
    assert_eq!(call("grace").status, 200, "another key has its own bucket");
    let unknown = send("GET", &host.url("/limited/nope/ada"), &[], b"");
    assert_eq!(unknown.status, 500);
    host.wait_for_log("no rate limiter `nope`: the host configures [rate_limits.NAME] (it has: per-user)");
}
