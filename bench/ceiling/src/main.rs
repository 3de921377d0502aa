//! The native ceilings of the benchmarks: what HTTP alone costs on this machine, for each shape of work edgefn is
//! measured on, from plain axum handlers on tokio's default multi-threaded runtime (the same HTTP stack edgefn
//! serves with: hyper under axum). No sandbox, no instance, no routing table of functions: the difference between
//! these and edgefn is what the sandbox and the platform cost.
//!
//! - `GET /hello/{name}`: `Hello, {name}!` as `text/plain; charset=utf-8`, what the hello example answers (a);
//! - `GET /proxy/{*path}`: a streaming reverse proxy to `$ORIGIN/{path}` (the edge-proxy example's native twin);
//! - `GET /sse`: one server-sent event, `data: tick 0`, sent at once (the live-feed example's first event);
//! - as an origin: `GET /bytes/{n}` (`n` bytes, 64 KiB at a time) and `GET /delay/{ms}` (answers after `ms`);
//! - with `STATIC_DIR` set, every other path from that folder by tower-http's `ServeDir` with its defaults (the
//!   static files' twin).
//!
//! ```text
//! ORIGIN=http://127.0.0.1:18190 STATIC_DIR=./site bench-ceiling 127.0.0.1:18182
//! ```

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Router, routing::get};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

async fn hello(Path(name): Path<String>) -> String {
    format!("Hello, {name}!")
}

/// What the proxy forwards to, and the client it forwards with.
#[derive(Clone)]
struct Upstream {
    origin: String,
    client: Client<HttpConnector, Body>,
}

async fn proxy(State(upstream): State<Upstream>, Path(path): Path<String>) -> Response {
    let uri = format!("{}/{path}", upstream.origin);
    let request = match hyper::Request::get(uri).body(Body::empty()) {
        Ok(request) => request,
        Err(error) => return (hyper::StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    match upstream.client.request(request).await {
        // The body is passed on as it arrives, as edgefn's forward does.
        Ok(response) => response.map(Body::new).into_response(),
        Err(error) => (hyper::StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}

async fn sse() -> Response {
    ([("content-type", "text/event-stream"), ("cache-control", "no-cache")], "data: tick 0\n\n").into_response()
}

async fn bytes(Path(n): Path<usize>) -> Response {
    const PIECE: usize = 64 << 10;
    let piece = bytes::Bytes::from(vec![b'x'; PIECE]);
    let pieces =
        (0..n.div_ceil(PIECE)).map(move |i| Ok::<_, std::io::Error>(piece.slice(..(n - i * PIECE).min(PIECE))));
    Body::from_stream(futures_util::stream::iter(pieces)).into_response()
}

async fn delay(Path(ms): Path<u64>) -> &'static str {
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    "ok"
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18182".to_owned());
    let origin = std::env::var("ORIGIN").unwrap_or_else(|_| format!("http://{address}"));
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("bench-ceiling listening on {}", listener.local_addr()?);
    // As edgefn's server does: without it, a response written in two pieces (ServeDir's headers, then the file)
    // waits out Nagle's algorithm against the client's delayed ACK, about 40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream: &mut tokio::net::TcpStream| {
        let _ = stream.set_nodelay(true);
    });
    let upstream = Upstream { origin, client: Client::builder(TokioExecutor::new()).build_http() };
    let app = Router::new()
        .route("/hello/{name}", get(hello))
        .route("/proxy/{*path}", get(proxy))
        .route("/sse", get(sse))
        .route("/bytes/{n}", get(bytes))
        .route("/delay/{ms}", get(delay))
        .with_state(upstream);
    let app = match std::env::var_os("STATIC_DIR") {
        Some(dir) => app.fallback_service(tower_http::services::ServeDir::new(dir)),
        None => app,
    };
    axum::serve(listener, app).await
}
