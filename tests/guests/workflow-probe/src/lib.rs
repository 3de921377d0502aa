//! A test guest for durable workflows: `checkout`, an order saga. It charges, reserves stock (whose first attempt
//! always fails, to be retried), sleeps, waits for the event `approved`, then ships; on a rejection, a time-out or a
//! failed shipment it refunds; cancelled after its reservation, it runs its compensations (release, then refund). Every attempt of every step counts itself in key-value store `default`
//! (`count:ORDER:STEP`), so a test sees what ran how often. With `SWAP` set (a redeploy), it reserves before it
//! charges: the same workflow with its steps reordered.
//!
//! Runs are also started and signalled by the component's own functions: `POST /orders/{id}` starts `checkout`
//! for the order (run id `order-ID`: twice starts one run), queue `approvals` signals a run (`{"run", "approved"}`),
//! and `POST /foreign/{run}` tries another component's workflow and a run id it names, to be refused.
//!
//! For kills, crowds and benchmarks: `five` takes five steps that each count themselves in KV (`count:RUN:sN`);
//! `nap` sleeps, then takes one step; `noop` takes `n` steps that do nothing. `fanout` runs two steps at once and
//! three child runs (`label`, `broken`, `nap`).

use edgefn::kv::Store;
use edgefn::prelude::*;
use edgefn::workflow::{StepOptions, Workflow};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Debug, Deserialize)]
struct Order {
    id: String,
    #[serde(default)]
    sleep_ms: u64,
    #[serde(default = "a_minute")]
    approve_within_ms: u64,
    #[serde(default)]
    fail_ship: bool,
}

fn a_minute() -> u64 {
    60_000
}

/// Counts one attempt of `step` for `order`.
fn count(order: &str, step: &str) -> Result<()> {
    Store::open("default")?.increment(&format!("count:{order}:{step}"), 1)?;
    Ok(())
}

// ANCHOR: workflow
#[function(trigger = workflow)]
async fn checkout(wf: Workflow, order: Order) -> Result<Value> {
    let id = order.id.clone();
    let charge = || {
        let id = id.clone();
        wf.step("charge", StepOptions::default(), move |attempt| async move {
            count(&id, "charge")?;
            Ok(format!("charge for {id} ({})", attempt.idempotency_key))
        })
    };
    let retried = StepOptions::default().backoff(Duration::from_millis(100), Duration::from_secs(1));
    let reserve = || {
        let id = id.clone();
        wf.step("reserve", retried, move |attempt| async move {
            count(&id, "reserve")?;
            if attempt.number < 2 { Err(Error::internal("the stock service is down")) } else { Ok(attempt.number) }
        })
    };
    let (charged, reserved): (String, u32) = if std::env::var("SWAP").is_ok() {
        let reserved = reserve().await?;
        (charge().await?, reserved)
    } else {
        let charged = charge().await?;
        (charged, reserve().await?)
    };
    // Cancelled from here on, the run undoes both, newest first (each counted as `cancel-release`, `cancel-refund`).
    let (refund_id, release_id) = (id.clone(), id.clone());
    wf.on_cancel("refund", move || async move { count(&refund_id, "cancel-refund") });
    wf.on_cancel("release", move || async move { count(&release_id, "cancel-release") });
    wf.sleep(Duration::from_millis(order.sleep_ms)).await?;
    let approved = wf.wait_for_event::<bool>("approved", Duration::from_millis(order.approve_within_ms)).await?;
    let refund = || {
        let id = id.clone();
        wf.step("refund", StepOptions::default(), move |_| async move { count(&id, "refund") })
    };
    if approved != Some(true) {
        refund().await?;
        let why = if approved.is_none() { "no approval in time" } else { "rejected" };
        return Err(Error::new(409, format!("{why}: refunded {charged}")));
    }
    let (fail_ship, ship_id) = (order.fail_ship, id.clone());
    let shipped = wf
        .step("ship", StepOptions::once(), |_| async move {
            count(&ship_id, "ship")?;
            if fail_ship { Err(Error::new(422, "the address is unknown")) } else { Ok("shipped".to_owned()) }
        })
        .await;
    if let Err(error) = shipped {
        refund().await?;
        return Err(Error::new(error.status(), format!("{}: refunded {charged}", error.message())));
    }
    Ok(json!({ "charged": charged, "reserved_on_attempt": reserved, "approved_at_ms": ms(wf.now()?) }))
}
// ANCHOR_END: workflow

// ANCHOR: start
/// `POST /orders/{id}` with the order: starts its checkout, named after the order so a retried request starts one.
#[function(trigger = http("/orders/{id}", method = "POST"))]
async fn place(req: Request) -> Result<Response> {
    let id = req.param("id").unwrap_or_default().to_owned();
    req.read_body().await?;
    let mut order: Value = req.json()?;
    order["id"] = json!(id);
    let run = edgefn::workflow::start_with_id("checkout", &order, &format!("order-{id}"))?;
    Response::json(&json!({ "run": run }))
}

/// Each message `{"run": ID, "approved": bool}` approves or rejects that run.
#[function(trigger = queue("approvals", max_wait_ms = 0))]
async fn approvals(batch: Batch<Value>) -> Result<()> {
    for message in &batch {
        let run = message.body()["run"].as_str().unwrap_or_default().to_owned();
        edgefn::workflow::signal(&run, "approved", &message.body()["approved"])?;
    }
    Ok(())
}
// ANCHOR_END: start

/// Five steps of a little work each, every attempt counted in KV `count:RUN:sN`: what a kill in the middle re-runs.
#[function(trigger = workflow)]
async fn five(wf: Workflow, _input: Value) -> Result<u32> {
    let run = wf.run_id();
    let mut total = 0;
    for step in 1..=5u32 {
        let key = format!("count:{run}:s{step}");
        let work = move |_| async move {
            Store::open("default")?.increment(&key, 1)?;
            edgefn::rt::sleep(Duration::from_millis(20)).await;
            Ok(step)
        };
        total += wf.step(&format!("s{step}"), StepOptions::default(), work).await?;
    }
    Ok(total)
}

/// Sleeps `ms`, then takes one step.
#[function(trigger = workflow)]
async fn nap(wf: Workflow, ms: u64) -> Result<String> {
    wf.sleep(Duration::from_millis(ms)).await?;
    wf.step("woke", StepOptions::default(), |_| async { Ok("awake".to_owned()) }).await
}

/// A step whose first attempt outlasts its 200 ms timeout (retried), then a call to `double` as a step.
#[function(trigger = workflow)]
async fn helpers(wf: Workflow, n: u64) -> Result<Value> {
    let timed = StepOptions::default()
        .timeout(Duration::from_millis(200))
        .backoff(Duration::from_millis(50), Duration::from_secs(1));
    let attempts = wf
        .step("slow", timed, |attempt| async move {
            if attempt.number == 1 {
                edgefn::rt::sleep(Duration::from_secs(5)).await;
            }
            Ok(attempt.number)
        })
        .await?;
    let doubled: u64 = wf.invoke("double", StepOptions::default(), "double", &n).await?;
    Ok(json!({ "slow_attempts": attempts, "doubled": doubled }))
}

#[function(trigger = invoke)]
async fn double(n: u64) -> Result<u64> {
    Ok(n * 2)
}

/// `n` steps that do nothing: what journaling a step costs.
#[function(trigger = workflow)]
async fn noop(wf: Workflow, n: u32) -> Result<u32> {
    for i in 0..n {
        wf.step(&format!("s{i}"), StepOptions::default(), |_| async { Ok(()) }).await?;
    }
    Ok(n)
}

// ANCHOR: together
/// Reserves stock and gets a shipping quote at once (a join: quote ends first, so the journal has it before stock;
/// stock's first attempt fails, so the join is retried, and quote, already journaled, is not run again), then has its child `label` make a label, tries a child that
/// fails, and naps in a third child for `nap_ms`. Each attempt is counted in KV (`count:RUN:STEP`).
#[function(trigger = workflow)]
async fn fanout(wf: Workflow, nap_ms: u64) -> Result<Value> {
    let run = wf.run_id();
    let retried = StepOptions::default().backoff(Duration::from_millis(100), Duration::from_secs(1));
    let (stock_run, quote_run) = (run.clone(), run.clone());
    let (stock, quote) = wf
        .join(
            "prepare",
            wf.step("stock", retried, move |attempt| async move {
                count(&stock_run, "stock")?;
                edgefn::rt::sleep(Duration::from_millis(100)).await;
                if attempt.number < 2 { Err(Error::internal("the stock service is down")) } else { Ok(attempt.number) }
            }),
            wf.step("quote", retried, move |_| async move {
                count(&quote_run, "quote")?;
                edgefn::rt::sleep(Duration::from_millis(20)).await;
                Ok(1_250u32)
            }),
        )
        .await?;
    let label: String = wf.child("label", "label", &run).await?;
    let broken = wf.child::<Value, _>("broken", "broken", &()).await.expect_err("the child fails");
    let napped: String = wf.child("nap", "nap", &nap_ms).await?;
    Ok(json!({
        "stock_attempts": stock,
        "quote": quote,
        "label": label,
        "broken": broken.message(),
        "napped": napped,
    }))
}

/// A child: makes the label for `order`, counting itself.
#[function(trigger = workflow)]
async fn label(wf: Workflow, order: String) -> Result<String> {
    wf.step("print", StepOptions::default(), move |_| async move {
        count(&order, "label")?;
        Ok(format!("label for {order}"))
    })
    .await
}

/// One step whose result is `kib` KiB of text: on a cluster, past what one NATS message holds.
#[function(trigger = workflow)]
async fn bulky(wf: Workflow, kib: usize) -> Result<usize> {
    let text = wf.step("bulk", StepOptions::default(), move |_| async move { Ok("x".repeat(kib << 10)) }).await?;
    Ok(text.len())
}

/// A child that fails.
#[function(trigger = workflow)]
async fn broken(_wf: Workflow, _input: Value) -> Result<Value> {
    Err(Error::new(422, "out of ink"))
}
// ANCHOR_END: together

/// `POST /foreign/{run}`: what another component's workflow and an unknown run answer, as text.
#[function(trigger = http("/foreign/{run}", method = "POST"))]
async fn foreign(req: Request) -> Response {
    let run = req.param("run").unwrap_or_default();
    let started = edgefn::workflow::start("order_saga/checkout", &json!({}));
    let signalled = edgefn::workflow::signal(run, "approved", &true);
    Response::text(format!(
        "start: {}\nsignal: {}",
        started.err().map(|e| e.message().to_owned()).unwrap_or_default(),
        signalled.err().map(|e| e.message().to_owned()).unwrap_or_default()
    ))
}

fn ms(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
