//! `/v1/logs` (a query), `/v1/logs/follow` (server-sent events: the matching records stored from now on, after
//! the last few), `/v1/usage` (usage rows per function, version, trigger and minute) and `/metrics`
//! (Prometheus).

use super::Admin;
use super::error::ApiError;
use crate::storage::now_ms;
use crate::storage::telemetry::{Level, LogQuery, StoredLog};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::time::Duration;

/// The most records one query returns.
pub const MAX_LOGS_PER_QUERY: u32 = 10_000;

/// The filters of `/v1/logs` and `/v1/logs/follow`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogParams {
    /// `component/function`, a component, or a function name.
    function: Option<String>,
    /// A correlation id.
    id: Option<String>,
    /// Records at or after this time, as a duration back from now (`10m`, `2h`, `1d`) or ms since the epoch.
    since: Option<String>,
    /// `error`, `warn`, `info` or `debug`: records this severe or more.
    level: Option<String>,
    /// Records after this sequence number (the `next_after` of the previous page).
    after: Option<i64>,
    /// How many (default 100; the newest, unless `after` is given).
    limit: Option<u32>,
}

impl LogParams {
    fn query(self) -> Result<LogQuery, ApiError> {
        let level = match &self.level {
            None => None,
            Some(text) => Some(Level::parse(text).ok_or_else(|| {
                ApiError::bad_request(format!("unknown level `{text}`: use error, warn, info or debug"))
            })?),
        };
        let since = self.since.as_deref().map(parse_since).transpose()?;
        Ok(LogQuery {
            function: self.function.filter(|f| !f.is_empty()),
            correlation_id: self.id.filter(|id| !id.is_empty()),
            since,
            level,
            after: self.after,
            limit: self.limit.unwrap_or(100).clamp(1, MAX_LOGS_PER_QUERY),
        })
    }
}

/// `since`: a duration back from now (`90s`, `10m`, `2h`, `1d`, as humantime reads them) or ms since the epoch.
pub(super) fn parse_since(text: &str) -> Result<i64, ApiError> {
    if let Ok(at) = text.parse::<i64>() {
        return Ok(at);
    }
    let back = humantime::parse_duration(text).map_err(|error| {
        ApiError::bad_request(format!("`since` must be a duration such as 10m or 2h, or ms since the epoch: {error}"))
    })?;
    Ok(now_ms().saturating_sub(i64::try_from(back.as_millis()).unwrap_or(i64::MAX)))
}

pub(super) async fn query(
    State(admin): State<Admin>,
    Query(params): Query<LogParams>,
) -> Result<Json<Value>, ApiError> {
    let query = params.query()?;
    let logs = admin.telemetry.query(query).await?;
    let next_after = logs.last().map(|log| log.seq);
    Ok(Json(json!({ "logs": logs, "next_after": next_after })))
}

/// Server-sent events: first the records the query finds (the last `limit`, default 20), then each matching
/// record as it is stored. Each event is one record as JSON (`event: log`); a follower that falls behind by more
/// than the buffer gets `event: dropped` with how many it missed, and goes on.
pub(super) async fn follow(
    State(admin): State<Admin>,
    Query(params): Query<LogParams>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let mut query = params.query()?;
    if query.after.is_none() && query.limit == 100 {
        query.limit = 20;
    }
    // Subscribe before reading the backlog, so nothing stored in between is missed; what both see is sent once.
    let live = admin.telemetry.follow()?;
    let backlog = admin.telemetry.query(query.clone()).await?;
    let last_sent = backlog.last().map_or(i64::MIN, |log| log.seq);
    let state = Follower { backlog: backlog.into_iter(), live, last_sent, query };
    let stream = futures_util::stream::unfold(state, |mut follower| async move {
        let event = follower.next().await?;
        Some((Ok(event), follower))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Where a follower is: the backlog still to send, then the live records.
struct Follower {
    backlog: std::vec::IntoIter<StoredLog>,
    live: tokio::sync::broadcast::Receiver<std::sync::Arc<StoredLog>>,
    /// The newest record sent: the live records up to it were in the backlog.
    last_sent: i64,
    query: LogQuery,
}

impl Follower {
    /// The next event; `None` once the host stops.
    async fn next(&mut self) -> Option<Event> {
        if let Some(log) = self.backlog.next() {
            return Some(log_event(&log));
        }
        loop {
            match self.live.recv().await {
                Ok(log) if log.seq > self.last_sent && self.query.matches(&log.record) => {
                    self.last_sent = log.seq;
                    return Some(log_event(&log));
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    return Some(Event::default().event("dropped").data(json!({ "missed": missed }).to_string()));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

fn log_event(log: &StoredLog) -> Event {
    let data = serde_json::to_string(log).unwrap_or_else(|error| json!({ "error": error.to_string() }).to_string());
    Event::default().event("log").id(log.seq.to_string()).data(data)
}

/// The Prometheus text format, with the state gauges read now.
pub(super) async fn metrics(State(admin): State<Admin>) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let metrics = admin.telemetry.metrics().cloned().ok_or_else(|| {
        ApiError::new(axum::http::StatusCode::CONFLICT, "metrics are off on this host ([metrics] enabled = false)")
    })?;
    let snapshot = crate::telemetry::metrics::Snapshot {
        instances_in_use: admin.runtime.instances_in_use(),
        instances_max: u64::from(admin.runtime.limits().max_instances),
        queues: admin.queues.stats(admin.queue_trigger.consumed_queues()).await?,
        buckets: match &admin.objects {
            Some(objects) => objects.db.usage().await?,
            None => Vec::new(),
        },
        streams: match &admin.streams {
            Some(streams) => streams.db.describe(None).await?,
            None => Vec::new(),
        },
        cache: {
            let stats = admin.cache.stats();
            crate::telemetry::metrics::CacheCounts {
                entries: stats.entries,
                bytes: stats.bytes,
                hits: stats.hits,
                misses: stats.misses,
                stale: stats.stale,
            }
        },
        workflows: admin.workflows.db().stats().await?,
        now: now_ms(),
    };
    let text = metrics.encode(&snapshot);
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Ok(([(axum::http::header::CONTENT_TYPE, content_type)], text).into_response())
}

async fn find_failure(admin: &Admin, id: String) -> Result<crate::storage::telemetry::Failure, ApiError> {
    admin.telemetry.find_failure(id.clone()).await?.ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!(
                "no failure `{id}` is kept: only components deployed with record_failures = true keep their failures, \
                 for as long as the log"
            ),
        )
    })
}

pub(super) async fn failure(State(admin): State<Admin>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(find_failure(&admin, id).await?)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayRequest {
    /// The version to run it on; the live one when absent.
    version: Option<u32>,
}

/// Runs a kept failure's input again; answers the outcome and the replay's log.
pub(super) async fn replay(
    State(admin): State<Admin>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: ReplayRequest = super::parse_body("replay", &body, true)?;
    let failure = find_failure(&admin, id).await?;
    let version = admin.deployments.find_version(&failure.component, request.version).await?;
    let replayer = admin.replayer.clone();
    let (failure, outcome) = super::detached(async move {
        let outcome = replayer.replay(&failure, &version).await;
        outcome.map(|outcome| (failure, outcome))
    })
    .await?;
    let query = LogQuery { correlation_id: Some(outcome.correlation_id.clone()), limit: 1_000, ..LogQuery::default() };
    let logs = admin.telemetry.query(query).await?;
    Ok(Json(json!({
        "failure": { "id": failure.id, "function": format!("{}/{}", failure.component, failure.function),
                     "version": failure.version, "trigger": failure.trigger, "error": failure.error,
                     "correlation_id": failure.correlation_id },
        "outcome": outcome,
        "logs": logs,
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UsageParams {
    function: Option<String>,
    /// As for logs; default `24h`.
    since: Option<String>,
}

pub(super) async fn usage(
    State(admin): State<Admin>,
    Query(params): Query<UsageParams>,
) -> Result<Json<Value>, ApiError> {
    let since = parse_since(params.since.as_deref().unwrap_or("24h"))?;
    let rows = admin.telemetry.usage(since, params.function.filter(|f| !f.is_empty())).await?;
    Ok(Json(json!({ "since": since, "usage": rows })))
}
