//! CORS at the host, for functions with a `cors` policy: a preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) for a route of such a function is answered here, without calling it; every
//! other response to a request with an `Origin` gets the policy's headers. An origin, method or header the policy
//! does not allow gets no CORS headers (so the browser refuses it), and the host's log says why.

use super::{HttpTrigger, error_response};
use crate::config::{CorsHeaders, CorsPolicy};
use crate::live::{LiveSet, RouteLookup};
use crate::storage::telemetry::Level;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, header};
use std::sync::Arc;

/// The `Origin` of a request, if it has a valid one.
pub(super) fn origin(request: &Request) -> Option<String> {
    request.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn with_headers(mut response: Response, headers: CorsHeaders) -> Response {
    for (name, value) in headers {
        if name == header::VARY {
            response.headers_mut().append(name, value);
        } else {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// Logs why a cross-origin request gets no CORS headers.
fn refused(trigger: &HttpTrigger, function: &str, origin: &str, reason: &str) {
    tracing::info!(%function, %origin, %reason, "CORS: no CORS headers for this request");
    let telemetry = trigger.runner.runtime().telemetry();
    telemetry.host_event(Level::Info, None, format!("CORS for {function}: {reason}; the response has no CORS headers"));
}

/// Answers `request` if it is a preflight for a function with a CORS policy; `None` lets it route as usual.
pub(super) fn preflight(
    trigger: &HttpTrigger,
    live: &LiveSet,
    request: &Request,
    request_id: &str,
) -> Option<Response> {
    if request.method() != Method::OPTIONS {
        return None;
    }
    let origin = origin(request)?;
    let wanted = request.headers().get(header::ACCESS_CONTROL_REQUEST_METHOD)?.to_str().ok()?.to_owned();
    let asked_headers = request
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (version, function) = match live.route(&wanted, request.uri().path()) {
        RouteLookup::Found { version, function, .. } => (version, function),
        _ => return None,
    };
    let policy = version.cors(&function)?;
    let label = version.label(&function);
    let response = match policy.preflight(&origin, &wanted, &asked_headers) {
        Ok(headers) => with_headers(StatusCode::NO_CONTENT.into_response(), headers),
        Err(reason) => {
            refused(trigger, &label, &origin, &reason);
            let message = format!("CORS preflight refused: {reason}");
            error_response(StatusCode::FORBIDDEN, &message, request_id)
        }
    };
    Some(response)
}

/// Adds `policy`'s headers to the response of a request from `origin`, or logs why not.
pub(super) fn decorate(
    trigger: &HttpTrigger,
    policy: &Arc<CorsPolicy>,
    function: &str,
    origin: &str,
    response: Response,
) -> Response {
    match policy.response_headers(origin) {
        Ok(headers) => with_headers(response, headers),
        Err(reason) => {
            refused(trigger, function, origin, &reason);
            response
        }
    }
}
