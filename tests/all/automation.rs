//! End to end: cron, queues, topics, invoke, outbound HTTP and secrets, on real hosts with a real SQLite file.
//! The functions under test (tests/guests/automation) report what they ran to a collector over real HTTP.

use crate::support::{
    Abi, Collector, Host, component_arg, component_arg_for, for_both_abis, get, poll_until, post, queue_stats,
    wait_for_dead_letters,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

const SECRET: &str = "s3cr3t-value-4242";

/// A host config for the automation component reporting to `collector`.
fn config(collector: &Collector, dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("edgefn.toml");
    let text = format!(
        "[limits]\ntimeout_ms = 10000\n\n[components.automation]\nenv = {{ COLLECTOR_URL = \"{}\" }}\n\
         secrets = {{ API_SECRET = \"{SECRET}\" }}\nallowed_outbound_hosts = [\"{}\"]\n",
        collector.url, collector.authority
    );
    std::fs::write(&path, text).expect("write config");
    path
}

struct Shared {
    host: Host,
    collector: Collector,
    _dir: tempfile::TempDir,
}

/// One host with the automation component built for `abi`, shared by the tests that need no host of their own: the
/// WASI 0.3 build runs its (sync) cron, queue, topic and invoke functions through the async handler export.
fn shared_for(abi: Abi) -> &'static Shared {
    static SHARED: [OnceLock<Shared>; 2] = [OnceLock::new(), OnceLock::new()];
    SHARED[abi as usize].get_or_init(|| {
        let collector = Collector::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config(&collector, dir.path());
        let automation = component_arg_for(abi, "automation");
        let host = Host::start(&["--config", config.to_str().expect("utf-8"), &automation]);
        Shared { host, collector, _dir: dir }
    })
}

/// The WASI 0.2 shared host.
fn shared() -> &'static Shared {
    shared_for(Abi::P2)
}

fn runs(host: &Host, function: &str) -> Vec<Value> {
    let reply = host.admin("GET", &format!("/v1/functions/{function}/runs?limit=200"), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["runs"].as_array().expect("runs").clone()
}

fn wait_for_runs(host: &Host, function: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let runs = runs(host, function);
        if done(&runs) {
            return runs;
        }
        assert!(std::time::Instant::now() < deadline, "timed out; runs of {function}: {runs:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count(runs: &[Value], key: &str, value: &str) -> usize {
    runs.iter().filter(|r| r[key] == value).count()
}

/// An automation host on a data dir that outlives it, to kill and start again on the same state.
struct Restartable {
    collector: Collector,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl Restartable {
    fn new() -> Self {
        let collector = Collector::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config(&collector, dir.path());
        Self { collector, dir, config }
    }

    fn start(&self) -> Host {
        let args = ["--config", self.config.to_str().expect("utf-8"), &component_arg("automation")];
        Host::start_in(&self.dir.path().join("data"), &args)
    }
}

fn numbers(bodies: &[Value]) -> BTreeSet<u64> {
    bodies.iter().flat_map(|b| b["done"].as_array().cloned().unwrap_or_default()).filter_map(|n| n.as_u64()).collect()
}

for_both_abis! {
    fn cron_fires_every_second_and_records_its_runs(abi) {
        let Shared { host, collector, .. } = shared_for(abi);
        let reports = collector.wait_for("/every_second", Duration::from_secs(30), |b| b.len() >= 2);
        assert!(reports.iter().all(|r| r["reason"] == "schedule" && r["attempt"] == 1), "{reports:?}");
        let runs = wait_for_runs(host, "every_second", |r| count(r, "outcome", "succeeded") >= 2);
        for run in runs.iter().filter(|r| r["outcome"] == "succeeded") {
            assert_eq!(run["scheduled_at"].as_i64().expect("scheduled_at") % 1000, 0, "a per-second tick: {run}");
            assert!(run["finished_at"].as_i64() >= run["started_at"].as_i64(), "{run}");
        }
    }
}

for_both_abis! {
    fn a_failing_cron_run_is_retried_then_recorded_as_failed(abi) {
        let Shared { host, .. } = shared_for(abi);
        let runs = wait_for_runs(host, "always_fails", |r| count(r, "outcome", "failed") >= 1);
        let failed = runs.iter().find(|r| r["outcome"] == "failed").expect("a failed run");
        assert_eq!(failed["attempt"], 3, "retries = 2 means three attempts: {failed}");
        assert!(failed["error"].as_str().expect("error").contains("failing on purpose"), "{failed}");
        let tick = &failed["scheduled_at"];
        let attempts: Vec<(&Value, &Value)> =
            runs.iter().filter(|r| &r["scheduled_at"] == tick).map(|r| (&r["attempt"], &r["outcome"])).collect();
        assert_eq!(attempts.len(), 3, "{attempts:?}");
        assert_eq!(
            count(&runs.iter().filter(|r| &r["scheduled_at"] == tick).cloned().collect::<Vec<_>>(), "outcome", "retrying"),
            2
        );
        assert!(host.wait_for_log("cron run failed after its last retry").contains("always_fails"));
    }
}

#[test]
fn a_cron_run_still_going_is_not_doubled() {
    let Shared { host, .. } = shared();
    let runs =
        wait_for_runs(host, "slow", |r| count(r, "outcome", "skipped") >= 1 && count(r, "outcome", "succeeded") >= 1);
    let skipped = runs.iter().find(|r| r["outcome"] == "skipped").expect("skipped");
    assert!(skipped["error"].as_str().expect("reason").contains("still going"), "{skipped}");
    // Never two runs at once: every started run finished before the next one started.
    let mut started: Vec<(i64, i64)> = runs
        .iter()
        .filter(|r| r["outcome"] == "succeeded")
        .map(|r| (r["started_at"].as_i64().expect("start"), r["finished_at"].as_i64().expect("end")))
        .collect();
    started.sort();
    for pair in started.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlapping runs: {pair:?}");
    }
}

#[test]
fn a_cron_function_fires_by_hand_through_the_admin_api_and_the_cli() {
    let Shared { host, collector, .. } = shared();
    let reply = host.admin("POST", "/v1/functions/nightly/invoke?cron", None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["outcome"], "succeeded", "{}", reply.body);
    assert_eq!(reply.json()["reason"], "manual");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_edgefn"))
        .args(["invoke", "nightly", "--cron", "--admin", &host.admin, "--token", &host.token])
        .output()
        .expect("run edgefn invoke");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let reports = collector.wait_for("/nightly", Duration::from_secs(10), |b| b.len() >= 2);
    assert_eq!(reports[0], json!({ "reason": "manual", "expression": "0 0 3 * * *", "tz": "Europe/Berlin" }));
    assert_eq!(count(&runs(host, "nightly"), "reason", "manual"), 2);
    // An unknown function is a 404 that names it.
    let reply = host.admin("POST", "/v1/functions/nope/invoke?cron", None);
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert!(reply.body.contains("`nope`"), "{}", reply.body);
}

#[test]
fn missed_ticks_follow_the_catch_up_policy_after_a_restart() {
    let _turn = crate::support::one_at_a_time();
    let restartable = Restartable::new();
    let host = restartable.start();
    wait_for_runs(&host, "every_second", |r| count(r, "outcome", "succeeded") >= 1);
    host.kill();
    // Down for at least three ticks.
    std::thread::sleep(Duration::from_millis(3_500));
    let host = restartable.start();
    let one = wait_for_runs(&host, "every_second", |r| count(r, "reason", "catch-up") >= 1);
    let all = wait_for_runs(&host, "every_second_all", |r| count(r, "reason", "catch-up") >= 2);
    // A job catches up when it starts, before its first scheduled tick: once each has run a tick on schedule since
    // the restart (more than it had before), its catch-up is over, and the counts below are final.
    for job in ["every_second", "every_second_all", "every_second_skip"] {
        let before = count(&runs(&host, job), "reason", "schedule");
        wait_for_runs(&host, job, |r| count(r, "reason", "schedule") > before);
    }
    assert_eq!(count(&runs(&host, "every_second"), "reason", "catch-up"), 1, "catch_up = one: {one:#?}");
    assert_eq!(count(&runs(&host, "every_second_all"), "reason", "catch-up"), 2, "catch_up_limit = 2: {all:#?}");
    assert_eq!(count(&runs(&host, "every_second_skip"), "reason", "catch-up"), 0, "catch_up = skip");
}

#[test]
fn a_thousand_messages_with_random_failures_are_all_processed() {
    let Shared { host, collector, .. } = shared();
    let messages: Vec<Value> = (0..1000).map(|n| json!({ "body": { "n": n, "fail_percent": 30 } })).collect();
    let reply = host.admin("POST", "/v1/queues/flaky/messages", Some(json!({ "messages": messages })));
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.json()["ids"].as_array().expect("ids").len(), 1000);
    let expected: BTreeSet<u64> = (0..1000).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while numbers(&collector.bodies("/flaky")) != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "missing: {:?}",
            expected.difference(&numbers(&collector.bodies("/flaky"))).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nothing left behind, nothing dead-lettered, and the failures really happened.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = queue_stats(host, "flaky");
        if stats["ready"] == 0 && stats["in_flight"] == 0 && stats["delayed"] == 0 {
            assert_eq!(stats["dead"], 0, "{stats}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{stats}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs = host.wait_for_log("transient failure of the whole batch");
    assert!(logs.contains("transient failure of the whole batch"), "no batch failed: the test proves nothing");
}

for_both_abis! {
    fn a_poison_message_is_dead_lettered_after_max_retries_and_can_be_redriven(abi) {
        let Shared { host, collector, .. } = shared_for(abi);
        let reply = host.admin("POST", "/v1/queues/poison/messages", Some(json!({ "body": { "poison": true } })));
        assert_eq!(reply.status, 201, "{}", reply.body);
        // Ids are the backend's text (row numbers on SQLite).
        let id = reply.json()["ids"][0].as_str().expect("id").to_owned();
        let deliveries = collector.wait_for("/poison", Duration::from_secs(30), |b| b.len() >= 3);
        let attempts: Vec<&Value> = deliveries.iter().map(|d| &d["attempts"]).collect();
        assert_eq!(attempts, [1, 2, 3], "max_retries = 2: three deliveries");
        let letters = wait_for_dead_letters(host, "poison");
        assert_eq!(letters[0]["id"], id);
        assert_eq!(letters[0]["queue"], "poison-dlq");
        // The deliveries it failed, as the log counts them (not the dead-letter queue's own, which start over).
        assert_eq!(letters[0]["attempts"], 3, "{letters:?}");
        let said = format!("message {id} from poison was dead-lettered to poison-dlq after 3 attempts");
        poll_until("the log to say how many attempts the dead letter had", Duration::from_secs(10), || {
            host.cli_ok(&["logs", "automation/poison", "--limit", "1000"]).contains(&said)
        });
        let error = letters[0]["error"].as_str().expect("error");
        assert!(error.contains("this message is poison") && error.contains("max_retries = 2"), "{error}");
        assert_eq!(queue_stats(host, "poison")["dead"], 1);
        assert_eq!(queue_stats(host, "poison-dlq")["ready"], 1);

        let reply = host.admin("POST", "/v1/queues/poison/redrive", Some(json!({})));
        assert_eq!(reply.json()["redriven"], 1, "{}", reply.body);
        let deliveries = collector.wait_for("/poison", Duration::from_secs(30), |b| b.len() >= 4);
        assert_eq!(deliveries[3]["attempts"], 1, "a re-driven message starts over");
        assert_eq!(deliveries[3]["id"], id, "same message, same id");
    }
}

#[test]
fn priority_orders_delivery_and_delayed_messages_are_not_early() {
    let Shared { host, collector, .. } = shared();
    let priorities = [0, 5, 1, 9, 3];
    let messages: Vec<Value> = priorities.iter().map(|p| json!({ "body": { "p": p }, "priority": p })).collect();
    let reply = host.admin("POST", "/v1/queues/ordered/messages", Some(json!({ "messages": messages })));
    assert_eq!(reply.status, 201, "{}", reply.body);
    let received = collector.wait_for("/ordered", Duration::from_secs(20), |b| {
        b.iter().filter(|m| m["body"]["p"].is_number()).count() >= 5
    });
    let order: Vec<i64> = received.iter().filter_map(|m| m["body"]["p"].as_i64()).collect();
    assert_eq!(order, [9, 5, 3, 1, 0]);

    let reply = host.admin(
        "POST",
        "/v1/queues/ordered/messages",
        Some(json!({ "body": { "delayed": true }, "delay_ms": 1500 })),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let received =
        collector.wait_for("/ordered", Duration::from_secs(20), |b| b.iter().any(|m| m["body"]["delayed"] == true));
    let delayed = received.iter().find(|m| m["body"]["delayed"] == true).expect("delayed");
    let waited =
        delayed["received_at"].as_u64().expect("received") - delayed["enqueued_at"].as_u64().expect("enqueued");
    assert!(waited >= 1500, "delivered {waited} ms after it was sent, before its 1500 ms delay");
}

#[test]
fn an_oversize_message_is_refused_at_send_with_a_clear_error() {
    let Shared { host, .. } = shared();
    let big = "x".repeat(1_100_000);
    let reply = host.admin("POST", "/v1/queues/ordered/messages", Some(json!({ "body": big })));
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(reply.body.contains("queue `ordered`") && reply.body.contains("limit is 1048576 bytes"), "{}", reply.body);
    // From a function: its send returns the error.
    let reply = post(&host.url("/send-big"), "");
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(reply.json()["error"].as_str().expect("error").contains("limits.max_message_bytes"), "{}", reply.body);
}

for_both_abis! {
    fn a_topic_reaches_every_subscriber(abi) {
        let Shared { host, collector, .. } = shared_for(abi);
        let reply = post(&host.url("/publish"), r#"{"event":"from-http"}"#);
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["subscribers"], 2);
        let reply = host.admin("POST", "/v1/topics/events/messages", Some(json!({ "body": { "event": "from-admin" } })));
        assert_eq!(reply.json()["subscribers"], 2, "{}", reply.body);
        for path in ["/sub_a", "/sub_b"] {
            let bodies = collector.wait_for(path, Duration::from_secs(20), |b| {
                let events: Vec<&Value> = b.iter().flat_map(|x| x["bodies"].as_array().into_iter().flatten()).collect();
                events.iter().any(|e| e["event"] == "from-http") && events.iter().any(|e| e["event"] == "from-admin")
            });
            assert!(!bodies.is_empty());
        }
    }
}

for_both_abis! {
    fn invoke_calls_another_function_and_stops_a_cycle_at_the_depth_limit(abi) {
        let Shared { host, .. } = shared_for(abi);
        let reply = get(&host.url("/double/21"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["result"], 42);
        let reply = host.admin("POST", "/v1/functions/double/invoke", Some(json!(5)));
        assert_eq!(reply.json()["result"], 10, "{}", reply.body);
        let reply = host.admin("POST", "/v1/functions/recurse/invoke", Some(json!(0)));
        assert_eq!(reply.status, 502, "{}", reply.body);
        assert!(reply.body.contains("invoke depth limit (8) reached"), "{}", reply.body);
    }
}

for_both_abis! {
    fn outbound_http_is_allowed_only_to_listed_hosts(abi) {
        let Shared { host, collector, .. } = shared_for(abi);
        let allowed = get(&host.url(&format!("/fetch?url={}/ping", collector.url)));
        assert_eq!(allowed.status, 200, "{}", allowed.body);
        assert_eq!(allowed.json()["status"], 200);
        let port = collector.authority.rsplit(':').next().expect("port");
        let denied = get(&host.url(&format!("/fetch?url=http://localhost:{port}/ping")));
        assert_eq!(denied.status, 502, "{}", denied.body);
        assert!(denied.json()["error"].as_str().expect("error").contains("denied"), "{}", denied.body);
        assert!(host.wait_for_log("outbound request denied").contains("host=localhost"));
    }
}

for_both_abis! {
    fn secrets_reach_the_function_but_not_the_logs(abi) {
        let Shared { host, .. } = shared_for(abi);
        let reply = get(&host.url("/secret"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["length"], SECRET.len());
        let logs = host.wait_for_log("calling the API with secret [secret API_SECRET]");
        assert!(logs.contains("calling the API with secret [secret API_SECRET]"), "{logs}");
        assert!(!logs.contains(SECRET), "the secret leaked into the host's logs");
        assert!(!host.banner.contains(SECRET));
    }
}

#[test]
fn a_host_killed_mid_batch_loses_no_message() {
    let restartable = Restartable::new();
    let (collector, host) = (&restartable.collector, restartable.start());
    let messages: Vec<Value> = (0..100).map(|n| json!({ "body": { "n": n } })).collect();
    let reply = host.admin("POST", "/v1/queues/durable/messages", Some(json!({ "messages": messages })));
    assert_eq!(reply.status, 201, "{}", reply.body);
    collector.wait_for("/durable", Duration::from_secs(60), |b| numbers(b).len() >= 20);
    // SIGKILL while a batch is in flight (it said it started, and it takes a second): its lease held, its outcome
    // not recorded.
    collector.wait_for("/durable-started", Duration::from_secs(60), |started| {
        started.len() > collector.bodies("/durable").len()
    });
    host.kill();
    let before = numbers(&collector.bodies("/durable")).len();
    assert!(before < 100, "everything was processed before the kill: the test proves nothing");
    let host = restartable.start();
    let expected: BTreeSet<u64> = (0..100).collect();
    collector.wait_for("/durable", Duration::from_secs(120), |b| numbers(b) == expected);
    assert!(host.wait_for_log("redelivering messages that were in flight").contains("messages="));
}

#[test]
fn the_examples_run_end_to_end() {
    let collector = Collector::start();
    // A port nothing listens on: the uptime check fails, and the alert must reach the collector.
    let down = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("edgefn.toml");
    std::fs::write(
        &config,
        format!(
            "[components.uptime-monitor]\nenv = {{ CHECK_URL = \"http://{down}/health\", ALERT_WEBHOOK_URL = \"{url}/alerts\" }}\n\
             allowed_outbound_hosts = [\"{down}\", \"{authority}\"]\n\n\
             [components.order-pipeline]\nenv = {{ INVOICE_WEBHOOK_URL = \"{url}/invoices\", NOTIFY_WEBHOOK_URL = \"{url}/notify\" }}\n\
             allowed_outbound_hosts = [\"{authority}\"]\n",
            url = collector.url,
            authority = collector.authority,
        ),
    )
    .expect("write config");
    let host = Host::start(&[
        "--config",
        config.to_str().expect("utf-8"),
        &component_arg("uptime_monitor"),
        &component_arg("order_pipeline"),
    ]);

    // order-pipeline: accept -> orders -> enrich -> order.created -> invoice (+ tax via invoke) and notify.
    let order = json!({ "id": 7, "customer": "ada", "country": "DE",
        "items": [{ "sku": "tea", "quantity": 2, "unit_price_cents": 250 }] });
    let reply = post(&host.url("/pipeline/orders"), &order.to_string());
    assert_eq!(reply.status, 202, "{}", reply.body);
    let invoices = collector.wait_for("/invoices", Duration::from_secs(30), |b| !b.is_empty());
    assert_eq!(
        invoices[0],
        json!({ "invoice_for": 7, "customer": "ada", "subtotal_cents": 500, "tax_cents": 95, "total_cents": 595 })
    );
    let notes = collector.wait_for("/notify", Duration::from_secs(30), |b| !b.is_empty());
    assert_eq!(notes[0]["order"], 7);
    // A bad order is dead-lettered by `enrich`, with the reason.
    let bad =
        json!({ "id": 8, "customer": "bob", "items": [{ "sku": "mug", "quantity": 0, "unit_price_cents": 900 }] });
    assert_eq!(post(&host.url("/pipeline/orders"), &bad.to_string()).status, 202);
    let letters = wait_for_dead_letters(&host, "orders");
    assert_eq!(letters[0]["queue"], "orders-dlq");
    assert!(letters[0]["error"].as_str().expect("error").contains("`mug` has quantity 0"), "{letters:?}");

    // uptime-monitor: the check fails, the alert goes through the queue to the webhook.
    let reply = host.admin("POST", "/v1/functions/check/invoke?cron", None);
    assert_eq!(reply.json()["outcome"], "succeeded", "{}", reply.body);
    let alerts = collector.wait_for("/alerts", Duration::from_secs(30), |b| !b.is_empty());
    let text = alerts[0]["text"].as_str().expect("text");
    assert!(text.starts_with(&format!("http://{down}/health is DOWN")), "{text}");
}
