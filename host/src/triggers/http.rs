//! The HTTP trigger: an axum server whose one fallback handler routes every request through the route table
//! built from the components' manifests, enforces the body cap, runs the function and logs one line per request.

use crate::deploy::RouteTarget;
use crate::registry::{Registry, Start};
use crate::runtime::{InvokeError, PreparedComponent};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use edgefn_manifest::router::{Lookup, Router};
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::sync::Arc;
use std::time::Instant;

/// The header carrying the request id, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Everything the HTTP trigger needs to answer requests.
#[derive(Debug)]
pub struct HttpTrigger {
    routes: Router<RouteTarget>,
    registry: Arc<Registry>,
    /// What HTTP functions reach through `edgefn:function/host` (queues, topics, invoke).
    platform: Option<Arc<crate::platform::Platform>>,
}

impl HttpTrigger {
    pub fn new(
        routes: Router<RouteTarget>,
        registry: Arc<Registry>,
        platform: Option<Arc<crate::platform::Platform>>,
    ) -> Self {
        Self { routes, registry, platform }
    }

    /// The axum app: `/healthz` plus every function route.
    pub fn into_app(self) -> axum::Router {
        axum::Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .fallback(handle)
            .with_state(Arc::new(self))
    }
}

async fn handle(State(trigger): State<Arc<HttpTrigger>>, request: Request) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let (mut response, function, start) = route_and_invoke(&trigger, request, &request_id).await;
    if let Ok(value) = HeaderValue::try_from(request_id.as_str()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    tracing::info!(
        request_id = %request_id,
        function = function.as_deref().unwrap_or("-"),
        start = %start.map_or("-", Start::label),
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        duration_ms = format_args!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
        "request"
    );
    response
}

/// Routes, reads the body under its cap and invokes; returns the response, the function's label and whether the
/// invocation was a cold or warm start.
async fn route_and_invoke(
    trigger: &HttpTrigger,
    request: Request,
    request_id: &str,
) -> (Response, Option<String>, Option<Start>) {
    let target = match trigger.routes.lookup(request.method().as_str(), request.uri().path()) {
        Lookup::Found { route, .. } => route.value.clone(),
        Lookup::MethodNotAllowed { allowed } => {
            let message = format!("method {} is not allowed here; allowed: {}", request.method(), allowed.join(", "));
            let mut response = error_response(StatusCode::METHOD_NOT_ALLOWED, &message, request_id);
            if let Ok(allow) = HeaderValue::try_from(allowed.join(", ")) {
                response.headers_mut().insert(header::ALLOW, allow);
            }
            return (response, None, None);
        }
        Lookup::NotFound => {
            let message = format!("no function at {}", request.uri().path());
            return (error_response(StatusCode::NOT_FOUND, &message, request_id), None, None);
        }
    };
    let label = target.label();
    let max_body = trigger.registry.runtime().limits().max_body_bytes;
    let request = match read_request(request, max_body, request_id).await {
        Ok(request) => request,
        Err(response) => return (response, Some(label), None),
    };
    let (prepared, start) = match trigger.registry.get(&target.component) {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::error!(request_id = %request_id, function = %label, "failed to load the component: {error:#}");
            let message = "the function could not be loaded; see the host log for this request id";
            return (error_response(StatusCode::INTERNAL_SERVER_ERROR, message, request_id), Some(label), None);
        }
    };
    let response = invoke(trigger, &target, &prepared, request, request_id).await;
    (response, Some(label), Some(start))
}

/// Buffers the body under the cap (413 above it) and rebuilds the request the guest will see.
async fn read_request(request: Request, max_body: usize, request_id: &str) -> Result<http::Request<Bytes>, Response> {
    let too_large = || {
        let message = format!("request body is larger than the {max_body}-byte limit");
        error_response(StatusCode::PAYLOAD_TOO_LARGE, &message, request_id)
    };
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body as u64) {
        return Err(too_large());
    }
    let (mut parts, body) = request.into_parts();
    let body = match Limited::new(body, max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => return Err(too_large()),
        Err(error) => {
            let message = format!("failed to read the request body: {error}");
            return Err(error_response(StatusCode::BAD_REQUEST, &message, request_id));
        }
    };
    if let Ok(value) = HeaderValue::try_from(request_id) {
        parts.headers.insert(REQUEST_ID_HEADER, value);
    }
    // wasi:http needs an authority: HTTP/1.0 clients may send no Host header.
    if !parts.headers.contains_key(header::HOST) {
        parts.headers.insert(header::HOST, HeaderValue::from_static("localhost"));
    }
    Ok(http::Request::from_parts(parts, body))
}

async fn invoke(
    trigger: &HttpTrigger,
    target: &RouteTarget,
    prepared: &PreparedComponent,
    request: http::Request<Bytes>,
    request_id: &str,
) -> Response {
    let call = crate::runtime::guest::CallContext::new(trigger.platform.clone(), vec![target.label()]);
    match trigger.registry.runtime().invoke_http(prepared, &target.component.env, call, request).await {
        Ok(response) => response.map(Body::new),
        Err(error) => {
            let status = match &error {
                InvokeError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                InvokeError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
                InvokeError::Trap(_) | InvokeError::NoResponse | InvokeError::Host(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            // The full error (trap code, guest backtrace) goes to the log; the caller gets the request id.
            if matches!(error, InvokeError::Busy(_)) {
                tracing::warn!(request_id = %request_id, function = %target.label(), "{error}");
            } else {
                tracing::error!(request_id = %request_id, function = %target.label(), "{error}");
            }
            let message = match &error {
                InvokeError::Timeout(deadline) => format!("the function did not answer within {deadline:?}"),
                InvokeError::Busy(_) => "the host is at capacity; retry shortly".to_owned(),
                _ => "the function failed; see the host log for this request id".to_owned(),
            };
            let mut response = error_response(status, &message, request_id);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            response
        }
    }
}

/// The JSON error body, the same shape the SDK produces inside a component.
pub fn error_response(status: StatusCode, message: &str, request_id: &str) -> Response {
    let body = serde_json::json!({ "error": message, "status": status.as_u16(), "request_id": request_id });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}
