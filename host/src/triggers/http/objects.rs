//! Signed object URLs, served by the host itself on the public listener (no function runs): `PUT` streams a
//! client's upload into the object store, `GET` and `HEAD` stream an object out, with single ranges and
//! `If-None-Match`. Every refusal stores nothing and says why: 403 for a URL that is altered, expired, signed by
//! another host or used for another operation or content type; 413 past the URL's (or the host's) size bound.

use super::{REQUEST_ID_HEADER, error_response};
use crate::capabilities::objects::Objects;
use crate::capabilities::objects::signing::Grant;
use crate::capabilities::objects::transfer::{Received, parse_range, receive, stream_file};
use crate::storage::objects::PutOptions;
use crate::storage::{StorageError, now_ms};
use axum::body::Body;
use axum::extract::{Path, Query, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What the handlers need: the node's object store, if it serves one, and how long an upload may be quiet.
#[derive(Debug, Clone)]
pub(super) struct ObjectRoutes {
    pub(super) objects: Option<Arc<Objects>>,
    pub(super) body_read_timeout: Duration,
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128)
        .map_or_else(|| uuid::Uuid::now_v7().simple().to_string(), str::to_owned)
}

fn refuse(status: StatusCode, message: &str, request_id: &str) -> Response {
    tracing::info!(status = status.as_u16(), %request_id, "a signed object URL was refused: {message}");
    error_response(status, message, request_id)
}

/// The client learns that the store failed, and the request id to find it in the host's log; the details (paths
/// of the data directory among them) stay in the log.
fn storage_failed(error: &StorageError, request_id: &str) -> Response {
    tracing::warn!(%error, %request_id, "the object store failed a signed URL's request");
    let (status, what) = if error.is_disk_full() {
        (StatusCode::INSUFFICIENT_STORAGE, "the object store's disk is full: nothing was stored")
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the object store failed; the host's log has the details under this request id",
        )
    };
    error_response(status, what, request_id)
}

/// Content types a browser may show inline from the app's own origin: none of them runs script. Anything else
/// (HTML, SVG, XML, scripts) is served as a download, so an uploaded file can never act as the site.
fn shown_inline(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "image/png"
            | "image/jpeg"
            | "image/gif"
            | "image/webp"
            | "image/avif"
            | "text/plain"
            | "application/pdf"
            | "application/json"
            | "application/octet-stream"
    ) || essence.starts_with("video/")
        || essence.starts_with("audio/")
}

fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

impl ObjectRoutes {
    /// Checks the store and the URL; the grant, or the refusal.
    fn grant(
        &self,
        (bucket, key): &(String, String),
        query: &HashMap<String, String>,
        used: &str,
        request_id: &str,
    ) -> Result<(Arc<Objects>, Grant), Box<Response>> {
        let Some(objects) = self.objects.clone() else {
            let message = "this node serves no object storage";
            return Err(Box::new(refuse(StatusCode::NOT_FOUND, message, request_id)));
        };
        match objects.signer.verify(bucket, key, query, used, now_ms()) {
            Ok(grant) => Ok((objects, grant)),
            Err(error) => Err(Box::new(refuse(StatusCode::FORBIDDEN, &format!("{bucket}/{key}: {error}"), request_id))),
        }
    }
}

/// `PUT /_edgefn/objects/{bucket}/{*key}`: a signed upload.
pub(super) async fn put(
    axum::extract::State(routes): axum::extract::State<Arc<ObjectRoutes>>,
    Path(target): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let request_id = request_id(request.headers());
    let (objects, grant) = match routes.grant(&target, &query, "put", &request_id) {
        Ok(granted) => granted,
        Err(refused) => return *refused,
    };
    let (bucket, key) = target;
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if !grant.content_type.is_empty() && content_type != grant.content_type {
        let message = format!(
            "{bucket}/{key}: the URL allows content type `{}`, the upload is `{content_type}`",
            grant.content_type
        );
        return refuse(StatusCode::FORBIDDEN, &message, &request_id);
    }
    let too_large = |written: u64| {
        let message =
            format!("{bucket}/{key}: the upload is over {} bytes (at least {written}), its bound", grant.max_bytes);
        refuse(StatusCode::PAYLOAD_TOO_LARGE, &message, &request_id)
    };
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared
        && length > grant.max_bytes
    {
        return too_large(length);
    }
    let options = PutOptions {
        content_type,
        metadata: Vec::new(),
        max_bytes: Some(grant.max_bytes),
        correlation_id: request_id.clone(),
    };
    let upload = match objects.db.begin(&bucket, &key, options) {
        Ok(Ok(upload)) => upload,
        Ok(Err(refusal)) => return refuse(StatusCode::BAD_REQUEST, &refusal.to_string(), &request_id),
        Err(error) => return storage_failed(&error, &request_id),
    };
    let upload = match receive(upload, request.into_body(), routes.body_read_timeout).await {
        Ok(upload) => upload,
        Err(Received::TooLarge(written)) => return too_large(written),
        Err(Received::Client(message)) => return refuse(StatusCode::BAD_REQUEST, &message, &request_id),
        Err(Received::Storage(error)) => return storage_failed(&error, &request_id),
    };
    match objects.db.finish(upload, now_ms()).await {
        Ok(Ok(info)) => {
            objects.changed.notify_one();
            tracing::info!(%bucket, %key, size = info.size, %request_id, "stored an object through a signed URL");
            let body = serde_json::json!({ "bucket": bucket, "key": key, "size": info.size, "etag": info.etag });
            (StatusCode::CREATED, [(header::ETAG, quoted(&info.etag))], axum::Json(body)).into_response()
        }
        Ok(Err(refusal)) => refuse(StatusCode::PAYLOAD_TOO_LARGE, &refusal.to_string(), &request_id),
        Err(error) => storage_failed(&error, &request_id),
    }
}

/// `GET` and `HEAD /_edgefn/objects/{bucket}/{*key}`: a signed download.
pub(super) async fn get(
    axum::extract::State(routes): axum::extract::State<Arc<ObjectRoutes>>,
    Path(target): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let request_id = request_id(&headers);
    let (objects, _grant) = match routes.grant(&target, &query, "get", &request_id) {
        Ok(granted) => granted,
        Err(refused) => return *refused,
    };
    let (bucket, key) = target;
    let (info, file) = match objects.db.open_object(&bucket, &key).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            let message = format!("object `{key}` does not exist in bucket `{bucket}`");
            return refuse(StatusCode::NOT_FOUND, &message, &request_id);
        }
        Err(error) => return storage_failed(&error, &request_id),
    };
    let etag = quoted(&info.etag);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    // A `Range` for another version than this one (`If-Range` names an older ETag) is ignored: the whole object,
    // never pieces of two versions.
    let if_range_holds =
        headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()).is_none_or(|tag| tag.trim() == etag);
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()).filter(|_| if_range_holds) {
        None => None,
        Some(text) => match parse_range(text, info.size) {
            Ok(range) => range,
            Err(_unsatisfiable) => {
                let mut response = refuse(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    &format!("range `{text}` is outside the object's {} bytes", info.size),
                    &request_id,
                );
                let total = HeaderValue::from_str(&format!("bytes */{}", info.size)).expect("ascii");
                response.headers_mut().insert(header::CONTENT_RANGE, total);
                return response;
            }
        },
    };
    let (status, start, end) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end),
        None => (StatusCode::OK, 0, info.size),
    };
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, &info.content_type)
        .header(header::ETAG, &etag)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, end - start)
        // Served from the app's own origin: never sniffed into something runnable, and sandboxed if opened.
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::CONTENT_SECURITY_POLICY, "sandbox; default-src 'none'");
    if !shown_inline(&info.content_type) {
        response = response.header(header::CONTENT_DISPOSITION, "attachment");
    }
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(header::CONTENT_RANGE, format!("bytes {start}-{}/{}", end - 1, info.size));
    }
    let body = if method == Method::HEAD { Body::empty() } else { stream_file(info, file, start, end) };
    response
        .body(body)
        .unwrap_or_else(|error| error_response(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string(), &request_id))
}
