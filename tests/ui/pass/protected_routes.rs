use edgefn::prelude::*;

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
}

#[function(trigger = http("/orders", method = "POST", auth = "main", scopes = ["orders:write", "admin"]))]
fn create(req: Request) -> Result<Response> {
    let claims: Claims = req.claims_as()?;
    Ok(Response::text(claims.sub))
}

#[function(trigger = http("/me", auth = "main"))]
fn me(req: Request) -> Response {
    Response::text(req.claims().map(|c| c.to_string()).unwrap_or_default())
}

fn main() {
    // Scopes are checked natively as on a host: none of the route's is a 403, any one of them is enough.
    let unscoped = edgefn::testing::request("POST", "/orders").claims(serde_json::json!({ "sub": "ada" }));
    assert_eq!(edgefn::testing::call(unscoped).status(), 403);
    let ada = edgefn::testing::request("POST", "/orders").claims(serde_json::json!({ "sub": "ada", "scope": "admin" }));
    assert_eq!(edgefn::testing::call(ada).text_body(), "ada");
    assert_eq!(edgefn::testing::call(edgefn::testing::get("/me")).status(), 401);
}
