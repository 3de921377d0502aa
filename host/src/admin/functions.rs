//! `/v1/functions`: list the live functions, call an `invoke` function, fire a cron function, read its history.

use super::error::ApiError;
use super::{Admin, detached};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

pub(super) async fn list(State(admin): State<Admin>) -> Json<Value> {
    let live = admin.deployments.live();
    let mut functions = Vec::new();
    for component in live.components() {
        for version in component.versions() {
            for function in &version.functions {
                functions.push(json!({
                    "name": function.name,
                    "component": component.name(),
                    "label": version.label(&function.name),
                    "version": version.version,
                    "canary": version.version != component.active.version,
                    "trigger": function.trigger,
                }));
            }
        }
    }
    Json(json!({ "functions": functions }))
}

#[derive(Debug, Deserialize)]
pub(super) struct InvokeQuery {
    cron: Option<String>,
}

pub(super) async fn invoke(
    State(admin): State<Admin>,
    Path(name): Path<String>,
    Query(query): Query<InvokeQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    if query.cron.is_some() {
        let cron = admin.cron.clone();
        return Ok(Json(json!(detached(async move { cron.fire_now(&name).await }).await?)));
    }
    let payload = if body.is_empty() { b"null".to_vec() } else { body.to_vec() };
    if let Err(e) = serde_json::from_slice::<Value>(&payload) {
        return Err(ApiError::bad_request(format!("the payload is not JSON: {e}")));
    }
    // The call is work of its own (or continues the caller's `traceparent` / `x-request-id`).
    use crate::telemetry::{correlation, otel};
    let correlation_id = correlation::from_headers(&headers);
    let parent = otel::Parent::of_request(&headers);
    let result = admin.invoke.invoke(&[], &name, payload, None, correlation_id.as_str().into(), parent).await?;
    let value = serde_json::from_slice::<Value>(&result)
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("`{name}` answered with invalid JSON: {e}")))?;
    Ok(Json(json!({ "result": value, "correlation_id": correlation_id })))
}

#[derive(Debug, Deserialize)]
pub(super) struct Limit {
    limit: Option<u32>,
}

pub(super) async fn runs(
    State(admin): State<Admin>,
    Path(name): Path<String>,
    Query(limit): Query<Limit>,
) -> Result<Json<Value>, ApiError> {
    let runs = admin.cron.runs(&name, limit.limit.unwrap_or(50).min(1_000)).await?;
    Ok(Json(json!({ "runs": runs })))
}
