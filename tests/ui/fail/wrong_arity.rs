use edgefn::prelude::*;

#[function(trigger = http("/x"))]
fn handler(_req: Request, _extra: u32) -> Response {
    Response::text("x")
}

fn main() {}
