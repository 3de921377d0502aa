//! `/v1/streams`: ordered streams from outside a function (`edgefn streams`): their shards and consumers (with
//! each consumer's checkpoint and iterator age per shard), puts, and replays of a consumer from a sequence or a
//! time.

use super::error::ApiError;
use super::{Admin, parse_body};
use crate::capabilities::streams::{StreamError, Streams};
use crate::storage::streams::ReplayFrom;
use crate::telemetry::correlation;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use edgefn_manifest::record::Trigger;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

fn streams(admin: &Admin) -> Result<Arc<Streams>, ApiError> {
    admin
        .streams
        .clone()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "this node serves no streams (a cluster has none yet)"))
}

impl From<StreamError> for ApiError {
    fn from(error: StreamError) -> Self {
        match error {
            StreamError::Storage { .. } => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
            StreamError::Refused(crate::storage::streams::StreamRefusal::TooLarge { .. }) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string())
            }
            _ => ApiError::bad_request(error.to_string()),
        }
    }
}

/// `GET /v1/streams`: every stream, its shards and its consumers.
pub(super) async fn list(State(admin): State<Admin>) -> Result<Json<Value>, ApiError> {
    let Some(streams) = admin.streams.clone() else { return Ok(Json(json!({ "streams": [] }))) };
    Ok(Json(json!({ "streams": streams.db.describe(None).await? })))
}

/// `GET /v1/streams/{stream}`.
pub(super) async fn describe(State(admin): State<Admin>, Path(stream): Path<String>) -> Result<Json<Value>, ApiError> {
    let found = streams(&admin)?.db.describe(Some(&stream)).await?;
    let Some(info) = found.into_iter().next() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no stream `{stream}`: nothing was put to it yet")));
    };
    Ok(Json(json!(info)))
}

/// One record to put: `body` (any JSON value, stored as its JSON text) or `body_base64` (raw bytes).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OutgoingRecord {
    pub(super) key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

/// The body of `POST /v1/streams/{stream}/records`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PutRequest {
    pub records: Vec<OutgoingRecord>,
}

/// `POST /v1/streams/{stream}/records`: appends records, all or none, in order; answers their positions and the
/// correlation id they carry.
pub(super) async fn put(
    State(admin): State<Admin>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: PutRequest = parse_body("stream put", &body, false)?;
    let mut records = Vec::with_capacity(request.records.len());
    for record in request.records {
        let body = match (record.body, record.body_base64) {
            (Some(value), None) => serde_json::to_vec(&value).map_err(|e| ApiError::bad_request(e.to_string()))?,
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| ApiError::bad_request(format!("`body_base64` is not base64: {e}")))?,
            _ => return Err(ApiError::bad_request("give each record exactly one of `body` (JSON) and `body_base64`")),
        };
        records.push((record.key, body));
    }
    let correlation_id = correlation::from_headers(&headers);
    let positions = streams(&admin)?.put(&stream, records, Some(correlation_id.clone())).await?;
    let positions: Vec<Value> = positions.iter().map(|p| json!({ "shard": p.shard, "sequence": p.seq })).collect();
    Ok(Json(json!({ "positions": positions, "correlation_id": correlation_id })))
}

/// The body of `POST /v1/streams/replay`: the consumer function and where it starts again.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayRequest {
    /// `function` or `component/function`.
    pub function: String,
    pub from_sequence: Option<u64>,
    /// Milliseconds since the epoch.
    pub from_time_ms: Option<i64>,
    /// Only this shard (default: every shard).
    pub shard: Option<u32>,
}

/// `POST /v1/streams/replay`: moves a consumer's checkpoints so that its next batches start at a sequence or a
/// time; a batch running meanwhile cannot move them forward again.
pub(super) async fn replay(State(admin): State<Admin>, body: axum::body::Bytes) -> Result<Json<Value>, ApiError> {
    let request: ReplayRequest = parse_body("stream replay", &body, false)?;
    let from = match (request.from_sequence, request.from_time_ms) {
        (Some(seq), None) => ReplayFrom::Sequence(seq),
        (None, Some(at)) => ReplayFrom::Time(at),
        _ => return Err(ApiError::bad_request("give exactly one of `from_sequence` and `from_time_ms`")),
    };
    let live = admin.deployments.live();
    let is_stream = |t: &Trigger| matches!(t, Trigger::Stream { .. });
    let (component, function) = live.find(&request.function, "stream", is_stream)?;
    let stream = component
        .versions()
        .flat_map(|v| v.functions.iter())
        .find_map(|f| match &f.trigger {
            Trigger::Stream { stream, .. } if f.name == function => Some(stream.clone()),
            _ => None,
        })
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("`{function}` consumes no stream")))?;
    let consumer = format!("{}/{function}", component.name());
    let shards = streams(&admin)?.db.shards(&stream).await?;
    if let Some(shard) = request.shard.filter(|shard| *shard >= shards) {
        return Err(ApiError::bad_request(format!("stream `{stream}` has shards 0 to {}, not {shard}", shards - 1)));
    }
    let moved = streams(&admin)?.db.replay(&stream, &consumer, request.shard, from).await?;
    let streams = streams(&admin)?;
    streams.waker(&stream).notify_waiters();
    tracing::info!(%consumer, %stream, ?from, "stream consumer replayed");
    let moved: Vec<Value> = moved.iter().map(|(shard, seq)| json!({ "shard": shard, "checkpoint": seq })).collect();
    Ok(Json(json!({ "stream": stream, "consumer": consumer, "shards": moved })))
}
