use edgefn::prelude::*;

#[function(trigger = http("/x"))]
fn handler(_req: Request) -> Response {
    edgefn::rt::sleep(std::time::Duration::from_millis(1)).await;
    Response::text("x")
}

fn main() {}
