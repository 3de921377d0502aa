//! Routing inside a component: every `#[function]` registers itself here, and each request goes to the one whose
//! route matches, with 404 and 405 answered the way the host answers them.

use crate::{Error, REQUEST_ID_HEADER, Request, Response};
use edgefn_manifest::record::{CLAIMS_HEADER, HOST_AUTH_HEADER};
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
    /// `auth = "NAME"`: the host's authorizer that must have verified the request.
    pub guard: Option<Guard>,
    pub handler: fn(Request) -> Response,
}

/// What protects a route with `auth = "NAME"`.
#[derive(Debug)]
pub struct Guard {
    pub authorizer: &'static str,
    /// [`host_verified`], referenced only by protected routes: a component without any does not import
    /// `wasi:cli/environment` for it.
    pub host_verified: fn(Option<&HeaderValue>) -> bool,
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
    /// The correlation id of the work being handled (an HTTP request's id, a cron run's, a delivery's, an invoke's),
    /// so an error response built anywhere can carry it, and [`correlation_id`] can give it.
    static CURRENT_REQUEST_ID: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Sets the correlation id of the work being handled.
#[cfg_attr(not(target_family = "wasm"), expect(dead_code, reason = "called by the component's exports only"))]
pub(crate) fn set_correlation_id(id: &str) {
    CURRENT_REQUEST_ID.with(|current| {
        let mut current = current.borrow_mut();
        current.clear();
        current.push_str(id);
    });
}

/// The correlation id of the work being handled: the HTTP request's id (its `x-request-id`), the cron run's, the
/// delivery's or the invoke caller's. Everything the function sends, publishes or invokes carries it (the host
/// attaches it), and `edgefn logs --id ID` shows it all. Empty outside a handler.
pub fn correlation_id() -> String {
    CURRENT_REQUEST_ID.with(|current| current.borrow().clone())
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

    // Only the host sets these; whatever the route, the function never sees them.
    let marker = request.headers_mut().remove(HOST_AUTH_HEADER);
    let claims = request.headers_mut().remove(CLAIMS_HEADER);
    let response = match router().lookup(request.method().as_str(), request.uri().path()) {
        Lookup::Found { route, params } => match verified_claims(route.value, marker.as_ref(), claims.as_ref()) {
            Ok(claims) => (route.value.handler)(Request::with_params(request, params).with_claims(claims)),
            Err(refusal) => *refusal,
        },
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

/// A protected route's claims, if the host verified its token; otherwise the 401 that refuses it. A route without
/// `auth` has none.
///
/// In a component, "the host verified it" means the request carries the component's host-auth token, which only
/// an edgefn host that enforced the route's authorizer sends: under any other host a protected route fails closed.
/// In native tests the claims come from `edgefn::testing::TestRequest::claims`.
fn verified_claims(
    function: &HttpFunction,
    marker: Option<&HeaderValue>,
    claims: Option<&HeaderValue>,
) -> Result<Option<serde_json::Value>, Box<Response>> {
    let Some(guard) = &function.guard else { return Ok(None) };
    let authorizer = guard.authorizer;
    let refuse = |message: String| {
        let refusal = error_response(&Error::new(401, message));
        Err(Box::new(refusal.with_header("www-authenticate", r#"Bearer error="invalid_token""#)))
    };
    if !(guard.host_verified)(marker) {
        return refuse(format!(
            "this route is protected by authorizer `{authorizer}`, which this host did not enforce; refusing"
        ));
    }
    let decoded = claims
        .and_then(|value| {
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, value.as_bytes()).ok()
        })
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok());
    match decoded {
        Some(claims) => Ok(Some(claims)),
        None => refuse("a valid bearer token is required".to_owned()),
    }
}

/// Whether the request carries this component's host-auth token (read from the environment on every request:
/// a value cached here could be baked into the snapshot).
#[cfg(target_family = "wasm")]
pub fn host_verified(marker: Option<&HeaderValue>) -> bool {
    let Some(marker) = marker else { return false };
    let expected = wasip2::cli::environment::get_environment()
        .into_iter()
        .find_map(|(name, value)| (name == edgefn_manifest::record::HOST_AUTH_ENV).then_some(value));
    match expected {
        Some(expected) if !expected.is_empty() => constant_time_eq(marker.as_bytes(), expected.as_bytes()),
        _ => false,
    }
}

/// Natively there is no host: tests pass claims directly.
#[cfg(not(target_family = "wasm"))]
pub fn host_verified(_marker: Option<&HeaderValue>) -> bool {
    true
}

#[cfg(target_family = "wasm")]
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
pub(crate) fn new_request_id() -> String {
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
