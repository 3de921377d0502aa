use edgefn::prelude::*;

#[function(trigger = http("/x", method = "POST", method = "PUT"))]
fn handler(_req: Request) -> Response {
    Response::text("x")
}

fn main() {}
