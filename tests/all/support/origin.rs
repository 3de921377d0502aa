//! An origin server on 127.0.0.1 for the functions under test to fetch from: it answers after a delay it is told,
//! counts how many requests it serves at once, keeps the headers of each, and serves JSON, an HTML page and large
//! bodies.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running origin; it stops with the test process.
pub(crate) struct Origin {
    pub(crate) url: String,
    /// `host:port`, for `allowed_outbound_hosts`.
    pub(crate) authority: String,
    state: Arc<Seen>,
}

#[derive(Default)]
struct Seen {
    in_flight: AtomicUsize,
    most_at_once: AtomicUsize,
    headers: Mutex<Vec<(String, HashMap<String, String>)>>,
}

impl Origin {
    pub(crate) fn start() -> Self {
        let state = Arc::new(Seen::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the origin");
        listener.set_nonblocking(true).expect("nonblocking");
        let authority = listener.local_addr().expect("address").to_string();
        let url = format!("http://{authority}");
        let app = axum::Router::new()
            .route("/delay/{ms}", axum::routing::get(delayed))
            .route("/json/{name}", axum::routing::get(json))
            .route("/page", axum::routing::get(page))
            .route("/bytes/{n}", axum::routing::get(bytes))
            .route("/redirect", axum::routing::get(redirect))
            .with_state((state.clone(), url.clone()));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
            let runtime = runtime.expect("origin runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("origin listener");
                axum::serve(listener, app).await.expect("serve the origin");
            });
        });
        Self { url, authority, state }
    }

    /// The most requests it was serving at the same time.
    pub(crate) fn most_at_once(&self) -> usize {
        self.state.most_at_once.load(Ordering::SeqCst)
    }

    /// The headers of every request to `path` so far, names in lower case.
    pub(crate) fn headers(&self, path: &str) -> Vec<HashMap<String, String>> {
        let seen = self.state.headers.lock().expect("origin lock");
        seen.iter().filter(|(p, _)| p == path).map(|(_, h)| h.clone()).collect()
    }
}

type Shared = State<(Arc<Seen>, String)>;

/// Counts a request in flight for as long as it lives.
struct InFlight(Arc<Seen>);

impl InFlight {
    fn new(seen: &Arc<Seen>, path: String, headers: &axum::http::HeaderMap) -> Self {
        let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        seen.most_at_once.fetch_max(now, Ordering::SeqCst);
        let headers = headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap_or_default().to_owned()))
            .collect();
        seen.headers.lock().expect("origin lock").push((path, headers));
        Self(seen.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn delayed(State((seen, _)): Shared, Path(ms): Path<u64>, headers: axum::http::HeaderMap) -> String {
    let _counted = InFlight::new(&seen, format!("/delay/{ms}"), &headers);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("origin waited {ms} ms")
}

async fn json(
    State((seen, _)): Shared,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let _counted = InFlight::new(&seen, format!("/json/{name}"), &headers);
    let ms = query.get("ms").and_then(|ms| ms.parse().ok()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    axum::Json(serde_json::json!({ "name": name })).into_response()
}

/// An HTML page, sent in small pieces (so a rewriter sees tags cut across chunks), linking to the origin by its
/// absolute URL and by rooted paths.
async fn page(State((_, url)): Shared) -> Response {
    let html = format!(
        "<!doctype html><html><head><link rel=\"stylesheet\" href=\"/style.css\"></head><body>\
         <h1>The origin</h1><a href=\"{url}/about\">about</a> <a href=\"https://elsewhere.test/x\">away</a>\
         <img src=\"/logo.png\"></body></html>"
    );
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = html.as_bytes().chunks(7).map(|c| Ok(c.to_vec())).collect();
    let body = axum::body::Body::from_stream(futures_util::stream::iter(pieces));
    ([("content-type", "text/html; charset=utf-8"), ("server", "origin/1.0")], body).into_response()
}

/// `n` bytes of `abcdefghij`, in 64 KiB pieces.
async fn bytes(Path(n): Path<usize>) -> Response {
    let pieces = (0..n.div_ceil(64 << 10)).map(move |i| {
        let len = (n - i * (64 << 10)).min(64 << 10);
        Ok::<_, std::io::Error>((0..len).map(|j| b'a' + ((i * (64 << 10) + j) % 10) as u8).collect::<Vec<u8>>())
    });
    let body = axum::body::Body::from_stream(futures_util::stream::iter(pieces));
    ([("content-type", "application/octet-stream"), ("x-powered-by", "origin")], body).into_response()
}

async fn redirect(State((_, url)): Shared) -> Response {
    (axum::http::StatusCode::FOUND, [("location", format!("{url}/page"))]).into_response()
}
