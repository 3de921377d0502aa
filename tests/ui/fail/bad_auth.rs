use edgefn::prelude::*;

// Scopes are checked by an authorizer: without one they would protect nothing.
#[function(trigger = http("/a", scopes = ["orders:write"]))]
fn scopes_without_auth(_req: Request) -> Response {
    Response::text("a")
}

#[function(trigger = http("/b", auth = "has space"))]
fn bad_authorizer_name(_req: Request) -> Response {
    Response::text("b")
}

#[function(trigger = http("/c", auth = "main", scopes = ["two words"]))]
fn bad_scope(_req: Request) -> Response {
    Response::text("c")
}

#[function(trigger = http("/d", auth = "main", scopes = "orders:write"))]
fn scopes_not_a_list(_req: Request) -> Response {
    Response::text("d")
}

fn main() {}
