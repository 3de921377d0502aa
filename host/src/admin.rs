//! The admin API: its own listener (default 127.0.0.1:8081), every route behind a bearer token that is generated
//! into `<data dir>/admin-token` on first start. The CLI's `send`, `publish`, `invoke`, `queues`, `dead-letters`,
//! `redrive` and `runs` commands are clients of it.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/functions` | functions and their triggers |
//! | `POST /v1/functions/{name}/invoke` | call an `invoke` function with the JSON body; `?cron` fires a cron function |
//! | `GET /v1/functions/{name}/runs?limit=N` | a cron function's run history, newest first |
//! | `GET /v1/queues` | depth, in flight, delayed and dead of every queue |
//! | `POST /v1/queues/{queue}/messages` | send `{"body": any JSON}` or `{"messages": [...]}` (see [`SendRequest`]) |
//! | `GET /v1/queues/{queue}/dead-letters?limit=N` | a queue's dead letters |
//! | `POST /v1/queues/{queue}/redrive` | move its dead letters back (`{"ids": [...]}` for some) |
//! | `POST /v1/topics/{topic}/messages` | publish `{"body": any JSON}` |

use crate::platform::Platform;
use crate::queue::NewMessage;
use anyhow::Context as _;
use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The token file in the data dir.
pub const TOKEN_FILE: &str = "admin-token";

/// Reads the admin token from `data_dir`, creating it (random, 256 bits, owner-only) on first start. Returns the
/// token and whether it was just created.
pub fn load_or_create_token(data_dir: &std::path::Path) -> anyhow::Result<(String, bool)> {
    let path = data_dir.join(TOKEN_FILE);
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_owned();
        if !token.is_empty() {
            return Ok((token, false));
        }
    }
    let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    writeln!(file, "{token}").with_context(|| format!("failed to write {}", path.display()))?;
    Ok((token, true))
}

/// The admin API's router.
pub fn app(platform: Arc<Platform>, token: String) -> axum::Router {
    let token: Arc<str> = token.into();
    axum::Router::new()
        .route("/v1/functions", get(list_functions))
        .route("/v1/functions/{name}/invoke", post(invoke))
        .route("/v1/functions/{name}/runs", get(runs))
        .route("/v1/queues", get(queues))
        .route("/v1/queues/{queue}/messages", post(send))
        .route("/v1/queues/{queue}/dead-letters", get(dead_letters))
        .route("/v1/queues/{queue}/redrive", post(redrive))
        .route("/v1/topics/{topic}/messages", post(publish))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such admin route; see `GET /v1/functions`".into()) })
        .layer(axum::middleware::from_fn(move |request: Request, next: Next| {
            let token = token.clone();
            async move { authorize(&token, request, next).await }
        }))
        .with_state(platform)
}

async fn authorize(token: &str, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(presented) if constant_time_eq(presented.as_bytes(), token.as_bytes()) => next.run(request).await,
        Some(_) => error(StatusCode::UNAUTHORIZED, "wrong admin token".into()),
        None => error(
            StatusCode::UNAUTHORIZED,
            format!("missing `Authorization: Bearer <token>`; the token is in the data dir's `{TOKEN_FILE}`"),
        ),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message, "status": status.as_u16() }))).into_response()
}

/// Maps a platform error to a status: unknown names are 404, refused input 400/413, the rest 500.
fn platform_error(message: String) -> Response {
    let status = if message.starts_with("no ") && message.contains(" is deployed") {
        StatusCode::NOT_FOUND
    } else if message.contains("limits.max_message_bytes") {
        StatusCode::PAYLOAD_TOO_LARGE
    } else if message.starts_with("failed to") {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    };
    error(status, message)
}

async fn list_functions(State(platform): State<Arc<Platform>>) -> Response {
    let functions: Vec<Value> = platform
        .functions()
        .iter()
        .map(|f| json!({ "name": f.name, "component": f.component.name, "label": f.label(), "trigger": f.trigger }))
        .collect();
    Json(json!({ "functions": functions })).into_response()
}

#[derive(Debug, Deserialize)]
struct InvokeQuery {
    cron: Option<String>,
}

async fn invoke(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(query): Query<InvokeQuery>,
    body: axum::body::Bytes,
) -> Response {
    if query.cron.is_some() {
        return match platform.fire_cron(&name).await {
            Ok(run) => Json(run).into_response(),
            Err(message) => platform_error(message),
        };
    }
    let payload = if body.is_empty() { b"null".to_vec() } else { body.to_vec() };
    if let Err(e) = serde_json::from_slice::<Value>(&payload) {
        return error(StatusCode::BAD_REQUEST, format!("the payload is not JSON: {e}"));
    }
    match platform.invoke(&[], &name, payload).await {
        Ok(result) => match serde_json::from_slice::<Value>(&result) {
            Ok(value) => Json(json!({ "result": value })).into_response(),
            Err(e) => error(StatusCode::BAD_GATEWAY, format!("`{name}` answered with invalid JSON: {e}")),
        },
        Err(message) if message.starts_with("no ") => platform_error(message),
        Err(message) => error(StatusCode::BAD_GATEWAY, message),
    }
}

#[derive(Debug, Deserialize)]
struct Limit {
    limit: Option<u32>,
}

async fn runs(State(platform): State<Arc<Platform>>, Path(name): Path<String>, Query(limit): Query<Limit>) -> Response {
    match platform.cron_runs(&name, limit.limit.unwrap_or(50)) {
        Ok(runs) => Json(json!({ "runs": runs })).into_response(),
        Err(message) => platform_error(message),
    }
}

async fn queues(State(platform): State<Arc<Platform>>) -> Response {
    match platform.queue_stats() {
        Ok(stats) => Json(json!({ "queues": stats })).into_response(),
        Err(message) => platform_error(message),
    }
}

/// One message to send: `body` (any JSON value, stored as its JSON text) or `body_base64` (raw bytes).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutgoingMessage {
    body: Option<Value>,
    body_base64: Option<String>,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    priority: i32,
}

/// The body of `POST /v1/queues/{queue}/messages`: one message, or `{"messages": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SendRequest {
    Many { messages: Vec<OutgoingMessage> },
    One(OutgoingMessage),
}

fn to_new_message(message: OutgoingMessage) -> Result<NewMessage, String> {
    let body = match (message.body, message.body_base64) {
        (Some(value), None) => serde_json::to_vec(&value).map_err(|e| e.to_string())?,
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| format!("`body_base64` is not base64: {e}"))?,
        _ => return Err("give exactly one of `body` (JSON) and `body_base64` (bytes)".into()),
    };
    Ok(NewMessage { body, delay_ms: message.delay_ms, priority: message.priority })
}

async fn send(State(platform): State<Arc<Platform>>, Path(queue): Path<String>, body: axum::body::Bytes) -> Response {
    let request: SendRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid send request: {e}")),
    };
    let outgoing = match request {
        SendRequest::Many { messages } => messages,
        SendRequest::One(message) => vec![message],
    };
    let messages: Result<Vec<NewMessage>, String> = outgoing.into_iter().map(to_new_message).collect();
    let messages = match messages {
        Ok(messages) => messages,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    // SQLite work: off the async threads.
    let result = tokio::task::spawn_blocking(move || platform.send(&queue, messages)).await;
    match result {
        Ok(Ok(ids)) => (StatusCode::CREATED, Json(json!({ "ids": ids }))).into_response(),
        Ok(Err(message)) => platform_error(message),
        Err(join) => error(StatusCode::INTERNAL_SERVER_ERROR, join.to_string()),
    }
}

async fn dead_letters(
    State(platform): State<Arc<Platform>>,
    Path(queue): Path<String>,
    Query(limit): Query<Limit>,
) -> Response {
    match platform.dead_letters(&queue, limit.limit.unwrap_or(100)) {
        Ok(letters) => Json(json!({ "dead_letters": letters })).into_response(),
        Err(message) => platform_error(message),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedriveRequest {
    ids: Option<Vec<i64>>,
}

async fn redrive(
    State(platform): State<Arc<Platform>>,
    Path(queue): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let request: RedriveRequest = if body.is_empty() {
        RedriveRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid redrive request: {e}")),
        }
    };
    match platform.redrive(&queue, request.ids.as_deref()) {
        Ok(moved) => Json(json!({ "redriven": moved })).into_response(),
        Err(message) => platform_error(message),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    body: Value,
}

async fn publish(
    State(platform): State<Arc<Platform>>,
    Path(topic): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let request: PublishRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid publish request: {e}")),
    };
    let body = match serde_json::to_vec(&request.body) {
        Ok(body) => body,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match tokio::task::spawn_blocking(move || platform.publish(&topic, body)).await {
        Ok(Ok(subscribers)) => Json(json!({ "subscribers": subscribers })).into_response(),
        Ok(Err(message)) => platform_error(message),
        Err(join) => error(StatusCode::INTERNAL_SERVER_ERROR, join.to_string()),
    }
}
