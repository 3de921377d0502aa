//! The dashboard: server-rendered pages on the admin listener, at `/dashboard`. No JavaScript at all: every action
//! is a plain form.
//!
//! - **Sign-in** with the admin token: it is checked once, and the browser gets a session cookie (random, HttpOnly,
//!   `SameSite=Strict`, 12 hours), never the token itself.
//! - **CSRF**: every form that changes something carries the session's own random token, compared in constant
//!   time; a form without it, or with another session's, is refused (403). `SameSite=Strict` is a second fence.
//! - **What it shows**: functions with their versions and triggers; per function over the last hour, invocations,
//!   errors, p50/p99 duration and GB-s, with an inline SVG chart per minute; cron run history; queues with depth
//!   and dead letters, with a redrive button; the newest workflow runs, each with a page of its timeline
//!   ([`workflows`]); the log, searchable by correlation id; usage and estimated cost over the last 24 hours.

mod view;
mod workflows;

use super::Admin;
use super::error::ApiError;
use crate::storage::now_ms;
use crate::storage::telemetry::LogQuery;
use crate::telemetry::billing::{Prices, bills};
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The session cookie's name.
const COOKIE: &str = "edgefn_session";
/// How long a sign-in lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept at once: signing in again and again cannot grow memory without bound.
const MAX_SESSIONS: usize = 1024;

/// One signed-in browser.
#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    expires: Instant,
}

/// The dashboard's sessions, in memory: a restart signs everyone out.
#[derive(Debug, Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

impl Sessions {
    fn create(&self) -> (String, Session) {
        let mut sessions = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        sessions.retain(|_, session| session.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.expires).map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        let id = random_token();
        let session = Session { csrf: random_token(), expires: now + SESSION_LIFETIME };
        sessions.insert(id.clone(), session.clone());
        (id, session)
    }

    fn get(&self, id: &str) -> Option<Session> {
        let sessions = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sessions.get(id).filter(|session| session.expires > Instant::now()).cloned()
    }

    fn remove(&self, id: &str) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(id);
    }
}

/// 256 random bits, as hex.
fn random_token() -> String {
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    format!("{}{}", a.simple(), b.simple())
}

/// The dashboard's routes; `token` is the admin token a sign-in must present.
pub(super) fn router(token: Arc<str>) -> axum::Router<Admin> {
    let sign_in_token = token;
    axum::Router::new()
        .route("/dashboard", get(overview))
        .route(
            "/dashboard/login",
            get(login_page)
                .post(move |state: State<Admin>, form: Form<LoginForm>| login(state, form, sign_in_token.clone())),
        )
        .route("/dashboard/logout", post(logout))
        .route("/dashboard/queues/{queue}/redrive", post(redrive))
        .route("/dashboard/workflows/{run}", get(workflows::run_page))
}

/// The session of this request's cookie, if it is a live one.
fn session(admin: &Admin, headers: &HeaderMap) -> Option<(String, Session)> {
    let cookies = headers.get_all(header::COOKIE).iter().filter_map(|value| value.to_str().ok());
    let id = cookies
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())?;
    admin.sessions.get(&id).map(|session| (id, session))
}

/// The session of a form that changes something, if its CSRF token is the session's.
fn checked_session(admin: &Admin, headers: &HeaderMap, csrf: &str) -> Result<(String, Session), Box<Response>> {
    let Some((id, session)) = session(admin, headers) else {
        return Err(Box::new(Redirect::to("/dashboard/login").into_response()));
    };
    if !super::constant_time_eq(csrf.as_bytes(), session.csrf.as_bytes()) {
        let page = view::message_page("Refused", "This form is stale or was not sent by this dashboard (CSRF).");
        return Err(Box::new((StatusCode::FORBIDDEN, Html(page)).into_response()));
    }
    Ok((id, session))
}

async fn login_page(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if session(&admin, &headers).is_some() {
        return Redirect::to("/dashboard").into_response();
    }
    Html(view::login(None)).into_response()
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(admin): State<Admin>, Form(form): Form<LoginForm>, token: Arc<str>) -> Response {
    if !super::constant_time_eq(form.token.trim().as_bytes(), token.as_bytes()) {
        return (StatusCode::UNAUTHORIZED, Html(view::login(Some("That is not this host's admin token."))))
            .into_response();
    }
    let (id, _) = admin.sessions.create();
    let cookie =
        format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/dashboard; Max-Age={}", SESSION_LIFETIME.as_secs());
    let mut response = Redirect::to("/dashboard").into_response();
    if let Ok(value) = HeaderValue::try_from(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(State(admin): State<Admin>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    let (id, _) = match checked_session(&admin, &headers, &form.csrf) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    admin.sessions.remove(&id);
    let mut response = Redirect::to("/dashboard/login").into_response();
    let expired = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/dashboard; Max-Age=0");
    if let Ok(value) = HeaderValue::try_from(expired) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn redrive(
    State(admin): State<Admin>,
    Path(queue): Path<String>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(response) = checked_session(&admin, &headers, &form.csrf) {
        return *response;
    }
    let notice = match admin.queues.redrive(&queue, None).await {
        Ok(moved) => format!("Re-drove {moved} dead letters of {queue}."),
        Err(error) => format!("Could not re-drive {queue}: {error}"),
    };
    let mut url = String::from("/dashboard?notice=");
    url.extend(form_urlencode(&notice));
    Redirect::to(&url).into_response()
}

/// `text`, percent-encoded for a query string.
fn form_urlencode(text: &str) -> impl Iterator<Item = String> + '_ {
    text.bytes().map(|byte| match byte {
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
        b' ' => "+".to_owned(),
        other => format!("%{other:02X}"),
    })
}

#[derive(Debug, Default, Deserialize)]
struct OverviewQuery {
    /// Show the log of this correlation id.
    id: Option<String>,
    /// A message from the last action.
    notice: Option<String>,
}

async fn overview(State(admin): State<Admin>, headers: HeaderMap, Query(query): Query<OverviewQuery>) -> Response {
    let Some((_, session)) = session(&admin, &headers) else {
        return Redirect::to("/dashboard/login").into_response();
    };
    match gather(&admin, query).await {
        Ok(data) => Html(view::overview(&data, &session.csrf)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// One live function, with its last hour.
#[derive(Debug, Clone)]
struct FunctionRow {
    label: String,
    version: u32,
    canary: bool,
    trigger: String,
    /// Every invocation that ended, whatever its outcome.
    invocations: u64,
    /// HTTP answers 4xx.
    client_errors: u64,
    /// Errors, traps and timeouts.
    errors: u64,
    throttled: u64,
    /// Refused by the route's authorizer.
    unauthorized: u64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    gb_seconds: f64,
    /// Invocations and failures per minute, oldest first, the last 60 minutes.
    per_minute: Vec<(u64, u64)>,
}

/// Everything the overview shows.
#[derive(Debug)]
struct Overview {
    notice: Option<String>,
    functions: Vec<FunctionRow>,
    cron: Vec<(String, Vec<crate::storage::cron::RunRecord>)>,
    queues: Vec<crate::storage::backends::QueueStats>,
    log_id: Option<String>,
    logs: Vec<crate::storage::telemetry::StoredLog>,
    usage: (Vec<crate::telemetry::billing::Bill>, crate::telemetry::billing::Bill),
    prices: Prices,
    logs_enabled: bool,
    /// The newest workflow runs.
    runs: Vec<crate::storage::workflows::RunRow>,
}

/// The value at `fraction` of sorted `values` (nearest rank).
fn percentile(sorted: &[u64], fraction: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((fraction * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1] as f64 / 1000.0)
}

async fn gather(admin: &Admin, query: OverviewQuery) -> Result<Overview, ApiError> {
    let now = now_ms();
    let hour_ago = now - 3_600_000;
    let telemetry = &admin.telemetry;
    let logs_enabled = telemetry.logs_enabled();
    // One read of the last day's usage (each read first waits for the log writer); the last hour is part of it.
    let day = if logs_enabled { telemetry.usage(now - 86_400_000, None).await? } else { Vec::new() };
    let first_minute_of_hour = hour_ago.div_euclid(60_000);
    let hour: Vec<_> = day.iter().filter(|usage| usage.key.minute >= first_minute_of_hour).collect();
    let this_minute = now.div_euclid(60_000);
    let mut functions = Vec::new();
    let mut cron = Vec::new();
    for component in admin.deployments.live().components() {
        for version in component.versions() {
            for function in &version.functions {
                if matches!(function.trigger, edgefn_manifest::record::Trigger::Init) {
                    continue;
                }
                let label = version.label(&function.name);
                let mut row = FunctionRow {
                    label: label.clone(),
                    version: version.version,
                    canary: version.version != component.active.version,
                    trigger: function.trigger.to_string(),
                    invocations: 0,
                    client_errors: 0,
                    errors: 0,
                    throttled: 0,
                    unauthorized: 0,
                    p50_ms: None,
                    p99_ms: None,
                    gb_seconds: 0.0,
                    per_minute: vec![(0, 0); 60],
                };
                let mut mb_ms = 0;
                for usage in hour.iter().filter(|u| u.key.function == label && u.key.version == version.version) {
                    let counts = &usage.counts;
                    let failed = counts.errors + counts.traps + counts.timeouts;
                    row.invocations += counts.invocations;
                    row.errors += failed;
                    row.client_errors += counts.client_errors;
                    row.throttled += counts.throttled;
                    row.unauthorized += counts.unauthorized;
                    mb_ms += counts.mb_ms;
                    let age = this_minute - usage.key.minute;
                    if (0..60).contains(&age) {
                        let slot = &mut row.per_minute[59 - age as usize];
                        slot.0 += counts.invocations;
                        slot.1 += failed;
                    }
                }
                row.gb_seconds = mb_ms as f64 / 1024.0 / 1000.0;
                if logs_enabled && row.invocations > 0 {
                    let durations = telemetry.recent_durations(label.clone(), hour_ago, 10_000).await?;
                    row.p50_ms = percentile(&durations, 0.50);
                    row.p99_ms = percentile(&durations, 0.99);
                }
                if matches!(function.trigger, edgefn_manifest::record::Trigger::Cron { .. })
                    && version.version == component.active.version
                {
                    cron.push((label.clone(), admin.cron.runs(&label, 10).await?));
                }
                functions.push(row);
            }
        }
    }
    let queues = admin.queues.stats(admin.queue_trigger.consumed_queues()).await?;
    let log_id = query.id.filter(|id| !id.trim().is_empty()).map(|id| id.trim().to_owned());
    let logs = if logs_enabled {
        let limit = if log_id.is_some() { 500 } else { 50 };
        telemetry.query(LogQuery { correlation_id: log_id.clone(), limit, ..LogQuery::default() }).await?
    } else {
        Vec::new()
    };
    let prices = Prices::default();
    Ok(Overview {
        notice: query.notice,
        functions,
        cron,
        queues,
        log_id,
        logs,
        usage: bills(&day, &prices),
        prices,
        logs_enabled,
        runs: admin.workflows.db().list(None, workflows::OVERVIEW_RUNS).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<u64> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile(&values, 0.50), Some(50.0));
        assert_eq!(percentile(&values, 0.99), Some(99.0));
        assert_eq!(percentile(&[7_000], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn notices_are_percent_encoded() {
        let encoded: String = form_urlencode("Re-drove 1 of a/b?&").collect();
        assert_eq!(encoded, "Re-drove+1+of+a%2Fb%3F%26");
    }
}
