use edgefn::prelude::*;

#[function(trigger = http("/x", method = "FETCH"))]
fn handler(_req: Request) -> Response {
    Response::text("x")
}

fn main() {}
