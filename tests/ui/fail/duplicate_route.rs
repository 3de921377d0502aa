use edgefn::prelude::*;

#[function(trigger = http("/hello/{name}"))]
fn first(_req: Request) -> Response {
    Response::text("first")
}

#[function(trigger = http("/hello/{id}"))]
fn second(_req: Request) -> Response {
    Response::text("second")
}

fn main() {}
