//! The admin API: its own listener (default 127.0.0.1:8081), every route behind a bearer token that is generated
//! into `<data dir>/admin-token` on first start. The CLI's commands other than `up`, `new` and `inspect` are
//! clients of it. Errors are JSON (`{"error": ..., "status": ...}`); [`error`] maps the host's typed errors to
//! statuses, in one place.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/components` | what is live: each component's version, canary and functions |
//! | `POST /v1/components/{name}/versions` | deploy (see [`DeployBody`]) |
//! | `GET /v1/components/{name}/versions` | every version, newest first, with which is live |
//! | `POST /v1/components/{name}/rollback` | `{"to": N}` optional: end a canary, or go back a version |
//! | `POST /v1/components/{name}/promote` | make the canary the live version |
//! | `DELETE /v1/components/{name}?force=` | undeploy: routes 404, triggers stop, queues kept; refused with unfinished workflow runs unless forced |
//! | `GET /v1/functions` | live functions and their triggers |
//! | `POST /v1/functions/{name}/invoke` | call an `invoke` function with the JSON body; `?cron` fires a cron function |
//! | `GET /v1/functions/{name}/runs?limit=N` | a cron function's run history, newest first |
//! | `GET /v1/queues` | depth, in flight, delayed and dead of every queue |
//! | `POST /v1/queues/{queue}/messages` | send `{"body": any JSON}` or `{"messages": [...]}` (see [`SendRequest`]) |
//! | `GET /v1/queues/{queue}/dead-letters?limit=N` | a queue's dead letters |
//! | `POST /v1/queues/{queue}/redrive` | move its dead letters back (`{"ids": [...]}` for some) |
//! | `POST /v1/topics/{topic}/messages` | publish `{"body": any JSON}` |
//! | `GET /v1/kv/{store}/keys?prefix=&cursor=&limit=` | a page of a key-value store's keys |
//! | `GET`, `PUT` (body: the value; `?ttl_ms=`), `DELETE /v1/kv/{store}/keys/{key}` | one key |
//! | `GET /v1/objects` | every object bucket's objects and bytes |
//! | `GET /v1/objects/{bucket}?prefix=&cursor=&limit=` | a page of a bucket's objects, with their metadata |
//! | `GET` (a `Range` too), `PUT` (body: the bytes, streamed), `DELETE /v1/objects/{bucket}/{key}` | one object |
//! | `POST /v1/workflows/runs` | start a workflow run: `{"workflow": NAME, "input": any, "id": optional}` |
//! | `GET /v1/workflows/runs?state=&limit=` | runs, newest first |
//! | `GET /v1/workflows/runs/{run}` | a run with its journal (the timeline) and its steps' failed attempts |
//! | `POST /v1/workflows/runs/{run}/signals/{event}` | send an event (body: its JSON payload) |
//! | `POST /v1/workflows/runs/{run}/cancel` | cancel a run |
//! | `POST /v1/workflows/runs/{run}/retry` | resume a run that crashed, or move one: `{"version": optional}` |
//! | `GET /v1/nodes` | a cluster's members: each node's addresses, live versions and load |
//! | `GET /v1/authorizers` | the configured JWT authorizers |
//! | `POST /v1/authorizers/{name}/reload` | load an authorizer's JWKS file (and secret) again, now |
//! | `GET /v1/logs?function=&id=&since=&level=&after=&limit=` | log records, oldest first (see [`logs`]) |
//! | `GET /v1/logs/follow?...` | the same filters, as server-sent events: the last few, then each new record |
//! | `GET /v1/usage?function=&since=` | usage per function, version, trigger and minute |
//! | `GET /v1/failures/{id}` | a failure kept for replay (its number, or the newest of a correlation id) |
//! | `POST /v1/failures/{id}/replay` | run its input again, `{"version": N}` or the live version; outcome and logs |
//! | `GET /dashboard` | the dashboard (see [`dashboard`]): sign in with the token, then a session cookie |
//! | `GET /metrics` | Prometheus text format (see [`crate::telemetry::metrics`]) |

mod cache;
mod components;
pub mod dashboard;
pub mod error;
mod functions;
mod kv;
pub mod logs;
mod objects;
mod queues;
mod streams;
mod workflows;

pub use components::DeployBody;
pub use queues::{OutgoingMessage, SendRequest};

use crate::auth::Authorizers;
use crate::capabilities::kv::KvStores;
use crate::capabilities::messaging::Queues;
use crate::deployments::Deployments;
use crate::triggers::cron::CronTrigger;
use crate::triggers::invoke::InvokeTrigger;
use crate::triggers::queue::QueueTrigger;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use error::ApiError;
use std::sync::Arc;

/// The token file in the data dir.
pub const TOKEN_FILE: &str = "admin-token";

/// The file in the data dir where `edgefn up` writes the admin API's URL once it listens, so that the CLI finds the
/// address the same way it finds the token (a host on `--admin-listen 127.0.0.1:0` included).
pub const URL_FILE: &str = "admin-url";

/// Writes the admin API's `url` into `data_dir` (atomically: a CLI reading it never sees half a URL).
pub fn write_url(data_dir: &std::path::Path, url: &str) -> std::io::Result<()> {
    let temp = data_dir.join(format!("{URL_FILE}.tmp"));
    std::fs::write(&temp, format!("{url}\n"))?;
    std::fs::rename(temp, data_dir.join(URL_FILE))
}

/// The largest deploy upload: a component, base64-encoded in JSON.
const MAX_DEPLOY_BODY: usize = 256 << 20;

/// The largest key-value upload the admin API reads (the store's own value limit applies after).
const MAX_KV_VALUE_BODY: usize = 64 << 20;

/// What the admin API reaches.
#[derive(Debug, Clone)]
pub struct Admin {
    pub deployments: Arc<Deployments>,
    pub invoke: Arc<InvokeTrigger>,
    pub workflows: Arc<crate::triggers::workflow::WorkflowEngine>,
    pub cron: Arc<CronTrigger>,
    pub queue_trigger: Arc<QueueTrigger>,
    pub queues: Arc<Queues>,
    pub kv: Arc<KvStores>,
    /// The node's object store; `None` on a cluster (it has none yet).
    pub objects: Option<Arc<crate::capabilities::objects::Objects>>,
    /// The node's streams; `None` on a cluster (it has none yet).
    pub streams: Option<Arc<crate::capabilities::streams::Streams>>,
    pub authorizers: Arc<Authorizers>,
    pub telemetry: crate::telemetry::Telemetry,
    pub runtime: crate::runtime::Runtime,
    pub replayer: crate::triggers::replay::Replayer,
    /// The HTTP response cache.
    pub cache: Arc<crate::capabilities::cache::ResponseCache>,
    /// The dashboard's signed-in browsers.
    pub sessions: Arc<dashboard::Sessions>,
    /// On a cluster: its shared deployments and members (`GET /v1/nodes`).
    pub cluster: Option<Arc<crate::storage::backends::jetstream::JetStreamDeployments>>,
}

/// Reads the admin token from `data_dir`, creating it (random, 256 bits, owner-only) on first start. Returns the
/// token and whether it was just created.
pub fn load_or_create_token(data_dir: &std::path::Path) -> anyhow::Result<(String, bool)> {
    Ok(crate::storage::load_or_create_secret(&data_dir.join(TOKEN_FILE))?)
}

/// The admin API's router.
pub fn app(admin: Admin, token: String) -> axum::Router {
    let token: Arc<str> = token.into();
    axum::Router::new()
        .route("/v1/components", get(components::list))
        .route(
            "/v1/components/{name}/versions",
            post(components::deploy).get(components::versions).layer(DefaultBodyLimit::max(MAX_DEPLOY_BODY)),
        )
        .route("/v1/components/{name}/rollback", post(components::rollback))
        .route("/v1/components/{name}/promote", post(components::promote))
        .route("/v1/components/{name}", axum::routing::delete(components::undeploy))
        .route("/v1/functions", get(functions::list))
        .route("/v1/functions/{name}/invoke", post(functions::invoke))
        .route("/v1/functions/{name}/runs", get(functions::runs))
        .route("/v1/queues", get(queues::stats))
        .route("/v1/queues/{queue}/messages", post(queues::send))
        .route("/v1/queues/{queue}/dead-letters", get(queues::dead_letters))
        .route("/v1/queues/{queue}/redrive", post(queues::redrive))
        .route("/v1/topics/{topic}/messages", post(queues::publish))
        .route("/v1/workflows/runs", get(workflows::list).post(workflows::start))
        .route("/v1/workflows/runs/{run}", get(workflows::show))
        .route("/v1/workflows/runs/{run}/signals/{event}", post(workflows::signal))
        .route("/v1/workflows/runs/{run}/cancel", post(workflows::cancel))
        .route("/v1/workflows/runs/{run}/retry", post(workflows::retry))
        .route("/v1/cache", get(cache::stats))
        .route("/v1/cache/purge", post(cache::purge))
        .route("/v1/kv/{store}/keys", get(kv::list))
        .route(
            "/v1/kv/{store}/keys/{key}",
            get(kv::get).put(kv::put).delete(kv::delete).layer(DefaultBodyLimit::max(MAX_KV_VALUE_BODY)),
        )
        .route("/v1/objects", get(objects::usage))
        .route("/v1/objects/{bucket}", get(objects::list))
        .route(
            "/v1/objects/{bucket}/{*key}",
            get(objects::get).put(objects::put).delete(objects::delete).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/streams", get(streams::list))
        .route("/v1/streams/replay", post(streams::replay))
        .route("/v1/streams/{stream}", get(streams::describe))
        .route("/v1/streams/{stream}/records", post(streams::put))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/authorizers", get(list_authorizers))
        .route("/v1/authorizers/{name}/reload", post(reload_authorizer))
        .route("/v1/logs", get(logs::query))
        .route("/v1/logs/follow", get(logs::follow))
        .route("/v1/usage", get(logs::usage))
        .route("/metrics", get(logs::metrics))
        .route("/v1/failures/{id}", get(logs::failure))
        .route("/v1/failures/{id}/replay", post(logs::replay))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such admin route; see `GET /v1/components`") })
        .layer(axum::middleware::from_fn({
            let token = token.clone();
            move |request: Request, next: Next| {
                let token = token.clone();
                async move { authorize(&token, request, next).await }
            }
        }))
        // The dashboard signs in with the token once and then uses a session cookie: outside the bearer check.
        .merge(dashboard::router(token))
        .with_state(admin)
}

async fn list_authorizers(State(admin): State<Admin>) -> axum::Json<serde_json::Value> {
    let authorizers: Vec<_> = admin
        .authorizers
        .names()
        .into_iter()
        .filter_map(|name| {
            admin.authorizers.get(&name).map(|a| serde_json::json!({"name": name, "keys": a.key_count()}))
        })
        .collect();
    axum::Json(serde_json::json!({ "authorizers": authorizers }))
}

/// Reloads off the async threads: it reads a file.
async fn reload_authorizer(
    State(admin): State<Admin>,
    Path(name): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let authorizers = admin.authorizers.clone();
    let reloaded = tokio::task::spawn_blocking(move || authorizers.reload(&name).map(|keys| (name, keys)))
        .await
        .map_err(|join| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, join.to_string()))?;
    let (name, keys) = reloaded?;
    Ok(axum::Json(serde_json::json!({ "authorizer": name, "keys": keys })))
}

async fn authorize(token: &str, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(presented) if constant_time_eq(presented.as_bytes(), token.as_bytes()) => next.run(request).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "wrong admin token").into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("missing `Authorization: Bearer <token>`; the token is in the data dir's `{TOKEN_FILE}`"),
        )
        .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs `work` to its end even if the client goes away: a deploy, rollback or manual cron run must never stop
/// half-way because the request that asked for it was dropped.
async fn detached<T, E>(work: impl Future<Output = Result<T, E>> + Send + 'static) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    match tokio::spawn(work).await {
        Ok(result) => result.map_err(Into::into),
        Err(join) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the admin task failed: {join}"))),
    }
}

/// Parses a JSON request body into `T`; an empty body is `T::default()` when `empty_ok`.
fn parse_body<T: serde::de::DeserializeOwned + Default>(
    what: &str,
    body: &[u8],
    empty_ok: bool,
) -> Result<T, ApiError> {
    if body.is_empty() && empty_ok {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid {what} request: {e}")))
}

/// `GET /v1/nodes`: the members of this host's cluster, as each last described itself.
async fn list_nodes(State(admin): State<Admin>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let Some(cluster) = &admin.cluster else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "this host is not a cluster member: start it with --nats URL (or [cluster] nats in its config)",
        ));
    };
    Ok(axum::Json(serde_json::json!({ "nodes": cluster.nodes().await? })))
}
