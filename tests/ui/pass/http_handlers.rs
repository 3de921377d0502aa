use edgefn::prelude::*;

#[function(trigger = http("/hello/{name}"))]
fn hello(req: Request) -> Response {
    Response::text(format!("Hello, {}!", req.param("name").unwrap_or("world")))
}

#[function(trigger = http("/orders", method = "POST"))]
fn create(req: Request) -> Result<Response> {
    let value: serde_json::Value = req.json()?;
    Ok(Response::json(&value)?.with_status(201))
}

#[function(trigger = http("/plain"))]
fn plain(_req: Request) -> &'static str {
    "text"
}

#[function(trigger = http("/files/{*path}", method = "*"))]
fn files(req: Request) -> (u16, String) {
    (200, req.param("path").unwrap_or_default().to_owned())
}

fn main() {
    // The functions stay callable as written.
    assert_eq!(hello(edgefn::testing::get("/hello/ada")).text_body(), "Hello, ada!");
    assert_eq!(edgefn::testing::call(edgefn::testing::get("/files/a/b")).text_body(), "a/b");
    let _ = (create, plain);
}
