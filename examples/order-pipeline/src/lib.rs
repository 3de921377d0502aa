//! The order-pipeline example: pipes and filters, fan-out and a command.
//!
//! ```text
//! POST /pipeline/orders ──▶ queue "orders" ──▶ enrich ──▶ topic "order.created" ──┬─▶ invoice (invokes `tax`)
//!   (accept)                  (retries, orders-dlq)                               └─▶ notify
//! ```
//!
//! `accept` validates the shape and enqueues; `enrich` checks the business rules (a bad order is dead-lettered
//! with the reason, the rest of the batch goes on), computes totals and publishes; each subscriber gets its own
//! durable copy. `invoice` calls the `tax` function synchronously with `edgefn::invoke`. Subscribers post to
//! `INVOICE_WEBHOOK_URL` / `NOTIFY_WEBHOOK_URL` when configured, and print otherwise.

use edgefn::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub sku: String,
    pub quantity: u32,
    pub unit_price_cents: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub customer: String,
    /// ISO country code, for tax.
    #[serde(default = "default_country")]
    pub country: String,
    pub items: Vec<Item>,
}

fn default_country() -> String {
    "DE".to_owned()
}

/// An order after `enrich`: what `order.created` carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreated {
    pub order: Order,
    pub subtotal_cents: u64,
    pub item_count: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TaxRequest {
    pub country: String,
    pub amount_cents: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Tax {
    pub rate_percent: u64,
    pub tax_cents: u64,
}

// ANCHOR: accept
#[function(trigger = http("/pipeline/orders", method = "POST"))]
fn accept(req: Request) -> Result<Response> {
    let order: Order = req.json()?;
    if order.items.is_empty() {
        return Err(Error::bad_request("an order needs at least one item"));
    }
    let message_id = edgefn::queue::send("orders", &order)?;
    Ok(Response::json(&json!({ "accepted": order.id, "message_id": message_id }))?.with_status(202))
}
// ANCHOR_END: accept

// ANCHOR: enrich
#[function(trigger = queue("orders", batch_size = 10, max_wait_ms = 200, max_retries = 5, dead_letter = "orders-dlq"))]
fn enrich(batch: Batch<Order>) -> Result<()> {
    for message in &batch {
        let order = message.body();
        if let Some(item) = order.items.iter().find(|item| item.quantity == 0) {
            message.dead_letter(format!("item `{}` has quantity 0", item.sku));
            continue;
        }
        // ANCHOR: price_span
        // A span of its own in the trace the host exports (OpenTelemetry, when `[otel]` is on).
        let mut span = edgefn::trace::span("price order");
        let created = OrderCreated {
            order: order.clone(),
            subtotal_cents: order.items.iter().map(|i| i.unit_price_cents * u64::from(i.quantity)).sum(),
            item_count: order.items.iter().map(|i| i.quantity).sum(),
        };
        span.set("order", order.id);
        span.set("subtotal_cents", created.subtotal_cents);
        span.end();
        // ANCHOR_END: price_span
        // Printed lines land in the host's log under this work's correlation id: `edgefn logs --id ID`.
        println!("enriched order {}: {} items, {} cents", order.id, created.item_count, created.subtotal_cents);
        edgefn::topic::publish("order.created", &created)?;
        // Acked one by one: if a later publish fails, the orders already published are not published again.
        message.ack();
    }
    Ok(())
}
// ANCHOR_END: enrich

// ANCHOR: tax
/// The command: VAT by country.
#[function(trigger = invoke)]
fn tax(request: TaxRequest) -> Result<Tax> {
    let rate_percent = match request.country.as_str() {
        "DE" => 19,
        "FR" | "GB" => 20,
        "US" => 0,
        other => return Err(Error::bad_request(format!("no tax rule for country `{other}`"))),
    };
    Ok(Tax { rate_percent, tax_cents: request.amount_cents * rate_percent / 100 })
}
// ANCHOR_END: tax

fn deliver(webhook_key: &str, value: &serde_json::Value) -> Result<()> {
    match edgefn::config::get(webhook_key) {
        Some(url) => {
            let response = edgefn::fetch::post_json(&url, value)?;
            if !response.status().is_success() {
                return Err(Error::internal(format!("{webhook_key} answered HTTP {}", response.status().as_u16())));
            }
            Ok(())
        }
        None => {
            println!("{value}");
            Ok(())
        }
    }
}

// ANCHOR: invoice
#[function(trigger = topic("order.created"))]
fn invoice(batch: Batch<OrderCreated>) -> Result<()> {
    for message in &batch {
        let created = message.body();
        let request = TaxRequest { country: created.order.country.clone(), amount_cents: created.subtotal_cents };
        let tax: Tax = edgefn::invoke("tax", &request)?;
        let invoice = json!({
            "invoice_for": created.order.id,
            "customer": created.order.customer,
            "subtotal_cents": created.subtotal_cents,
            "tax_cents": tax.tax_cents,
            "total_cents": created.subtotal_cents + tax.tax_cents,
        });
        deliver("INVOICE_WEBHOOK_URL", &invoice)?;
        message.ack();
    }
    Ok(())
}
// ANCHOR_END: invoice

#[function(trigger = topic("order.created"))]
fn notify(batch: Batch<OrderCreated>) -> Result<()> {
    for message in &batch {
        let created = message.body();
        let text = format!(
            "Thanks {}, order {} ({} items) is confirmed",
            created.order.customer, created.order.id, created.item_count
        );
        deliver("NOTIFY_WEBHOOK_URL", &json!({ "order": created.order.id, "text": text }))?;
        message.ack();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(quantity: u32) -> Order {
        Order {
            id: 7,
            customer: "ada".into(),
            country: "DE".into(),
            items: vec![Item { sku: "tea".into(), quantity, unit_price_cents: 250 }],
        }
    }

    // ANCHOR: native_tests
    #[test]
    fn accept_enqueues_the_order() {
        let response = accept(edgefn::testing::post_json("/pipeline/orders", &order(2)));
        assert_eq!(response.unwrap().status(), 202);
        let sent = edgefn::testing::outbox();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].name, "orders");
        assert_eq!(serde_json::from_slice::<Order>(&sent[0].body).unwrap(), order(2));
    }

    #[test]
    fn enrich_publishes_totals_and_dead_letters_a_bad_order() {
        enrich(edgefn::testing::batch(&[order(2), order(0)])).unwrap();
        let sent = edgefn::testing::outbox();
        assert_eq!(sent.len(), 1, "only the good order is published");
        let created: OrderCreated = serde_json::from_slice(&sent[0].body).unwrap();
        assert_eq!((created.subtotal_cents, created.item_count), (500, 2));
        let settled = edgefn::testing::settlements();
        assert_eq!(settled[0], ("1".to_owned(), edgefn::queue::Settled::Ack));
        assert!(
            matches!(&settled[1], (id, edgefn::queue::Settled::DeadLetter(reason)) if id == "2" && reason.contains("quantity 0"))
        );
    }

    #[test]
    fn tax_by_country() {
        let tax = tax(TaxRequest { country: "DE".into(), amount_cents: 1000 }).unwrap();
        assert_eq!(tax.tax_cents, 190);
        // Natively, `invoke` calls the registered function in-process.
        let via_invoke: Tax = edgefn::invoke("tax", &TaxRequest { country: "FR".into(), amount_cents: 1000 }).unwrap();
        assert_eq!(via_invoke.tax_cents, 200);
    }
    // ANCHOR_END: native_tests
}
