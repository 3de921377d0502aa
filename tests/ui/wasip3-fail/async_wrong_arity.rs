use edgefn::prelude::*;

#[function(trigger = http("/x"))]
async fn handler(_req: Request, _extra: u8) -> Response {
    Response::text("x")
}

fn main() {}
