use edgefn::prelude::*;

#[function(trigger = http("/x"))]
async fn handler(_req: Request) -> Response {
    Response::text("x")
}

fn main() {}
