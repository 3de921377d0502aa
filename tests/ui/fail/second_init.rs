use edgefn::prelude::*;

#[edgefn::init]
fn first() {}

#[edgefn::init]
fn second() {}

#[function(trigger = http("/x"))]
fn handler(_req: Request) -> Response {
    Response::text("x")
}

fn main() {}
