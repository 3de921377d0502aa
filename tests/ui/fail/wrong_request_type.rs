use edgefn::prelude::*;

#[function(trigger = http("/x"))]
fn handler(_req: String) -> Response {
    Response::text("x")
}

fn main() {}
