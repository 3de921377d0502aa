use edgefn::prelude::*;

#[function(trigger = htp("/x"))]
fn handler(_req: Request) -> Response {
    Response::text("x")
}

fn main() {}
