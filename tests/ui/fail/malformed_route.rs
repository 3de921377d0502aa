use edgefn::prelude::*;

#[function(trigger = http("hello/{name"))]
fn handler(_req: Request) -> Response {
    Response::text("x")
}

fn main() {}
