//! The gate in front of protected routes: verify the bearer token with the route's authorizer before the body is
//! read or any guest runs, and tell the component what was verified.
//!
//! Whatever the route, the `x-edgefn-auth` and `x-edgefn-claims` headers a client sends are dropped: only the host
//! sets them.

use super::error_response;
use crate::auth::{Authorizers, Verdict};
use crate::live::ComponentVersion;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use edgefn_manifest::record::{CLAIMS_HEADER, HOST_AUTH_HEADER};
use http::{HeaderMap, HeaderValue, StatusCode, header};

/// A request the gate answered itself, and why (for the operator's log and the invocation record; the caller
/// learns only what the response says).
pub(super) struct Refusal {
    pub response: Box<Response>,
    pub reason: String,
}

/// Lets the request through (with the verified claims added to `headers`) or answers it: 401 without a valid
/// token, 403 without a listed scope.
pub(super) fn gate(
    authorizers: &Authorizers,
    version: &ComponentVersion,
    function: &str,
    headers: &mut HeaderMap,
    request_id: &str,
) -> Result<(), Refusal> {
    let refuse = |response: Response, reason: String| Err(Refusal { response: Box::new(response), reason });
    headers.remove(HOST_AUTH_HEADER);
    headers.remove(CLAIMS_HEADER);
    let Some(auth) = version.route_auth(function) else { return Ok(()) };
    let Some(authorizer) = authorizers.get(&auth.authorizer) else {
        // Deploys refuse this; should it happen anyway, refuse the request rather than serve it open.
        tracing::error!(request_id = %request_id, authorizer = %auth.authorizer, "route names an unknown authorizer");
        let message = "the route's authorizer is missing";
        return refuse(error_response(StatusCode::INTERNAL_SERVER_ERROR, message, request_id), message.to_owned());
    };
    let authorization = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
    match authorizer.check(authorization, &auth.scopes) {
        Verdict::Allowed(claims) => {
            let token = version.host_auth_token.as_deref().unwrap_or_default();
            let encoded = URL_SAFE_NO_PAD.encode(claims.to_string());
            match (HeaderValue::try_from(token), HeaderValue::try_from(encoded)) {
                (Ok(token), Ok(claims)) => {
                    headers.insert(HOST_AUTH_HEADER, token);
                    headers.insert(CLAIMS_HEADER, claims);
                    Ok(())
                }
                _ => {
                    let message = "failed to pass on the claims";
                    refuse(error_response(StatusCode::INTERNAL_SERVER_ERROR, message, request_id), message.to_owned())
                }
            }
        }
        Verdict::Unauthorized(reason) => {
            // Which check failed is for the operator: the caller learns only that the token did not do.
            tracing::info!(request_id = %request_id, authorizer = %auth.authorizer, %reason, "token refused");
            let mut response = error_response(StatusCode::UNAUTHORIZED, "a valid bearer token is required", request_id);
            let challenge = HeaderValue::from_static(r#"Bearer error="invalid_token""#);
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
            refuse(response, format!("token refused by authorizer `{}`: {reason}", auth.authorizer))
        }
        Verdict::Forbidden => {
            tracing::info!(request_id = %request_id, authorizer = %auth.authorizer, "token lacks the route's scopes");
            let message = edgefn_manifest::scopes::INSUFFICIENT_SCOPE;
            let mut response = error_response(StatusCode::FORBIDDEN, message, request_id);
            let challenge = edgefn_manifest::scopes::insufficient_scope_challenge(&auth.scopes);
            if let Ok(challenge) = HeaderValue::try_from(challenge) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
            }
            let reason = format!("the token lacks every scope of {:?} (authorizer `{}`)", auth.scopes, auth.authorizer);
            refuse(response, reason)
        }
    }
}
