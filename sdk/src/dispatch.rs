//! Routing inside a component: every `#[function]` registers itself here, and each request goes to the one whose
//! route matches, with 404 and 405 answered the way the host answers them.

use crate::{Error, REQUEST_ID_HEADER, Request, Response};
use edgefn_manifest::router::{Lookup, Router};
use http::HeaderValue;
use std::cell::RefCell;
use std::sync::OnceLock;

/// One HTTP function, as registered by `#[function]`.
#[derive(Debug)]
pub struct HttpFunction {
    pub name: &'static str,
    pub route: &'static str,
    pub method: &'static str,
    pub handler: fn(Request) -> Response,
}

inventory::collect!(HttpFunction);

fn router() -> &'static Router<&'static HttpFunction> {
    static ROUTER: OnceLock<Router<&'static HttpFunction>> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let mut router = Router::new();
        for function in inventory::iter::<HttpFunction> {
            // The macro validated the route, and rejects duplicates within a module; the host refuses components
            // with duplicates across modules before they serve anything. Reaching this is a bug worth shouting.
            if let Err(e) = router.insert_str(function.route, function.method, function) {
                eprintln!("edgefn: function `{}` not routed: {e}", function.name);
            }
        }
        router
    })
}

/// Builds the route table now rather than on the first request, so that a snapshot holds it.
#[cfg(target_family = "wasm")]
pub(crate) fn warm_up() {
    router();
}

thread_local! {
    /// The id of the request being handled, so an error response built anywhere can carry it.
    static CURRENT_REQUEST_ID: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The route parameters `path` would get, if a registered route matches it.
pub(crate) fn route_params(method: &str, path: &str) -> Vec<(String, String)> {
    match router().lookup(method, path) {
        Lookup::Found { params, .. } => params,
        _ => Vec::new(),
    }
}

/// Handles one request: routes it, runs the handler, and returns its response.
pub(crate) fn dispatch(mut request: http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
    let request_id = match request.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()) {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => {
            let id = new_request_id();
            if let Ok(value) = HeaderValue::try_from(id.as_str()) {
                request.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            id
        }
    };
    CURRENT_REQUEST_ID.with(|current| current.replace(request_id.clone()));
    if let Err(message) = crate::init::ensure() {
        return error_response(&Error::internal(message)).into_inner();
    }

    let response = match router().lookup(request.method().as_str(), request.uri().path()) {
        Lookup::Found { route, params } => (route.value.handler)(Request::with_params(request, params)),
        Lookup::MethodNotAllowed { allowed } => {
            let message = format!("method {} is not allowed here; allowed: {}", request.method(), allowed.join(", "));
            error_response(&Error::new(405, message)).with_header("allow", &allowed.join(", "))
        }
        Lookup::NotFound => error_response(&Error::not_found(format!("no function at {}", request.uri().path()))),
    };
    let mut response = response.into_inner();
    if let Ok(value) = HeaderValue::try_from(request_id.as_str()) {
        response.headers_mut().entry(REQUEST_ID_HEADER).or_insert(value);
    }
    response
}

/// The JSON error body every failure produces: `{"error": ..., "status": ..., "request_id": ...}`.
pub(crate) fn error_response(error: &Error) -> Response {
    let request_id = CURRENT_REQUEST_ID.with(|current| current.borrow().clone());
    let status = error.status_code();
    let message = if status.is_server_error() {
        // The details go to the log, which the operator reads; the caller gets the request id to quote.
        eprintln!("edgefn: request {request_id} failed with {}: {error}", status.as_u16());
        status.canonical_reason().unwrap_or("server error").to_lowercase()
    } else {
        error.message().to_owned()
    };
    let body = serde_json::json!({ "error": message, "status": status.as_u16(), "request_id": request_id });
    Response::bytes(body.to_string().into_bytes())
        .with_status(status.as_u16())
        .with_header("content-type", "application/json")
}

/// A fresh request id for requests that arrive without one (e.g. under `wasmtime serve`).
fn new_request_id() -> String {
    #[cfg(target_family = "wasm")]
    let (a, b) = (wasip2::random::random::get_random_u64(), wasip2::random::random::get_random_u64());
    #[cfg(not(target_family = "wasm"))]
    let (a, b) = {
        use std::hash::{BuildHasher, RandomState};
        let state = RandomState::new();
        (state.hash_one(std::time::SystemTime::now()), state.hash_one(std::thread::current().id()))
    };
    format!("{a:016x}{b:016x}")
}
