//! Two functions that do the same thing, one open and one behind the host's authorizer `bench`: the difference in
//! req/s between them is what verifying a token costs (`bench/kv-jwt.sh`).

use edgefn::prelude::*;

#[function(trigger = http("/open"))]
fn open(_req: Request) -> Response {
    Response::text("ok")
}

#[function(trigger = http("/protected", auth = "bench"))]
fn protected(_req: Request) -> Response {
    Response::text("ok")
}
