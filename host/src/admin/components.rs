//! `/v1/components`: deploy, list versions, roll back, promote, undeploy.

use super::error::ApiError;
use super::{Admin, detached, parse_body};
use crate::config::ComponentConfig;
use crate::deployments::DeployRequest;
use crate::live::Mount;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The body of `POST /v1/components/{name}/versions`, as Lambda's `CreateFunction` takes its code: the component
/// base64-encoded in JSON, with the deploy's settings beside it.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployBody {
    pub wasm_base64: String,
    /// Where it came from, for the record (a path); `upload` when not given.
    #[serde(default)]
    pub source: Option<String>,
    /// Who deploys, for the record.
    #[serde(default)]
    pub deployed_by: Option<String>,
    /// Settings over the host config's `[components.NAME]` (same keys).
    #[serde(default)]
    pub config: ComponentConfig,
    /// Serve a plain wasi:http component under a route.
    #[serde(default)]
    pub mount: Option<Mount>,
    /// Send this share of the component's traffic to the new version.
    #[serde(default)]
    pub canary_percent: Option<u8>,
    /// Its static files: a bundle (`edgefn_host::assets::bundle`, a tar), base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets_base64: Option<String>,
}

/// A deploy's body, its component and its static files bundle decoded.
type DecodedDeploy = (DeployBody, Vec<u8>, Option<Vec<u8>>);

pub(super) async fn deploy(State(admin): State<Admin>, Path(name): Path<String>, body: axum::body::Bytes) -> Response {
    // Decoding an upload of megabytes is CPU work: not on the threads that answer requests.
    let decoded = tokio::task::spawn_blocking(move || -> Result<DecodedDeploy, ApiError> {
        let mut request: DeployBody = parse_body("deploy", &body, false)?;
        let decode = |field: &str, text: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|e| ApiError::bad_request(format!("`{field}` is not base64: {e}")))
        };
        let wasm = decode("wasm_base64", &request.wasm_base64)?;
        let assets = request.assets_base64.take().map(|text| decode("assets_base64", &text)).transpose()?;
        if request.config.assets.as_ref().is_some_and(|assets| assets.dir.is_some()) {
            return Err(ApiError::bad_request(
                "`config.assets.dir` names a folder on the deploying machine: send its files as `assets_base64` \
                 (`edgefn deploy --assets DIR` does)",
            ));
        }
        Ok((request, wasm, assets))
    })
    .await;
    let (request, wasm, assets) = match decoded {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(error)) => return error.into_response(),
        Err(join) => return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, join.to_string()).into_response(),
    };
    let request = DeployRequest {
        name,
        wasm,
        source: request.source.unwrap_or_else(|| "upload".into()),
        deployed_by: request.deployed_by.unwrap_or_else(|| "admin API".into()),
        overrides: request.config,
        mount: request.mount,
        canary_percent: request.canary_percent,
        assets,
    };
    let deployments = admin.deployments.clone();
    match detached(async move { deployments.deploy(request).await }).await {
        Ok(outcome) => {
            let status = if outcome.unchanged { StatusCode::OK } else { StatusCode::CREATED };
            (status, Json(outcome)).into_response()
        }
        Err(error) => error.into_response(),
    }
}

pub(super) async fn versions(State(admin): State<Admin>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let versions = admin.deployments.versions(&name).await?;
    Ok(Json(json!({ "component": name, "versions": versions })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackRequest {
    to: Option<u32>,
}

pub(super) async fn rollback(
    State(admin): State<Admin>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: RollbackRequest = parse_body("rollback", &body, true)?;
    let deployments = admin.deployments.clone();
    Ok(Json(json!(detached(async move { deployments.rollback(&name, request.to).await }).await?)))
}

pub(super) async fn promote(State(admin): State<Admin>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let deployments = admin.deployments.clone();
    Ok(Json(json!(detached(async move { deployments.promote(&name).await }).await?)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UndeployQuery {
    /// Undeploy even with workflow runs not finished, cancelling them.
    #[serde(default)]
    force: bool,
}

/// Undeploys a component. Refused (409, saying how many) while its workflow runs have not finished, unless forced:
/// then they are cancelled, since nothing would resume them.
pub(super) async fn undeploy(
    State(admin): State<Admin>,
    Path(name): Path<String>,
    Query(query): Query<UndeployQuery>,
) -> Result<Json<Value>, ApiError> {
    let unfinished = admin.workflows.unfinished(&name).await?;
    if unfinished > 0 && !query.force {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "component `{name}` has {unfinished} workflow run(s) not finished; undeploying would leave them with \
                 nothing to resume them: wait for them, cancel them, or undeploy with --force (which cancels them)"
            ),
        ));
    }
    let deployments = admin.deployments.clone();
    let (name, outcome) =
        detached(async move { deployments.undeploy(&name).await.map(|outcome| (name, outcome)) }).await?;
    // Forced, the unfinished runs are cancelled; and runs its functions started since the count above would have
    // nothing to resume them either.
    let cancelled = admin.workflows.cancel_component(&name).await?;
    let mut answer = json!(outcome);
    answer["cancelled_workflow_runs"] = json!(cancelled);
    Ok(Json(answer))
}

/// What is live: each component with its version, canary and functions.
pub(super) async fn list(State(admin): State<Admin>) -> Json<Value> {
    let live = admin.deployments.live();
    let components: Vec<Value> = live
        .components()
        .map(|component| {
            let active = &component.active;
            json!({
                "name": component.name(),
                "version": active.version,
                "hash": active.hash,
                "config_hash": active.config_hash,
                "canary": component.canary.as_ref().map(|c| json!({ "version": c.version.version, "percent": c.percent })),
                "mount": active.mount,
                "functions": active.functions,
            })
        })
        .collect();
    Json(json!({ "components": components }))
}
