//! The dashboard's HTML, written with maud (escaped by construction), and its inline SVG charts.

use super::{FunctionRow, Overview};
use crate::storage::telemetry::StoredLog;
use maud::{DOCTYPE, Markup, PreEscaped, html};

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f5f6f8; }
header { background: #1d2330; color: #fff; padding: 10px 24px; display: flex; align-items: center; gap: 16px; }
header h1 { font-size: 18px; margin: 0; flex: 1; }
main { padding: 16px 24px; display: grid; gap: 16px; }
section { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: 12px 16px; }
h2 { font-size: 15px; margin: 0 0 8px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eef0f3; vertical-align: middle; }
th { font-weight: 600; color: #5b6475; font-size: 12px; text-transform: uppercase; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.notice { background: #e7f5ea; border: 1px solid #9ed3a8; padding: 8px 12px; border-radius: 6px; }
.muted { color: #7a8394; }
.err { color: #b42318; }
.tag { font-size: 11px; background: #fff4d6; border: 1px solid #f0d48a; border-radius: 3px; padding: 0 4px; }
form.inline { display: inline; }
button { font: inherit; padding: 2px 10px; border: 1px solid #8b95a7; border-radius: 4px; background: #fff; cursor: pointer; }
input[type=text], input[type=password] { font: inherit; padding: 3px 6px; border: 1px solid #b7beca; border-radius: 4px; }
pre.log { margin: 0; font: 12px/1.4 ui-monospace, monospace; white-space: pre-wrap; word-break: break-all; }
.login { max-width: 420px; margin: 12vh auto; }
"#;

fn page(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · edgefn" }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    }
    .into_string()
}

/// A page of the dashboard with `title` and `body`.
pub(super) fn titled(title: &str, body: Markup) -> String {
    page(title, body)
}

/// A page that only says something.
pub(super) fn message_page(title: &str, message: &str) -> String {
    page(
        title,
        html! { section.login { h2 { (title) } p { (message) } p { a href="/dashboard" { "Back to the dashboard" } } } },
    )
}

/// The sign-in form.
pub(super) fn login(error: Option<&str>) -> String {
    page(
        "Sign in",
        html! {
            section.login {
                h2 { "edgefn dashboard" }
                p.muted { "Sign in with the host's admin token (the data dir's " code { "admin-token" } ")." }
                @if let Some(error) = error { p.err id="login-error" { (error) } }
                form method="post" action="/dashboard/login" {
                    input type="password" name="token" id="token" placeholder="admin token" autocomplete="off" required;
                    " "
                    button type="submit" id="sign-in" { "Sign in" }
                }
            }
        },
    )
}

/// Invocations (grey) and failures (red) per minute, as bars.
fn chart(per_minute: &[(u64, u64)]) -> Markup {
    let (width, height, bar) = (240.0, 36.0, 4.0);
    let max = per_minute.iter().map(|(n, _)| *n).max().unwrap_or(0).max(1) as f64;
    html! {
        svg width=(width) height=(height) viewBox=(format!("0 0 {width} {height}")) role="img"
            aria-label="invocations per minute, last hour" {
            rect x="0" y="0" width=(width) height=(height) fill="#f7f8fa" {}
            @for (index, (count, failed)) in per_minute.iter().enumerate() {
                @let x = index as f64 * bar;
                @let h = (*count as f64 / max * (height - 2.0)).max(if *count > 0 { 1.0 } else { 0.0 });
                @let hf = (*failed as f64 / max * (height - 2.0)).max(if *failed > 0 { 1.0 } else { 0.0 });
                @if *count > 0 { rect x=(x) y=(height - h) width=(bar - 1.0) height=(h) fill="#8b95a7" {} }
                @if *failed > 0 { rect x=(x) y=(height - hf) width=(bar - 1.0) height=(hf) fill="#d92d20" {} }
            }
        }
    }
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |ms| format!("{ms:.2}"))
}

fn function_row(row: &FunctionRow) -> Markup {
    html! {
        tr data-function=(row.label) {
            td { code { (row.label) } " " span.muted { "v" (row.version) } @if row.canary { " " span.tag { "canary" } } }
            td.muted { (row.trigger) }
            td.n.invocations { (row.invocations) }
            td.n.client-errors { (row.client_errors) }
            td.n.errors { @if row.errors > 0 { span.err { (row.errors) } } @else { "0" } }
            td.n.throttled { (row.throttled) }
            td.n.unauthorized { (row.unauthorized) }
            td.n { (ms(row.p50_ms)) }
            td.n { (ms(row.p99_ms)) }
            td.n { (format!("{:.6}", row.gb_seconds)) }
            td { (chart(&row.per_minute)) }
        }
    }
}

fn log_line(log: &StoredLog) -> Markup {
    let record = &log.record;
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(record.at)
        .map_or_else(|| record.at.to_string(), |at| at.format("%H:%M:%S%.3f").to_string());
    let id = record.correlation_id.clone().unwrap_or_default();
    html! {
        tr {
            td.muted { (at) }
            td { @if record.level.as_str() == "error" { span.err { "ERROR" } } @else { (record.level.as_str().to_uppercase()) } }
            td { code { (record.function.as_deref().unwrap_or("host")) } }
            td { @if !id.is_empty() { a href=(format!("/dashboard?id={id}#logs")) { code { (id) } } } }
            td { pre.log { (record.message) } }
        }
    }
}

/// The overview page.
pub(super) fn overview(data: &Overview, csrf: &str) -> String {
    page(
        "Dashboard",
        html! {
            header {
                h1 { "edgefn" }
                form.inline method="post" action="/dashboard/logout" {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Sign out" }
                }
            }
            main {
                @if let Some(notice) = &data.notice { div.notice id="notice" { (notice) } }
                @if !data.logs_enabled { div.notice { "Logs and metering are off on this host ([logs] enabled = false): the numbers below stay empty." } }
                section id="functions" {
                    h2 { "Functions · last hour" }
                    table {
                        thead { tr { th { "Function" } th { "Trigger" } th { "Invocations" } th { "4xx" } th { "Errors" } th { "Throttled" } th { "Unauthorized" }
                            th { "p50 ms" } th { "p99 ms" } th { "GB-s" } th { "Per minute" } } }
                        tbody { @for row in &data.functions { (function_row(row)) } }
                    }
                    @if data.functions.is_empty() { p.muted { "Nothing is deployed. " code { "edgefn deploy PATH" } } }
                }
                (super::workflows::runs_section(&data.runs))
                section id="queues" {
                    h2 { "Queues" }
                    table {
                        thead { tr { th { "Queue" } th { "Ready" } th { "In flight" } th { "Delayed" } th { "Dead letters" } th {} } }
                        tbody {
                            @for queue in &data.queues {
                                tr data-queue=(queue.queue) {
                                    td { code { (queue.queue) } }
                                    td.n { (queue.ready) } td.n { (queue.in_flight) } td.n { (queue.delayed) }
                                    td.n.dead { (queue.dead) }
                                    td {
                                        @if queue.dead > 0 {
                                            form.inline method="post" action=(format!("/dashboard/queues/{}/redrive", queue.queue)) {
                                                input type="hidden" name="csrf" value=(csrf);
                                                button type="submit" class="redrive" { "Redrive" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if data.queues.is_empty() { p.muted { "No queues yet." } }
                }
                section id="cron" {
                    h2 { "Cron runs" }
                    @for (function, runs) in &data.cron {
                        h2 { code { (function) } }
                        table {
                            thead { tr { th { "Tick" } th { "Outcome" } th { "Attempt" } th { "Reason" } th { "Late ms" } th { "Error" } } }
                            tbody {
                                @for run in runs {
                                    tr {
                                        td.muted { (chrono::DateTime::<chrono::Utc>::from_timestamp_millis(run.scheduled_at).map_or_else(|| run.scheduled_at.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())) }
                                        td { @if run.outcome == "failed" { span.err { (run.outcome) } } @else { (run.outcome) } }
                                        td.n { (run.attempt) }
                                        td { (run.reason) }
                                        td.n { (format!("{:.2}", run.delay_us as f64 / 1000.0)) }
                                        td { pre.log { (run.error.as_deref().unwrap_or("")) } }
                                    }
                                }
                            }
                        }
                    }
                    @if data.cron.is_empty() { p.muted { "No cron functions are live." } }
                }
                section id="logs" {
                    h2 { "Logs" }
                    form method="get" action="/dashboard#logs" {
                        input type="text" name="id" id="log-id" placeholder="correlation id (x-request-id)" size="44"
                            value=(data.log_id.as_deref().unwrap_or(""));
                        " " button type="submit" id="search" { "Search" }
                        @if data.log_id.is_some() { " " a href="/dashboard#logs" { "show the newest" } }
                    }
                    table {
                        thead { tr { th { "Time (UTC)" } th { "Level" } th { "Function" } th { "Correlation id" } th { "Message" } } }
                        tbody { @for log in &data.logs { (log_line(log)) } }
                    }
                    @if data.logs.is_empty() { p.muted { "No records." } }
                }
                section id="usage" {
                    h2 { "Usage · last 24 hours" }
                    table {
                        thead { tr { th { "Function" } th { "Requests" } th { "4xx" } th { "Errors" } th { "Throttled" } th { "Unauthorized" } th { "GB-s" } th { "CPU ms" } th { "Est. USD" } } }
                        tbody {
                            @for bill in data.usage.0.iter().chain(std::iter::once(&data.usage.1)) {
                                tr {
                                    td { @if bill.function == "total" { strong { "total" } } @else { code { (bill.function) } } }
                                    td.n { (bill.requests) } td.n { (bill.client_errors) } td.n { (bill.errors) }
                                    td.n { (bill.throttled) } td.n { (bill.unauthorized) }
                                    td.n { (format!("{:.6}", bill.gb_seconds)) } td.n { (format!("{:.3}", bill.guest_cpu_ms)) }
                                    td.n { (format!("{:.8}", bill.cost_usd)) }
                                }
                            }
                        }
                    }
                    p.muted { "At $" (data.prices.per_million_requests) " per million requests and $" (data.prices.per_gb_second)
                        " per GB-s (AWS Lambda x86 prices); " code { "edgefn usage --prices FILE" } " bills with others." }
                }
            }
        },
    )
}
