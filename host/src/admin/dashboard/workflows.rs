//! The dashboard's workflow pages: the newest runs on the overview, and a page per run with its timeline (each
//! journaled step, sleep and wait with when it was recorded, every failed attempt before the step it belongs to,
//! and what the run waits for now), as `edgefn workflows show` prints it.

use super::{Admin, session, view};
use crate::storage::workflows::{AttemptRow, JournalRow, RunRow};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use edgefn_manifest::workflow::Entry;
use maud::{Markup, html};

/// How many runs the overview lists.
pub(super) const OVERVIEW_RUNS: usize = 20;

fn time(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
}

/// What a run's row says besides its state: what it waits for, its error or its result.
fn detail(run: &RunRow) -> String {
    match (&run.waiting_for, &run.error, &run.result) {
        (Some(event), _, _) => format!("waits for event {event}"),
        (_, Some(error), _) => error.clone(),
        (_, _, Some(result)) => result.to_string(),
        _ => String::new(),
    }
}

fn version(run: &RunRow) -> String {
    run.version.map_or_else(|| "live".to_owned(), |v| format!("v{v}"))
}

/// The overview's section: the newest runs, each linking to its page.
pub(super) fn runs_section(runs: &[RunRow]) -> Markup {
    html! {
        section id="workflows" {
            h2 { "Workflow runs · newest" }
            table {
                thead { tr { th { "Run" } th { "Workflow" } th { "Version" } th { "State" } th { "Started" } th { "Detail" } } }
                tbody {
                    @for run in runs {
                        tr data-run=(run.id) {
                            td { a href=(format!("/dashboard/workflows/{}", urlencoding(&run.id))) { code { (run.id) } } }
                            td { (run.component) "/" (run.function) }
                            td { (version(run)) }
                            td.state { (run.state.as_str()) }
                            td.muted { (time(run.created_at)) }
                            td { (detail(run)) }
                        }
                    }
                }
            }
            @if runs.is_empty() { p.muted { "No workflow runs yet. " code { "edgefn workflows start NAME INPUT" } } }
        }
    }
}

/// A run id as a path segment (ids are letters, digits and `-_.:`, but a page never trusts that).
fn urlencoding(text: &str) -> String {
    edgefn_manifest::route::percent_encode(text, false)
}

/// One line of the timeline.
fn describe(entry: &Entry) -> String {
    super::super::workflows::describe(entry)
}

/// `GET /dashboard/workflows/{run}`: the run's page.
pub(super) async fn run_page(State(admin): State<Admin>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if session(&admin, &headers).is_none() {
        return Redirect::to("/dashboard/login").into_response();
    }
    let found = match admin.workflows.db().load(&id).await {
        Ok(found) => found,
        Err(error) => return super::super::error::ApiError::from(error).into_response(),
    };
    let Some((run, journal)) = found else {
        let page = view::message_page("No such run", &format!("There is no workflow run `{id}`."));
        return (StatusCode::NOT_FOUND, Html(page)).into_response();
    };
    match admin.workflows.db().attempts(&id).await {
        Ok(attempts) => Html(view::titled(&format!("Run {id}"), run_body(&run, &journal, &attempts))).into_response(),
        Err(error) => super::super::error::ApiError::from(error).into_response(),
    }
}

/// The failed attempts of step `name`.
fn failed_of<'a>(attempts: &'a [AttemptRow], name: &'a str) -> impl Iterator<Item = &'a AttemptRow> + 'a {
    attempts.iter().filter(move |attempt| attempt.step == name)
}

fn run_body(run: &RunRow, journal: &[JournalRow], attempts: &[AttemptRow]) -> Markup {
    // A step's failed attempts come before its journal entry; a step being retried has them after the journal.
    let due = run.due_at.map(time).unwrap_or_default();
    html! {
        main {
            p { a href="/dashboard" { "← the dashboard" } }
            section id="run" {
                h2 { "Run " code { (run.id) } " of " (run.component) "/" (run.function) " on " (version(run)) }
                table {
                    tr { th { "State" } td.state { (run.state.as_str()) } }
                    tr { th { "Started" } td { (time(run.created_at)) } }
                    tr { th { "Updated" } td { (time(run.updated_at)) } }
                    @if run.due_at.is_some() { tr { th { "Due" } td { (due) } } }
                    @if let Some(event) = &run.waiting_for { tr { th { "Waits for" } td { "event " code { (event) } " until " (due) } } }
                    @if let Some(retry) = &run.retry { tr { th { "Retrying" } td { "step " code { (retry.name) } " after " (retry.attempts) " failed attempt(s), at " (due) } } }
                    @if let Some(result) = &run.result { tr { th { "Result" } td { code { (result.to_string()) } } } }
                    @if let Some(error) = &run.error { tr { th { "Error" } td.err { (error) } } }
                    tr { th { "Input" } td { code { (run.input.to_string()) } } }
                    tr { th { "Journal" } td { (run.journal_entries) " entries, " (run.journal_bytes) " bytes" } }
                }
            }
            section id="timeline" {
                h2 { "Timeline" }
                table {
                    thead { tr { th { "At" } th { "What" } } }
                    tbody {
                        @for row in journal {
                            @if let Entry::Step { name, .. } = &row.entry {
                                @for attempt in failed_of(attempts, name) {
                                    tr.attempt { td.muted { (time(attempt.at)) } td.err { "step " (attempt.step) " attempt " (attempt.attempt) " failed: " (attempt.error.message) " (" (attempt.error.status) ")" } }
                                }
                            }
                            tr.entry { td.muted { (time(row.at)) } td { (describe(&row.entry)) } }
                        }
                        @if let Some(retry) = &run.retry {
                            @for attempt in failed_of(attempts, &retry.name) {
                                tr.attempt { td.muted { (time(attempt.at)) } td.err { "step " (attempt.step) " attempt " (attempt.attempt) " failed: " (attempt.error.message) " (" (attempt.error.status) ")" } }
                            }
                        }
                    }
                }
                @if journal.is_empty() { p.muted { "Nothing journaled yet." } }
            }
        }
    }
}
