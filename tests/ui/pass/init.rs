use edgefn::prelude::*;
use std::sync::OnceLock;

static GREETING: OnceLock<String> = OnceLock::new();

#[edgefn::init]
fn init() -> Result<()> {
    GREETING.set("Hello".to_owned()).map_err(|_| Error::internal("init ran twice"))
}

#[function(trigger = http("/greet/{name}"))]
fn greet(req: Request) -> String {
    format!("{}, {}!", GREETING.get().map(String::as_str).unwrap_or("?"), req.param("name").unwrap_or("world"))
}

fn main() {
    // Through the dispatcher, init runs once before the first handler.
    assert_eq!(edgefn::testing::call(edgefn::testing::get("/greet/ada")).text_body(), "Hello, ada!");
    assert_eq!(edgefn::testing::call(edgefn::testing::get("/greet/bob")).text_body(), "Hello, bob!");
}
