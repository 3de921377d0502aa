//! `/v1/queues` and `/v1/topics`: send, publish, stats, dead letters, re-drive.

use super::error::ApiError;
use super::{Admin, parse_body};
use crate::storage::backends::NewMessage;
use crate::telemetry::correlation;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub(super) async fn stats(State(admin): State<Admin>) -> Result<Json<Value>, ApiError> {
    let stats = admin.queues.stats(admin.queue_trigger.consumed_queues()).await?;
    Ok(Json(json!({ "queues": stats })))
}

/// One message to send: `body` (any JSON value, stored as its JSON text) or `body_base64` (raw bytes).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutgoingMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub priority: i32,
}

/// The body of `POST /v1/queues/{queue}/messages`: one message, or `{"messages": [...]}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SendRequest {
    Many { messages: Vec<OutgoingMessage> },
    One(OutgoingMessage),
}

impl Default for SendRequest {
    fn default() -> Self {
        Self::Many { messages: Vec::new() }
    }
}

/// `parent_span`: the caller's span, from its `traceparent` (0 without one).
fn to_new_message(message: OutgoingMessage, correlation_id: &str, parent_span: u64) -> Result<NewMessage, ApiError> {
    let body = match (message.body, message.body_base64) {
        (Some(value), None) => serde_json::to_vec(&value).map_err(|e| ApiError::bad_request(e.to_string()))?,
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| ApiError::bad_request(format!("`body_base64` is not base64: {e}")))?,
        _ => return Err(ApiError::bad_request("give exactly one of `body` (JSON) and `body_base64` (bytes)")),
    };
    Ok(NewMessage {
        body,
        delay_ms: message.delay_ms,
        priority: message.priority,
        correlation_id: Some(correlation_id.to_owned()),
        parent_span,
    })
}

/// Messages sent or published through the admin API carry the correlation id of its request (`traceparent` or
/// `x-request-id`, else a new one), which the answer gives back: `edgefn logs --id` follows them from there.
pub(super) async fn send(
    State(admin): State<Admin>,
    Path(queue): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let correlation_id = correlation::from_headers(&headers);
    let request: SendRequest = parse_body("send", &body, false)?;
    let outgoing = match request {
        SendRequest::Many { messages } => messages,
        SendRequest::One(message) => vec![message],
    };
    let parent_span = correlation::parent_span(&headers).unwrap_or(0);
    let messages =
        outgoing.into_iter().map(|m| to_new_message(m, &correlation_id, parent_span)).collect::<Result<Vec<_>, _>>()?;
    let ids = admin.queues.send_many(&queue, messages).await?;
    Ok((StatusCode::CREATED, Json(json!({ "ids": ids, "correlation_id": correlation_id }))))
}

#[derive(Debug, Deserialize)]
pub(super) struct Page {
    limit: Option<u32>,
    /// The `next_after` of the previous page.
    after: Option<String>,
}

pub(super) async fn dead_letters(
    State(admin): State<Admin>,
    Path(queue): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let page = admin.queues.dead_letters(&queue, page.limit.unwrap_or(100), page.after).await?;
    Ok(Json(json!(page)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RedriveRequest {
    ids: Option<Vec<MessageId>>,
}

/// A message id as a client writes it: the text the API returned, or a number (SQLite's ids are row numbers, and
/// clients of round 1 sent them as such).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MessageId {
    Number(i64),
    Text(String),
}

pub(super) async fn redrive(
    State(admin): State<Admin>,
    Path(queue): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: RedriveRequest = parse_body("redrive", &body, true)?;
    let ids = request.ids.map(|ids| {
        ids.into_iter()
            .map(|id| match id {
                MessageId::Number(number) => number.to_string(),
                MessageId::Text(text) => text,
            })
            .collect()
    });
    let moved = admin.queues.redrive(&queue, ids).await?;
    Ok(Json(json!({ "redriven": moved })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PublishRequest {
    body: Value,
}

pub(super) async fn publish(
    State(admin): State<Admin>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let correlation_id = correlation::from_headers(&headers);
    let request: PublishRequest = parse_body("publish", &body, false)?;
    let body = serde_json::to_vec(&request.body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let parent_span = correlation::parent_span(&headers).unwrap_or(0);
    let subscribers =
        admin.queues.publish_to_subscribers(&topic, body, Some(correlation_id.clone()), parent_span).await?;
    Ok(Json(json!({ "subscribers": subscribers, "correlation_id": correlation_id })))
}
