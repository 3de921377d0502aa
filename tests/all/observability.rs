//! Seeing what runs, end to end on real hosts over real HTTP with a real SQLite file: one correlation id followed
//! through HTTP, a queue, a topic and an invoke; guest output captured per invocation, masked and capped; the log
//! read and followed with `edgefn logs`; usage metered and billed with `edgefn usage`.

use crate::support::{Collector, Host, component_arg, get, poll_until, send};
use serde_json::{Value, json};
use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The records `edgefn logs --json ARGS` prints.
fn log_records(host: &Host, args: &[&str]) -> Vec<Value> {
    let mut full = vec!["logs", "--json"];
    full.extend_from_slice(args);
    let out = host.cli_ok(&full);
    out.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
}

/// A host config file holding `text`, in a temp dir that lives as long as the returned guard.
fn config_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("edgefn.toml");
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

fn field<'a>(record: &'a Value, name: &str) -> &'a str {
    record[name].as_str().unwrap_or_default()
}

#[test]
fn one_order_is_followed_through_http_queue_topic_and_invoke_with_one_id() {
    let collector = Collector::start();
    let (_dir, config) = config_file(&format!(
        "[components.order-pipeline]\nenv = {{ INVOICE_WEBHOOK_URL = \"{url}/invoices\", NOTIFY_WEBHOOK_URL = \
             \"{url}/notify\" }}\nallowed_outbound_hosts = [\"{authority}\"]\n",
        url = collector.url,
        authority = collector.authority,
    ));
    let host = Host::start(&["--config", config.to_str().expect("utf-8"), &component_arg("order_pipeline")]);

    let id = "order-42-checkout";
    let order = json!({ "id": 42, "customer": "ada", "country": "FR",
        "items": [{ "sku": "tea", "quantity": 3, "unit_price_cents": 400 }] });
    let reply = send(
        "POST",
        &host.url("/pipeline/orders"),
        &[("x-request-id", id), ("content-type", "application/json")],
        order.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.header("x-request-id"), Some(id), "the request's own id comes back");
    collector.wait_for("/invoices", Duration::from_secs(30), |b| !b.is_empty());
    collector.wait_for("/notify", Duration::from_secs(30), |b| !b.is_empty());

    // The webhook calls the subscribers made carried the id out, as x-request-id and as a W3C traceparent.
    for path in ["/invoices", "/notify"] {
        let request = &collector.requests(path)[0];
        assert_eq!(request.header("x-request-id"), Some(id), "{path}: {:?}", request.headers);
        let traceparent = request.header("traceparent").unwrap_or_else(|| panic!("{path}: no traceparent"));
        let fields: Vec<&str> = traceparent.split('-').collect();
        assert!(
            fields.len() == 4 && fields[0] == "00" && fields[1].len() == 32 && fields[2].len() == 16,
            "{traceparent}"
        );
    }

    // Every invocation of the work reports when it ends (the subscribers may still be finishing): wait for five.
    let invocations = |records: &[Value]| records.iter().filter(|r| field(r, "kind") == "invocation").count();
    poll_until("the five invocation records of the order", Duration::from_secs(10), || {
        invocations(&log_records(&host, &["--id", id])) >= 5
    });
    let records = log_records(&host, &["--id", id]);
    let summary: Vec<(String, String, String)> = records
        .iter()
        .map(|r| (field(r, "kind").to_owned(), field(r, "function").to_owned(), field(r, "trigger").to_owned()))
        .collect();
    assert_eq!(records.len(), 6, "the request, the line enrich printed, and four more invocations: {summary:#?}");
    assert!(records.iter().all(|r| field(r, "correlation_id") == id), "{records:#?}");
    let position = |kind: &str, function: &str| {
        summary
            .iter()
            .position(|(k, f, _)| k == kind && f == function)
            .unwrap_or_else(|| panic!("no {kind} record of {function}: {summary:#?}"))
    };
    let accept = position("invocation", "order_pipeline/accept");
    let printed = position("stdout", "order_pipeline/enrich");
    let enrich = position("invocation", "order_pipeline/enrich");
    let tax = position("invocation", "order_pipeline/tax");
    let invoice = position("invocation", "order_pipeline/invoice");
    let notify = position("invocation", "order_pipeline/notify");
    assert_eq!(accept, 0, "the HTTP request comes first: {summary:#?}");
    assert!(printed < enrich && enrich < invoice && enrich < notify && tax < invoice, "{summary:#?}");
    let triggers: Vec<&str> = [accept, enrich, tax, invoice, notify].iter().map(|&i| summary[i].2.as_str()).collect();
    assert_eq!(triggers, ["http", "queue", "invoke", "topic", "topic"]);
    assert_eq!(field(&records[printed], "message"), "enriched order 42: 3 items, 1200 cents");
    assert!(field(&records[accept], "message").starts_with("http POST /pipeline/orders: ok 202 in "), "{records:#?}");

    // The text form names each of them; another id finds none of them.
    let text = host.cli_ok(&["logs", "--id", id]);
    for function in ["accept", "enrich", "tax", "invoice", "notify"] {
        assert!(text.contains(&format!("order_pipeline/{function} v1")), "{text}");
    }
    assert!(log_records(&host, &["--id", "no-such-work"]).is_empty());
    // A request with no id of its own gets one, and its record (a refused order, here) is found by it.
    let reply = send("POST", &host.url("/pipeline/orders"), &[], br#"{"id": 1, "customer": "x", "items": []}"#);
    assert_eq!(reply.status, 400, "{}", reply.body);
    let fresh = reply.header("x-request-id").expect("an id").to_owned();
    assert_eq!(fresh.len(), 32, "{fresh}");
    poll_until("the refused order's record", Duration::from_secs(10), || {
        log_records(&host, &["--id", &fresh]).iter().any(|r| field(r, "message").contains(": client_error 400 in "))
    });
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmRSS value")
}

#[test]
fn a_guest_printing_100_mb_is_capped_in_the_log_and_the_host_stays_flat() {
    let (_dir, config) = config_file("[limits]\nmax_output_bytes = 262144\n");
    let host = Host::start(&["--config", config.to_str().expect("utf-8"), &component_arg("hostile")]);
    // Warm up: the component loaded, the log store's pages in use.
    assert_eq!(get(&host.url("/hostile/print?mb=1")).status, 200);
    let before = rss_kib(host.pid());
    let reply = get(&host.url("/hostile/print?mb=100"));
    assert_eq!((reply.status, reply.body.as_str()), (200, "printed 102400 lines"));
    let after = rss_kib(host.pid());
    let id = reply.header("x-request-id").expect("id").to_owned();
    // The invocation's own record is the last one it logs: once it is there, its output is too.
    poll_until("the print's invocation record", Duration::from_secs(10), || {
        log_records(&host, &["--id", &id, "--limit", "10000"]).iter().any(|r| field(r, "kind") == "invocation")
    });
    let records = log_records(&host, &["--id", &id, "--limit", "10000"]);
    let printed: Vec<&Value> = records.iter().filter(|r| field(r, "kind") == "stdout").collect();
    let bytes: usize = printed.iter().map(|r| field(r, "message").len()).sum();
    assert!(bytes <= 262_144, "{bytes} bytes of output kept");
    assert!(bytes > 200_000, "the output up to the cap is kept: {bytes} bytes");
    let notice = printed.last().map(|r| field(r, "message")).unwrap_or_default();
    assert_eq!(notice, "[edgefn: output truncated: the function printed over 262144 bytes]");
    assert!(
        after.saturating_sub(before) < 48 * 1024,
        "the host grew from {before} KiB to {after} KiB while a guest printed 100 MB"
    );
}

#[test]
fn secrets_are_masked_in_the_stored_log_and_levels_filter_it() {
    let secret = "s3cr3t-value-4242";
    let (_dir, config) = config_file(&format!(
        "[components.automation]\nsecrets = {{ API_SECRET = \"{secret}\" }}\nenv = {{ COLLECTOR_URL = \"http://127.0.0.1:9\" }}\n"
    ));
    let host = Host::start(&["--config", config.to_str().expect("utf-8"), &component_arg("automation")]);
    let reply = get(&host.url("/secret"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let id = reply.header("x-request-id").expect("id").to_owned();
    poll_until("the secret route's records", Duration::from_secs(10), || {
        log_records(&host, &["--id", &id]).iter().any(|r| field(r, "kind") == "invocation")
    });
    // Complete: the invocation record is written after everything the function printed.
    let records = log_records(&host, &["--id", &id]);
    let messages: Vec<&str> = records.iter().map(|r| field(r, "message")).collect();
    assert!(messages.contains(&"secret is [secret API_SECRET]"), "{messages:#?}");
    assert!(messages.contains(&"calling the API with secret [secret API_SECRET]"), "{messages:#?}");
    assert!(!messages.iter().any(|m| m.contains(secret)), "{messages:#?}");
    // stderr lines are errors unless they say otherwise; `--level error` keeps them and drops the rest.
    let errors = log_records(&host, &["--id", &id, "--level", "error"]);
    let error_messages: Vec<&str> = errors.iter().map(|r| field(r, "message")).collect();
    assert_eq!(error_messages, ["calling the API with secret [secret API_SECRET]"]);
    let bad = host.cli(&["logs", "--level", "loud"]);
    assert!(!bad.success && bad.stderr.contains("unknown level `loud`"), "{}", bad.stderr);
}

#[test]
fn logs_follow_streams_records_as_they_are_stored() {
    let host = Host::start(&[&component_arg("hello")]);
    let id = "followed-request-1";
    let mut follower = Command::new(env!("CARGO_BIN_EXE_edgefn"))
        .args(["logs", "--follow", "--id", id, "--admin", &host.admin, "--token", &host.token])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start edgefn logs --follow");
    let stdout = follower.stdout.take().expect("stdout");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // The follower is subscribed once its backlog (empty) is read; requests until one of them shows up.
    let mut seen = None;
    for _ in 0..50 {
        let reply = send("GET", &host.url("/hello/follower"), &[("x-request-id", id)], b"");
        assert_eq!(reply.status, 200);
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            seen = Some(line);
            break;
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    let line = seen.expect("the follower printed the request's record");
    assert!(
        line.contains(id) && line.contains("hello/hello v1") && line.contains("http GET /hello/follower: ok 200"),
        "{line}"
    );
}

#[test]
fn usage_counts_a_known_workload_and_its_throttles() {
    let (dir, config) = config_file(
        "[limits]\nqueue_timeout_ms = 100\n\n[components.hostile]\nmemory_mb = 64\n\n\
         [components.hostile.functions.hold]\nmax_concurrency = 1\n",
    );
    let host = Host::start(&["--config", config.to_str().expect("utf-8"), &component_arg("hostile")]);
    // N requests that sleep D ms, one at a time, at M = 64 MB.
    let (n, d) = (20u64, 50u64);
    for _ in 0..n {
        let reply = get(&host.url(&format!("/hostile/hold?mb=0&ms={d}")));
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // Four at once at max_concurrency 1: one runs (300 ms), three wait 100 ms and are throttled.
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let url = host.url("/hostile/hold?mb=0&ms=300");
            std::thread::spawn(move || get(&url).status)
        })
        .collect();
    let mut statuses: Vec<u16> = requests.into_iter().map(|r| r.join().expect("request")).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 429, 429, 429]);

    let out = host.cli_ok(&["usage", "hold", "--json"]);
    let usage: Value = serde_json::from_str(&out).expect("usage JSON");
    let total = &usage["total"];
    assert_eq!(total["requests"], n + 1, "{usage:#}");
    assert_eq!(total["throttled"], 3, "{usage:#}");
    assert_eq!(total["errors"], 0, "{usage:#}");
    // GB-s: memory x duration, each invocation rounded up to the millisecond: the sum of what each invocation's
    // record says it was billed, and each ran at least as long as it slept.
    let records = log_records(&host, &["hold", "--limit", "1000"]);
    let billed: Vec<u64> = records
        .iter()
        .filter(|r| field(r, "kind") == "invocation")
        .filter_map(|r| {
            let message = field(r, "message");
            let after = message.split_once("(billed ")?.1;
            after.split_once(" ms")?.0.parse().ok()
        })
        .collect();
    assert_eq!(billed.len() as u64, n + 1, "one billed record per invocation that ran: {records:#?}");
    assert_eq!(billed.iter().filter(|ms| **ms >= d).count() as u64, n + 1, "{billed:?}");
    assert!(billed.iter().any(|ms| *ms >= 300), "{billed:?}");
    let gb_s = total["gb_seconds"].as_f64().expect("gb_seconds");
    let expected_gb_s = 64.0 * billed.iter().sum::<u64>() as f64 / 1024.0 / 1000.0;
    assert!((gb_s - expected_gb_s).abs() < 1e-9, "{gb_s} GB-s, the records add up to {expected_gb_s}");
    let expected_cost = (n + 1) as f64 / 1e6 * 0.20 + gb_s * 0.000_016_666_7;
    assert!((total["cost_usd"].as_f64().expect("cost") - expected_cost).abs() < 1e-12, "{usage:#}");

    // A price table of one's own: per CPU ms only.
    let prices = dir.path().join("prices.toml");
    std::fs::write(&prices, "per_million_requests = 0\nper_gb_second = 0\nper_million_cpu_ms = 0.02\n")
        .expect("prices");
    let out = host.cli_ok(&["usage", "hold", "--json", "--prices", prices.to_str().expect("utf-8")]);
    let usage: Value = serde_json::from_str(&out).expect("usage JSON");
    let cpu_ms = usage["total"]["guest_cpu_ms"].as_f64().expect("cpu");
    assert!(cpu_ms > 0.0, "{usage:#}");
    assert!((usage["total"]["cost_usd"].as_f64().expect("cost") - cpu_ms / 1e6 * 0.02).abs() < 1e-15);
    let bad = host.cli(&["usage", "--prices", config.to_str().expect("utf-8")]);
    assert!(!bad.success && bad.stderr.contains("invalid price table"), "{}", bad.stderr);
}

#[test]
fn a_failed_delivery_is_replayed_on_a_fixed_version_and_an_oversized_input_says_it_was_not_kept() {
    let collector = Collector::start();
    let (_dir, config) =
        config_file("[logs]\nreplay_input_max_kb = 1\n\n[components.versioned]\nrecord_failures = true\n");
    let host = Host::start(&["--config", config.to_str().expect("utf-8")]);
    let wasm = component_arg("versioned");
    let env_collector = format!("COLLECTOR_URL={}", collector.url);
    let deploy = |tag: &str, extra: &[&str]| {
        let env_tag = format!("TAG={tag}");
        let mut args = vec!["deploy", wasm.as_str(), "--env", env_tag.as_str(), "--env", env_collector.as_str()];
        args.extend(["--allow-host", collector.authority.as_str()]);
        args.extend_from_slice(extra);
        host.cli_ok(&args)
    };
    // Version 1 has a bug: it cannot handle 13, and its /check route fails.
    deploy("v1", &["--env", "FAIL_ON=13"]);
    let reply = send("POST", &host.url("/versioned/enqueue/13"), &[("x-request-id", "enqueue-13")], b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    poll_until("the failed delivery to be recorded", Duration::from_secs(20), || {
        log_records(&host, &["--id", "enqueue-13"])
            .iter()
            .any(|r| field(r, "message").contains("recorded with its input"))
    });
    let records = log_records(&host, &["--id", "enqueue-13"]);
    let failed = records
        .iter()
        .find(|r| field(r, "kind") == "invocation" && field(r, "trigger") == "queue")
        .expect("the delivery's record");
    assert!(field(failed, "message").contains("v1 cannot handle 13"), "{records:#?}");
    // A request too large to keep fails too.
    let big = vec![b'b'; 2048];
    let reply = send("POST", &host.url("/versioned/check"), &[("x-request-id", "big-check")], &big);
    assert_eq!(reply.status, 500, "{}", reply.body);

    // Version 2 fixes it. Replaying the kept delivery there succeeds, and really runs.
    deploy("v2", &[]);
    let out = host.cli_ok(&["replay", "enqueue-13"]);
    assert!(out.contains("replayed on v2 as replay-") && out.contains(": ok"), "{out}");
    assert!(out.contains("queue replay of failure #"), "the replay's own log is printed: {out}");
    collector.wait_for("/work", Duration::from_secs(20), |bodies| {
        bodies.iter().any(|b| b["tag"] == "v2" && b["numbers"] == json!([13]))
    });
    // On the broken version it fails again, and says so with its exit status.
    let again = host.cli(&["replay", "enqueue-13", "--version", "1"]);
    assert!(!again.success, "{}", again.stdout);
    assert!(
        again.stdout.contains("v1 cannot handle 13") && again.stderr.contains("the replay failed too"),
        "{again:?}"
    );
    // The oversized request was recorded without its input; its replay says why it cannot run.
    poll_until("the big request's failure", Duration::from_secs(10), || {
        log_records(&host, &["--id", "big-check"])
            .iter()
            .any(|r| field(r, "message").contains("recorded without its input"))
    });
    let refused = host.cli(&["replay", "big-check"]);
    assert!(!refused.success, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("it was 2048 bytes, over the cap of 1024 bytes (logs.replay_input_max_kb)"),
        "{}",
        refused.stderr
    );
    // Deploys and loads are in the log too, under the component.
    let events: Vec<String> = log_records(&host, &["versioned", "--limit", "10000"])
        .iter()
        .filter(|r| field(r, "kind") == "host")
        .map(|r| field(r, "message").to_owned())
        .collect();
    assert!(events.iter().any(|m| m.starts_with("deployed v1 (compiled in ")), "{events:#?}");
    assert!(events.iter().any(|m| m.starts_with("deployed v2 (")), "{events:#?}");
    // A version that replaces a live one is loaded before the switch; the first one is kept loaded at its deploy
    // (the loader has room), so no request of v1 was a cold start.
    assert!(events.iter().any(|m| m == "loaded v1 at deploy: its first request is no cold start"), "{events:#?}");
    assert!(!events.iter().any(|m| m.starts_with("loaded v1 for versioned/")), "{events:#?}");
    let unknown = host.cli(&["replay", "no-such-failure"]);
    assert!(
        !unknown.success && unknown.stderr.contains("404: no failure `no-such-failure` is kept"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn metrics_are_valid_prometheus_text_that_counts_what_ran() {
    // Only `hello`: a component with every-second crons would hold instance slots at the moment of the scrape,
    // and `edgefn_instances_in_use` below is asserted on an idle host.
    let host = Host::start(&[&component_arg("hello")]);
    for _ in 0..3 {
        assert_eq!(get(&host.url("/hello/metrics")).status, 200);
    }
    let reply = host.admin("POST", "/v1/queues/metrics-probe/messages", Some(json!({ "body": 1 })));
    assert_eq!(reply.status, 201, "{}", reply.body);
    let scrape = || {
        let reply = crate::support::send(
            "GET",
            &format!("{}/metrics", host.admin),
            &[("authorization", &format!("Bearer {}", host.token))],
            b"",
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body
    };
    // An invocation is counted, and its instance given back, just after its response is sent: the client can read
    // the third answer a moment before the host has counted it.
    let mut text = String::new();
    poll_until("the three requests counted and their instances given back", Duration::from_secs(10), || {
        text = scrape();
        text.contains(r#"edgefn_invocations_total{function="hello/hello",trigger="http",outcome="ok"} 3"#)
            && text.lines().any(|line| line == "edgefn_instances_in_use 0")
    });
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter().map(Ok)).expect("a valid exposition");
    let value = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
    };
    let hello = [("function", "hello/hello"), ("trigger", "http"), ("outcome", "ok")];
    assert_eq!(value("edgefn_invocations_total", &hello), 3.0);
    // hello was kept loaded at its deploy: none of its requests was a cold start (the scrape above is complete:
    // it counts all three).
    assert!(!text.contains(r#"edgefn_cold_starts_total{function="hello/hello"}"#), "{text}");
    assert_eq!(value("edgefn_queue_messages", &[("queue", "metrics-probe"), ("state", "ready")]), 1.0);
    assert_eq!(value("edgefn_queue_dead_letters", &[("queue", "metrics-probe")]), 0.0);
    assert_eq!(value("edgefn_instances_in_use", &[]), 0.0);
    assert!(value("edgefn_instances_max", &[]) >= 1.0);
    let histogram = scrape
        .samples
        .iter()
        .find(|s| s.metric == "edgefn_invocation_duration_seconds" && s.labels.get("function") == Some("hello/hello"))
        .expect("a duration histogram");
    match &histogram.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let infinite = buckets.iter().find(|b| b.less_than.is_infinite()).expect("+Inf bucket");
            assert_eq!(infinite.count, 3.0);
        }
        other => panic!("not a histogram: {other:?}"),
    }
    // Without the token, nothing.
    assert_eq!(get(&format!("{}/metrics", host.admin)).status, 401);
}

/// The headless browser the browser tests drive: Debian's `chromium` (`bash tests/run.sh` installs it).
pub(crate) fn chromium(test: &str) -> Option<std::path::PathBuf> {
    crate::support::tools::require(crate::support::Tool::Chromium, test, || {
        ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| crate::support::which(name))
    })
}

#[test]
fn the_dashboard_signs_in_shows_numbers_that_move_and_redrives_a_dead_letter() {
    use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
    use headless_chrome::{Browser, LaunchOptions};
    let Some(chromium) = chromium("the_dashboard_signs_in_shows_numbers_that_move_and_redrives_a_dead_letter") else {
        return;
    };
    let host = Host::start(&[&component_arg("hello"), &component_arg("automation")]);
    // A message that dead-letters (the poison consumer always fails), and some traffic.
    let reply = host.admin("POST", "/v1/queues/poison/messages", Some(json!({ "body": { "poison": true } })));
    assert_eq!(reply.status, 201, "{}", reply.body);
    for _ in 0..3 {
        assert_eq!(get(&host.url("/hello/dashboard")).status, 200);
    }
    poll_until("the poison message to be dead-lettered", Duration::from_secs(20), || {
        host.admin("GET", "/v1/queues/poison/dead-letters", None).json()["dead_letters"]
            .as_array()
            .is_some_and(|d| d.len() == 1)
    });

    let options = LaunchOptions::default_builder()
        .path(Some(chromium))
        .sandbox(false)
        .window_size(Some((1400, 1300)))
        .build()
        .expect("launch options");
    let browser = Browser::new(options).expect("start chromium");
    let tab = browser.new_tab().expect("a tab");
    let dashboard = format!("{}/dashboard", host.admin);
    tab.navigate_to(&dashboard).expect("navigate").wait_until_navigated().expect("loaded");
    assert!(
        tab.get_url().ends_with("/dashboard/login"),
        "not signed in: sent to the sign-in form, not {}",
        tab.get_url()
    );
    // A wrong token is refused.
    tab.wait_for_element("#token").expect("token field").click().expect("focus");
    tab.type_str("not-the-token").expect("type");
    tab.wait_for_element("#sign-in").expect("button").click().expect("submit");
    let refused = tab.wait_for_element("#login-error").expect("an error").get_inner_text().expect("text");
    assert_eq!(refused, "That is not this host's admin token.");
    // The right one signs in.
    tab.wait_for_element("#token").expect("token field").click().expect("focus");
    tab.type_str(&host.token).expect("type");
    tab.wait_for_element("#sign-in").expect("button").click().expect("submit");
    tab.wait_for_element("#functions").expect("the dashboard");
    assert!(tab.get_url().ends_with("/dashboard"), "{}", tab.get_url());
    let cookies = tab.get_cookies().expect("cookies");
    let session = cookies.iter().find(|c| c.name == "edgefn_session").expect("a session cookie");
    assert!(session.http_only, "the session cookie is HttpOnly");
    assert!(!tab.get_content().expect("html").contains(&host.token), "the page never shows the admin token");

    let invocations = |tab: &headless_chrome::Tab| -> u64 {
        let cell = tab.wait_for_element("tr[data-function='hello/hello'] td.invocations").expect("hello's row");
        cell.get_inner_text().expect("text").trim().parse().expect("a number")
    };
    assert_eq!(invocations(&tab), 3);
    for _ in 0..4 {
        assert_eq!(get(&host.url("/hello/dashboard")).status, 200);
    }
    tab.reload(true, None).expect("reload").wait_until_navigated().expect("reloaded");
    assert_eq!(invocations(&tab), 7, "the numbers move after requests");
    let chart = tab.wait_for_element("tr[data-function='hello/hello'] svg rect[fill='#8b95a7']").expect("a bar");
    drop(chart);

    // Search the log by a request's correlation id.
    let traced = send("GET", &host.url("/hello/traced"), &[("x-request-id", "dashboard-trace-1")], b"");
    assert_eq!(traced.status, 200);
    tab.wait_for_element("#log-id").expect("search field").click().expect("focus");
    tab.type_str("dashboard-trace-1").expect("type");
    tab.wait_for_element("#search").expect("button").click().expect("search");
    tab.wait_until_navigated().expect("searched");
    let logs = tab.wait_for_element("#logs").expect("logs").get_inner_text().expect("text");
    assert!(logs.contains("http GET /hello/traced: ok 200"), "{logs}");

    // A redrive without this session's CSRF token is refused, even with the session cookie.
    let cookie = format!("edgefn_session={}", session.value);
    let forged = send(
        "POST",
        &format!("{dashboard}/queues/poison/redrive"),
        &[("cookie", &cookie), ("content-type", "application/x-www-form-urlencoded")],
        b"csrf=forged",
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(
        host.admin("GET", "/v1/queues/poison/dead-letters", None).json()["dead_letters"].as_array().map(Vec::len),
        Some(1)
    );

    // The real button re-drives the dead letter.
    tab.navigate_to(&dashboard).expect("navigate").wait_until_navigated().expect("loaded");
    let dead =
        tab.wait_for_element("tr[data-queue='poison'] td.dead").expect("poison's row").get_inner_text().expect("text");
    assert_eq!(dead.trim(), "1");
    tab.wait_for_element("tr[data-queue='poison'] button.redrive").expect("a redrive button").click().expect("redrive");
    let notice = tab.wait_for_element("#notice").expect("a notice").get_inner_text().expect("text");
    assert_eq!(notice, "Re-drove 1 dead letters of poison.");
    // Re-driven, the message is delivered again (and, being poison, fails again).
    poll_until("the re-driven message's deliveries", Duration::from_secs(20), || {
        log_records(&host, &["automation/poison", "--limit", "1000"])
            .iter()
            .filter(|r| field(r, "kind") == "invocation")
            .count()
            >= 4
    });

    let screenshot = tab.capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true).expect("screenshot");
    let artifacts = crate::support::workspace().join("target").join("test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    std::fs::write(artifacts.join("dashboard.png"), &screenshot).expect("save the screenshot");
    assert!(screenshot.starts_with(b"\x89PNG"), "a PNG");
}

#[test]
fn an_alarm_notifies_once_on_breach_and_once_on_recovery() {
    let collector = Collector::start();
    // Two markers, evaluated after `panics` in every pass (rules go in order, each notification posted before the
    // next rule's): `canary` breaches at 2 errors, `later` at 3 calls of `/ok`. When a marker's notification has
    // arrived, so would have any of `panics` from the same pass: what `/alarms` holds then is complete.
    let (_dir, config) = config_file(&format!(
        "[[alarms]]\nname = \"panics\"\nmetric = \"errors\"\nfunction = \"misbehave/panic\"\nthreshold = 2\n\
             window_s = 3\nnotify_url = \"{url}/alarms\"\nnotify_queue = \"alarm-events\"\n\
         [[alarms]]\nname = \"canary\"\nmetric = \"errors\"\nfunction = \"misbehave/panic\"\nthreshold = 1\n\
             window_s = 3\nnotify_url = \"{url}/canary\"\n\
         [[alarms]]\nname = \"later\"\nmetric = \"invocations\"\nfunction = \"misbehave/ok\"\nthreshold = 2\n\
             window_s = 3\nnotify_url = \"{url}/later\"\n",
        url = collector.url
    ));
    let host = Host::start(&["--config", config.to_str().expect("utf-8"), &component_arg("misbehave")]);
    // Two errors are not over the threshold; other functions do not count.
    for path in ["/panic", "/panic", "/ok", "/ok"] {
        get(&host.url(path));
    }
    collector.wait_for("/canary", Duration::from_secs(10), |b| !b.is_empty());
    assert!(collector.bodies("/alarms").is_empty(), "no breach at 2 errors: {:?}", collector.bodies("/alarms"));
    // A third within the window: one breach, however many more errors come while it lasts.
    for _ in 0..3 {
        assert_eq!(get(&host.url("/panic")).status, 500);
    }
    let breach = collector.wait_for("/alarms", Duration::from_secs(10), |b| !b.is_empty());
    assert_eq!(breach[0]["alarm"], "panics");
    assert_eq!(breach[0]["state"], "breach");
    assert_eq!(breach[0]["metric"], "errors");
    assert!(breach[0]["value"].as_f64().expect("value") > 2.0, "{breach:?}");
    // Quiet for the window: recovered, once.
    let both = collector.wait_for("/alarms", Duration::from_secs(15), |b| b.len() >= 2);
    assert_eq!(both[1]["state"], "recovered", "{both:?}");
    // A later pass (the one `later` breaches in) sends nothing more for `panics`.
    for _ in 0..3 {
        assert_eq!(get(&host.url("/ok")).status, 200);
    }
    collector.wait_for("/later", Duration::from_secs(10), |b| !b.is_empty());
    assert_eq!(collector.bodies("/alarms").len(), 2, "exactly one breach and one recovery");
    // The same two notifications went to the queue, and the log says so.
    let queues = host.admin("GET", "/v1/queues", None).json();
    let events = queues["queues"].as_array().expect("queues").iter().find(|q| q["queue"] == "alarm-events").cloned();
    assert_eq!(events.map(|q| q["ready"].clone()), Some(json!(2)), "{queues}");
    let logs = log_records(&host, &["--level", "warn", "--limit", "1000"]);
    assert!(logs.iter().any(|r| field(r, "message").starts_with("alarm `panics` in breach")), "{logs:#?}");
    // A rule that cannot work is refused at start, naming it.
    std::fs::write(
        &config,
        "[[alarms]]\nmetric = \"dead_letters\"\nthreshold = 1\nnotify_url = \"http://127.0.0.1:9/\"\n",
    )
    .expect("write config");
    let refused = Host::try_start(&["--config", config.to_str().expect("utf-8")], &[]).err().expect("refused");
    assert!(refused.1.contains("[[alarms]] number 1: metric DeadLetters needs `queue`"), "{}", refused.1);
}
