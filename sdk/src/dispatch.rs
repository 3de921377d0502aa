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
    pub handler: HttpHandler,
}

/// How an HTTP function is called.
#[derive(Debug, Clone, Copy)]
pub enum HttpHandler {
    /// `fn(Request) -> impl IntoResponse`: gets the body whole.
    Sync(fn(Request) -> Response),
    /// `async fn(Request) -> impl IntoResponse`: gets the body as it arrives (with the `wasip3` feature).
    Async(fn(Request) -> crate::rt::LocalBoxFuture<'static, Response>),
}

/// What protects a route with `auth = "NAME"`.
#[derive(Debug)]
pub struct Guard {
    pub authorizer: &'static str,
    /// `scopes = [...]`: a token needs one of them (none listed: any verified token).
    pub scopes: &'static [&'static str],
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

/// Sets the correlation id of the work being handled; returns the one it replaces. Tasks of one WASI 0.3 instance
/// interleave on its one thread, so an async handler's future sets it around each of its polls (`rt::Scoped`).
pub(crate) fn set_correlation_id(id: &str) -> String {
    CURRENT_REQUEST_ID.with(|current| std::mem::replace(&mut *current.borrow_mut(), id.to_owned()))
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

/// Where a request goes: to a handler (with its parameters and claims in the request), or straight to an answer (404,
/// 405, 401 on a protected route the host did not vouch for, a failed init).
pub(crate) enum Routed {
    Call(&'static HttpFunction, Box<Request>),
    Answer(Response),
}

/// Routes one request and makes it the current work: its request id (taken from `x-request-id`, or new) is the
/// correlation id from here on. Returns the id, for [`finish`].
pub(crate) fn route(mut request: http::Request<Vec<u8>>) -> (String, Routed) {
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
    set_correlation_id(&request_id);
    if let Err(message) = crate::init::ensure() {
        return (request_id, Routed::Answer(error_response(&Error::internal(message))));
    }

    // Only the host sets these; whatever the route, the function never sees them.
    let marker = request.headers_mut().remove(HOST_AUTH_HEADER);
    let claims = request.headers_mut().remove(CLAIMS_HEADER);
    let routed = match router().lookup(request.method().as_str(), request.uri().path()) {
        Lookup::Found { route, params } => match verified_claims(route.value, marker.as_ref(), claims.as_ref()) {
            Ok(claims) => {
                Routed::Call(route.value, Box::new(Request::with_params(request, params).with_claims(claims)))
            }
            Err(refusal) => Routed::Answer(*refusal),
        },
        Lookup::MethodNotAllowed { allowed } => {
            let message = format!("method {} is not allowed here; allowed: {}", request.method(), allowed.join(", "));
            Routed::Answer(error_response(&Error::new(405, message)).with_header("allow", &allowed.join(", ")))
        }
        Lookup::NotFound => {
            Routed::Answer(error_response(&Error::not_found(format!("no function at {}", request.uri().path()))))
        }
    };
    (request_id, routed)
}

/// Every response carries its request id, unless the handler set its own `x-request-id`.
pub(crate) fn finish(response: Response, request_id: &str) -> Response {
    if response.header(REQUEST_ID_HEADER).is_some() {
        response
    } else {
        response.with_header(REQUEST_ID_HEADER, request_id)
    }
}

/// Handles one request whose body is all here: routes it, runs the handler (an async one to its end, blocking), and
/// returns its response. What a WASI 0.2 component and `edgefn::testing::call` do.
#[cfg_attr(not(edgefn_p2), allow(dead_code))]
pub(crate) fn dispatch(request: http::Request<Vec<u8>>) -> Response {
    dispatch_streamed(request, None)
}

/// [`dispatch`], with the body still arriving as `body` (native tests of async handlers).
pub(crate) fn dispatch_streamed(
    request: http::Request<Vec<u8>>,
    #[cfg(edgefn_async)] body: Option<crate::body::BodyStream>,
    #[cfg(not(edgefn_async))] body: Option<std::convert::Infallible>,
) -> Response {
    let (request_id, routed) = route(request);
    let response = match routed {
        Routed::Answer(response) => response,
        Routed::Call(function, request) => match function.handler {
            #[cfg(edgefn_async)]
            HttpHandler::Sync(handler) => match body {
                Some(body) => match crate::rt::block_on(body.bytes()) {
                    Ok(bytes) => handler((*request).with_body(bytes)),
                    Err(error) => error_response(&error),
                },
                None => handler(*request),
            },
            #[cfg(not(edgefn_async))]
            HttpHandler::Sync(handler) => {
                let _never = body;
                handler(*request)
            }
            #[cfg(edgefn_async)]
            HttpHandler::Async(handler) => {
                let request = match body {
                    Some(body) => (*request).with_body_stream(body),
                    None => *request,
                };
                crate::rt::block_on(crate::rt::Scoped::new(request_id.clone(), handler(request)))
            }
            #[cfg(not(edgefn_async))]
            HttpHandler::Async(_) => error_response(&Error::internal(
                "an async handler in a WASI 0.2 component: build it with the `wasip3` feature",
            )),
        },
    };
    finish(response, &request_id)
}

/// A protected route's claims, if the host verified its token and they grant one of the route's scopes; otherwise
/// the 401 or 403 that refuses it, as the host words it. A route without `auth` has none.
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
        // The host checked the scopes before passing the claims; natively nobody has, and a unit test of a scope
        // rule must see the host's 403.
        Some(claims) if !edgefn_manifest::scopes::allows(&claims, guard.scopes) => {
            let challenge = edgefn_manifest::scopes::insufficient_scope_challenge(guard.scopes);
            let refusal = error_response(&Error::new(403, edgefn_manifest::scopes::INSUFFICIENT_SCOPE));
            Err(Box::new(refusal.with_header("www-authenticate", &challenge)))
        }
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
