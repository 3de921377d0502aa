//! `/v1/kv`: read and write key-value stores from outside a function (`edgefn kv`).

use super::error::ApiError;
use super::{Admin, detached};
use crate::capabilities::KeyValue as _;
use crate::capabilities::kv::{Put, validate_store_name};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

fn store_name(store: &str) -> Result<(), ApiError> {
    validate_store_name(store).map_err(ApiError::bad_request)
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    prefix: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

pub(super) async fn list(
    State(admin): State<Admin>,
    Path(store): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    store_name(&store)?;
    let limit = query.limit.unwrap_or(100);
    let (keys, more) = admin.kv.list(store, query.prefix.unwrap_or_default(), query.cursor, limit).await?;
    let cursor = if more { keys.last().cloned() } else { None };
    Ok(Json(json!({ "keys": keys, "cursor": cursor })))
}

pub(super) async fn get(
    State(admin): State<Admin>,
    Path((store, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    store_name(&store)?;
    let found = admin.kv.get(store.clone(), key.clone()).await?;
    let Some(found) = found else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no key `{key}` in store `{store}`")));
    };
    Ok(Json(json!({
        "key": key,
        "value": String::from_utf8(found.value.clone()).ok(),
        "value_base64": base64::engine::general_purpose::STANDARD.encode(&found.value),
        "version": found.version,
    })))
}

#[derive(Debug, Deserialize)]
pub(super) struct PutQuery {
    ttl_ms: Option<u64>,
}

pub(super) async fn put(
    State(admin): State<Admin>,
    Path((store, key)): Path<(String, String)>,
    Query(query): Query<PutQuery>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    store_name(&store)?;
    let put = Put { value: body.to_vec(), ttl_ms: query.ttl_ms.filter(|ttl| *ttl > 0), expected: None };
    let kv = admin.kv.clone();
    let version = detached(async move { kv.put(store, key, put).await }).await?;
    Ok(Json(json!({ "version": version })))
}

pub(super) async fn delete(
    State(admin): State<Admin>,
    Path((store, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    store_name(&store)?;
    admin.kv.delete(store, vec![key]).await?;
    Ok(Json(json!({ "deleted": true })))
}
