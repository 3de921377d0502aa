//! `/v1/cache`: the HTTP response cache of this node, what it holds and purges (`edgefn cache`).

use super::error::ApiError;
use super::{Admin, parse_body};
use crate::capabilities::cache::Purge;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

/// `GET /v1/cache`: its settings and what it holds, answered and purged so far.
pub(super) async fn stats(State(admin): State<Admin>) -> Json<Value> {
    Json(json!({ "settings": admin.cache.settings(), "stats": admin.cache.stats() }))
}

/// What a purge names: a component, and one of its paths or tags, or none (all of its entries).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PurgeBody {
    component: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    tag: Option<String>,
}

/// `POST /v1/cache/purge {"component": .., "path": ..}` (or `"tag"`, or neither): drops the entries; answers how
/// many.
pub(super) async fn purge(State(admin): State<Admin>, body: axum::body::Bytes) -> Result<Json<Value>, ApiError> {
    let body: PurgeBody = parse_body("cache purge", &body, false)?;
    crate::deployments::validate_name(&body.component).map_err(|error| ApiError::bad_request(error.to_string()))?;
    let purged = match (&body.path, &body.tag) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("name a `path` or a `tag`, not both")),
        (Some(path), None) if !path.starts_with('/') => {
            return Err(ApiError::bad_request(format!("cache purge path `{path}` must start with `/`")));
        }
        (Some(path), None) => admin.cache.purge(&body.component, &Purge::Path(path.clone())),
        (None, Some(tag)) if tag.is_empty() => return Err(ApiError::bad_request("cache purge tag is empty")),
        (None, Some(tag)) => admin.cache.purge(&body.component, &Purge::Tag(tag.clone())),
        (None, None) => admin.cache.purge(&body.component, &Purge::All),
    };
    Ok(Json(json!({ "component": body.component, "purged": purged })))
}
