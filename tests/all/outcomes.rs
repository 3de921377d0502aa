//! Counts that agree: each way an invocation can end, driven once on a real host, is named and counted the same in
//! the five places an operator reads: its log record, `/metrics`, the admin API's usage, `edgefn usage`, and the
//! dashboard.

use crate::support::{Host, component_arg, get, poll_until, send};
use edgefn_host::auth::{Signer, standard_claims};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

/// One outcome: the request that produces it, the function that serves it, and the status it answers.
struct Case {
    outcome: &'static str,
    function: &'static str,
    path: &'static str,
    status: u16,
}

const CASES: [Case; 6] = [
    Case { outcome: "ok", function: "hello/hello", path: "/hello/outcomes", status: 200 },
    // No `?url=`: the function answers 400 itself.
    Case { outcome: "client_error", function: "hostile/call", path: "/hostile/call", status: 400 },
    // `API_SECRET` is not configured: the function returns an error, a 500.
    Case { outcome: "error", function: "hostile/leak", path: "/hostile/leak", status: 500 },
    Case { outcome: "trap", function: "misbehave/panic", path: "/panic", status: 500 },
    Case { outcome: "timeout", function: "hostile/spin", path: "/hostile/spin", status: 504 },
    // No bearer token on a protected route: refused before the function runs.
    Case { outcome: "unauthorized", function: "todo_api/me", path: "/me", status: 401 },
];

#[test]
fn each_outcome_is_counted_alike_in_the_log_metrics_usage_and_dashboard() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("edgefn.toml");
    let text = format!(
        "[limits]\nqueue_timeout_ms = 100\n\n[components.hostile.functions.spin]\ntimeout_ms = 300\n\n\
         [components.hostile.functions.hold]\nmax_concurrency = 1\n\n\
         [components.todo-api]\nkey_value_stores = [\"todos\"]\n\n\
         [authorizers.todo]\nissuer = \"https://issuer.test/\"\naudiences = [\"todo-api\"]\nhs256_secret = \"{SECRET}\"\n"
    );
    std::fs::write(&config, text).expect("config");
    let components = ["hello", "hostile", "misbehave", "todo_api"].map(component_arg);
    let mut args = vec!["--config", config.to_str().expect("utf-8")];
    args.extend(components.iter().map(String::as_str));
    let host = Host::start(&args);

    let mut ids: BTreeMap<&str, String> = BTreeMap::new();
    for case in &CASES {
        let reply = get(&host.url(case.path));
        assert_eq!(reply.status, case.status, "{}: {}", case.outcome, reply.body);
        ids.insert(case.outcome, reply.header("x-request-id").expect("a request id").to_owned());
    }
    // A token without the scope is refused too (403), counted as unauthorized with the 401 above.
    let token = Signer::hmac(SECRET.as_bytes(), None)
        .sign(&standard_claims("https://issuer.test/", "todo-api", "ada", &[], Duration::from_secs(600)))
        .expect("sign");
    let reply = send("GET", &host.url("/todos"), &[("authorization", &format!("Bearer {token}"))], b"");
    assert_eq!(reply.status, 403, "{}", reply.body);
    // Throttled: two at once at max_concurrency 1; one holds the slot 600 ms, the other gives up after 100.
    let holds: Vec<_> = (0..2)
        .map(|_| {
            let url = host.url("/hostile/hold?mb=0&ms=600");
            std::thread::spawn(move || {
                let reply = get(&url);
                (reply.status, reply.header("x-request-id").unwrap_or_default().to_owned())
            })
        })
        .collect();
    let mut holds: Vec<(u16, String)> = holds.into_iter().map(|h| h.join().expect("request")).collect();
    holds.sort();
    assert_eq!(holds.iter().map(|(status, _)| *status).collect::<Vec<_>>(), [200, 429]);
    ids.insert("throttled", holds[1].1.clone());

    // What each function should count: one of its case's outcome (and `hold`: one ok, one throttled; `me` and
    // `list_todos`: one unauthorized each).
    let mut expected: BTreeMap<(&str, &str), u64> =
        CASES.iter().map(|case| ((case.function, case.outcome), 1)).collect();
    expected.insert(("todo_api/list_todos", "unauthorized"), 1);
    expected.insert(("hostile/hold", "ok"), 1);
    expected.insert(("hostile/hold", "throttled"), 1);

    // 1. The log: each request's invocation record names its outcome.
    for (outcome, id) in &ids {
        let mut records: Vec<Value> = Vec::new();
        poll_until(&format!("the invocation record of the {outcome} request"), Duration::from_secs(10), || {
            let out = host.cli_ok(&["logs", "--json", "--id", id]);
            records = out.lines().map(|l| serde_json::from_str(l).expect("a JSON record")).collect();
            records.iter().any(|r| r["kind"] == "invocation")
        });
        let record = records.iter().find(|r| r["kind"] == "invocation").expect("an invocation record");
        let message = record["message"].as_str().expect("message");
        assert!(message.contains(&format!(": {outcome} ")), "{outcome}: {message}");
    }

    // 2. /metrics: edgefn_invocations_total by function and outcome.
    let metrics =
        send("GET", &format!("{}/metrics", host.admin), &[("authorization", &format!("Bearer {}", host.token))], b"");
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    let scrape = prometheus_parse::Scrape::parse(metrics.body.lines().map(|l| Ok(l.to_owned()))).expect("exposition");
    let mut from_metrics: BTreeMap<(String, String), u64> = BTreeMap::new();
    for sample in scrape.samples.iter().filter(|s| s.metric == "edgefn_invocations_total") {
        // A counter family's `_total` samples come out untyped from this parser (the TYPE line names the family).
        if let prometheus_parse::Value::Counter(value) | prometheus_parse::Value::Untyped(value) = sample.value {
            let key = (
                sample.labels.get("function").unwrap_or("").to_owned(),
                sample.labels.get("outcome").unwrap_or("").to_owned(),
            );
            *from_metrics.entry(key).or_default() += value as u64;
        }
    }
    let owned = |map: &BTreeMap<(&str, &str), u64>| -> BTreeMap<(String, String), u64> {
        map.iter().map(|((f, o), n)| ((f.to_string(), o.to_string()), *n)).collect()
    };
    assert_eq!(from_metrics, owned(&expected), "/metrics:\n{}", metrics.body);

    // 3. The admin API's usage rows, summed per function and outcome.
    let usage = host.admin("GET", "/v1/usage?since=1h", None);
    assert_eq!(usage.status, 200, "{}", usage.body);
    let columns = [
        ("ok", "ok"),
        ("client_errors", "client_error"),
        ("errors", "error"),
        ("traps", "trap"),
        ("timeouts", "timeout"),
        ("throttled", "throttled"),
        ("unauthorized", "unauthorized"),
    ];
    let mut from_usage: BTreeMap<(String, String), u64> = BTreeMap::new();
    for row in usage.json()["usage"].as_array().expect("usage rows") {
        let function = row["function"].as_str().expect("function").to_owned();
        let mut outcomes = 0;
        for (column, outcome) in columns {
            let count = row[column].as_u64().unwrap_or_else(|| panic!("no `{column}` in {row}"));
            outcomes += count;
            if count > 0 {
                *from_usage.entry((function.clone(), outcome.to_owned())).or_default() += count;
            }
        }
        assert_eq!(row["invocations"].as_u64(), Some(outcomes), "invocations is the sum of the outcomes: {row}");
    }
    assert_eq!(from_usage, owned(&expected), "{}", usage.body);

    // 4. `edgefn usage`: its bill per function (errors are errors, traps and timeouts together).
    let bills: Value = serde_json::from_str(&host.cli_ok(&["usage", "--json"])).expect("usage JSON");
    let bill = |function: &str| -> Value {
        bills["functions"]
            .as_array()
            .expect("bills")
            .iter()
            .find(|b| b["function"] == function)
            .cloned()
            .unwrap_or_else(|| panic!("no bill for {function}: {bills:#}"))
    };
    assert_eq!(bill("hostile/call")["client_errors"], 1);
    assert_eq!(bill("hostile/leak")["errors"], 1);
    assert_eq!(bill("misbehave/panic")["errors"], 1);
    assert_eq!(bill("hostile/spin")["errors"], 1);
    assert_eq!(
        (bill("hostile/hold")["requests"].clone(), bill("hostile/hold")["throttled"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(
        (bill("todo_api/me")["requests"].clone(), bill("todo_api/me")["unauthorized"].clone()),
        (json!(0), json!(1))
    );
    assert_eq!(bills["total"]["unauthorized"], 2);

    // 5. The dashboard, signed in: each function's row.
    let agent = ureq::AgentBuilder::new().redirects(0).timeout(Duration::from_secs(30)).build();
    let signed_in = agent
        .post(&format!("{}/dashboard/login", host.admin))
        .send_form(&[("token", host.token.as_str())])
        .expect("sign in");
    let cookie = signed_in.header("set-cookie").expect("a session cookie").split(';').next().expect("pair").to_owned();
    let page = send("GET", &format!("{}/dashboard", host.admin), &[("cookie", &cookie)], b"");
    assert_eq!(page.status, 200, "{}", page.body);
    let cell = |function: &str, class: &str| -> u64 {
        let row = page
            .body
            .split(&format!("data-function=\"{function}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("no row for {function}"));
        let row = row.split("</tr>").next().expect("row");
        let cell = row.split(&format!("class=\"n {class}\">")).nth(1).unwrap_or_else(|| panic!("no {class} in {row}"));
        let text: String = cell.chars().skip_while(|c| !c.is_ascii_digit()).take_while(char::is_ascii_digit).collect();
        text.parse().unwrap_or_else(|_| panic!("{function} {class}: {cell}"))
    };
    assert_eq!(cell("hostile/call", "client-errors"), 1);
    assert_eq!(cell("hostile/leak", "errors"), 1);
    assert_eq!(cell("misbehave/panic", "errors"), 1);
    assert_eq!(cell("hostile/spin", "errors"), 1);
    assert_eq!(cell("hostile/hold", "throttled"), 1);
    assert_eq!(cell("hostile/hold", "invocations"), 2);
    assert_eq!(cell("todo_api/me", "unauthorized"), 1);
    assert_eq!(cell("hello/hello", "invocations"), 1);
    assert_eq!(cell("hello/hello", "errors"), 0);
}
