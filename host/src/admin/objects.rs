//! `/v1/objects`: object buckets from outside a function (`edgefn objects`): usage per bucket, listings, and
//! objects streamed in and out (any size, in bounded memory).

use super::Admin;
use super::error::ApiError;
use crate::capabilities::objects::Objects;
use crate::capabilities::objects::transfer::{Received, parse_range, receive, stream_file};
use crate::storage::now_ms;
use crate::storage::objects::PutOptions;
use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How long an upload through the admin API may be quiet.
const QUIET: Duration = Duration::from_secs(60);

fn store(admin: &Admin, bucket: &str) -> Result<Arc<Objects>, ApiError> {
    edgefn_manifest::record::validate_bucket_name(bucket).map_err(ApiError::bad_request)?;
    admin.objects.clone().ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "this node serves no object storage"))
}

/// `GET /v1/objects`: every bucket that holds something, with its objects and bytes.
pub(super) async fn usage(State(admin): State<Admin>) -> Result<Json<Value>, ApiError> {
    let Some(objects) = admin.objects.clone() else { return Ok(Json(json!({ "buckets": [] }))) };
    Ok(Json(json!({ "buckets": objects.db.usage().await? })))
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    prefix: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/objects/{bucket}`: objects by prefix, a page at a time.
pub(super) async fn list(
    State(admin): State<Admin>,
    Path(bucket): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let objects = store(&admin, &bucket)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let (page, more) = objects.db.list(&bucket, &query.prefix.unwrap_or_default(), query.cursor, limit).await?;
    let cursor = if more { page.last().map(|info| info.key.clone()) } else { None };
    Ok(Json(json!({ "objects": page, "cursor": cursor })))
}

/// `GET /v1/objects/{bucket}/{*key}`: the object's bytes (a single `Range` too).
pub(super) async fn get(
    State(admin): State<Admin>,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let objects = store(&admin, &bucket)?;
    let Some((info, file)) = objects.db.open_object(&bucket, &key).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("object `{key}` does not exist in bucket `{bucket}`"),
        ));
    };
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(text) => parse_range(text, info.size).map_err(|_unsatisfiable| {
            ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, format!("range `{text}` is outside {} bytes", info.size))
        })?,
        None => None,
    };
    let (status, start, end) =
        range.map_or((StatusCode::OK, 0, info.size), |(s, e)| (StatusCode::PARTIAL_CONTENT, s, e));
    let builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, &info.content_type)
        .header(header::ETAG, format!("\"{}\"", info.etag))
        .header(header::CONTENT_LENGTH, end - start);
    builder
        .body(stream_file(info, file, start, end))
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))
}

/// `PUT /v1/objects/{bucket}/{*key}`: stores the request body (its `Content-Type` too) as the object.
pub(super) async fn put(
    State(admin): State<Admin>,
    Path((bucket, key)): Path<(String, String)>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let objects = store(&admin, &bucket)?;
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let correlation_id = uuid::Uuid::now_v7().simple().to_string();
    let options = PutOptions { content_type, metadata: Vec::new(), max_bytes: None, correlation_id };
    let upload =
        objects.db.begin(&bucket, &key, options)?.map_err(|refusal| ApiError::bad_request(refusal.to_string()))?;
    let upload = receive(upload, request.into_body(), QUIET).await.map_err(|received| match received {
        Received::TooLarge(written) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{bucket}/{key} is over the object size limit (limits.objects_max_object_mb; at least {written} bytes)"
            ),
        ),
        Received::Client(message) => ApiError::bad_request(message),
        Received::Storage(error) => error.into(),
    })?;
    let info = objects
        .db
        .finish(upload, now_ms())
        .await?
        .map_err(|refusal| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, refusal.to_string()))?;
    objects.changed.notify_one();
    Ok(Json(json!({ "bucket": bucket, "key": key, "size": info.size, "etag": info.etag })))
}

/// `DELETE /v1/objects/{bucket}/{*key}`.
pub(super) async fn delete(
    State(admin): State<Admin>,
    Path((bucket, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let objects = store(&admin, &bucket)?;
    let correlation_id = uuid::Uuid::now_v7().simple().to_string();
    let deleted = objects.db.delete(&bucket, &key, &correlation_id).await?;
    objects.changed.notify_one();
    Ok(Json(json!({ "deleted": deleted })))
}
