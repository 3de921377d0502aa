//! __CRATE__: HTTP functions. `edgefn deploy .` builds and deploys them; `cargo test` runs them natively.

use edgefn::prelude::*;
use serde::{Deserialize, Serialize};

/// `GET /__ROUTE__/hello/{name}?greeting=Hi`: an async handler (it could `.await` a fetch, a timer, a stream).
#[function(trigger = http("/__ROUTE__/hello/{name}"))]
async fn hello(req: Request) -> Response {
    let name = req.param("name").unwrap_or("world");
    let greeting = req.query("greeting").unwrap_or("Hello");
    Response::text(format!("{greeting}, {name}!"))
}

/// An item to create.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub name: String,
    pub quantity: u32,
}

/// `POST /__ROUTE__/items` with a JSON item: 201 with the item, 400 when it is not valid. A plain `fn` works too.
#[function(trigger = http("/__ROUTE__/items", method = "POST"))]
fn create_item(req: Request) -> Result<Response> {
    let item: Item = req.json()?;
    if item.quantity == 0 {
        return Err(Error::bad_request("quantity must be at least 1"));
    }
    Ok(Response::json(&item)?.with_status(201))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgefn::testing;

    #[test]
    fn says_hello_with_the_route_parameter_and_the_query() {
        assert_eq!(testing::call(testing::get("/__ROUTE__/hello/ada")).text_body(), "Hello, ada!");
        // An async handler is a plain async fn: run it to its end with `block_on`.
        let hi = edgefn::rt::block_on(hello(testing::get("/__ROUTE__/hello/ada?greeting=Hi")));
        assert_eq!(hi.text_body(), "Hi, ada!");
    }

    #[test]
    fn creates_items_and_refuses_bad_ones() {
        let created = testing::call(testing::post_json("/__ROUTE__/items", &Item { name: "tea".into(), quantity: 2 }));
        assert_eq!(created.status(), 201);
        let zero = testing::call(testing::post_json("/__ROUTE__/items", &Item { name: "tea".into(), quantity: 0 }));
        assert_eq!(zero.status(), 400);
        assert_eq!(testing::call(testing::post("/__ROUTE__/items", "{not json")).status(), 400);
        assert_eq!(testing::call(testing::get("/__ROUTE__/items")).status(), 405);
    }
}
