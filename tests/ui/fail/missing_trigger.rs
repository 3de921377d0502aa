use edgefn::prelude::*;

#[function]
fn handler(_req: Request) -> Response {
    Response::text("x")
}

fn main() {}
