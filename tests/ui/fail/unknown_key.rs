use edgefn::prelude::*;

#[function(trigger = http("/x", verb = "POST"))]
fn handler(_req: Request) -> Response {
    Response::text("x")
}

fn main() {}
