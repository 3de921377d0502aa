//! The hello example: path parameters, a JSON POST and an error path.
//!
//! ```text
//! curl localhost:8080/hello/ada                                  # Hello, ada!
//! curl -X POST localhost:8080/orders -d '{"item":"tea","quantity":2}'   # 201 with the order echoed, with an id
//! curl localhost:8080/orders/0                                   # 404 with a JSON error body
//! ```

use edgefn::prelude::*;
use serde::{Deserialize, Serialize};

#[function(trigger = http("/hello/{name}"))]
fn hello(req: Request) -> Response {
    Response::text(format!("Hello, {}!", req.param("name").unwrap_or("world")))
}

/// An order as posted by a client.
#[derive(Debug, Deserialize)]
struct NewOrder {
    item: String,
    quantity: u32,
}

/// An order as stored and returned.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Order {
    id: u64,
    item: String,
    quantity: u32,
}

#[function(trigger = http("/orders", method = "POST"))]
fn create_order(req: Request) -> Result<Response> {
    let order: NewOrder = req.json()?;
    if order.quantity == 0 {
        return Err(Error::bad_request("quantity must be at least 1"));
    }
    // A deterministic id: the same order always gets the same id, so retries are idempotent.
    let id = order.item.bytes().fold(u64::from(order.quantity), |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let order = Order { id, item: order.item, quantity: order.quantity };
    Ok(Response::json(&order)?.with_status(201))
}

#[function(trigger = http("/orders/{id}"))]
fn get_order(req: Request) -> Result<Response> {
    let id: u64 =
        req.param("id").unwrap_or_default().parse().map_err(|_| Error::bad_request("order id must be a number"))?;
    // This example keeps no state, so every lookup is a miss: the error path, with a JSON body and request id.
    Err(Error::not_found(format!("order {id} does not exist")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgefn::testing;

    #[test]
    fn hello_uses_the_path_parameter() {
        let response = hello(testing::get("/hello/ada"));
        assert_eq!(response.status(), 200);
        assert_eq!(response.text_body(), "Hello, ada!");
    }

    #[test]
    fn create_order_echoes_the_order_with_201() {
        let response = testing::call(testing::post_json("/orders", &NewOrderBody { item: "tea", quantity: 2 }));
        assert_eq!(response.status(), 201);
        let order: Order = response.json_body().unwrap();
        assert_eq!((order.item.as_str(), order.quantity), ("tea", 2));
    }

    #[test]
    fn bad_json_is_400() {
        let response = testing::call(testing::post("/orders", "{not json"));
        assert_eq!(response.status(), 400);
        assert!(response.text_body().contains("not valid JSON"), "{}", response.text_body());
    }

    #[test]
    fn missing_order_is_404_with_a_json_error() {
        let response = testing::call(testing::get("/orders/7"));
        assert_eq!(response.status(), 404);
        assert!(response.text_body().contains("order 7 does not exist"));
    }

    #[derive(Serialize)]
    struct NewOrderBody {
        item: &'static str,
        quantity: u32,
    }
}
