//! An order saga as one durable workflow (`edgefn::workflow`): charge the card, reserve the stock, wait up to
//! `APPROVAL_TIMEOUT_S` for a person to approve, ship; when a later step fails, undo the earlier ones (release the
//! stock, refund the charge). Each step's result is journaled once, so a crash or a restart anywhere re-runs at most
//! the step it was in, and the payment service sees the same idempotency key for it.
//!
//! - `POST /saga/orders` with `{"id", "sku", "qty", "cents", "address"}` starts the order's run (`order-ID`; the
//!   same order twice starts one run); `POST /saga/orders/{id}/approval` with `true` or `false` approves it.
//! - `POST /saga/stock/{sku}` with `{"qty": N}` sets a product's stock (key-value store `inventory`).
//! - `edgefn workflows cancel order-ID` while an order waits: it releases the stock and refunds the charge (what the
//!   code registered with `on_cancel`), then ends cancelled.
//! - The payment and shipping service is `PAYMENTS_URL`. Out of the box it is this component's own stand-in under
//!   `/saga/fake-payments/` (charges remembered by idempotency key in key-value store `saga-payments`; a charge over
//!   100,000 cents is declined, a shipment to `nowhere` refused), so the example runs with nothing else.
//!
//! Watch a run with `edgefn workflows show order-ID`.

use edgefn::http;
use edgefn::kv::Store;
use edgefn::prelude::*;
use edgefn::workflow::{Attempt, StepOptions, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub sku: String,
    pub qty: u64,
    pub cents: u64,
    pub address: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Receipt {
    pub charge: String,
    pub tracking: String,
}

fn payments_url() -> String {
    std::env::var("PAYMENTS_URL").unwrap_or_else(|_| "http://127.0.0.1:8080/saga/fake-payments".to_owned())
}

fn approval_timeout() -> Duration {
    let seconds = std::env::var("APPROVAL_TIMEOUT_S").ok().and_then(|s| s.parse().ok()).unwrap_or(3 * 86_400);
    Duration::from_secs(seconds)
}

/// POSTs `body` to the payment service's `path`, as this attempt (its idempotency key), and answers the JSON reply.
/// A 4xx reply is the service saying no (not retried); anything else failing is retried with backoff.
async fn call_service(path: &str, body: Value, attempt: &Attempt) -> Result<Value> {
    let request = http::Request::post(format!("{}{path}", payments_url()))
        .header("content-type", "application/json")
        .header("idempotency-key", &attempt.idempotency_key)
        .body(serde_json::to_vec(&body)?)?;
    let reply = edgefn::fetch::send(request).await?;
    let status = reply.status();
    let text = reply.text().await?;
    if !(200..300).contains(&status) {
        let status = if (400..500).contains(&status) { status } else { 502 };
        let said = serde_json::from_str::<Value>(&text).ok().and_then(|v| v["error"].as_str().map(str::to_owned));
        return Err(Error::new(status, format!("{path}: {}", said.unwrap_or(text))));
    }
    serde_json::from_str(&text).map_err(|e| Error::new(502, format!("{path}: not JSON: {e}")))
}

// ANCHOR: saga
#[function(trigger = workflow)]
async fn checkout(wf: Workflow, order: Order) -> Result<Receipt> {
    let retried = StepOptions::default().backoff(Duration::from_millis(200), Duration::from_secs(30));
    let charge: String = wf
        .step("charge", retried, |attempt| {
            let body = json!({ "order": order.id, "cents": order.cents });
            async move {
                let reply = call_service("/charges", body, &attempt).await?;
                Ok(reply["id"].as_str().unwrap_or_default().to_owned())
            }
        })
        .await?;
    // What undoes the charge: run by `wf.undo()` when a later step fails, or on a cancel
    // (`edgefn workflows cancel RUN`); either way once, with the same idempotency key.
    let (run, refunded) = (wf.run_id(), charge.clone());
    wf.on_cancel("refund", move || async move {
        let attempt = Attempt { number: 1, idempotency_key: format!("{run}:compensate:refund") };
        call_service("/refunds", json!({ "charge": refunded }), &attempt).await.map(|_| ())
    });
    let reserved = wf.step("reserve", StepOptions::once(), |_| async { reserve(&order.sku, order.qty) }).await;
    if let Err(error) = reserved {
        wf.undo().await?;
        return Err(Error::new(error.status(), format!("{}; the charge was refunded", error.message())));
    }
    let (sku, qty) = (order.sku.clone(), order.qty);
    wf.on_cancel("release", move || async move { put_back(&sku, qty) });

    let approved = wf.wait_for_event::<bool>("approved", approval_timeout()).await?;
    if approved != Some(true) {
        wf.undo().await?;
        let why = if approved.is_none() { "no approval in time" } else { "rejected" };
        return Err(Error::new(409, format!("{why}: the stock was released and the charge refunded")));
    }

    let shipped = wf
        .step("ship", retried, |attempt| {
            let body = json!({ "order": order.id, "sku": order.sku, "qty": order.qty, "address": order.address });
            async move {
                let reply = call_service("/shipments", body, &attempt).await?;
                Ok(reply["tracking"].as_str().unwrap_or_default().to_owned())
            }
        })
        .await;
    match shipped {
        Ok(tracking) => Ok(Receipt { charge, tracking }),
        Err(error) => {
            wf.undo().await?;
            Err(Error::new(
                error.status(),
                format!("{}; the stock was released and the charge refunded", error.message()),
            ))
        }
    }
}
// ANCHOR_END: saga

/// Takes `qty` of `sku` from the stock; a 409 (not retried) when there is not enough.
fn reserve(sku: &str, qty: u64) -> Result<()> {
    let stock = Store::open("inventory")?;
    let key = format!("stock:{sku}");
    let delta = i64::try_from(qty).map_err(|_| Error::bad_request("qty is too large"))?;
    if stock.add(&key, -delta)? < 0 {
        stock.add(&key, delta)?;
        return Err(Error::new(409, format!("not enough {sku} in stock for {qty}")));
    }
    Ok(())
}

/// Puts `qty` of `sku` back.
fn put_back(sku: &str, qty: u64) -> Result<()> {
    let delta = i64::try_from(qty).map_err(|_| Error::bad_request("qty is too large"))?;
    Store::open("inventory")?.add(&format!("stock:{sku}"), delta)?;
    Ok(())
}

// ANCHOR: start
/// Starts the order's run; the same order posted twice (a client's retry) starts one run.
#[function(trigger = http("/saga/orders", method = "POST"))]
async fn place(req: Request) -> Result<Response> {
    req.read_body().await?;
    let order: Order = req.json()?;
    if order.qty == 0 || order.id.is_empty() {
        return Err(Error::bad_request("an order needs an id and a qty of at least 1"));
    }
    let run = edgefn::workflow::start_with_id("checkout", &order, &format!("order-{}", order.id))?;
    Ok(Response::json(&json!({ "run": run }))?.with_status(202))
}

/// `true` approves the order, `false` rejects it.
#[function(trigger = http("/saga/orders/{id}/approval", method = "POST"))]
async fn approve(req: Request) -> Result<Response> {
    req.read_body().await?;
    let approved: bool = req.json()?;
    let run = format!("order-{}", req.param("id").unwrap_or_default());
    let delivered = edgefn::workflow::signal(&run, "approved", &approved)?;
    let what = if delivered { "delivered" } else { "kept until the run waits for it" };
    Response::json(&json!({ "run": run, "approval": what }))
}
// ANCHOR_END: start

/// Sets a product's stock.
#[function(trigger = http("/saga/stock/{sku}", method = "POST"))]
async fn set_stock(req: Request) -> Result<Response> {
    req.read_body().await?;
    let body: Value = req.json()?;
    let qty = body["qty"].as_i64().ok_or_else(|| Error::bad_request("give {\"qty\": N}"))?;
    let sku = req.param("sku").unwrap_or_default();
    Store::open("inventory")?.set(&format!("stock:{sku}"), qty.to_string())?;
    Response::json(&json!({ "sku": sku, "qty": qty }))
}

/// The stand-in payment and shipping service (`PAYMENTS_URL` out of the box): what a real one does that matters
/// here, remembering each charge by its idempotency key so a retried attempt charges once.
#[function(trigger = http("/saga/fake-payments/{what}", method = "POST"))]
async fn fake_payments(req: Request) -> Result<Response> {
    req.read_body().await?;
    let body: Value = req.json()?;
    let key = req.header("idempotency-key").unwrap_or_default().to_owned();
    let ledger = Store::open("saga-payments")?;
    let answer = match req.param("what").unwrap_or_default() {
        "charges" if body["cents"].as_u64().unwrap_or(0) > 100_000 => {
            return Ok(Response::json(&json!({ "error": "card declined" }))?.with_status(402));
        }
        "charges" => {
            let id = match ledger.get(&format!("charge:{key}"))? {
                Some(id) => String::from_utf8_lossy(&id).into_owned(),
                None => {
                    let id = format!("ch_{}", ledger.increment("charges", 1)?);
                    ledger.set(&format!("charge:{key}"), &id)?;
                    id
                }
            };
            json!({ "id": id })
        }
        "refunds" => json!({ "id": format!("re_{}", body["charge"].as_str().unwrap_or_default()) }),
        "shipments" if body["address"] == "nowhere" => {
            return Ok(Response::json(&json!({ "error": "unknown address" }))?.with_status(422));
        }
        "shipments" => json!({ "tracking": format!("tr_{}", body["order"].as_str().unwrap_or_default()) }),
        other => return Err(Error::not_found(format!("no fake payment endpoint `{other}`"))),
    };
    ledger.increment(&format!("calls:{}", req.param("what").unwrap_or_default()), 1)?;
    Response::json(&answer)
}
