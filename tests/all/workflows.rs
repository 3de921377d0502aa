//! Durable workflows (issue 22) on a real host with a real SQLite file: the workflow-probe's order saga takes each
//! step once (a retried one twice), sleeps, waits for a signal, survives a SIGKILL of its host, times out and
//! compensates, keeps a signal sent before its wait, is started and signalled by the component's own functions,
//! stays on the version it started on across a redeploy (moved to a version whose steps differ, it fails as
//! non-deterministic, naming both, and a retry on its own version finishes it), and holds its component's undeploy
//! back unless forced; 200 runs finish across random kills with their side effects at most once more per kill, and
//! 1,000 sleeping runs hold no instance and all wake after a restart.

use crate::support::{Host, component_arg, post, send};
use serde_json::{Value, json};
use std::time::Duration;

const CONFIG: &str = "[components.workflow_probe]\nkey_value_stores = [\"default\"]\n";

fn config(dir: &std::path::Path) -> String {
    let path = dir.join("edgefn.toml");
    std::fs::write(&path, CONFIG).expect("write config");
    path.to_str().expect("utf-8").to_owned()
}

fn run(host: &Host, id: &str) -> Value {
    let reply = host.admin("GET", &format!("/v1/workflows/runs/{id}"), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

/// Waits until run `id` is in `state`; fails naming the run as it stands when it never gets there.
pub(crate) fn wait_for_state(host: &Host, id: &str, state: &str) -> Value {
    let mut last = Value::Null;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        // (A run may not be there yet: a child run starts when its parent gets to it.)
        let reply = host.admin("GET", &format!("/v1/workflows/runs/{id}"), None);
        assert!(matches!(reply.status, 200 | 404), "{}: {}", reply.status, reply.body);
        last = if reply.status == 200 { reply.json() } else { Value::Null };
        if last["state"] == state {
            return last;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("run {id} never got to {state}; it is {last:#}\n{}", host.logs());
}

/// How many attempts of `step` of order `order` ran, as the guest counted them.
fn attempts(host: &Host, order: &str, step: &str) -> u64 {
    let reply = host.admin("GET", &format!("/v1/kv/default/keys/count:{order}:{step}"), None);
    match reply.status {
        404 => 0,
        200 => reply.json()["value"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("a count: {}", reply.body)),
        other => panic!("{other}: {}", reply.body),
    }
}

fn start(host: &Host, id: &str, input: Value) -> String {
    host.cli_ok(&["workflows", "start", "checkout", &input.to_string(), "--id", id])
}

#[test]
fn a_run_takes_each_step_once_retries_sleeps_waits_for_its_signal_and_survives_a_kill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let config = config(dir.path());
    let wasm = component_arg("workflow_probe");
    let host = Host::start_in(&data, &["--config", &config, &wasm]);
    let started = start(&host, "order-1", json!({ "id": "order-1", "sleep_ms": 1500 }));
    assert!(started.contains("started run order-1 of workflow_probe/checkout"), "{started}");
    let again = start(&host, "order-1", json!({ "id": "order-1", "sleep_ms": 1 }));
    assert!(again.contains("already started run order-1"), "the same id twice starts one run: {again}");

    // It charges, retries the reservation once, then sleeps: kill the host in the sleep.
    let sleeping = wait_for_state(&host, "order-1", "sleeping");
    assert_eq!(sleeping["input"], json!({ "id": "order-1", "sleep_ms": 1500 }));
    host.kill();
    let host = Host::start_in(&data, &["--config", &config, &wasm]);
    // After the restart the sleep ends and the run waits for its approval, holding no instance.
    wait_for_state(&host, "order-1", "waiting");
    assert_eq!(host.instances_in_use(), 0, "a waiting run holds no instance");
    let signalled = host.cli_ok(&["workflows", "signal", "order-1", "approved", "true"]);
    assert!(signalled.contains("event approved to run order-1: delivered"), "{signalled}");
    let done = wait_for_state(&host, "order-1", "done");
    assert_eq!(done["result"]["reserved_on_attempt"], json!(2));
    assert_eq!(done["result"]["charged"], json!("charge for order-1 (order-1:charge:1)"));
    assert_eq!(
        ["charge", "reserve", "refund", "ship"].map(|step| attempts(&host, "order-1", step)),
        [1, 2, 0, 1],
        "each step ran once, the reservation twice (its first attempt fails on purpose), across the restart"
    );

    // The timeline says what happened, in order.
    let shown = host.cli_ok(&["workflows", "show", "order-1"]);
    let expected = [
        "run order-1 of workflow_probe/checkout on v1: done",
        "step charge: ok after 1 attempt(s)",
        "step reserve attempt 1 failed: the stock service is down (500)",
        "step reserve: ok after 2 attempt(s): 2",
        "sleep until",
        "event approved: true",
        "step ship: ok after 1 attempt(s): \"shipped\"",
        "result: {",
    ];
    let mut rest = shown.as_str();
    for line in expected {
        let at = rest.find(line).unwrap_or_else(|| panic!("`{line}` (in this order) is not in:\n{shown}"));
        rest = &rest[at + line.len()..];
    }
    let listed = host.cli_ok(&["workflows", "list", "--state", "done"]);
    assert!(listed.lines().any(|l| l.starts_with("order-1") && l.contains("done")), "{listed}");
    // The run's resumes are logged under its id, as workflow invocations of its function (at least the three
    // after the restart: the end of the sleep, the shipment, the result).
    let records = host.work_log("order-1");
    let resumes = records
        .iter()
        .filter(|r| {
            r["kind"] == "invocation" && r["trigger"] == "workflow" && r["function"] == "workflow_probe/checkout"
        })
        .count();
    assert!(resumes >= 3, "{records:#?}");
    // An ended run takes no more signals.
    let late = host.admin("POST", "/v1/workflows/runs/order-1/signals/approved", Some(json!(true)));
    assert_eq!(late.status, 409, "{}", late.body);

    // The dashboard lists the run and has a page with its timeline, behind its sign-in.
    let page = format!("{}/dashboard/workflows/order-1", host.admin);
    let (status, location, _) = unredirected("GET", &page, &[], "");
    assert_eq!((status, location.as_deref()), (303, Some("/dashboard/login")), "no session, no page");
    let form = format!("token={}", host.token);
    let login = format!("{}/dashboard/login", host.admin);
    let (_, _, cookie) = unredirected("POST", &login, &[("content-type", "application/x-www-form-urlencoded")], &form);
    let cookie = cookie.expect("a session cookie");
    let overview = send("GET", &format!("{}/dashboard", host.admin), &[("cookie", &cookie)], b"");
    assert!(overview.body.contains(r#"<tr data-run="order-1">"#), "{}", overview.body);
    let timeline = send("GET", &page, &[("cookie", &cookie)], b"");
    assert_eq!(timeline.status, 200, "{}", timeline.body);
    let expected = [
        "Run <code>order-1</code> of workflow_probe/checkout on v1",
        "step charge: ok after 1 attempt(s)",
        "step reserve attempt 1 failed: the stock service is down (500)",
        "step reserve: ok after 2 attempt(s): 2",
        "event approved: true",
        "step ship: ok after 1 attempt(s)",
    ];
    let mut rest = timeline.body.as_str();
    for line in expected {
        let at = rest.find(line).unwrap_or_else(|| panic!("`{line}` (in this order) is not in:\n{}", timeline.body));
        rest = &rest[at + line.len()..];
    }
}

#[test]
fn a_wait_times_out_and_compensates_and_a_signal_sent_early_is_kept_for_its_wait() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path());
    let host = Host::start(&["--config", &config, &component_arg("workflow_probe")]);
    // No approval within 300 ms: refunded, and the run fails with the code's own error.
    start(&host, "late", json!({ "id": "late", "approve_within_ms": 300 }));
    let failed = wait_for_state(&host, "late", "failed");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("no approval in time: refunded charge for late"), "{failed:#}");
    assert!(error.ends_with("(409)"), "{error}");
    assert_eq!(attempts(&host, "late", "refund"), 1);
    assert_eq!(attempts(&host, "late", "ship"), 0);

    // An approval sent before the run waits for it is kept, and answers the wait at once.
    start(&host, "early", json!({ "id": "early", "sleep_ms": 500 }));
    let kept = host.admin("POST", "/v1/workflows/runs/early/signals/approved", Some(json!(true)));
    assert_eq!((kept.status, kept.json()["signal"].as_str()), (202, Some("kept until the run waits for it")));
    wait_for_state(&host, "early", "done");

    // A shipment that fails for good is compensated: one attempt (a 4xx is not retried), then the refund.
    start(&host, "lost", json!({ "id": "lost", "fail_ship": true }));
    wait_for_state(&host, "lost", "waiting");
    host.cli_ok(&["workflows", "signal", "lost", "approved", "true"]);
    let failed = wait_for_state(&host, "lost", "failed");
    assert!(failed["error"].as_str().unwrap_or_default().starts_with("the address is unknown: refunded"), "{failed:#}");
    assert_eq!([attempts(&host, "lost", "ship"), attempts(&host, "lost", "refund")], [1, 1]);

    // Refusals name the thing and the reason.
    let unknown = host.admin("POST", "/v1/workflows/runs", Some(json!({ "workflow": "nope", "input": {} })));
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let bad_id = host.admin("POST", "/v1/workflows/runs", Some(json!({ "workflow": "checkout", "id": "a b" })));
    assert_eq!(bad_id.status, 400, "{}", bad_id.body);
    assert!(bad_id.body.contains("run id `a b` is not"), "{}", bad_id.body);
    // A bad input fails its run at once, saying why.
    start(&host, "bad", json!({ "sleep_ms": 1 }));
    let failed = wait_for_state(&host, "bad", "failed");
    assert!(failed["error"].as_str().unwrap_or_default().contains("missing field `id`"), "{failed:#}");
    // A cancelled run stops where it is and runs the compensations its code registered, newest first, once.
    start(&host, "stopped", json!({ "id": "stopped" }));
    wait_for_state(&host, "stopped", "waiting");
    let cancelled = host.cli_ok(&["workflows", "cancel", "stopped"]);
    assert!(cancelled.contains("cancelling run stopped: its compensations run"), "{cancelled}");
    let stopped = wait_for_state(&host, "stopped", "cancelled");
    assert_eq!(stopped["error"], "cancelled: its compensation ran", "{stopped:#}");
    let steps: Vec<&str> =
        stopped["journal"].as_array().expect("journal").iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(steps, ["charge", "reserve", "approved", "compensate:release", "compensate:refund"], "{stopped:#}");
    assert_eq!([attempts(&host, "stopped", "cancel-release"), attempts(&host, "stopped", "cancel-refund")], [1, 1]);
    assert_eq!(attempts(&host, "stopped", "ship"), 0);
    let again = host.admin("POST", "/v1/workflows/runs/stopped/cancel", None);
    assert_eq!(again.status, 409, "{}", again.body);

    // The metrics count the runs by state and the failed attempts (each run's reservation fails once).
    let metrics = host.admin("GET", "/metrics", None).body;
    let value = |name: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in\n{metrics}"));
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{line}"))
    };
    assert_eq!(value("edgefn_workflow_runs{state=\"failed\"}"), 3.0);
    assert_eq!(value("edgefn_workflow_runs{state=\"done\"}"), 1.0);
    assert_eq!(value("edgefn_workflow_runs{state=\"cancelled\"}"), 1.0);
    assert_eq!(value("edgefn_workflow_runs{state=\"waiting\"}"), 0.0);
    assert_eq!(value("edgefn_workflow_runs{state=\"cancelling\"}"), 0.0);
    assert_eq!(value("edgefn_workflow_oldest_wait_seconds "), 0.0, "no run waits");
    assert!(value("edgefn_workflow_step_failures_total ") >= 4.0, "{metrics}");
}

#[test]
fn functions_start_runs_by_id_and_signal_them_but_reach_no_other_components_workflows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path());
    // A second tenant with a workflow of its own.
    let host = Host::start(&["--config", &config, &component_arg("workflow_probe"), &component_arg("order_saga")]);
    // An HTTP function starts the order's run, under an id scoped to its component; the same request again starts
    // nothing new.
    let placed = post(&host.url("/orders/o7"), r#"{"sleep_ms": 1}"#);
    assert_eq!(
        (placed.status, placed.json()["run"].as_str()),
        (200, Some("workflow_probe:order-o7")),
        "{}",
        placed.body
    );
    let again = post(&host.url("/orders/o7"), r#"{"sleep_ms": 1}"#);
    assert_eq!(again.json()["run"], "workflow_probe:order-o7", "{}", again.body);
    let waiting = wait_for_state(&host, "workflow_probe:order-o7", "waiting");
    assert_eq!(waiting["input"], json!({ "id": "o7", "sleep_ms": 1 }));
    assert_eq!(attempts(&host, "o7", "charge"), 1, "one run for the two requests");
    // A queue consumer approves it, naming it by the component's own id.
    let sent = host.admin(
        "POST",
        "/v1/queues/approvals/messages",
        Some(json!({ "body": { "run": "order-o7", "approved": true } })),
    );
    assert!(sent.status < 300, "{}", sent.body);
    let done = wait_for_state(&host, "workflow_probe:order-o7", "done");
    assert_eq!(done["result"]["reserved_on_attempt"], json!(2));
    // The other tenant's run exists, and is as good as none to this component; its workflow cannot be started
    // from here.
    let theirs = json!({ "workflow": "order_saga/checkout", "input": {}, "id": "victim" });
    assert_eq!(host.admin("POST", "/v1/workflows/runs", Some(theirs)).status, 201);
    let refused = post(&host.url("/foreign/victim"), "");
    assert!(
        refused.body.contains("start: a function starts only its own component's workflows (`workflow_probe`)"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("signal: no workflow run `victim`"), "{}", refused.body);
    let victim = run(&host, "victim");
    assert_ne!(victim["waiting_for"], "approved", "{victim:#}");

    // A step's attempt past its timeout fails (504) and is retried; `wf.invoke` calls a function as a step.
    let started =
        host.admin("POST", "/v1/workflows/runs", Some(json!({ "workflow": "helpers", "input": 21, "id": "h" })));
    assert_eq!(started.status, 201, "{}", started.body);
    let done = wait_for_state(&host, "h", "done");
    assert_eq!(done["result"], json!({ "slow_attempts": 2, "doubled": 42 }));
    assert_eq!(done["failed_attempts"][0]["status"], 504, "{done:#}");
    assert!(
        done["failed_attempts"][0]["error"].as_str().unwrap_or_default().contains("timed out after 200ms"),
        "{done:#}"
    );
    assert_eq!(done["journal"][1]["name"], "double");
}

#[test]
fn runs_stay_on_their_version_a_moved_run_fails_as_non_deterministic_and_undeploys_wait_for_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path());
    let wasm = component_arg("workflow_probe");
    let host = Host::start(&["--config", &config, &wasm]);
    for id in ["old", "stays"] {
        start(&host, id, json!({ "id": id }));
        assert_eq!(wait_for_state(&host, id, "waiting")["version"], 1);
    }
    // The new version reserves before it charges. Old runs stay on theirs and finish there.
    host.cli_ok(&["deploy", &wasm, "--env", "SWAP=1"]);
    host.cli_ok(&["workflows", "signal", "stays", "approved", "true"]);
    let done = wait_for_state(&host, "stays", "done");
    assert_eq!(done["version"], 1);
    assert_eq!(attempts(&host, "stays", "ship"), 1);
    // A run started now is on the new version and takes its steps in the new order.
    start(&host, "new", json!({ "id": "new" }));
    assert_eq!(wait_for_state(&host, "new", "waiting")["version"], 2);
    let shown = host.cli_ok(&["workflows", "show", "new"]);
    assert!(shown.contains("run new of workflow_probe/checkout on v2: waiting"), "{shown}");
    let position = |line: &str| shown.find(line).unwrap_or_else(|| panic!("no `{line}` in:\n{shown}"));
    assert!(position("step reserve: ok") < position("step charge: ok"), "the new version reserves first:\n{shown}");

    // Moved to the new code, the old run's replay does not match its journal: it fails, naming both.
    let moved = host.cli_ok(&["workflows", "retry", "old", "--version", "2"]);
    assert!(moved.contains("run old: moved"), "{moved}");
    host.cli_ok(&["workflows", "signal", "old", "approved", "true"]);
    let failed = wait_for_state(&host, "old", "failed");
    assert_eq!(
        failed["error"],
        "non-deterministic: the journal has step `charge` at position 1 where the code now asks for step `reserve`"
    );
    assert_eq!((failed["retryable"].as_bool(), attempts(&host, "old", "ship")), (Some(true), 0), "nothing ran past it");
    let shown = host.cli_ok(&["workflows", "show", "old"]);
    assert!(shown.contains("`edgefn workflows retry old` resumes it"), "{shown}");
    // Retried on its own version it goes on from its journal (its approval is journaled) and finishes.
    let retried = host.cli_ok(&["workflows", "retry", "old", "--version", "1"]);
    assert!(retried.contains("run old: resumed from its journal"), "{retried}");
    assert_eq!(wait_for_state(&host, "old", "done")["version"], 1);
    assert_eq!([attempts(&host, "old", "charge"), attempts(&host, "old", "ship")], [1, 1]);
    // A run its own code failed is final; a version the component never had is named.
    start(&host, "late", json!({ "id": "late", "approve_within_ms": 1 }));
    wait_for_state(&host, "late", "failed");
    let refused = host.admin("POST", "/v1/workflows/runs/late/retry", Some(json!({})));
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.body.contains("it failed in its own code, so its journal is final"), "{}", refused.body);
    let refused = host.admin("POST", "/v1/workflows/runs/new/retry", Some(json!({ "version": 9 })));
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("version 9"), "{}", refused.body);

    // Run `new` still waits: the undeploy is refused, saying how many, until forced (which cancels it).
    let refused = host.cli(&["undeploy", "workflow_probe"]);
    assert!(!refused.success, "{refused:?}");
    assert!(refused.stderr.contains("has 1 workflow run(s) not finished"), "{refused:?}");
    assert_eq!(run(&host, "new")["state"], "waiting", "a refused undeploy changes nothing");
    let forced = host.cli_ok(&["undeploy", "workflow_probe", "--force"]);
    assert!(forced.contains("cancelled 1 workflow run(s) of workflow_probe"), "{forced}");
    let cancelled = run(&host, "new");
    assert_eq!(cancelled["state"], "cancelled");
    assert!(cancelled["error"].as_str().unwrap_or_default().contains("undeployed"), "{cancelled:#}");
}

#[test]
fn a_resume_goes_on_from_step_to_step_journaling_each_and_a_long_run_takes_turns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path());
    let host = Host::start(&["--config", &config, &component_arg("workflow_probe")]);
    let started =
        host.admin("POST", "/v1/workflows/runs", Some(json!({ "workflow": "noop", "input": 2_500, "id": "long" })));
    assert_eq!(started.status, 201, "{}", started.body);
    let done = wait_for_state(&host, "long", "done");
    assert_eq!(done["result"], 2_500);
    // Every step journaled once, in order, although one resume runs many steps and ends after its share (a second
    // or 1,000 steps): one resume per step would be 2,501.
    let names: Vec<String> = done["journal"]
        .as_array()
        .expect("journal")
        .iter()
        .map(|entry| entry["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, (0..2_500).map(|i| format!("s{i}")).collect::<Vec<_>>());
    let logs = host.admin("GET", "/v1/logs?id=long&limit=10000", None);
    assert_eq!(logs.status, 200, "{}", logs.body);
    let resumes = logs.body.matches("\"kind\":\"invocation\"").count();
    assert!((3..=100).contains(&resumes), "{resumes} resumes for 2,500 steps:\n{}", logs.body);
}

/// A request whose redirect is not followed: its status, `location` and the `name=value` of its `set-cookie`.
fn unredirected(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Option<String>, Option<String>) {
    let agent = ureq::AgentBuilder::new().redirects(0).timeout(Duration::from_secs(30)).build();
    let mut request = agent.request(method, url);
    for (name, value) in headers {
        request = request.set(name, value);
    }
    let response = match request.send_string(body) {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("{method} {url}: {error}"),
    };
    let cookie = response.header("set-cookie").and_then(|c| c.split(';').next()).map(str::to_owned);
    (response.status(), response.header("location").map(str::to_owned), cookie)
}

/// Every run listed in `state` (at most 5,000).
pub(crate) fn runs_in(host: &Host, state: &str) -> Vec<Value> {
    let reply = host.admin("GET", &format!("/v1/workflows/runs?state={state}&limit=5000"), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["runs"].as_array().cloned().unwrap_or_default()
}

/// Waits until `count` runs are in `state`; fails saying how many are where when they never are.
fn wait_for_count(host: &Host, state: &str, count: usize, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let found = runs_in(host, state).len();
        if found == count {
            return;
        }
        let by_state: Vec<String> = ["ready", "retrying", "sleeping", "waiting", "done", "failed", "cancelled"]
            .iter()
            .map(|state| format!("{state} {}", runs_in(host, state).len()))
            .collect();
        assert!(std::time::Instant::now() < deadline, "{found} runs {state}, not {count}: {by_state:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A pause of 30 to 400 ms, different on every call and every test run (the clock's nanoseconds), printed.
fn random_pause() -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").subsec_nanos();
    Duration::from_millis(30 + u64::from(nanos) % 371)
}

#[test]
fn two_hundred_runs_finish_across_random_kills_with_each_result_journaled_once_and_side_effects_at_most_once_more_per_kill()
 {
    const RUNS: usize = 200;
    const KILLS: u64 = 3;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let config = config(dir.path());
    let wasm = component_arg("workflow_probe");
    let mut host = Host::start_in(&data, &["--config", &config, &wasm]);
    for i in 0..RUNS {
        let body = json!({ "workflow": "five", "input": i, "id": format!("five-{i}") });
        let started = host.admin("POST", "/v1/workflows/runs", Some(body));
        assert_eq!(started.status, 201, "{}", started.body);
    }
    // Kill the host at random points while the runs are in flight, and start it again each time.
    for kill in 0..KILLS {
        let pause = random_pause();
        std::thread::sleep(pause);
        let done = runs_in(&host, "done").len();
        eprintln!("kill {kill} after {pause:?}, {done} of {RUNS} runs done");
        assert!(kill > 0 || done < RUNS, "the first kill comes while runs are in flight");
        host.kill();
        host = Host::start_in(&data, &["--config", &config, &wasm]);
    }
    wait_for_count(&host, "done", RUNS, Duration::from_secs(120));
    let mut reruns = 0;
    for i in 0..RUNS {
        let run = run(&host, &format!("five-{i}"));
        assert_eq!(run["result"], json!(15), "{run:#}");
        // Each step's result is journaled once, in order.
        let steps: Vec<&str> =
            run["journal"].as_array().expect("journal").iter().filter_map(|entry| entry["name"].as_str()).collect();
        assert_eq!(steps, ["s1", "s2", "s3", "s4", "s5"], "five-{i}: {run:#}");
        // Each step's side effect happened at least once and at most once more per kill.
        for step in 1..=5 {
            let count = attempts(&host, &format!("five-{i}"), &format!("s{step}"));
            assert!((1..=1 + KILLS).contains(&count), "five-{i} step s{step} ran {count} times");
            reruns += count - 1;
        }
    }
    eprintln!("{RUNS} runs of five steps done across {KILLS} kills; {reruns} step attempts ran again");
}

#[test]
fn a_thousand_sleeping_runs_hold_no_instance_and_all_wake_after_a_restart() {
    const RUNS: usize = 1_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let config = config(dir.path());
    let wasm = component_arg("workflow_probe");
    let host = Host::start_in(&data, &["--config", &config, &wasm]);
    // Long enough a sleep for the last start to come while the first run still sleeps.
    let started = std::time::Instant::now();
    for i in 0..RUNS {
        let body = json!({ "workflow": "nap", "input": 15_000, "id": format!("nap-{i}") });
        let started = host.admin("POST", "/v1/workflows/runs", Some(body));
        assert_eq!(started.status, 201, "{}", started.body);
    }
    eprintln!("{RUNS} runs started in {:?}", started.elapsed());
    wait_for_count(&host, "sleeping", RUNS, Duration::from_secs(60));
    assert_eq!(host.instances_in_use(), 0, "sleeping runs hold no instance");
    // A restart in the middle of the sleep: every run wakes and finishes on the new process.
    host.kill();
    let host = Host::start_in(&data, &["--config", &config, &wasm]);
    wait_for_count(&host, "done", RUNS, Duration::from_secs(120));
    for i in [0, 500, 999] {
        let woke = run(&host, &format!("nap-{i}"));
        assert_eq!(woke["result"], "awake", "{woke:#}");
        let (until, woke_at) = (woke["journal"][0]["until_ms"].as_i64(), woke["journal"][1]["at"].as_i64());
        assert!(woke_at >= until && until.is_some(), "nap-{i} woke before its sleep ended: {woke:#}");
    }
}

#[test]
fn a_join_runs_steps_at_once_and_child_runs_answer_their_parent_and_are_cancelled_with_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path());
    let host = Host::start(&["--config", &config, &component_arg("workflow_probe")]);
    let started = host.cli_ok(&["workflows", "start", "fanout", "0", "--id", "fan-1"]);
    assert_eq!(started.trim(), "started run fan-1 of workflow_probe/fanout");
    let done = wait_for_state(&host, "fan-1", "done");
    assert_eq!(
        done["result"],
        json!({
            "stock_attempts": 2,
            "quote": 1_250,
            "label": "label for fan-1",
            "broken": "child run `fan-1:broken` failed: out of ink (422)",
            "napped": "awake",
        })
    );
    // The join's steps are journaled as they ended (quote first), and replay found them by name.
    let names: Vec<&str> = done["journal"].as_array().expect("journal")[..2]
        .iter()
        .map(|entry| entry["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["quote", "stock"]);
    // The join was retried for stock alone: quote, journaled when it ended, never ran again.
    assert_eq!((attempts(&host, "fan-1", "stock"), attempts(&host, "fan-1", "quote")), (2, 1));
    assert_eq!(attempts(&host, "fan-1", "label"), 1, "a child runs once");
    let label = run(&host, "fan-1:label");
    assert_eq!((label["state"].as_str(), label["parent"].as_str()), (Some("done"), Some("fan-1")));
    let shown = host.cli_ok(&["workflows", "show", "fan-1"]);
    assert!(shown.contains("child:label: {"), "the timeline says how each child ended:\n{shown}");
    let shown = host.cli_ok(&["workflows", "show", "fan-1:nap"]);
    assert!(shown.contains("child of run fan-1"), "{shown}");

    // A parent cancelled while its child sleeps: the child is cancelled with it, and both end cancelled.
    host.cli_ok(&["workflows", "start", "fanout", "600000", "--id", "fan-2"]);
    wait_for_state(&host, "fan-2:nap", "sleeping");
    let parent = wait_for_state(&host, "fan-2", "waiting");
    assert_eq!(parent["waiting_for"], "child:nap");
    host.cli_ok(&["workflows", "cancel", "fan-2"]);
    wait_for_state(&host, "fan-2:nap", "cancelled");
    wait_for_state(&host, "fan-2", "cancelled");
}
