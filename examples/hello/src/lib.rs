//! The hello example: path parameters, a redirect with a cookie, a JSON POST and an error path.
//!
//! ```text
//! curl localhost:8080/hello/ada                                  # Hello, ada!
//! curl -i localhost:8080/go/ada                                  # 302 to http://localhost:8080/hello/ada, a cookie
//! curl -X POST localhost:8080/orders -d '{"item":"tea","quantity":2}'   # 201 with the order echoed, with an id
//! curl localhost:8080/orders/0                                   # 404 with a JSON error body
//! ```

use edgefn::prelude::*;
use serde::{Deserialize, Serialize};

// ANCHOR: hello
#[function(trigger = http("/hello/{name}"))]
fn hello(req: Request) -> Response {
    let name = match req.param("name") {
        Some("_") => req.cookie("last").unwrap_or("stranger"),
        name => name.unwrap_or("world"),
    };
    Response::text(format!("Hello, {name}!"))
}
// ANCHOR_END: hello

// ANCHOR: go
/// A short link to `/hello/{name}` on this same host: the absolute `Location` is built from the URL the client
/// asked for (its host and port), and the name is remembered in a cookie, which `/hello` reads when the path
/// names nobody (`/hello/_`).
#[function(trigger = http("/go/{name}"))]
fn go(req: Request) -> Response {
    // The raw (still percent-encoded) segment, so the Location stays a valid URL.
    let segment = req.path().trim_start_matches("/go/");
    let last = edgefn::cookie::Cookie::build(("last", req.param("name").unwrap_or_default().to_owned()))
        .path("/")
        .http_only(true)
        .same_site(edgefn::cookie::SameSite::Lax);
    Response::redirect(&format!("{}/hello/{segment}", req.origin())).with_cookie(last)
}
// ANCHOR_END: go

// ANCHOR: orders
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
// ANCHOR_END: orders

#[cfg(test)]
mod tests {
    use super::*;
    use edgefn::testing;

    // ANCHOR: test_hello
    #[test]
    fn hello_uses_the_path_parameter() {
        let response = hello(testing::get("/hello/ada"));
        assert_eq!(response.status(), 200);
        assert_eq!(response.text_body(), "Hello, ada!");
    }
    // ANCHOR_END: test_hello

    // ANCHOR: test_go
    #[test]
    fn go_redirects_to_this_host_and_remembers_the_name() {
        let request = testing::request("GET", "/go/grace%20hopper").header("host", "links.example:8080");
        let response = testing::call(request);
        assert_eq!(response.status(), 302);
        assert_eq!(response.header("location"), Some("http://links.example:8080/hello/grace%20hopper"));
        assert_eq!(response.header("set-cookie"), Some("last=grace%20hopper; HttpOnly; SameSite=Lax; Path=/"));
        let back = testing::call(testing::request("GET", "/hello/_").header("cookie", "last=grace%20hopper"));
        assert_eq!(back.text_body(), "Hello, grace hopper!");
        assert_eq!(testing::call(testing::get("/hello/_")).text_body(), "Hello, stranger!");
    }
    // ANCHOR_END: test_go

    #[test]
    fn create_order_echoes_the_order_with_201() {
        let response = testing::call(testing::post_json("/orders", &NewOrderBody { item: "tea", quantity: 2 }));
        assert_eq!(response.status(), 201);
        let order: Order = response.json_body().unwrap();
        assert_eq!((order.item.as_str(), order.quantity), ("tea", 2));
    }

    // ANCHOR: test_bad_json
    #[test]
    fn bad_json_is_400() {
        let response = testing::call(testing::post("/orders", "{not json"));
        assert_eq!(response.status(), 400);
        assert!(response.text_body().contains("not valid JSON"), "{}", response.text_body());
    }
    // ANCHOR_END: test_bad_json

    // ANCHOR: test_404
    #[test]
    fn missing_order_is_404_with_a_json_error() {
        let response = testing::call(testing::get("/orders/7"));
        assert_eq!(response.status(), 404);
        assert!(response.text_body().contains("order 7 does not exist"));
    }
    // ANCHOR_END: test_404

    #[derive(Serialize)]
    struct NewOrderBody {
        item: &'static str,
        quantity: u32,
    }
}
