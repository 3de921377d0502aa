//! The order saga example (`examples/order-saga`) end to end, on a real host with the example's own host
//! configuration, against a fake payment and shipping service this test runs on 127.0.0.1: an order is charged,
//! reserved, approved and shipped; a card the service declines fails the order at once; a charge the service fails
//! once is retried with a new idempotency key; a rejection, a missing approval and a failed shipment are undone
//! (stock released, charge refunded), and so is a cancelled order, by the compensations its code registered; a
//! host killed while an order waits for its approval finishes it after the
//! restart; the same order posted twice is one run.

use crate::support::{Host, component_arg, post, workspace};
use crate::workflows::wait_for_state;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post as route_post;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// What the fake service was asked: every call with its idempotency key, and what it answered.
#[derive(Debug, Default)]
struct Ledger {
    /// (endpoint, idempotency key, request body, status answered)
    calls: Vec<(String, String, Value, u16)>,
    /// Charge ids by idempotency key: the same key charges once.
    charges: Vec<(String, String)>,
    /// Orders whose first charge attempt fails with a 503.
    flaky_orders: Vec<String>,
}

type Shared = Arc<Mutex<Ledger>>;

fn lock(ledger: &Shared) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn answer(ledger: Shared, endpoint: &str, headers: HeaderMap, body: Value) -> (StatusCode, axum::Json<Value>) {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mut ledger = lock(&ledger);
    let order = body["order"].as_str().unwrap_or_default().to_owned();
    let (status, reply) = match endpoint {
        "charges" if body["cents"].as_u64().unwrap_or(0) > 100_000 => (402, json!({ "error": "card declined" })),
        "charges" if ledger.flaky_orders.contains(&order) => {
            ledger.flaky_orders.retain(|o| o != &order);
            (503, json!({ "error": "try again" }))
        }
        "charges" => {
            let known = ledger.charges.iter().find(|(k, _)| k == &key).map(|(_, id)| id.clone());
            let id = known.unwrap_or_else(|| {
                let id = format!("ch_{}", ledger.charges.len() + 1);
                ledger.charges.push((key.clone(), id.clone()));
                id
            });
            (200, json!({ "id": id }))
        }
        "refunds" => (200, json!({ "id": format!("re_{}", body["charge"].as_str().unwrap_or_default()) })),
        "shipments" if body["address"] == "nowhere" => (422, json!({ "error": "unknown address" })),
        "shipments" => (200, json!({ "tracking": format!("tr_{order}") })),
        _ => (404, json!({ "error": "no such endpoint" })),
    };
    ledger.calls.push((endpoint.to_owned(), key, body, status));
    (StatusCode::from_u16(status).expect("status"), axum::Json(reply))
}

/// The fake service on 127.0.0.1, on a thread of its own; answers its URL and its ledger.
fn fake_payments() -> (String, Shared) {
    let ledger = Shared::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    listener.set_nonblocking(true).expect("non-blocking");
    let state = ledger.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let route = |endpoint: &'static str| {
                route_post(
                    move |State(ledger): State<Shared>, headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
                        answer(ledger, endpoint, headers, body)
                    },
                )
            };
            let app = axum::Router::new()
                .route("/charges", route("charges"))
                .route("/refunds", route("refunds"))
                .route("/shipments", route("shipments"))
                .with_state(state);
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    (url, ledger)
}

/// The example's section of `examples/edgefn.toml`, pointed at `payments` with approvals due within 10 s.
fn saga_config(dir: &std::path::Path, payments: &str) -> String {
    let shipped: toml::Table = std::fs::read_to_string(workspace().join("examples/edgefn.toml"))
        .expect("read examples/edgefn.toml")
        .parse()
        .expect("examples/edgefn.toml parses");
    let mut component = shipped["components"]["order-saga"].as_table().expect("the saga's section").clone();
    let mut env = component["env"].as_table().expect("env").clone();
    env.insert("PAYMENTS_URL".into(), toml::Value::String(payments.to_owned()));
    env.insert("APPROVAL_TIMEOUT_S".into(), toml::Value::String("10".into()));
    component.insert("env".into(), toml::Value::Table(env));
    let authority = payments.trim_start_matches("http://").to_owned();
    component.insert("allowed_outbound_hosts".into(), toml::Value::Array(vec![toml::Value::String(authority)]));
    let mut components = toml::Table::new();
    components.insert("order_saga".into(), toml::Value::Table(component));
    let config = toml::Table::from_iter([("components".to_owned(), toml::Value::Table(components))]);
    let path = dir.join("edgefn.toml");
    std::fs::write(&path, toml::to_string(&config).expect("toml")).expect("write config");
    path.to_str().expect("utf-8").to_owned()
}

fn stock(host: &Host) -> i64 {
    let reply = host.admin("GET", "/v1/kv/inventory/keys/stock:widget", None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["value"].as_str().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{}", reply.body))
}

fn place(host: &Host, id: &str, cents: u64, address: &str) {
    let order = json!({ "id": id, "sku": "widget", "qty": 2, "cents": cents, "address": address });
    let placed = post(&host.url("/saga/orders"), &order.to_string());
    assert_eq!(placed.status, 202, "{}", placed.body);
    assert_eq!(placed.json()["run"], run_id(id), "the run id is scoped to the component");
}

/// The run of order `id`: the id the example's HTTP function chose, scoped to its component.
fn run_id(id: &str) -> String {
    format!("order_saga:order-{id}")
}

fn approve(host: &Host, id: &str, approved: bool) {
    let reply = post(&host.url(&format!("/saga/orders/{id}/approval")), &approved.to_string());
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// The calls the fake service had for `order` (refunds: for its charge), as (endpoint, status).
fn calls_for(ledger: &Shared, order: &str, charge: Option<&str>) -> Vec<(String, u16)> {
    lock(ledger)
        .calls
        .iter()
        .filter(|(_, _, body, _)| body["order"] == order || (charge.is_some() && body["charge"].as_str() == charge))
        .map(|(endpoint, _, _, status)| (endpoint.clone(), *status))
        .collect()
}

fn pairs(calls: &[(&str, u16)]) -> Vec<(String, u16)> {
    calls.iter().map(|(endpoint, status)| ((*endpoint).to_owned(), *status)).collect()
}

#[test]
fn the_order_saga_charges_reserves_waits_ships_and_undoes_what_a_later_failure_leaves() {
    let (payments, ledger) = fake_payments();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let config = saga_config(dir.path(), &payments);
    let wasm = component_arg("order_saga");
    let host = Host::start_in(&data, &["--config", &config, &wasm]);
    let set = post(&host.url("/saga/stock/widget"), r#"{"qty": 10}"#);
    assert_eq!(set.status, 200, "{}", set.body);

    // The happy path, the order posted twice (one run), its first charge attempt failing once: retried with the
    // next attempt's idempotency key.
    lock(&ledger).flaky_orders.push("1".into());
    place(&host, "1", 1_999, "1 Main St");
    place(&host, "1", 1_999, "1 Main St");
    let waiting = wait_for_state(&host, &run_id("1"), "waiting");
    assert_eq!(waiting["waiting_for"], "approved");
    assert_eq!(stock(&host), 8, "reserved before the approval");
    approve(&host, "1", true);
    let done = wait_for_state(&host, &run_id("1"), "done");
    assert_eq!(done["result"], json!({ "charge": "ch_1", "tracking": "tr_1" }));
    assert_eq!(calls_for(&ledger, "1", None), pairs(&[("charges", 503), ("charges", 200), ("shipments", 200)]));
    let keys: Vec<String> =
        lock(&ledger).calls.iter().filter(|c| c.0 == "charges" && c.2["order"] == "1").map(|c| c.1.clone()).collect();
    assert_eq!(keys, ["order_saga:order-1:charge:1", "order_saga:order-1:charge:2"], "each attempt its own key");

    // A card the service declines (a 402) fails the order at once: no retry, nothing reserved.
    place(&host, "2", 500_000, "1 Main St");
    let failed = wait_for_state(&host, &run_id("2"), "failed");
    assert!(failed["error"].as_str().unwrap_or_default().contains("card declined"), "{failed:#}");
    assert_eq!(calls_for(&ledger, "2", None), pairs(&[("charges", 402)]));
    assert_eq!(stock(&host), 8);

    // A shipment that fails is undone: the stock comes back and the charge is refunded.
    place(&host, "3", 700, "nowhere");
    wait_for_state(&host, &run_id("3"), "waiting");
    assert_eq!(stock(&host), 6);
    approve(&host, "3", true);
    let failed = wait_for_state(&host, &run_id("3"), "failed");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("unknown address; the stock was released and the charge refunded"), "{error}");
    assert_eq!(calls_for(&ledger, "3", Some("ch_2")), pairs(&[("charges", 200), ("shipments", 422), ("refunds", 200)]));
    assert_eq!(stock(&host), 8);

    // A rejection and a missing approval are undone alike.
    place(&host, "4", 700, "1 Main St");
    place(&host, "5", 700, "1 Main St");
    wait_for_state(&host, &run_id("4"), "waiting");
    approve(&host, "4", false);
    let rejected = wait_for_state(&host, &run_id("4"), "failed");
    assert!(
        rejected["error"].as_str().unwrap_or_default().starts_with("rejected: the stock was released"),
        "{rejected:#}"
    );
    let timed_out = wait_for_state(&host, &run_id("5"), "failed");
    assert!(timed_out["error"].as_str().unwrap_or_default().starts_with("no approval in time"), "{timed_out:#}");
    assert_eq!(stock(&host), 8);
    assert_eq!(calls_for(&ledger, "4", Some("ch_3")), pairs(&[("charges", 200), ("refunds", 200)]));

    // Cancelled while it waits: its compensations release the stock and refund the charge.
    place(&host, "7", 700, "1 Main St");
    wait_for_state(&host, &run_id("7"), "waiting");
    assert_eq!(stock(&host), 6);
    host.cli_ok(&["workflows", "cancel", &run_id("7")]);
    let cancelled = wait_for_state(&host, &run_id("7"), "cancelled");
    assert_eq!(cancelled["error"], "cancelled: its compensation ran", "{cancelled:#}");
    assert_eq!(stock(&host), 8);
    assert_eq!(calls_for(&ledger, "7", Some("ch_5")), pairs(&[("charges", 200), ("refunds", 200)]));
    let refund_key =
        lock(&ledger).calls.iter().find(|c| c.0 == "refunds" && c.2["charge"] == "ch_5").map(|c| c.1.clone());
    assert_eq!(refund_key, Some(format!("{}:compensate:refund", run_id("7"))));

    // Killed while an order waits for its approval: after the restart the approval finishes it.
    place(&host, "6", 700, "1 Main St");
    wait_for_state(&host, &run_id("6"), "waiting");
    host.kill();
    let host = Host::start_in(&data, &["--config", &config, &wasm]);
    approve(&host, "6", true);
    let done = wait_for_state(&host, &run_id("6"), "done");
    assert_eq!(done["result"]["tracking"], "tr_6");
    assert_eq!(stock(&host), 6);
    assert_eq!(done["result"]["charge"], "ch_6");
    let shown = host.cli_ok(&["workflows", "show", &run_id("6")]);
    for line in ["step charge: ok", "step reserve: ok", "event approved: true", "step ship: ok"] {
        assert!(shown.contains(line), "no `{line}` in\n{shown}");
    }
}
