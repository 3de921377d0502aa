//! The native ceiling of benchmark (a): what HTTP alone costs on this machine.
//!
//! It answers `GET /hello/{name}` with `Hello, {name}!` as `text/plain; charset=utf-8`, exactly what the hello
//! example answers through edgefn, from a native axum handler on tokio's default multi-threaded runtime (the same
//! HTTP stack edgefn serves with: hyper under axum). No sandbox, no instance, no routing table of functions: the
//! difference between this and edgefn is what the sandbox and the platform cost.
//!
//! ```text
//! bench-ceiling 127.0.0.1:18182
//! ```

use axum::{Router, extract::Path, routing::get};

async fn hello(Path(name): Path<String>) -> String {
    format!("Hello, {name}!")
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18182".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("bench-ceiling listening on {}", listener.local_addr()?);
    let app = Router::new().route("/hello/{name}", get(hello));
    axum::serve(listener, app).await
}
