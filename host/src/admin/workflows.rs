//! `/v1/workflows`: durable workflow runs (`edgefn workflows`): start one, list them, show one's timeline, signal
//! it, cancel it, retry it.

use super::error::ApiError;
use super::{Admin, parse_body};
use crate::storage::workflows::{Retried, RetryRefused, RunRow, RunState, SignalError, Signalled};
use crate::triggers::workflow::StartError;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use edgefn_manifest::workflow::Entry;
use serde_json::{Value, json};

impl From<StartError> for ApiError {
    fn from(error: StartError) -> Self {
        match error {
            StartError::NotFound(message) => ApiError::new(StatusCode::NOT_FOUND, message),
            StartError::Invalid(message) => ApiError::bad_request(message),
            StartError::Storage(error) => error.into(),
        }
    }
}

impl From<SignalError> for ApiError {
    fn from(error: SignalError) -> Self {
        match error {
            SignalError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, error.to_string()),
            SignalError::Finished { .. } => ApiError::new(StatusCode::CONFLICT, error.to_string()),
            SignalError::TooLarge { .. } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string()),
            SignalError::Storage(error) => error.into(),
        }
    }
}

impl From<RetryRefused> for ApiError {
    fn from(error: RetryRefused) -> Self {
        match error {
            RetryRefused::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, error.to_string()),
            RetryRefused::Final { .. } => ApiError::new(StatusCode::CONFLICT, error.to_string()),
            RetryRefused::NoVersion(message) => ApiError::bad_request(message),
            RetryRefused::Storage(error) => error.into(),
        }
    }
}

fn run_json(run: &RunRow) -> Value {
    json!({
        "run": run.id,
        "workflow": format!("{}/{}", run.component, run.function),
        "state": run.state.as_str(),
        "due_at": run.due_at,
        "waiting_for": run.waiting_for,
        "retrying": run.retry.as_ref().map(|retry| json!({ "step": retry.name, "failed_attempts": retry.attempts })),
        "result": run.result,
        "error": run.error,
        "retryable": run.retryable,
        "version": run.version,
        "parent": run.parent,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
    })
}

/// `POST /v1/workflows/runs {"workflow": NAME, "input": any, "id": optional}`: starts a run (201), or answers the
/// run that id started before (200).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StartBody {
    workflow: String,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    id: Option<String>,
}

pub(super) async fn start(
    State(admin): State<Admin>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body: StartBody = parse_body("workflow start", &body, false)?;
    let (run, created) = admin.workflows.start(&body.workflow, body.input, body.id).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let mut answer = run_json(&run);
    answer["created"] = json!(created);
    Ok((status, Json(answer)))
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct ListQuery {
    state: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/workflows/runs?state=&limit=`: runs, newest first.
pub(super) async fn list(State(admin): State<Admin>, Query(query): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    let state = match query.state.as_deref() {
        None | Some("") => None,
        Some(name) => Some(RunState::parse(name).ok_or_else(|| {
            ApiError::bad_request(format!("unknown run state `{name}`; expected one of {}", RunState::NAMES.join(", ")))
        })?),
    };
    let runs = admin.workflows.db().list(state, query.limit.unwrap_or(100).min(1000)).await?;
    Ok(Json(json!({ "runs": runs.iter().map(run_json).collect::<Vec<_>>() })))
}

/// `GET /v1/workflows/runs/{run}`: the run, its input, its journal as a timeline, and its steps' failed attempts.
pub(super) async fn show(State(admin): State<Admin>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let Some((run, journal)) = admin.workflows.db().load(&id).await? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no workflow run `{id}`")));
    };
    let attempts = admin.workflows.db().attempts(&id).await?;
    let timeline: Vec<Value> = journal
        .iter()
        .map(|row| {
            let mut entry = serde_json::to_value(&row.entry).unwrap_or(Value::Null);
            entry["at"] = json!(row.at);
            entry["what"] = json!(describe(&row.entry));
            entry
        })
        .collect();
    let attempts: Vec<Value> = attempts
        .iter()
        .map(|a| json!({ "step": a.step, "attempt": a.attempt, "status": a.error.status, "error": a.error.message, "at": a.at }))
        .collect();
    let mut answer = run_json(&run);
    answer["input"] = run.input.clone();
    answer["journal"] = json!(timeline);
    answer["failed_attempts"] = json!(attempts);
    Ok(Json(answer))
}

/// One line of a run's timeline, as `edgefn workflows show` prints it (and the dashboard shows it).
pub(super) fn describe(entry: &Entry) -> String {
    match entry {
        Entry::Step { name, error: Some(error), attempts, .. } => {
            format!("step {name}: failed after {attempts} attempt(s): {} ({})", error.message, error.status)
        }
        Entry::Step { name, value, attempts, .. } => {
            let value = value.as_ref().map_or_else(|| "null".to_owned(), Value::to_string);
            format!("step {name}: ok after {attempts} attempt(s): {value}")
        }
        Entry::Sleep { until_ms } => format!("sleep until {until_ms}"),
        Entry::Event { name, resolved: false, .. } if name.starts_with("child:") => {
            format!("waiting for {name} to end")
        }
        Entry::Event { name, resolved: false, until_ms, .. } => format!("waiting for event {name} until {until_ms}"),
        Entry::Event { name, value: None, .. } => format!("event {name}: timed out"),
        Entry::Event { name, value: Some(value), .. } => format!("event {name}: {value}"),
        Entry::Now { ms } => format!("now: {ms}"),
        Entry::Random { value } => format!("random: {value}"),
    }
}

/// `POST /v1/workflows/runs/{run}/signals/{event}` with the payload (JSON; empty: null): delivered (200) to a run
/// waiting for it, or kept (202) until the run waits for it.
pub(super) async fn signal(
    State(admin): State<Admin>,
    Path((id, event)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let payload: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the signal's payload: {e}")))?
    };
    let signalled = admin.workflows.signal(&id, &event, payload).await?;
    let (status, what) = match signalled {
        Signalled::Delivered => (StatusCode::OK, "delivered"),
        Signalled::Kept => (StatusCode::ACCEPTED, "kept until the run waits for it"),
    };
    Ok((status, Json(json!({ "run": id, "event": event, "signal": what }))))
}

/// `POST /v1/workflows/runs/{run}/cancel`.
pub(super) async fn cancel(State(admin): State<Admin>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    match admin.workflows.cancel(&id).await? {
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no workflow run `{id}`"))),
        Some(false) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("workflow run `{id}` has ended already, or is being cancelled"),
        )),
        Some(true) => Ok(Json(json!({ "run": id, "state": "cancelling" }))),
    }
}

/// `POST /v1/workflows/runs/{run}/retry {"version": optional}`: resumes a run that failed outside its own code from
/// its journal (on `version` if given), or moves an unfinished run to `version`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryBody {
    #[serde(default)]
    version: Option<u32>,
}

pub(super) async fn retry(
    State(admin): State<Admin>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: RetryBody = parse_body("workflow retry", &body, true)?;
    let retried = admin.workflows.retry(&id, body.version).await?;
    let what = match retried {
        Retried::Resumed => "resumed from its journal",
        Retried::Moved => "moved: its next resume runs on the version",
    };
    Ok(Json(json!({ "run": id, "version": body.version, "retry": what })))
}
